package scheduling

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// seedStorage makes storage nodes sn-a (sta.a, online, 1000 MB) and sn-b
// (sta.b, offline, 5000 MB).
func (e *env) seedStorage() {
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindStorageNode, "sn-a", proto.StorageNode{ID: "sn-a", NodeID: "sta.a", OfferingDiskSpaceMB: 1000,
			StorageType: "iscsi", IPAddress: "192.0.2.10"})
		b.Put(proto.KindNodeState, "sta.a", proto.NodeState{NodeID: "sta.a", State: "online"})
		b.Create(proto.KindStorageNode, "sn-b", proto.StorageNode{ID: "sn-b", NodeID: "sta.b", OfferingDiskSpaceMB: 5000,
			StorageType: "iscsi"})
		b.Put(proto.KindNodeState, "sta.b", proto.NodeState{NodeID: "sta.b", State: "offline"})
	})
}

// seedVolume makes a standalone shared volume in state scheduling.
func (e *env) seedVolume(id string, sizeMB int64) {
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindVolume, id, proto.Volume{ID: id, AccountID: "a-shpoolxx", State: proto.VolumeScheduling,
			Size: sizeMB << 20, StoreType: proto.VolumeShared, ServiceType: "std"})
	})
}

func TestGetVolumeView(t *testing.T) {
	e := newEnv(t)
	e.seedStorage()
	e.seedVolume("vol-aaaa0001", 100)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindStorageUsage, "sn-a", proto.StorageUsage{ID: "sn-a", UsedBytes: 200 << 20,
			Volumes: map[string]int64{"vol-other": 200 << 20}})
	})
	var w proto.VolumeSchedView
	if err := e.call(proto.VerbGetVolumeView, proto.GetVolumeViewRequest{VolumeID: "vol-aaaa0001"}, &w); err != nil {
		t.Fatal(err)
	}
	want := []proto.SchedStorageNode{
		{ID: "sn-a", NodeID: "sta.a", Online: true, FreeBytes: 800 << 20},
		{ID: "sn-b", NodeID: "sta.b", Online: false, FreeBytes: 5000 << 20},
	}
	if fmt.Sprint(w.StorageNodes) != fmt.Sprint(want) {
		t.Errorf("nodes = %+v, want %+v", w.StorageNodes, want)
	}
	if w.Volume != (proto.SchedVolumeRequest{ID: "vol-aaaa0001", AccountID: "a-shpoolxx", ServiceType: "std",
		State: proto.VolumeScheduling, SizeBytes: 100 << 20}) || w.Index == 0 {
		t.Errorf("volume = %+v (index %d)", w.Volume, w.Index)
	}
	err := e.call(proto.VerbGetVolumeView, proto.GetVolumeViewRequest{VolumeID: "vol-nothere"}, &w)
	if !errs.Is(err, errs.UnknownVolume) {
		t.Errorf("unknown volume: %v", err)
	}
}

func (e *env) submitVolume(vol, sn string) (proto.SubmitVolumePlanResponse, error) {
	var resp proto.SubmitVolumePlanResponse
	err := e.call(proto.VerbSubmitVolumePlan, proto.SubmitVolumePlanRequest{VolumeID: vol, StorageNodeID: sn}, &resp)
	return resp, err
}

func TestSubmitVolumePlan(t *testing.T) {
	e := newEnv(t)
	e.seedStorage()
	e.seedVolume("vol-aaaa0001", 600)
	e.seedVolume("vol-aaaa0002", 600)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindStorageNode, "sn-c", proto.StorageNode{ID: "sn-c", NodeID: "sta.c", OfferingDiskSpaceMB: 10000})
		b.Put(proto.KindNodeState, "sta.c", proto.NodeState{NodeID: "sta.c", State: "online"})
		b.Create(proto.KindVolume, "vol-inst", proto.Volume{ID: "vol-inst", State: proto.VolumeScheduling, Size: 1 << 20,
			StoreType: proto.VolumeShared, InstanceID: ptr("i-x")})
	})

	// Stale: unknown node, offline node. Not ours: an instance's volume.
	e.rejects(errs.Conflict, "stale plan: storage node \"sn-nope\" does not exist", func() error {
		_, err := e.submitVolume("vol-aaaa0001", "sn-nope")
		return err
	})
	e.rejects(errs.Conflict, "stale plan: storage node sn-b (sta.b) is not online", func() error {
		_, err := e.submitVolume("vol-aaaa0001", "sn-b")
		return err
	})
	e.rejects(errs.InvalidParameter, "belongs to an instance's placement", func() error {
		_, err := e.submitVolume("vol-inst", "sn-a")
		return err
	})
	e.rejects(errs.UnknownVolume, "vol-nope", func() error {
		_, err := e.submitVolume("vol-nope", "sn-a")
		return err
	})

	resp, err := e.submitVolume("vol-aaaa0001", "sn-a")
	if err != nil || resp.JobID == "" || resp.AlreadyApplied {
		t.Fatalf("submit = %+v, %v", resp, err)
	}
	var vol proto.Volume
	e.get(proto.KindVolume, "vol-aaaa0001", &vol)
	if vol.State != proto.VolumePending || vol.StorageNodeID == nil || *vol.StorageNodeID != "sn-a" ||
		vol.Device == nil || vol.Device.StorageNodeID != "sn-a" || vol.Device.StorageIP != "192.0.2.10" {
		t.Errorf("volume = %+v device %+v", vol, vol.Device)
	}
	var job proto.Job
	if !e.get(proto.KindJob, resp.JobID, &job) || job.QueueName != "sta-handle.sta.a" || job.Verb != proto.VerbCreateVolume ||
		job.Params["volume_id"] != "vol-aaaa0001" || !e.get(proto.KindJobQueue, resp.JobID, &proto.JobQueueEntry{}) {
		t.Errorf("job = %+v", job)
	}
	var u proto.StorageUsage
	if e.get(proto.KindStorageUsage, "sn-a", &u); u.UsedBytes != 600<<20 || u.Volumes["vol-aaaa0001"] != 600<<20 {
		t.Errorf("usage = %+v", u)
	}

	// Submitted again (the first answer was lost): nothing new.
	again, err := e.submitVolume("vol-aaaa0001", "sn-a")
	if err != nil || !again.AlreadyApplied || len(all[proto.Job](e, proto.KindJob)) != 1 {
		t.Errorf("resubmit = %+v, %v; %d jobs", again, err, len(all[proto.Job](e, proto.KindJob)))
	}
	// Elsewhere after placement: not scheduling any more.
	e.rejects(errs.InvalidVolumeState, "is pending, not scheduling", func() error {
		_, err := e.submitVolume("vol-aaaa0001", "sn-c")
		return err
	})
	// The second volume no longer fits sn-a (600 + 600 > 1000 MB).
	e.rejects(errs.Conflict, "stale plan: storage node sn-a has no room for volume vol-aaaa0002", func() error {
		_, err := e.submitVolume("vol-aaaa0002", "sn-a")
		return err
	})
	if _, err := e.submitVolume("vol-aaaa0002", "sn-c"); err != nil {
		t.Fatal(err)
	}
}

// TestVolumeDaemonsRaceForStorage runs two scheduler daemons placing 12
// volumes of 300 MB at once on one online node of 1000 MB (room for 3) and
// one of 1500 MB (room for 5): each volume is placed or deleted with the
// reason, no node holds more than its offering, and the StorageUsage
// records add up to the placed volumes.
func TestVolumeDaemonsRaceForStorage(t *testing.T) {
	e := newEnv(t)
	e.seedStorage()
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindStorageNode, "sn-c", proto.StorageNode{ID: "sn-c", NodeID: "sta.c", OfferingDiskSpaceMB: 1500})
		b.Put(proto.KindNodeState, "sta.c", proto.NodeState{NodeID: "sta.c", State: "online"})
	})
	const n = 12
	for i := range n {
		e.seedVolume(fmt.Sprintf("vol-race%04d", i), 300)
	}
	placers := []interface {
		ScheduleVolume(context.Context, proto.ScheduleVolumeRequest) (proto.ScheduleVolumeResponse, error)
	}{e.placer(), e.placer()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, results[i] = placers[i%2].ScheduleVolume(ctx, proto.ScheduleVolumeRequest{VolumeID: fmt.Sprintf("vol-race%04d", i)})
		}()
	}
	wg.Wait()
	placed := map[string]int64{}
	for i, err := range results {
		var v proto.Volume
		e.get(proto.KindVolume, fmt.Sprintf("vol-race%04d", i), &v)
		switch {
		case err == nil && v.State == proto.VolumePending && v.StorageNodeID != nil:
			placed[*v.StorageNodeID] += v.Size
		case errs.Is(err, errs.OutOfDiskSpace) && v.State == proto.VolumeDeleted && v.LastError != "":
		default:
			t.Errorf("volume %d: %v, state %s %q", i, err, v.State, v.LastError)
		}
	}
	if placed["sn-a"] != 3*300<<20 || placed["sn-c"] != 5*300<<20 || placed["sn-b"] != 0 {
		t.Errorf("placed bytes = %v, want 3 volumes on sn-a, 5 on sn-c, none on offline sn-b", placed)
	}
	for _, id := range []string{"sn-a", "sn-c"} {
		var u proto.StorageUsage
		e.get(proto.KindStorageUsage, id, &u)
		var sum int64
		for _, s := range u.Volumes {
			sum += s
		}
		if u.UsedBytes != placed[id] || sum != placed[id] {
			t.Errorf("%s usage = %+v, placed %d", id, u, placed[id])
		}
	}
	if jobs := all[proto.Job](e, proto.KindJob); len(jobs) != 8 {
		t.Errorf("%d create_volume jobs, want 8", len(jobs))
	}
}

func TestScheduleVolumeNothingFits(t *testing.T) {
	e := newEnv(t)
	e.seedStorage()
	e.seedVolume("vol-big", 2000) // sn-a has 1000 MB, sn-b is offline
	p := e.placer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := p.ScheduleVolume(ctx, proto.ScheduleVolumeRequest{VolumeID: "vol-big"})
	const reason = "StorageNodeSchedulingError: Unable to find a suitable storage node for volume vol-big (2097152000 bytes)"
	if !errs.Is(err, errs.OutOfDiskSpace) || err.Error() != reason {
		t.Fatalf("err = %v", err)
	}
	var v proto.Volume
	if e.get(proto.KindVolume, "vol-big", &v); v.State != proto.VolumeDeleted || v.DeletedAt == nil || v.LastError != reason {
		t.Errorf("volume = %+v", v)
	}
	if e.get(proto.KindStorageUsage, "sn-a", &proto.StorageUsage{}) {
		t.Errorf("a failed volume charged storage")
	}
	// Delivered again: the volume is gone, nothing changes.
	before := e.buckets()
	if _, err := p.ScheduleVolume(ctx, proto.ScheduleVolumeRequest{VolumeID: "vol-big"}); !errs.Is(err, errs.InvalidVolumeState) {
		t.Errorf("redelivery: %v", err)
	}
	if fmt.Sprint(before) != fmt.Sprint(e.buckets()) {
		t.Errorf("redelivery changed the state")
	}
	// And a placed volume's redelivery reports where it went.
	e.seedVolume("vol-small", 10)
	first, err := p.ScheduleVolume(ctx, proto.ScheduleVolumeRequest{VolumeID: "vol-small"})
	if err != nil || first.StorageNodeID != "sn-a" {
		t.Fatalf("small = %+v, %v", first, err)
	}
	if again, err := p.ScheduleVolume(ctx, proto.ScheduleVolumeRequest{VolumeID: "vol-small"}); err != nil || again.StorageNodeID != "sn-a" {
		t.Errorf("redelivery = %+v, %v", again, err)
	}
}

// TestFailUnplacedVolume: the dispatcher's hook ends a volume whose
// schedule_volume or create_volume job failed without the agent saying so.
func TestFailUnplacedVolume(t *testing.T) {
	e := newEnv(t)
	e.seedStorage()
	e.seedVolume("vol-sched", 10)
	e.seedVolume("vol-made", 10)
	if _, err := e.submitVolume("vol-made", "sn-a"); err != nil {
		t.Fatal(err)
	}
	fail := func(endpoint, verb, vol string) {
		t.Helper()
		j, err := jobs.New(testNow, endpoint, verb, vol, map[string]any{"volume_id": vol})
		if err != nil {
			t.Fatal(err)
		}
		err = state.Commit(context.Background(), e.srv.Store(), e.srv, func(tx *state.Tx, b *state.Builder) error {
			return FailUnplaced(tx, b, j, "job timed out", testNow)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	fail(proto.EndpointScheduler, proto.VerbScheduleVolume, "vol-sched")
	fail("sta-handle.sta.a", proto.VerbCreateVolume, "vol-made")
	for id, msg := range map[string]string{
		"vol-sched": "scheduling did not finish: job timed out",
		"vol-made":  "create_volume did not finish: job timed out",
	} {
		var v proto.Volume
		if e.get(proto.KindVolume, id, &v); v.State != proto.VolumeDeleted || v.LastError != msg {
			t.Errorf("%s = %s %q", id, v.State, v.LastError)
		}
	}
	if e.get(proto.KindStorageUsage, "sn-a", &proto.StorageUsage{}) {
		t.Errorf("the failed volume's space was not given back")
	}
	// Other verbs and volumes past creation are left alone.
	e.seedVolume("vol-ok", 10)
	if _, err := e.submitVolume("vol-ok", "sn-a"); err != nil {
		t.Fatal(err)
	}
	before := e.buckets()
	fail("sta-handle.sta.a", proto.VerbDeleteVolume, "vol-ok")
	fail(proto.EndpointScheduler, proto.VerbScheduleVolume, "vol-ok")
	if fmt.Sprint(before) != fmt.Sprint(e.buckets()) {
		t.Errorf("hook changed a volume it does not own")
	}
}

// TestStorageCharges: charges accumulate within one txn, a volume is
// charged once, release is idempotent and an empty node has no record.
func TestStorageCharges(t *testing.T) {
	e := newEnv(t)
	e.seedStorage()
	sn := proto.StorageNode{ID: "sn-a", OfferingDiskSpaceMB: 1000}
	err := state.Commit(context.Background(), e.srv.Store(), e.srv, func(tx *state.Tx, b *state.Builder) error {
		c := NewStorageCharges(tx, b)
		for _, v := range []string{"vol-1", "vol-2", "vol-1"} {
			if ok, err := c.Charge(&sn, v, 400<<20); !ok || err != nil {
				return fmt.Errorf("charge %s: %v %v", v, ok, err)
			}
		}
		if ok, _ := c.Charge(&sn, "vol-3", 400<<20); ok {
			return fmt.Errorf("vol-3 fits in 1000 MB with 800 MB used")
		}
		c.Flush()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var u proto.StorageUsage
	if e.get(proto.KindStorageUsage, "sn-a", &u); u.UsedBytes != 800<<20 || len(u.Volumes) != 2 {
		t.Fatalf("usage = %+v", u)
	}
	release := func(id string) {
		t.Helper()
		err := state.Commit(context.Background(), e.srv.Store(), e.srv, func(tx *state.Tx, b *state.Builder) error {
			return ReleaseVolume(tx, b, &proto.Volume{ID: id, StorageNodeID: ptr("sn-a")})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	release("vol-1")
	release("vol-1")
	u = proto.StorageUsage{}
	if e.get(proto.KindStorageUsage, "sn-a", &u); u.UsedBytes != 400<<20 || len(u.Volumes) != 1 {
		t.Fatalf("after release = %+v", u)
	}
	release("vol-2")
	if e.get(proto.KindStorageUsage, "sn-a", &u) {
		t.Errorf("an empty node keeps its usage record: %+v", u)
	}
}

// TestInstancePlanChargesStorage: an instance's shared volume is charged to
// its storage node with the plan; the view shows the node's free space from
// that record.
func TestInstancePlanChargesStorage(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindVolume, "vol-san1", proto.Volume{ID: "vol-san1", State: proto.VolumeScheduling, Size: 20 << 30,
			StoreType: proto.VolumeShared, InstanceID: ptr("i-san1")})
		b.Create(proto.KindInstance, "i-san1", proto.Instance{ID: "i-san1", ImageID: "wmi-san", Arch: "x86_64", Hypervisor: "kvm",
			CPUCores: 1, MemorySize: 512, State: proto.InstanceScheduling, BootVolumeID: "vol-san1",
			RequestParams: map[string]any{"vifs": "{}"}})
	})
	if _, err := e.submit(e.plan("i-san1", false, 1)); err != nil {
		t.Fatal(err)
	}
	var u proto.StorageUsage
	if e.get(proto.KindStorageUsage, "sn-demo1", &u); u.UsedBytes != 20<<30 || u.Volumes["vol-san1"] != 20<<30 {
		t.Errorf("usage = %+v", u)
	}
	e.seedVolume("vol-next", 10)
	var w proto.VolumeSchedView
	if err := e.call(proto.VerbGetVolumeView, proto.GetVolumeViewRequest{VolumeID: "vol-next"}, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.StorageNodes) != 1 || w.StorageNodes[0].FreeBytes != 1<<40-20<<30 {
		t.Errorf("view = %+v", w.StorageNodes)
	}
}
