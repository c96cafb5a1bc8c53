// Package params turns an HTTP request into the parameter hash the 12.03
// handlers read, with the rules the original Sinatra/Rack stack applied: Rack
// nested form keys (vifs[eth0][network]=…), query string and body merged, and
// ActiveResource-style JSON/YAML bodies. Every scalar reaches the handlers as a
// string, exactly as a Rack form would deliver it, so a handler has one code
// path whatever encoding the client used.
package params

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Params are request parameters. Values are only: string, nil, []any,
// map[string]any (nested hashes), recursively. Scalars from JSON/YAML bodies
// are normalised to strings (numbers as their literal text, booleans
// "true"/"false"), null → nil, so handlers see what a Rack form would give them.
//
// Go maps do not keep insertion order: a handler that needs the order of a
// nested hash (Rack kept it) must sort the keys itself, e.g. vifs by name.
type Params map[string]any

// ErrInvalidBody: the JSON/YAML body does not parse or is not a one-key object
// whose first value is a hash, or a multipart body is malformed. The 12.03
// server answered 400 with the plain text body "Invalid request body." (not
// the error document); the wrapped text is detail for logs only.
var ErrInvalidBody = errors.New("params: invalid request body")

// ConflictError is a Rack parameter type clash such as a[]=1&a[b]=2 or
// a=1&a[b]=2 (Rack raised ParameterTypeError; the server answers 400/143).
type ConflictError struct {
	// Key is the parameter name at the nesting level where the clash happened.
	Key string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("params: conflicting types for parameter %q", e.Key)
}

// MalformedError is a query or form body Rack refused to decode: an invalid
// %-escape, a key that is not valid UTF-8, or nesting deeper than Rack's limit
// (Rack raised InvalidParameterError / ParamsTooDeepError; answer 400).
type MalformedError struct {
	Reason string
}

func (e *MalformedError) Error() string { return "params: malformed parameters: " + e.Reason }

// TooLargeError: the request body is longer than the limit given to
// FromRequest (answer 413).
type TooLargeError struct {
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("params: request body larger than %d bytes", e.Limit)
}

// ValueError is returned by the typed accessors (Int, Digits) when a parameter
// is present but not of the required form; Key is what the 12.03 server put
// in the 400/143 InvalidParameter message.
type ValueError struct {
	Key    string
	Reason string
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("params: invalid parameter %q: %s", e.Key, e.Reason)
}

// Has reports whether key is present, even with a nil value (a bare "key" in a
// query string).
func (p Params) Has(key string) bool {
	_, ok := p[key]
	return ok
}

// Get returns the raw value (nil when absent).
func (p Params) Get(key string) any { return p[key] }

// Str returns the string value, "" if absent, nil or not a string.
func (p Params) Str(key string) string {
	s, _ := p[key].(string)
	return s
}

// StrOK returns the string value; ok only when present and a string.
func (p Params) StrOK(key string) (string, bool) {
	s, ok := p[key].(string)
	return s, ok
}

// Strings returns a list parameter. A single string becomes a one-element
// slice (a form may send key=v instead of key[]=v); an array must hold only
// strings; a hash whose keys are all decimal digits (Rack forms send
// x[0]=a&x[1]=b) yields its values in numeric key order. Anything else —
// absent, nil, an array with non-strings, other hashes — gives ok=false.
func (p Params) Strings(key string) ([]string, bool) {
	return stringsOf(p[key])
}

func stringsOf(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		return []string{v}, true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	case map[string]any:
		return indexedStrings(v)
	case Params:
		return indexedStrings(v)
	}
	return nil, false
}

// indexedStrings orders a {"0": …, "1": …} hash by the numeric value of its
// keys ("2" before "10"); keys that differ only in leading zeros keep a stable
// lexical order.
func indexedStrings(m map[string]any) ([]string, bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		if !isDigits(k) {
			return nil, false
		}
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := strings.TrimLeft(keys[i], "0"), strings.TrimLeft(keys[j], "0")
		if len(a) != len(b) {
			return len(a) < len(b)
		}
		if a != b {
			return a < b
		}
		return keys[i] < keys[j]
	})
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		s, ok := m[k].(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// Map returns a nested hash parameter.
func (p Params) Map(key string) (Params, bool) {
	switch v := p[key].(type) {
	case map[string]any:
		return Params(v), true
	case Params:
		return v, true
	}
	return nil, false
}

// IsTrue reports whether the value is exactly the string "true": the 12.03
// handlers compared form values with "true" and treated everything else
// (including "1", "yes", "TRUE") as false.
func (p Params) IsTrue(key string) bool {
	s, ok := p[key].(string)
	return ok && s == "true"
}

// Int parses a base-10 signed 64-bit integer (an optional sign and digits,
// nothing else — no spaces, no "0x", no "1.0").
//   - absent or nil: (0, false, nil) — the caller applies its default;
//   - a valid string: (n, true, nil);
//   - anything else, including "" and out-of-range values: (0, true, *ValueError).
func (p Params) Int(key string) (int64, bool, error) {
	v, ok := p[key]
	if !ok || v == nil {
		return 0, false, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return 0, true, &ValueError{Key: key, Reason: "not an integer"}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, true, &ValueError{Key: key, Reason: "not an integer"}
	}
	return n, true, nil
}

// Digits reads a non-negative integer written with ASCII digits only, as the
// 12.03 paging helper required for start/limit (it matched /^\d+$/). Absent or
// nil gives def; "" (start= in a query), signs, spaces, non-strings and values
// beyond int64 give a *ValueError naming key.
func (p Params) Digits(key string, def int64) (int64, error) {
	v, ok := p[key]
	if !ok || v == nil {
		return def, nil
	}
	s, isStr := v.(string)
	if !isStr || !isDigits(s) {
		return 0, &ValueError{Key: key, Reason: "not a non-negative integer"}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, &ValueError{Key: key, Reason: "out of range"}
	}
	return n, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
