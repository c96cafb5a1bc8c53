package collector_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/collector"
	"github.com/vdc-project/vdc/sta/collector/collectortest"
)

// direct calls one manager address (the real client tries them all).
type direct struct {
	c    *rpc.Client
	addr string
}

func (d direct) Call(ctx context.Context, endpoint, verb string, req, resp any) error {
	return d.c.Call(ctx, d.addr, endpoint, verb, req, resp)
}

// TestWire runs every client call over RPC against the fake manager: the
// endpoints, verbs and types of the wire contract line up.
func TestWire(t *testing.T) {
	f := collectortest.New()
	s := rpc.NewServer(rpc.ServerConfig{})
	f.Register(s)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	rc := rpc.NewClient(rpc.ClientConfig{})
	defer rc.Close()
	c := collector.New(direct{rc, l.Addr().String()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	sn := &proto.StorageNode{ID: "sn-1", NodeID: "sta.w"}
	f.PutBackupObject(proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1", State: proto.BackupObjectPending}})
	f.PutVolume(proto.VolumeView{ID: "vol-1", State: proto.VolumePending, StorageNode: sn,
		BackupObject: &proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1"}}})
	f.PutImage(proto.ImageView{Image: proto.Image{ID: "wmi-1", State: "creating", BackupObjectID: "bo-1"}})
	f.PutInstance(proto.InstanceView{ID: "i-1", State: proto.InstancePending})

	v, err := c.GetVolume(ctx, "vol-1")
	if err != nil || v.BackupObject == nil || v.BackupObject.State != proto.BackupObjectPending {
		t.Fatalf("GetVolume = %+v, %v", v, err)
	}
	if _, err := c.GetVolume(ctx, "vol-x"); !errs.Is(err, errs.UnknownVolume) {
		t.Errorf("GetVolume of an unknown volume = %v", err)
	}
	dev := &proto.VolumeDevice{IQN: "iqn.2026-01.test:vol-1", LUN: 1, Format: "qcow2"}
	if err := c.UpdateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: "vol-1", State: ptr(proto.VolumeAvailable), Device: dev}); err != nil {
		t.Fatal(err)
	}
	vols, err := c.AvailableVolumes(ctx, "sta.w")
	if err != nil || len(vols) != 1 || vols[0].Device == nil || *vols[0].Device != *dev {
		t.Errorf("AvailableVolumes = %+v, %v", vols, err)
	}
	sum, n := "0123456789abcdef0123456789abcdef", int64(42)
	if err := c.UpdateBackupObject(ctx, proto.UpdateBackupObjectRequest{BackupObjectID: "bo-1", State: ptr(proto.BackupObjectAvailable),
		Checksum: &sum, AllocationSize: &n}); err != nil {
		t.Fatal(err)
	}
	bo, err := c.GetBackupObject(ctx, "bo-1")
	if err != nil || bo.State != proto.BackupObjectAvailable || bo.Checksum != sum || bo.Progress != 100 {
		t.Errorf("GetBackupObject = %+v, %v", bo, err)
	}
	if ok, err := c.PostProcessBackupImage(ctx, "wmi-1"); err != nil || !ok {
		t.Errorf("PostProcessBackupImage = %v, %v", ok, err)
	}
	if img, err := c.GetImage(ctx, "wmi-1"); err != nil || img.State != "available" {
		t.Errorf("GetImage = %+v, %v", img, err)
	}
	if err := c.UpdateImage(ctx, proto.UpdateImageRequest{ImageID: "wmi-1", State: ptr("deleted")}); err != nil {
		t.Error(err)
	}
	if inst, err := c.GetInstance(ctx, "i-1"); err != nil || inst.State != proto.InstancePending {
		t.Errorf("GetInstance = %+v, %v", inst, err)
	}
	if err := c.UpdateInstance(ctx, proto.UpdateInstanceRequest{InstanceID: "i-1", State: ptr(proto.InstanceTerminated)}); err != nil {
		t.Error(err)
	}
	id1, err := c.SubmitJob(ctx, "job-p", "k", proto.HvaHandle("hva.1"), proto.VerbWaitVolumesAvailable, "i-1",
		proto.HvaWaitVolumesAvailableRequest{InstanceID: "i-1"})
	id2, err2 := c.SubmitJob(ctx, "job-p", "k", proto.HvaHandle("hva.1"), proto.VerbWaitVolumesAvailable, "i-1",
		proto.HvaWaitVolumesAvailableRequest{InstanceID: "i-1"})
	if err != nil || err2 != nil || id1 == "" || id1 != id2 || len(f.Jobs()) != 1 || string(f.Jobs()[0].Args) != `{"instance_id":"i-1"}` {
		t.Errorf("SubmitJob = %s, %s (%v, %v); jobs %+v", id1, id2, err, err2, f.Jobs())
	}
	if err := c.JobFinished(ctx, "sta.w", proto.JobResult{JobID: "job-p", Status: proto.JobSucceeded}); err != nil || len(f.JobResults()) != 1 {
		t.Errorf("JobFinished = %v (%d results)", err, len(f.JobResults()))
	}
	// The contract's rules travel as error kinds.
	if err := c.UpdateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: "vol-1", State: ptr(proto.VolumeDeleted)}); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: "vol-1", State: ptr(proto.VolumeAvailable)}); !errs.Is(err, errs.InvalidVolumeState) {
		t.Errorf("reviving a deleted volume = %v, want InvalidVolumeState", err)
	}
}

func ptr[T any](v T) *T { return &v }
