package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/jobtable"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

// concurrently runs fn(i) for i in [0,n) at once and waits for all.
func concurrently(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

func TestDedupConcurrentDeliveries(t *testing.T) {
	ep := proto.LocalStoreHandle("hva.d")
	var runs atomic.Int64
	release := make(chan struct{})
	var reported atomic.Int64
	cfg := testConfig(t, proto.RoleHva, "hva.d")
	cfg.OnJobFinished = func(ctx context.Context, res proto.JobResult) { reported.Add(1) }
	a := startAgent(t, cfg, func(a *Agent) {
		a.HandleJob(ep, proto.VerbRunLocalStore, JobFunc(func(ctx context.Context, req proto.LocalStoreRunLocalStoreRequest) (map[string]any, error) {
			n := runs.Add(1)
			<-release
			return map[string]any{"instance": req.InstanceID, "run": n}, nil
		}))
	})
	job := proto.JobEnvelope{
		ID: "job-dedup", Endpoint: ep, Verb: proto.VerbRunLocalStore,
		Args: mustJSON(t, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-1"}),
	}
	c := a.Client()

	// Five racing first deliveries of a new job: one run, all see it in progress.
	concurrently(5, func(i int) {
		j := job
		j.Attempt = i + 1
		res, err := DeliverJob(context.Background(), c, a.RPCAddr(), j, 0)
		if err != nil || res.Status != proto.JobRunning || res.JobID != job.ID {
			t.Errorf("delivery %d while running = %+v, %v; want running", i, res, err)
		}
	})
	testutil.WaitFor(t, waitLong, func() error {
		if got := runs.Load(); got != 1 {
			return fmt.Errorf("handler ran %d times, want 1", got)
		}
		return nil
	})

	// Five more deliveries waiting for the job: all get the one result.
	results := make([]proto.JobResult, 5)
	var waiting sync.WaitGroup
	for i := range results {
		waiting.Add(1)
		go func() {
			defer waiting.Done()
			res, err := DeliverJob(context.Background(), c, a.RPCAddr(), job, waitLong)
			if err != nil {
				t.Errorf("waiting delivery %d = %v", i, err)
			}
			results[i] = res
		}()
	}
	testutil.WaitFor(t, waitLong, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if n := a.jobs[job.ID].waiters; n != len(results) {
			return fmt.Errorf("%d deliveries waiting, want %d", n, len(results))
		}
		return nil
	})
	close(release)
	waiting.Wait()
	a.jobsWG.Wait()
	// They carry the result back: the agent does not report it as well.
	if got := reported.Load(); got != 0 {
		t.Errorf("OnJobFinished called %d times while deliveries waited for the job, want 0", got)
	}
	for i, res := range results {
		if res.Status != proto.JobSucceeded || string(res.Result) != `{"instance":"i-1","run":1}` {
			t.Errorf("delivery %d = %+v (result %s), want succeeded run 1", i, res, res.Result)
		}
	}
	// A later redelivery gets the remembered result at once.
	res, err := DeliverJob(context.Background(), c, a.RPCAddr(), job, 0)
	if err != nil || res.Status != proto.JobSucceeded || string(res.Result) != string(results[0].Result) {
		t.Errorf("redelivery = %+v, %v", res, err)
	}
	if got := runs.Load(); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}

	// A job that finishes with no delivery waiting is reported, once.
	job.ID = "job-unwaited"
	if _, err := DeliverJob(context.Background(), c, a.RPCAddr(), job, 0); err != nil {
		t.Fatalf("delivery without waiting = %v", err)
	}
	testutil.WaitFor(t, waitLong, func() error {
		if got := reported.Load(); got != 1 {
			return fmt.Errorf("OnJobFinished called %d times, want 1", got)
		}
		return nil
	})
}

func TestDedupCacheIsBounded(t *testing.T) {
	ep := proto.StaHandle("sta.b")
	var mu sync.Mutex
	runs := map[string]int{}
	cfg := testConfig(t, proto.RoleSta, "sta.b")
	cfg.DedupSize = 2
	a := startAgent(t, cfg, func(a *Agent) {
		a.HandleJob(ep, proto.VerbDeleteVolume, func(ctx context.Context, job proto.JobEnvelope) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			runs[job.ID]++
			return nil, nil
		})
	})
	deliver := func(id string) {
		t.Helper()
		res, err := a.Deliver(context.Background(), proto.JobEnvelope{ID: id, Endpoint: ep, Verb: proto.VerbDeleteVolume}, waitLong)
		if err != nil || res.Status != proto.JobSucceeded {
			t.Fatalf("Deliver(%s) = %+v, %v", id, res, err)
		}
	}
	for _, id := range []string{"j1", "j2", "j3", "j3", "j1"} {
		deliver(id)
	}
	// j1 was forgotten when j3 finished (cache of 2), so it ran again; j3 was
	// remembered. Then j1's rerun pushed out j2, the least recently used.
	mu.Lock()
	got := fmt.Sprint(runs)
	mu.Unlock()
	if want := "map[j1:2 j2:1 j3:1]"; got != want {
		t.Errorf("runs = %s, want %s", got, want)
	}
	if _, err := a.Status("j2"); !errs.Is(err, errs.NotFound) {
		t.Errorf("Status(j2) = %v, want NotFound (evicted)", err)
	}
	if res, err := a.Status("j3"); err != nil || res.Status != proto.JobSucceeded {
		t.Errorf("Status(j3) = %+v, %v", res, err)
	}
}

// gate is a job handler whose calls block until released one by one.
type gate struct {
	mu      sync.Mutex
	active  int
	max     int
	order   []string
	release chan struct{}
}

func newGate() *gate { return &gate{release: make(chan struct{}, 100)} }

func (g *gate) handler(ctx context.Context, job proto.JobEnvelope) (any, error) {
	g.mu.Lock()
	g.active++
	g.max = max(g.max, g.active)
	g.order = append(g.order, job.ID)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.active--
		g.mu.Unlock()
	}()
	select {
	case <-g.release:
		return nil, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *gate) state() (active, maxActive int, order []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.active, g.max, append([]string(nil), g.order...)
}

func (g *gate) waitStarted(t *testing.T, n int) {
	t.Helper()
	testutil.WaitFor(t, waitLong, func() error {
		if _, _, order := g.state(); len(order) != n {
			return fmt.Errorf("%d jobs started, want %d", len(order), n)
		}
		return nil
	})
}

func statuses(t *testing.T, a *Agent, ids ...string) string {
	t.Helper()
	var out []proto.JobStatus
	for _, id := range ids {
		res, err := a.Status(id)
		if err != nil {
			t.Fatalf("Status(%s) = %v", id, err)
		}
		out = append(out, res.Status)
	}
	return fmt.Sprint(out)
}

func TestConcurrencyLimits(t *testing.T) {
	node := "hva.lim"
	store, hva := newGate(), newGate()
	cfg := testConfig(t, proto.RoleHva, node)
	cfg.Concurrency = map[string]int{proto.EndpointLocalStoreHandle: 2}
	a := startAgent(t, cfg, func(a *Agent) {
		a.HandleJob(proto.LocalStoreHandle(node), proto.VerbBackupVolume, store.handler)
		a.HandleJob(proto.HvaHandle(node), proto.VerbPoweroff, hva.handler)
	})
	deliver := func(ep, verb, id string) {
		t.Helper()
		res, err := a.Deliver(context.Background(), proto.JobEnvelope{ID: id, Endpoint: ep, Verb: verb}, 0)
		if err != nil || res.Status.Final() {
			t.Fatalf("Deliver(%s) = %+v, %v", id, res, err)
		}
	}
	ids := []string{"s0", "s1", "s2", "s3", "s4"}
	for _, id := range ids {
		deliver(proto.LocalStoreHandle(node), proto.VerbBackupVolume, id)
	}
	deliver(proto.HvaHandle(node), proto.VerbPoweroff, "h0")
	deliver(proto.HvaHandle(node), proto.VerbPoweroff, "h1")

	store.waitStarted(t, 2)
	hva.waitStarted(t, 1)
	if got, want := statuses(t, a, ids...), "[running running queued queued queued]"; got != want {
		t.Errorf("local-store statuses = %s, want %s", got, want)
	}
	if got, want := statuses(t, a, "h0", "h1"), "[running queued]"; got != want {
		t.Errorf("hva-handle statuses = %s, want %s", got, want)
	}

	// Finishing one job starts the next queued one, in arrival order.
	store.release <- struct{}{}
	store.waitStarted(t, 3)
	for range 4 {
		store.release <- struct{}{}
	}
	hva.release <- struct{}{}
	hva.release <- struct{}{}
	testutil.WaitFor(t, waitLong, func() error {
		got := statuses(t, a, append(ids, "h0", "h1")...)
		if want := "[succeeded succeeded succeeded succeeded succeeded succeeded succeeded]"; got != want {
			return fmt.Errorf("statuses = %s", got)
		}
		return nil
	})
	_, maxStore, order := store.state()
	if maxStore != 2 {
		t.Errorf("local-store-handle ran %d jobs at once, want at most 2", maxStore)
	}
	// s0 and s1 start together; s2 took the first free slot; s3 and s4 the next two.
	slices.Sort(order[:2])
	slices.Sort(order[3:])
	if fmt.Sprint(order) != fmt.Sprint(ids) {
		t.Errorf("local-store start order = %v, want %v", order, ids)
	}
	if _, maxHva, _ := hva.state(); maxHva != 1 {
		t.Errorf("hva-handle ran %d jobs at once, want 1", maxHva)
	}
}

func TestShutdownWaitsForRunningJob(t *testing.T) {
	node := "hva.sd"
	ep := proto.HvaHandle(node)
	g := newGate()
	a := startAgent(t, testConfig(t, proto.RoleHva, node), func(a *Agent) {
		a.HandleJob(ep, proto.VerbTerminate, g.handler)
	})
	peerCfg := testConfig(t, proto.RoleSta, "sta.peer")
	peerCfg.Join = []string{a.SerfAddr()}
	peer := startAgent(t, peerCfg, nil)
	waitMember(t, peer, node, "alive")

	for _, id := range []string{"running", "queued"} {
		if _, err := a.Deliver(context.Background(), proto.JobEnvelope{ID: id, Endpoint: ep, Verb: proto.VerbTerminate}, 0); err != nil {
			t.Fatalf("Deliver(%s) = %v", id, err)
		}
	}
	g.waitStarted(t, 1)
	// A delivery waiting for the queued job learns it was interrupted.
	queuedWaiter := make(chan error, 1)
	go func() {
		_, err := DeliverJob(context.Background(), peer.Client(), a.RPCAddr(),
			proto.JobEnvelope{ID: "queued", Endpoint: ep, Verb: proto.VerbTerminate}, waitLong)
		queuedWaiter <- err
	}()

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		stopped <- a.Shutdown(ctx)
	}()
	// New jobs are refused while the running one finishes.
	testutil.WaitFor(t, waitLong, func() error {
		_, err := DeliverJob(context.Background(), peer.Client(), a.RPCAddr(),
			proto.JobEnvelope{ID: "new", Endpoint: ep, Verb: proto.VerbTerminate}, 0)
		if !errs.Is(err, errs.Unavailable) {
			return fmt.Errorf("delivery during shutdown = %v, want Unavailable", err)
		}
		return nil
	})
	if err := <-queuedWaiter; !errs.Is(err, errs.Unavailable) {
		t.Errorf("waiting delivery of the queued job = %v, want Unavailable", err)
	}
	if _, err := a.Status("queued"); !errs.Is(err, errs.NotFound) {
		t.Errorf("Status(queued) during shutdown = %v, want NotFound (dropped)", err)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Shutdown returned (%v) while a job was running", err)
	default:
	}
	if res, err := a.Status("running"); err != nil || res.Status != proto.JobRunning {
		t.Errorf("Status(running) = %+v, %v", res, err)
	}

	g.release <- struct{}{}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	if res, err := a.Status("running"); err != nil || res.Status != proto.JobSucceeded {
		t.Errorf("Status(running) after shutdown = %+v, %v; want succeeded", res, err)
	}
	if _, _, order := g.state(); len(order) != 1 {
		t.Errorf("jobs started = %v, want only the running one", order)
	}
	waitMember(t, peer, node, "left")
}

func TestShutdownTimeoutInterruptsJobs(t *testing.T) {
	ep := proto.StaHandle("sta.to")
	g := newGate()
	a := startAgent(t, testConfig(t, proto.RoleSta, "sta.to"), func(a *Agent) {
		a.HandleJob(ep, proto.VerbBackupVolume, g.handler)
	})
	waiter := make(chan error, 1)
	go func() {
		_, err := a.Deliver(context.Background(), proto.JobEnvelope{ID: "long", Endpoint: ep, Verb: proto.VerbBackupVolume}, waitLong)
		waiter <- err
	}()
	g.waitStarted(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := a.Shutdown(ctx); !errs.Is(err, errs.Timeout) {
		t.Errorf("Shutdown() = %v, want Timeout", err)
	}
	// The job's context was cancelled; it is not final, so the dispatcher
	// redelivers it (to this node once it is back).
	if err := <-waiter; !errs.Is(err, errs.Unavailable) {
		t.Errorf("waiting delivery = %v, want Unavailable", err)
	}
	testutil.WaitFor(t, waitLong, func() error {
		if active, _, _ := g.state(); active != 0 {
			return fmt.Errorf("handler still running")
		}
		return nil
	})
	if _, err := a.Status("long"); !errs.Is(err, errs.NotFound) {
		t.Errorf("Status(long) = %v, want NotFound", err)
	}
	if err := a.Shutdown(context.Background()); !errs.Is(err, errs.Timeout) {
		t.Errorf("second Shutdown() = %v, want the first result", err)
	}
}

// TestJobTimeoutCountsOnAgentClock: a job's end is the time left its
// delivery carries, counted on this agent's monotonic clock; the manager's
// wall-clock deadline in the envelope (2 h in the past or in the future
// here: clocks that disagree) does not count when that is set.
func TestJobTimeoutCountsOnAgentClock(t *testing.T) {
	ep := proto.HvaHandle("hva.tm")
	a := startAgent(t, testConfig(t, proto.RoleHva, "hva.tm"), func(a *Agent) {
		a.HandleJob(ep, proto.VerbReboot, func(ctx context.Context, job proto.JobEnvelope) (any, error) {
			if job.ResourceID == "i-slow" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return map[string]string{"ok": "yes"}, nil
		})
	})
	deliver := func(id, resource string, timeout time.Duration, deadline time.Time) proto.JobResult {
		t.Helper()
		res, err := DeliverJob(context.Background(), a.Client(), a.RPCAddr(), proto.JobEnvelope{
			ID: id, Endpoint: ep, Verb: proto.VerbReboot, ResourceID: resource,
			TimeoutMs: timeout.Milliseconds(), Deadline: deadline,
		}, waitLong)
		if err != nil {
			t.Fatalf("DeliverJob(%s) = %v", id, err)
		}
		return res
	}
	if res := deliver("job-tm-past", "i-fast", time.Minute, time.Now().Add(-2*time.Hour)); res.Status != proto.JobSucceeded {
		t.Errorf("job with a minute left and a past wall deadline = %+v (error %+v), want succeeded", res, res.Error)
	}
	res := deliver("job-tm-short", "i-slow", 100*time.Millisecond, time.Now().Add(2*time.Hour))
	if res.Status != proto.JobFailed || res.Error == nil || errs.KindFromCode(res.Error.Code) != errs.Timeout {
		t.Errorf("job with 100ms left and a far wall deadline = %+v (error %+v), want failed with a timeout", res, res.Error)
	}
}

// TestFinishedJobsSurviveRestart: with a job table, an agent restarted
// while the manager still redelivers jobs it finished answers them with
// the recorded results (success and failure alike) and does not run them
// again; a new job runs as usual.
func TestFinishedJobsSurviveRestart(t *testing.T) {
	ep := proto.HvaHandle("hva.rs")
	path := filepath.Join(t.TempDir(), "jobs.db")
	var runs atomic.Int64
	setup := func(a *Agent) {
		a.HandleJob(ep, proto.VerbReboot, func(ctx context.Context, job proto.JobEnvelope) (any, error) {
			n := runs.Add(1)
			if job.ResourceID == "i-broken" {
				return nil, errs.New(errs.InvalidInstanceState, "instance %s is broken (run %d)", job.ResourceID, n)
			}
			return map[string]int64{"run": n}, nil
		})
	}
	start := func() (*Agent, *jobtable.File) {
		t.Helper()
		tb, err := jobtable.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t, proto.RoleHva, "hva.rs")
		cfg.Finished = tb
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		setup(a)
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		return a, tb
	}
	stop := func(a *Agent, tb *jobtable.File) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tb.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deliver := func(a *Agent, id, resource string) proto.JobResult {
		t.Helper()
		res, err := DeliverJob(context.Background(), a.Client(), a.RPCAddr(),
			proto.JobEnvelope{ID: id, Endpoint: ep, Verb: proto.VerbReboot, ResourceID: resource}, waitLong)
		if err != nil || !res.Status.Final() {
			t.Fatalf("DeliverJob(%s) = %+v, %v; want a final result", id, res, err)
		}
		return res
	}

	a, tb := start()
	ok1 := deliver(a, "job-rs-ok", "i-fine")
	bad1 := deliver(a, "job-rs-bad", "i-broken")
	if ok1.Status != proto.JobSucceeded || bad1.Status != proto.JobFailed || runs.Load() != 2 {
		t.Fatalf("first run: %+v, %+v after %d runs", ok1, bad1, runs.Load())
	}
	stop(a, tb)

	a, tb = start()
	defer stop(a, tb)
	ok2 := deliver(a, "job-rs-ok", "i-fine")
	bad2 := deliver(a, "job-rs-bad", "i-broken")
	if n := runs.Load(); n != 2 {
		t.Fatalf("the restarted agent ran finished jobs again: %d runs", n)
	}
	if ok2.Status != proto.JobSucceeded || string(ok2.Result) != string(ok1.Result) || !ok2.FinishedAt.Equal(ok1.FinishedAt) {
		t.Errorf("redelivered success = %+v, want %+v", ok2, ok1)
	}
	if bad2.Status != proto.JobFailed || bad2.Error == nil || *bad2.Error != *bad1.Error {
		t.Errorf("redelivered failure = %+v (error %+v), want error %+v", bad2, bad2.Error, bad1.Error)
	}
	if st, err := JobStatus(context.Background(), a.Client(), a.RPCAddr(), a.NodeID(), "job-rs-ok"); err != nil || st.Status != proto.JobSucceeded {
		t.Errorf("JobStatus after restart = %+v, %v", st, err)
	}
	if _, err := a.Deliver(context.Background(), proto.JobEnvelope{ID: "job-rs-ok", Endpoint: ep, Verb: proto.VerbPoweron}, 0); !errs.Is(err, errs.Conflict) {
		t.Errorf("reuse of a recorded job id for another verb = %v, want Conflict", err)
	}
	if res := deliver(a, "job-rs-new", "i-fine"); res.Status != proto.JobSucceeded || runs.Load() != 3 {
		t.Errorf("new job after restart = %+v after %d runs", res, runs.Load())
	}
}

// TestJobTableIsBounded: what an agent loads from its job table, and what
// the table keeps, is bounded by DedupSize and DedupRetention: older and
// surplus results are forgotten (such a job, delivered again, runs).
func TestJobTableIsBounded(t *testing.T) {
	ep := proto.HvaHandle("hva.rb")
	tb := jobtable.NewMemory()
	now := time.Now()
	for i, age := range []time.Duration{72 * time.Hour, 3 * time.Hour, 2 * time.Hour, time.Hour} {
		err := tb.Put(jobtable.Record{Endpoint: ep, Verb: proto.VerbReboot, StoredAt: now.Add(-age),
			Result: proto.JobResult{JobID: fmt.Sprintf("job-rb%d", i), Status: proto.JobSucceeded, FinishedAt: now.Add(-age)}})
		if err != nil {
			t.Fatal(err)
		}
	}
	var ran sync.Map
	cfg := testConfig(t, proto.RoleHva, "hva.rb")
	cfg.Finished, cfg.DedupSize, cfg.DedupRetention = tb, 2, 24*time.Hour
	a := startAgent(t, cfg, func(a *Agent) {
		a.HandleJob(ep, proto.VerbReboot, func(ctx context.Context, job proto.JobEnvelope) (any, error) {
			ran.Store(job.ID, true)
			return nil, nil
		})
	})
	recs, err := tb.Load()
	if err != nil || len(recs) != 2 || recs[0].Result.JobID != "job-rb2" || recs[1].Result.JobID != "job-rb3" {
		t.Fatalf("table after start = %+v, %v; want job-rb2, job-rb3", recs, err)
	}
	// The remembered ones first: running the others makes the agent
	// forget them (DedupSize 2).
	for i := 3; i >= 0; i-- {
		id := fmt.Sprintf("job-rb%d", i)
		res, err := DeliverJob(context.Background(), a.Client(), a.RPCAddr(), proto.JobEnvelope{ID: id, Endpoint: ep, Verb: proto.VerbReboot}, waitLong)
		if err != nil || res.Status != proto.JobSucceeded {
			t.Fatalf("DeliverJob(%s) = %+v, %v", id, res, err)
		}
		_, rerun := ran.Load(id)
		if want := i < 2; rerun != want {
			t.Errorf("job %s ran: %v, want %v", id, rerun, want)
		}
	}
}
