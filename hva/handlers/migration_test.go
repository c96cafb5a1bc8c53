package handlers

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

const destNode = "hva.test2"

// node2 is a second hva (the migration destination) sharing e's collector.
type node2 struct {
	hv   *dummy.Driver
	h    *Handlers
	jobs registrar
}

func (e *env) secondNode(cores int, wrap func(hypervisor.Hypervisor) hypervisor.Hypervisor) *node2 {
	e.t.Helper()
	hv, err := dummy.New(dummy.Config{CPUCores: cores, MemoryMB: 65536})
	if err != nil {
		e.t.Fatal(err)
	}
	var driver hypervisor.Hypervisor = hv
	if wrap != nil {
		driver = wrap(hv)
	}
	h, err := New(Config{NodeID: destNode, Hypervisor: driver, Collector: e.coll, Events: e.ev,
		Logger: logging.NewTest(e.t), Now: e.clock.Now})
	if err != nil {
		e.t.Fatal(err)
	}
	n := &node2{hv: hv, h: h, jobs: registrar{}}
	h.Register(n.jobs)
	return n
}

// run runs a job verb of n as its agent would, under job id.
func (n *node2) run(t *testing.T, endpoint, verb, jobID string, args []byte) error {
	t.Helper()
	fn := n.jobs[endpoint+"/"+verb]
	if fn == nil {
		t.Fatalf("no handler for %s/%s", endpoint, verb)
	}
	ctx := agent.ContextWithJob(context.Background(), agent.JobInfo{ID: jobID, Endpoint: endpoint, Verb: verb})
	_, err := fn(ctx, proto.JobEnvelope{ID: jobID, Endpoint: endpoint, Verb: verb, Args: args})
	return err
}

// source is e's handlers as a node2 (the migration source).
func (e *env) source() *node2 { return &node2{hv: e.hv, h: e.h, jobs: e.jobs} }

// migrating stores a running instance of e's node, migrating to destNode,
// with its domain running on e's node.
func (e *env) migrating(id string) {
	e.t.Helper()
	e.put(id, proto.InstanceMigrating, proto.StatusOnline)
	v := e.instance(id)
	v.MigrationDest = &proto.HostNode{ID: "hn-test2", NodeID: destNode}
	e.coll.Put(v)
	e.withDomain(id, true)
}

func runVolStore(id string) []byte {
	b, _ := json.Marshal(proto.MigrationRunVolStoreRequest{InstanceID: id})
	return b
}

// startJob returns the start_migration the destination submitted.
func (e *env) startJob(id string) proto.SubmitJobRequest {
	e.t.Helper()
	var found []proto.SubmitJobRequest
	for _, s := range e.coll.Submitted() {
		if s.ResourceID == id {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("submitted for %s: %+v, want one start_migration", id, found)
	}
	s := found[0]
	if s.Endpoint != proto.MigrationHandle(node) || s.Verb != proto.VerbStartMigration || s.Key != "start_migration" {
		e.t.Fatalf("submitted %+v", s)
	}
	return s
}

func domainOf(t *testing.T, hv *dummy.Driver, id string) hypervisor.State {
	t.Helper()
	d, err := hv.Get(context.Background(), id)
	if errs.Is(err, errs.NotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.State
}

func TestMigrationMovesTheDomain(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := e.secondNode(8, nil)
	const id = "i-mig1"
	e.migrating(id)
	mig := proto.EndpointMigrationHandle + "."

	if err := dst.run(t, mig+destNode, proto.VerbRunVolStore, "job-rvs", runVolStore(id)); err != nil {
		t.Fatalf("run_vol_store on the destination = %v", err)
	}
	if got := domainOf(t, dst.hv, id); got != hypervisor.Paused {
		t.Fatalf("incoming domain is %q, want paused (waiting)", got)
	}
	s := e.startJob(id)
	if s.ParentID != "job-rvs" {
		t.Fatalf("start_migration parent = %s", s.ParentID)
	}
	var args proto.MigrationStartMigrationRequest
	if err := json.Unmarshal(s.Args, &args); err != nil || args.DestNodeID != destNode || args.Params.Port == 0 {
		t.Fatalf("start_migration args = %+v, %v", args, err)
	}
	// A redelivered run_vol_store submits the same job and keeps the target.
	if err := dst.run(t, mig+destNode, proto.VerbRunVolStore, "job-rvs", runVolStore(id)); err != nil {
		t.Fatal(err)
	}
	if again := e.startJob(id); !slices.Equal(again.Args, s.Args) {
		t.Fatalf("redelivery submitted %s, first %s", again.Args, s.Args)
	}

	src := e.source()
	if err := src.run(t, s.Endpoint, s.Verb, "job-sm", s.Args); err != nil {
		t.Fatalf("start_migration on the source = %v", err)
	}
	v := e.instance(id)
	if v.State != proto.InstanceRunning || !onNode(v.HostNode, destNode) || v.MigrationDest != nil {
		t.Fatalf("after the migration: %s on %+v (to %+v)", v.State, v.HostNode, v.MigrationDest)
	}
	if got := domainOf(t, dst.hv, id); got != hypervisor.Running {
		t.Errorf("destination domain is %q", got)
	}
	if got := domainOf(t, e.hv, id); got != "" {
		t.Errorf("source domain is %q, want removed", got)
	}
	ups := e.coll.Updates(id)
	last := ups[len(ups)-1]
	if *last.State != proto.InstanceRunning || last.ExpectState == nil || *last.ExpectState != proto.InstanceMigrating {
		t.Errorf("last update = %+v", last)
	}
	if len(e.coll.Aborts()) != 0 {
		t.Errorf("aborts: %+v", e.coll.Aborts())
	}

	// Redeliveries after the end change nothing.
	n := len(e.coll.Updates(id))
	if err := src.run(t, s.Endpoint, s.Verb, "job-sm", s.Args); err != nil {
		t.Errorf("redelivered start_migration = %v", err)
	}
	if err := dst.run(t, mig+destNode, proto.VerbRunVolStore, "job-rvs", runVolStore(id)); err != nil {
		t.Errorf("redelivered run_vol_store = %v", err)
	}
	if len(e.coll.Updates(id)) != n || domainOf(t, dst.hv, id) != hypervisor.Running {
		t.Errorf("redeliveries changed the instance or its domain")
	}
}

func TestMigrationDestinationFails(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := e.secondNode(1, nil) // no room for the instance's 2 cores
	const id = "i-mig2"
	e.migrating(id)
	err := dst.run(t, proto.MigrationHandle(destNode), proto.VerbRunVolStore, "job-rvs", runVolStore(id))
	if !errs.Is(err, errs.OutOfHostCapacity) {
		t.Fatalf("run_vol_store on a full destination = %v, want OutOfHostCapacity", err)
	}
	v := e.instance(id)
	if v.State != proto.InstanceRunning || !onNode(v.HostNode, node) {
		t.Fatalf("after a failed run_vol_store: %s on %+v", v.State, v.HostNode)
	}
	if a := e.coll.Aborts(); len(a) != 1 || a[0].InstanceID != id {
		t.Fatalf("aborts = %+v", a)
	}
	if domainOf(t, dst.hv, id) != "" || domainOf(t, e.hv, id) != hypervisor.Running || len(e.coll.Submitted()) != 0 {
		t.Fatalf("destination %q, source %q, submitted %v", domainOf(t, dst.hv, id), domainOf(t, e.hv, id), e.coll.Submitted())
	}
}

// noMigrator hides the dummy's Migrator.
type noMigrator struct{ hypervisor.Hypervisor }

func TestMigrationRefusedWithoutMigrator(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := e.secondNode(8, func(h hypervisor.Hypervisor) hypervisor.Hypervisor { return noMigrator{h} })
	const id = "i-mig3"
	e.migrating(id)
	err := dst.run(t, proto.MigrationHandle(destNode), proto.VerbRunVolStore, "job-rvs", runVolStore(id))
	if !errs.Is(err, errs.OperationNotPermitted) {
		t.Fatalf("run_vol_store without a migrator = %v", err)
	}
	if v := e.instance(id); v.State != proto.InstanceRunning || len(e.coll.Aborts()) != 1 {
		t.Fatalf("instance %s, aborts %v", v.State, e.coll.Aborts())
	}
}

func TestMigrationSourceFails(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := e.secondNode(8, nil)
	const id = "i-mig4"
	e.migrating(id)
	if err := dst.run(t, proto.MigrationHandle(destNode), proto.VerbRunVolStore, "job-rvs", runVolStore(id)); err != nil {
		t.Fatal(err)
	}
	s := e.startJob(id)
	e.hv.InjectError(dummy.OpMigrate, errBoom)
	err := e.source().run(t, s.Endpoint, s.Verb, "job-sm", s.Args)
	if err == nil {
		t.Fatal("start_migration with a failing hypervisor succeeded")
	}
	v := e.instance(id)
	if v.State != proto.InstanceRunning || !onNode(v.HostNode, node) || domainOf(t, e.hv, id) != hypervisor.Running {
		t.Fatalf("after a failed send: %s on %+v, source domain %q", v.State, v.HostNode, domainOf(t, e.hv, id))
	}
	if len(e.coll.Aborts()) != 1 {
		t.Fatalf("aborts = %+v", e.coll.Aborts())
	}
	// The destination's leftover: its monitor keeps it while the instance
	// migrates there, the cleanup the managers enqueue removes it.
	if got := domainOf(t, dst.hv, id); got != hypervisor.Paused {
		t.Fatalf("destination domain after the failure is %q", got)
	}
	cleanup, _ := json.Marshal(proto.HvaCleanupRequest{InstanceID: id})
	if err := dst.run(t, proto.HvaHandle(destNode), proto.VerbCleanup, "job-cl", cleanup); err != nil {
		t.Fatalf("cleanup on the destination = %v", err)
	}
	if got := domainOf(t, dst.hv, id); got != "" {
		t.Fatalf("destination domain after cleanup is %q", got)
	}
	// A redelivered start_migration does not act on the running instance.
	e.hv.InjectError(dummy.OpMigrate, nil)
	if err := e.source().run(t, s.Endpoint, s.Verb, "job-sm", s.Args); !errs.Is(err, errs.InvalidInstanceState) {
		t.Fatalf("stale start_migration = %v, want InvalidInstanceState", err)
	}
	if domainOf(t, e.hv, id) != hypervisor.Running || len(e.coll.Aborts()) != 1 {
		t.Fatal("the stale start_migration touched the instance")
	}
}

func TestMigrationMonitorKeepsIncomingDomain(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := e.secondNode(8, nil)
	const id = "i-mig5"
	e.migrating(id)
	if err := dst.run(t, proto.MigrationHandle(destNode), proto.VerbRunVolStore, "job-rvs", runVolStore(id)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 3 {
		if err := dst.h.MonitorOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.h.MonitorOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if domainOf(t, dst.hv, id) != hypervisor.Paused || domainOf(t, e.hv, id) != hypervisor.Running {
		t.Fatalf("monitors touched a migration: destination %q, source %q", domainOf(t, dst.hv, id), domainOf(t, e.hv, id))
	}
	if v := e.instance(id); v.State != proto.InstanceMigrating {
		t.Fatalf("monitor changed the instance to %s", v.State)
	}
	// Once the migration is aborted the destination's domain is a leftover
	// the monitor removes (two passes agreeing).
	if err := e.coll.AbortMigration(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := dst.h.MonitorOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := domainOf(t, dst.hv, id); got != "" {
		t.Fatalf("leftover incoming domain is %q after two monitor passes", got)
	}
}

func TestMigrationSwitchAfterSourceRestart(t *testing.T) {
	e := newEnv(t, envOpts{})
	dst := e.secondNode(8, nil)
	const id = "i-mig6"
	e.migrating(id)
	if err := dst.run(t, proto.MigrationHandle(destNode), proto.VerbRunVolStore, "job-rvs", runVolStore(id)); err != nil {
		t.Fatal(err)
	}
	s := e.startJob(id)
	var args proto.MigrationStartMigrationRequest
	_ = json.Unmarshal(s.Args, &args)
	// The first run sent the domain and stopped before the switch.
	ctx := context.Background()
	if err := e.hv.MigrateOut(ctx, id, hypervisor.MigrationTarget{Host: args.Params.ListenIP, Port: args.Params.Port}); err != nil {
		t.Fatal(err)
	}
	if err := e.source().run(t, s.Endpoint, s.Verb, "job-sm", s.Args); err != nil {
		t.Fatalf("redelivered start_migration = %v", err)
	}
	if v := e.instance(id); v.State != proto.InstanceRunning || !onNode(v.HostNode, destNode) {
		t.Fatalf("after the redelivery: %s on %+v", v.State, v.HostNode)
	}
	if domainOf(t, dst.hv, id) != hypervisor.Running || domainOf(t, e.hv, id) != "" {
		t.Fatalf("destination %q source %q", domainOf(t, dst.hv, id), domainOf(t, e.hv, id))
	}
}

func TestStaleReportsAreRefused(t *testing.T) {
	// A boot reads pending and starts the domain; meanwhile the instance
	// moves on (here it is set halting: any state but starting). The boot's
	// report starting → running is refused and overwrites nothing.
	var e *env
	e = newEnv(t, envOpts{hv: func(h hypervisor.Hypervisor) hypervisor.Hypervisor {
		return &slowStart{Hypervisor: h, before: func() {
			v := e.instance("i-stale")
			v.State = proto.InstanceHalting
			e.coll.Put(v)
		}}
	}})
	e.put("i-stale", proto.InstancePending, proto.StatusInit)
	err := e.job(lsHandle, proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-stale"})
	wantKind(t, "boot reporting running after the instance moved on", err, errs.InvalidInstanceState)
	if v := e.instance("i-stale"); v.State != proto.InstanceHalting {
		t.Fatalf("stale report overwrote the state: %s", v.State)
	}
	ups := e.coll.Updates("i-stale")
	if len(ups) != 1 || *ups[0].State != proto.InstanceStarting || *ups[0].ExpectState != proto.InstancePending {
		t.Fatalf("accepted updates = %+v, want only pending -> starting", ups)
	}
}

// slowStart runs before when a domain is started (the moment a user's
// action may change the instance under a running job).
type slowStart struct {
	hypervisor.Hypervisor
	before func()
}

func (s *slowStart) Start(ctx context.Context, id string) error {
	s.before()
	return s.Hypervisor.Start(ctx, id)
}
