package hypervisor

import (
	"slices"
	"testing"
)

func TestDiskName(t *testing.T) {
	for i, want := range map[int]string{0: "vda", 1: "vdb", 25: "vdz", 26: "vdaa", 27: "vdab"} {
		if got := DiskName(i); got != want {
			t.Errorf("DiskName(%d) = %s, want %s", i, got, want)
		}
	}
}

func TestTargets(t *testing.T) {
	for _, c := range []struct {
		asks []string
		want []string
	}{
		{[]string{"", "", ""}, []string{"vda", "vdb", "vdc"}},
		// A hot-plugged disk keeps its name; the others fill the gaps.
		{[]string{"", "", "vdd", ""}, []string{"vda", "vdb", "vdd", "vdc"}},
		// Taken twice, or not a virtio name: the next free one.
		{[]string{"vdb", "vdb", "sda", ""}, []string{"vdb", "vda", "vdc", "vdd"}},
	} {
		disks := make([]Disk, len(c.asks))
		for i, a := range c.asks {
			disks[i].Target = a
		}
		if got := Targets(disks); !slices.Equal(got, c.want) {
			t.Errorf("Targets(%q) = %q, want %q", c.asks, got, c.want)
		}
	}
	if got := FreeTarget("vdb", map[string]bool{"vda": true, "vdb": true}); got != "vdc" {
		t.Errorf("FreeTarget(taken) = %s, want vdc", got)
	}
	if got := FreeTarget("vdq", map[string]bool{"vda": true}); got != "vdq" {
		t.Errorf("FreeTarget(free) = %s, want vdq", got)
	}
}
