package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler"
)

// fakeManager serves scheduler-collector (and job-collector job_finished)
// from canned answers, recording what the daemon sends.
type fakeManager struct {
	addr string

	mu       sync.Mutex
	leader   bool
	views    int
	viewFn   func(n int) proto.SchedView // n = 1 for the first get_view
	submitFn func(n int, p proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error)
	plans    []proto.SubmitPlanRequest
	failed   []proto.ScheduleFailedRequest
	finished []proto.JobFinishedRequest
	calls    int
}

func newFakeManager(t *testing.T, leader bool) *fakeManager {
	t.Helper()
	f := &fakeManager{leader: leader}
	s := rpc.NewServer(rpc.ServerConfig{Logger: logging.NewTest(t)})
	ep := proto.EndpointSchedulerCollector
	s.Register(ep, proto.VerbGetView, rpc.Func(func(_ context.Context, req proto.GetViewRequest) (*proto.SchedView, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.check(); err != nil {
			return nil, err
		}
		f.views++
		w := f.viewFn(f.views)
		return &w, nil
	}))
	s.Register(ep, proto.VerbSubmitPlan, rpc.Func(func(_ context.Context, p proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.check(); err != nil {
			return nil, err
		}
		f.plans = append(f.plans, p)
		if f.submitFn != nil {
			return f.submitFn(len(f.plans), p)
		}
		return &proto.SubmitPlanResponse{InstanceID: p.InstanceID, HostNodeID: p.HostNodeID}, nil
	}))
	s.Register(ep, proto.VerbScheduleFailed, rpc.Func(func(_ context.Context, req proto.ScheduleFailedRequest) (*proto.ScheduleFailedResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.check(); err != nil {
			return nil, err
		}
		f.failed = append(f.failed, req)
		return &proto.ScheduleFailedResponse{}, nil
	}))
	s.Register(proto.EndpointJobCollector, proto.VerbJobFinished, rpc.Func(func(_ context.Context, req proto.JobFinishedRequest) (*proto.JobFinishedResponse, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.check(); err != nil {
			return nil, err
		}
		f.finished = append(f.finished, req)
		return &proto.JobFinishedResponse{}, nil
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	f.addr = l.Addr().String()
	return f
}

// check counts a call and refuses it on a follower.
func (f *fakeManager) check() error {
	f.calls++
	if !f.leader {
		return errs.New(errs.NoLeader, "this manager is not the leader")
	}
	return nil
}

func (f *fakeManager) snapshot() (views int, plans []proto.SubmitPlanRequest, failed []proto.ScheduleFailedRequest, calls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.views, append([]proto.SubmitPlanRequest(nil), f.plans...), append([]proto.ScheduleFailedRequest(nil), f.failed...), f.calls
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// testView is two hosts (hn-big has more memory), network nw-demo1
// 10.0.0.0/24 with range .10–.20, and instance i-test1 asking for 2 cores,
// 2 GiB, a 10 GiB local volume and one vif on nw-demo1.
func testView() proto.SchedView {
	host := func(id string, mem int64) proto.SchedHost {
		return proto.SchedHost{ID: id, NodeID: "hva." + id, Arch: "x86_64", Hypervisor: "kvm", Online: true, SchedulingEnabled: true,
			OfferingCPUCores: 8, OfferingMemoryMB: mem, OfferingDiskMB: 100 << 10}
	}
	return proto.SchedView{
		Index:    42,
		Hosts:    []proto.SchedHost{host("hn-small", 4096), host("hn-big", 16384)},
		Networks: []proto.SchedNetwork{{ID: "nw-demo1", IPv4Network: "10.0.0.0", Prefix: 24, Gateway: "10.0.0.1", DhcpRanges: []proto.DhcpRange{{Begin: "10.0.0.10", End: "10.0.0.20"}}}},
		Groups:   []string{},
		Request: proto.SchedRequest{InstanceID: "i-test1", AccountID: "a-shpoolxx", ServiceType: "std", State: proto.InstanceScheduling,
			Arch: "x86_64", Hypervisor: "kvm", CPU: 2, MemoryMB: 2048,
			Volumes:       []proto.SchedVolume{{ID: "vol-test1", SizeBytes: 10 << 30, Local: true}},
			RequestParams: map[string]any{"vifs": `{"eth0":{"network":"nw-demo1","security_groups":"sg-demo1"}}`}},
	}
}

// testConfig places one job per view: the fake manager answers the
// single-instance form of get_view and submit_plan (batches are tested
// against the real leader in manager/scheduling).
func testConfig(managers ...string) Config {
	c := DefaultConfig()
	c.Managers = managers
	c.CallTimeoutMS = 2000
	c.BatchSize = 1
	return c
}

func newTestPlacer(t *testing.T, cfg Config) *Placer {
	t.Helper()
	client := rpc.NewClient(rpc.ClientConfig{})
	t.Cleanup(client.Close)
	p, err := NewPlacer(cfg, client, func() []string { return cfg.Managers }, logging.NewTest(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPlaceAndSubmit(t *testing.T) {
	follower, leader := newFakeManager(t, false), newFakeManager(t, true)
	leader.viewFn = func(int) proto.SchedView { return testView() }
	p := newTestPlacer(t, testConfig(follower.addr, deadAddr(t), leader.addr))

	resp, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.HostNodeID != "hn-big" || resp.InstanceID != "i-test1" {
		t.Errorf("response = %+v", resp)
	}
	_, plans, failed, _ := leader.snapshot()
	if len(plans) != 1 || len(failed) != 0 {
		t.Fatalf("%d plans, %d failures", len(plans), len(failed))
	}
	pl := plans[0]
	if pl.InstanceID != "i-test1" || pl.HostNodeID != "hn-big" || pl.Start || pl.ViewIndex != 42 {
		t.Errorf("plan = %+v", pl)
	}
	if len(pl.Nics) != 1 {
		t.Fatalf("nics = %+v", pl.Nics)
	}
	n := pl.Nics[0]
	if n.NetworkID != "nw-demo1" || n.IPv4Address != "10.0.0.10" || !n.IPv4Auto || n.Index != 0 ||
		!strings.HasPrefix(n.MacAddr, "525400") || len(n.MacAddr) != 12 || len(n.SecurityGroups) != 1 || n.SecurityGroups[0] != "sg-demo1" {
		t.Errorf("nic = %+v", n)
	}
	if len(pl.Volumes) != 1 || pl.Volumes[0].VolumeID != "vol-test1" || !pl.Volumes[0].Local {
		t.Errorf("volumes = %+v", pl.Volumes)
	}

	// The leader is remembered: the next job does not start at the follower.
	_, _, _, before := follower.snapshot()
	if before == 0 {
		t.Fatalf("the follower was never asked")
	}
	if _, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, after := follower.snapshot(); after != before {
		t.Errorf("follower asked %d more times after the leader was known", after-before)
	}
}

func TestStalePlanPlannedAgain(t *testing.T) {
	m := newFakeManager(t, true)
	m.viewFn = func(n int) proto.SchedView {
		w := testView()
		// Every rejected plan's address was taken by someone else meanwhile.
		for i := 1; i < n; i++ {
			w.Networks[0].Leases = append(w.Networks[0].Leases, proto.SchedLease{IPv4: fmt.Sprintf("10.0.0.%d", 9+i), Seq: uint64(i), Kind: proto.SchedLeaseAuto})
		}
		return w
	}
	m.submitFn = func(n int, p proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
		if n < 3 {
			return nil, errs.New(errs.Conflict, "stale plan: address %s of network nw-demo1 is taken", p.Nics[0].IPv4Address)
		}
		return &proto.SubmitPlanResponse{InstanceID: p.InstanceID, HostNodeID: p.HostNodeID}, nil
	}
	p := newTestPlacer(t, testConfig(m.addr))
	if _, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"}); err != nil {
		t.Fatal(err)
	}
	views, plans, failed, _ := m.snapshot()
	if views != 3 || len(plans) != 3 || len(failed) != 0 {
		t.Fatalf("%d views, %d plans, %d failures; want 3, 3, 0", views, len(plans), len(failed))
	}
	if got := plans[0].Nics[0].IPv4Address; got != "10.0.0.10" {
		t.Errorf("first plan address %s, want 10.0.0.10", got)
	}
	// Re-plans use the fresh view (never an address it shows taken), and may
	// skip a few free ones to get out of the contenders' way.
	for i := 1; i < 3; i++ {
		got := plans[i].Nics[0].IPv4Address
		var last int
		if _, err := fmt.Sscanf(got, "10.0.0.%d", &last); err != nil || last < 10+i || last > 20 {
			t.Errorf("plan %d address %s: taken in its view or outside the range", i, got)
		}
	}
}

func TestStaleForeverFailsTheInstance(t *testing.T) {
	m := newFakeManager(t, true)
	m.viewFn = func(int) proto.SchedView { return testView() }
	m.submitFn = func(int, proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
		return nil, errs.New(errs.Conflict, "stale plan: host node hn-big has no room")
	}
	cfg := testConfig(m.addr)
	cfg.PlanAttempts = 3
	p := newTestPlacer(t, cfg)
	_, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"})
	if !errs.Is(err, errs.OutOfHostCapacity) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("error = %v", err)
	}
	_, plans, failed, _ := m.snapshot()
	if len(plans) != 3 || len(failed) != 1 || failed[0].InstanceID != "i-test1" ||
		!strings.Contains(failed[0].Reason, "no placement held after 3 attempts: stale plan: host node hn-big has no room") {
		t.Fatalf("plans %d, failures %+v", len(plans), failed)
	}
}

func TestNothingFits(t *testing.T) {
	m := newFakeManager(t, true)
	m.viewFn = func(int) proto.SchedView {
		w := testView()
		w.Request.CPU = 64
		return w
	}
	p := newTestPlacer(t, testConfig(m.addr))
	_, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"})
	want := "HostNodeSchedulingError: Unable to find a suitable host node for x86_64 kvm"
	if !errs.Is(err, errs.OutOfHostCapacity) || err.Error() != want {
		t.Fatalf("error = %v (%s), want OutOfHostCapacity %q", err, errs.KindOf(err).Name(), want)
	}
	_, plans, failed, _ := m.snapshot()
	if len(plans) != 0 || len(failed) != 1 || failed[0].Reason != want {
		t.Fatalf("plans %d, failures %+v", len(plans), failed)
	}

	// A network error names its class too.
	m.viewFn = func(int) proto.SchedView {
		w := testView()
		w.Request.RequestParams = map[string]any{"vifs": `{"eth0":{"network":"nw-nothere"}}`}
		return w
	}
	_, err = p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"})
	if !errs.Is(err, errs.UnknownNetwork) || err.Error() != "NetworkSchedulingError: Network 'nw-nothere' doesn't exist." {
		t.Fatalf("error = %v", err)
	}
}

func TestInstanceNoLongerScheduling(t *testing.T) {
	m := newFakeManager(t, true)
	state := proto.InstancePending
	m.viewFn = func(int) proto.SchedView {
		w := testView()
		w.Request.State, w.Request.HostNodeID = state, "hn-small"
		return w
	}
	p := newTestPlacer(t, testConfig(m.addr))
	// Placed by an earlier delivery of the same job: answered, not placed again.
	resp, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"})
	if err != nil || resp.HostNodeID != "hn-small" {
		t.Fatalf("ScheduleInstance = %+v, %v", resp, err)
	}
	state = proto.InstanceTerminated
	if _, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"}); !errs.Is(err, errs.InvalidInstanceState) {
		t.Fatalf("terminated instance: %v", err)
	}
	// Terminated between get_view and submit_plan.
	state = proto.InstanceScheduling
	m.submitFn = func(int, proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
		return nil, errs.New(errs.InvalidInstanceState, "instance i-test1 is terminated, not scheduling")
	}
	if _, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"}); !errs.Is(err, errs.InvalidInstanceState) {
		t.Fatalf("terminated meanwhile: %v", err)
	}
	_, plans, failed, _ := m.snapshot()
	if len(plans) != 1 || len(failed) != 0 {
		t.Fatalf("plans %d, failures %+v: an instance that is not ours is never failed", len(plans), failed)
	}
	// A plan the leader finds invalid fails the instance with the reason.
	m.submitFn = func(int, proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
		return nil, errs.New(errs.UnknownSecurityGroup, "Unknown security group: sg-demo1")
	}
	if _, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"}); !errs.Is(err, errs.UnknownSecurityGroup) {
		t.Fatalf("invalid plan: %v", err)
	}
	if _, _, failed, _ = m.snapshot(); len(failed) != 1 || failed[0].Reason != "Unknown security group: sg-demo1" {
		t.Fatalf("failures %+v", failed)
	}
}

func TestHostNamedByRequest(t *testing.T) {
	m := newFakeManager(t, true)
	m.viewFn = func(int) proto.SchedView {
		w := testView()
		w.Request.RequestParams["host_node_id"] = "hn-small"
		return w
	}
	p := newTestPlacer(t, testConfig(m.addr))
	resp, err := p.ScheduleInstance(ctxT(t), proto.ScheduleInstanceRequest{InstanceID: "i-test1"})
	if err != nil || resp.HostNodeID != "hn-small" {
		t.Fatalf("ScheduleInstance = %+v, %v; want hn-small (LeastUsage alone picks hn-big)", resp, err)
	}
}

func TestScheduleStartInstance(t *testing.T) {
	m := newFakeManager(t, true)
	m.viewFn = func(int) proto.SchedView {
		w := testView()
		w.Networks[0].Leases = []proto.SchedLease{{IPv4: "10.0.0.10", Seq: 1, Kind: proto.SchedLeaseAuto}}
		w.Request.Vifs = []proto.SchedVif{{ID: "vif-keep1", DeviceIndex: 0, NetworkID: "nw-demo1", MacAddr: "525400abcdef"}, {ID: "vif-bare", DeviceIndex: 1, MacAddr: "525400abcdee"}}
		return w
	}
	p := newTestPlacer(t, testConfig(m.addr))
	resp, err := p.ScheduleStartInstance(ctxT(t), proto.ScheduleStartInstanceRequest{InstanceID: "i-test1"})
	if err != nil || resp.HostNodeID != "hn-big" {
		t.Fatalf("ScheduleStartInstance = %+v, %v", resp, err)
	}
	_, plans, _, _ := m.snapshot()
	pl := plans[0]
	if !pl.Start || len(pl.Nics) != 2 || len(pl.Volumes) != 1 || !pl.Volumes[0].Local {
		t.Fatalf("plan = %+v", pl)
	}
	if n := pl.Nics[0]; n.VifID != "vif-keep1" || n.IPv4Address != "10.0.0.11" || !n.IPv4Auto || n.MacAddr != "525400abcdef" {
		t.Errorf("nic 0 = %+v", n)
	}
	if n := pl.Nics[1]; n.VifID != "vif-bare" || n.NetworkID != "" || n.IPv4Address != "" || n.Index != 1 {
		t.Errorf("nic 1 = %+v", n)
	}
}

func TestNoManagerReachable(t *testing.T) {
	follower := newFakeManager(t, false)
	p := newTestPlacer(t, testConfig(deadAddr(t), follower.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := p.ScheduleInstance(ctx, proto.ScheduleInstanceRequest{InstanceID: "i-test1"})
	if !errs.Is(err, errs.Timeout) || !strings.Contains(err.Error(), "not the leader") {
		t.Fatalf("error = %v, want Timeout naming the last answer", err)
	}
	if _, _, _, calls := follower.snapshot(); calls < 2 {
		t.Errorf("the managers were asked %d times, want retries", calls)
	}
}

// TestDaemonRunsJobs runs the daemon as an agent: it finds the manager
// through serf (a member with role manager and an rpc tag), runs jobs the
// way the dispatcher delivers them, and reports their results.
func TestDaemonRunsJobs(t *testing.T) {
	m := newFakeManager(t, true)
	m.viewFn = func(n int) proto.SchedView {
		w := testView()
		if n > 1 {
			w.Request.CPU = 64 // the second job's instance fits nowhere
		}
		return w
	}
	mgr := startFakeManagerSerf(t, m.addr)

	cfg := DefaultConfig()
	cfg.BatchSize = 1 // the fake manager answers single views
	cfg.NodeID = "scheduler.test1"
	cfg.SerfAddr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg.RPCAddr = "127.0.0.1:0"
	cfg.Join = []string{mgr}
	cfg.FastGossip = true
	d, err := New(cfg, logging.NewTest(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	})
	testutil.WaitFor(t, 10*time.Second, func() error {
		if got := d.serfManagers(); len(got) != 1 || got[0] != m.addr {
			return fmt.Errorf("managers from serf = %v", got)
		}
		return nil
	})

	client := rpc.NewClient(rpc.ClientConfig{})
	t.Cleanup(client.Close)
	deliver := func(id string, wait time.Duration) proto.JobResult {
		t.Helper()
		args, _ := json.Marshal(proto.ScheduleInstanceRequest{InstanceID: "i-test1"})
		res, err := agent.DeliverJob(ctxT(t), client, d.Agent().RPCAddr(), proto.JobEnvelope{
			ID: id, Endpoint: proto.EndpointScheduler, Verb: proto.VerbScheduleInstance, Args: args, Attempt: 1,
		}, wait)
		if err != nil {
			t.Fatalf("deliver %s: %v", id, err)
		}
		return res
	}
	// A delivery that waits gets the result; the daemon does not report it
	// to job_finished as well.
	res := deliver("job-aaaa0001", 10*time.Second)
	var out proto.ScheduleInstanceResponse
	if res.Status != proto.JobSucceeded || json.Unmarshal(res.Result, &out) != nil || out.HostNodeID != "hn-big" {
		t.Fatalf("job result = %+v (%s)", res, res.Result)
	}
	// One delivered without waiting is reported.
	deliver("job-aaaa0002", 0)
	testutil.WaitFor(t, 10*time.Second, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if len(m.finished) != 1 || m.finished[0].NodeID != "scheduler.test1" {
			return fmt.Errorf("job results reported: %+v", m.finished)
		}
		return nil
	})
	m.mu.Lock()
	res = m.finished[0].Result
	m.mu.Unlock()
	if res.JobID != "job-aaaa0002" || res.Status != proto.JobFailed || res.Error == nil ||
		!strings.Contains(res.Error.Message, "Unable to find a suitable host node") {
		t.Fatalf("job result reported = %+v", res)
	}
	if _, _, failed, _ := m.snapshot(); len(failed) != 1 {
		t.Errorf("failures reported: %+v", failed)
	}
}

// startFakeManagerSerf starts a serf member that looks like a manager (role
// manager, rpc tag) and returns its gossip address.
func startFakeManagerSerf(t *testing.T, rpcAddr string) string {
	t.Helper()
	port := testutil.FreePort(t)
	sc := serf.DefaultConfig()
	sc.NodeName = "m-fake"
	sc.MemberlistConfig = memberlist.DefaultLocalConfig()
	agent.FastGossip(sc)
	sc.MemberlistConfig.BindAddr = "127.0.0.1"
	sc.MemberlistConfig.BindPort = port
	sc.MemberlistConfig.AdvertisePort = port
	sc.MemberlistConfig.Logger = logging.StdLog(logging.NewTest(t), "memberlist")
	sc.Logger = logging.StdLog(logging.NewTest(t), "serf")
	sc.Tags = map[string]string{proto.TagRole: proto.RoleManager, proto.TagRPC: rpcAddr, proto.TagNodeID: "dcmgr.m-fake"}
	s, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return fmt.Sprintf("127.0.0.1:%d", port)
}

func TestConfigValidate(t *testing.T) {
	c := testConfig("127.0.0.1:1")
	if err := c.Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	ranges, err := c.macRanges()
	if err != nil || len(ranges) != 1 || ranges[0].Vendor != 0x525400 || ranges[0].Begin != 1 || ranges[0].End != 0xfffffe {
		t.Errorf("default MAC ranges = %+v, %v", ranges, err)
	}
	for name, mod := range map[string]func(*Config){
		"no managers":     func(c *Config) { c.Managers = nil },
		"zero attempts":   func(c *Config) { c.PlanAttempts = 0 },
		"bad vendor":      func(c *Config) { c.MacVendorID = "zz5400" },
		"empty range id":  func(c *Config) { c.MacRanges = []MacRangeConfig{{Begin: "000001", End: "000002"}} },
		"unknown default": func(c *Config) { c.DefaultServiceType = "lb" },
		"unknown scheduler": func(c *Config) {
			st := DefaultServiceTypeConfig()
			st.Network.Scheduler = "Nope"
			c.ServiceTypes = map[string]scheduler.ServiceTypeConfig{"std": st}
		},
	} {
		c := testConfig("127.0.0.1:1")
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate succeeded", name)
		}
	}
}

func TestSkipFree(t *testing.T) {
	w := testView()
	w.Networks[0].Leases = []proto.SchedLease{{IPv4: "10.0.0.12", Seq: 1, Kind: proto.SchedLeaseAuto}}
	v, _, err := scheduler.ViewFromProto(&w)
	if err != nil {
		t.Fatal(err)
	}
	skipFree(v, "nw-demo1", 3) // .13, .14, .15
	c, err := scheduler.Incremental{}.ScheduleIP(&v.Networks[0], "")
	if err != nil || c.Addr.String() != "10.0.0.16" {
		t.Fatalf("next address after skipping 3 = %v, %v; want 10.0.0.16", c.Addr, err)
	}
	skipFree(v, "nw-demo1", 100) // the rest of the range, then stops
	if _, err := (scheduler.Incremental{}).ScheduleIP(&v.Networks[0], ""); !scheduler.IsKind(err, scheduler.KindOutOfIPRange) {
		t.Fatalf("after skipping everything: %v", err)
	}
}
