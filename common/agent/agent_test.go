package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

const waitLong = 10 * time.Second

// testConfig is a loopback agent with fast gossip and picked ports.
func testConfig(t *testing.T, role, nodeID string) Config {
	t.Helper()
	return Config{
		NodeID:     nodeID,
		Role:       role,
		SerfAddr:   "127.0.0.1:0",
		RPCAddr:    "127.0.0.1:0",
		FastGossip: true,
		Logger:     logging.NewTest(t),
	}
}

// startAgent builds an agent, lets setup register handlers, starts it, and
// shuts it down at cleanup.
func startAgent(t *testing.T, cfg Config, setup func(a *Agent)) *Agent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if setup != nil {
		setup(a)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("Start() = %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	return a
}

func memberOf(a *Agent, name string) (Member, bool) {
	for _, m := range a.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func waitMember(t *testing.T, a *Agent, name, status string) Member {
	t.Helper()
	var got Member
	testutil.WaitFor(t, waitLong, func() error {
		m, ok := memberOf(a, name)
		if !ok || m.Status != status {
			return fmt.Errorf("%s sees %s as %+v, want status %s", a.NodeID(), name, m, status)
		}
		got = m
		return nil
	})
	return got
}

func TestConfigValidate(t *testing.T) {
	good := Config{NodeID: "hva.demo1", Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0"}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"no node id":   func(c *Config) { c.NodeID = "" },
		"slash in id":  func(c *Config) { c.NodeID = "hva/x" },
		"bad role":     func(c *Config) { c.Role = "manager" },
		"bad serf":     func(c *Config) { c.SerfAddr = "nope" },
		"bad rpc":      func(c *Config) { c.RPCAddr = "" },
		"zero workers": func(c *Config) { c.Concurrency = map[string]int{"hva-handle": 0} },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%s) = nil, want error", name)
		}
	}
}

func TestAgentsJoinWithTags(t *testing.T) {
	a1 := startAgent(t, testConfig(t, proto.RoleHva, "hva.t1"), nil)
	cfg := testConfig(t, proto.RoleSta, "sta.t1")
	cfg.Join = []string{a1.SerfAddr()}
	a2 := startAgent(t, cfg, nil)

	m := waitMember(t, a1, "sta.t1", "alive")
	if m.Role != proto.RoleSta || m.NodeID != "sta.t1" || m.RPC != a2.RPCAddr() {
		t.Errorf("a1 sees sta.t1 as role=%q node_id=%q rpc=%q, want sta, sta.t1, %s", m.Role, m.NodeID, m.RPC, a2.RPCAddr())
	}
	m = waitMember(t, a2, "hva.t1", "alive")
	if m.Role != proto.RoleHva || m.NodeID != "hva.t1" || m.RPC != a1.RPCAddr() {
		t.Errorf("a2 sees hva.t1 as %+v", m)
	}
	// The rpc tag is where the agent answers.
	_, err := JobStatus(context.Background(), a2.Client(), m.RPC, m.NodeID, "job-none")
	if !errs.Is(err, errs.NotFound) {
		t.Errorf("JobStatus(unknown job) via rpc tag = %v, want NotFound", err)
	}
}

func TestJoinRetriesUntilAMemberAnswers(t *testing.T) {
	port := testutil.FreePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := testConfig(t, proto.RoleHva, "hva.early")
	cfg.Join = []string{seed}
	early := startAgent(t, cfg, nil) // nobody listens at seed yet

	late := testConfig(t, proto.RoleScheduler, "scheduler.late")
	late.SerfAddr = seed
	startAgent(t, late, nil)
	waitMember(t, early, "scheduler.late", "alive")
}

func TestAuthBetweenAgents(t *testing.T) {
	cfg := testConfig(t, proto.RoleSta, "sta.auth")
	cfg.Token = "s3cret"
	a := startAgent(t, cfg, nil)
	anon := rpc.NewClient(rpc.ClientConfig{})
	defer anon.Close()
	if _, err := JobStatus(context.Background(), anon, a.RPCAddr(), a.NodeID(), "job-x"); !errs.Is(err, errs.Unauthorized) {
		t.Errorf("JobStatus without token = %v, want Unauthorized", err)
	}
	if _, err := JobStatus(context.Background(), a.Client(), a.RPCAddr(), a.NodeID(), "job-x"); !errs.Is(err, errs.NotFound) {
		t.Errorf("JobStatus with the agent's client = %v, want NotFound", err)
	}
}

func TestPlainHandler(t *testing.T) {
	a := startAgent(t, testConfig(t, proto.RoleScheduler, "scheduler.p"), func(a *Agent) {
		a.Handle("echo", "upper", rpc.Func(func(ctx context.Context, s string) (string, error) {
			return s + "!", nil
		}))
	})
	var out string
	if err := a.Client().Call(context.Background(), a.RPCAddr(), "echo", "upper", "hi", &out); err != nil || out != "hi!" {
		t.Errorf("Call() = %q, %v", out, err)
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(b.buf))
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			return out
		}
		out = append(out, m)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJobContextAndLogs(t *testing.T) {
	var logs syncBuffer
	cfg := testConfig(t, proto.RoleHva, "hva.ctx")
	logger, err := logging.New(&logs, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = logger
	var seen JobInfo
	a := startAgent(t, cfg, func(a *Agent) {
		a.HandleJob(proto.HvaHandle("hva.ctx"), proto.VerbReboot, JobFunc(func(ctx context.Context, req proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
			seen, _ = JobFromContext(ctx)
			a.Logger().With("component", "driver").InfoContext(ctx, "rebooting", "instance", req.InstanceID)
			return proto.HvaRebootResponse{}, nil
		}))
	})
	job := proto.JobEnvelope{
		ID: "job-ctx1", Endpoint: proto.HvaHandle("hva.ctx"), Verb: proto.VerbReboot,
		Args: mustJSON(t, proto.HvaRebootRequest{InstanceID: "i-abc"}), ResourceID: "i-abc", Attempt: 3,
	}
	res, err := DeliverJob(context.Background(), a.Client(), a.RPCAddr(), job, waitLong)
	if err != nil || res.Status != proto.JobSucceeded {
		t.Fatalf("DeliverJob() = %+v, %v", res, err)
	}
	want := JobInfo{ID: "job-ctx1", Endpoint: job.Endpoint, Verb: job.Verb, ResourceID: "i-abc", Attempt: 3}
	if seen != want {
		t.Errorf("JobFromContext() = %+v, want %+v", seen, want)
	}
	var found bool
	for _, l := range logs.lines() {
		if l["msg"] == "rebooting" {
			found = true
			if l["job_id"] != "job-ctx1" || l["resource_id"] != "i-abc" || l["component"] != "driver" || l["node_id"] != "hva.ctx" {
				t.Errorf("handler log line = %v, want job_id, resource_id, component, node_id", l)
			}
		}
	}
	if !found {
		t.Errorf("handler's log line not found in %d lines", len(logs.lines()))
	}
}

func TestJobOutcomes(t *testing.T) {
	ep := proto.StaHandle("sta.o")
	a := startAgent(t, testConfig(t, proto.RoleSta, "sta.o"), func(a *Agent) {
		a.HandleJob(ep, proto.VerbCreateVolume, JobFunc(func(ctx context.Context, req proto.StaCreateVolumeRequest) (proto.StaCreateVolumeResponse, error) {
			switch req.VolumeID {
			case "vol-bad":
				return proto.StaCreateVolumeResponse{}, errs.New(errs.InvalidVolumeState, "vol-bad is attached")
			case "vol-panic":
				panic("driver exploded")
			case "vol-slow":
				<-ctx.Done()
				return proto.StaCreateVolumeResponse{}, ctx.Err()
			}
			return proto.StaCreateVolumeResponse{Device: &proto.VolumeDevice{IQN: "iqn.x:" + req.VolumeID, LUN: 1}}, nil
		}))
	})
	c := a.Client()
	deliver := func(id string, args any, deadline time.Time) proto.JobResult {
		t.Helper()
		res, err := DeliverJob(context.Background(), c, a.RPCAddr(), proto.JobEnvelope{
			ID: id, Endpoint: ep, Verb: proto.VerbCreateVolume, Args: mustJSON(t, args), Deadline: deadline,
		}, waitLong)
		if err != nil {
			t.Fatalf("DeliverJob(%s) = %v", id, err)
		}
		return res
	}
	wantFailed := func(res proto.JobResult, kind errs.Kind) {
		t.Helper()
		if res.Status != proto.JobFailed || res.Error == nil || errs.KindFromCode(res.Error.Code) != kind {
			t.Errorf("job %s = %+v (error %+v), want failed with %s", res.JobID, res, res.Error, kind.Name())
		}
	}

	res := deliver("job-ok", proto.StaCreateVolumeRequest{VolumeID: "vol-1"}, time.Time{})
	var out proto.StaCreateVolumeResponse
	if res.Status != proto.JobSucceeded || json.Unmarshal(res.Result, &out) != nil || out.Device.IQN != "iqn.x:vol-1" {
		t.Errorf("job-ok = %+v", res)
	}
	wantFailed(deliver("job-bad", proto.StaCreateVolumeRequest{VolumeID: "vol-bad"}, time.Time{}), errs.InvalidVolumeState)
	wantFailed(deliver("job-panic", proto.StaCreateVolumeRequest{VolumeID: "vol-panic"}, time.Time{}), errs.Internal)
	wantFailed(deliver("job-args", map[string]int{"volume_id": 7}, time.Time{}), errs.InvalidBody)
	wantFailed(deliver("job-late", proto.StaCreateVolumeRequest{VolumeID: "vol-1"}, time.Now().Add(-time.Second)), errs.Timeout)
	wantFailed(deliver("job-slow", proto.StaCreateVolumeRequest{VolumeID: "vol-slow"}, time.Now().Add(100*time.Millisecond)), errs.Timeout)

	// Unknown verb, and a body that names another verb than the URL.
	_, err := DeliverJob(context.Background(), c, a.RPCAddr(), proto.JobEnvelope{ID: "job-u", Endpoint: ep, Verb: "nope"}, 0)
	if !errs.Is(err, errs.NotFound) {
		t.Errorf("deliver unknown verb = %v, want NotFound", err)
	}
	err = c.Call(context.Background(), a.RPCAddr(), ep, proto.VerbCreateVolume,
		proto.JobDelivery{Job: proto.JobEnvelope{ID: "job-m", Endpoint: ep, Verb: proto.VerbDeleteVolume}}, nil)
	if !errs.Is(err, errs.InvalidBody) {
		t.Errorf("deliver mismatched verb = %v, want InvalidBody", err)
	}
	// A job id reused for another verb is a conflict.
	_, err = a.Deliver(context.Background(), proto.JobEnvelope{ID: "job-ok", Endpoint: ep, Verb: proto.VerbDeleteVolume}, 0)
	if !errs.Is(err, errs.Conflict) {
		t.Errorf("reuse job id for another verb = %v, want Conflict", err)
	}
}

func TestCancel(t *testing.T) {
	ep := proto.HvaHandle("hva.c")
	started := make(chan string, 4)
	a := startAgent(t, testConfig(t, proto.RoleHva, "hva.c"), func(a *Agent) {
		a.HandleJob(ep, proto.VerbPoweron, func(ctx context.Context, job proto.JobEnvelope) (any, error) {
			started <- job.ID
			<-ctx.Done()
			return nil, ctx.Err()
		})
	})
	c := a.Client()
	for _, id := range []string{"job-run", "job-queued"} {
		res, err := DeliverJob(context.Background(), c, a.RPCAddr(), proto.JobEnvelope{ID: id, Endpoint: ep, Verb: proto.VerbPoweron}, 0)
		if err != nil || res.Status.Final() {
			t.Fatalf("DeliverJob(%s) = %+v, %v", id, res, err)
		}
	}
	if id := <-started; id != "job-run" {
		t.Fatalf("first started job = %s", id)
	}
	res, err := CancelJob(context.Background(), c, a.RPCAddr(), a.NodeID(), "job-queued")
	if err != nil || res.Status != proto.JobCancelled {
		t.Errorf("CancelJob(queued) = %+v, %v; want cancelled", res, err)
	}
	if _, err := CancelJob(context.Background(), c, a.RPCAddr(), a.NodeID(), "job-run"); err != nil {
		t.Fatalf("CancelJob(running) = %v", err)
	}
	testutil.WaitFor(t, waitLong, func() error {
		res, err := JobStatus(context.Background(), c, a.RPCAddr(), a.NodeID(), "job-run")
		if err != nil || res.Status != proto.JobCancelled {
			return fmt.Errorf("job-run = %+v, %v; want cancelled", res, err)
		}
		return nil
	})
	if _, err := CancelJob(context.Background(), c, a.RPCAddr(), a.NodeID(), "job-never"); !errs.Is(err, errs.NotFound) {
		t.Errorf("CancelJob(unknown) = %v, want NotFound", err)
	}
	select {
	case id := <-started:
		t.Errorf("cancelled queued job %s ran", id)
	default:
	}
}

// quiet leaves serf only its joins and catch-up exchanges: no gossip, no
// probes (their packets carry broadcasts too), no periodic state exchange.
func quiet(sc *serf.Config) {
	sc.MemberlistConfig.GossipNodes = 0
	sc.MemberlistConfig.ProbeInterval = time.Hour
	sc.MemberlistConfig.PushPullInterval = 0
}

func TestCatchUpLearnsMembersThatJoinedLater(t *testing.T) {
	// Kill: a quiet member's leave would wait for gossip that never runs.
	start := func(cfg Config) *Agent {
		a := startAgent(t, cfg, nil)
		t.Cleanup(a.Kill)
		return a
	}
	seed := testConfig(t, proto.RoleScheduler, "scheduler.seed")
	seed.SerfTune = quiet
	s := start(seed)

	// A join member that is down does not stop the catch-up.
	down := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	early := testConfig(t, proto.RoleHva, "hva.early")
	early.Join, early.SerfTune, early.CatchUp = []string{down, s.SerfAddr()}, quiet, 100*time.Millisecond
	e := start(early)
	waitMember(t, e, "scheduler.seed", "alive")

	// The seed learns hva.late first hand; only a later state exchange
	// tells hva.early (with early.CatchUp = -1 this wait times out).
	late := testConfig(t, proto.RoleHva, "hva.late")
	late.Join, late.SerfTune, late.CatchUp = []string{s.SerfAddr()}, quiet, -1
	start(late)
	waitMember(t, s, "hva.late", "alive")
	waitMember(t, e, "hva.late", "alive")
}
