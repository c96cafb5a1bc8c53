package collector

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

type fixture struct {
	t   *testing.T
	srv *cluster.Server
	s   *Service
	ctx context.Context
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := cluster.TestServer(t, nil)
	s := New(Deps{Cluster: srv, Logger: logging.NewTest(t),
		Finalize: func(tx *state.Tx, b *state.Builder, inst *proto.Instance, now time.Time) error {
			inst.State = proto.InstanceTerminated
			m, _ := tx.Get(proto.KindInstance, inst.ID, &proto.Instance{})
			b.Update(proto.KindInstance, inst.ID, m.ModifyIndex, inst)
			return nil
		}})
	return &fixture{t: t, srv: srv, s: s, ctx: context.Background()}
}

func (f *fixture) put(kind, id string, v any) {
	f.t.Helper()
	err := state.Commit(f.ctx, f.srv.Store(), f.srv, func(_ *state.Tx, b *state.Builder) error {
		b.Put(kind, id, v)
		return nil
	})
	if err != nil {
		f.t.Fatalf("put %s/%s: %v", kind, id, err)
	}
}

func (f *fixture) get(kind, id string, v any) bool {
	f.t.Helper()
	found := false
	if err := f.srv.Store().View(func(tx *state.Tx) error {
		_, err := tx.Get(kind, id, v)
		found = err == nil
		if errs.Is(err, errs.NotFound) {
			return nil
		}
		return err
	}); err != nil {
		f.t.Fatal(err)
	}
	return found
}

func (f *fixture) instance(id string) proto.Instance {
	f.t.Helper()
	var v proto.Instance
	if !f.get(proto.KindInstance, id, &v) {
		f.t.Fatalf("no instance %s", id)
	}
	return v
}

func (f *fixture) usage(host string) proto.HostUsage {
	f.t.Helper()
	var u proto.HostUsage
	f.get(proto.KindHostUsage, host, &u)
	return u
}

// jobsOf returns the unfinished jobs of an endpoint.
func (f *fixture) jobsOf(endpoint string) []proto.Job {
	f.t.Helper()
	var out []proto.Job
	_ = f.srv.Store().View(func(tx *state.Tx) error {
		return tx.Each(proto.KindJob, false, func(e state.Entry) error {
			var j proto.Job
			if err := json.Unmarshal(e.Value, &j); err != nil {
				return err
			}
			if j.QueueName == endpoint && tx.Exists(proto.KindJobQueue, j.ID) {
				out = append(out, j)
			}
			return nil
		})
	})
	return out
}

// migrating seeds hosts hn-src (hva.src) and hn-dst (hva.dst, 4 cores, 4 GiB)
// and an instance of 2 cores / 1 GiB / 10 MiB of local disk on hn-src,
// migrating to hn-dst with its room reserved there, as the API leaves it.
func (f *fixture) migrating(id string) {
	f.t.Helper()
	f.put(proto.KindHostNode, "hn-src", proto.HostNode{ID: "hn-src", NodeID: "hva.src", OfferingCPUCores: 4,
		OfferingMemorySize: 4096, OfferingDiskSpaceMB: 100, SchedulingEnabled: true})
	f.put(proto.KindHostNode, "hn-dst", proto.HostNode{ID: "hn-dst", NodeID: "hva.dst", OfferingCPUCores: 4,
		OfferingMemorySize: 4096, OfferingDiskSpaceMB: 100, SchedulingEnabled: true})
	f.put(proto.KindInstance, id, proto.Instance{ID: id, State: proto.InstanceMigrating, Status: proto.StatusOnline,
		CPUCores: 2, MemorySize: 1024, HostNodeID: ptr("hn-src"), MigratingTo: ptr("hn-dst")})
	u := func(host string) proto.HostUsage {
		return proto.HostUsage{ID: host, CPUCores: 2, MemorySize: 1024, DiskBytes: 10 << 20,
			Instances: []string{id}, LocalDisk: map[string]int64{id: 10 << 20}}
	}
	f.put(proto.KindHostUsage, "hn-src", u("hn-src"))
	f.put(proto.KindHostUsage, "hn-dst", u("hn-dst"))
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(err, k) {
		t.Fatalf("%s = %v, want %s", what, err, k.Name())
	}
}

func TestSwitchInstanceHostNode(t *testing.T) {
	f := newFixture(t)
	f.migrating("i-mig1")
	// hn-src also runs another instance, which stays counted there.
	f.put(proto.KindHostUsage, "hn-src", proto.HostUsage{ID: "hn-src", CPUCores: 3, MemorySize: 1536,
		DiskBytes: 10 << 20, Instances: []string{"i-mig1", "i-other"}, LocalDisk: map[string]int64{"i-mig1": 10 << 20}})

	// Wrong destination, unknown node, unknown instance.
	_, err := f.s.switchInstanceHostNode(f.ctx, proto.SwitchInstanceHostNodeRequest{InstanceID: "i-mig1", DestNodeID: "hva.src"})
	if err == nil {
		t.Fatal("switch to the source node accepted")
	}
	_, err = f.s.switchInstanceHostNode(f.ctx, proto.SwitchInstanceHostNodeRequest{InstanceID: "i-mig1", DestNodeID: "hva.none"})
	wantKind(t, "switch to an unbound node", err, errs.UnknownHostNode)
	_, err = f.s.switchInstanceHostNode(f.ctx, proto.SwitchInstanceHostNodeRequest{InstanceID: "i-none", DestNodeID: "hva.dst"})
	wantKind(t, "switch of an unknown instance", err, errs.UnknownInstance)

	req := proto.SwitchInstanceHostNodeRequest{InstanceID: "i-mig1", DestNodeID: "hva.dst"}
	if _, err := f.s.switchInstanceHostNode(f.ctx, req); err != nil {
		t.Fatal(err)
	}
	v := f.instance("i-mig1")
	if *v.HostNodeID != "hn-dst" || v.MigratingTo != nil || v.State != proto.InstanceMigrating {
		t.Fatalf("after switch: host %v to %v state %s", *v.HostNodeID, v.MigratingTo, v.State)
	}
	src, dst := f.usage("hn-src"), f.usage("hn-dst")
	if src.CPUCores != 1 || src.MemorySize != 512 || src.DiskBytes != 0 || !slices.Equal(src.Instances, []string{"i-other"}) {
		t.Fatalf("source usage after switch = %+v", src)
	}
	if dst.CPUCores != 2 || dst.DiskBytes != 10<<20 || !slices.Equal(dst.Instances, []string{"i-mig1"}) {
		t.Fatalf("destination usage after switch = %+v", dst)
	}
	// Again (a retried call): nothing changes.
	if _, err := f.s.switchInstanceHostNode(f.ctx, req); err != nil {
		t.Fatalf("second switch: %v", err)
	}
	if got := f.usage("hn-dst"); got.CPUCores != 2 || len(got.Instances) != 1 {
		t.Fatalf("second switch changed the usage: %+v", got)
	}
	// The agent then reports it running; a stale report is refused.
	if _, err := f.s.updateInstance(f.ctx, proto.UpdateInstanceRequest{InstanceID: "i-mig1",
		State: ptr(proto.InstanceRunning), ExpectState: ptr(proto.InstanceMigrating)}); err != nil {
		t.Fatal(err)
	}
	if got := f.instance("i-mig1").State; got != proto.InstanceRunning {
		t.Fatalf("state = %s", got)
	}
}

func TestSwitchReservesWhenMissing(t *testing.T) {
	f := newFixture(t)
	f.migrating("i-mig2")
	// The reservation is gone and the destination filled meanwhile: the
	// switch must not overcommit it.
	f.put(proto.KindHostUsage, "hn-dst", proto.HostUsage{ID: "hn-dst", CPUCores: 3, MemorySize: 512, Instances: []string{"i-x"}})
	_, err := f.s.switchInstanceHostNode(f.ctx, proto.SwitchInstanceHostNodeRequest{InstanceID: "i-mig2", DestNodeID: "hva.dst"})
	wantKind(t, "switch onto a full host", err, errs.OutOfHostCapacity)
	if v := f.instance("i-mig2"); *v.HostNodeID != "hn-src" {
		t.Fatalf("refused switch moved the instance to %s", *v.HostNodeID)
	}
	// With room it is counted there at the switch.
	f.put(proto.KindHostUsage, "hn-dst", proto.HostUsage{ID: "hn-dst", CPUCores: 1, MemorySize: 512, Instances: []string{"i-x"}})
	if _, err := f.s.switchInstanceHostNode(f.ctx, proto.SwitchInstanceHostNodeRequest{InstanceID: "i-mig2", DestNodeID: "hva.dst"}); err != nil {
		t.Fatal(err)
	}
	if u := f.usage("hn-dst"); u.CPUCores != 3 || u.DiskBytes != 10<<20 || len(u.Instances) != 2 {
		t.Fatalf("destination usage = %+v", u)
	}
	if f.get(proto.KindHostUsage, "hn-src", &proto.HostUsage{}) {
		t.Fatal("the source keeps a usage with no instance")
	}
}

func TestAbortMigration(t *testing.T) {
	f := newFixture(t)
	f.migrating("i-mig3")
	if _, err := f.s.abortMigration(f.ctx, proto.AbortMigrationRequest{InstanceID: "i-mig3", Reason: "dest refused"}); err != nil {
		t.Fatal(err)
	}
	v := f.instance("i-mig3")
	if v.State != proto.InstanceRunning || *v.HostNodeID != "hn-src" || v.MigratingTo != nil ||
		v.LastError != "migration to hn-dst failed: dest refused" {
		t.Fatalf("after abort: %+v", v)
	}
	if f.get(proto.KindHostUsage, "hn-dst", &proto.HostUsage{}) {
		t.Fatal("the destination's reservation was kept")
	}
	if u := f.usage("hn-src"); u.CPUCores != 2 || len(u.Instances) != 1 {
		t.Fatalf("source usage = %+v", u)
	}
	cleanups := f.jobsOf(proto.HvaHandle("hva.dst"))
	if len(cleanups) != 1 || cleanups[0].Verb != proto.VerbCleanup || cleanups[0].Params["instance_id"] != "i-mig3" {
		t.Fatalf("cleanup jobs = %+v", cleanups)
	}
	// Again: nothing more happens.
	if _, err := f.s.abortMigration(f.ctx, proto.AbortMigrationRequest{InstanceID: "i-mig3", Reason: "again"}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.jobsOf(proto.HvaHandle("hva.dst"))); n != 1 || f.instance("i-mig3").LastError != v.LastError {
		t.Fatalf("a second abort changed things: %d cleanup jobs, %q", n, f.instance("i-mig3").LastError)
	}
	_, err := f.s.abortMigration(f.ctx, proto.AbortMigrationRequest{InstanceID: "i-none"})
	wantKind(t, "abort of an unknown instance", err, errs.UnknownInstance)
}

func TestFailMigrationHook(t *testing.T) {
	f := newFixture(t)
	f.migrating("i-mig4")
	j, err := jobs.New(time.Now(), proto.MigrationHandle("hva.dst"), proto.VerbRunVolStore, "i-mig4",
		proto.MigrationRunVolStoreRequest{InstanceID: "i-mig4"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := jobs.New(time.Now(), proto.HvaHandle("hva.src"), proto.VerbReboot, "i-mig4",
		proto.HvaRebootRequest{InstanceID: "i-mig4"})
	err = state.Commit(f.ctx, f.srv.Store(), f.srv, func(tx *state.Tx, b *state.Builder) error {
		// Jobs of other endpoints are not its business.
		if err := FailMigration(tx, b, other, "x", time.Now()); err != nil {
			return err
		}
		if b.Len() != 0 {
			t.Errorf("a reboot job's failure changed %d records", b.Len())
		}
		return FailMigration(tx, b, j, "job migration-handle.hva.dst.run_vol_store timed out", time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := f.instance("i-mig4"); v.State != proto.InstanceRunning || v.MigratingTo != nil {
		t.Fatalf("after a failed migration job: %+v", v)
	}
}

func TestSubmitJobStartMigration(t *testing.T) {
	f := newFixture(t)
	parent, err := jobs.New(time.Now(), proto.MigrationHandle("hva.dst"), proto.VerbRunVolStore, "i-sub1",
		proto.MigrationRunVolStoreRequest{InstanceID: "i-sub1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := state.Commit(f.ctx, f.srv.Store(), f.srv, func(_ *state.Tx, b *state.Builder) error {
		jobs.Enqueue(b, parent)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	args, _ := json.Marshal(proto.MigrationStartMigrationRequest{InstanceID: "i-sub1", DestNodeID: "hva.dst",
		Params: proto.MigrationParams{ListenIP: "127.0.0.1", Port: 4711}})
	req := proto.SubmitJobRequest{ParentID: parent.ID, Key: "start_migration", Endpoint: proto.MigrationHandle("hva.src"),
		Verb: proto.VerbStartMigration, Args: args, ResourceID: "i-sub1"}
	first, err := f.s.submitJob(f.ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The parent re-run submits again: the same job.
	second, err := f.s.submitJob(f.ctx, req)
	if err != nil || second.JobID != first.JobID {
		t.Fatalf("second submit = %v, %v; want %s", second, err, first.JobID)
	}
	got := f.jobsOf(proto.MigrationHandle("hva.src"))
	if len(got) != 1 || got[0].ID != first.JobID || *got[0].ParentID != parent.ID || got[0].Verb != proto.VerbStartMigration ||
		got[0].Params["dest_node_id"] != "hva.dst" || got[0].ResourceID != "i-sub1" {
		t.Fatalf("submitted jobs = %+v", got)
	}
	for _, bad := range []proto.SubmitJobRequest{
		{ParentID: parent.ID, Key: "", Endpoint: req.Endpoint, Verb: req.Verb},
		{ParentID: parent.ID, Key: "k", Endpoint: req.Endpoint, Verb: "no_such_verb"},
		{ParentID: parent.ID, Key: "k", Endpoint: proto.EndpointMigrationHandle, Verb: req.Verb},
		{ParentID: "job-nothere", Key: "k", Endpoint: req.Endpoint, Verb: req.Verb, Args: args},
		{ParentID: parent.ID, Key: "k2", Endpoint: req.Endpoint, Verb: req.Verb, Args: json.RawMessage(`[1]`)},
	} {
		_, err := f.s.submitJob(f.ctx, bad)
		wantKind(t, "submit "+bad.Key+" "+bad.Verb, err, errs.InvalidParameter)
	}
}

func TestUpdateInstanceExpectState(t *testing.T) {
	f := newFixture(t)
	f.put(proto.KindInstance, "i-exp1", proto.Instance{ID: "i-exp1", State: proto.InstanceStarting})
	run, starting, pending := ptr(proto.InstanceRunning), ptr(proto.InstanceStarting), ptr(proto.InstancePending)

	// A report from the state it read moves it; the same report again (a
	// retried call) finds it done.
	for range 2 {
		if _, err := f.s.updateInstance(f.ctx, proto.UpdateInstanceRequest{InstanceID: "i-exp1", State: run,
			ExpectState: starting, Status: ptr(proto.StatusOnline)}); err != nil {
			t.Fatal(err)
		}
	}
	if v := f.instance("i-exp1"); v.State != proto.InstanceRunning || v.Status != proto.StatusOnline {
		t.Fatalf("instance = %s/%s", v.State, v.Status)
	}
	// The user moved it on meanwhile (here: halting): a report read before
	// that is refused and changes nothing; without ExpectState the
	// transition table alone decides (halting → running is a legal move of
	// poweron, so it would have been applied).
	f.put(proto.KindInstance, "i-exp1", proto.Instance{ID: "i-exp1", State: proto.InstanceHalting})
	_, err := f.s.updateInstance(f.ctx, proto.UpdateInstanceRequest{InstanceID: "i-exp1", State: run, ExpectState: starting})
	wantKind(t, "stale report", err, errs.InvalidInstanceState)
	if v := f.instance("i-exp1"); v.State != proto.InstanceHalting {
		t.Fatalf("stale report moved the instance to %s", v.State)
	}
	if _, err := f.s.updateInstance(f.ctx, proto.UpdateInstanceRequest{InstanceID: "i-exp1", State: run}); err != nil {
		t.Fatalf("report without expectation: %v", err)
	}
	// Terminated by the user meanwhile: refused.
	f.put(proto.KindInstance, "i-exp1", proto.Instance{ID: "i-exp1", State: proto.InstanceTerminated})
	_, err = f.s.updateInstance(f.ctx, proto.UpdateInstanceRequest{InstanceID: "i-exp1", State: starting, ExpectState: pending})
	wantKind(t, "report on a terminated instance", err, errs.InvalidInstanceState)
}
