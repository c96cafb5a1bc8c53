package format

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
)

// m builds a *Map from alternating keys and values.
func m(kv ...any) *Map {
	d := NewMap(len(kv) / 2)
	for i := 0; i < len(kv); i += 2 {
		d.Set(kv[i].(string), kv[i+1])
	}
	return d
}

// TestYAMLStringQuoting pins how a string value is styled. Every expected
// document was printed by Ruby 3.1.2 (Psych 4.0.3, libyaml 0.2.5) for
// {k: s}.to_yaml, covering Psych's own rules (numbers, booleans, null,
// times and dates, leading indicators, "<<", "y"/"n") and libyaml's
// (": ", " #", leading/trailing spaces, unprintables, line folding at 80
// columns, literal block scalars with chomping and indentation hints).
func TestYAMLStringQuoting(t *testing.T) {
	words := strings.TrimSuffix(strings.Repeat("word ", 30), " ")
	cases := []struct {
		in   string
		want string
	}{
		{"", "---\n:k: ''\n"},
		{" ", "---\n:k: \" \"\n"},
		{"123", "---\n:k: '123'\n"},
		{"-5", "---\n:k: \"-5\"\n"},
		{"+5", "---\n:k: \"+5\"\n"},
		{"1.5", "---\n:k: '1.5'\n"},
		{"1.", "---\n:k: '1.'\n"},
		{"1e5", "---\n:k: 1e5\n"},
		{".5", "---\n:k: \".5\"\n"},
		{"0x1f", "---\n:k: '0x1f'\n"},
		{"0b101", "---\n:k: '0b101'\n"},
		{"0755", "---\n:k: '0755'\n"},
		{"0789", "---\n:k: '0789'\n"},
		{"08", "---\n:k: '08'\n"},
		{"1_000", "---\n:k: '1_000'\n"},
		{"1,000", "---\n:k: '1,000'\n"},
		{"1:30", "---\n:k: '1:30'\n"},
		{"1:30:15", "---\n:k: '1:30:15'\n"},
		{"true", "---\n:k: 'true'\n"},
		{"True", "---\n:k: 'True'\n"},
		{"TRUE", "---\n:k: 'TRUE'\n"},
		{"tRUe", "---\n:k: 'tRUe'\n"},
		{"false", "---\n:k: 'false'\n"},
		{"yes", "---\n:k: 'yes'\n"},
		{"Yes", "---\n:k: 'Yes'\n"},
		{"no", "---\n:k: 'no'\n"},
		{"NO", "---\n:k: 'NO'\n"},
		{"on", "---\n:k: 'on'\n"},
		{"off", "---\n:k: 'off'\n"},
		{"Off", "---\n:k: 'Off'\n"},
		{"y", "---\n:k: \"y\"\n"},
		{"n", "---\n:k: \"n\"\n"},
		{"Y", "---\n:k: Y\n"},
		{"N", "---\n:k: N\n"},
		{"null", "---\n:k: 'null'\n"},
		{"Null", "---\n:k: 'Null'\n"},
		{"NULL", "---\n:k: 'NULL'\n"},
		{"~", "---\n:k: \"~\"\n"},
		{"<<", "---\n:k: !!str '<<'\n"},
		{"2013-05-15", "---\n:k: '2013-05-15'\n"},
		{"2013-5-1", "---\n:k: '2013-5-1'\n"},
		{"2013-02-30", "---\n:k: 2013-02-30\n"},
		{"2012-02-29", "---\n:k: '2012-02-29'\n"},
		{"2013-05-15T06:21:36Z", "---\n:k: '2013-05-15T06:21:36Z'\n"},
		{"2013-05-15 06:21:36 +09:00", "---\n:k: '2013-05-15 06:21:36 +09:00'\n"},
		{"2013-13-01T00:00:00Z", "---\n:k: 2013-13-01T00:00:00Z\n"},
		{"2013-05-15T24:00:00Z", "---\n:k: '2013-05-15T24:00:00Z'\n"},
		{"a: b", "---\n:k: 'a: b'\n"},
		{"a:b", "---\n:k: a:b\n"},
		{"x:", "---\n:k: 'x:'\n"},
		{"a #b", "---\n:k: 'a #b'\n"},
		{"a#b", "---\n:k: a#b\n"},
		{"#x", "---\n:k: \"#x\"\n"},
		{"- x", "---\n:k: \"- x\"\n"},
		{"-x", "---\n:k: \"-x\"\n"},
		{"--x", "---\n:k: \"--x\"\n"},
		{"---", "---\n:k: \"---\"\n"},
		{"--- x", "---\n:k: \"--- x\"\n"},
		{"...", "---\n:k: \"...\"\n"},
		{"? x", "---\n:k: \"? x\"\n"},
		{"?x", "---\n:k: \"?x\"\n"},
		{":x", "---\n:k: \":x\"\n"},
		{":x\"y", "---\n:k: ':x\"y'\n"},
		{".inf", "---\n:k: \".inf\"\n"},
		{"-.inf", "---\n:k: \"-.inf\"\n"},
		{".nan", "---\n:k: \".nan\"\n"},
		{"@x", "---\n:k: \"@x\"\n"},
		{"`x", "---\n:k: \"`x\"\n"},
		{"%x", "---\n:k: \"%x\"\n"},
		{"!x", "---\n:k: \"!x\"\n"},
		{"&x", "---\n:k: \"&x\"\n"},
		{"*x", "---\n:k: \"*x\"\n"},
		{"|x", "---\n:k: \"|x\"\n"},
		{">x", "---\n:k: \">x\"\n"},
		{"'x", "---\n:k: \"'x\"\n"},
		{"\"x", "---\n:k: \"\\\"x\"\n"},
		{"x\"", "---\n:k: x\"\n"},
		{"{x}", "---\n:k: \"{x}\"\n"},
		{"[x]", "---\n:k: \"[x]\"\n"},
		{"]x", "---\n:k: \"]x\"\n"},
		{"}x", "---\n:k: \"}x\"\n"},
		{",x", "---\n:k: \",x\"\n"},
		{"a,b", "---\n:k: a,b\n"},
		{"a'b", "---\n:k: a'b\n"},
		{"a\"b", "---\n:k: a\"b\n"},
		{"=x", "---\n:k: \"=x\"\n"},
		{"/x", "---\n:k: \"/x\"\n"},
		{"\\x", "---\n:k: \"\\\\x\"\n"},
		{"_x", "---\n:k: _x\n"},
		{"(x)", "---\n:k: \"(x)\"\n"},
		{" lead", "---\n:k: \" lead\"\n"},
		{"trail ", "---\n:k: 'trail '\n"},
		{"  both  ", "---\n:k: \"  both  \"\n"},
		{"tab\there", "---\n:k: \"tab\\there\"\n"},
		{"\tx", "---\n:k: \"\\tx\"\n"},
		{"x\t", "---\n:k: \"x\\t\"\n"},
		{"cr\rx", "---\n:k: \"cr\\rx\"\n"},
		{"nul\u0000x", "---\n:k: \"nul\\0x\"\n"},
		{"bell\u0007", "---\n:k: \"bell\\a\"\n"},
		{"esc\u001b[0m", "---\n:k: \"esc\\e[0m\"\n"},
		{"del\x7f", "---\n:k: \"del\\x7F\"\n"},
		{"nbsp\u00a0x", "---\n:k: nbsp\u00a0x\n"},
		{"bom\ufeffx", "---\n:k: \"bom\\uFEFFx\"\n"},
		{"c1\u0085x", "---\n:k: \"c1\\Nx\"\n"},
		{"ls\u2028x", "---\n:k: 'ls\u2028  x'\n"},
		{"emoji😀", "---\n:k: \"emoji\\U0001F600\"\n"},
		{"テスト", "---\n:k: テスト\n"},
		{"Ⅻ", "---\n:k: Ⅻ\n"},
		{"²x", "---\n:k: \"²x\"\n"},
		{"٣x", "---\n:k: ٣x\n"},
		{"é", "---\n:k: é\n"},
		{"i-abcd1234", "---\n:k: i-abcd1234\n"},
		{"10.0.2.100", "---\n:k: 10.0.2.100\n"},
		{"ssh-rsa AAAAB3Nz user@host", "---\n:k: ssh-rsa AAAAB3Nz user@host\n"},
		{"4a:5b:6c:7d", "---\n:k: 4a:5b:6c:7d\n"},
		{"http://x/y?z=1&b=2", "---\n:k: http://x/y?z=1&b=2\n"},
		{"C:\\dir", "---\n:k: C:\\dir\n"},
		{"x\n", "---\n:k: 'x\n\n  '\n"},
		{"x\n\n", "---\n:k: \"x\\n\\n\"\n"},
		{"no\n", "---\n:k: 'no\n\n  '\n"},
		{"\n", "---\n:k: \"\\n\"\n"},
		{"\n\n", "---\n:k: \"\\n\\n\"\n"},
		{"line1\nline2", "---\n:k: |-\n  line1\n  line2\n"},
		{"line1\nline2\n", "---\n:k: |\n  line1\n  line2\n"},
		{"line1\nline2\n\n", "---\n:k: |+\n  line1\n  line2\n\n...\n"},
		{"\nleading", "---\n:k: |2-\n\n  leading\n"},
		{"  indented\nx", "---\n:k: |2-\n    indented\n  x\n"},
		{"trailing \nspace", "---\n:k: \"trailing \\nspace\"\n"},
		{"x\n y", "---\n:k: |-\n  x\n   y\n"},
		{"x\ty\nz", "---\n:k: \"x\\ty\\nz\"\n"},
		{words, "---\n:k: word word word word word word word word word word word word word word word word\n  word word word word word word word word word word word word word word\n"},
		{"key: " + words, "---\n:k: 'key: word word word word word word word word word word word word word word word\n  word word word word word word word word word word word word word word word'\n"},
		{words + "\t", "---\n:k: \"word word word word word word word word word word word word word word word word\n  word word word word word word word word word word word word word word\\t\"\n"},
		{strings.Repeat("a", 100), "---\n:k: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"},
		{strings.ReplaceAll(words, " ", "  "), "---\n:k: word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word  word\n"},
		{"'" + words + "'", "---\n:k: \"'word word word word word word word word word word word word word word word word\n  word word word word word word word word word word word word word word'\"\n"},
		{words + "\n" + words, "---\n:k: |-\n  word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word\n  word word word word word word word word word word word word word word word word word word word word word word word word word word word word word word\n"},
	}
	for _, c := range cases {
		got, err := YAML(m("k", c.in))
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%q:\n got: %q\nwant: %q", c.in, got, c.want)
		}
	}
}

// TestYAMLDocuments pins document shapes. Expected YAML is what Ruby 3.1.2
// printed for the equivalent symbol-keyed value; expected JSON is Ruby's
// JSON.generate except for times, which this API renders as ISO-8601 UTC.
func TestYAMLDocuments(t *testing.T) {
	utc := time.Date(2013, 5, 15, 6, 21, 36, 0, time.UTC)
	tokyo := time.FixedZone("JST", 9*3600)
	type server struct {
		Name string   `json:"name"`
		N    int      `json:"n"`
		Tags []string `json:"tags"`
	}
	cases := []struct {
		name     string
		in       any
		wantYAML string
		wantJSON string // "" when Ruby's JSON could not render it either
	}{
		{"nested arrays of arrays",
			[]any{[]any{[]string{"a", "b"}, []any{}}, []any{[]any{"c"}}, []any{}, []any{m()}, []any{[]any{m("a", 1)}}},
			"---\n- - - a\n    - b\n  - []\n- - - c\n- []\n- - {}\n- - - :a: 1\n",
			`[[["a","b"],[]],[["c"]],[],[{}],[[{"a":1}]]]`},
		{"map[string]any has sorted keys",
			map[string]any{"zeta": 1, "alpha": map[string]any{"b": 2, "a": []int{1, 2}}, "mid": nil},
			"---\n:alpha:\n  :a:\n  - 1\n  - 2\n  :b: 2\n:mid:\n:zeta: 1\n",
			`{"alpha":{"a":[1,2],"b":2},"mid":null,"zeta":1}`},
		{"list envelope",
			[]*Map{m("total", 1, "start", 0, "limit", 250, "results", []*Map{
				m("id", "i-abcd1234", "state", "running",
					"vif", []map[string]any{{"vif_id": "vif-1", "ipv4": m("address", "10.0.0.1", "nat_address", nil)}},
					"labels", []string{}),
			})},
			"---\n- :total: 1\n  :start: 0\n  :limit: 250\n  :results:\n  - :id: i-abcd1234\n    :state: running\n    :vif:\n    - :ipv4:\n        :address: 10.0.0.1\n        :nat_address:\n      :vif_id: vif-1\n    :labels: []\n",
			`[{"total":1,"start":0,"limit":250,"results":[{"id":"i-abcd1234","state":"running","vif":[{"ipv4":{"address":"10.0.0.1","nat_address":null},"vif_id":"vif-1"}],"labels":[]}]}]`},
		{"top nil", nil, "---\n", "null"},
		{"top string", "foo", "--- foo\n", `"foo"`},
		{"top empty string", "", "--- ''\n", `""`},
		{"top int", 42, "--- 42\n", "42"},
		{"top float", 1.5, "--- 1.5\n", "1.5"},
		{"top bool", true, "--- true\n", "true"},
		{"top time", utc, "--- 2013-05-15 06:21:36.000000000 Z\n", `"2013-05-15T06:21:36Z"`},
		{"top keep block scalar ends the stream", "x\n\n\n", "--- |+\n  x\n\n\n...\n", `"x\n\n\n"`},
		{"top literal", "a\nb", "--- |-\n  a\n  b\n", `"a\nb"`},
		{"top strings", []string{"a", "b"}, "---\n- a\n- b\n", `["a","b"]`},
		{"top empty sequence", []any{}, "--- []\n", "[]"},
		{"top empty map", m(), "--- {}\n", "{}"},
		{"floats",
			m("a", 100.0, "b", 0.5, "c", 1e20, "d", 1e-5, "e", math.Copysign(0, -1), "i", 1e15, "j", 123456789.125, "k", 1234567890123456.8),
			"---\n:a: 100.0\n:b: 0.5\n:c: 1.0e+20\n:d: 1.0e-05\n:e: -0.0\n:i: 1.0e+15\n:j: 123456789.125\n:k: 1234567890123456.8\n",
			`{"a":100.0,"b":0.5,"c":1.0e+20,"d":1.0e-05,"e":-0.0,"i":1.0e+15,"j":123456789.125,"k":1234567890123456.8}`},
		{"non-finite floats", m("nan", math.NaN(), "inf", math.Inf(1), "ninf", math.Inf(-1)),
			"---\n:nan: .nan\n:inf: .inf\n:ninf: -.inf\n", ""},
		{"times are shown in UTC",
			m("utc", utc, "nanos", time.Date(2013, 5, 15, 15, 21, 36, 123456789, tokyo)),
			"---\n:utc: 2013-05-15 06:21:36.000000000 Z\n:nanos: 2013-05-15 06:21:36.123456789 Z\n",
			`{"utc":"2013-05-15T06:21:36Z","nanos":"2013-05-15T06:21:36Z"}`},
		{"keys needing quotes or the explicit form",
			m(strings.Repeat("k", 130), 1, "a: b", 2, "", 3, "multi\nline", 4, "テスト", 5, "a b", []int{6}),
			"---\n? :" + strings.Repeat("k", 130) + "\n: 1\n! ':a: b': 2\n!ruby/symbol '': 3\n? ! ':multi\n\n  line'\n: 4\n:テスト: 5\n:a b:\n- 6\n",
			`{"` + strings.Repeat("k", 130) + `":1,"a: b":2,"":3,"multi\nline":4,"テスト":5,"a b":[6]}`},
		{"sequence of mappings of sequences",
			[]any{m("a", []any{m("b", []any{1, m()})})},
			"---\n- :a:\n  - :b:\n    - 1\n    - {}\n",
			`[{"a":[{"b":[1,{}]}]}]`},
		{"block scalars inside sequences",
			m("script", []string{"#!/bin/sh\necho hi\n", "x\n\n", "  indented\nline\n"}, "after", 1),
			"---\n:script:\n- |\n  #!/bin/sh\n  echo hi\n- \"x\\n\\n\"\n- |2\n    indented\n  line\n:after: 1\n",
			`{"script":["#!/bin/sh\necho hi\n","x\n\n","  indented\nline\n"],"after":1}`},
		{"unknown types go through encoding/json",
			server{Name: "web", N: 2, Tags: []string{"x"}},
			"---\n:name: web\n:n: 2\n:tags:\n- x\n",
			`{"name":"web","n":2,"tags":["x"]}`},
		{"json.Number and json.RawMessage",
			m("n", json.Number("2.0"), "raw", json.RawMessage(`{"b": [1, "<&>"], "a": null}`)),
			"---\n:n: 2.0\n:raw:\n  :b:\n  - 1\n  - \"<&>\"\n  :a:\n",
			`{"n":2.0,"raw":{"b":[1,"<&>"],"a":null}}`},
		{"map[string]string and typed slices",
			m("env", map[string]string{"B": "2", "A": "yes"}, "ints", []int64{-1, 2}, "fs", []float64{1, 0.25}),
			"---\n:env:\n  :A: 'yes'\n  :B: '2'\n:ints:\n- -1\n- 2\n:fs:\n- 1.0\n- 0.25\n",
			`{"env":{"A":"yes","B":"2"},"ints":[-1,2],"fs":[1.0,0.25]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y, err := YAML(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(y) != c.wantYAML {
				t.Errorf("YAML\n got: %q\nwant: %q", y, c.wantYAML)
			}
			j, err := JSON(c.in)
			if c.wantJSON == "" {
				if err == nil {
					t.Errorf("JSON: want an error, got %s", j)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(j) != c.wantJSON {
				t.Errorf("JSON\n got: %s\nwant: %s", j, c.wantJSON)
			}
		})
	}
}

// TestJSONStrings pins Ruby's generator escaping: no escaping of '/', '<',
// '>', '&', DEL, U+2028 or non-ASCII; short escapes for \b \f \n \r \t;
// lowercase \u00xx for the other C0 controls.
func TestJSONStrings(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a/b<c>&d", `"a/b<c>&d"`},
		{"q\"b\\s", `"q\"b\\s"`},
		{"\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"\x00\x01\x1b\x1f\x7f", `"\u0000\u0001\u001b\u001f` + "\x7f\""},
		{"テスト😀\u2028", "\"テスト😀\u2028\""},
	}
	for _, c := range cases {
		got, err := JSON(c.in)
		if err != nil || string(got) != c.want {
			t.Errorf("%q: got %s, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []any{"\xff", m("k\xfe", 1), []string{"ok", "\xc3"}} {
		if _, err := JSON(bad); err != ErrInvalidUTF8 {
			t.Errorf("JSON(%q): err %v, want ErrInvalidUTF8", bad, err)
		}
		if _, err := YAML(bad); err != ErrInvalidUTF8 {
			t.Errorf("YAML(%q): err %v, want ErrInvalidUTF8", bad, err)
		}
	}
}

// TestMapMarshalJSON checks that a *Map nested in encoding/json output keeps
// its order.
func TestMapMarshalJSON(t *testing.T) {
	v := struct {
		Doc *Map `json:"doc"`
	}{m("z", 1, "a", []any{m("y", "/"), nil})}
	got, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"doc":{"z":1,"a":[{"y":"/"},null]}}`; string(got) != want {
		t.Errorf("got %s want %s", got, want)
	}
}

func TestDecodeJSON(t *testing.T) {
	v, err := DecodeJSON([]byte(` {"b": 1, "a": [2.0, 3, 1e2, -0, 18446744073709551615, {"k": "v"}], "b": null} `))
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*Map)
	if got := strings.Join(d.Keys(), ","); got != "b,a" {
		t.Errorf("keys %s", got)
	}
	if b, _ := d.Get("b"); b != nil {
		t.Errorf("duplicate key: b = %v, want the last value (nil)", b)
	}
	a, _ := d.Get("a")
	arr := a.([]any)
	want := []any{2.0, int64(3), 100.0, int64(0), uint64(18446744073709551615)}
	for i, w := range want {
		if arr[i] != w {
			t.Errorf("a[%d] = %#v, want %#v", i, arr[i], w)
		}
	}
	if _, ok := arr[5].(*Map); !ok {
		t.Errorf("a[5] is %T, want *Map", arr[5])
	}
	for _, bad := range []string{``, `{`, `{"a":1} x`, `[1,]`, `{1:2}`} {
		if _, err := DecodeJSON([]byte(bad)); err == nil {
			t.Errorf("DecodeJSON(%q): want an error", bad)
		}
	}
}
