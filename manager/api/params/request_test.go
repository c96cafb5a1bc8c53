package params

import (
	"bytes"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

type m = map[string]any
type a = []any

func newReq(method, target, ct, body string) *http.Request {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return r
}

func TestFromRequest(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	cases := []struct {
		name string
		req  *http.Request
		want m
	}{
		{"query only", newReq("GET", "/x.yml?a=1&b[]=2;c", "", ""), m{"a": "1", "b": a{"2"}, "c": nil}},
		{"form over query, shallow", newReq("POST", "/x?a=q&h[x]=1&keep=1", form, "a=f&h[y]=2"),
			m{"a": "f", "h": m{"y": "2"}, "keep": "1"}},
		{"form body splits on & only", newReq("PUT", "/x", form+"; charset=UTF-8", "rule=a;b&c=1"),
			m{"rule": "a;b", "c": "1"}},
		{"form trailing NUL", newReq("POST", "/x", form, "a=1\x00"), m{"a": "1"}},
		{"POST without content type is a form", newReq("POST", "/x", "", "a=1"), m{"a": "1"}},
		{"PUT without content type ignored", newReq("PUT", "/x", "", "a=1"), m{}},
		{"unknown type ignored", newReq("POST", "/x?q=1", "text/plain", "a=1"), m{"q": "1"}},
		{"json", newReq("POST", "/instances?a=q&b=q", "application/json",
			`{"instance": {"b": "j", "n": 1.50, "i": -3, "t": true, "f": false, "z": null,
			  "arr": [1, "x", {"k": [true]}], "h": {"x": {"y": "1"}}}, "other": 1}`),
			m{"a": "q", "b": "j", "n": "1.50", "i": "-3", "t": "true", "f": "false", "z": nil,
				"arr": a{"1", "x", m{"k": a{"true"}}}, "h": m{"x": m{"y": "1"}}}},
		{"json first key wins, duplicate keeps last value", newReq("POST", "/x", "text/json; charset=utf-8",
			`{"a": {"v": "1"}, "b": {"v": "2"}, "a": {"v": "3"}}`), m{"v": "3"}},
		{"json keys are not Rack keys", newReq("POST", "/x", "application/json", `{"x": {"a[b]": "1"}}`),
			m{"a[b]": "1"}},
		{"empty json body", newReq("POST", "/x?a=1", "application/json", ""), m{"a": "1"}},
		{"yaml symbols", newReq("POST", "/x", "application/yaml",
			"---\n:security_group:\n  :rule: |-\n    tcp:22,22,ip4:0.0.0.0\n    icmp:-1,-1,ip4:0.0.0.0\n  :description: '123'\n  :n: 10\n  :yes: on\n  :q: 'on'\n  :nothing:\n  :tilde: ~\n  :list:\n  - :a: 1\n  ':quoted': x\n"),
			m{"rule": "tcp:22,22,ip4:0.0.0.0\nicmp:-1,-1,ip4:0.0.0.0", "description": "123", "n": "10",
				"yes": "true", "q": "on", "nothing": nil, "tilde": nil, "list": a{m{"a": "1"}}, ":quoted": "x"}},
		{"yaml first value is the params", newReq("POST", "/x", "text/yaml",
			"base: &b {x: '1', y: '2'}\nreq:\n  <<: *b\n"), m{"x": "1", "y": "2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := FromRequest(c.req, 1<<20)
			if err != nil {
				t.Fatalf("FromRequest: %v", err)
			}
			if !reflect.DeepEqual(map[string]any(got), c.want) {
				t.Errorf("got  %#v\nwant %#v", got, c.want)
			}
		})
	}
}

func TestYAMLMergeAndTags(t *testing.T) {
	body := "req:\n  <<: [*a, *b]\n  y: '3'\n  s: !!str yes\n  bin: !!binary aGk=\n  nb: !!bool 'off'\n"
	body = "x: &a {p: '1', q: a}\nz: &b {p: '2', r: b}\n" + body
	// First value must be req: wrap it as the document's first key.
	body = "wrapped:\n" + indent(body) + "\n"
	got, err := parseYAMLBody([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	req, ok := Params(got).Map("req")
	if !ok {
		t.Fatalf("no req in %#v", got)
	}
	want := m{"p": "1", "q": "a", "r": "b", "y": "3", "s": "yes", "bin": "hi", "nb": "false"}
	if !reflect.DeepEqual(map[string]any(req), want) {
		t.Errorf("got  %#v\nwant %#v", req, want)
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

func TestFromRequestMultipart(t *testing.T) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.WriteField("display_name", "web")
	_ = w.WriteField("security_groups[]", "sg-a")
	_ = w.WriteField("security_groups[]", "sg-b")
	fw, _ := w.CreateFormFile("rule", "rule.txt")
	_, _ = io.WriteString(fw, "tcp:22,22,ip4:0.0.0.0\n")
	_ = w.Close()
	r := httptest.NewRequest("POST", "/security_groups?display_name=q", &buf)
	r.Header.Set("Content-Type", w.FormDataContentType())
	got, err := FromRequest(r, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := m{"display_name": "web", "security_groups": a{"sg-a", "sg-b"}, "rule": "tcp:22,22,ip4:0.0.0.0\n"}
	if !reflect.DeepEqual(map[string]any(got), want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestFromRequestChunkedJSON(t *testing.T) {
	r := newReq("PUT", "/x", "application/json", `{"a": {"b": "c"}}`)
	r.ContentLength = -1
	got, err := FromRequest(r, 100)
	if err != nil || got.Str("b") != "c" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestFromRequestErrors(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	big := strings.Repeat("x", 101)
	chunked := newReq("POST", "/x", form, "a="+big)
	chunked.ContentLength = -1
	cases := []struct {
		name  string
		req   *http.Request
		want  func(error) bool
		limit int64 // 0: large enough for every body here
	}{
		{"too large", newReq("POST", "/x", form, "a="+big), isTooLarge, 100},
		{"too large chunked", chunked, isTooLarge, 100},
		{"too large json", newReq("POST", "/x", "application/json", `{"a":{"b":"`+big+`"}}`), isTooLarge, 100},
		{"conflict in query", newReq("GET", "/x?a=1&a[b]=2", "", ""), isConflict, 0},
		{"conflict in form", newReq("POST", "/x", form, "a[]=1&a[b]=2"), isConflict, 0},
		{"bad escape", newReq("POST", "/x", form, "a=%zz"), isMalformed, 0},
		{"bad json", newReq("POST", "/x", "application/json", `{"a":`), isInvalidBody, 0},
		{"json array", newReq("POST", "/x", "application/json", `[{"a":1}]`), isInvalidBody, 0},
		{"json empty object", newReq("POST", "/x", "application/json", `{}`), isInvalidBody, 0},
		{"json first value not object", newReq("POST", "/x", "application/json", `{"a": "x", "b": {}}`), isInvalidBody, 0},
		{"json trailing data", newReq("POST", "/x", "application/json", `{"a": {}} {}`), isInvalidBody, 0},
		{"json whitespace only", newReq("POST", "/x", "application/json", "  \n"), isInvalidBody, 0},
		{"bad yaml", newReq("POST", "/x", "application/yaml", "a: [1,\n"), isInvalidBody, 0},
		{"yaml scalar", newReq("POST", "/x", "text/yaml", "hello\n"), isInvalidBody, 0},
		{"yaml first value not mapping", newReq("POST", "/x", "text/yaml", "a:\n- 1\n"), isInvalidBody, 0},
		{"yaml complex key", newReq("POST", "/x", "text/yaml", "? [a]\n: {b: c}\n"), isInvalidBody, 0},
		{"yaml bomb", newReq("POST", "/x", "text/yaml", yamlBomb()), isInvalidBody, 0},
		{"multipart without boundary", newReq("POST", "/x", "multipart/form-data", "--x--"), isInvalidBody, 0},
		{"multipart truncated", newReq("POST", "/x", "multipart/form-data; boundary=zz",
			"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1"), isInvalidBody, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			limit := c.limit
			if limit == 0 {
				limit = 1 << 20
			}
			got, err := FromRequest(c.req, limit)
			t.Logf("%v", err)
			if err == nil || !c.want(err) {
				t.Errorf("got %#v, %v (%T)", got, err, err)
			}
		})
	}
}

// yamlBomb is the "billion laughs" document: nine levels of nine aliases.
func yamlBomb() string {
	var b strings.Builder
	b.WriteString("a: &a0 [x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 9; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	return "doc:\n" + indent(b.String()) + "\n"
}

func isTooLarge(err error) bool {
	var e *TooLargeError
	return errors.As(err, &e)
}

func isConflict(err error) bool {
	var e *ConflictError
	return errors.As(err, &e)
}

func isMalformed(err error) bool {
	var e *MalformedError
	return errors.As(err, &e)
}

func isInvalidBody(err error) bool { return errors.Is(err, ErrInvalidBody) }
