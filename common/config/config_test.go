package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadFile(t *testing.T) {
	type cfg struct {
		A string `json:"a"`
		B int    `json:"b"`
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(good, []byte(`{"a": "x"}`), 0o600)
	_ = os.WriteFile(bad, []byte(`{"a": "x", "typo": 1}`), 0o600)
	c := cfg{A: "default", B: 7}
	if err := LoadFile(good, &c); err != nil || c.A != "x" || c.B != 7 {
		t.Fatalf("LoadFile = %+v, %v (the file overrides only its keys)", c, err)
	}
	if err := LoadFile(bad, &c); err == nil {
		t.Fatal("an unknown key was accepted")
	}
	if err := LoadFile(filepath.Join(dir, "missing.json"), &c); err == nil {
		t.Fatal("a missing file was accepted")
	}
	var l List
	_ = l.Set("a")
	_ = l.Set("b")
	if l.String() != "a,b" {
		t.Fatalf("List = %q", l.String())
	}
}
