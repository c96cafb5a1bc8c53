package params

import (
	"errors"
	"reflect"
	"testing"
)

func TestAccessors(t *testing.T) {
	p := Params{
		"s":     "x",
		"empty": "",
		"nil":   nil,
		"t":     "true",
		"T":     "TRUE",
		"arr":   []any{"a", "b"},
		"mixed": []any{"a", map[string]any{}},
		"idx":   map[string]any{"10": "c", "2": "b", "0": "a"},
		"hash":  map[string]any{"k": "v"},
		"n":     "-42",
		"big":   "99999999999999999999",
		"sp":    " 1",
		"digit": "17",
	}

	if !p.Has("nil") || p.Has("absent") {
		t.Errorf("Has: nil must count as present, absent must not")
	}
	for key, want := range map[string]string{"s": "x", "nil": "", "absent": "", "arr": "", "hash": ""} {
		if got := p.Str(key); got != want {
			t.Errorf("Str(%q) = %q, want %q", key, got, want)
		}
	}
	for key, want := range map[string]bool{"s": true, "empty": true, "nil": false, "absent": false, "arr": false} {
		if _, ok := p.StrOK(key); ok != want {
			t.Errorf("StrOK(%q) ok = %v, want %v", key, ok, want)
		}
	}
	if !p.IsTrue("t") || p.IsTrue("T") || p.IsTrue("s") || p.IsTrue("absent") {
		t.Errorf("IsTrue must accept exactly \"true\"")
	}
	if m, ok := p.Map("hash"); !ok || m.Str("k") != "v" {
		t.Errorf("Map(hash) = %v, %v", m, ok)
	}
	if _, ok := p.Map("s"); ok {
		t.Errorf("Map(s) must fail")
	}

	strs := []struct {
		key  string
		want []string
		ok   bool
	}{
		{"s", []string{"x"}, true},
		{"arr", []string{"a", "b"}, true},
		{"idx", []string{"a", "b", "c"}, true},
		{"mixed", nil, false},
		{"hash", nil, false},
		{"nil", nil, false},
		{"absent", nil, false},
	}
	for _, c := range strs {
		got, ok := p.Strings(c.key)
		if ok != c.ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Strings(%q) = %#v, %v; want %#v, %v", c.key, got, ok, c.want, c.ok)
		}
	}

	ints := []struct {
		key     string
		n       int64
		present bool
		bad     bool
	}{
		{"n", -42, true, false},
		{"digit", 17, true, false},
		{"absent", 0, false, false},
		{"nil", 0, false, false},
		{"empty", 0, true, true},
		{"sp", 0, true, true},
		{"big", 0, true, true},
		{"arr", 0, true, true},
	}
	for _, c := range ints {
		n, present, err := p.Int(c.key)
		var ve *ValueError
		if n != c.n || present != c.present || (err != nil) != c.bad || (err != nil && !errors.As(err, &ve)) {
			t.Errorf("Int(%q) = %d, %v, %v", c.key, n, present, err)
		}
	}

	digits := []struct {
		key string
		n   int64
		bad bool
	}{
		{"digit", 17, false},
		{"absent", 5, false},
		{"nil", 5, false},
		{"empty", 0, true},
		{"n", 0, true},
		{"sp", 0, true},
		{"big", 0, true},
		{"arr", 0, true},
	}
	for _, c := range digits {
		n, err := p.Digits(c.key, 5)
		var ve *ValueError
		if n != c.n || (err != nil) != c.bad || (err != nil && (!errors.As(err, &ve) || ve.Key != c.key)) {
			t.Errorf("Digits(%q) = %d, %v", c.key, n, err)
		}
	}
}
