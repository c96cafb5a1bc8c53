package rig

import (
	"strings"
	"testing"
)

func TestConfigDefaultsAndPrefix(t *testing.T) {
	c := Config{Bin: "b", Dir: "d"}
	if err := c.fill(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Prefix, "ch") || !stalePrefix.MatchString(c.Prefix+"-m1") {
		t.Fatalf("default prefix %q is not one CleanStale recognises", c.Prefix)
	}
	if c.Managers != 3 || c.Schedulers != 1 || c.Hvas != 2 || c.Subnet != "192.168.252" || c.DataSizeMB != 64 {
		t.Fatalf("defaults: %+v", c)
	}
	for _, p := range []string{"xx1", "ch 1", "ch/1"} {
		c := Config{Prefix: p, Bin: "b", Dir: "d"}
		if err := c.fill(); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	if err := (&Config{}).fill(); err == nil {
		t.Error("a config without Bin and Dir was accepted")
	}
	// Only DefaultPrefix names are ever cleaned as stale: the script's
	// (chs...) and other engineers' names are not.
	for _, n := range []string{"chs-m1", "chs123-m1", "nf-h1-605320", "ch-m1"} {
		if stalePrefix.MatchString(n) {
			t.Errorf("%s would be cleaned as a stale rig", n)
		}
	}
	if m := staleMount.FindStringSubmatch("/tmp/TestChaos1/001/ch42-m2-data"); m == nil || m[1] != "42" {
		t.Errorf("mount point not recognised: %v", m)
	}
}
