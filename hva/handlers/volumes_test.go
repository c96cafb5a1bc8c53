package handlers

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

// specRecorder remembers the specs the dummy was asked to define.
type specRecorder struct {
	*dummy.Driver
	mu    sync.Mutex
	specs []hypervisor.Spec
}

func (r *specRecorder) Define(ctx context.Context, spec hypervisor.Spec) error {
	r.mu.Lock()
	r.specs = append(r.specs, spec)
	r.mu.Unlock()
	return r.Driver.Define(ctx, spec)
}

func (r *specRecorder) last(t *testing.T) hypervisor.Spec {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.specs) == 0 {
		t.Fatal("no domain was defined")
	}
	return r.specs[len(r.specs)-1]
}

// sharedVolume is an exported iSCSI volume linked to an instance.
func sharedVolume(id, instID, state string) proto.VolumeView {
	return proto.VolumeView{ID: id, State: state, StoreType: proto.VolumeShared, InstanceID: &instID, Size: 1 << 30,
		Device: &proto.VolumeDevice{IQN: "iqn.2010-09.jp.wakame:" + id, LUN: 1, StorageIP: "192.0.2.9",
			Path: "/export/" + id + ".raw", StorageNodeID: "sn-x"}}
}

// running boots instance id (local boot volume, one vif) through
// run_local_store and links vols to it.
func (e *env) running(id string, vols ...proto.VolumeView) {
	e.t.Helper()
	e.put(id, proto.InstancePending, proto.StatusInit)
	if err := e.job(hvaHandle, proto.VerbRunLocalStore, proto.HvaRunLocalStoreRequest{InstanceID: id}); err != nil {
		e.t.Fatalf("boot %s: %v", id, err)
	}
	v := e.instance(id)
	v.Volumes = append(v.Volumes, vols...)
	e.coll.Put(v)
}

func (e *env) volume(instID, volID string) *proto.VolumeView {
	v := e.instance(instID)
	return volumeOf(&v, volID)
}

// disks maps the domain's disks to their targets.
func (e *env) disks(id string) map[string]string {
	e.t.Helper()
	list, err := e.hv.Disks(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range list {
		out[d.VolumeID] = d.Target
	}
	return out
}

func (e *env) wantVolumeStates(id string, want ...string) {
	e.t.Helper()
	if got := e.coll.VolumeStates(id); !slices.Equal(got, want) {
		e.t.Errorf("volume %s moves = %v, want %v", id, got, want)
	}
}

// volumeEvents returns the names of the events published about volume id.
func (e *env) volumeEvents(instID, volID string) []string {
	e.ev.mu.Lock()
	defer e.ev.mu.Unlock()
	var out []string
	for _, ev := range e.ev.list {
		if slices.Equal(ev.Args, []string{instID, volID}) {
			out = append(out, ev.Name)
		}
	}
	return out
}

func TestAttachDetach(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.running("i-att", sharedVolume("vol-data", "i-att", proto.VolumeAvailable))
	attach := proto.HvaAttachRequest{InstanceID: "i-att", VolumeID: "vol-data"}
	if err := e.job(hvaHandle, proto.VerbAttach, attach); err != nil {
		t.Fatalf("attach = %v", err)
	}
	e.wantVolumeStates("vol-data", proto.VolumeAttaching, proto.VolumeAttached)
	vol := e.volume("i-att", "vol-data")
	if vol == nil || vol.State != proto.VolumeAttached || vol.GuestDeviceName != "vdb" {
		t.Fatalf("attached volume = %+v, want attached as vdb (the boot disk is vda)", vol)
	}
	if got := e.disks("i-att"); got["vol-data"] != "vdb" || got["vol-att"] != "vda" {
		t.Fatalf("domain disks = %v", got)
	}
	if got := e.volumeEvents("i-att", "vol-data"); !slices.Equal(got, []string{proto.EventVolumeAttached}) {
		t.Errorf("events = %v", got)
	}
	// A redelivery finds it done.
	n := len(e.coll.VolumeUpdates())
	if err := e.job(hvaHandle, proto.VerbAttach, attach); err != nil {
		t.Fatalf("attach again = %v", err)
	}
	if len(e.coll.VolumeUpdates()) != n {
		t.Errorf("a redelivered attach sent volume updates")
	}

	detach := proto.HvaDetachRequest{InstanceID: "i-att", VolumeID: "vol-data"}
	if err := e.job(hvaHandle, proto.VerbDetach, detach); err != nil {
		t.Fatalf("detach = %v", err)
	}
	e.wantVolumeStates("vol-data", proto.VolumeAttaching, proto.VolumeAttached, proto.VolumeDetaching, proto.VolumeAvailable)
	ups := e.coll.VolumeUpdates()
	if last := ups[len(ups)-1]; !last.DetachInstance {
		t.Errorf("the last update %+v does not unlink the volume", last)
	}
	if e.volume("i-att", "vol-data") != nil {
		t.Errorf("the instance still lists the detached volume")
	}
	if _, ok := e.disks("i-att")["vol-data"]; ok {
		t.Errorf("the domain still has the detached disk")
	}
	if got := e.volumeEvents("i-att", "vol-data"); !slices.Equal(got, []string{proto.EventVolumeAttached, proto.EventVolumeDetached}) {
		t.Errorf("events = %v", got)
	}
	// A redelivery: the volume is no longer the instance's; nothing to do.
	n = len(e.coll.VolumeUpdates())
	if err := e.job(hvaHandle, proto.VerbDetach, detach); err != nil {
		t.Fatalf("detach again = %v", err)
	}
	if len(e.coll.VolumeUpdates()) != n {
		t.Errorf("a redelivered detach sent volume updates")
	}
}

// TestAttachKeepsNamesAcrossPoweron: a halted instance's domain is defined
// again with the attached volume under the name it was hot-plugged as.
func TestAttachKeepsNamesAcrossPoweron(t *testing.T) {
	rec := &specRecorder{}
	e := newEnv(t, envOpts{hv: func(h hypervisor.Hypervisor) hypervisor.Hypervisor {
		rec.Driver = h.(*dummy.Driver)
		return rec
	}})
	e.running("i-names", sharedVolume("vol-b", "i-names", proto.VolumeAvailable))
	if err := e.job(hvaHandle, proto.VerbAttach, proto.HvaAttachRequest{InstanceID: "i-names", VolumeID: "vol-b"}); err != nil {
		t.Fatal(err)
	}
	if err := e.job(hvaHandle, proto.VerbPoweroff, proto.HvaPoweroffRequest{InstanceID: "i-names"}); err != nil {
		t.Fatal(err)
	}
	// The host lost the definition meanwhile: poweron defines it again.
	if err := e.hv.Undefine(context.Background(), "i-names"); err != nil {
		t.Fatal(err)
	}
	if err := e.job(hvaHandle, proto.VerbPoweron, proto.HvaPoweronRequest{InstanceID: "i-names"}); err != nil {
		t.Fatal(err)
	}
	spec := rec.last(t)
	var got *hypervisor.Disk
	for i := range spec.Disks {
		if spec.Disks[i].VolumeID == "vol-b" {
			got = &spec.Disks[i]
		}
	}
	if got == nil || got.Target != "vdb" || got.IQN != "iqn.2010-09.jp.wakame:vol-b" || got.Path != "" || got.StorageIP != "192.0.2.9" {
		t.Fatalf("redefined disk = %+v, want the iSCSI target as vdb (no path: that file is the storage node's)", got)
	}
	if e.disks("i-names")["vol-b"] != "vdb" {
		t.Errorf("domain disks = %v", e.disks("i-names"))
	}
}

func TestAttachFailure(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.running("i-attf", sharedVolume("vol-f", "i-attf", proto.VolumeAvailable))
	e.hv.InjectError(dummy.OpAttachDisk, errs.New(errs.Internal, "qemu refused the disk"))
	err := e.job(hvaHandle, proto.VerbAttach, proto.HvaAttachRequest{InstanceID: "i-attf", VolumeID: "vol-f"})
	wantKind(t, "attach with a failing driver", err, errs.Internal)
	e.wantVolumeStates("vol-f", proto.VolumeAttaching, proto.VolumeAvailable)
	ups := e.coll.VolumeUpdates()
	if last := ups[len(ups)-1]; !last.DetachInstance {
		t.Errorf("the fail block %+v does not unlink the volume", last)
	}
	if e.volume("i-attf", "vol-f") != nil {
		t.Errorf("the failed volume is still linked to the instance")
	}
	if got := e.volumeEvents("i-attf", "vol-f"); !slices.Equal(got, []string{proto.EventVolumeAvailable}) {
		t.Errorf("events = %v", got)
	}
	if v := e.instance("i-attf"); v.State != proto.InstanceRunning {
		t.Errorf("the instance is %s after a failed attach", v.State)
	}
}

func TestAttachPreconditions(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.running("i-pre",
		sharedVolume("vol-creating", "i-pre", proto.VolumeCreating),
		sharedVolume("vol-done", "i-pre", proto.VolumeAttached))
	for name, c := range map[string]struct {
		vol  string
		kind errs.Kind
	}{
		"not linked":      {"vol-other", errs.InvalidVolumeState},
		"being created":   {"vol-creating", errs.InvalidVolumeState},
		"the boot volume": {"vol-pre", errs.AttachVolumeFailure},
		"no volume id":    {"", errs.UndefinedVolumeID},
	} {
		err := e.job(hvaHandle, proto.VerbAttach, proto.HvaAttachRequest{InstanceID: "i-pre", VolumeID: c.vol})
		wantKind(t, "attach "+name, err, c.kind)
	}
	if err := e.job(hvaHandle, proto.VerbAttach, proto.HvaAttachRequest{InstanceID: "i-pre", VolumeID: "vol-done"}); err != nil {
		t.Errorf("attach of an attached volume = %v, want nil (done)", err)
	}
	if ups := e.coll.VolumeUpdates(); len(ups) != 0 {
		t.Errorf("refused attaches sent volume updates: %+v", ups)
	}

	// An instance that is no longer running when the job runs: the fail
	// block (available, unlinked).
	e.put("i-stopping", proto.InstanceStopping, proto.StatusOnline)
	v := e.instance("i-stopping")
	v.Volumes = append(v.Volumes, sharedVolume("vol-late", "i-stopping", proto.VolumeAvailable))
	e.coll.Put(v)
	err := e.job(hvaHandle, proto.VerbAttach, proto.HvaAttachRequest{InstanceID: "i-stopping", VolumeID: "vol-late"})
	wantKind(t, "attach to a stopping instance", err, errs.InvalidInstanceState)
	e.wantVolumeStates("vol-late", proto.VolumeAttaching, proto.VolumeAvailable)
}

func TestDetachFailureStaysDetaching(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.running("i-det", sharedVolume("vol-d", "i-det", proto.VolumeAvailable))
	if err := e.job(hvaHandle, proto.VerbAttach, proto.HvaAttachRequest{InstanceID: "i-det", VolumeID: "vol-d"}); err != nil {
		t.Fatal(err)
	}
	e.hv.InjectError(dummy.OpDetachDisk, errs.New(errs.Timeout, "the guest did not release the disk"))
	detach := proto.HvaDetachRequest{InstanceID: "i-det", VolumeID: "vol-d"}
	wantKind(t, "detach with a guest holding the disk", e.job(hvaHandle, proto.VerbDetach, detach), errs.Timeout)
	if vol := e.volume("i-det", "vol-d"); vol == nil || vol.State != proto.VolumeDetaching {
		t.Fatalf("volume after a failed detach = %+v, want detaching and still linked", vol)
	}
	// A new detach job finishes it.
	e.hv.InjectError(dummy.OpDetachDisk, nil)
	if err := e.job(hvaHandle, proto.VerbDetach, detach); err != nil {
		t.Fatalf("detach again = %v", err)
	}
	e.wantVolumeStates("vol-d", proto.VolumeAttaching, proto.VolumeAttached, proto.VolumeDetaching, proto.VolumeAvailable)
	if e.volume("i-det", "vol-d") != nil {
		t.Errorf("the volume is still linked")
	}
	wantKind(t, "detach of the boot volume",
		e.job(hvaHandle, proto.VerbDetach, proto.HvaDetachRequest{InstanceID: "i-det", VolumeID: "vol-det"}), errs.DetachVolumeFailure)
}

// putSAN stores a pending instance whose boot volume is a shared volume in
// state st (SAN boot, image boot_dev_type 1).
func (e *env) putSAN(id, st string) {
	e.put(id, proto.InstancePending, proto.StatusInit)
	v := e.instance(id)
	boot := sharedVolume("vol-"+id[2:], id, st)
	boot.Device.Format = hypervisor.FormatQcow2
	v.Volumes = []proto.VolumeView{boot}
	v.Image = &proto.ImageView{Image: proto.Image{ID: "wmi-san", BootDevType: 1}}
	e.coll.Put(v)
}

func TestWaitVolumesAvailable(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putSAN("i-wait", proto.VolumeCreating)
	wait := proto.HvaWaitVolumesAvailableRequest{InstanceID: "i-wait"}
	if err := e.job(hvaHandle, proto.VerbWaitVolumesAvailable, wait); err != nil {
		t.Fatalf("wait (volume creating) = %v", err)
	}
	if s := e.coll.Submitted(); len(s) != 0 {
		t.Fatalf("submitted %+v while a volume is being created", s)
	}
	v := e.instance("i-wait")
	v.Volumes[0].State = proto.VolumeAvailable
	e.coll.Put(v)
	for range 2 { // the second run is a redelivery: the same job
		if err := e.job(hvaHandle, proto.VerbWaitVolumesAvailable, wait); err != nil {
			t.Fatalf("wait = %v", err)
		}
	}
	s := e.coll.Submitted()
	if len(s) != 1 || s[0].Endpoint != proto.HvaHandle(node) || s[0].Verb != proto.VerbRunVolStore ||
		s[0].ParentID != "job-test" || s[0].ResourceID != "i-wait" ||
		string(s[0].Args) != `{"instance_id":"i-wait","volume_id":"vol-wait"}` {
		t.Fatalf("submitted %+v, want one run_vol_store to this node", s)
	}
	if st := e.coll.States("i-wait"); len(st) != 0 {
		t.Errorf("wait changed the instance: %v", st)
	}

	// A local boot volume: run_local_store (the source always chose
	// run_vol_store, spec §9).
	e.put("i-waitlocal", proto.InstancePending, proto.StatusInit)
	if err := e.job(hvaHandle, proto.VerbWaitVolumesAvailable, proto.HvaWaitVolumesAvailableRequest{InstanceID: "i-waitlocal"}); err != nil {
		t.Fatal(err)
	}
	if s := e.coll.Submitted(); len(s) != 2 || s[1].Verb != proto.VerbRunLocalStore || s[1].Endpoint != proto.HvaHandle(node) {
		t.Fatalf("submitted %+v, want run_local_store for a local boot volume", s)
	}

	// A volume lost (its create failed: deleting) or the instance
	// terminated meanwhile: the instance is finalized.
	e.putSAN("i-lost", proto.VolumeDeleting)
	if err := e.job(hvaHandle, proto.VerbWaitVolumesAvailable, proto.HvaWaitVolumesAvailableRequest{InstanceID: "i-lost"}); err != nil {
		t.Fatal(err)
	}
	if st := e.coll.States("i-lost"); !slices.Equal(st, []string{proto.InstanceTerminated}) {
		t.Errorf("instance with a lost volume moved %v, want finalized (terminated)", st)
	}
	if s := e.coll.Submitted(); len(s) != 2 {
		t.Errorf("a boot was submitted for an instance that lost its volume: %+v", s)
	}
}

func TestRunVolStore(t *testing.T) {
	rec := &specRecorder{}
	e := newEnv(t, envOpts{hv: func(h hypervisor.Hypervisor) hypervisor.Hypervisor {
		rec.Driver = h.(*dummy.Driver)
		return rec
	}})
	e.putSAN("i-san", proto.VolumeCreating)
	req := proto.HvaRunVolStoreRequest{InstanceID: "i-san", VolumeID: "vol-san"}
	// Not every volume available: nothing happens.
	if err := e.job(hvaHandle, proto.VerbRunVolStore, req); err != nil {
		t.Fatalf("run_vol_store (volume creating) = %v", err)
	}
	if st := e.coll.States("i-san"); len(st) != 0 || e.domain("i-san") != "" {
		t.Fatalf("run_vol_store acted before the volume was available: %v, domain %q", st, e.domain("i-san"))
	}
	v := e.instance("i-san")
	v.Volumes[0].State = proto.VolumeAvailable
	e.coll.Put(v)
	if err := e.job(hvaHandle, proto.VerbRunVolStore, req); err != nil {
		t.Fatalf("run_vol_store = %v", err)
	}
	e.want("i-san", []string{proto.InstanceStarting, proto.InstanceRunning}, proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)
	e.wantVolumeStates("vol-san", proto.VolumeAttaching, proto.VolumeAttached)
	if vol := e.volume("i-san", "vol-san"); vol.GuestDeviceName != "vda" {
		t.Errorf("boot volume device name = %q, want vda", vol.GuestDeviceName)
	}
	spec := rec.last(t)
	want := hypervisor.Disk{VolumeID: "vol-san", IQN: "iqn.2010-09.jp.wakame:vol-san", LUN: 1, StorageIP: "192.0.2.9",
		Format: hypervisor.FormatQcow2, Boot: true}
	if len(spec.Disks) != 1 || spec.Disks[0] != want {
		t.Fatalf("domain disks = %+v, want the LUN %+v (boots from it, opened as qcow2)", spec.Disks, want)
	}
	if got := e.volumeEvents("i-san", "vol-san"); !slices.Equal(got, []string{proto.EventVolumeAttaching, proto.EventVolumeAttached}) {
		t.Errorf("volume events = %v", got)
	}
	e.wantEvents("i-san", proto.EventInstanceStarted)
	// A redelivery finds the instance running; the volume reports are
	// repeated (idempotent), the instance is left alone.
	if err := e.job(hvaHandle, proto.VerbRunVolStore, req); err != nil {
		t.Fatalf("run_vol_store again = %v", err)
	}
	if n := len(e.coll.Updates("i-san")); n != 2 {
		t.Errorf("instance updates = %d after a redelivery, want 2", n)
	}
}

// TestRunVolStoreFailure: a boot that fails terminates the instance (the
// managers then delete its boot volume).
func TestRunVolStoreFailure(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putSAN("i-sanf", proto.VolumeAvailable)
	e.hv.InjectError(dummy.OpStart, errBoom)
	err := e.job(hvaHandle, proto.VerbRunVolStore, proto.HvaRunVolStoreRequest{InstanceID: "i-sanf"})
	if err == nil {
		t.Fatal("run_vol_store with a failing start = nil")
	}
	e.want("i-sanf", []string{proto.InstanceStarting, proto.InstanceTerminated}, proto.InstanceTerminated, proto.StatusOffline, "")
}

func TestSpecOfVolumes(t *testing.T) {
	v := &proto.InstanceView{ID: "i-s", CPUCores: 1, MemorySize: 64, BootVolumeID: "vol-boot", Volumes: []proto.VolumeView{
		sharedVolume("vol-data", "i-s", proto.VolumeAttached),
		sharedVolume("vol-gone", "i-s", proto.VolumeDeleting),
		{ID: "vol-notyet", StoreType: proto.VolumeShared, State: proto.VolumePending, Device: &proto.VolumeDevice{StorageNodeID: "sn-x"}},
		{ID: "vol-boot", StoreType: proto.VolumeLocal, Device: &proto.VolumeDevice{Path: "/d/boot.qcow2"}},
	}}
	v.Volumes[0].GuestDeviceName = "vdc"
	spec := specOf(v)
	want := []hypervisor.Disk{
		{VolumeID: "vol-boot", Path: "/d/boot.qcow2", Boot: true},
		{VolumeID: "vol-data", IQN: "iqn.2010-09.jp.wakame:vol-data", LUN: 1, StorageIP: "192.0.2.9", Target: "vdc"},
	}
	if !slices.Equal(spec.Disks, want) {
		t.Errorf("disks = %+v, want %+v", spec.Disks, want)
	}
}

// TestPoweronNamesColdAttachedVolumes: a volume the API attached while the
// instance was halted gets the device name the redefined domain gave it.
func TestPoweronNamesColdAttachedVolumes(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.running("i-cold")
	if err := e.job(hvaHandle, proto.VerbPoweroff, proto.HvaPoweroffRequest{InstanceID: "i-cold"}); err != nil {
		t.Fatal(err)
	}
	v := e.instance("i-cold")
	v.Volumes = append(v.Volumes, sharedVolume("vol-coldb", "i-cold", proto.VolumeAttached))
	e.coll.Put(v)
	if err := e.hv.Undefine(context.Background(), "i-cold"); err != nil {
		t.Fatal(err)
	}
	if err := e.job(hvaHandle, proto.VerbPoweron, proto.HvaPoweronRequest{InstanceID: "i-cold"}); err != nil {
		t.Fatal(err)
	}
	if vol := e.volume("i-cold", "vol-coldb"); vol.GuestDeviceName != "vdb" || vol.State != proto.VolumeAttached {
		t.Fatalf("cold attached volume after poweron = %+v, want attached as vdb", vol)
	}
	if got := e.disks("i-cold"); got["vol-coldb"] != "vdb" {
		t.Errorf("domain disks = %v", got)
	}
	// Named already: a second poweron sends nothing about it.
	n := len(e.coll.VolumeUpdates())
	for _, verb := range []string{proto.VerbPoweroff, proto.VerbPoweron} {
		if err := e.job(hvaHandle, verb, proto.HvaPoweronRequest{InstanceID: "i-cold"}); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.coll.VolumeUpdates()) != n {
		t.Errorf("a poweron renamed a named volume: %+v", e.coll.VolumeUpdates()[n:])
	}
}
