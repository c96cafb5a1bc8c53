package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

// beat is a settable stand-in for the managers' heartbeat verb.
type beat struct {
	mu     sync.Mutex
	err    error
	fenced bool
	calls  int
}

func (b *beat) Heartbeat(ctx context.Context, req proto.HeartbeatRequest) (proto.HeartbeatResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if req.NodeID != node {
		return proto.HeartbeatResponse{}, errs.New(errs.InvalidParameter, "heartbeat from %q", req.NodeID)
	}
	if b.err != nil {
		return proto.HeartbeatResponse{}, b.err
	}
	resp := proto.HeartbeatResponse{Fenced: b.fenced}
	if b.fenced {
		resp.Reason = "test evacuation"
	}
	return resp, nil
}

func (b *beat) set(err error, fenced bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.err, b.fenced = err, fenced
}

// fenceEnv is an env whose hva fences after 10 s (heartbeats every second)
// on the env's settable clock.
func fenceEnv(t *testing.T, after time.Duration, o envOpts) (*env, *beat) {
	t.Helper()
	b := &beat{}
	cfg := o.cfg
	var e *env
	o.cfg = func(c *Config) {
		if cfg != nil {
			cfg(c)
		}
		c.Fence = FenceConfig{Heartbeat: b, After: after, Interval: time.Second, Now: c.Now}
	}
	e = newEnv(t, o)
	return e, b
}

func (e *env) fenced() bool {
	f, _ := e.h.Fenced()
	return f
}

// moveAway places an instance on another node, as an evacuation does.
func (e *env) moveAway(id string) {
	v := e.instance(id)
	v.HostNode = &proto.HostNode{ID: "hn-other", NodeID: "hva.other"}
	v.State = proto.InstancePending
	e.coll.Put(v)
}

// TestFenceAfterTimeoutNotBefore cuts the hva off the managers: its
// domains keep running up to the fence timeout and are stopped (still
// defined) just after it; while fenced no job starts a domain and the
// monitor leaves the instances alone; back in contact, the domain of an
// instance that moved is removed, the one still placed here runs again,
// and the job that waited boots its instance.
func TestFenceAfterTimeoutNotBefore(t *testing.T) {
	e, b := fenceEnv(t, 10*time.Second, envOpts{})
	ctx := context.Background()
	e.put("i-stay0001", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-stay0001", true)
	e.put("i-move0001", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-move0001", true)
	e.put("i-boot0001", proto.InstancePending, proto.StatusInit)

	e.h.HeartbeatOnce(ctx) // contact at t0
	b.set(errs.New(errs.Unavailable, "cut off"), false)
	e.clock.Advance(9 * time.Second)
	e.h.HeartbeatOnce(ctx)
	e.h.FenceCheck(ctx)
	e.clock.Advance(time.Second) // exactly the fence timeout: not yet
	e.h.FenceCheck(ctx)
	if e.fenced() || e.domain("i-stay0001") != hypervisor.Running || e.domain("i-move0001") != hypervisor.Running {
		t.Fatalf("fenced before the timeout: fenced=%v, domains %s %s", e.fenced(), e.domain("i-stay0001"), e.domain("i-move0001"))
	}
	e.clock.Advance(time.Millisecond)
	e.h.FenceCheck(ctx)
	if !e.fenced() {
		t.Fatal("not fenced after the timeout")
	}
	for _, id := range []string{"i-stay0001", "i-move0001"} {
		if got := e.domain(id); got != hypervisor.Shutoff {
			t.Errorf("domain %s is %q after the fence, want shutoff (stopped, still defined)", id, got)
		}
	}

	// Fenced: the monitor reports nothing, a boot waits and starts nothing.
	if err := e.h.MonitorOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.coll.States("i-stay0001"); len(got) != 0 {
		t.Errorf("monitor changed a fenced instance: %v", got)
	}
	bctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := e.jobCtx(bctx, "local-store-handle", proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-boot0001"})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || e.domain("i-boot0001") != "" || len(e.coll.States("i-boot0001")) != 0 {
		t.Fatalf("boot on a fenced host = %v, domain %q, states %v", err, e.domain("i-boot0001"), e.coll.States("i-boot0001"))
	}
	booted := make(chan error, 1)
	go func() {
		booted <- e.job("local-store-handle", proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-boot0001"})
	}()

	// A reply saying "not fenced" sent before the fence does not lift it.
	e.moveAway("i-move0001")
	b.set(nil, false)
	e.h.FenceCheck(ctx)
	if !e.fenced() {
		t.Fatal("fence lifted without a heartbeat answered after it")
	}
	e.clock.Advance(time.Second)
	e.h.HeartbeatOnce(ctx)
	e.h.FenceCheck(ctx)
	if e.fenced() {
		t.Fatal("still fenced after contact came back")
	}
	if got := e.domain("i-move0001"); got != "" {
		t.Errorf("domain of the instance that moved away is %q, want removed", got)
	}
	if err := <-booted; err != nil {
		t.Fatalf("boot after the fence: %v", err)
	}
	e.want("i-boot0001", []string{proto.InstanceStarting, proto.InstanceRunning}, proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if got := e.domain("i-stay0001"); got != hypervisor.Running {
			return errors.New("the instance still placed here is " + string(got))
		}
		return nil
	})
	if got := e.coll.States("i-stay0001"); len(got) != 0 {
		t.Errorf("restart after the fence reported states %v; it was running all along for the managers", got)
	}
}

// TestFencedByManagers: an hva that does not fence itself (fence_after 0)
// still obeys the managers' fence at once, and stays fenced as long as they
// say so; then it reconciles.
func TestFencedByManagers(t *testing.T) {
	e, b := fenceEnv(t, 0, envOpts{})
	ctx := context.Background()
	e.put("i-halt0001", proto.InstanceHalted, proto.StatusOffline)
	e.withDomain("i-halt0001", false)
	e.withDomain("i-unkn0001", true) // the managers do not know it
	e.put("i-move0001", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-move0001", true)

	e.clock.Advance(time.Hour) // no self-fencing, however long
	e.h.FenceCheck(ctx)
	if e.fenced() {
		t.Fatal("fence_after 0 fenced on its own")
	}
	b.set(nil, true)
	e.h.HeartbeatOnce(ctx)
	if !e.fenced() || e.domain("i-move0001") != hypervisor.Shutoff || e.domain("i-unkn0001") != hypervisor.Shutoff {
		t.Fatalf("told fenced: fenced=%v, domains %q %q", e.fenced(), e.domain("i-move0001"), e.domain("i-unkn0001"))
	}
	e.moveAway("i-move0001")
	e.h.HeartbeatOnce(ctx)
	e.h.FenceCheck(ctx)
	if !e.fenced() {
		t.Fatal("fence lifted while the managers still fence the host")
	}
	b.set(nil, false)
	e.clock.Advance(time.Second)
	e.h.HeartbeatOnce(ctx)
	e.h.FenceCheck(ctx)
	if e.fenced() {
		t.Fatal("still fenced")
	}
	if e.domain("i-move0001") != "" || e.domain("i-unkn0001") != "" {
		t.Errorf("moved/unknown domains left: %q %q", e.domain("i-move0001"), e.domain("i-unkn0001"))
	}
	if e.domain("i-halt0001") != hypervisor.Shutoff {
		t.Errorf("the halted instance placed here lost its domain: %q", e.domain("i-halt0001"))
	}
}

// fenceOnGet fences the host the first time the boot reads its domain,
// and moves the instance away meanwhile: the job read its instance before
// the fence.
type fenceOnGet struct {
	hypervisor.Hypervisor
	once sync.Once
	hook func()
}

func (f *fenceOnGet) Get(ctx context.Context, id string) (hypervisor.Domain, error) {
	f.once.Do(f.hook)
	return f.Hypervisor.Get(ctx, id)
}

// TestFenceDuringBootRereads: a boot that read its instance before a fence
// starts nothing; after the fence it reads the instance again, finds it
// moved, and fails without a domain.
func TestFenceDuringBootRereads(t *testing.T) {
	var wrap *fenceOnGet
	e, b := fenceEnv(t, 10*time.Second, envOpts{hv: func(hv hypervisor.Hypervisor) hypervisor.Hypervisor {
		wrap = &fenceOnGet{Hypervisor: hv}
		return wrap
	}})
	ctx := context.Background()
	e.put("i-boot0001", proto.InstancePending, proto.StatusInit)
	wrap.hook = func() {
		e.h.fenceHost(ctx, "test")
		e.moveAway("i-boot0001")
	}
	done := make(chan error, 1)
	go func() {
		done <- e.job("local-store-handle", proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-boot0001"})
	}()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !e.fenced() {
			return errors.New("not fenced yet")
		}
		return nil
	})
	e.clock.Advance(time.Second)
	e.h.HeartbeatOnce(ctx)
	e.h.FenceCheck(ctx)
	err := <-done
	wantKind(t, "boot of an instance that moved during the fence", err, errs.IncompatibleHostNode)
	if got := e.domain("i-boot0001"); got != "" {
		t.Errorf("domain %q defined for an instance that moved", got)
	}
	b.mu.Lock()
	calls := b.calls
	b.mu.Unlock()
	if calls == 0 {
		t.Error("no heartbeat sent")
	}
	// The boot got as far as starting (pending → starting) before the
	// fence; it defined nothing.
	for _, c := range e.calls("i-boot0001") {
		t.Errorf("hypervisor call %v for an instance that moved", c)
	}
}

// TestCleanupFreesVolumesAndSubmitsBoot: the cleanup of an instance moved
// off a live host frees the shared volumes still detaching (not those the
// new host attached already) and submits the boot, once per job.
func TestCleanupFreesVolumesAndSubmitsBoot(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withDomain("i-evac0001", true)
	e.coll.Put(proto.InstanceView{ID: "i-evac0001", State: proto.InstancePending, Status: proto.StatusOffline,
		HostNode: &proto.HostNode{ID: "hn-new", NodeID: "hva.new"},
		Volumes: []proto.VolumeView{
			{ID: "vol-free0001", StoreType: proto.VolumeShared, State: proto.VolumeDetaching},
			{ID: "vol-took0001", StoreType: proto.VolumeShared, State: proto.VolumeAttached},
		}})
	args, _ := json.Marshal(proto.HvaRunVolStoreRequest{InstanceID: "i-evac0001"})
	req := proto.HvaCleanupRequest{InstanceID: "i-evac0001", FreeVolumes: []string{"vol-free0001", "vol-took0001"},
		Then: &proto.FollowUpJob{Endpoint: proto.HvaHandle("hva.new"), Verb: proto.VerbRunVolStore, Args: args, ResourceID: "i-evac0001"}}
	for range 2 {
		if err := e.job("hva-handle", proto.VerbCleanup, req); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.domain("i-evac0001"); got != "" {
		t.Errorf("domain %q left", got)
	}
	// The first run frees the volume still detaching; the second finds it
	// available and leaves it (and the one the new host attached) alone.
	ups := e.coll.VolumeUpdates()
	if len(ups) != 1 || ups[0].VolumeID != "vol-free0001" || ups[0].State == nil ||
		*ups[0].State != proto.VolumeAvailable || ups[0].DetachInstance {
		t.Errorf("volume updates = %+v, want vol-free0001 available once, nothing else", ups)
	}
	for _, vol := range e.instance("i-evac0001").Volumes {
		want := map[string]string{"vol-free0001": proto.VolumeAvailable, "vol-took0001": proto.VolumeAttached}[vol.ID]
		if vol.State != want {
			t.Errorf("volume %s is %s, want %s", vol.ID, vol.State, want)
		}
	}
	subs := e.coll.Submitted()
	if len(subs) != 1 || subs[0].Endpoint != "hva-handle.hva.new" || subs[0].Verb != proto.VerbRunVolStore || subs[0].Key != evacuationBootKey {
		t.Errorf("submitted = %+v", subs)
	}

	// An instance that was terminated meanwhile gets no boot.
	v := e.instance("i-evac0001")
	v.State = proto.InstanceTerminated
	e.coll.Put(v)
	req.InstanceID = "i-evac0001"
	if err := e.jobCtxID(context.Background(), "job-test2", req); err != nil {
		t.Fatal(err)
	}
	if n := len(e.coll.Submitted()); n != 1 {
		t.Errorf("%d boots submitted, want 1", n)
	}
}

// jobCtxID runs cleanup as job id.
func (e *env) jobCtxID(ctx context.Context, id string, req proto.HvaCleanupRequest) error {
	e.t.Helper()
	h := e.jobs[proto.HvaHandle(node)+"/"+proto.VerbCleanup]
	args, _ := json.Marshal(req)
	job := proto.JobEnvelope{ID: id, Endpoint: proto.HvaHandle(node), Verb: proto.VerbCleanup, Args: args}
	_, err := h(agent.ContextWithJob(ctx, agent.JobInfo{ID: id, Endpoint: job.Endpoint, Verb: job.Verb}), job)
	return err
}

func TestFenceConfig(t *testing.T) {
	for _, c := range []FenceConfig{
		{Heartbeat: &beat{}, After: time.Second, Interval: time.Second},
		{Heartbeat: &beat{}, After: -1},
		{Heartbeat: &beat{}, Interval: -1},
	} {
		if err := c.setDefaults(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	c := FenceConfig{Heartbeat: &beat{}, After: 30 * time.Second}
	if err := c.setDefaults(); err != nil || c.Interval != 5*time.Second {
		t.Errorf("default interval for 30s = %s, %v", c.Interval, err)
	}
	c = FenceConfig{Heartbeat: &beat{}, After: 300 * time.Millisecond}
	if err := c.setDefaults(); err != nil || c.Interval != 100*time.Millisecond {
		t.Errorf("default interval for 300ms = %s, %v", c.Interval, err)
	}
	c = FenceConfig{After: time.Second} // no heartbeat: no fencing
	if err := c.setDefaults(); err != nil || c.After != 0 {
		t.Errorf("without heartbeat: after %s, %v", c.After, err)
	}
}

// TestFenceOnStartWithoutContact: a starting hva does not know how long its
// managers have been without news of it: domains that survived its restart
// are stopped if it cannot reach them within two heartbeat periods.
func TestFenceOnStartWithoutContact(t *testing.T) {
	e, b := fenceEnv(t, 10*time.Second, envOpts{})
	ctx := context.Background()
	e.put("i-surv0001", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-surv0001", true)
	b.set(errs.New(errs.Unavailable, "no manager yet"), false)
	e.h.HeartbeatOnce(ctx)
	e.clock.Advance(2 * time.Second) // two heartbeat periods: not yet
	e.h.FenceCheck(ctx)
	if e.fenced() || e.domain("i-surv0001") != hypervisor.Running {
		t.Fatal("fenced within the start grace")
	}
	e.clock.Advance(time.Millisecond)
	e.h.FenceCheck(ctx)
	if !e.fenced() || e.domain("i-surv0001") != hypervisor.Shutoff {
		t.Fatalf("not fenced after the start grace: %v %q", e.fenced(), e.domain("i-surv0001"))
	}
}

// fenceOnAttaching fences the host (and runs more of the test's hook)
// the first time a volume is reported attaching: the attach job read its
// instance before the fence.
type fenceOnAttaching struct {
	Collector
	once sync.Once
	hook func()
}

func (f *fenceOnAttaching) UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error {
	err := f.Collector.UpdateVolume(ctx, req)
	if req.State != nil && *req.State == proto.VolumeAttaching {
		f.once.Do(f.hook)
	}
	return err
}

// TestFenceDuringAttach: a hot-plug that read its instance before a fence
// plugs nothing while the host is fenced (the volume stays attaching, the
// job waits for the fence to be lifted); afterwards it reads the instance
// again and attaches the volume to the instance still placed here, or
// fails without plugging anything when the instance moved meanwhile.
func TestFenceDuringAttach(t *testing.T) {
	for _, moved := range []bool{false, true} {
		name := "instance stays"
		if moved {
			name = "instance moved"
		}
		t.Run(name, func(t *testing.T) {
			var wrap *fenceOnAttaching
			e, _ := fenceEnv(t, 10*time.Second, envOpts{cfg: func(c *Config) {
				wrap = &fenceOnAttaching{Collector: c.Collector}
				c.Collector = wrap
			}})
			ctx := context.Background()
			e.running("i-att", sharedVolume("vol-data", "i-att", proto.VolumeAvailable))
			wrap.hook = func() {
				e.h.fenceHost(ctx, "test")
				if moved {
					e.moveAway("i-att")
				}
			}
			attach := proto.HvaAttachRequest{InstanceID: "i-att", VolumeID: "vol-data"}
			attachCalls := func() int {
				n := 0
				for _, c := range e.calls("i-att") {
					if c.Op == dummy.OpAttachDisk {
						n++
					}
				}
				return n
			}

			bctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err := e.jobCtx(bctx, hvaHandle, proto.VerbAttach, attach)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("attach on a host fenced after the read = %v, want it waiting for the fence", err)
			}
			if !e.fenced() {
				t.Fatal("the hook did not fence the host")
			}
			if n := attachCalls(); n != 0 {
				t.Fatalf("%d disk attaches on a fenced host", n)
			}
			if _, ok := e.disks("i-att")["vol-data"]; ok {
				t.Fatal("the fenced host plugged the volume")
			}
			e.wantVolumeStates("vol-data", proto.VolumeAttaching)

			e.clock.Advance(time.Second)
			e.h.HeartbeatOnce(ctx)
			e.h.FenceCheck(ctx)
			if e.fenced() {
				t.Fatal("still fenced after contact came back")
			}
			if moved {
				err := e.job(hvaHandle, proto.VerbAttach, attach)
				wantKind(t, "attach after the instance moved", err, errs.IncompatibleHostNode)
				if n := attachCalls(); n != 0 {
					t.Errorf("%d disk attaches for an instance that moved", n)
				}
				if got := e.domain("i-att"); got != "" {
					t.Errorf("domain of the moved instance is %q, want removed", got)
				}
				return
			}
			// The fence stopped the domain; the instance is still running
			// for the managers, so it starts again.
			testutil.WaitFor(t, 10*time.Second, func() error {
				if got := e.domain("i-att"); got != hypervisor.Running {
					return errors.New("domain is " + string(got))
				}
				return nil
			})
			if err := e.job(hvaHandle, proto.VerbAttach, attach); err != nil {
				t.Fatalf("attach after the fence: %v", err)
			}
			e.wantVolumeStates("vol-data", proto.VolumeAttaching, proto.VolumeAttached)
			if got := e.disks("i-att")["vol-data"]; got != "vdb" {
				t.Errorf("domain disks = %v, want vol-data as vdb", e.disks("i-att"))
			}
		})
	}
}
