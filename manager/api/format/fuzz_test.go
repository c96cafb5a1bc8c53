package format

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The renderers print what clients send us (display names, descriptions,
// rule text, user data) into documents that clients parse; mussel greps the
// YAML. A hostile string must come out as exactly one scalar holding that
// string: no line, key or document it could inject.

var stringSeeds = []string{
	"", " ", "a: b", "- x", "#x", "x #y", "---", "...", "? x", "{a: 1}", "[1]", "&a", "*a", "!tag x", "|", ">",
	"line1\nline2", "trailing\n", "\n\nleading", "tab\there", "\r\n", "\x00\x01\x7f", "\u2028\u2029\ufeff",
	"yes", "No", "on", "Y", "n", "OFF", "~", "null", "1e5", "0x1A", "1_000", "2013-01-01", "<<", "'", "\"", "\\",
	"';DROP TABLE instances;--", "$(reboot)", "`id`", "../../etc/passwd", "ünïcödé ✓ 😀", strings.Repeat("word ", 40),
	"a\xffb", ":sym", "key:\n  nested: x", "\t", " leading", "trailing ",
}

// FuzzYAMLString: {k: s} rendered as YAML parses (yaml.v3) to one mapping
// whose value is a scalar with text s; when the emitter left it plain, a
// Psych would not take it for a boolean or null either (it reads y/Y/n/N
// as strings; the emitter quotes y and n only, as Psych 4 did).
// Strings that are not UTF-8 are refused, as Psych refused them.
func FuzzYAMLString(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := YAML(NewMap(1).Set("k", s))
		if !utf8.ValidString(s) {
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("YAML of invalid UTF-8 %q: %q, %v", s, out, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("YAML(%q): %v", s, err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(out, &doc); err != nil {
			t.Fatalf("YAML of %q does not parse: %v\n%s", s, err, out)
		}
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode || len(root.Content) != 2 || root.Content[0].Value != ":k" {
			t.Fatalf("YAML of %q is not one mapping :k: %s", s, out)
		}
		v := root.Content[1]
		if v.Kind != yaml.ScalarNode || v.Value != s {
			t.Fatalf("YAML of %q reads back as %q (kind %v):\n%s", s, v.Value, v.Kind, out)
		}
		if v.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
			// (Whether a plain scalar is a number is Psych's business, which
			// the golden vectors pin; yaml.v3 is YAML 1.2 and reads 1e5 as a
			// float where Psych reads a string.)
			switch strings.ToLower(s) {
			case "", "~", "null", "yes", "no", "true", "false", "on", "off":
				t.Fatalf("%q left plain: Psych takes it for a boolean or null", s)
			}
		}
	})
}

// FuzzJSONString: {k: s} rendered as JSON decodes to s.
func FuzzJSONString(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := JSON(NewMap(1).Set("k", s))
		if !utf8.ValidString(s) {
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("JSON of invalid UTF-8 %q: %q, %v", s, out, err)
			}
			return
		}
		var back map[string]string
		if err != nil || json.Unmarshal(out, &back) != nil || len(back) != 1 || back["k"] != s {
			t.Fatalf("JSON of %q = %s (%v) reads back as %q", s, out, err, back)
		}
	})
}

// FuzzDecodeJSON: DecodeJSON → JSON → DecodeJSON gives the same value
// (key order included), and JSON of a decoded document is stable.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":1,"b":[1.5,"x",null,true],"c":{"d":-0.0}}`, `[]`, `1e400`, `{"a":1,"a":2}`,
		`18446744073709551615`, `-9223372036854775809`, `"\u0000\ud800"`, `{"k":"\u2028"}`, `1.0`, `[1e-7, 123456789.0]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeJSON(b)
		if err != nil {
			return
		}
		out, err := JSON(v)
		if err != nil {
			if errors.Is(err, ErrInvalidUTF8) {
				return // a lone surrogate escape decodes to U+FFFD... or bytes JSON cannot render
			}
			t.Fatalf("JSON(DecodeJSON(%q)): %v", b, err)
		}
		again, err := DecodeJSON(out)
		if err != nil {
			t.Fatalf("rendering %s of %q does not decode: %v", out, b, err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Fatalf("round trip of %q via %s:\n got %#v\nwant %#v", b, out, again, v)
		}
		if out2, _ := JSON(again); string(out2) != string(out) {
			t.Fatalf("rendering not stable: %s vs %s", out, out2)
		}
	})
}
