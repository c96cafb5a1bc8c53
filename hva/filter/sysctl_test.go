package filter_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vdc-project/vdc/hva/filter"
)

func TestEnsureBridgeNetfilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge-nf-call-iptables")
	if _, err := filter.EnsureBridgeNetfilter(path); err == nil {
		t.Fatal("a missing sysctl was accepted")
	}
	if err := os.WriteFile(path, []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := filter.EnsureBridgeNetfilter(path); err != nil || !changed {
		t.Fatalf("EnsureBridgeNetfilter = %v, %v; want it turned on", changed, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "1\n" {
		t.Fatalf("sysctl = %q", b)
	}
	if changed, err := filter.EnsureBridgeNetfilter(path); err != nil || changed {
		t.Fatalf("second call = %v, %v; want no change", changed, err)
	}
}
