package params

import (
	"bytes"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

// Properties shared by every parser of this package:
//   - no input makes it panic;
//   - what it returns holds only the Params value set (string, nil, []any,
//     map[string]any, recursively);
//   - a failure is one of its typed errors, which the API maps to 400
//     (ConflictError, MalformedError → 400/143; ErrInvalidBody → 400 plain)
//     or 413 (TooLargeError) — see FuzzRequestParams in package api for
//     the mapping itself;
//   - where a renderer exists, parse → render → parse gives the same value.

func checkValueSet(t *testing.T, v any, depth int) {
	t.Helper()
	if depth > 2*depthLimit+2 {
		t.Fatalf("value nested %d deep", depth)
	}
	switch x := v.(type) {
	case nil, string:
	case []any:
		for _, e := range x {
			checkValueSet(t, e, depth+1)
		}
	case map[string]any:
		for _, e := range x {
			checkValueSet(t, e, depth+1)
		}
	case Params:
		for _, e := range x {
			checkValueSet(t, e, depth+1)
		}
	default:
		t.Fatalf("value of type %T: %#v", v, v)
	}
}

func queryError(t *testing.T, in string, err error) {
	t.Helper()
	var ce *ConflictError
	var me *MalformedError
	if !errors.As(err, &ce) && !errors.As(err, &me) {
		t.Fatalf("ParseQuery(%q) error %T %v, want *ConflictError or *MalformedError", in, err, err)
	}
}

// buildQuery is Rack's build_nested_query (hash keys sorted).
func buildQuery(v any, prefix string) []string {
	switch x := v.(type) {
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, buildQuery(e, prefix+"[]")...)
		}
		return out
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out []string
		for _, k := range keys {
			name := url.QueryEscape(k)
			if prefix != "" {
				name = prefix + "[" + name + "]"
			}
			out = append(out, buildQuery(x[k], name)...)
		}
		return out
	case nil:
		return []string{prefix}
	default:
		return []string{prefix + "=" + url.QueryEscape(x.(string))}
	}
}

// renderable says whether Rack's nested encoding can carry v back: keys
// must be non-empty without brackets or newlines (Rack splits decoded keys
// at brackets), containers non-empty, arrays not directly nested, and no
// two hashes adjacent in an array (Rack merges a[][x]=..&a[][y]=.. into one).
func renderable(v any, inArray bool) bool {
	switch x := v.(type) {
	case []any:
		if len(x) == 0 || inArray {
			return false
		}
		prevHash := false
		for _, e := range x {
			_, isHash := e.(map[string]any)
			if (isHash && prevHash) || !renderable(e, true) {
				return false
			}
			prevHash = isHash
		}
	case map[string]any:
		if len(x) == 0 {
			return false
		}
		for k, e := range x {
			if k == "" || strings.ContainsAny(k, "[]\n") || !renderable(e, false) {
				return false
			}
		}
	}
	return true
}

func rackSeeds(f *testing.F) {
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		f.Fatalf("golden vectors missing: %v", err)
	}
	var vec rackVectors
	if err := json.Unmarshal(b, &vec); err != nil {
		f.Fatal(err)
	}
	for _, c := range vec.Cases {
		f.Add(c.Query)
	}
	for _, c := range vec.Conflicting {
		f.Add(c.Query)
	}
	for _, s := range []string{
		"a[]=1&a[b]=2", "a=1&a[b]=2", "%", "a=%zz", "%ff=1", "a" + strings.Repeat("[a]", 120) + "=1",
		"a[][b]=1&a[][c]=2&a[][b]=3", "a[%5B]=1", "a%0A[]=1", "x=';DROP TABLE x;--", "p=../../etc/passwd",
		"u=%E2%9C%93&v=%00", "a;b=1", "a=1&&&;;b", "a[[]]=1", "[]=1", "a[]", "k=" + strings.Repeat("9", 400),
	} {
		f.Add(s)
	}
}

// FuzzParseQueryRoundTrip: Rack's nested query decoder.
func FuzzParseQueryRoundTrip(f *testing.F) {
	rackSeeds(f)
	f.Fuzz(func(t *testing.T, q string) {
		p, err := ParseQuery(q)
		if err != nil {
			queryError(t, q, err)
			return
		}
		checkValueSet(t, map[string]any(p), 0)
		if !renderable(map[string]any(p), false) {
			return
		}
		back := strings.Join(buildQuery(map[string]any(p), ""), "&")
		again, err := ParseQuery(back)
		if err != nil {
			t.Fatalf("rendering %q of %q does not parse: %v", back, q, err)
		}
		if !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip of %q via %q:\n got %#v\nwant %#v", q, back, again, p)
		}
	})
}

func bodyError(t *testing.T, what string, in []byte, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalidBody) {
		t.Fatalf("%s(%q) error %T %v, want ErrInvalidBody", what, in, err, err)
	}
}

func allUTF8(v any) bool { return allStrings(v, utf8.ValidString) }

// allStrings reports whether ok holds for every key and string in v.
func allStrings(v any, ok func(string) bool) bool {
	switch x := v.(type) {
	case string:
		return ok(x)
	case []any:
		for _, e := range x {
			if !allStrings(e, ok) {
				return false
			}
		}
	case map[string]any:
		for k, e := range x {
			if !ok(k) || !allStrings(e, ok) {
				return false
			}
		}
	case Params:
		return allStrings(map[string]any(x), ok)
	}
	return true
}

// yamlWritable reports whether encoding/json's rendering of s is also
// YAML: JSON escapes C0 controls but writes DEL, the C1 controls and
// U+FFFE/U+FFFF raw, which YAML does not allow unescaped (found by
// FuzzYAMLBody: "\x80" in a double-quoted YAML scalar reads fine, and its
// JSON rendering does not).
func yamlWritable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == 0x7f || (r >= 0x80 && r <= 0x9f && r != 0x85) || r == 0xfffe || r == 0xffff {
			return false
		}
	}
	return true
}

func jsonSeeds(f *testing.F) {
	for _, s := range []string{
		`{"ssh_key_pair": {"display_name": "k", "description": null}}`,
		`{"instance": {"cpu_cores": 1, "vifs": {"eth0": {"network": "nw-a"}}, "x": [1, 2.5e3, true, false, null]}}`,
		`{"a": {"b": "1"}, "a": {"c": "2"}}`, `{"a": 1}`, `{}`, `[]`, `{"a": {}} trailing`, `{"a": {"k": "\u0000\ud800"}}`,
		`{"a": {"k": 123456789012345678901234567890}}`, `{"a":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat(`}`, 201),
		`{"a": {"": "empty key", "k\"": "\\"}}`,
	} {
		f.Add([]byte(s))
	}
}

// FuzzJSONBody: ActiveResource-style JSON bodies. Round trip: the hash
// rendered back as {"x": hash} parses to the same hash.
func FuzzJSONBody(f *testing.F) {
	jsonSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseJSONBody(b)
		if err != nil {
			bodyError(t, "parseJSONBody", b, err)
			return
		}
		checkValueSet(t, map[string]any(p), 0)
		if !allUTF8(p) {
			return // encoding/json would replace the broken bytes
		}
		out, err := json.Marshal(map[string]any{"x": map[string]any(p)})
		if err != nil {
			t.Fatalf("render %#v: %v", p, err)
		}
		again, err := parseJSONBody(out)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip of %q via %s: %#v, %v", b, out, again, err)
		}
	})
}

// FuzzYAMLBody: YAML bodies as Psych read them. Round trip: the hash
// rendered as JSON (which is YAML, every scalar quoted) parses to the same.
func FuzzYAMLBody(f *testing.F) {
	jsonSeeds(f)
	for _, s := range []string{
		"--- \n:ssh_key_pair:\n  :display_name: k\n  :description: ~\n",
		"instance:\n  cpu_cores: 1\n  flag: yes\n  off: Off\n  list: [a, 1, null]\n",
		"a: &x {b: 1}\nc: *x\n", "a:\n  <<: {b: 1}\n  c: 2\n", "a: {b: !!binary aGVsbG8=}\n",
		"a: &a [*a]\n", "a: {b: !!binary '***'}\n", "a:\n  ? [x]\n  : 1\n", "- 1\n- 2\n", "a: b\n---\nc: d\n",
		"a: &a [a,a,a,a,a,a,a,a]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d]\n",
		"a: {\"k\": \"\\x00\\u2028\"}\n", "a: {b: !!str 1, c: !!null x, d: !!bool yes, e: !!int 07}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseYAMLBody(b)
		if err != nil {
			bodyError(t, "parseYAMLBody", b, err)
			return
		}
		checkValueSet(t, map[string]any(p), 0)
		if !allStrings(p, yamlWritable) {
			return
		}
		out, err := json.Marshal(map[string]any{"x": map[string]any(p)})
		if err != nil {
			t.Fatalf("render %#v: %v", p, err)
		}
		again, err := parseYAMLBody(out)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip of %q via %s:\n got %#v, %v\nwant %#v", b, out, again, err, p)
		}
	})
}

var fuzzMediaTypes = []string{
	"application/x-www-form-urlencoded", "", "application/json", "text/json; charset=utf-8",
	"application/yaml", "text/yaml", "multipart/form-data", "text/plain", "multipart/form-data; boundary=",
}

// FuzzFromRequest: a whole request (query, media type, body) as the API
// receives it, multipart included.
func FuzzFromRequest(f *testing.F) {
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("vifs[eth0][network]", "nw-a")
	fw, _ := mw.CreateFormFile("user_data", "ud.txt")
	_, _ = fw.Write([]byte("#!/bin/sh\necho hi\n"))
	_ = mw.Close()
	f.Add("a=1", uint8(6), mp.Bytes(), mw.Boundary())
	f.Add("a[]=1", uint8(0), []byte("a[b]=2"), "")
	f.Add("", uint8(2), []byte(`{"x": {"a": [1, {"b": null}]}}`), "")
	f.Add("stale=true", uint8(4), []byte("x:\n  a: 1\n"), "")
	f.Add("", uint8(1), []byte("display_name=%E2%9C%93\x00"), "")
	f.Fuzz(func(t *testing.T, query string, ct uint8, body []byte, boundary string) {
		mt := fuzzMediaTypes[int(ct)%len(fuzzMediaTypes)]
		if mt == "multipart/form-data" {
			mt += "; boundary=\"" + strings.ReplaceAll(boundary, `"`, "") + "\""
		}
		r, err := http.NewRequest(http.MethodPost, "http://x/api", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.URL.RawQuery = query
		if mt != "" {
			r.Header.Set("Content-Type", mt)
		}
		p, err := FromRequest(r, 1<<16)
		if err != nil {
			var ce *ConflictError
			var me *MalformedError
			var tl *TooLargeError
			if !errors.As(err, &ce) && !errors.As(err, &me) && !errors.As(err, &tl) && !errors.Is(err, ErrInvalidBody) {
				t.Fatalf("FromRequest error %T %v", err, err)
			}
			return
		}
		checkValueSet(t, map[string]any(p), 0)
	})
}
