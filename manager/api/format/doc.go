// Package format renders API documents the way the 12.03 server did: JSON with
// keys in document order, and YAML byte-compatible with Ruby's Psych output of a
// symbol-keyed Hash (existing clients such as mussel grep that text).
package format

// Map is a document whose keys keep their insertion order. Values may be nil,
// string, bool, int, int64, uint64, float64, time.Time, []string, []any, *Map or
// map[string]any (rendered with sorted keys).
type Map struct {
	keys []string
	vals []any
}

// NewMap returns an empty document with room for n keys.
func NewMap(n int) *Map {
	return &Map{keys: make([]string, 0, n), vals: make([]any, 0, n)}
}

// Set adds k or replaces its value in place, keeping the original position.
func (m *Map) Set(k string, v any) *Map {
	for i, kk := range m.keys {
		if kk == k {
			m.vals[i] = v
			return m
		}
	}
	m.keys = append(m.keys, k)
	m.vals = append(m.vals, v)
	return m
}

// Get returns the value of k.
func (m *Map) Get(k string) (any, bool) {
	for i, kk := range m.keys {
		if kk == k {
			return m.vals[i], true
		}
	}
	return nil, false
}

// Delete removes k if present.
func (m *Map) Delete(k string) {
	for i, kk := range m.keys {
		if kk == k {
			m.keys = append(m.keys[:i], m.keys[i+1:]...)
			m.vals = append(m.vals[:i], m.vals[i+1:]...)
			return
		}
	}
}

// Len is the number of keys.
func (m *Map) Len() int { return len(m.keys) }

// Keys returns the keys in order; the slice must not be modified.
func (m *Map) Keys() []string { return m.keys }

// Range calls fn for each key in order.
func (m *Map) Range(fn func(k string, v any)) {
	for i, k := range m.keys {
		fn(k, m.vals[i])
	}
}
