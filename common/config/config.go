// Package config holds what every daemon's configuration loading shares:
// defaults, then a JSON file (unknown keys are an error), then flags.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// LoadFile decodes the JSON file at path over v (which holds the defaults).
// An unknown key is an error, so a typo does not silently keep a default.
func LoadFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// List is a repeatable string flag (-join a -join b).
type List []string

func (l *List) String() string     { return strings.Join(*l, ",") }
func (l *List) Set(v string) error { *l = append(*l, v); return nil }

// Set copies v into dst unless v is empty (a flag that was not given).
func Set(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}
