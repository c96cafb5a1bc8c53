package format

import (
	"encoding/json"
	"os"
	"testing"
)

// TestPsychCorpus replays testdata/psych-corpus.json: a few thousand random
// documents and tricky strings (keywords, numbers, dates and times, YAML
// indicators, unprintables, long lines, odd keys) with what Ruby 3.1.2 /
// Psych 4.0.3 / libyaml 0.2.5 printed for them. See psych-corpus.rb.
func TestPsychCorpus(t *testing.T) {
	data, err := os.ReadFile("testdata/psych-corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct{ Cases []vectorCase }
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	failures := 0
	for _, c := range file.Cases {
		v, err := DecodeJSON(c.Value)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		y, err := YAML(v)
		if err != nil || string(y) != c.YAML {
			failures++
			t.Errorf("%s YAML (%v)\nvalue: %s\n  got: %q\n want: %q", c.Name, err, c.Value, y, c.YAML)
		}
		j, err := JSON(v)
		if err != nil || string(j) != *c.JSON {
			failures++
			t.Errorf("%s JSON (%v)\n got: %s\nwant: %s", c.Name, err, j, *c.JSON)
		}
		if failures > 10 {
			t.Fatal("too many failures")
		}
	}
	if len(file.Cases) < 1000 {
		t.Fatalf("corpus has only %d cases", len(file.Cases))
	}
}

// TestAnalyzeShortcut checks that the fast path of the scalar analysis agrees
// with the line-by-line port of libyaml wherever it answers.
func TestAnalyzeShortcut(t *testing.T) {
	const alphabet = " -:#.,?[]{}a1_/\"'\t~&*!|>%@`="
	var corpus []string
	var grow func(prefix string, depth int)
	grow = func(prefix string, depth int) {
		corpus = append(corpus, prefix)
		if depth == 0 {
			return
		}
		for i := 0; i < len(alphabet); i++ {
			grow(prefix+alphabet[i:i+1], depth-1)
		}
	}
	grow("", 3)
	corpus = append(corpus, "---", "--- x", "...", "....", "..x", ":id", "i-abcd1234",
		"2013-05-15 06:21:36.000000000 Z", "a: b", "a:b", "a #b", "a#b", "x ")
	answered := 0
	for _, s := range corpus {
		fast, ok := analyzeSimpleScalar(s)
		if !ok {
			continue
		}
		answered++
		if full := analyzeScalarFull(s); fast != full {
			t.Errorf("%q: shortcut %+v, full %+v", s, fast, full)
		}
	}
	if answered < 1000 {
		t.Errorf("shortcut answered only %d strings", answered)
	}
}
