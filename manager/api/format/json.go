package format

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// JSON renders v the way Ruby's JSON.generate rendered the 12.03 documents:
// compact, keys of *Map in insertion order, map keys sorted, floats as Ruby's
// Float#to_s, and no escaping of '/', '<', '>', '&' or non-ASCII text.
// Times are rendered as UTC ISO-8601 with second precision.
func JSON(v any) ([]byte, error) {
	return appendJSON(make([]byte, 0, 256), v)
}

// MarshalJSON lets a *Map nested inside values handled by encoding/json keep
// its key order. encoding/json's own Marshal HTML-escapes the result again;
// use an Encoder with SetEscapeHTML(false) (or format.JSON) to get Ruby's bytes.
func (m *Map) MarshalJSON() ([]byte, error) {
	return appendJSON(nil, m)
}

// Error is the type of this package's own errors; being a string type lets
// them be constants rather than package variables.
type Error string

func (e Error) Error() string { return string(e) }

// ErrInvalidUTF8 mirrors Ruby's JSON::GeneratorError and Psych's emitter
// error: neither library can render a String holding malformed UTF-8, so we
// refuse too instead of inventing bytes the old server never sent.
const ErrInvalidUTF8 = Error("format: string is not valid UTF-8")

func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, x)
	case bool:
		return strconv.AppendBool(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int8:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int16:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case uint:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint8:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint16:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float32:
		return appendJSONFloat(b, float64(x), 32)
	case float64:
		return appendJSONFloat(b, x, 64)
	case json.Number:
		// A number kept verbatim from an input document; Ruby would have
		// parsed and re-printed it, so normalise through the same path.
		n, err := numberValue(string(x))
		if err != nil {
			return b, err
		}
		return appendJSON(b, n)
	case time.Time:
		return appendJSONTime(b, x), nil
	case *time.Time:
		if x == nil {
			return append(b, "null"...), nil
		}
		return appendJSONTime(b, *x), nil
	case *Map:
		if x == nil {
			return append(b, "null"...), nil
		}
		return appendJSONObject(b, x.keys, x.vals)
	case map[string]any:
		return appendJSONMap(b, x)
	case map[string]string:
		return appendJSONMap(b, x)
	case []any:
		return appendJSONArray(b, x)
	case []string:
		return appendJSONArray(b, x)
	case []*Map:
		return appendJSONArray(b, x)
	case []map[string]any:
		return appendJSONArray(b, x)
	case []int:
		return appendJSONArray(b, x)
	case []int64:
		return appendJSONArray(b, x)
	case []float64:
		return appendJSONArray(b, x)
	case json.RawMessage:
		// Already JSON; compact it so the output stays on one line like
		// JSON.generate, but otherwise trust the caller.
		var buf bytes.Buffer
		if err := json.Compact(&buf, x); err != nil {
			return b, err
		}
		return append(b, buf.Bytes()...), nil
	default:
		return appendJSONFallback(b, v)
	}
}

// appendJSONArray is generic so typed slices avoid a copy into []any.
func appendJSONArray[T any](b []byte, xs []T) ([]byte, error) {
	if xs == nil {
		// Ruby has no nil Array; an absent list is rendered as null, the
		// same as encoding/json does, rather than inventing [].
		return append(b, "null"...), nil
	}
	var err error
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendJSON(b, any(x)); err != nil {
			return b, err
		}
	}
	return append(b, ']'), nil
}

// appendJSONFallback hands types this package does not know to encoding/json,
// with HTML escaping off because Ruby's generator does not escape <, > or &.
func appendJSONFallback(b []byte, v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return b, err
	}
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})...), nil
}

func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05Z")
	return append(b, '"')
}

func appendJSONFloat(b []byte, f float64, bits int) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		// Ruby raises GeneratorError ("NaN not allowed in JSON") here.
		return b, fmt.Errorf("format: %v not allowed in JSON", f)
	}
	return appendRubyFloat(b, f, bits), nil
}

// appendRubyFloat prints f like Ruby's Float#to_s, which both JSON.generate
// and Psych use: shortest round-trip digits, fixed notation with at least
// one fractional digit for 0.0001 <= |f| < 1e15 (or when the digits reach
// past the decimal point), otherwise "d.ddde+XX" with a signed,
// at-least-two-digit exponent.
func appendRubyFloat(b []byte, f float64, bits int) []byte {
	if math.IsNaN(f) {
		return append(b, "NaN"...)
	}
	if math.IsInf(f, 1) {
		return append(b, "Infinity"...)
	}
	if math.IsInf(f, -1) {
		return append(b, "-Infinity"...)
	}
	if math.Signbit(f) {
		b = append(b, '-')
		f = -f
	}
	if f == 0 {
		return append(b, "0.0"...)
	}
	// 'e' with precision -1 yields the shortest digits as d.ddddde±XX.
	var tmp [40]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, bits)
	ePos := bytes.IndexByte(e, 'e')
	mant := e[:ePos]
	exp, _ := strconv.Atoi(string(e[ePos+1:]))
	var digs [24]byte
	digits := append(digs[:0], mant[0])
	if len(mant) > 2 {
		digits = append(digits, mant[2:]...)
	}
	decpt := exp + 1 // position of the decimal point relative to the digits
	switch {
	case decpt > 0 && (decpt <= 15 || decpt < len(digits)):
		// Ruby switches to exponent form from 1.0e+15 on, unless the
		// digits run past the point (1234567890123456.8 stays fixed).
		if len(digits) <= decpt {
			b = append(b, digits...)
			for i := len(digits); i < decpt; i++ {
				b = append(b, '0')
			}
			return append(b, ".0"...)
		}
		b = append(b, digits[:decpt]...)
		b = append(b, '.')
		return append(b, digits[decpt:]...)
	case decpt <= 0 && decpt > -4:
		b = append(b, "0."...)
		for i := decpt; i < 0; i++ {
			b = append(b, '0')
		}
		return append(b, digits...)
	default:
		b = append(b, digits[0], '.')
		if len(digits) > 1 {
			b = append(b, digits[1:]...)
		} else {
			b = append(b, '0')
		}
		b = append(b, 'e')
		x := decpt - 1
		if x < 0 {
			b = append(b, '-')
			x = -x
		} else {
			b = append(b, '+')
		}
		if x < 10 {
			b = append(b, '0')
		}
		return strconv.AppendInt(b, int64(x), 10)
	}
}

// appendJSONString escapes like Ruby's json 2.x generator in its default
// (non ascii_only, non script_safe) mode: only '"', '\\' and C0 controls are
// escaped; controls without a short form become lowercase \u00xx.
func appendJSONString(b []byte, s string) ([]byte, error) {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			ascii = false
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\f':
			b = append(b, '\\', 'f')
		case '\b':
			b = append(b, '\\', 'b')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	if !ascii && !utf8.ValidString(s) {
		return b, ErrInvalidUTF8
	}
	b = append(b, s[start:]...)
	return append(b, '"'), nil
}

// appendJSONMap renders a map as an object with its keys sorted (nil: null).
func appendJSONMap[V any](b []byte, m map[string]V) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	keys := sortedKeys(m)
	vals := make([]V, len(keys))
	for i, k := range keys {
		vals[i] = m[k]
	}
	return appendJSONObject(b, keys, vals)
}

// appendJSONObject renders keys[i]: vals[i] pairs in order.
func appendJSONObject[V any](b []byte, keys []string, vals []V) ([]byte, error) {
	var err error
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendJSONString(b, k); err != nil {
			return b, err
		}
		b = append(b, ':')
		if b, err = appendJSON(b, vals[i]); err != nil {
			return b, err
		}
	}
	return append(b, '}'), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
