package health

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/tlsutil/tlstest"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// haClock is a settable monotonic clock.
type haClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *haClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *haClock) set(d time.Duration, t0 time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t0.Add(d)
}

// termCluster is a real single-manager cluster whose raft term the test
// sets (a leader change without the cost of one).
type termCluster struct {
	*cluster.Server
	mu   sync.Mutex
	term string
}

func (c *termCluster) Stats() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return map[string]string{"term": c.term}
}

func (c *termCluster) setTerm(t string) {
	c.mu.Lock()
	c.term = t
	c.mu.Unlock()
}

// haEnv is an HA loop over a real cluster with members the test sets.
type haEnv struct {
	t       *testing.T
	c       *termCluster
	ha      *HA
	clock   *haClock
	t0      time.Time
	mu      sync.Mutex
	members []jobs.Member
}

func newHAEnv(t *testing.T, cfg HAConfig) *haEnv {
	t.Helper()
	srv := cluster.TestServer(t, nil)
	e := &haEnv{t: t, c: &termCluster{Server: srv, term: "1"}, clock: &haClock{}, t0: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	e.clock.now = e.t0
	cfg.Now = e.clock.Now
	cfg.StampNow = func() time.Time { return e.t0 }
	ha, err := NewHA(e.c, func() []jobs.Member {
		e.mu.Lock()
		defer e.mu.Unlock()
		return append([]jobs.Member(nil), e.members...)
	}, cfg, logging.NewTest(t))
	if err != nil {
		t.Fatal(err)
	}
	e.ha = ha
	for _, n := range []string{"w", "x", "y", "z"} {
		e.commit(func(tx *state.Tx, b *state.Builder) error {
			b.Create(proto.KindHostNode, "hn-"+n, proto.HostNode{ID: "hn-" + n, NodeID: "hva." + n, Arch: "x86_64",
				Hypervisor: "kvm", OfferingCPUCores: 4, OfferingMemorySize: 4096, SchedulingEnabled: true})
			return nil
		})
	}
	return e
}

func (e *haEnv) commit(fn func(tx *state.Tx, b *state.Builder) error) {
	e.t.Helper()
	if err := state.Commit(context.Background(), e.c.Store(), e.c, fn); err != nil {
		e.t.Fatal(err)
	}
}

// member sets the serf status and fence tag of hva.<n> ("" = no tag).
func (e *haEnv) member(n, status, fenceMs string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	tags := map[string]string{proto.TagRole: proto.RoleHva, proto.TagNodeID: "hva." + n}
	if fenceMs != "" {
		tags[proto.TagFenceMs] = fenceMs
	}
	for i, m := range e.members {
		if m.Name == "hva."+n {
			e.members[i] = jobs.Member{Name: m.Name, Status: status, Tags: tags}
			return
		}
	}
	e.members = append(e.members, jobs.Member{Name: "hva." + n, Status: status, Tags: tags})
}

func (e *haEnv) at(d time.Duration) {
	e.clock.set(d, e.t0)
	if err := e.ha.Check(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *haEnv) heartbeat(n string, fenceMs int64) *proto.HeartbeatResponse {
	e.t.Helper()
	resp, err := e.ha.Heartbeat(context.Background(), proto.HeartbeatRequest{NodeID: "hva." + n, FenceAfterMs: fenceMs})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// evacuations lists the evacuate_from jobs ever made, by host.
func (e *haEnv) evacuations() map[string]int {
	out := map[string]int{}
	_ = e.c.Store().View(func(tx *state.Tx) error {
		return tx.Each(proto.KindJob, false, func(en state.Entry) error {
			var j proto.Job
			if err := json.Unmarshal(en.Value, &j); err != nil {
				return err
			}
			if j.Verb == proto.VerbEvacuateFrom {
				out[j.ResourceID]++
			}
			return nil
		})
	})
	return out
}

func (e *haEnv) fence(node string) (proto.HostFence, bool) {
	var f proto.HostFence
	ok := false
	_ = e.c.Store().View(func(tx *state.Tx) error {
		_, err := tx.Get(proto.KindHostFence, node, &f)
		ok = err == nil
		return nil
	})
	return f, ok
}

// TestHAEvacuatesOnceAfterTheWindow: a failed hva's host is evacuated only
// once ha_reschedule_after has passed since its last heartbeat, exactly
// once however many passes follow; the fence then answers its heartbeats
// until the evacuation ended and it is back.
func TestHAEvacuatesOnceAfterTheWindow(t *testing.T) {
	e := newHAEnv(t, HAConfig{RescheduleAfter: 3 * time.Second, FenceMargin: time.Second})
	e.member("x", "alive", "1000")
	e.at(0)
	e.clock.set(time.Second, e.t0)
	if r := e.heartbeat("x", 1000); r.Fenced || r.ConfigError != "" {
		t.Fatalf("heartbeat = %+v", r)
	}
	e.member("x", "failed", "1000")
	e.at(3*time.Second + 900*time.Millisecond) // 2.9 s without a heartbeat
	if _, ok := e.fence("hva.x"); ok || len(e.evacuations()) != 0 {
		t.Fatal("evacuated before ha_reschedule_after")
	}
	e.at(4*time.Second + 100*time.Millisecond)
	f, ok := e.fence("hva.x")
	if !ok || f.HostNodeID != "hn-x" || !strings.Contains(f.Reason, "hva.x failed") {
		t.Fatalf("fence = %+v, %v", f, ok)
	}
	for i := range 5 {
		e.at(5*time.Second + time.Duration(i)*time.Second)
	}
	if got := e.evacuations(); got["hn-x"] != 1 || len(got) != 1 {
		t.Fatalf("evacuations = %v, want one of hn-x", got)
	}
	var host proto.HostNode
	_ = e.c.Store().View(func(tx *state.Tx) error { _, err := tx.Get(proto.KindHostNode, "hn-x", &host); return err })
	if host.SchedulingEnabled {
		t.Error("the failed host is still enabled for scheduling")
	}

	// Back: told it is fenced while the evacuation runs, released after.
	e.member("x", "alive", "1000")
	if r := e.heartbeat("x", 1000); !r.Fenced || r.Reason != f.Reason {
		t.Fatalf("heartbeat of the returning hva = %+v", r)
	}
	e.at(10 * time.Second)
	if _, ok := e.fence("hva.x"); !ok {
		t.Fatal("fence lifted while the evacuation runs")
	}
	e.commit(func(tx *state.Tx, b *state.Builder) error {
		return jobs.FinishTx(tx, b, f.JobID, e.t0, jobs.FinishSuccess, "", nil)
	})
	e.at(11 * time.Second)
	if _, ok := e.fence("hva.x"); ok {
		t.Fatal("fence not lifted after the evacuation ended and the hva came back")
	}
	if r := e.heartbeat("x", 1000); r.Fenced {
		t.Fatalf("heartbeat after the lift = %+v", r)
	}
	if got := e.evacuations(); got["hn-x"] != 1 {
		t.Fatalf("evacuations = %v", got)
	}
}

// TestHAOnlyWhenSafe: no evacuation of an hva that left (stopped on
// purpose), is alive, does not fence itself, or fences too late for the
// configured window; a new leader counts the window from its own start.
func TestHAOnlyWhenSafe(t *testing.T) {
	e := newHAEnv(t, HAConfig{RescheduleAfter: 3 * time.Second, FenceMargin: time.Second})
	e.member("w", "failed", "2500") // 2.5 s + 1 s margin > 3 s
	e.member("x", "alive", "1000")
	e.member("y", "left", "1000")
	e.member("z", "failed", "0")
	e.at(0)
	e.at(time.Hour)
	if got := e.evacuations(); len(got) != 0 {
		t.Fatalf("evacuations = %v, want none", got)
	}
	if r := e.heartbeat("z", 0); !strings.Contains(r.ConfigError, "does not fence itself") {
		t.Errorf("config error for fence 0 = %q", r.ConfigError)
	}
	if r := e.heartbeat("w", 2500); !strings.Contains(r.ConfigError, "exceeds ha_reschedule_after") {
		t.Errorf("config error for a long fence = %q", r.ConfigError)
	}

	// A leader change: the new term counts from now, whatever the old
	// leader heard.
	e.member("x", "failed", "1000")
	e.c.setTerm("2")
	e.at(time.Hour + time.Second)
	e.at(time.Hour + 3*time.Second + 900*time.Millisecond)
	if len(e.evacuations()) != 0 {
		t.Fatal("evacuated sooner than ha_reschedule_after after a leader change")
	}
	e.at(time.Hour + 4*time.Second + 100*time.Millisecond)
	if got := e.evacuations(); got["hn-x"] != 1 || len(got) != 1 {
		t.Fatalf("evacuations = %v", got)
	}
}

// TestHAHeartbeatNeedsLeader: a manager that does not lead answers
// NoLeader, so the hva does not count it as contact.
func TestHAHeartbeatNeedsLeader(t *testing.T) {
	ha, err := NewHA(notLeader{}, func() []jobs.Member { return nil }, HAConfig{}, logging.NewTest(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ha.Heartbeat(context.Background(), proto.HeartbeatRequest{NodeID: "hva.x"})
	if !errs.Is(err, errs.NoLeader) {
		t.Fatalf("heartbeat on a follower = %v", err)
	}
}

type notLeader struct{ HACluster }

func (notLeader) IsLeader() bool { return false }

func TestHAConfigValidate(t *testing.T) {
	for _, c := range []HAConfig{
		{RescheduleAfter: time.Second, FenceMargin: time.Second},
		{RescheduleAfter: -1},
		{FenceMargin: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	for _, c := range []HAConfig{{}, DefaultHAConfig(), {RescheduleAfter: 2 * time.Second, FenceMargin: time.Second}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// TestHAHeartbeatOnlyForTheCallersOwnHost: under mutual TLS the heartbeat
// is tied to the caller's certificate: an hva's certificate speaks for its
// own node id only, so a compromised or misconfigured hva cannot keep
// another, failed host from being evacuated.
func TestHAHeartbeatOnlyForTheCallersOwnHost(t *testing.T) {
	e := newHAEnv(t, HAConfig{RescheduleAfter: 10 * time.Second})
	ca := tlstest.NewCA(t, "cluster")
	srv := rpc.NewServer(rpc.ServerConfig{Security: rpc.Security{TLS: ca.Identity(t, proto.RoleManager, "m1")}, Logger: logging.NewTest(t)})
	e.ha.Register(srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

	call := func(role, name, nodeID string) error {
		c := rpc.NewClient(rpc.ClientConfig{Security: rpc.Security{TLS: ca.Identity(t, role, name)}})
		var resp proto.HeartbeatResponse
		return c.Call(context.Background(), l.Addr().String(), proto.EndpointHvaCollector, proto.VerbHeartbeat,
			proto.HeartbeatRequest{NodeID: nodeID, FenceAfterMs: 5000}, &resp)
	}
	if err := call(proto.RoleHva, "hva.x", "hva.x"); err != nil {
		t.Fatalf("hva.x's heartbeat for itself: %v", err)
	}
	if err := call(proto.RoleHva, "hva.x", "hva.y"); !errs.Is(err, errs.Unauthorized) {
		t.Fatalf("hva.x's heartbeat for hva.y = %v, want Unauthorized", err)
	}
	e.ha.mu.Lock()
	_, counted := e.ha.contact["hva.y"]
	e.ha.mu.Unlock()
	if counted {
		t.Fatal("a refused heartbeat counted as hva.y's contact")
	}
}
