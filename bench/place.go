package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// PlaceOptions configure the `place` benchmark.
type PlaceOptions struct {
	Hvas        int           // in-process dummy hvas, each its own serf member
	Instances   int           // instances created, then terminated
	Concurrency int           // keep-alive clients sending the POSTs / DELETEs
	Poll        time.Duration // period of the list polls that observe states
	// SchedulerConcurrency is the scheduler daemon's job concurrency (0: its
	// shipped default); LocalStoreConcurrency each hva's local-store-handle
	// concurrency (the hva's shipped default is 2).
	SchedulerConcurrency  int
	LocalStoreConcurrency int
	// Timeout bounds each phase (create → running, delete → terminated).
	Timeout time.Duration
	// Reps is how many times the whole run is repeated (`all` and
	// `place`); the figures are the median with min and max.
	Reps int
	// Gossip is the serf timing of every member: "crowd" (agent.CrowdGossip,
	// for many members in one process) or "fast" (FastGossip alone).
	Gossip string
	// ProfileDir, when set, gets a CPU profile of each phase
	// (cpu-create.prof, cpu-terminate.prof); not with a whole-run profile.
	ProfileDir string
}

// serfTune is the serf adjustment of o.Gossip.
func (o PlaceOptions) serfTune() func(*serf.Config) {
	if o.Gossip == "fast" {
		return nil
	}
	return agent.CrowdGossip
}

// DefaultPlaceOptions is the full run.
func DefaultPlaceOptions() PlaceOptions {
	return PlaceOptions{
		Hvas: 50, Instances: 5000, Concurrency: 64, Poll: 100 * time.Millisecond,
		SchedulerConcurrency: daemon.DefaultConfig().Concurrency, LocalStoreConcurrency: 2,
		Timeout: 20 * time.Minute, Gossip: "crowd", Reps: 1,
	}
}

// ShortPlaceOptions is the smoke run of `--short`.
func ShortPlaceOptions() PlaceOptions {
	o := DefaultPlaceOptions()
	o.Hvas = 5
	o.Instances = 50
	o.Concurrency = 16
	o.Poll = 50 * time.Millisecond
	o.Timeout = 2 * time.Minute
	return o
}

// PlacePhase is one phase of the `place` benchmark: every instance sent one
// request (POST /instances or DELETE /instances/{id}) and observed, by list
// polls, in the phase's target state (running or terminated).
type PlacePhase struct {
	Name      string `json:"name"`
	Target    string `json:"target_state"`
	Requested int    `json:"requested"`
	Reached   int    `json:"reached"`
	// Seconds is from the first request sent to the poll response in which
	// the last instance was first seen in the target state; PerSec is
	// Reached / Seconds, the end-to-end rate.
	Seconds float64 `json:"seconds"`
	PerSec  float64 `json:"per_sec"`
	// Request* describe the API calls alone: from the first sent to the last
	// answered, and each call's latency. Retries counts failed calls that
	// were sent again.
	RequestSeconds float64 `json:"request_seconds"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	RequestP50ms   float64 `json:"request_p50_ms"`
	RequestP99ms   float64 `json:"request_p99_ms"`
	Retries        int     `json:"retries"`
	// Failed counts requests that failed for good (their instances are left
	// out), LastError the last one's error.
	Failed    int    `json:"failed_requests"`
	LastError string `json:"last_request_error,omitempty"`
	// Stranded counts this phase's instances left in scheduling after their
	// scheduler job ended without placing them (its 5-minute deadline
	// passed while it waited): they will never run, so the phase stops
	// waiting for them.
	Stranded int `json:"stranded"`
	// To* are from a request's response to the first poll response that
	// showed the instance in the target state (resolution: the poll period
	// plus the poll's own duration).
	ToP50ms float64 `json:"to_state_p50_ms"`
	ToP99ms float64 `json:"to_state_p99_ms"`
	ToMaxms float64 `json:"to_state_max_ms"`
	// Polls is the number of observation rounds, FullPolls those that had to
	// fetch the whole list because a page of the newest did not hold every
	// instance new in the state; PollMeanMs is a round's mean duration.
	Polls      int `json:"polls"`
	PollErrors int `json:"poll_errors"`
	// LastPollError is the last failed poll's error.
	LastPollError string  `json:"last_poll_error,omitempty"`
	FullPolls     int     `json:"full_polls"`
	PollMeanMs    float64 `json:"poll_mean_ms"`
	PollMaxMs     float64 `json:"poll_max_ms"`
	CPU           cpuUse  `json:"cpu"`
	// CPUmsPerInstance is this process's CPU time during the phase per
	// instance that reached the state (in-process runs: the whole cluster
	// and the benchmark's clients).
	CPUmsPerInstance float64 `json:"cpu_ms_per_instance"`
	// SerfFailures counts agents the manager's serf declared failed during
	// the phase (sampled every 100 ms; on loopback each one is a false
	// detection), ManagerLost the times the scheduler's serf declared the
	// manager failed, MinAliveAgents the fewest agents alive at the manager.
	SerfFailures   int `json:"serf_failures_at_manager"`
	ManagerLost    int `json:"manager_lost_by_scheduler"`
	MinAliveAgents int `json:"min_alive_agents"`
	// StalePlans counts plans the leader rejected as stale (the scheduler
	// planned again), NoManagerRounds the scheduler's rounds in which no
	// manager accepted a call (none alive in its serf view, or none leading).
	StalePlans      int `json:"stale_plans"`
	NoManagerRounds int `json:"no_manager_rounds"`
	// RaftEntries and FSMBatches count the raft log entries the leader
	// applied during the phase and the bbolt transactions they shared
	// (raft's BatchingFSM); RaftEntries / Reached is the writes per
	// instance. Only with the manager in this process.
	RaftEntries uint64 `json:"raft_entries,omitempty"`
	FSMBatches  uint64 `json:"fsm_batches,omitempty"`
	// RejectedTxns are entries refused by a guard (lost races).
	RejectedTxns uint64 `json:"rejected_txns,omitempty"`
	// Pipeline summarizes Samples: where instances and jobs waited.
	Pipeline []PipelineStat   `json:"pipeline"`
	Samples  []PipelineSample `json:"samples"`

	reached []string // ids seen in the target state
}

// PlaceResult is the `place` benchmark's table.
type PlaceResult struct {
	Options PlaceOptions `json:"options"`
	// SetupSeconds is from the first start to every host online.
	SetupSeconds float64 `json:"setup_seconds"`
	// IdleCPU is the CPU used with the cluster up and idle (serf gossip of
	// Hvas+2 members, health loop, hva monitors) over idleSample, and
	// IdleSerfFailures the agents the manager declared failed meanwhile.
	IdleCPU          cpuUse      `json:"idle_cpu"`
	IdleSerfFailures int         `json:"idle_serf_failures"`
	Create           *PlacePhase `json:"create,omitempty"`
	Terminate        *PlacePhase `json:"terminate,omitempty"`
	// Reps is the spread over repeated runs; the tables are the median run's.
	Reps *RepSummary `json:"reps,omitempty"`
}

// Goal of the end-to-end rate (issue 3).
const placeGoalPerSec = 2000

// idleSample is how long the idle cluster's CPU use is sampled.
const idleSample = 2 * time.Second

// pollPage is how many of the newest instances in the target state a poll
// round asks for first; a round fetches the whole list only when the page
// did not hold every instance that is new in the state.
const pollPage = 512

// placeRetries bounds the attempts of one POST or DELETE. A POST is sent
// again only after 503 (not done: no leader, overloaded); after a timeout or
// a 504 (raft apply timed out, "may or may not have been applied") it may
// have created the instance, so it is not repeated. A request that still
// fails is counted in Failed and the phase goes on without its instance.
const placeRetries = 20

// notDone says whether a failed request certainly did nothing, so that a
// create may be sent again: 503 (no leader, overloaded: the API's promise)
// or a refused connection (the manager is down; nothing was sent).
func notDone(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.status == http.StatusServiceUnavailable || errors.Is(err, syscall.ECONNREFUSED)
}

// placeRetryPause is the pause before attempt+1 of a request answered 503: up
// to a second, so that the retries outlast a raft election on a saturated
// machine (several seconds in the simulated datacenter).
func placeRetryPause(attempt int) time.Duration {
	return min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)
}

// placeRequestTimeout bounds one API call of the place benchmark: under
// load a create waits for the CPU far longer than the other benchmarks'
// requests do, and a POST that timed out cannot be repeated safely.
const placeRequestTimeout = 2 * time.Minute

// Place measures instances/s end to end: POST /instances to running and
// DELETE to terminated, through the API of one manager with one scheduler
// daemon and o.Hvas dummy hvas, all in this process on loopback.
func (r *Runner) Place(ctx context.Context, o PlaceOptions) (*PlaceResult, error) {
	if o.Hvas < 1 || o.Instances < 1 || o.Concurrency < 1 || o.Poll <= 0 || o.LocalStoreConcurrency < 1 {
		return nil, fmt.Errorf("place: need hvas, instances, concurrency, local-store concurrency and a poll period (got %+v)", o)
	}
	out := &PlaceResult{Options: o}
	start := time.Now()
	r.progress("place: starting 1 manager, 1 scheduler and %d dummy hvas", o.Hvas)
	c, err := startPlaceCluster(ctx, r.Dir, o)
	if err != nil {
		return nil, err
	}
	defer func() {
		r.progress("place: stopping the cluster")
		c.Close()
	}()
	hc := newHTTPClient(o.Concurrency + 2)
	hc.Timeout = placeRequestTimeout
	defer hc.CloseIdleConnections()
	r.progress("place: seeding %d host nodes, a /16 network and an image through the API", o.Hvas)
	if err := c.seed(ctx, hc, o.Hvas); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, hc, o.Hvas); err != nil {
		return nil, err
	}
	out.SetupSeconds = time.Since(start).Seconds()
	watch := startMemberWatch(c.mgr.Cluster, c.scheduler.Agent(), o.Hvas+1)
	defer watch.Stop()
	before := sampleCPU()
	if err := sleepCtx(ctx, idleSample); err != nil {
		return nil, err
	}
	out.IdleCPU, _ = cpuSince(before)
	out.IdleSerfFailures, _, _ = watch.counts()
	r.progress("place: %d hosts online after %.1f s; idle cluster uses %.2f cores (%.2f by other processes), %d serf failures",
		o.Hvas, out.SetupSeconds, out.IdleCPU.Own, out.IdleCPU.Other, out.IdleSerfFailures)

	ids := make([]string, o.Instances)
	r.progress("place: creating %d instances with %d clients", o.Instances, o.Concurrency)
	base := func() string { return c.base }
	env := phaseEnv{hc: hc, base: base, store: c.mgr.Cluster.Store(), fsm: c.mgr.Cluster.FSM(), watch: watch, schedLog: c.schedLog}
	out.Create, err = r.placePhase(ctx, env, o, o.Instances, "create", "", proto.InstanceRunning, false, createInstance(hc, base, ids))
	var createErr error
	if err != nil {
		createErr = fmt.Errorf("create: %w", err)
		if out.Create == nil || out.Create.Reached == 0 {
			return out, createErr
		}
		r.progress("place: %v", createErr)
	}
	// Only the instances that reached running are terminated (creates that
	// failed or were stranded are left out), even after a create phase that
	// stopped early, so that its terminations are measured too.
	ids = out.Create.reached
	r.progress("place: terminating %d instances with %d clients", len(ids), o.Concurrency)
	out.Terminate, err = r.placePhase(ctx, env, o, len(ids), "terminate", proto.InstanceRunning, proto.InstanceTerminated, true, terminateInstance(hc, base, ids))
	if err != nil {
		return out, errors.Join(createErr, fmt.Errorf("terminate: %w", err))
	}
	return out, createErr
}

// placeVifs is every benchmark instance's one vif.
const placeVifs = `{"eth0":{"index":"0","network":"` + placeNetworkID + `"}}`

// createInstance POSTs the i-th instance and records its id in ids[i].
func createInstance(hc *http.Client, base func() string, ids []string) func(ctx context.Context, i int) (string, error) {
	return func(ctx context.Context, i int) (string, error) {
		body, err := expectOK(doRequest(ctx, hc, http.MethodPost, base()+"/instances.json", url.Values{
			"image_id": {placeImageID}, "hypervisor": {"dummy"},
			"cpu_cores": {strconv.Itoa(placeInstCores)}, "memory_size": {strconv.Itoa(placeInstMemoryMB)},
			"vifs": {placeVifs}, "display_name": {fmt.Sprintf("bench-%d", i)},
		}))
		if err != nil {
			return "", err
		}
		var doc struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &doc); err != nil || doc.ID == "" {
			return "", fmt.Errorf("create instance: no id in %.200s", body)
		}
		ids[i] = doc.ID
		return doc.ID, nil
	}
}

// terminateInstance DELETEs instance ids[i].
func terminateInstance(hc *http.Client, base func() string, ids []string) func(ctx context.Context, i int) (string, error) {
	return func(ctx context.Context, i int) (string, error) {
		_, err := expectOK(doRequest(ctx, hc, http.MethodDelete, base()+"/instances/"+ids[i]+".json", nil))
		var se *statusError
		if errors.As(err, &se) && se.status == http.StatusBadRequest {
			// A retry of a DELETE whose first answer was lost finds the
			// instance terminating already (400/125): that is success.
			var doc struct {
				State string `json:"state"`
			}
			if getJSON(ctx, hc, base()+"/instances/"+ids[i]+".json", &doc) == nil &&
				(doc.State == proto.InstanceShuttingDown || doc.State == proto.InstanceTerminated) {
				return ids[i], nil
			}
		}
		return ids[i], err
	}
}

// phaseEnv is what a phase works with. With the cluster in other
// processes (vdcbench dc) store and schedLog are nil: no pipeline samples,
// no scheduler log counts.
type phaseEnv struct {
	hc *http.Client
	// base is the API base (with the 12.03 prefix) of the next request.
	base     func() string
	store    *state.Store
	fsm      *state.FSM
	watch    *memberWatch
	schedLog *msgCounts
}

// placeRequest is one instance's request of a phase.
type placeRequest struct {
	id     string
	sentAt time.Time // first attempt
	doneAt time.Time // successful response
	lat    time.Duration
}

// placePhase sends n requests with o.Concurrency workers (do
// returns the instance id) while an observer polls the instance list for the
// target state, and returns when every instance was seen in it.
func (r *Runner) placePhase(ctx context.Context, env phaseEnv, o PlaceOptions, n int,
	name, from, target string, idempotent bool, do func(ctx context.Context, i int) (string, error)) (*PlacePhase, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	hc, base := env.hc, env.base
	ph := &PlacePhase{Name: name, Target: target, Requested: n}
	if o.ProfileDir != "" {
		stop, err := startCPUProfile(filepath.Join(o.ProfileDir, "cpu-"+name+".prof"))
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	cpuBefore := sampleCPU()
	env.watch.resetMin(o.Hvas + 1)
	failed0, lost0, _ := env.watch.counts()
	stale0, noMgr0 := env.schedLog.get(msgStalePlan), env.schedLog.get(msgNoManager)
	var b0, e0, r0 uint64
	if env.fsm != nil {
		b0, e0, r0 = env.fsm.BatchStats()
	}
	defer func() {
		if env.fsm != nil {
			b, e, rj := env.fsm.BatchStats()
			ph.FSMBatches, ph.RaftEntries, ph.RejectedTxns = b-b0, e-e0, rj-r0
		}
		failed, lost, minAlive := env.watch.counts()
		ph.SerfFailures, ph.ManagerLost, ph.MinAliveAgents = failed-failed0, lost-lost0, minAlive
		ph.StalePlans = env.schedLog.get(msgStalePlan) - stale0
		ph.NoManagerRounds = env.schedLog.get(msgNoManager) - noMgr0
	}()

	var (
		mu       sync.Mutex
		reqs     = make([]placeRequest, n)
		answered int
		retries  int
		failed   int
		lastErr  string
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	obs := &observer{hc: hc, base: base, query: "/instances.json?state=" + target, seen: map[string]time.Time{}}
	// Creations are also watched for instances the scheduler gave up on
	// (they go to terminated at once and would never run).
	if target == proto.InstanceRunning {
		obs.failQuery = "/instances.json?state=" + proto.InstanceTerminated + "&limit=1"
	}
	sampler := startPipelineSampler(env.store)
	t0 := time.Now()
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				sent := time.Now()
				var id string
				var err error
				var lat time.Duration
				for attempt := range placeRetries {
					s := time.Now()
					id, err = do(ctx, i)
					lat = time.Since(s)
					if err == nil || ctx.Err() != nil || (!idempotent && !notDone(err)) {
						break
					}
					mu.Lock()
					retries++
					mu.Unlock()
					_ = sleepCtx(ctx, placeRetryPause(attempt))
				}
				done := time.Now()
				mu.Lock()
				answered++
				if err != nil {
					if ctx.Err() == nil {
						failed++
						lastErr = fmt.Sprintf("request %d: %v", i, err)
					}
					mu.Unlock()
					continue
				}
				reqs[i] = placeRequest{id: id, sentAt: sent, doneAt: done, lat: lat}
				mu.Unlock()
			}
		}()
	}
	requestsDone := make(chan struct{})
	go func() { wg.Wait(); close(requestsDone) }()

	// The observer polls until every answered request's instance was seen in
	// the target state after all requests were answered (or failed).
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		if answered < n {
			return false
		}
		for i := range reqs {
			id := reqs[i].id
			if _, ok := obs.seen[id]; !ok && id != "" && !sampler.isStranded(id) {
				return false
			}
		}
		return true
	}
	lastProgress := time.Now()
	var pollErr error
	for {
		roundStart := time.Now()
		if err := obs.round(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, errPlacementFailed) {
				pollErr = err
				break
			}
			// A poll that failed (a list slower than the client's
			// timeout, under load) is counted and polled again.
			ph.PollErrors++
			ph.LastPollError = err.Error()
		}
		if complete() {
			break
		}
		if time.Since(lastProgress) >= 5*time.Second {
			mu.Lock()
			got := answered
			mu.Unlock()
			stages := ""
			if s, ok := sampler.last(); ok {
				stages = "; " + s.String()
			}
			r.progress("place: %s: %d of %d requests answered, %d instances seen %s%s", name, got, n, len(obs.seen), target, stages)
			lastProgress = time.Now()
		}
		if err := sleepCtx(ctx, o.Poll-time.Since(roundStart)); err != nil {
			break
		}
	}
	cancel()
	<-requestsDone
	ph.CPU, _ = cpuSince(cpuBefore)
	cpuSeconds := ph.CPU.Own * time.Since(cpuBefore.at).Seconds()
	ph.Samples = sampler.Stop()

	var lats, tos []time.Duration
	var last, lastAnswer time.Time
	for _, q := range reqs {
		if q.id == "" {
			continue
		}
		lats = append(lats, q.lat)
		lastAnswer = later(lastAnswer, q.doneAt)
		if at, ok := obs.seen[q.id]; ok {
			ph.Reached++
			ph.reached = append(ph.reached, q.id)
			last = later(last, at)
			tos = append(tos, max(0, at.Sub(q.doneAt)))
		} else if sampler.isStranded(q.id) {
			ph.Stranded++
		}
	}
	ph.Retries = retries
	ph.Polls, ph.FullPolls = obs.polls, obs.fullPolls
	if obs.polls > 0 {
		ph.PollMeanMs = ms(obs.pollTime) / float64(obs.polls)
		ph.PollMaxMs = ms(obs.pollMax)
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		ph.RequestP50ms, ph.RequestP99ms = ms(Percentile(lats, 50)), ms(Percentile(lats, 99))
		ph.RequestSeconds = lastAnswer.Sub(t0).Seconds()
		ph.RequestsPerSec = float64(len(lats)) / ph.RequestSeconds
	}
	if len(tos) > 0 {
		slices.Sort(tos)
		ph.ToP50ms, ph.ToP99ms, ph.ToMaxms = ms(Percentile(tos, 50)), ms(Percentile(tos, 99)), ms(tos[len(tos)-1])
	}
	if ph.Reached > 0 {
		ph.Seconds = last.Sub(t0).Seconds()
		ph.PerSec = float64(ph.Reached) / ph.Seconds
		ph.CPUmsPerInstance = cpuSeconds * 1000 / float64(ph.Reached)
	}
	ph.Pipeline = pipelineStats(ph.Samples, from, target, ph.PerSec)
	ph.Failed, ph.LastError = failed, lastErr
	if failed == n {
		return ph, fmt.Errorf("every request failed, e.g. %s", lastErr)
	}
	if pollErr != nil {
		return ph, pollErr
	}
	if ph.Reached+ph.Stranded != n-failed {
		err := ctx.Err()
		if err == nil {
			err = errors.New("stopped")
		}
		return ph, fmt.Errorf("%d of %d instances seen %s: %w", ph.Reached, n-failed, target, err)
	}
	return ph, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// observer records when each instance was first seen in one state. It
// relies on the set of instances in that state only growing during a phase
// (running while creating, terminated while terminating), so the list's
// total minus the instances seen so far is the number not seen yet.
type observer struct {
	hc        *http.Client
	base      func() string
	query     string // list with the state filter
	failQuery string // list whose total must stay 0, or ""

	mu        sync.Mutex
	seen      map[string]time.Time
	polls     int
	fullPolls int
	pollTime  time.Duration
	pollMax   time.Duration
	lastFail  time.Time
}

// errPlacementFailed is an instance terminated while being created: the
// scheduler found no place for it.
var errPlacementFailed = errors.New("placement failed")

// failCheckEvery is how often failURL is checked.
const failCheckEvery = time.Second

// round asks for the newest page of instances in the state and, when that
// page misses some that are new in it, for the whole list.
func (o *observer) round(ctx context.Context) error {
	start := time.Now()
	total, err := o.fetch(ctx, pollPage)
	if err != nil {
		return err
	}
	full := false
	if o.unseen(total) > 0 {
		full = true
		if _, err := o.fetch(ctx, total+pollPage); err != nil {
			return err
		}
	}
	d := time.Since(start)
	o.mu.Lock()
	o.polls++
	if full {
		o.fullPolls++
	}
	o.pollTime += d
	o.pollMax = max(o.pollMax, d)
	o.mu.Unlock()
	if o.failQuery != "" && time.Since(o.lastFail) >= failCheckEvery {
		o.lastFail = time.Now()
		var env []listEnvelope
		if err := getJSON(ctx, o.hc, o.base()+o.failQuery, &env); err != nil {
			return err
		}
		if len(env) == 1 && env[0].Total > 0 {
			return fmt.Errorf("%w: %d instances were terminated while being created, e.g. %s",
				errPlacementFailed, env[0].Total, firstID(env[0]))
		}
	}
	return nil
}

func (o *observer) unseen(total int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return total - len(o.seen)
}

// fetch lists up to limit instances in the state and marks the new ones.
func (o *observer) fetch(ctx context.Context, limit int) (int, error) {
	var env []listEnvelope
	if err := getJSON(ctx, o.hc, o.base()+o.query+"&limit="+strconv.Itoa(limit), &env); err != nil {
		return 0, err
	}
	now := time.Now()
	if len(env) != 1 {
		return 0, errors.New("instance list: not an envelope")
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, x := range env[0].Results {
		if _, ok := o.seen[x.ID]; !ok {
			o.seen[x.ID] = now
		}
	}
	return env[0].Total, nil
}

// listEnvelope is the part of a list document the benchmark reads.
type listEnvelope struct {
	Total   int `json:"total"`
	Results []struct {
		ID string `json:"id"`
	} `json:"results"`
}

func firstID(e listEnvelope) string {
	if len(e.Results) == 0 {
		return "?"
	}
	return e.Results[0].ID
}

// getJSON GETs u with the account header and decodes a 200 answer into v.
func getJSON(ctx context.Context, c *http.Client, u string, v any) error {
	body, err := expectOK(doRequest(ctx, c, http.MethodGet, u, nil))
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// WriteTable prints the result in the style of the other tables.
func (res *PlaceResult) WriteTable(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "## place: 1 manager + 1 scheduler daemon + %d dummy hvas in one process, end to end through the 12.03 API\n\n", o.Hvas)
	fmt.Fprintf(w, "%d instances (%d core, %d MB, 1 vif on a /16, local boot volume) POSTed by %d keep-alive clients, then DELETEd the same way;\n",
		o.Instances, placeInstCores, placeInstMemoryMB, o.Concurrency)
	fmt.Fprintf(w, "states observed by polling GET /instances?state=… every %s (newest %d first, whole list when needed).\n", o.Poll, pollPage)
	fmt.Fprintf(w, "Scheduler concurrency %d, local-store concurrency %d per hva; every agent its own serf member (FastGossip) and RPC listener.\n",
		o.SchedulerConcurrency, o.LocalStoreConcurrency)
	fmt.Fprintf(w, "Setup (start, seed, all hosts online) %.1f s; the idle cluster used %.2f cores (other processes %.2f).\n\n",
		res.SetupSeconds, res.IdleCPU.Own, res.IdleCPU.Other)
	fmt.Fprintln(w, "| Phase | reached | end-to-end inst/s | goal | requests/s (API only) | request p50 / p99 ms | → state p50 / p99 / max ms | polls (full) mean ms, failed | requests retried / failed | CPU own / other | own CPU ms per instance |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, ph := range []*PlacePhase{res.Create, res.Terminate} {
		if ph == nil {
			continue
		}
		goal := "–"
		if ph.Name == "create" {
			goal = strconv.Itoa(placeGoalPerSec)
		}
		fmt.Fprintf(w, "| %s → %s | %d / %d, %d stranded | %.1f (%.1f s) | %s | %.1f | %.1f / %.1f | %.0f / %.0f / %.0f | %d (%d) %.1f, %d failed | %d / %d | %.2f / %.2f | %.1f |\n",
			ph.Name, ph.Target, ph.Reached, ph.Requested, ph.Stranded, ph.PerSec, ph.Seconds, goal, ph.RequestsPerSec,
			ph.RequestP50ms, ph.RequestP99ms, ph.ToP50ms, ph.ToP99ms, ph.ToMaxms,
			ph.Polls, ph.FullPolls, ph.PollMeanMs, ph.PollErrors, ph.Retries, ph.Failed, ph.CPU.Own, ph.CPU.Other, ph.CPUmsPerInstance)
	}
	fmt.Fprintln(w)
	for _, ph := range []*PlacePhase{res.Create, res.Terminate} {
		if ph != nil && ph.Reached > 0 && ph.FSMBatches > 0 {
			fmt.Fprintf(w, "%s: %d raft entries applied (%.1f per instance; %d refused by a guard) in %d bbolt transactions (%.1f entries each).\n",
				ph.Name, ph.RaftEntries, float64(ph.RaftEntries)/float64(ph.Reached), ph.RejectedTxns, ph.FSMBatches,
				float64(ph.RaftEntries)/float64(ph.FSMBatches))
		}
	}
	fmt.Fprintln(w)
	writeReps(w, res.Reps)
	fmt.Fprintln(w, "| Phase | serf: agents declared failed by the manager | manager declared failed by the scheduler | fewest agents alive | stale plans re-planned | scheduler rounds with no manager |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	fmt.Fprintf(w, "| idle (%s) | %d | – | – | – | – |\n", idleSample, res.IdleSerfFailures)
	for _, ph := range []*PlacePhase{res.Create, res.Terminate} {
		if ph != nil {
			fmt.Fprintf(w, "| %s | %d | %d | %d of %d | %d | %d |\n", ph.Name, ph.SerfFailures, ph.ManagerLost,
				ph.MinAliveAgents, o.Hvas+1, ph.StalePlans, ph.NoManagerRounds)
		}
	}
	fmt.Fprintln(w)
	for _, ph := range []*PlacePhase{res.Create, res.Terminate} {
		if ph != nil {
			writePipeline(w, ph)
		}
	}
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
