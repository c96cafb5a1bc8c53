package params

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
)

// vectorsPath is relative to this package directory: the repository sits next
// to /work/shared (locally and in the CI clone).
const vectorsPath = "../../../../shared/spec/rack-params-vectors.json"

type rackVectors struct {
	Generator string `json:"generator"`
	Cases     []struct {
		Query  string         `json:"query"`
		Params map[string]any `json:"params"`
	} `json:"cases"`
	Conflicting []struct {
		Query  string         `json:"query"`
		Params map[string]any `json:"params"`
		Error  string         `json:"error"`
	} `json:"conflicting"`
}

func TestRackVectors(t *testing.T) {
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("golden vectors missing: %v", err)
	}
	var vec rackVectors
	if err := json.Unmarshal(b, &vec); err != nil {
		t.Fatalf("decode vectors: %v", err)
	}
	if len(vec.Cases) == 0 || len(vec.Conflicting) == 0 {
		t.Fatalf("vectors file has no cases")
	}
	passed := 0
	for _, c := range vec.Cases {
		got, err := ParseQuery(c.Query)
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", c.Query, err)
			continue
		}
		if !reflect.DeepEqual(map[string]any(got), c.Params) {
			t.Errorf("ParseQuery(%q)\n got  %#v\n want %#v", c.Query, got, c.Params)
			continue
		}
		passed++
	}
	for _, c := range vec.Conflicting {
		got, err := ParseQuery(c.Query)
		if c.Error != "" {
			var ce *ConflictError
			if !errors.As(err, &ce) {
				t.Errorf("ParseQuery(%q) = %#v, %v; want *ConflictError (Ruby: %s)", c.Query, got, err, c.Error)
				continue
			}
		} else if err != nil || !reflect.DeepEqual(map[string]any(got), c.Params) {
			t.Errorf("ParseQuery(%q) = %#v, %v; want %#v", c.Query, got, err, c.Params)
			continue
		}
		passed++
	}
	t.Logf("%d/%d vectors pass (%s)", passed, len(vec.Cases)+len(vec.Conflicting), vec.Generator)
}

func TestParseQueryRackDetails(t *testing.T) {
	type m = map[string]any
	type a = []any
	cases := []struct {
		q    string
		want m
	}{
		{"", m{}},
		{"&&", m{}},
		{"=x&[]=y", m{}},
		{"a=1;b=2", m{"a": "1", "b": "2"}},
		{"a=1&  b=2; c=3", m{"a": "1", "b": "2", "c": "3"}},
		{"a==b", m{"a": "=b"}},
		{"a+b=c+d", m{"a b": "c d"}},
		{"a&a[b]=1", m{"a": m{"b": "1"}}},
		{"a&a[]=1", m{"a": a{"1"}}},
		{"a[]", m{"a": a{nil}}},
		{"a[][]=1", m{"a": a{a{"1"}}}},
		{"a[][x]=1&a[][]=2", m{"a": a{m{"x": "1"}}}},
		{"a[[]]=1", m{"a": nil}},
		{"a[=1", m{"a[": "1"}},
		{"x[y][=1", m{"x": m{"[y][": "1"}}},
		{"[a]=1", m{"a": "1"}},
		{"]]a]]]b=1", m{"a": m{"b": "1"}}},
		{"a[b]c=1", m{"a": m{"b": m{"c": "1"}}}},
		{"a[][b][c]=1&a[][b][d]=2&a[][b][c]=3", m{"a": a{m{"b": m{"c": "1", "d": "2"}}, m{"b": m{"c": "3"}}}}},
		{"a[]=1&a[][b]=2", m{"a": a{"1", m{"b": "2"}}}},
		{"v=%FF", m{"v": "\xff"}},
		// Ruby's ^ and $ are line anchors: the second line of these keys matches
		// /^\[\]\[([^\[\]]+)\]$/ resp. /^\[\](.+)$/, turning "a" into an array.
		{"a[x%0A[][b]=1", m{"a": a{m{"b": "1"}}}},
		{"a[x%0A[][b]]=1", m{"a": a{m{"b": "1"}}}},
	}
	for _, c := range cases {
		got, err := ParseQuery(c.q)
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", c.q, err)
			continue
		}
		if !reflect.DeepEqual(map[string]any(got), c.want) {
			t.Errorf("ParseQuery(%q)\n got  %#v\n want %#v", c.q, got, c.want)
		}
	}
}

func TestParseQueryErrors(t *testing.T) {
	deep := "a" + strings.Repeat("[x]", 99) + "=1"
	if _, err := ParseQuery(deep); err != nil {
		t.Errorf("99 levels must pass (Rack's limit is 100 calls): %v", err)
	}
	cases := []struct {
		q        string
		conflict string // key of the *ConflictError, "" for *MalformedError
	}{
		{"a[]=1&a[b]=2", "a"},
		{"a=1&a[b]=2", "a"},
		{"a=1&a[]=2", "a"},
		{"a[b]=1&a[]=2", "a"},
		{"a[b]=1&a[b][]=2", "b"},
		{"a[][b]=1&a[][b][c]=2", "b"},
		{"a[][b]=1&a[][b][]=2", "b"},
		{"a=%", ""},
		{"a=%zz", ""},
		{"%=1", ""},
		{"%FF=1", ""},
		{"a" + strings.Repeat("[x]", 100) + "=1", ""},
	}
	for _, c := range cases {
		got, err := ParseQuery(c.q)
		if c.conflict != "" {
			var ce *ConflictError
			if !errors.As(err, &ce) || ce.Key != c.conflict {
				t.Errorf("ParseQuery(%q) = %v, %v; want ConflictError{%q}", c.q, got, err, c.conflict)
			}
			continue
		}
		var me *MalformedError
		if !errors.As(err, &me) {
			t.Errorf("ParseQuery(%q) = %v, %v; want *MalformedError", c.q, got, err)
		}
	}
}

// checkValues asserts the Params value set: string, nil, []any, map[string]any.
func checkValues(t *testing.T, v any) {
	t.Helper()
	switch v := v.(type) {
	case nil, string:
	case []any:
		for _, e := range v {
			checkValues(t, e)
		}
	case map[string]any:
		for _, e := range v {
			checkValues(t, e)
		}
	case Params:
		for _, e := range v {
			checkValues(t, e)
		}
	default:
		t.Fatalf("value of type %T outside the Params value set", v)
	}
}

func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"a=1&b=2", "a[]=1&a[b]=2", "a[][b]=1&a[][c]=2&a[][b]=3", "a[[]]=1", "a[x%0A[][b]]=1",
		"vifs[eth0][security_groups][]=sg-a", "x[0][y]=1&x[1][y]=2", "a=%zz", "a;b=+%20",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		p, err := ParseQuery(q)
		if err != nil {
			var ce *ConflictError
			var me *MalformedError
			if !errors.As(err, &ce) && !errors.As(err, &me) {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			return
		}
		checkValues(t, p)
	})
}
