package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

type fixture struct {
	t   *testing.T
	srv *cluster.Server
	ds  *Dispatcher
}

func newFixture(t *testing.T) *fixture { return newFixtureWith(t, nil) }

func newFixtureWith(t *testing.T, onFail func(*state.Tx, *state.Builder, proto.Job, string, time.Time) error) *fixture {
	t.Helper()
	return newFixtureDeps(t, func(d *Deps) { d.OnFail = onFail })
}

func newFixtureDeps(t *testing.T, mod func(*Deps)) *fixture {
	t.Helper()
	srv := cluster.TestServer(t, nil)
	client := rpc.NewClient(rpc.ClientConfig{})
	t.Cleanup(client.Close)
	deps := Deps{
		Cluster: srv,
		Members: func() []Member { return Members(srv.Members()) },
		Client:  client,
		Logger:  logging.NewTest(t),
		Wait:    200 * time.Millisecond,
		Tick:    50 * time.Millisecond,
		// Short backoff so that a late agent is found quickly.
		MaxBackoff: 200 * time.Millisecond,
	}
	if mod != nil {
		mod(&deps)
	}
	ds := NewDispatcher(deps)
	srv.FSM().OnApply(func(uint64) { ds.Wake() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ds.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &fixture{t: t, srv: srv, ds: ds}
}

// startAgent runs an agent with node id node that joins the manager and
// serves hva-handle.<node> reboot with fn.
func (f *fixture) startAgent(node string, fn func(ctx context.Context, req proto.HvaRebootRequest) (proto.HvaRebootResponse, error)) *agent.Agent {
	f.t.Helper()
	a, err := agent.New(agent.Config{
		NodeID: node, Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0",
		Join: []string{f.srv.SerfAddr()}, FastGossip: true, Logger: logging.NewTest(f.t),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	a.HandleJob(proto.HvaHandle(node), proto.VerbReboot, agent.JobFunc(fn))
	if err := a.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	return a
}

func (f *fixture) enqueue(endpoint, verb string, args any, deadline time.Duration) string {
	f.t.Helper()
	j, err := New(time.Now().UTC(), endpoint, verb, "i-test0001", args)
	if err != nil {
		f.t.Fatal(err)
	}
	if deadline != 0 {
		d := time.Now().Add(deadline)
		j.Deadline = &d
	}
	err = state.Commit(context.Background(), f.srv.Store(), f.srv, func(tx *state.Tx, b *state.Builder) error {
		Enqueue(b, j)
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return j.ID
}

func (f *fixture) job(id string) (proto.Job, bool) {
	var (
		j      proto.Job
		queued bool
	)
	_ = f.srv.Store().View(func(tx *state.Tx) error {
		_, _ = tx.Get(proto.KindJob, id, &j)
		queued = tx.Exists(proto.KindJobQueue, id)
		return nil
	})
	return j, queued
}

func (f *fixture) waitFinished(id string) proto.Job {
	f.t.Helper()
	var j proto.Job
	testutil.WaitFor(f.t, 20*time.Second, func() error {
		var queued bool
		j, queued = f.job(id)
		if j.State != StateFinished || queued {
			return fmt.Errorf("job %s state %s (queued %v)", id, j.State, queued)
		}
		return nil
	})
	return j
}

func TestJobRunsOnceWhenAgentComesLate(t *testing.T) {
	f := newFixture(t)
	id := f.enqueue(proto.HvaHandle("hva.late1"), proto.VerbReboot, proto.HvaRebootRequest{InstanceID: "i-test0001"}, 0)
	// No agent serves the endpoint: the job waits, unfinished.
	time.Sleep(300 * time.Millisecond)
	if j, queued := f.job(id); j.State == StateFinished || !queued {
		t.Fatalf("job ended without an agent: %+v", j)
	}
	var runs atomic.Int32
	f.startAgent("hva.late1", func(_ context.Context, req proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
		runs.Add(1)
		if req.InstanceID != "i-test0001" {
			return proto.HvaRebootResponse{}, errors.New("wrong args")
		}
		return proto.HvaRebootResponse{}, nil
	})
	j := f.waitFinished(id)
	if *j.FinishStatus != FinishSuccess || j.StartedAt == nil || j.WorkerID == nil || *j.WorkerID != "hva.late1" {
		t.Fatalf("job = %+v", j)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("handler ran %d times, want once", n)
	}
}

func TestJobFailureIsRecorded(t *testing.T) {
	f := newFixture(t)
	f.startAgent("hva.fail1", func(context.Context, proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
		return proto.HvaRebootResponse{}, errs.New(errs.InvalidInstanceState, "domain is gone")
	})
	j := f.waitFinished(f.enqueue(proto.HvaHandle("hva.fail1"), proto.VerbReboot, proto.HvaRebootRequest{InstanceID: "i-x"}, 0))
	if *j.FinishStatus != FinishFail || j.FinishMessage["message"] != "domain is gone" {
		t.Fatalf("job = %+v %v", *j.FinishStatus, j.FinishMessage)
	}
}

func TestJobTimesOutWithoutAgent(t *testing.T) {
	f := newFixture(t)
	j := f.waitFinished(f.enqueue(proto.HvaHandle("hva.never"), proto.VerbReboot, proto.HvaRebootRequest{}, 300*time.Millisecond))
	if *j.FinishStatus != FinishFail {
		t.Fatalf("finish status = %s", *j.FinishStatus)
	}
}

func TestCancelledJobStopsOnAgent(t *testing.T) {
	f := newFixture(t)
	started := make(chan struct{})
	stopped := make(chan struct{})
	f.startAgent("hva.slow1", func(ctx context.Context, _ proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
		close(started)
		<-ctx.Done()
		close(stopped)
		return proto.HvaRebootResponse{}, ctx.Err()
	})
	id := f.enqueue(proto.HvaHandle("hva.slow1"), proto.VerbReboot, proto.HvaRebootRequest{}, 0)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("job never started")
	}
	// Cancel as the API does: finish the record; the dispatcher notices.
	err := state.Commit(context.Background(), f.srv.Store(), f.srv, func(tx *state.Tx, b *state.Builder) error {
		return FinishTx(tx, b, id, time.Now().UTC(), FinishCancel, "cancelled", nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent was not told to stop the cancelled job")
	}
	if j, _ := f.job(id); *j.FinishStatus != FinishCancel {
		t.Fatalf("finish status = %s", *j.FinishStatus)
	}
}

func TestFailedJobRunsOnFailInSameTxn(t *testing.T) {
	f := newFixtureWith(t, func(_ *state.Tx, b *state.Builder, j proto.Job, reason string, _ time.Time) error {
		b.Put("marks", j.ID, map[string]string{"reason": reason})
		return nil
	})
	id := f.waitFinished(f.enqueue(proto.EndpointScheduler, proto.VerbScheduleInstance,
		proto.ScheduleInstanceRequest{InstanceID: "i-x"}, 300*time.Millisecond)).ID
	var mark map[string]string
	_ = f.srv.Store().View(func(tx *state.Tx) error { _, err := tx.Get("marks", id, &mark); return err })
	if mark["reason"] == "" {
		t.Fatalf("OnFail did not run with the job's end: %v", mark)
	}
}

// While a delivery waits for the agent's answer, Delivering reports it
// (the collector then leaves the agent's own report of the result to the
// answer); a job the agent is still running after the wait is marked
// running and no longer reported delivering between deliveries.
func TestDeliveringWhileAnswerIsAwaited(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	started := make(chan struct{})
	f.startAgent("hva.slow2", func(ctx context.Context, _ proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return proto.HvaRebootResponse{}, ctx.Err()
	})
	id := f.enqueue(proto.HvaHandle("hva.slow2"), proto.VerbReboot, proto.HvaRebootRequest{}, 0)
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("job never started")
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !f.ds.Delivering(id) {
			return errors.New("no delivery waiting")
		}
		return nil
	})
	// The delivery waits 200 ms: past it the job shows running.
	testutil.WaitFor(t, 10*time.Second, func() error {
		if j, _ := f.job(id); j.State != StateRunning || j.WorkerID == nil || *j.WorkerID != "hva.slow2" {
			return fmt.Errorf("job state %s", j.State)
		}
		return nil
	})
	close(release)
	j := f.waitFinished(id)
	if *j.FinishStatus != FinishSuccess || j.RetryCount != 1 {
		t.Fatalf("job = %+v", j)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if f.ds.Delivering(id) {
			return errors.New("still delivering")
		}
		return nil
	})
}
