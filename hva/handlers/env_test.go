package handlers

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/collector/collectortest"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

const node = "hva.test1"

// clock is a settable clock shared by the fake collector and the monitor.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// events records what the handlers publish.
type events struct {
	mu   sync.Mutex
	list []proto.Event
}

func (e *events) Publish(ctx context.Context, ev proto.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list = append(e.list, ev)
	return nil
}

// names returns the names of the events published about id, in order.
func (e *events) names(id string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.list {
		if slices.Equal(ev.Args, []string{id}) {
			out = append(out, ev.Name)
		}
	}
	return out
}

// registrar captures registered job handlers.
type registrar map[string]agent.JobHandler

func (r registrar) HandleJob(endpoint, verb string, h agent.JobHandler) { r[endpoint+"/"+verb] = h }

type env struct {
	t     *testing.T
	hv    *dummy.Driver
	coll  *collectortest.Fake
	ev    *events
	clock *clock
	h     *Handlers
	jobs  registrar
}

type envOpts struct {
	cfg   func(*Config)
	dummy func(*dummy.Config)
	hv    func(hypervisor.Hypervisor) hypervisor.Hypervisor // wraps the dummy
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	dc := dummy.Config{CPUCores: 64, MemoryMB: 65536, ShutdownDelay: 0}
	if o.dummy != nil {
		o.dummy(&dc)
	}
	hv, err := dummy.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	e := &env{t: t, hv: hv, coll: collectortest.New(clk.Now), ev: &events{}, clock: clk, jobs: registrar{}}
	var driver hypervisor.Hypervisor = hv
	if o.hv != nil {
		driver = o.hv(hv)
	}
	cfg := Config{NodeID: node, Hypervisor: driver, Collector: e.coll, Events: e.ev, Logger: logging.NewTest(t),
		SoftPoweroffTimeout: time.Minute, MonitorInterval: time.Hour, Now: clk.Now}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	e.h, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.h.Register(e.jobs)
	return e
}

// put stores an instance of 2 cores and 1 GiB placed on this node.
func (e *env) put(id, state, status string) {
	e.coll.Put(proto.InstanceView{
		ID: id, State: state, Status: status, CPUCores: 2, MemorySize: 1024, Hypervisor: "kvm",
		HostNode:     &proto.HostNode{ID: "hn-test1", NodeID: node},
		BootVolumeID: "vol-" + id[2:],
		Volumes: []proto.VolumeView{{ID: "vol-" + id[2:], StoreType: proto.VolumeLocal, State: proto.VolumePending,
			Device: &proto.VolumeDevice{Path: "/var/lib/vdc/" + id + "/vol"}}},
		Vifs:       []proto.VifView{{ID: "vif-" + id[2:], MacAddr: "525400000001", DcNetwork: &proto.DcNetwork{Name: "public"}}},
		Timestamps: proto.Timestamps{CreatedAt: e.clock.Now(), UpdatedAt: e.clock.Now()},
	})
}

// withDomain defines (and starts, if running) the instance's domain.
func (e *env) withDomain(id string, running bool) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.hv.Define(ctx, hypervisor.Spec{ID: id, CPUCores: 2, MemoryMB: 1024}); err != nil {
		e.t.Fatal(err)
	}
	if running {
		if err := e.hv.Start(ctx, id); err != nil {
			e.t.Fatal(err)
		}
	}
}

// job runs verb of endpoint base ("hva-handle", "local-store-handle") as
// the agent would, and returns its error.
func (e *env) job(base, verb string, req any) error {
	e.t.Helper()
	return e.jobCtx(context.Background(), base, verb, req)
}

func (e *env) jobCtx(ctx context.Context, base, verb string, req any) error {
	e.t.Helper()
	endpoint := base + "." + node
	h := e.jobs[endpoint+"/"+verb]
	if h == nil {
		e.t.Fatalf("no handler for %s/%s", endpoint, verb)
	}
	args, err := json.Marshal(req)
	if err != nil {
		e.t.Fatal(err)
	}
	job := proto.JobEnvelope{ID: "job-test", Endpoint: endpoint, Verb: verb, Args: args}
	ctx = agent.ContextWithJob(ctx, agent.JobInfo{ID: job.ID, Endpoint: endpoint, Verb: verb})
	_, err = h(ctx, job)
	return err
}

// domain returns the instance's domain state ("" when not defined).
func (e *env) domain(id string) hypervisor.State {
	e.t.Helper()
	d, err := e.hv.Get(context.Background(), id)
	if errs.Is(err, errs.NotFound) {
		return ""
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return d.State
}

func (e *env) instance(id string) proto.InstanceView {
	e.t.Helper()
	v, ok := e.coll.Instance(id)
	if !ok {
		e.t.Fatalf("instance %s is gone from the fake collector", id)
	}
	return v
}

// want checks the state moves, the final instance and its domain.
func (e *env) want(id string, states []string, state, status string, domain hypervisor.State) {
	e.t.Helper()
	if got := e.coll.States(id); !slices.Equal(got, states) {
		e.t.Errorf("%s state moves = %v, want %v", id, got, states)
	}
	v := e.instance(id)
	if v.State != state || v.Status != status {
		e.t.Errorf("%s is %s/%s, want %s/%s", id, v.State, v.Status, state, status)
	}
	if got := e.domain(id); got != domain {
		e.t.Errorf("domain %s is %q, want %q", id, got, domain)
	}
}

func (e *env) wantEvents(id string, names ...string) {
	e.t.Helper()
	if got := e.ev.names(id); !slices.Equal(got, names) {
		e.t.Errorf("events about %s = %v, want %v", id, got, names)
	}
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(err, k) {
		t.Errorf("%s = %v, want %s", what, err, k.Name())
	}
}

// calls returns the dummy's mutating calls about id.
func (e *env) calls(id string) []dummy.Call {
	var out []dummy.Call
	for _, c := range e.hv.Calls() {
		if c.ID == id {
			out = append(out, c)
		}
	}
	return out
}
