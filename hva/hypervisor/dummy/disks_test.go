package dummy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/hva/hypervisor/hypervisortest"
)

func TestDiskConformance(t *testing.T) {
	hypervisortest.RunDisks(t, hypervisortest.DiskOptions{
		New: func(t *testing.T) hypervisortest.DiskHypervisor { return newDummy(t, nil) },
	})
}

// TestDiskInjectError: an injected failure of a hot-plug leaves the
// domain's disks as they were.
func TestDiskInjectError(t *testing.T) {
	ctx := context.Background()
	d := newDummy(t, nil)
	if err := d.Define(ctx, hypervisor.Spec{ID: "i-disk", CPUCores: 1, MemoryMB: 64}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	d.InjectError(dummy.OpAttachDisk, boom)
	if _, err := d.AttachDisk(ctx, "i-disk", hypervisor.Disk{VolumeID: "vol-a", Path: "/a"}); !errors.Is(err, boom) {
		t.Fatalf("AttachDisk = %v, want the injected error", err)
	}
	if list, _ := d.Disks(ctx, "i-disk"); len(list) != 0 {
		t.Fatalf("disks after a failed attach = %v", list)
	}
	d.InjectError(dummy.OpAttachDisk, nil)
	if _, err := d.AttachDisk(ctx, "i-disk", hypervisor.Disk{VolumeID: "vol-a", Path: "/a"}); err != nil {
		t.Fatal(err)
	}
	d.InjectError(dummy.OpDetachDisk, boom)
	if err := d.DetachDisk(ctx, "i-disk", "vol-a"); !errors.Is(err, boom) {
		t.Fatalf("DetachDisk = %v, want the injected error", err)
	}
	if list, _ := d.Disks(ctx, "i-disk"); len(list) != 1 || list[0].VolumeID != "vol-a" {
		t.Fatalf("disks after a failed detach = %v", list)
	}
}
