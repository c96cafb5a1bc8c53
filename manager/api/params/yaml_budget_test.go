package params

import (
	"errors"
	"strings"
	"testing"
)

func TestYAMLAliasBudgetIsProportionalToTheBody(t *testing.T) {
	// 10^8 nodes once expanded, from a few hundred bytes.
	bomb := "x:\n a: &a [l,l,l,l,l,l,l,l,l,l]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h"} {
		bomb += " " + n + ": &" + n + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+",", 10), ",") + "]\n"
		prev = n
	}
	if _, err := parseYAMLBody([]byte(bomb)); !errors.Is(err, ErrInvalidBody) {
		t.Fatalf("alias bomb: %v", err)
	}
	// The work it may cause is bounded by its size, not by a fixed million.
	if b := max(yamlMinBudget, yamlBudgetFactor*len(bomb)); b > 20000 {
		t.Fatalf("a %d-byte body may expand to %d nodes", len(bomb), b)
	}
	// Legitimate aliases (merge keys) within the budget still work.
	ok := "x:\n  base: &b {image_id: wmi-a, cpu_cores: 1}\n  one: {<<: *b, display_name: one}\n  two: {<<: *b, display_name: two}\n"
	p, err := parseYAMLBody([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if one, _ := p.Map("one"); one.Str("image_id") != "wmi-a" || one.Str("display_name") != "one" {
		t.Fatalf("merge: %#v", p)
	}
}
