package format

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"
)

// vectorsPath is where the Ruby-generated golden cases live: the shared
// directory sits next to the repository clone, locally and in CI.
const vectorsPath = "../../../../shared/spec/ruby-yaml-vectors.json"

type vectorCase struct {
	Name  string          `json:"name"`
	Value json.RawMessage `json:"value"`
	Times [][]any         `json:"times"`
	YAML  string          `json:"yaml"`
	JSON  *string         `json:"json"`
}

func loadVectors(t *testing.T) []vectorCase {
	t.Helper()
	data, err := os.ReadFile(vectorsPath)
	if err != nil {
		// Missing vectors must fail loudly: skipping would let a broken
		// checkout pass without checking Ruby compatibility at all.
		t.Fatalf("golden vectors: %v", err)
	}
	var file struct {
		Cases []vectorCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatalf("golden vectors: %v", err)
	}
	if len(file.Cases) == 0 {
		t.Fatal("golden vectors: no cases")
	}
	return file.Cases
}

// setTime replaces the string at path (object keys as strings, array
// indexes as JSON numbers) with the UTC time it spells, as the generator
// did with Time.iso8601(...).utc.
func setTime(v any, path []any) error {
	var get func() any
	var set func(any)
	switch c := v.(type) {
	case *Map:
		k, ok := path[0].(string)
		if !ok {
			return fmt.Errorf("path element %v is not a key", path[0])
		}
		get = func() any { x, _ := c.Get(k); return x }
		set = func(x any) { c.Set(k, x) }
	case []any:
		f, ok := path[0].(float64)
		if !ok || int(f) < 0 || int(f) >= len(c) {
			return fmt.Errorf("path element %v is not an index", path[0])
		}
		get = func() any { return c[int(f)] }
		set = func(x any) { c[int(f)] = x }
	default:
		return fmt.Errorf("cannot descend into %T", v)
	}
	if len(path) > 1 {
		return setTime(get(), path[1:])
	}
	s, ok := get().(string)
	if !ok {
		return fmt.Errorf("time path holds %T", get())
	}
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return err
	}
	set(tm.UTC())
	return nil
}

func TestRubyVectors(t *testing.T) {
	cases := loadVectors(t)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			v, err := DecodeJSON(c.Value)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range c.Times {
				if err := setTime(v, p); err != nil {
					t.Fatalf("times %v: %v", p, err)
				}
			}
			y, err := YAML(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(y) != c.YAML {
				t.Errorf("YAML mismatch\n got: %q\nwant: %q", y, c.YAML)
			}
			if c.JSON != nil {
				j, err := JSON(v)
				if err != nil {
					t.Fatal(err)
				}
				if string(j) != *c.JSON {
					t.Errorf("JSON mismatch\n got: %s\nwant: %s", j, *c.JSON)
				}
			}
		})
	}
	t.Logf("%d Ruby vectors checked", len(cases))
}
