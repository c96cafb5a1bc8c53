package hypervisortest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// DiskHypervisor is a driver that hot-plugs disks.
type DiskHypervisor interface {
	hypervisor.Hypervisor
	hypervisor.DiskAttacher
}

// DiskOptions tune RunDisks to a driver.
type DiskOptions struct {
	// New returns a driver for one subtest.
	New func(t *testing.T) DiskHypervisor
	// Spec builds a domain that never runs in the cases that use it.
	// Default: 1 core, 64 MiB, no disks.
	Spec func(id string) hypervisor.Spec
	// GuestSpec builds a domain whose guest releases a hot-unplugged disk
	// (a real driver needs a guest operating system). Default: Spec.
	GuestSpec func(t *testing.T, id string) hypervisor.Spec
	// GuestReady, if set, waits after Start until the guest of domain id
	// handles hot-plug events.
	GuestReady func(t *testing.T, id string)
	// Disk returns a disk of volume id that the driver can open (a real
	// driver needs the file). Default: a raw file path that need not exist.
	Disk func(t *testing.T, volumeID string) hypervisor.Disk
	// IDPrefix goes after "i-" in every domain id and "vol-" in every
	// volume id.
	IDPrefix string
}

// RunDisks is the conformance suite of hypervisor.DiskAttacher.
func RunDisks(t *testing.T, o DiskOptions) {
	if o.Spec == nil {
		o.Spec = func(id string) hypervisor.Spec { return hypervisor.Spec{ID: id, CPUCores: 1, MemoryMB: 64} }
	}
	if o.GuestSpec == nil {
		o.GuestSpec = func(_ *testing.T, id string) hypervisor.Spec { return o.Spec(id) }
	}
	if o.Disk == nil {
		o.Disk = func(_ *testing.T, vol string) hypervisor.Disk {
			return hypervisor.Disk{VolumeID: vol, Path: "/nonexistent/" + vol + ".raw"}
		}
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s *diskSuite)
	}{
		{"DiskErrors", testDiskErrors},
		{"DiskShutoff", testDiskShutoff},
		{"DiskHotplug", testDiskHotplug},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, &diskSuite{t: t, h: o.New(t), opts: o})
		})
	}
}

type diskSuite struct {
	t    *testing.T
	h    DiskHypervisor
	opts DiskOptions
}

func (s *diskSuite) id(name string) string  { return "i-" + s.opts.IDPrefix + name }
func (s *diskSuite) vol(name string) string { return "vol-" + s.opts.IDPrefix + name }

func (s *diskSuite) define(spec hypervisor.Spec) {
	s.t.Helper()
	if err := s.h.Define(ctxT(s.t), spec); err != nil {
		s.t.Fatalf("Define(%s) = %v", spec.ID, err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.h.Stop(ctx, spec.ID, true)
		_ = s.h.Undefine(ctx, spec.ID)
	})
}

// disks maps the domain's disks' volume ids to their targets.
func (s *diskSuite) disks(id string) map[string]string {
	s.t.Helper()
	list, err := s.h.Disks(ctxT(s.t), id)
	if err != nil {
		s.t.Fatalf("Disks(%s) = %v", id, err)
	}
	out := map[string]string{}
	for _, d := range list {
		if _, dup := out[d.VolumeID]; dup && d.VolumeID != "" {
			s.t.Errorf("Disks(%s) lists %s twice: %+v", id, d.VolumeID, list)
		}
		out[d.VolumeID] = d.Target
	}
	return out
}

func (s *diskSuite) attach(id string, disk hypervisor.Disk) string {
	s.t.Helper()
	target, err := s.h.AttachDisk(ctxT(s.t), id, disk)
	if err != nil {
		s.t.Fatalf("AttachDisk(%s, %s) = %v", id, disk.VolumeID, err)
	}
	if !hypervisor.ValidTarget(target) {
		s.t.Fatalf("AttachDisk(%s, %s) = target %q, want a virtio disk name", id, disk.VolumeID, target)
	}
	return target
}

func (s *diskSuite) detach(id, vol string) {
	s.t.Helper()
	if err := s.h.DetachDisk(ctxT(s.t), id, vol); err != nil {
		s.t.Fatalf("DetachDisk(%s, %s) = %v", id, vol, err)
	}
}

func testDiskErrors(t *testing.T, s *diskSuite) {
	ctx := ctxT(t)
	absent := s.id("hvdabsent")
	disk := s.opts.Disk(t, s.vol("hvderr"))
	if _, err := s.h.AttachDisk(ctx, absent, disk); !errs.Is(err, errs.NotFound) {
		t.Errorf("AttachDisk(absent domain) = %v, want NotFound", err)
	}
	if _, err := s.h.Disks(ctx, absent); !errs.Is(err, errs.NotFound) {
		t.Errorf("Disks(absent domain) = %v, want NotFound", err)
	}
	if err := s.h.DetachDisk(ctx, absent, disk.VolumeID); err != nil {
		t.Errorf("DetachDisk(absent domain) = %v, want nil", err)
	}
	id := s.id("hvderrors")
	s.define(s.opts.Spec(id))
	before := s.disks(id)
	for name, bad := range map[string]hypervisor.Disk{
		"no volume id":    {Path: disk.Path},
		"no source":       {VolumeID: disk.VolumeID},
		"path and iqn":    {VolumeID: disk.VolumeID, Path: "/p", IQN: "iqn.2010-09.jp.wakame:x", StorageIP: "127.0.0.1"},
		"iqn, no portal":  {VolumeID: disk.VolumeID, IQN: "iqn.2010-09.jp.wakame:x"},
		"unknown format":  {VolumeID: disk.VolumeID, Path: "/p", Format: "vmdk"},
		"bad format iqn":  {VolumeID: disk.VolumeID, IQN: "iqn.2010-09.jp.wakame:x", StorageIP: "127.0.0.1", Format: "vdi"},
		"empty disk spec": {},
	} {
		if _, err := s.h.AttachDisk(ctx, id, bad); !errs.Is(err, errs.InvalidParameter) {
			t.Errorf("AttachDisk(%s) = %v, want InvalidParameter", name, err)
		}
	}
	if got := s.disks(id); len(got) != len(before) {
		t.Errorf("after refused attaches the disks are %v, want %v", got, before)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_, attachErr := s.h.AttachDisk(ended, id, disk)
	_, disksErr := s.h.Disks(ended, id)
	for what, err := range map[string]error{
		"AttachDisk": attachErr, "Disks": disksErr, "DetachDisk": s.h.DetachDisk(ended, id, disk.VolumeID),
	} {
		if !errs.Is(err, errs.Timeout) {
			t.Errorf("%s(ended ctx) = %v, want Timeout", what, err)
		}
	}
	if _, ok := s.disks(id)[disk.VolumeID]; ok {
		t.Errorf("an attach with an ended context left the disk attached")
	}
}

func testDiskShutoff(t *testing.T, s *diskSuite) {
	id := s.id("hvdoff")
	s.define(s.opts.Spec(id))
	a, b := s.opts.Disk(t, s.vol("hvdoffa")), s.opts.Disk(t, s.vol("hvdoffb"))
	ta := s.attach(id, a)
	if again := s.attach(id, a); again != ta {
		t.Errorf("AttachDisk again = %s, first %s", again, ta)
	}
	b.Target = "vdq"
	if tb := s.attach(id, b); tb != "vdq" {
		t.Errorf("AttachDisk asking for the free name vdq = %s", tb)
	}
	got := s.disks(id)
	if got[a.VolumeID] != ta || got[b.VolumeID] != "vdq" {
		t.Fatalf("Disks of a shut-off domain = %v, want %s as %s and %s as vdq", got, a.VolumeID, ta, b.VolumeID)
	}
	// Asking for a taken name gives the next free one.
	c := s.opts.Disk(t, s.vol("hvdoffc"))
	c.Target = ta
	if tc := s.attach(id, c); tc == ta || tc == "vdq" {
		t.Errorf("AttachDisk asking for the taken %s = %s", ta, tc)
	}
	s.detach(id, a.VolumeID)
	s.detach(id, a.VolumeID)
	s.detach(id, s.vol("hvdnever"))
	if got := s.disks(id); got[a.VolumeID] != "" || got[b.VolumeID] != "vdq" {
		t.Errorf("after DetachDisk the disks are %v, want %s gone and %s kept", got, a.VolumeID, b.VolumeID)
	}
	// The domain boots with what is attached, under the same names.
	if err := s.h.Start(ctxT(t), id); err != nil {
		t.Fatalf("Start = %v", err)
	}
	if got := s.disks(id); got[b.VolumeID] != "vdq" || got[a.VolumeID] != "" {
		t.Errorf("disks of the started domain = %v, want %s as vdq and no %s", got, b.VolumeID, a.VolumeID)
	}
}

func testDiskHotplug(t *testing.T, s *diskSuite) {
	id := s.id("hvdplug")
	spec := s.opts.GuestSpec(t, id)
	s.define(spec)
	if err := s.h.Start(ctxT(t), id); err != nil {
		t.Fatalf("Start = %v", err)
	}
	if s.opts.GuestReady != nil {
		s.opts.GuestReady(t, id)
	}
	before := s.disks(id)
	a, b := s.opts.Disk(t, s.vol("hvdpluga")), s.opts.Disk(t, s.vol("hvdplugb"))
	ta := s.attach(id, a)
	for vol, target := range before {
		if target == ta {
			t.Fatalf("AttachDisk gave %s the name %s of %s", a.VolumeID, ta, vol)
		}
	}
	if again := s.attach(id, a); again != ta {
		t.Errorf("AttachDisk again = %s, first %s", again, ta)
	}
	tb := s.attach(id, b)
	got := s.disks(id)
	if got[a.VolumeID] != ta || got[b.VolumeID] != tb || ta == tb || len(got) != len(before)+2 {
		t.Fatalf("Disks of the running domain = %v, want %v plus %s as %s and %s as %s",
			got, before, a.VolumeID, ta, b.VolumeID, tb)
	}
	s.detach(id, a.VolumeID)
	got = s.disks(id)
	if _, ok := got[a.VolumeID]; ok || got[b.VolumeID] != tb {
		t.Errorf("after DetachDisk(%s) the disks are %v", a.VolumeID, got)
	}
	// The definition has what the live domain has: after a stop, b is
	// still there under its name, a is not.
	if err := s.h.Stop(ctxT(t), id, true); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	got = s.disks(id)
	if _, ok := got[a.VolumeID]; ok || got[b.VolumeID] != tb {
		t.Errorf("disks of the stopped domain = %v, want %s as %s and no %s", got, b.VolumeID, tb, a.VolumeID)
	}
	var ids []string
	for vol := range got {
		ids = append(ids, vol)
	}
	for vol := range before {
		if !slices.Contains(ids, vol) {
			t.Errorf("the stopped domain lost its disk %s", vol)
		}
	}
	s.detach(id, b.VolumeID)
	if _, ok := s.disks(id)[b.VolumeID]; ok {
		t.Errorf("DetachDisk of a stopped domain's disk left it")
	}
}
