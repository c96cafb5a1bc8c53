package e2e

// Host-failure HA end to end, in process: one manager (raft, serf, RPC,
// API, HA loop), a scheduler daemon and three hvas on dummy hypervisors
// with self-fencing, wired as their commands wire them. Every domain start
// and stop on any host goes through one log, which also checks at each
// start that no other host runs that instance.

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/manager/health"
	"github.com/vdc-project/vdc/manager/server"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// HA timings of these tests: the hvas fence after 1.5 s without an answered
// heartbeat; the manager evacuates after 3 s (1.5 s + 1 s margin fits).
const (
	haFenceAfter = 1500 * time.Millisecond
	haReschedule = 3 * time.Second
	haMargin     = time.Second
)

// opLog records domain starts and stops on every host, in order.
type opLog struct {
	mu         sync.Mutex
	ops        []string // "node verb id"
	hosts      map[string]*dummy.Driver
	violations []string
}

func (l *opLog) add(node, verb, id string) {
	l.ops = append(l.ops, node+" "+verb+" "+id)
}

// index is the position of the first op "node verb id" (-1 if none).
func (l *opLog) index(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Index(l.ops, op)
}

func (l *opLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ops)
}

// loggedHV is a host's dummy with its starts and stops logged.
type loggedHV struct {
	hypervisor.Hypervisor
	node string
	log  *opLog
}

// Start checks, under the log's lock (starts are serialised), that no
// other host runs the instance.
func (h *loggedHV) Start(ctx context.Context, id string) error {
	h.log.mu.Lock()
	defer h.log.mu.Unlock()
	for node, d := range h.log.hosts {
		if node == h.node {
			continue
		}
		if dom, err := d.Get(ctx, id); err == nil && dom.State.Alive() {
			h.log.violations = append(h.log.violations, fmt.Sprintf("%s starts %s while %s runs it", h.node, id, node))
		}
	}
	err := h.Hypervisor.Start(ctx, id)
	if err == nil {
		h.log.add(h.node, "start", id)
	}
	return err
}

func (h *loggedHV) Stop(ctx context.Context, id string, force bool) error {
	err := h.Hypervisor.Stop(ctx, id, force)
	if err == nil {
		h.log.mu.Lock()
		h.log.add(h.node, "stop", id)
		h.log.mu.Unlock()
	}
	return err
}

func (h *loggedHV) Undefine(ctx context.Context, id string) error {
	err := h.Hypervisor.Undefine(ctx, id)
	if err == nil {
		h.log.mu.Lock()
		h.log.add(h.node, "undefine", id)
		h.log.mu.Unlock()
	}
	return err
}

// cuttable is an hva's link to the managers, which a test can cut.
type cuttable struct {
	handlers.Collector
	hb  handlers.Heartbeater
	cut atomic.Bool
}

func (c *cuttable) err() error {
	if c.cut.Load() {
		return errs.New(errs.Unavailable, "partitioned from the managers")
	}
	return nil
}

func (c *cuttable) Heartbeat(ctx context.Context, req proto.HeartbeatRequest) (proto.HeartbeatResponse, error) {
	if err := c.err(); err != nil {
		return proto.HeartbeatResponse{}, err
	}
	return c.hb.Heartbeat(ctx, req)
}

func (c *cuttable) GetInstance(ctx context.Context, id string) (*proto.InstanceView, error) {
	if err := c.err(); err != nil {
		return nil, err
	}
	return c.Collector.GetInstance(ctx, id)
}

func (c *cuttable) UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error {
	if err := c.err(); err != nil {
		return err
	}
	return c.Collector.UpdateInstance(ctx, req)
}

func (c *cuttable) InstanceMonitorData(ctx context.Context, node string) ([]proto.InstanceMonitorEntry, error) {
	if err := c.err(); err != nil {
		return nil, err
	}
	return c.Collector.InstanceMonitorData(ctx, node)
}

func (c *cuttable) UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error {
	if err := c.err(); err != nil {
		return err
	}
	return c.Collector.UpdateVolume(ctx, req)
}

func (c *cuttable) SubmitJob(ctx context.Context, req proto.SubmitJobRequest) (string, error) {
	if err := c.err(); err != nil {
		return "", err
	}
	return c.Collector.SubmitJob(ctx, req)
}

// haHost is one hypervisor host: its dummy outlives the hva processes
// (incarnations) that run on it.
type haHost struct {
	node            string
	serfPort, rpcPt int
	hv              *dummy.Driver
	// the current incarnation
	link  *cuttable
	agent *agent.Agent
	h     *handlers.Handlers
	stop  context.CancelFunc
	done  chan struct{}
}

type haCluster struct {
	*ipCluster
	log   *opLog
	join  []string
	hosts map[string]*haHost
}

func newHACluster(t *testing.T, nodes ...string) *haCluster {
	t.Helper()
	c := newInProcessWith(t, server.Config{HA: health.HAConfig{
		RescheduleAfter: haReschedule, FenceMargin: haMargin, Interval: 100 * time.Millisecond}})
	hc := &haCluster{ipCluster: c, log: &opLog{hosts: map[string]*dummy.Driver{}},
		join: []string{c.mgr.Cluster.SerfAddr()}, hosts: map[string]*haHost{}}
	for _, n := range nodes {
		hv, err := dummy.New(dummy.Config{CPUCores: 8, MemoryMB: 8192, ShutdownDelay: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		host := &haHost{node: n, serfPort: testutil.FreePort(t), rpcPt: testutil.FreePort(t), hv: hv}
		hc.hosts[n] = host
		hc.log.hosts[n] = hv
		c.hvas[n] = &ipHva{node: n, hv: hv}
		hc.start(n)
	}
	t.Cleanup(func() {
		for _, h := range hc.hosts {
			hc.stopLoops(h)
			h.agent.Kill()
		}
	})
	c.seed()
	return hc
}

// start runs a new hva process on the host, as hva/cmd/hva wires it.
func (hc *haCluster) start(node string) {
	t := hc.t
	host := hc.hosts[node]
	logger := logging.NewTest(t).With("hva", node)
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID: node, Role: proto.RoleHva, FastGossip: true, Logger: logger, Join: hc.join,
		SerfAddr: "127.0.0.1:" + strconv.Itoa(host.serfPort), RPCAddr: "127.0.0.1:" + strconv.Itoa(host.rpcPt),
		Tags: map[string]string{proto.TagFenceMs: strconv.FormatInt(haFenceAfter.Milliseconds(), 10)},
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_ = cc.JobFinished(ctx, node, res)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logger,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, AttemptTimeout: 2 * time.Second})
	link := &cuttable{Collector: cc, hb: cc}
	h, err := handlers.New(handlers.Config{NodeID: node, Hypervisor: &loggedHV{Hypervisor: host.hv, node: node, log: hc.log},
		Collector: link, Events: a, Logger: logger, MonitorInterval: 200 * time.Millisecond, SoftPoweroffTimeout: time.Second,
		Fence: handlers.FenceConfig{Heartbeat: link, After: haFenceAfter, Interval: 250 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); h.RunMonitor(ctx) }()
		go func() { defer wg.Done(); h.RunFence(ctx) }()
		wg.Wait()
	}()
	host.link, host.agent, host.h, host.stop, host.done = link, a, h, stop, done
}

func (hc *haCluster) stopLoops(h *haHost) {
	h.stop()
	<-h.done
}

// partition cuts the host off the managers: its hva's messaging dies (serf
// sees it fail, jobs cannot reach it, its calls fail) but the host lives
// on, its monitor and fence loop included.
func (hc *haCluster) partition(node string) {
	h := hc.hosts[node]
	h.link.cut.Store(true)
	h.agent.Kill()
}

// crash kills the host: the hva process and its VMs.
func (hc *haCluster) crash(node string) {
	h := hc.hosts[node]
	h.link.cut.Store(true)
	h.agent.Kill()
	hc.stopLoops(h)
	doms, err := h.hv.List(context.Background())
	if err != nil {
		hc.t.Fatal(err)
	}
	for _, d := range doms {
		if d.State.Alive() {
			_ = h.hv.Stop(context.Background(), d.ID, true) // power loss: not logged as an hva's stop
		}
	}
}

// restart runs a new hva process on the host (after a crash or a
// partition): same node id, same addresses, the host's domains as they are.
func (hc *haCluster) restart(node string) {
	h := hc.hosts[node]
	select {
	case <-h.done:
	default:
		hc.stopLoops(h)
	}
	hc.start(node)
}

// haInstance creates an instance pinned to host and waits until it runs.
func (hc *haCluster) haInstance(host string, ha bool) string {
	hc.t.Helper()
	form := url.Values{
		"image_id": {"wmi-ip1"}, "hypervisor": {"dummy"}, "cpu_cores": {"2"}, "memory_size": {"1024"},
		"vifs": {`{"eth0":{"index":"0","network":"nw-ip1"}}`}, "host_node_id": {host},
	}
	if ha {
		form.Set("ha_enabled", "true")
	}
	doc := hc.must("POST", "/instances.json", form, account).(map[string]any)
	id := doc["id"].(string)
	if doc := hc.waitState(id, "running"); doc["host_node"] != host {
		hc.t.Fatalf("instance %s runs on %v, want %s", id, doc["host_node"], host)
	}
	return id
}

// runningElsewhere waits until id runs on a host other than host and
// returns that host's node id.
func (hc *haCluster) runningElsewhere(id, host string) string {
	hc.t.Helper()
	var moved string
	testutil.WaitFor(hc.t, 60*time.Second, func() error {
		doc := hc.instance(id)
		if doc["state"] != "running" || doc["host_node"] == host {
			return fmt.Errorf("instance %s is %v on %v", id, doc["state"], doc["host_node"])
		}
		moved = "hva." + doc["host_node"].(string)[len("hn-"):]
		return nil
	})
	if got := hc.domain(moved, id); got != string(hypervisor.Running) {
		hc.t.Fatalf("instance %s is running on %s, whose domain is %q", id, moved, got)
	}
	return moved
}

func (hc *haCluster) lastError(id string) string {
	var inst proto.Instance
	hc.record(proto.KindInstance, id, &inst)
	return inst.LastError
}

func (hc *haCluster) noViolations() {
	hc.t.Helper()
	hc.log.mu.Lock()
	defer hc.log.mu.Unlock()
	for _, v := range hc.log.violations {
		hc.t.Errorf("ran twice: %s", v)
	}
}

// waitDone waits until the job queue has no job of id on queue.
func (hc *haCluster) waitJobsDone(id, queue string) {
	hc.t.Helper()
	testutil.WaitFor(hc.t, 30*time.Second, func() error {
		js := hc.jobsOf(id, queue)
		if len(js) == 0 {
			return fmt.Errorf("no %s job for %s", queue, id)
		}
		for _, j := range js {
			if j["state"] != "finished" {
				return fmt.Errorf("job %v of %s is %v", j["id"], id, j["state"])
			}
		}
		return nil
	})
}

// TestHAPartitionedHostFencesBeforeRestart cuts a live host off the
// managers: it fences itself (stops its domains, keeping them defined)
// before the managers restart its HA instance elsewhere, so the instance
// never runs on two hosts; its instance without HA ends halted with the
// reason. When the host's hva comes back it learns it was fenced, removes
// the domain of the instance that moved, keeps the halted one, and the
// cleanup job the evacuation left for it ends; nothing ran twice.
func TestHAPartitionedHostFencesBeforeRestart(t *testing.T) {
	hc := newHACluster(t, "hva.ha1", "hva.ha2", "hva.ha3")
	ha := hc.haInstance("hn-ha1", true)
	plain := hc.haInstance("hn-ha1", false)

	cut := time.Now()
	hc.partition("hva.ha1")
	moved := hc.runningElsewhere(ha, "hn-ha1")
	t.Logf("host cut off → HA instance running on %s: %s (fence after %s, reschedule after %s)",
		moved, time.Since(cut).Round(10*time.Millisecond), haFenceAfter, haReschedule)

	fenceStop := hc.log.index("hva.ha1 stop " + ha)
	restart := hc.log.index(moved + " start " + ha)
	if fenceStop < 0 || restart < 0 || fenceStop > restart {
		t.Fatalf("the partitioned host stopped %s at op %d, %s started it at op %d; ops %v", ha, fenceStop, moved, restart, hc.log.list())
	}
	if fenced, why := hc.hosts["hva.ha1"].h.Fenced(); !fenced {
		t.Error("the partitioned hva is not fenced")
	} else {
		t.Logf("partitioned hva fenced: %s", why)
	}
	for _, id := range []string{ha, plain} {
		if got := hc.domain("hva.ha1", id); got != string(hypervisor.Shutoff) {
			t.Errorf("domain %s on the partitioned host is %q, want shutoff (stopped, kept)", id, got)
		}
	}
	doc := hc.waitState(plain, "halted")
	if doc["host_node"] != "hn-ha1" || doc["status"] != "offline" {
		t.Errorf("non-HA instance = %v on %v", doc["status"], doc["host_node"])
	}
	if got := hc.lastError(plain); got != "evacuation of host hn-ha1: ha_enabled is off; its host hn-ha1 is evacuated" {
		t.Errorf("non-HA instance last_error %q", got)
	}

	// The partition heals: the hva (a new process here) comes back.
	hc.restart("hva.ha1")
	testutil.WaitFor(t, 30*time.Second, func() error {
		if got := hc.domain("hva.ha1", ha); got != "" {
			return fmt.Errorf("the moved instance's domain on hva.ha1 is %q", got)
		}
		if fenced, why := hc.hosts["hva.ha1"].h.Fenced(); fenced {
			return fmt.Errorf("hva.ha1 still fenced: %s", why)
		}
		return nil
	})
	if got := hc.domain("hva.ha1", plain); got != string(hypervisor.Shutoff) {
		t.Errorf("the halted instance's domain on its host is %q, want kept (shutoff)", got)
	}
	hc.waitJobsDone(ha, "hva-handle.hva.ha1")
	if got := hc.domain(moved, ha); got != string(hypervisor.Running) {
		t.Errorf("the moved instance is %q on %s after the old host came back", got, moved)
	}
	if doc := hc.instance(ha); doc["state"] != "running" || doc["host_node"] != hostOf(moved) {
		t.Errorf("moved instance = %v on %v", doc["state"], doc["host_node"])
	}
	// The returning host runs its halted instance again on request.
	hc.must("PUT", "/instances/"+plain+"/poweron.json", nil, account)
	if doc := hc.waitState(plain, "running"); doc["host_node"] != "hn-ha1" {
		t.Errorf("powered on on %v", doc["host_node"])
	}
	hc.noViolations()
}

// TestHAKilledHost: a host dies (hva and VMs). After the window its HA
// instance runs on another host and its other instance is halted; the
// host's hva restarts, removes the leftover domain of the moved instance,
// and starts nothing.
func TestHAKilledHost(t *testing.T) {
	hc := newHACluster(t, "hva.ha1", "hva.ha2")
	ha := hc.haInstance("hn-ha1", true)
	plain := hc.haInstance("hn-ha1", false)
	killed := time.Now()
	hc.crash("hva.ha1")
	moved := hc.runningElsewhere(ha, "hn-ha1")
	t.Logf("host killed → HA instance running on %s: %s", moved, time.Since(killed).Round(10*time.Millisecond))
	if moved != "hva.ha2" {
		t.Fatalf("moved to %s", moved)
	}
	hc.waitState(plain, "halted")
	var host proto.HostNode
	hc.record(proto.KindHostNode, "hn-ha1", &host)
	if host.SchedulingEnabled {
		t.Error("the failed host is enabled for scheduling")
	}

	before := len(hc.log.list())
	hc.restart("hva.ha1")
	testutil.WaitFor(t, 30*time.Second, func() error {
		if got := hc.domain("hva.ha1", ha); got != "" {
			return fmt.Errorf("leftover domain of %s on hva.ha1 is %q", ha, got)
		}
		if fenced, _ := hc.hosts["hva.ha1"].h.Fenced(); fenced {
			return fmt.Errorf("hva.ha1 still fenced")
		}
		return nil
	})
	hc.waitJobsDone(ha, "hva-handle.hva.ha1")
	for _, op := range hc.log.list()[before:] {
		if len(op) > len("hva.ha1 start") && op[:len("hva.ha1 start")] == "hva.ha1 start" {
			t.Errorf("the returning host started a domain: %s", op)
		}
	}
	if got := hc.domain("hva.ha1", plain); got != string(hypervisor.Shutoff) {
		t.Errorf("halted instance's domain on the returned host is %q", got)
	}
	if doc := hc.instance(ha); doc["state"] != "running" || doc["host_node"] != "hn-ha2" {
		t.Errorf("moved instance = %v on %v", doc["state"], doc["host_node"])
	}
	hc.noViolations()
}

// TestHAManualEvacuate: PUT /host_nodes/:id/evacuate on a live host answers
// with the evacuation's job, which the operator follows to its end; it
// moves the host's HA instance to another host, which starts it only after
// the old host removed its domain; the instance without HA is powered off;
// the host is enabled for scheduling again.
func TestHAManualEvacuate(t *testing.T) {
	hc := newHACluster(t, "hva.ha1", "hva.ha2")
	ha := hc.haInstance("hn-ha1", true)
	plain := hc.haInstance("hn-ha1", false)
	doc := hc.must("PUT", "/host_nodes/hn-ha1/evacuate.json", nil, "").(map[string]any)
	jobID, _ := doc["job_id"].(string)
	if jobID == "" || doc["host_node_id"] != "hn-ha1" {
		t.Fatalf("evacuate = %v", doc)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		j := hc.must("GET", "/jobs/"+jobID+".json", nil, "").(map[string]any)
		if j["state"] != "finished" {
			return fmt.Errorf("evacuation job is %v", j["state"])
		}
		if j["finish_status"] != "success" {
			t.Fatalf("evacuation job = %v", j)
		}
		return nil
	})
	var job proto.Job
	hc.record(proto.KindJob, jobID, &job)
	if fmt.Sprint(job.Result["scheduled"]) != "["+ha+"]" || fmt.Sprint(job.Result["halted"]) != "["+plain+"]" {
		t.Fatalf("evacuation result = %v", job.Result)
	}
	moved := hc.runningElsewhere(ha, "hn-ha1")
	removed := hc.log.index("hva.ha1 undefine " + ha)
	started := hc.log.index(moved + " start " + ha)
	if removed < 0 || removed > started {
		t.Fatalf("old domain removed at op %d, new one started at op %d: %v", removed, started, hc.log.list())
	}
	hc.waitState(plain, "halted")
	if got := hc.domain("hva.ha1", plain); got != string(hypervisor.Shutoff) {
		t.Errorf("non-HA instance's domain is %q, want powered off", got)
	}
	var host proto.HostNode
	hc.record(proto.KindHostNode, "hn-ha1", &host)
	if !host.SchedulingEnabled {
		t.Error("scheduling not enabled again on the evacuated host")
	}
	_ = hc.mgr.Cluster.Store().View(func(tx *state.Tx) error {
		if tx.Exists(proto.KindHostFence, "hva.ha1") {
			t.Error("a live host was fenced")
		}
		return nil
	})
	hc.noViolations()
}
