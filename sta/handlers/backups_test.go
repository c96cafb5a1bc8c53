package handlers_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backup"
)

// stored reads a backup object's stored bytes.
func (e *env) stored(storage, key string) ([]byte, bool) {
	if storage == localBkst {
		b, err := os.ReadFile(filepath.Join(e.dir, key))
		return b, err == nil
	}
	return e.web.Object(key)
}

// TestBackupVolume backs a volume up in every container format to both
// storages, checks what was stored and what the backup object says, then
// restores it into a new volume with the same bytes.
func TestBackupVolume(t *testing.T) {
	data := content(11, 3*mib)
	for _, storage := range []string{localBkst, webBkst} {
		for _, format := range []string{"raw", "gz", "tar", "tgz"} {
			t.Run(storage+"/"+format, func(t *testing.T) {
				e := newEnv(t)
				e.volume("vol-src", proto.VolumeAttached, int64(len(data)), "")
				e.writeVolume("vol-src", data)
				e.backupObject("bo-1", proto.BackupObjectPending, storage, format, "", int64(len(data)))
				var resp proto.StaBackupVolumeResponse
				if err := e.run(ctxT(t), proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-src", BackupObjectID: "bo-1"}, &resp); err != nil {
					t.Fatal(err)
				}
				if resp.ObjectKey != "bo-1" {
					t.Errorf("object key = %q", resp.ObjectKey)
				}
				obj, ok := e.stored(storage, "bo-1")
				if !ok {
					t.Fatal("nothing stored")
				}
				bo, _ := e.coll.BackupObject("bo-1")
				if bo.State != proto.BackupObjectAvailable || bo.Checksum != md5hex(obj) || bo.AllocationSize == nil ||
					*bo.AllocationSize != int64(len(obj)) || bo.Progress != 100 || bo.ObjectKey != "bo-1" {
					t.Errorf("backup object = %+v (stored %d bytes, md5 %s)", bo, len(obj), md5hex(obj))
				}
				wantStates(t, "bo-1", e.coll.BackupObjectStates("bo-1"), proto.BackupObjectCreating, proto.BackupObjectAvailable)
				r, err := backup.Decode(bytes.NewReader(obj), format)
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := io.ReadAll(r); !bytes.Equal(got, data) {
					t.Fatal("the stored object does not decode to the volume's bytes")
				}
				// Restore.
				e.volume("vol-new", proto.VolumePending, int64(len(data)), "bo-1")
				if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-new"}, nil); err != nil {
					t.Fatal(err)
				}
				if md5hex(e.data("vol-new")) != md5hex(data) {
					t.Error("the restored volume differs from the backed up one")
				}
				// Redelivered: done already, nothing stored again.
				if storage == webBkst {
					e.web.FailPuts(http.StatusInternalServerError)
				}
				if err := e.run(ctxT(t), proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-src", BackupObjectID: "bo-1"}, nil); err != nil {
					t.Errorf("redelivered backup = %v", err)
				}
			})
		}
	}
}

// TestBackupLeavesNoSnapshot: the temporary snapshot of an upload is removed.
func TestBackupLeavesNoSnapshot(t *testing.T) {
	tmp := t.TempDir()
	e := newEnvTmp(t, tmp)
	e.volume("vol-t", proto.VolumeAvailable, mib, "")
	e.writeVolume("vol-t", content(12, mib))
	e.backupObject("bo-t", proto.BackupObjectPending, webBkst, "gz", "", mib)
	if err := e.run(ctxT(t), proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-t", BackupObjectID: "bo-t"}, nil); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in the tmp dir: %v", left)
	}
}

// TestBackupFailures: the failure paths end with the backup object deleted
// and nothing of it stored.
func TestBackupFailures(t *testing.T) {
	for _, c := range []struct {
		name    string
		volume  string // state ("" = unknown volume)
		boState string
		setup   func(e *env)
		kind    errs.Kind
		states  []string
	}{
		{"volume deleted", proto.VolumeDeleted, proto.BackupObjectPending, nil, errs.InvalidVolumeState, []string{proto.BackupObjectDeleted}},
		{"volume unknown", "", proto.BackupObjectPending, nil, errs.UnknownVolume, []string{proto.BackupObjectDeleted}},
		{"storage refuses", proto.VolumeAvailable, proto.BackupObjectPending, func(e *env) { e.web.FailPuts(http.StatusInsufficientStorage) },
			errs.Unavailable, []string{proto.BackupObjectCreating, proto.BackupObjectDeleted}},
		{"snapshot fails", proto.VolumeAvailable, proto.BackupObjectPending, func(e *env) { e.store.Fail("snapshot", errs.New(errs.Internal, "io error")) },
			errs.Internal, []string{proto.BackupObjectCreating, proto.BackupObjectDeleted}},
		{"backup object deleted meanwhile", proto.VolumeAvailable, proto.BackupObjectPending, func(e *env) {
			e.coll.Before(proto.VerbUpdateBackupObject, func() {
				if bo, _ := e.coll.BackupObject("bo-f"); bo.State == proto.BackupObjectCreating {
					bo.State = proto.BackupObjectDeleted
					e.coll.PutBackupObject(bo)
				}
			})
		}, errs.InvalidBackupObjectState, []string{proto.BackupObjectCreating, proto.BackupObjectDeleted}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			if c.volume != "" {
				e.volume("vol-f", c.volume, mib, "")
				e.writeVolume("vol-f", content(13, mib))
			}
			e.backupObject("bo-f", c.boState, webBkst, "raw", "", mib)
			if c.setup != nil {
				c.setup(e)
			}
			err := e.run(ctxT(t), proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-f", BackupObjectID: "bo-f"}, nil)
			wantKind(t, "backup", err, c.kind)
			wantStates(t, "bo-f", e.coll.BackupObjectStates("bo-f"), c.states...)
			if keys := e.web.Keys(); len(keys) != 0 {
				t.Errorf("stored: %q", keys)
			}
		})
	}
	// A deleted backup object is not touched.
	e := newEnv(t)
	e.volume("vol-f", proto.VolumeAvailable, mib, "")
	e.backupObject("bo-d", proto.BackupObjectDeleted, webBkst, "raw", "", mib)
	err := e.run(ctxT(t), proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-f", BackupObjectID: "bo-d"}, nil)
	wantKind(t, "backup into a deleted object", err, errs.InvalidBackupObjectState)
	wantStates(t, "bo-d", e.coll.BackupObjectStates("bo-d"))
}

// TestBackupProgress: a slow storage makes the backup report progress
// between 0 and 100 before it ends.
func TestBackupProgress(t *testing.T) {
	e := newEnv(t)
	const size = 64 * mib
	e.volume("vol-p", proto.VolumeAvailable, size, "")
	e.writeVolume("vol-p", bytes.Repeat([]byte{1}, size))
	e.backupObject("bo-p", proto.BackupObjectPending, webBkst, "raw", "", size)
	release := e.web.HoldPuts()
	defer release()
	done := make(chan error, 1)
	go func() {
		done <- e.run(ctxT(t), proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-p", BackupObjectID: "bo-p"}, nil)
	}()
	testutil.WaitFor(t, 30*time.Second, func() error {
		for _, u := range e.coll.BackupObjectUpdates("bo-p") {
			if u.Progress != nil && *u.Progress > 0 && *u.Progress < 100 {
				return nil
			}
		}
		return errs.New(errs.NotFound, "no progress between 0 and 100 reported")
	})
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if bo, _ := e.coll.BackupObject("bo-p"); bo.State != proto.BackupObjectAvailable || bo.Progress != 100 {
		t.Errorf("backup object = %s %.1f", bo.State, bo.Progress)
	}
}

func TestCreateSnapshot(t *testing.T) {
	e := newEnv(t)
	data := content(14, 2*mib)
	e.volume("vol-s", proto.VolumeAvailable, 2*mib, "")
	e.writeVolume("vol-s", data)
	e.backupObject("bo-s", proto.BackupObjectPending, localBkst, "raw", "", 2*mib)
	var resp proto.StaCreateSnapshotResponse
	if err := e.run(ctxT(t), proto.VerbCreateSnapshot, proto.StaCreateSnapshotRequest{VolumeID: "vol-s", BackupObjectID: "bo-s"}, &resp); err != nil {
		t.Fatal(err)
	}
	if obj, _ := e.stored(localBkst, "bo-s"); !bytes.Equal(obj, data) || resp.ObjectKey != "bo-s" {
		t.Errorf("snapshot stored %d bytes under %q", len(obj), resp.ObjectKey)
	}

	// delete_snapshot removes the stored bytes and purges the object; again is fine.
	for range 2 {
		if err := e.run(ctxT(t), proto.VerbDeleteSnapshot, proto.StaDeleteSnapshotRequest{BackupObjectID: "bo-s"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := e.stored(localBkst, "bo-s"); ok {
		t.Error("the snapshot is still stored")
	}
	wantStates(t, "bo-s", e.coll.BackupObjectStates("bo-s"), proto.BackupObjectCreating, proto.BackupObjectAvailable, proto.BackupObjectPurged)

	// One being made is refused; an unknown one is gone already.
	e.backupObject("bo-c", proto.BackupObjectCreating, webBkst, "raw", "", mib)
	err := e.run(ctxT(t), proto.VerbDeleteSnapshot, proto.StaDeleteSnapshotRequest{BackupObjectID: "bo-c"}, nil)
	wantKind(t, "delete_snapshot of a backup in progress", err, errs.InvalidBackupObjectState)
	if err := e.run(ctxT(t), proto.VerbDeleteSnapshot, proto.StaDeleteSnapshotRequest{BackupObjectID: "bo-none"}, nil); err != nil {
		t.Errorf("delete_snapshot of an unknown object = %v", err)
	}
}

func TestBackupImage(t *testing.T) {
	e := newEnv(t)
	data := content(15, 2*mib)
	e.volume("vol-i", proto.VolumeAttached, 2*mib, "")
	e.writeVolume("vol-i", data)
	e.backupObject("bo-img", proto.BackupObjectPending, webBkst, "gz", "", 2*mib)
	e.backupObject("bo-extra", proto.BackupObjectPending, webBkst, "raw", "", mib)
	e.coll.PutImage(proto.ImageView{Image: proto.Image{ID: "wmi-1", State: "creating", BackupObjectID: "bo-img",
		Volumes: []proto.ImageVolume{{BackupObjectID: "bo-extra"}}}})
	req := proto.StaBackupImageRequest{VolumeID: "vol-i", BackupObjectID: "bo-img", ImageID: "wmi-1"}
	if err := e.run(ctxT(t), proto.VerbBackupImage, req, nil); err != nil {
		t.Fatal(err)
	}
	if img, _ := e.coll.Image("wmi-1"); img.State != "creating" {
		t.Errorf("image is %s before its other backup object is available", img.State)
	}
	// The extra volume's backup ends: the image becomes available with it.
	e.volume("vol-x", proto.VolumeAttached, mib, "")
	e.writeVolume("vol-x", content(16, mib))
	if err := e.run(ctxT(t), proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-x", BackupObjectID: "bo-extra"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.run(ctxT(t), proto.VerbBackupImage, req, nil); err != nil { // a redelivery post-processes again
		t.Fatal(err)
	}
	if img, _ := e.coll.Image("wmi-1"); img.State != "available" {
		t.Errorf("image is %s, want available", img.State)
	}
}

func TestBackupImageFailures(t *testing.T) {
	// Image deleted before the backup ran: skipped, its object deleted.
	e := newEnv(t)
	e.volume("vol-i", proto.VolumeAttached, mib, "")
	e.writeVolume("vol-i", content(17, mib))
	e.backupObject("bo-img", proto.BackupObjectPending, webBkst, "raw", "", mib)
	e.coll.PutImage(proto.ImageView{Image: proto.Image{ID: "wmi-d", State: "deleted", BackupObjectID: "bo-img"}})
	err := e.run(ctxT(t), proto.VerbBackupImage, proto.StaBackupImageRequest{VolumeID: "vol-i", BackupObjectID: "bo-img", ImageID: "wmi-d"}, nil)
	wantKind(t, "backup of a deleted image", err, errs.UnknownImage)
	wantStates(t, "bo-img", e.coll.BackupObjectStates("bo-img"), proto.BackupObjectDeleted)
	if len(e.web.Keys()) != 0 {
		t.Errorf("stored: %q", e.web.Keys())
	}

	// The upload fails: backup object and image deleted (through
	// sta-collector update_image, which the source lacked).
	e = newEnv(t)
	e.volume("vol-i", proto.VolumeAttached, mib, "")
	e.writeVolume("vol-i", content(18, mib))
	e.backupObject("bo-img", proto.BackupObjectPending, webBkst, "raw", "", mib)
	e.coll.PutImage(proto.ImageView{Image: proto.Image{ID: "wmi-f", State: "creating", BackupObjectID: "bo-img"}})
	e.web.FailPuts(http.StatusInternalServerError)
	err = e.run(ctxT(t), proto.VerbBackupImage, proto.StaBackupImageRequest{VolumeID: "vol-i", BackupObjectID: "bo-img", ImageID: "wmi-f"}, nil)
	wantKind(t, "backup image with the storage failing", err, errs.Unavailable)
	wantStates(t, "bo-img", e.coll.BackupObjectStates("bo-img"), proto.BackupObjectCreating, proto.BackupObjectDeleted)
	wantStates(t, "wmi-f", e.coll.ImageStates("wmi-f"), "deleted")
}

func TestReexport(t *testing.T) {
	e := newEnv(t)
	for _, id := range []string{"vol-1", "vol-2", "vol-3"} {
		e.volume(id, proto.VolumePending, mib, "")
		if err := e.run(ctxT(t), proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: id}, nil); err != nil {
			t.Fatal(err)
		}
	}
	v, _ := e.coll.Volume("vol-3")
	v.State = proto.VolumeAttached
	e.coll.PutVolume(v)
	// tgtd restarted: every target is gone.
	for _, id := range []string{"vol-1", "vol-2", "vol-3"} {
		if err := e.tg.Unexport(context.Background(), prefix+":"+id); err != nil {
			t.Fatal(err)
		}
	}
	// Another volume lost its data; another node's volume is not ours; an
	// orphan target is left alone.
	e.volume("vol-lost", proto.VolumeAvailable, mib, "")
	e.coll.PutVolume(proto.VolumeView{ID: "vol-other", State: proto.VolumeAvailable, StoreType: proto.VolumeShared,
		StorageNode: &proto.StorageNode{NodeID: "sta.other"}})
	e.writeVolume("vol-orphan", content(19, mib))
	if _, err := e.tg.Export(context.Background(), prefix+":vol-orphan", "memory:vol-orphan"); err != nil {
		t.Fatal(err)
	}
	for range 2 { // idempotent
		res, err := e.h.Reexport(ctxT(t))
		if err == nil {
			t.Error("Reexport reported no error for the lost volume")
		}
		if !res.Listed || res.Exported != 3 || len(res.Missing) != 1 || res.Missing[0] != "vol-lost" ||
			len(res.Orphans) != 1 || res.Orphans[0] != prefix+":vol-orphan" {
			t.Errorf("Reexport = %+v", res)
		}
	}
	for _, id := range []string{"vol-1", "vol-2", "vol-3", "vol-orphan"} {
		e.wantExported(id)
	}
	if list, _ := e.tg.List(context.Background(), prefix); len(list) != 4 {
		t.Errorf("exports = %+v", list)
	}
}

// TestReexportManagersDown: without an answer nothing is done and the
// result says so (RunReexport retries).
func TestReexportManagersDown(t *testing.T) {
	e := newEnv(t)
	e.coll.InjectError(proto.VerbGetAvailableVolumes, errs.New(errs.NoLeader, "no leader"))
	res, err := e.h.Reexport(ctxT(t))
	if res.Listed || !errs.Is(err, errs.NoLeader) {
		t.Errorf("Reexport = %+v, %v", res, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.h.RunReexport(ctx, time.Hour); close(done) }()
	e.volume("vol-late", proto.VolumeAvailable, mib, "")
	e.writeVolume("vol-late", content(20, mib))
	e.coll.InjectError(proto.VerbGetAvailableVolumes, nil)
	testutil.WaitFor(t, 30*time.Second, func() error {
		list, _ := e.tg.List(context.Background(), prefix)
		if len(list) != 1 {
			return errs.New(errs.NotFound, "not re-exported yet")
		}
		return nil
	})
	cancel()
	<-done
}

// TestBackupAvailableLostAnswer: the update to available was applied but
// its answer lost; the backup reads it back and keeps the stored object.
// When the managers cannot be asked at all, the object is kept too.
func TestBackupAvailableLostAnswer(t *testing.T) {
	for _, readable := range []bool{true, false} {
		e := newEnv(t)
		e.volume("vol-l", proto.VolumeAvailable, mib, "")
		e.writeVolume("vol-l", content(21, mib))
		e.backupObject("bo-l", proto.BackupObjectPending, webBkst, "raw", "", mib)
		e.coll.Before(proto.VerbUpdateBackupObject, func() {
			if bo, _ := e.coll.BackupObject("bo-l"); bo.State == proto.BackupObjectCreating && e.web.Keys() != nil {
				bo.State = proto.BackupObjectAvailable
				e.coll.PutBackupObject(bo)
				e.coll.InjectError(proto.VerbUpdateBackupObject, errs.New(errs.Timeout, "answer lost"))
				if !readable {
					e.coll.InjectError(proto.VerbGetBackupObject, errs.New(errs.Timeout, "no manager"))
				}
			}
		})
		err := e.run(ctxT(t), proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-l", BackupObjectID: "bo-l"}, nil)
		if readable && err != nil {
			t.Errorf("backup = %v", err)
		}
		if !readable && !errs.Is(err, errs.Timeout) {
			t.Errorf("backup with no manager to ask = %v, want Timeout", err)
		}
		if _, ok := e.web.Object("bo-l"); !ok {
			t.Errorf("readable=%v: the stored object was removed", readable)
		}
		if bo, _ := e.coll.BackupObject("bo-l"); bo.State != proto.BackupObjectAvailable {
			t.Errorf("readable=%v: backup object is %s", readable, bo.State)
		}
	}
}
