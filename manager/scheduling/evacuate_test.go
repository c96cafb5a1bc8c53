package scheduling

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// newEvacEnv is newEnv with the evacuation verbs served too. Finalize
// marks an instance terminated (the API's rules are tested there).
func newEvacEnv(t *testing.T) *env {
	t.Helper()
	srv := cluster.TestServer(t, nil)
	now := func() time.Time { return testNow }
	svc := New(Config{Store: srv.Store(), Applier: srv, Now: now, Logger: logging.NewTest(t)})
	rs := rpc.NewServer(rpc.ServerConfig{Logger: logging.NewTest(t)})
	svc.Register(rs)
	NewEvacuation(EvacuationConfig{Store: srv.Store(), Applier: srv, Now: now, Logger: logging.NewTest(t),
		Finalize: func(tx *state.Tx, b *state.Builder, inst *proto.Instance, now time.Time) error {
			m, err := tx.Get(proto.KindInstance, inst.ID, &proto.Instance{})
			if err != nil {
				return err
			}
			if err := Release(tx, b, inst); err != nil {
				return err
			}
			inst.State, inst.TerminatedAt = proto.InstanceTerminated, &now
			b.Update(proto.KindInstance, inst.ID, m.ModifyIndex, inst)
			return nil
		}}).Register(rs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rs.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rs.Shutdown(ctx)
		<-done
	})
	c := rpc.NewClient(rpc.ClientConfig{})
	t.Cleanup(c.Close)
	return &env{t: t, srv: srv, svc: svc, client: c, addr: l.Addr().String()}
}

// seedHosts makes hn-dead (hva.dead, online unless dead), hn-big (4 cores,
// 8 GiB) and hn-small (4 cores, 4 GiB), the images, a network and a
// storage node.
func (e *env) seedHosts(dead bool) {
	e.seed(func(b *state.Builder) {
		for _, h := range []struct {
			id, node string
			cpu, mem int64
			online   bool
		}{{"hn-dead", "hva.dead", 16, 16384, !dead}, {"hn-big", "hva.big", 4, 8192, true}, {"hn-small", "hva.small", 4, 4096, true}} {
			b.Create(proto.KindHostNode, h.id, proto.HostNode{ID: h.id, NodeID: h.node, Arch: "x86_64", Hypervisor: "kvm",
				OfferingCPUCores: h.cpu, OfferingMemorySize: h.mem, OfferingDiskSpaceMB: 100 << 10, SchedulingEnabled: true})
			st := "online"
			if !h.online {
				st = "offline"
			}
			b.Put(proto.KindNodeState, h.node, proto.NodeState{NodeID: h.node, State: st})
		}
		b.Create(proto.KindImage, "wmi-local", proto.Image{ID: "wmi-local", BootDevType: 2, Arch: "x86_64"})
		b.Create(proto.KindImage, "wmi-san", proto.Image{ID: "wmi-san", BootDevType: 1, Arch: "x86_64"})
		b.Create(proto.KindStorageNode, "sn-demo1", proto.StorageNode{ID: "sn-demo1", NodeID: "sta.demo1", OfferingDiskSpaceMB: 1 << 20})
		b.Put(proto.KindNodeState, "sta.demo1", proto.NodeState{NodeID: "sta.demo1", State: "online"})
	})
}

// placed makes an instance in state on hn-dead, counted in its usage, with
// a local boot volume (or, san, a shared one attached to it).
func (e *env) placed(id string, cpu int, mem int64, st string, ha, san bool) {
	e.seed(func(b *state.Builder) {
		vol := "vol-" + id[2:]
		inst := proto.Instance{ID: id, AccountID: "a-shpoolxx", ImageID: "wmi-local", Arch: "x86_64", Hypervisor: "kvm",
			CPUCores: cpu, MemorySize: mem, State: st, Status: proto.StatusOnline, ServiceType: "std",
			HostNodeID: ptr("hn-dead"), HaEnabled: ha, BootVolumeID: vol}
		v := proto.Volume{ID: vol, AccountID: "a-shpoolxx", State: proto.VolumeAttached, Size: 1 << 30,
			StoreType: proto.VolumeLocal, InstanceID: ptr(id), AttachedAt: &testNow}
		if san {
			inst.ImageID = "wmi-san"
			v.StoreType, v.StorageNodeID = proto.VolumeShared, ptr("sn-demo1")
			v.Device = &proto.VolumeDevice{StorageNodeID: "sn-demo1", IQN: "iqn.test:" + vol}
		}
		b.Create(proto.KindVolume, vol, v)
		b.Create(proto.KindInstance, id, inst)
	})
	e.countOn("hn-dead", id, cpu, mem)
}

// countOn adds an instance to a host's usage.
func (e *env) countOn(host, id string, cpu int, mem int64) {
	var u proto.HostUsage
	exists := e.get(proto.KindHostUsage, host, &u)
	u.ID = host
	u.CPUCores += cpu
	u.MemorySize += mem
	u.Instances = append(u.Instances, id)
	e.seed(func(b *state.Builder) { b.Put(proto.KindHostUsage, host, u) })
	_ = exists
}

// startEvacuation commits StartEvacuation of hn-dead and returns the job.
func (e *env) startEvacuation(o EvacuationStart) proto.Job {
	e.t.Helper()
	var id string
	err := state.Commit(context.Background(), e.srv.Store(), e.srv, func(tx *state.Tx, b *state.Builder) error {
		var h proto.HostNode
		m, err := tx.Get(proto.KindHostNode, "hn-dead", &h)
		if err != nil {
			return err
		}
		id, err = StartEvacuation(tx, b, &h, m, o, testNow)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	var j proto.Job
	if !e.get(proto.KindJob, id, &j) {
		e.t.Fatalf("job %s not stored", id)
	}
	return j
}

// queued lists the unfinished jobs as "endpoint/verb resource".
func (e *env) queued() []string {
	var out []string
	for _, q := range all[proto.JobQueueEntry](e, proto.KindJobQueue) {
		var j proto.Job
		e.get(proto.KindJob, q.ID, &j)
		out = append(out, j.QueueName+"/"+j.Verb+" "+j.ResourceID)
	}
	slices.Sort(out)
	return out
}

func (e *env) inst(id string) proto.Instance {
	e.t.Helper()
	var v proto.Instance
	if !e.get(proto.KindInstance, id, &v) {
		e.t.Fatalf("no instance %s", id)
	}
	return v
}

func (e *env) vol(id string) proto.Volume {
	e.t.Helper()
	var v proto.Volume
	if !e.get(proto.KindVolume, id, &v) {
		e.t.Fatalf("no volume %s", id)
	}
	return v
}

// TestEvacuateFencedHost runs evacuate_from for a host the managers fenced:
// HA instances go where they fit (capacity respected, none over-committed),
// boot there at once with their shared volumes freed in the same
// transaction, and get a cleanup on the old host; an HA instance that fits
// nowhere and the instances without HA are halted with the reason; a
// shutting-down instance ends terminated; the host stays disabled. Run
// again, the evacuation changes nothing.
func TestEvacuateFencedHost(t *testing.T) {
	e := newEvacEnv(t)
	e.seedHosts(true)
	e.placed("i-local001", 2, 1024, proto.InstanceRunning, true, false)
	e.placed("i-san00001", 3, 1024, proto.InstanceRunning, true, true)
	e.placed("i-huge0001", 8, 1024, proto.InstanceRunning, true, false)
	e.placed("i-noha0001", 1, 512, proto.InstanceRunning, false, false)
	e.placed("i-halt0001", 1, 512, proto.InstanceHalted, true, false)
	e.placed("i-shut0001", 1, 512, proto.InstanceShuttingDown, false, false)

	j := e.startEvacuation(EvacuationStart{Reason: "test", Fence: true, KeepNodeOffline: true})
	if again := e.startEvacuation(EvacuationStart{Reason: "test", Fence: true, KeepNodeOffline: true}); again.ID != j.ID {
		t.Fatalf("second start made job %s, want the running %s", again.ID, j.ID)
	}
	var fence proto.HostFence
	if !e.get(proto.KindHostFence, "hva.dead", &fence) || fence.JobID != j.ID || fence.HostNodeID != "hn-dead" {
		t.Fatalf("fence = %+v", fence)
	}
	var req proto.EvacuateFromRequest
	if err := jobs.Args(j, &req); err != nil || req.HostNodeID != "hn-dead" || !req.KeepNodeOffline {
		t.Fatalf("job args %+v, %v", req, err)
	}
	ctx := context.Background()
	resp, err := e.placer().EvacuateFrom(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resp.Scheduled, []string{"i-local001", "i-san00001"}) || !slices.Equal(resp.Failed, []string{"i-huge0001"}) ||
		!slices.Equal(resp.Halted, []string{"i-noha0001", "i-halt0001"}) {
		t.Fatalf("response = %+v", resp)
	}
	if got := resp.Reasons["i-huge0001"]; got != "no other host can run it: HostNodeSchedulingError: Unable to find a suitable host node for x86_64 kvm" {
		t.Errorf("reason for i-huge0001 = %q", got)
	}

	// LeastUsage by memory: the 2-core instance to hn-big (8 GiB), the
	// 3-core one to hn-small (hn-big has 2 cores left).
	for id, host := range map[string]string{"i-local001": "hn-big", "i-san00001": "hn-small"} {
		in := e.inst(id)
		if in.State != proto.InstancePending || in.HostNodeID == nil || *in.HostNodeID != host {
			t.Errorf("%s = %s on %v, want pending on %s", id, in.State, in.HostNodeID, host)
		}
	}
	if v := e.vol("vol-local001"); v.State != proto.VolumePending || v.StoreType != proto.VolumeLocal {
		t.Errorf("local volume = %s", v.State)
	}
	if v := e.vol("vol-san00001"); v.State != proto.VolumeAvailable || v.AttachedAt != nil || v.InstanceID == nil {
		t.Errorf("shared volume = %s attached_at %v instance %v, want available (freed from the dead host), still the instance's", v.State, v.AttachedAt, v.InstanceID)
	}
	for _, id := range []string{"i-huge0001", "i-noha0001"} {
		in := e.inst(id)
		if in.State != proto.InstanceHalted || in.Status != proto.StatusOffline || *in.HostNodeID != "hn-dead" || in.LastError == "" {
			t.Errorf("%s = %s/%s on %v, last_error %q", id, in.State, in.Status, *in.HostNodeID, in.LastError)
		}
	}
	if got := e.inst("i-noha0001").LastError; got != "evacuation of host hn-dead: ha_enabled is off; its host hn-dead is evacuated" {
		t.Errorf("non-HA last_error %q", got)
	}
	if in := e.inst("i-shut0001"); in.State != proto.InstanceTerminated {
		t.Errorf("shutting-down instance is %s", in.State)
	}
	var u proto.HostUsage
	e.get(proto.KindHostUsage, "hn-dead", &u)
	if slices.Contains(u.Instances, "i-local001") || slices.Contains(u.Instances, "i-san00001") || slices.Contains(u.Instances, "i-shut0001") ||
		u.CPUCores != 8+1+1 {
		t.Errorf("dead host's usage = %+v", u)
	}
	e.get(proto.KindHostUsage, "hn-big", &u)
	if u.CPUCores != 2 || !slices.Equal(u.Instances, []string{"i-local001"}) {
		t.Errorf("hn-big usage = %+v", u)
	}
	want := []string{
		"hva-handle.hva.dead/cleanup i-local001",
		"hva-handle.hva.dead/cleanup i-san00001",
		"hva-handle.hva.small/run_vol_store i-san00001",
		"local-store-handle.hva.big/run_local_store i-local001",
		"scheduler/evacuate_from hn-dead",
	}
	if got := e.queued(); !slices.Equal(got, want) {
		t.Errorf("queued jobs = %v\nwant %v", got, want)
	}
	var h proto.HostNode
	e.get(proto.KindHostNode, "hn-dead", &h)
	if h.SchedulingEnabled {
		t.Error("the failed host was enabled for scheduling again")
	}

	// A redelivered job: everything is where it went; no record changes.
	before := e.buckets()
	resp2, err := e.placer().EvacuateFrom(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if after := e.buckets(); !reflect.DeepEqual(before, after) {
		t.Error("evacuating again changed the state")
	}
	// The instance that did not fit is halted now, like the others.
	if len(resp2.Scheduled) != 0 || len(resp2.Failed) != 0 || !slices.Equal(resp2.Halted, []string{"i-huge0001", "i-noha0001", "i-halt0001"}) {
		t.Errorf("second run = %+v", resp2)
	}
}

// TestEvacuateLiveHost: an operator evacuates an online host that is not
// fenced: the moved instance boots only after the old host's cleanup (the
// boot rides on the cleanup job, its shared volume stays detaching until
// then), the instance without HA is powered off there, and scheduling is
// enabled again at the end.
func TestEvacuateLiveHost(t *testing.T) {
	e := newEvacEnv(t)
	e.seedHosts(false)
	e.placed("i-san00001", 2, 1024, proto.InstanceRunning, true, true)
	e.placed("i-noha0001", 1, 512, proto.InstanceRunning, false, false)
	j := e.startEvacuation(EvacuationStart{Reason: "operator"})
	if e.get(proto.KindHostFence, "hva.dead", &proto.HostFence{}) {
		t.Fatal("a live host was fenced")
	}
	var req proto.EvacuateFromRequest
	_ = jobs.Args(j, &req)
	resp, err := e.placer().EvacuateFrom(context.Background(), req)
	if err != nil || !slices.Equal(resp.Scheduled, []string{"i-san00001"}) || !slices.Equal(resp.Halted, []string{"i-noha0001"}) {
		t.Fatalf("evacuate = %+v, %v", resp, err)
	}
	if v := e.vol("vol-san00001"); v.State != proto.VolumeDetaching {
		t.Errorf("shared volume of the moved instance is %s before the cleanup, want detaching", v.State)
	}
	if in := e.inst("i-noha0001"); in.State != proto.InstanceHalting {
		t.Errorf("non-HA instance is %s, want halting (powered off by its hva)", in.State)
	}
	want := []string{
		"hva-handle.hva.dead/cleanup i-san00001",
		"hva-handle.hva.dead/poweroff i-noha0001",
		"scheduler/evacuate_from hn-dead", // run here by hand, not by a dispatcher
	}
	if got := e.queued(); !slices.Equal(got, want) {
		t.Errorf("queued jobs = %v\nwant %v (no boot before the cleanup)", got, want)
	}
	for _, q := range all[proto.JobQueueEntry](e, proto.KindJobQueue) {
		var j proto.Job
		e.get(proto.KindJob, q.ID, &j)
		if j.Verb != proto.VerbCleanup {
			continue
		}
		var c proto.HvaCleanupRequest
		if err := jobs.Args(j, &c); err != nil {
			t.Fatal(err)
		}
		var boot proto.HvaRunVolStoreRequest
		if c.Then == nil || c.Then.Endpoint != "hva-handle.hva.big" || c.Then.Verb != proto.VerbRunVolStore ||
			json.Unmarshal(c.Then.Args, &boot) != nil || boot.InstanceID != "i-san00001" || !slices.Equal(c.FreeVolumes, []string{"vol-san00001"}) {
			t.Errorf("cleanup = %+v", c)
		}
	}
	var h proto.HostNode
	e.get(proto.KindHostNode, "hn-dead", &h)
	if !h.SchedulingEnabled {
		t.Error("scheduling not enabled again after an operator's evacuation")
	}
}

// TestEvacuateInstanceRechecks: the leader refuses moves that no longer
// hold (stale: the daemon places again) and ones that never could.
func TestEvacuateInstanceRechecks(t *testing.T) {
	e := newEvacEnv(t)
	e.seedHosts(true)
	e.placed("i-local001", 2, 1024, proto.InstanceRunning, true, false)
	e.startEvacuation(EvacuationStart{Fence: true})
	e.seed(func(b *state.Builder) {
		b.Put(proto.KindNodeState, "hva.small", proto.NodeState{NodeID: "hva.small", State: "offline"})
		b.Put(proto.KindHostUsage, "hn-big", proto.HostUsage{ID: "hn-big", CPUCores: 3, MemorySize: 512, Instances: []string{"i-other"}})
	})
	move := func(to string) error {
		return e.call(proto.VerbEvacuateInstance, proto.EvacuateInstanceRequest{HostNodeID: "hn-dead", InstanceID: "i-local001", ToHostNodeID: to}, nil)
	}
	e.rejects(errs.Conflict, "not online", func() error { return move("hn-small") })
	e.rejects(errs.Conflict, "no room", func() error { return move("hn-big") })
	e.rejects(errs.Conflict, "does not exist", func() error { return move("hn-nothere") })
	e.rejects(errs.InvalidParameter, "evacuated host", func() error { return move("hn-dead") })
	e.rejects(errs.UnknownHostNode, "", func() error {
		return e.call(proto.VerbEvacuateInstance, proto.EvacuateInstanceRequest{HostNodeID: "hn-nothere", InstanceID: "i-local001"}, nil)
	})
	// Through the daemon: hn-big is full and hn-small offline, so the HA
	// instance is halted with the reason.
	resp, err := e.placer().EvacuateFrom(context.Background(), proto.EvacuateFromRequest{HostNodeID: "hn-dead", KeepNodeOffline: true})
	if err != nil || !slices.Equal(resp.Failed, []string{"i-local001"}) {
		t.Fatalf("evacuate = %+v, %v", resp, err)
	}
	if in := e.inst("i-local001"); in.State != proto.InstanceHalted {
		t.Errorf("instance is %s", in.State)
	}
}

// TestFailEvacuationCleanup: a cleanup that carried a boot and failed
// leaves the instance pending with the reason; other jobs are ignored.
func TestFailEvacuationCleanup(t *testing.T) {
	e := newEvacEnv(t)
	e.seedHosts(false)
	e.placed("i-san00001", 2, 1024, proto.InstanceRunning, true, true)
	j := e.startEvacuation(EvacuationStart{})
	var req proto.EvacuateFromRequest
	_ = jobs.Args(j, &req)
	if _, err := e.placer().EvacuateFrom(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	for _, q := range all[proto.JobQueueEntry](e, proto.KindJobQueue) {
		var cj proto.Job
		e.get(proto.KindJob, q.ID, &cj)
		err := state.Commit(context.Background(), e.srv.Store(), e.srv, func(tx *state.Tx, b *state.Builder) error {
			return FailEvacuationCleanup(tx, b, cj, "hypervisor broken", testNow)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	in := e.inst("i-san00001")
	if in.State != proto.InstancePending || in.LastError != "evacuation: the old domain on hva.dead was not removed (hypervisor broken); the instance was not started on its new host" {
		t.Errorf("instance = %s %q", in.State, in.LastError)
	}
}
