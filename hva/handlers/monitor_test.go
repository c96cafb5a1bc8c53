package handlers

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

func (e *env) monitor() {
	e.t.Helper()
	if err := e.h.MonitorOnce(context.Background()); err != nil {
		e.t.Fatalf("MonitorOnce = %v", err)
	}
}

func TestMonitorDomainDied(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-killed", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-killed", true)
	if err := e.hv.Kill("i-killed"); err != nil {
		t.Fatal(err)
	}
	e.put("i-gone", proto.InstanceRunning, proto.StatusOnline) // no domain at all
	e.put("i-ok", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-ok", true)
	e.put("i-paused", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-paused", true)
	if err := e.hv.Pause("i-paused"); err != nil {
		t.Fatal(err)
	}
	e.monitor()
	e.want("i-killed", []string{proto.InstanceHalted}, proto.InstanceHalted, proto.StatusOffline, hypervisor.Shutoff)
	e.wantEvents("i-killed", proto.EventFaultInstance)
	e.want("i-gone", []string{proto.InstanceHalted}, proto.InstanceHalted, proto.StatusOffline, "")
	e.wantEvents("i-gone", proto.EventFaultInstance)
	// A running or paused domain is alive: nothing to report.
	e.want("i-ok", nil, proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)
	e.want("i-paused", nil, proto.InstanceRunning, proto.StatusOnline, hypervisor.Paused)
	// A second pass has nothing more to say.
	e.monitor()
	if n := len(e.coll.Updates("")); n != 2 {
		t.Errorf("%d updates after two passes, want 2", n)
	}
}

func TestMonitorMarksRunningDomainOnline(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-1", proto.InstanceRunning, proto.StatusOffline)
	e.withDomain("i-1", true)
	e.monitor()
	u := e.coll.Updates("i-1")
	if len(u) != 1 || u[0].State != nil || u[0].Status == nil || *u[0].Status != proto.StatusOnline {
		t.Errorf("updates = %+v, want one setting status online only", u)
	}
	e.wantEvents("i-1")
}

func TestMonitorHalting(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-off", proto.InstanceHalting, proto.StatusOnline) // the guest powered itself off
	e.withDomain("i-off", false)
	e.put("i-on", proto.InstanceHalting, proto.StatusOnline) // a poweroff job is on its way
	e.withDomain("i-on", true)
	e.monitor()
	e.want("i-off", []string{proto.InstanceHalted}, proto.InstanceHalted, proto.StatusOffline, hypervisor.Shutoff)
	e.wantEvents("i-off", proto.EventInstanceTurnedOff)
	e.want("i-on", nil, proto.InstanceHalting, proto.StatusOnline, hypervisor.Running)
}

func TestMonitorShuttingDownWaitsBeforeTerminating(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.ForceTerminateAfter = 10 * time.Minute }})
	e.put("i-stuck", proto.InstanceShuttingDown, proto.StatusOnline)
	e.withDomain("i-stuck", true)
	e.clock.Advance(9 * time.Minute)
	e.monitor()
	e.want("i-stuck", nil, proto.InstanceShuttingDown, proto.StatusOnline, hypervisor.Running)
	e.clock.Advance(time.Minute)
	e.monitor()
	e.want("i-stuck", []string{proto.InstanceTerminated}, proto.InstanceTerminated, proto.StatusOffline, "")
	e.wantEvents("i-stuck", proto.EventInstanceTerminated, nodeTerminated)
}

func TestMonitorSkipsInstancesAJobHolds(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-busy", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-busy", true)
	_ = e.hv.Kill("i-busy")
	unlock, err := e.h.locks.Lock(context.Background(), "i-busy")
	if err != nil {
		t.Fatal(err)
	}
	e.monitor()
	e.want("i-busy", nil, proto.InstanceRunning, proto.StatusOnline, hypervisor.Shutoff)
	unlock()
	e.monitor()
	e.want("i-busy", []string{proto.InstanceHalted}, proto.InstanceHalted, proto.StatusOffline, hypervisor.Shutoff)
}

// staleList serves the monitor listing of before a change the instance
// record already has, as a race between the listing and a job would.
type staleList struct {
	Collector
	entries []proto.InstanceMonitorEntry
}

func (s staleList) InstanceMonitorData(ctx context.Context, nodeID string) ([]proto.InstanceMonitorEntry, error) {
	return s.entries, nil
}

func TestMonitorRechecksBeforeWriting(t *testing.T) {
	e := newEnv(t, envOpts{})
	// Listed as running, but a terminate job finished since.
	e.put("i-t", proto.InstanceTerminated, proto.StatusOffline)
	stale := staleList{Collector: e.coll, entries: []proto.InstanceMonitorEntry{
		{InstanceID: "i-t", State: proto.InstanceRunning, Status: proto.StatusOnline}}}
	e.h.coll = stale
	e.monitor()
	if u := e.coll.Updates(""); len(u) != 0 {
		t.Errorf("monitor wrote from a stale listing: %+v", u)
	}
}

func TestMonitorRemovesLeftoverDomains(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-term", proto.InstanceTerminated, proto.StatusOffline)
	e.withDomain("i-term", true)
	e.put("i-stopped", proto.InstanceStopped, proto.StatusOffline)
	e.withDomain("i-stopped", false)
	e.coll.Put(proto.InstanceView{ID: "i-moved", State: proto.InstanceRunning, HostNode: &proto.HostNode{NodeID: "hva.other"}})
	e.withDomain("i-moved", true)
	e.withDomain("i-unknown", true)
	// This node's own domains that the listing leaves out stay.
	e.put("i-halted", proto.InstanceHalted, proto.StatusOffline)
	e.withDomain("i-halted", false)
	e.put("i-starting", proto.InstanceStarting, proto.StatusInit)
	e.withDomain("i-starting", true)

	e.monitor()
	for _, id := range []string{"i-term", "i-stopped", "i-moved", "i-unknown"} {
		if e.domain(id) == "" {
			t.Errorf("domain %s removed on the first pass; want a second opinion first", id)
		}
	}
	e.monitor()
	for _, id := range []string{"i-term", "i-stopped", "i-moved", "i-unknown"} {
		if st := e.domain(id); st != "" {
			t.Errorf("leftover domain %s is still %s after two passes", id, st)
		}
	}
	if e.domain("i-halted") != hypervisor.Shutoff || e.domain("i-starting") != hypervisor.Running {
		t.Errorf("the monitor removed domains of this node's instances")
	}
	if u := e.coll.Updates(""); len(u) != 0 {
		t.Errorf("leftover removal wrote to the managers: %+v", u)
	}
}

func TestMonitorOrphanThatRecoversIsKept(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.withDomain("i-late", true)
	e.monitor() // unknown: suspect
	// The managers' answer catches up: it is ours after all.
	e.put("i-late", proto.InstanceStarting, proto.StatusInit)
	e.monitor()
	e.coll.Put(proto.InstanceView{ID: "i-late", State: proto.InstanceTerminated})
	e.monitor() // suspect again, not removed: the earlier suspicion was cleared
	if e.domain("i-late") != hypervisor.Running {
		t.Errorf("domain removed without two orphan passes in a row")
	}
}

func TestMonitorErrors(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.coll.InjectError(proto.VerbGetInstanceMonitorData, errs.New(errs.Timeout, "no manager"))
	if err := e.h.MonitorOnce(context.Background()); !errs.Is(err, errs.Timeout) {
		t.Errorf("MonitorOnce = %v, want Timeout", err)
	}
}

func TestRunMonitor(t *testing.T) {
	e := newEnv(t, envOpts{cfg: func(c *Config) { c.MonitorInterval = 5 * time.Millisecond }})
	e.put("i-1", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-1", true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.h.RunMonitor(ctx); close(done) }()
	_ = e.hv.Kill("i-1")
	testutil.WaitFor(t, 10*time.Second, func() error {
		if v := e.instance("i-1"); v.State != proto.InstanceHalted {
			return fmt.Errorf("instance is %s", v.State)
		}
		return nil
	})
	cancel()
	<-done
	if got := e.ev.names("i-1"); !slices.Equal(got, []string{proto.EventFaultInstance}) {
		t.Errorf("events = %v", got)
	}
}
