package format

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// YAML renders v byte for byte as Ruby 3.1's Psych 4.0.3 on libyaml 0.2.5
// printed `v.to_yaml` for the equivalent Ruby value, with every mapping key
// a Symbol (":key:"). *Map keeps its key order, map[string]any is sorted.
// Types this package does not know go through encoding/json first and are
// rendered as the resulting JSON document would be.
func YAML(v any) ([]byte, error) {
	e := emitter{buf: make([]byte, 0, 512)}
	if err := e.document(v); err != nil {
		return nil, err
	}
	return e.buf, nil
}

// emitNode is yaml_emitter_emit_node plus the Psych visitor for the value's
// Go type.
func (e *emitter) emitNode(v any, root, mapping, simpleKey bool) error {
	e.setContext(root, mapping, simpleKey)
	switch x := v.(type) {
	case nil:
		return e.emitPlainValue("")
	case string:
		if !utf8.ValidString(x) {
			return ErrInvalidUTF8
		}
		sc := stringScalar(x)
		e.emitScalar(sc, analyzeScalar(sc.value))
		return nil
	case bool:
		return e.emitPlainValue(strconv.FormatBool(x))
	case int:
		return e.emitPlainValue(strconv.FormatInt(int64(x), 10))
	case int8:
		return e.emitPlainValue(strconv.FormatInt(int64(x), 10))
	case int16:
		return e.emitPlainValue(strconv.FormatInt(int64(x), 10))
	case int32:
		return e.emitPlainValue(strconv.FormatInt(int64(x), 10))
	case int64:
		return e.emitPlainValue(strconv.FormatInt(x, 10))
	case uint:
		return e.emitPlainValue(strconv.FormatUint(uint64(x), 10))
	case uint8:
		return e.emitPlainValue(strconv.FormatUint(uint64(x), 10))
	case uint16:
		return e.emitPlainValue(strconv.FormatUint(uint64(x), 10))
	case uint32:
		return e.emitPlainValue(strconv.FormatUint(uint64(x), 10))
	case uint64:
		return e.emitPlainValue(strconv.FormatUint(x, 10))
	case float32:
		return e.emitPlainValue(psychFloat(float64(x), 32))
	case float64:
		return e.emitPlainValue(psychFloat(x, 64))
	case json.Number:
		n, err := numberValue(string(x))
		if err != nil {
			return err
		}
		return e.emitNode(n, root, mapping, simpleKey)
	case time.Time:
		return e.emitPlainValue(psychTime(x))
	case *time.Time:
		if x == nil {
			return e.emitPlainValue("")
		}
		return e.emitPlainValue(psychTime(*x))
	case *Map:
		if x == nil {
			return e.emitPlainValue("")
		}
		return e.emitMapping(x.keys, x.vals)
	case map[string]any:
		return emitMap(e, x)
	case map[string]string:
		return emitMap(e, x)
	case []any:
		if x == nil {
			return e.emitPlainValue("")
		}
		return emitSequence(e, x)
	case []string:
		if x == nil {
			return e.emitPlainValue("")
		}
		return emitSequence(e, x)
	case []*Map:
		if x == nil {
			return e.emitPlainValue("")
		}
		return emitSequence(e, x)
	case []map[string]any:
		if x == nil {
			return e.emitPlainValue("")
		}
		return emitSequence(e, x)
	case []int:
		if x == nil {
			return e.emitPlainValue("")
		}
		return emitSequence(e, x)
	case []int64:
		if x == nil {
			return e.emitPlainValue("")
		}
		return emitSequence(e, x)
	case []float64:
		if x == nil {
			return e.emitPlainValue("")
		}
		return emitSequence(e, x)
	case json.RawMessage:
		d, err := DecodeJSON(x)
		if err != nil {
			return err
		}
		return e.emitNode(d, root, mapping, simpleKey)
	default:
		// Render what the value looks like as JSON, so structs and other
		// types come out as the document a Ruby client would have parsed.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return err
		}
		d, err := DecodeJSON(buf.Bytes())
		if err != nil {
			return err
		}
		return e.emitNode(d, root, mapping, simpleKey)
	}
}

// emitPlainValue emits what Psych's visitors for nil, booleans, numbers and
// times produce: an implicitly typed scalar that libyaml writes plain (these
// texts never need quoting).
func (e *emitter) emitPlainValue(s string) error {
	sc := scalar{value: s, plainImplicit: true, style: styleAny}
	e.emitScalar(sc, analyzeScalar(s))
	return nil
}

// psychFloat is YAMLTree#visit_Float.
func psychFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return ".nan"
	case math.IsInf(f, 1):
		return ".inf"
	case math.IsInf(f, -1):
		return "-.inf"
	}
	var tmp [32]byte
	return string(appendRubyFloat(tmp[:0], f, bits))
}

// psychTime is YAMLTree#format_time for a UTC time:
// strftime("%Y-%m-%d %H:%M:%S.%9N Z"). Every time is shown in UTC, as the
// JSON rendering does, whatever its Location.
func psychTime(t time.Time) string {
	var tmp [40]byte
	return string(t.UTC().AppendFormat(tmp[:0], "2006-01-02 15:04:05.000000000 Z"))
}

// emitMap emits a map as a mapping with its keys sorted (nil: empty value).
func emitMap[V any](e *emitter, m map[string]V) error {
	if m == nil {
		return e.emitPlainValue("")
	}
	keys := sortedKeys(m)
	vals := make([]any, len(keys))
	for i, k := range keys {
		vals[i] = m[k]
	}
	return e.emitMapping(keys, vals)
}
