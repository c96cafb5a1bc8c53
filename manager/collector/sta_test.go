package collector

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

var testNow = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

type staEnv struct {
	t   *testing.T
	srv *cluster.Server
	s   *Service
	ctx context.Context
}

// newStaEnv is the collector over a real single-manager cluster with a
// storage node sn-demo1 (sta.demo1, 192.0.2.7, 10 GiB), a backup storage and
// an available backup object bo-src.
func newStaEnv(t *testing.T) *staEnv {
	t.Helper()
	srv := cluster.TestServer(t, nil)
	e := &staEnv{t: t, srv: srv, ctx: context.Background(),
		s: New(Deps{Cluster: srv, Logger: logging.NewTest(t), Now: func() time.Time { return testNow }})}
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindStorageNode, "sn-demo1", proto.StorageNode{ID: "sn-demo1", NodeID: "sta.demo1",
			OfferingDiskSpaceMB: 10 << 10, StorageType: "iscsi", IPAddress: "192.0.2.7"})
		b.Create(proto.KindBackupStorage, "bkst-demo1", proto.BackupStorage{ID: "bkst-demo1", StorageType: "local",
			BaseURI: "file:///var/lib/vdc/backups/"})
		b.Create(proto.KindBackupObject, "bo-src", proto.BackupObject{ID: "bo-src", State: "available", Size: 1 << 30,
			BackupStorageID: "bkst-demo1", ObjectKey: "bo-src.raw", Checksum: "abc"})
	})
	return e
}

func (e *staEnv) seed(fn func(b *state.Builder)) {
	e.t.Helper()
	err := state.Commit(e.ctx, e.srv.Store(), e.srv, func(_ *state.Tx, b *state.Builder) error { fn(b); return nil })
	if err != nil {
		e.t.Fatalf("seed: %v", err)
	}
}

func (e *staEnv) get(kind, id string, v any) bool {
	e.t.Helper()
	found := false
	_ = e.srv.Store().View(func(tx *state.Tx) error {
		_, err := tx.Get(kind, id, v)
		found = err == nil
		return nil
	})
	return found
}

func (e *staEnv) volume(id string) proto.Volume {
	e.t.Helper()
	var v proto.Volume
	if !e.get(proto.KindVolume, id, &v) {
		e.t.Fatalf("volume %s missing", id)
	}
	return v
}

func (e *staEnv) buckets() map[string]map[string]string {
	var out map[string]map[string]string
	_ = e.srv.Store().View(func(tx *state.Tx) error { out = tx.Buckets(); return nil })
	delete(out, "meta")
	return out
}

// refused asserts fn fails with kind and changes nothing.
func (e *staEnv) refused(kind errs.Kind, fn func() error) {
	e.t.Helper()
	before := e.buckets()
	if err := fn(); !errs.Is(err, kind) {
		e.t.Fatalf("error = %v, want %s", err, kind.Name())
	}
	if !reflect.DeepEqual(before, e.buckets()) {
		e.t.Fatalf("a refused call changed the state")
	}
}

func ptr[T any](v T) *T { return &v }

// shared is a volume placed on sn-demo1 and charged to it.
func (e *staEnv) shared(id, st string, size int64) {
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindVolume, id, proto.Volume{ID: id, AccountID: "a-shpoolxx", State: st, Size: size,
			StoreType: proto.VolumeShared, StorageNodeID: ptr("sn-demo1"), BackupObjectID: ptr("bo-src"),
			Device: &proto.VolumeDevice{StorageNodeID: "sn-demo1"}})
		b.Put(proto.KindStorageUsage, "sn-demo1", proto.StorageUsage{ID: "sn-demo1", UsedBytes: size, Volumes: map[string]int64{id: size}})
	})
}

func (e *staEnv) update(req proto.UpdateVolumeRequest) error {
	_, err := e.s.updateVolume(e.ctx, req)
	return err
}

func TestStaVolumeLifecycle(t *testing.T) {
	e := newStaEnv(t)
	e.shared("vol-a", proto.VolumePending, 1<<30)

	v, err := e.s.getVolume(e.ctx, proto.GetVolumeRequest{VolumeID: "vol-a"})
	if err != nil {
		t.Fatal(err)
	}
	if v.State != proto.VolumePending || v.StorageNode == nil || v.StorageNode.ID != "sn-demo1" ||
		v.Device == nil || v.Device.StorageIP != "192.0.2.7" || v.BackupObject == nil ||
		v.BackupObject.URI != "file:///var/lib/vdc/backups/bo-src.raw" || v.BackupObject.Checksum != "abc" {
		t.Fatalf("get_volume = %+v", v)
	}
	e.refused(errs.UnknownVolume, func() error {
		_, err := e.s.getVolume(e.ctx, proto.GetVolumeRequest{VolumeID: "vol-nope"})
		return err
	})

	// creating → available with the exported device, merged with the node.
	for _, st := range []string{proto.VolumeCreating, proto.VolumeAvailable} {
		if err := e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(st),
			Device: &proto.VolumeDevice{IQN: "iqn.2010-09.jp.wakame:vol-a", LUN: 1, Path: "vol-a"}}); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	got := e.volume("vol-a")
	want := proto.VolumeDevice{IQN: "iqn.2010-09.jp.wakame:vol-a", LUN: 1, Path: "vol-a", StorageNodeID: "sn-demo1", StorageIP: "192.0.2.7"}
	if got.State != proto.VolumeAvailable || got.Device == nil || *got.Device != want {
		t.Fatalf("volume = %s %+v", got.State, got.Device)
	}
	// A late creating cannot move it back; API and scheduler states are not
	// for agents.
	for _, st := range []string{proto.VolumeCreating, proto.VolumePending, proto.VolumeScheduling} {
		e.refused(errs.InvalidVolumeState, func() error { return e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(st)}) })
	}

	// The node's export list.
	e.shared("vol-b", proto.VolumeCreating, 1<<20)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindVolume, "vol-local", proto.Volume{ID: "vol-local", State: proto.VolumeAvailable, StoreType: proto.VolumeLocal})
	})
	list, err := e.s.getAvailableVolumes(e.ctx, proto.GetAvailableVolumesRequest{NodeID: "sta.demo1"})
	if err != nil || len(list.Volumes) != 1 || list.Volumes[0].ID != "vol-a" || list.Volumes[0].Device.IQN == "" {
		t.Fatalf("get_available_volumes = %+v, %v", list, err)
	}
	if list, err := e.s.getAvailableVolumes(e.ctx, proto.GetAvailableVolumesRequest{NodeID: "sta.nobody"}); err != nil || len(list.Volumes) != 0 {
		t.Fatalf("unbound node = %+v, %v", list, err)
	}

	// Attach (attaching → attached stamps attached_at), detach (detaching →
	// available unlinked, detached_at).
	e.seed(func(b *state.Builder) {
		vol := e.volume("vol-a")
		vol.InstanceID = ptr("i-x")
		b.Put(proto.KindVolume, "vol-a", vol)
	})
	for _, st := range []string{proto.VolumeAttaching, proto.VolumeAttached} {
		if err := e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(st)}); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.volume("vol-a"); got.AttachedAt == nil || *got.AttachedAt != testNow || got.InstanceID == nil {
		t.Fatalf("attached = %+v", got)
	}
	if err := e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(proto.VolumeDetaching)}); err != nil {
		t.Fatal(err)
	}
	if err := e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(proto.VolumeAvailable), DetachInstance: true}); err != nil {
		t.Fatal(err)
	}
	if got := e.volume("vol-a"); got.InstanceID != nil || got.DetachedAt == nil || got.State != proto.VolumeAvailable {
		t.Fatalf("detached = %+v", got)
	}

	// Delete: deleting → deleted gives the space back; only deleted
	// follows deleting; a redelivered delete is a no-op; nothing revives it.
	if err := e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(proto.VolumeDeleting)}); err != nil {
		t.Fatal(err)
	}
	e.refused(errs.InvalidVolumeState, func() error {
		return e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(proto.VolumeAvailable)})
	})
	if err := e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(proto.VolumeDeleted)}); err != nil {
		t.Fatal(err)
	}
	if got := e.volume("vol-a"); got.DeletedAt == nil || got.State != proto.VolumeDeleted {
		t.Fatalf("deleted = %+v", got)
	}
	var u proto.StorageUsage
	if e.get(proto.KindStorageUsage, "sn-demo1", &u); u.Volumes["vol-a"] != 0 || u.UsedBytes != 1<<20 {
		t.Fatalf("usage after delete = %+v", u)
	}
	before := e.buckets()
	if err := e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(proto.VolumeDeleted)}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, e.buckets()) {
		t.Fatalf("a redelivered delete changed the state")
	}
	for _, st := range []string{proto.VolumeAvailable, proto.VolumeCreating} {
		e.refused(errs.InvalidVolumeState, func() error { return e.update(proto.UpdateVolumeRequest{VolumeID: "vol-a", State: ptr(st)}) })
	}
	e.refused(errs.UnknownVolume, func() error { return e.update(proto.UpdateVolumeRequest{VolumeID: "vol-nope"}) })
}

// image makes an image in creating from boot object bo-boot and extra
// volume object bo-extra, both pending.
func (e *staEnv) image(id string) {
	e.seed(func(b *state.Builder) {
		for _, bo := range []string{"bo-boot" + id, "bo-extra" + id} {
			b.Create(proto.KindBackupObject, bo, proto.BackupObject{ID: bo, State: "pending", Size: 1 << 20,
				BackupStorageID: "bkst-demo1", ObjectKey: bo})
		}
		b.Create(proto.KindImage, "wmi-"+id, proto.Image{ID: "wmi-" + id, State: "creating", BackupObjectID: "bo-boot" + id,
			Volumes: []proto.ImageVolume{{BackupObjectID: "bo-extra" + id}}})
	})
}

func (e *staEnv) updateBO(req proto.UpdateBackupObjectRequest) error {
	_, err := e.s.updateBackupObject(e.ctx, req)
	return err
}

func (e *staEnv) imageState(id string) string {
	var img proto.Image
	e.get(proto.KindImage, id, &img)
	return img.State
}

func TestStaBackupObjectsAndImages(t *testing.T) {
	e := newStaEnv(t)
	e.image("1")

	bo, err := e.s.getBackupObject(e.ctx, proto.GetBackupObjectRequest{BackupObjectID: "bo-boot1"})
	if err != nil || bo.BackupStorage == nil || bo.URI != "file:///var/lib/vdc/backups/bo-boot1" {
		t.Fatalf("get_backup_object = %+v, %v", bo, err)
	}
	e.refused(errs.UnknownBackupObject, func() error {
		_, err := e.s.getBackupObject(e.ctx, proto.GetBackupObjectRequest{BackupObjectID: "bo-nope"})
		return err
	})
	img, err := e.s.getImage(e.ctx, proto.GetImageRequest{ImageID: "wmi-1"})
	if err != nil || img.BackupObject == nil || img.BackupObject.ID != "bo-boot1" {
		t.Fatalf("get_image = %+v, %v", img, err)
	}

	// Boot object written: creating (progress), then available with its
	// checksum and key. The image waits for the extra volume's object, even
	// when post_process_backup_image is called (the source's bug: it marked
	// the image available regardless).
	if err := e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-boot1", State: ptr("creating"), Progress: ptr(42.0)}); err != nil {
		t.Fatal(err)
	}
	if err := e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-boot1", State: ptr("available"),
		Checksum: ptr("d41d8cd9"), AllocationSize: ptr(int64(4096)), ObjectKey: ptr("bo-boot1.raw")}); err != nil {
		t.Fatal(err)
	}
	var got proto.BackupObject
	e.get(proto.KindBackupObject, "bo-boot1", &got)
	if got.State != "available" || got.Progress != 100 || got.Checksum != "d41d8cd9" || *got.AllocationSize != 4096 || got.ObjectKey != "bo-boot1.raw" {
		t.Fatalf("bo = %+v", got)
	}
	if pp, err := e.s.postProcessBackupImage(e.ctx, proto.PostProcessBackupImageRequest{ImageID: "wmi-1"}); err != nil || pp.Available {
		t.Fatalf("post_process = %+v, %v", pp, err)
	}
	if st := e.imageState("wmi-1"); st != "creating" {
		t.Fatalf("image with a backup still running = %s", st)
	}
	if err := e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-extra1", State: ptr("available")}); err != nil {
		t.Fatal(err)
	}
	if st := e.imageState("wmi-1"); st != "available" {
		t.Fatalf("image with every backup done = %s", st)
	}
	if pp, err := e.s.postProcessBackupImage(e.ctx, proto.PostProcessBackupImageRequest{ImageID: "wmi-1"}); err != nil || !pp.Available {
		t.Fatalf("post_process = %+v, %v", pp, err)
	}

	// A failed backup (deleted) deletes the image, and post-processing a
	// failed image does not revive it.
	e.image("2")
	if err := e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-boot2", State: ptr("available")}); err != nil {
		t.Fatal(err)
	}
	if err := e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-extra2", State: ptr("deleted")}); err != nil {
		t.Fatal(err)
	}
	var img2 proto.Image
	if e.get(proto.KindImage, "wmi-2", &img2); img2.State != "deleted" || img2.DeletedAt == nil {
		t.Fatalf("image of a failed backup = %+v", img2)
	}
	if _, err := e.s.postProcessBackupImage(e.ctx, proto.PostProcessBackupImageRequest{ImageID: "wmi-2"}); err != nil {
		t.Fatal(err)
	}
	if st := e.imageState("wmi-2"); st != "deleted" {
		t.Fatalf("post-processed failed image = %s", st)
	}
	e.refused(errs.UnknownImage, func() error {
		_, err := e.s.postProcessBackupImage(e.ctx, proto.PostProcessBackupImageRequest{ImageID: "wmi-nope"})
		return err
	})

	// Backup objects do not move backwards or leave deleted; a late deleted
	// report on a deleted object is a no-op.
	e.refused(errs.InvalidBackupObjectState, func() error {
		return e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-boot1", State: ptr("creating")})
	})
	e.refused(errs.InvalidBackupObjectState, func() error {
		return e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-extra2", State: ptr("available")})
	})
	before := e.buckets()
	if err := e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-extra2", State: ptr("deleted")}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, e.buckets()) {
		t.Fatalf("late deleted report changed the state")
	}
	e.refused(errs.InvalidBackupObjectState, func() error {
		return e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-extra2", Progress: ptr(50.0)})
	})
	if err := e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-extra2", State: ptr("purged")}); err != nil {
		t.Fatal(err)
	}
	// delete_snapshot purges an available object.
	if err := e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-boot1", State: ptr("purged")}); err != nil {
		t.Fatal(err)
	}
	e.refused(errs.InvalidBackupObjectState, func() error {
		return e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-boot1", State: ptr("available")})
	})
	e.refused(errs.UnknownBackupObject, func() error {
		return e.updateBO(proto.UpdateBackupObjectRequest{BackupObjectID: "bo-nope", State: ptr("available")})
	})

	// update_image: a failed image backup deletes it; nothing revives it.
	e.image("3")
	upd := func(id, st string) error {
		_, err := e.s.updateImage(e.ctx, proto.UpdateImageRequest{ImageID: id, State: ptr(st)})
		return err
	}
	if err := upd("wmi-3", "deleted"); err != nil {
		t.Fatal(err)
	}
	var img3 proto.Image
	if e.get(proto.KindImage, "wmi-3", &img3); img3.State != "deleted" || img3.DeletedAt == nil {
		t.Fatalf("image = %+v", img3)
	}
	if err := upd("wmi-3", "deleted"); err != nil {
		t.Fatal(err)
	}
	e.refused(errs.InvalidParameter, func() error { return upd("wmi-3", "available") })
	e.refused(errs.UnknownImage, func() error { return upd("wmi-nope", "deleted") })
}

func TestSubmitJob(t *testing.T) {
	e := newStaEnv(t)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindJob, "job-parent1", proto.Job{ID: "job-parent1", QueueName: "sta-handle.sta.demo1",
			Verb: proto.VerbCreateVolumeAndRunInstance, State: "running"})
	})
	req := proto.SubmitJobRequest{ParentID: "job-parent1", Key: "wait", Endpoint: "hva-handle.hva.demo1",
		Verb: proto.VerbWaitVolumesAvailable, Args: []byte(`{"instance_id":"i-x"}`), ResourceID: "i-x"}
	first, err := e.s.submitJob(e.ctx, req)
	if err != nil || first.JobID == "" {
		t.Fatalf("submit_job = %+v, %v", first, err)
	}
	var j proto.Job
	if !e.get(proto.KindJob, first.JobID, &j) || j.Verb != proto.VerbWaitVolumesAvailable || j.QueueName != "hva-handle.hva.demo1" ||
		j.Params["instance_id"] != "i-x" || j.ParentID == nil || *j.ParentID != "job-parent1" || j.State != "pending" ||
		!e.get(proto.KindJobQueue, first.JobID, &proto.JobQueueEntry{}) {
		t.Fatalf("job = %+v", j)
	}
	// The parent re-run submits again: the same job.
	before := e.buckets()
	again, err := e.s.submitJob(e.ctx, req)
	if err != nil || again.JobID != first.JobID || !reflect.DeepEqual(before, e.buckets()) {
		t.Fatalf("resubmit = %+v, %v", again, err)
	}
	bad := []proto.SubmitJobRequest{
		{Key: "k", Endpoint: "hva-handle.hva.demo1", Verb: proto.VerbWaitVolumesAvailable},
		{ParentID: "job-parent1", Key: "k", Endpoint: "hva-handle", Verb: proto.VerbWaitVolumesAvailable},
		{ParentID: "job-parent1", Key: "k", Endpoint: "hva-handle.hva.demo1", Verb: "no_such_verb"},
		{ParentID: "job-nope", Key: "k", Endpoint: "hva-handle.hva.demo1", Verb: proto.VerbWaitVolumesAvailable},
		{ParentID: "job-parent1", Key: "k2", Endpoint: "hva-handle.hva.demo1", Verb: proto.VerbWaitVolumesAvailable, Args: []byte(`[1]`)},
	}
	for _, r := range bad {
		e.refused(errs.InvalidParameter, func() error { _, err := e.s.submitJob(e.ctx, r); return err })
	}
}

// TestStaCollectorFollower: a follower answers NoLeader (the agent tries
// the next manager).
func TestStaCollectorFollower(t *testing.T) {
	e := newStaEnv(t)
	s := New(Deps{Cluster: follower{e.srv}, Logger: logging.NewTest(t)})
	if _, err := s.getVolume(e.ctx, proto.GetVolumeRequest{VolumeID: "vol-x"}); !errs.Is(err, errs.NoLeader) {
		t.Errorf("get_volume on a follower: %v", err)
	}
	if _, err := s.updateBackupObject(e.ctx, proto.UpdateBackupObjectRequest{BackupObjectID: "bo-src"}); !errs.Is(err, errs.NoLeader) {
		t.Errorf("update_backup_object on a follower: %v", err)
	}
}

type follower struct{ *cluster.Server }

func (follower) IsLeader() bool { return false }

// deposed is a leader a newer term has replaced without its knowing yet.
type deposed struct{ *cluster.Server }

func (deposed) VerifyLeader(context.Context) error {
	return errs.New(errs.NoLeader, "a newer term has a leader")
}

// TestCollectorDeposedLeaderDoesNotAnswerFromItsState: reads, refusals and
// no-op writes rest on the manager's own state, so a leader a quorum no
// longer confirms answers NoLeader (the agent asks the next manager) rather
// than "unknown volume" for a volume the new leader may have created; a
// write that goes through raft needs no confirmation.
func TestCollectorDeposedLeaderDoesNotAnswerFromItsState(t *testing.T) {
	e := newStaEnv(t)
	leader := New(Deps{Cluster: e.srv, Logger: logging.NewTest(t)})
	if _, err := leader.getVolume(e.ctx, proto.GetVolumeRequest{VolumeID: "vol-absent"}); errs.Is(err, errs.NoLeader) || err == nil {
		t.Fatalf("get_volume of an unknown volume on the leader: %v, want its not-found error", err)
	}
	s := New(Deps{Cluster: deposed{e.srv}, Logger: logging.NewTest(t)})
	if _, err := s.getVolume(e.ctx, proto.GetVolumeRequest{VolumeID: "vol-absent"}); !errs.Is(err, errs.NoLeader) {
		t.Errorf("get_volume on a deposed leader: %v, want NoLeader", err)
	}
	if _, err := s.updateBackupObject(e.ctx, proto.UpdateBackupObjectRequest{BackupObjectID: "bo-absent"}); !errs.Is(err, errs.NoLeader) {
		t.Errorf("refused update_backup_object on a deposed leader: %v, want NoLeader", err)
	}
}
