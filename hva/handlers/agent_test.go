package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/collector/collectortest"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

const (
	node     = "hva.e2e"
	waitLong = 15 * time.Second
)

// hva is one running hva daemon: agent, collector client, handlers.
type hva struct {
	agent *agent.Agent
	h     *handlers.Handlers

	mu     sync.Mutex
	events []proto.Event
}

// startHva wires an hva the way cmd/hva does, over hv, and has the fake
// manager join it.
func startHva(t *testing.T, hv hypervisor.Hypervisor, m *collectortest.Manager) *hva {
	t.Helper()
	logger := logging.NewTest(t)
	x := &hva{}
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID: node, Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0",
		FastGossip: true, Logger: logger,
		Concurrency: map[string]int{proto.EndpointLocalStoreHandle: 2},
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := cc.JobFinished(ctx, node, res); err != nil {
				t.Logf("job_finished: %v", err)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logger,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	x.h, err = handlers.New(handlers.Config{NodeID: node, Hypervisor: hv, Collector: cc, Events: a, Logger: logger,
		MonitorInterval: 20 * time.Millisecond, SoftPoweroffTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	x.h.Register(a)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	x.agent = a
	t.Cleanup(func() { x.stop(t) })
	if _, err := a.Subscribe("*/*", x.record); err != nil {
		t.Fatal(err)
	}
	if err := m.Join(a.SerfAddr()); err != nil {
		t.Fatalf("fake manager join: %v", err)
	}
	testutil.WaitFor(t, waitLong, func() error {
		for _, mb := range a.Members() {
			if mb.Role == proto.RoleManager && mb.Status == "alive" {
				return nil
			}
		}
		return fmt.Errorf("hva does not see the manager yet: %+v", a.Members())
	})
	return x
}

func (x *hva) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := x.agent.Shutdown(ctx); err != nil {
		t.Logf("shutdown: %v", err)
	}
}

func (x *hva) record(ctx context.Context, ev proto.Event) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.events = append(x.events, ev)
}

func (x *hva) waitEvent(t *testing.T, name, id string) {
	t.Helper()
	testutil.WaitFor(t, waitLong, func() error {
		x.mu.Lock()
		defer x.mu.Unlock()
		for _, ev := range x.events {
			if ev.Name == name && slices.Equal(ev.Args, []string{id}) {
				return nil
			}
		}
		return fmt.Errorf("no event %s [%s] among %v", name, id, x.events)
	})
}

func newDummy(t *testing.T) *dummy.Driver {
	t.Helper()
	hv, err := dummy.New(dummy.Config{CPUCores: 4, MemoryMB: 4096, ShutdownDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return hv
}

func instance(id string, cores int) proto.InstanceView {
	return proto.InstanceView{ID: id, State: proto.InstancePending, Status: proto.StatusInit, CPUCores: cores,
		MemorySize: 512, Hypervisor: "kvm", HostNode: &proto.HostNode{ID: "hn-e2e", NodeID: node}}
}

func job(id, endpoint, verb, resource string, req any) proto.JobEnvelope {
	args, _ := json.Marshal(req)
	return proto.JobEnvelope{ID: id, Endpoint: endpoint, Verb: verb, Args: args, ResourceID: resource, Attempt: 1}
}

// deliver hands a job to the hva's rpc address as the dispatcher does and
// waits for its final result.
func deliver(t *testing.T, x *hva, j proto.JobEnvelope) proto.JobResult {
	t.Helper()
	c := rpc.NewClient(rpc.ClientConfig{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	res, err := agent.DeliverJob(ctx, c, x.agent.RPCAddr(), j, 10*time.Second)
	if err != nil {
		t.Fatalf("DeliverJob(%s) = %v", j.ID, err)
	}
	if !res.Status.Final() {
		t.Fatalf("job %s still %s after the wait", j.ID, res.Status)
	}
	return res
}

func wantInstance(t *testing.T, coll *collectortest.Fake, id, state, status string) {
	t.Helper()
	v, _ := coll.Instance(id)
	if v.State != state || v.Status != status {
		t.Errorf("%s is %s/%s, want %s/%s", id, v.State, v.Status, state, status)
	}
}

func TestAgentRunsInstanceJobs(t *testing.T) {
	coll := collectortest.New(nil)
	m := collectortest.StartManager(t, coll, "")
	hv := newDummy(t)
	x := startHva(t, hv, m)
	ctx := context.Background()

	// Boot.
	coll.Put(instance("i-e2e", 2))
	boot := job("job-boot", proto.LocalStoreHandle(node), proto.VerbRunLocalStore, "i-e2e",
		proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-e2e"})
	// Delivered without waiting for it, as by a dispatcher whose wait ran
	// out: the hva reports the result to job_finished (a waiting delivery
	// gets it in its answer instead).
	c := rpc.NewClient(rpc.ClientConfig{})
	defer c.Close()
	if _, err := agent.DeliverJob(ctx, c, x.agent.RPCAddr(), boot, 0); err != nil {
		t.Fatalf("DeliverJob(%s) = %v", boot.ID, err)
	}
	testutil.WaitFor(t, waitLong, func() error {
		for _, r := range coll.JobResults() {
			if r.NodeID == node && r.Result.JobID == "job-boot" && r.Result.Status == proto.JobSucceeded {
				return nil
			}
		}
		return fmt.Errorf("job_finished of job-boot not reported: %+v", coll.JobResults())
	})
	wantInstance(t, coll, "i-e2e", proto.InstanceRunning, proto.StatusOnline)
	if got := coll.States("i-e2e"); !slices.Equal(got, []string{proto.InstanceStarting, proto.InstanceRunning}) {
		t.Errorf("states = %v", got)
	}
	if d, err := hv.Get(ctx, "i-e2e"); err != nil || d.State != hypervisor.Running {
		t.Errorf("domain = %+v, %v; want running", d, err)
	}
	x.waitEvent(t, proto.EventInstanceStarted, "i-e2e")

	// A redelivery of the same job is answered from memory.
	if res := deliver(t, x, boot); res.Status != proto.JobSucceeded {
		t.Errorf("redelivered boot = %+v", res)
	}
	if n := len(coll.Updates("i-e2e")); n != 2 {
		t.Errorf("redelivery ran the job again: %d updates", n)
	}

	// A boot that cannot fit fails the job with the cause and terminates the instance.
	coll.Put(instance("i-huge", 16))
	res := deliver(t, x, job("job-huge", proto.LocalStoreHandle(node), proto.VerbRunLocalStore, "i-huge",
		proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-huge"}))
	if res.Status != proto.JobFailed || res.Error == nil || res.Error.Code != errs.OutOfHostCapacity.WireCode() {
		t.Errorf("oversized boot = %+v, want failed with OutOfHostCapacity", res)
	}
	wantInstance(t, coll, "i-huge", proto.InstanceTerminated, proto.StatusOffline)
	x.waitEvent(t, proto.EventNodeInstanceTerminated(node), "i-huge")

	// Power off and on again.
	if res := deliver(t, x, job("job-off", proto.HvaHandle(node), proto.VerbSoftPoweroff, "i-e2e",
		proto.HvaSoftPoweroffRequest{InstanceID: "i-e2e"})); res.Status != proto.JobSucceeded {
		t.Fatalf("soft_poweroff = %+v", res)
	}
	wantInstance(t, coll, "i-e2e", proto.InstanceHalted, proto.StatusOffline)
	if res := deliver(t, x, job("job-on", proto.HvaHandle(node), proto.VerbPoweron, "i-e2e",
		proto.HvaPoweronRequest{InstanceID: "i-e2e"})); res.Status != proto.JobSucceeded {
		t.Fatalf("poweron = %+v", res)
	}
	wantInstance(t, coll, "i-e2e", proto.InstanceRunning, proto.StatusOnline)

	// The monitor, over RPC, notices a VM that died.
	mctx, stopMonitor := context.WithCancel(ctx)
	monitorDone := make(chan struct{})
	go func() { x.h.RunMonitor(mctx); close(monitorDone) }()
	if err := hv.Kill("i-e2e"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, waitLong, func() error {
		if v, _ := coll.Instance("i-e2e"); v.State != proto.InstanceHalted {
			return fmt.Errorf("instance is %s/%s", v.State, v.Status)
		}
		return nil
	})
	x.waitEvent(t, proto.EventFaultInstance, "i-e2e")
	stopMonitor()
	<-monitorDone

	// Terminate.
	if res := deliver(t, x, job("job-term", proto.HvaHandle(node), proto.VerbTerminate, "i-e2e",
		proto.HvaTerminateRequest{InstanceID: "i-e2e"})); res.Status != proto.JobSucceeded {
		t.Fatalf("terminate = %+v", res)
	}
	wantInstance(t, coll, "i-e2e", proto.InstanceTerminated, proto.StatusOffline)
	if _, err := hv.Get(ctx, "i-e2e"); !errs.Is(err, errs.NotFound) {
		t.Errorf("domain after terminate: %v, want NotFound", err)
	}
	x.waitEvent(t, proto.EventInstanceTerminated, "i-e2e")
}

func TestAgentRestartRedelivery(t *testing.T) {
	coll := collectortest.New(nil)
	m := collectortest.StartManager(t, coll, "")
	hv := newDummy(t)
	coll.Put(instance("i-re", 1))
	boot := job("job-re", proto.LocalStoreHandle(node), proto.VerbRunLocalStore, "i-re",
		proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-re"})

	first := startHva(t, hv, m)
	if res := deliver(t, first, boot); res.Status != proto.JobSucceeded {
		t.Fatalf("boot = %+v", res)
	}
	first.stop(t)
	calls := len(hv.Calls())

	// The restarted agent has forgotten the job; the dispatcher delivers it
	// again and the handler finds the work done.
	second := startHva(t, hv, m)
	if res := deliver(t, second, boot); res.Status != proto.JobSucceeded {
		t.Fatalf("redelivered boot after restart = %+v", res)
	}
	if n := len(coll.Updates("i-re")); n != 2 {
		t.Errorf("%d updates after the redelivery, want the first run's 2", n)
	}
	if got := hv.Calls()[calls:]; len(got) != 0 {
		t.Errorf("the redelivery touched the domain: %v", got)
	}
	wantInstance(t, coll, "i-re", proto.InstanceRunning, proto.StatusOnline)
}
