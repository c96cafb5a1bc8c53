package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
)

func wantStates(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s went %q, want %q", what, got, want)
	}
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(err, k) {
		t.Errorf("%s = %v (kind %s), want %s", what, err, errs.KindOf(err).Name(), k.Name())
	}
}

func TestVerbsRegistered(t *testing.T) {
	e := newEnv(t)
	for _, verb := range []string{proto.VerbCreateVolume, proto.VerbCreateVolumeAndRunInstance, proto.VerbDeleteVolume,
		proto.VerbBackupVolume, proto.VerbBackupImage, proto.VerbCreateSnapshot, proto.VerbDeleteSnapshot} {
		if e.reg.jobs[proto.StaHandle(node)+"/"+verb] == nil {
			t.Errorf("sta-handle %s is not registered", verb)
		}
		if _, ok := proto.LookupJobVerb(proto.StaHandle(node), verb); !ok {
			t.Errorf("%s is not in proto's job verb table", verb)
		}
	}
	if len(e.reg.jobs) != 7 || len(e.reg.plain) != 1 || e.reg.plain[proto.StaHandle(node)+"/"+proto.VerbStaCapacity] == nil {
		t.Errorf("registered %d job verbs and %d plain ones", len(e.reg.jobs), len(e.reg.plain))
	}
}

func TestCreateBlank(t *testing.T) {
	e := newEnv(t)
	e.volume("vol-a", proto.VolumePending, 10*mib, "")
	var resp proto.StaCreateVolumeResponse
	if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-a"}, &resp); err != nil {
		t.Fatal(err)
	}
	want := proto.VolumeDevice{IQN: prefix + ":vol-a", LUN: 1, Path: "memory:vol-a", StorageNodeID: "sn-test", StorageIP: "192.0.2.10"}
	if resp.Device == nil || *resp.Device != want {
		t.Errorf("device = %+v, want %+v", resp.Device, want)
	}
	v, _ := e.coll.Volume("vol-a")
	if v.State != proto.VolumeAvailable || v.Device == nil || *v.Device != want {
		t.Errorf("volume = %s %+v", v.State, v.Device)
	}
	wantStates(t, "vol-a", e.coll.VolumeStates("vol-a"), proto.VolumeCreating, proto.VolumeAvailable)
	if b := e.data("vol-a"); len(b) != 10*mib || !bytes.Equal(b, make([]byte, 10*mib)) {
		t.Errorf("blank volume has %d bytes, not all zero", len(b))
	}
	e.wantExported("vol-a")

	// Redelivered after it succeeded: same device, no new state change.
	var again proto.StaCreateVolumeResponse
	if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-a"}, &again); err != nil {
		t.Fatal(err)
	}
	if again.Device == nil || *again.Device != want {
		t.Errorf("redelivery device = %+v", again.Device)
	}
	wantStates(t, "vol-a after a redelivery", e.coll.VolumeStates("vol-a"), proto.VolumeCreating, proto.VolumeAvailable)
}

// TestCreateResumes: a create cut after the data was made (state creating,
// volume in the store, not exported) is finished by the redelivery.
func TestCreateResumes(t *testing.T) {
	e := newEnv(t)
	e.volume("vol-r", proto.VolumeCreating, mib, "")
	data := content(1, mib)
	e.writeVolume("vol-r", data)
	if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-r"}, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.data("vol-r"), data) {
		t.Error("the redelivery replaced the volume made before")
	}
	e.wantExported("vol-r")
	wantStates(t, "vol-r", e.coll.VolumeStates("vol-r"), proto.VolumeAvailable)
}

func TestCreateFromBackup(t *testing.T) {
	data := content(2, 3*mib+512)
	for _, c := range []struct {
		name, storage, format string
		stored                []byte
	}{
		{"local raw", localBkst, "raw", data},
		{"local none", localBkst, "none", data},
		{"local gz", localBkst, "gz", nil},
		{"webdav raw", webBkst, "raw", data},
		{"webdav gz", webBkst, "gz", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			stored := c.stored
			if stored == nil {
				stored = gz(t, data)
			}
			if c.storage == localBkst {
				if err := os.WriteFile(filepath.Join(e.dir, "bo-src"), stored, 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				e.web.Put("bo-src", stored)
			}
			e.backupObject("bo-src", proto.BackupObjectAvailable, c.storage, c.format, md5hex(stored), int64(len(data)))
			e.volume("vol-b", proto.VolumePending, 4*mib, "bo-src")
			if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-b"}, nil); err != nil {
				t.Fatal(err)
			}
			want := append(slices.Clone(data), make([]byte, 4*mib-len(data))...)
			if !bytes.Equal(e.data("vol-b"), want) {
				t.Error("the volume does not hold the backup's bytes")
			}
			e.wantExported("vol-b")
		})
	}
}

// TestCreateFailures: every failure path of create_volume ends with the
// volume deleted and nothing of it on the node.
func TestCreateFailures(t *testing.T) {
	data := content(3, mib)
	for _, c := range []struct {
		name  string
		setup func(e *env)
		kind  errs.Kind
	}{
		{"checksum mismatch (local)", func(e *env) {
			os.WriteFile(filepath.Join(e.dir, "bo-x"), data, 0o600)
			e.backupObject("bo-x", proto.BackupObjectAvailable, localBkst, "raw", md5hex([]byte("other")), mib)
		}, errs.InvalidBackupObjectState},
		{"checksum mismatch (webdav gz)", func(e *env) {
			e.web.Put("bo-x", gz(t, data))
			e.backupObject("bo-x", proto.BackupObjectAvailable, webBkst, "gz", md5hex([]byte("other")), mib)
		}, errs.InvalidBackupObjectState},
		{"backup object deleted", func(e *env) {
			os.WriteFile(filepath.Join(e.dir, "bo-x"), data, 0o600)
			e.backupObject("bo-x", proto.BackupObjectDeleted, localBkst, "raw", md5hex(data), mib)
		}, errs.InvalidBackupObjectState},
		{"backup object unknown", func(e *env) {}, errs.UnknownBackupObject},
		{"object missing on the storage", func(e *env) {
			e.backupObject("bo-x", proto.BackupObjectAvailable, webBkst, "raw", md5hex(data), mib)
		}, errs.NotFound},
		{"backup larger than the volume", func(e *env) {
			big := content(4, 2*mib)
			e.web.Put("bo-x", big)
			e.backupObject("bo-x", proto.BackupObjectAvailable, webBkst, "raw", md5hex(big), 2*mib)
		}, errs.InvalidVolumeSize},
		{"export refused", func(e *env) {
			os.WriteFile(filepath.Join(e.dir, "bo-x"), data, 0o600)
			e.backupObject("bo-x", proto.BackupObjectAvailable, localBkst, "raw", md5hex(data), mib)
			e.tg.Fail("export", errs.New(errs.Unavailable, "tgtd is down"))
		}, errs.Unavailable},
		{"store refuses", func(e *env) {
			os.WriteFile(filepath.Join(e.dir, "bo-x"), data, 0o600)
			e.backupObject("bo-x", proto.BackupObjectAvailable, localBkst, "raw", md5hex(data), mib)
			e.store.Fail("create", errors.New("disk full"))
		}, errs.Internal},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			c.setup(e)
			e.volume("vol-f", proto.VolumePending, mib, "bo-x")
			err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-f"}, nil)
			wantKind(t, "create", err, c.kind)
			wantStates(t, "vol-f", e.coll.VolumeStates("vol-f"), proto.VolumeCreating, proto.VolumeDeleted)
			e.wantGone("vol-f")
		})
	}
}

// TestCreateOfDeletedVolume: a volume deleted before its create ran is
// not made, and leftovers of an earlier attempt are removed.
func TestCreateOfDeletedVolume(t *testing.T) {
	for _, state := range []string{proto.VolumeDeleting, proto.VolumeDeleted} {
		e := newEnv(t)
		e.volume("vol-d", state, mib, "")
		e.writeVolume("vol-d", content(5, mib))
		err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-d"}, nil)
		wantKind(t, "create of a "+state+" volume", err, errs.InvalidVolumeState)
		wantStates(t, "vol-d", e.coll.VolumeStates("vol-d"))
		e.wantGone("vol-d")
	}
}

// TestCreateRacesDelete: the volume is deleted while it is being made; the
// update to available is refused and the create removes its work.
func TestCreateRacesDelete(t *testing.T) {
	e := newEnv(t)
	e.volume("vol-x", proto.VolumePending, mib, "")
	n := 0
	e.coll.Before(proto.VerbUpdateVolume, func() {
		if n++; n == 2 { // before "available": the instance is terminated
			v, _ := e.coll.Volume("vol-x")
			v.State = proto.VolumeDeleting
			e.coll.PutVolume(v)
		}
	})
	err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-x"}, nil)
	wantKind(t, "create", err, errs.InvalidVolumeState)
	if v, _ := e.coll.Volume("vol-x"); v.State != proto.VolumeDeleted {
		t.Errorf("volume is %s, want deleted", v.State)
	}
	e.wantGone("vol-x")
}

// TestCreateInterrupted: a create cut by the agent's shutdown leaves no
// data and the volume creating; the redelivery makes it.
func TestCreateInterrupted(t *testing.T) {
	e := newEnv(t)
	data := content(6, 2*mib)
	e.web.Put("bo-i", data)
	e.backupObject("bo-i", proto.BackupObjectAvailable, webBkst, "raw", md5hex(data), 2*mib)
	e.volume("vol-i", proto.VolumePending, 2*mib, "bo-i")
	ctx, cancel := context.WithCancel(ctxT(t))
	e.web.OnGet(cancel) // cancelled while it downloads
	err := e.run(ctx, proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-i"}, nil)
	if err == nil {
		t.Fatal("create succeeded with its context cancelled")
	}
	wantStates(t, "vol-i", e.coll.VolumeStates("vol-i"), proto.VolumeCreating)
	e.wantGone("vol-i")
	e.web.OnGet(nil)
	if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-i"}, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.data("vol-i"), data) {
		t.Error("the redelivered create did not restore the backup")
	}
	wantStates(t, "vol-i", e.coll.VolumeStates("vol-i"), proto.VolumeCreating, proto.VolumeAvailable)
}

// TestCreateAvailableLostAnswer: the update to available was applied but
// its answer lost; the create reads it back and keeps the volume.
func TestCreateAvailableLostAnswer(t *testing.T) {
	e := newEnv(t)
	e.volume("vol-l", proto.VolumePending, mib, "")
	n := 0
	e.coll.Before(proto.VerbUpdateVolume, func() {
		if n++; n == 2 {
			v, _ := e.coll.Volume("vol-l")
			v.State = proto.VolumeAvailable
			e.coll.PutVolume(v)
			e.coll.InjectError(proto.VerbUpdateVolume, errs.New(errs.Timeout, "answer lost"))
		}
	})
	if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-l"}, nil); err != nil {
		t.Fatalf("create = %v", err)
	}
	e.wantExported("vol-l")
}

// TestCreateAvailableUnknown: the update to available fails and the
// managers cannot be asked either: the volume is kept, the job fails, and
// the redelivery finishes it.
func TestCreateAvailableUnknown(t *testing.T) {
	e := newEnv(t)
	e.volume("vol-k", proto.VolumePending, mib, "")
	n := 0
	e.coll.Before(proto.VerbUpdateVolume, func() {
		if n++; n == 2 {
			e.coll.InjectError(proto.VerbUpdateVolume, errs.New(errs.Timeout, "no manager"))
			e.coll.InjectError(proto.VerbGetVolume, errs.New(errs.Timeout, "no manager"))
		}
	})
	if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-k"}, nil); !errs.Is(err, errs.Timeout) {
		t.Fatalf("create = %v, want Timeout", err)
	}
	e.wantExported("vol-k")
	e.coll.Before(proto.VerbUpdateVolume, nil)
	e.coll.InjectError(proto.VerbUpdateVolume, nil)
	e.coll.InjectError(proto.VerbGetVolume, nil)
	if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-k"}, nil); err != nil {
		t.Fatal(err)
	}
	wantStates(t, "vol-k", e.coll.VolumeStates("vol-k"), proto.VolumeCreating, proto.VolumeAvailable)
}

func TestCreateRefused(t *testing.T) {
	e := newEnv(t)
	err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-none"}, nil)
	wantKind(t, "create of an unknown volume", err, errs.UnknownVolume)

	e.coll.PutVolume(proto.VolumeView{ID: "vol-o", State: proto.VolumePending, Size: mib, StoreType: proto.VolumeShared,
		StorageNode: &proto.StorageNode{ID: "sn-o", NodeID: "sta.other"}})
	err = e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-o"}, nil)
	wantKind(t, "create of another node's volume", err, errs.StorageNodeNotPermitted)
	wantStates(t, "vol-o", e.coll.VolumeStates("vol-o"))

	e.volume("vol-s", proto.VolumeScheduling, mib, "")
	err = e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-s"}, nil)
	wantKind(t, "create of a scheduling volume", err, errs.InvalidVolumeState)
	e.wantGone("vol-s")
}

func TestCreateVolumeAndRunInstance(t *testing.T) {
	e := newEnv(t)
	e.volume("vol-boot", proto.VolumePending, 4*mib, "")
	e.coll.PutInstance(proto.InstanceView{ID: "i-1", State: proto.InstancePending, HostNode: &proto.HostNode{NodeID: "hva.h1"}})
	req := proto.StaCreateVolumeAndRunInstanceRequest{VolumeID: "vol-boot", InstanceID: "i-1"}
	for range 2 { // the second is a redelivery
		if err := e.run(ctxT(t), proto.VerbCreateVolumeAndRunInstance, req, nil); err != nil {
			t.Fatal(err)
		}
	}
	jobs := e.coll.Jobs()
	if len(jobs) != 1 {
		t.Fatalf("jobs submitted = %+v, want one", jobs)
	}
	j := jobs[0]
	if j.Endpoint != proto.HvaHandle("hva.h1") || j.Verb != proto.VerbWaitVolumesAvailable || j.ResourceID != "i-1" ||
		string(j.Args) != `{"instance_id":"i-1"}` {
		t.Errorf("job = %+v (args %s)", j, j.Args)
	}
	e.wantExported("vol-boot")
}

// TestCreateVolumeAndRunInstanceFails: a boot volume that cannot be made
// is deleted and its instance terminated.
func TestCreateVolumeAndRunInstanceFails(t *testing.T) {
	e := newEnv(t)
	e.backupObject("bo-gone", proto.BackupObjectDeleted, localBkst, "raw", "", mib)
	e.volume("vol-boot", proto.VolumePending, mib, "bo-gone")
	e.coll.PutInstance(proto.InstanceView{ID: "i-1", State: proto.InstancePending, HostNode: &proto.HostNode{NodeID: "hva.h1"}})
	err := e.run(ctxT(t), proto.VerbCreateVolumeAndRunInstance, proto.StaCreateVolumeAndRunInstanceRequest{VolumeID: "vol-boot", InstanceID: "i-1"}, nil)
	wantKind(t, "create", err, errs.InvalidBackupObjectState)
	wantStates(t, "vol-boot", e.coll.VolumeStates("vol-boot"), proto.VolumeCreating, proto.VolumeDeleted)
	wantStates(t, "i-1", e.coll.InstanceStates("i-1"), proto.InstanceTerminated)
	if len(e.coll.Jobs()) != 0 {
		t.Errorf("jobs submitted: %+v", e.coll.Jobs())
	}
	e.wantGone("vol-boot")

	// An instance without a host cannot be booted: terminated too.
	e.volume("vol-b2", proto.VolumePending, mib, "")
	e.coll.PutInstance(proto.InstanceView{ID: "i-2", State: proto.InstancePending})
	err = e.run(ctxT(t), proto.VerbCreateVolumeAndRunInstance, proto.StaCreateVolumeAndRunInstanceRequest{VolumeID: "vol-b2", InstanceID: "i-2"}, nil)
	wantKind(t, "create for an instance without host", err, errs.InvalidInstanceState)
	wantStates(t, "i-2", e.coll.InstanceStates("i-2"), proto.InstanceTerminated)
}

func TestDeleteVolume(t *testing.T) {
	e := newEnv(t)
	e.volume("vol-d", proto.VolumePending, mib, "")
	if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-d"}, nil); err != nil {
		t.Fatal(err)
	}
	v, _ := e.coll.Volume("vol-d")
	v.State = proto.VolumeDeleting // what the API does
	e.coll.PutVolume(v)
	for range 2 { // the second is a redelivery
		if err := e.run(ctxT(t), proto.VerbDeleteVolume, proto.StaDeleteVolumeRequest{VolumeID: "vol-d"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	wantStates(t, "vol-d", e.coll.VolumeStates("vol-d"), proto.VolumeCreating, proto.VolumeAvailable, proto.VolumeDeleted)
	e.wantGone("vol-d")
}

func TestDeleteVolumeCases(t *testing.T) {
	e := newEnv(t)
	// Unknown to the managers: what is here is removed.
	e.writeVolume("vol-u", content(7, mib))
	if err := e.run(ctxT(t), proto.VerbDeleteVolume, proto.StaDeleteVolumeRequest{VolumeID: "vol-u"}, nil); err != nil {
		t.Fatal(err)
	}
	e.wantGone("vol-u")

	// Attached: refused, nothing touched.
	e.volume("vol-at", proto.VolumeAttached, mib, "")
	e.writeVolume("vol-at", content(8, mib))
	err := e.run(ctxT(t), proto.VerbDeleteVolume, proto.StaDeleteVolumeRequest{VolumeID: "vol-at"}, nil)
	wantKind(t, "delete of an attached volume", err, errs.InvalidVolumeState)
	if _, err := e.store.Get(context.Background(), "vol-at"); err != nil {
		t.Error("the attached volume's data was removed")
	}

	// Available (not deleting): deleting, then deleted.
	e.volume("vol-av", proto.VolumeAvailable, mib, "")
	if err := e.run(ctxT(t), proto.VerbDeleteVolume, proto.StaDeleteVolumeRequest{VolumeID: "vol-av"}, nil); err != nil {
		t.Fatal(err)
	}
	wantStates(t, "vol-av", e.coll.VolumeStates("vol-av"), proto.VolumeDeleting, proto.VolumeDeleted)

	// The data cannot be removed: deleted anyway (spec), the job fails.
	e.volume("vol-st", proto.VolumeDeleting, mib, "")
	e.writeVolume("vol-st", content(9, mib))
	e.store.Fail("delete", errors.New("device busy"))
	err = e.run(ctxT(t), proto.VerbDeleteVolume, proto.StaDeleteVolumeRequest{VolumeID: "vol-st"}, nil)
	if err == nil {
		t.Error("delete succeeded with the data left")
	}
	wantStates(t, "vol-st", e.coll.VolumeStates("vol-st"), proto.VolumeDeleted)
}

// TestCapacity: the plain capacity verb reports the store.
func TestCapacityAnswered(t *testing.T) {
	e := newEnv(t)
	e.writeVolume("vol-c", content(10, mib))
	res, err := e.reg.plain[proto.StaHandle(node)+"/"+proto.VerbStaCapacity](context.Background(), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	out := res.(proto.StaCapacityResponse)
	if out.BackingDriver != "memory" || out.TargetDriver != "memory" || out.TotalBytes != 1<<30 ||
		out.FreeBytes != 1<<30-mib || out.Volumes != 1 {
		t.Errorf("capacity = %+v", out)
	}
}
