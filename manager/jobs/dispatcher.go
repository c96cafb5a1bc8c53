package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Member is a cluster member as the dispatcher needs it.
type Member struct {
	Name   string
	Status string // serf status: alive, failed, left, …
	Tags   map[string]string
}

// Cluster is what the dispatcher needs from the manager's cluster layer.
type Cluster interface {
	Store() *state.Store
	Apply(ctx context.Context, t state.CommandType, body any) (any, error)
	IsLeader() bool
}

// Deps wires a Dispatcher.
type Deps struct {
	Cluster Cluster
	// Members lists serf members (agents are found by their node_id tag).
	Members func() []Member
	Client  *rpc.Client
	Logger  *slog.Logger
	// Now is the wall clock of the records' timestamps.
	Now func() time.Time
	// Monotonic reads a clock that only moves forward at a steady rate
	// (nil: the process's monotonic clock). Job timeouts are counted on
	// it, not on Now: see Dispatcher.
	Monotonic func() time.Duration
	// Wait is how long one delivery waits for the job to end before the
	// dispatcher redelivers (which is how it polls a running job).
	Wait time.Duration
	// Grace is how much longer than Wait a delivery may take to answer
	// before it is abandoned as lost (network, a slow agent).
	Grace time.Duration
	// ProbeInterval and ProbeTimeout watch the agent while a delivery waits
	// for it: every ProbeInterval the dispatcher asks the agent for the
	// job's status, and a probe the agent does not answer within
	// ProbeTimeout, or the agent leaving serf's alive members, abandons the
	// delivery at once. A frozen agent (SIGSTOP: its sockets accept but
	// nothing answers) is thus given up within about ProbeInterval +
	// ProbeTimeout instead of Wait + Grace, and the job goes to another
	// agent of its endpoint if there is one, else to the same one again
	// once it answers.
	ProbeInterval, ProbeTimeout time.Duration
	// Tick is how often the leader rescans the queue (applies wake it too).
	Tick time.Duration
	// MaxBackoff caps the delay between deliveries to an unreachable agent.
	MaxBackoff time.Duration
	// OnFail, when set, adds to the txn that records a job failed or
	// cancelled by the dispatcher what its resource needs so that it does not
	// wait forever (an instance stuck in scheduling is terminated).
	OnFail func(tx *state.Tx, b *state.Builder, j proto.Job, reason string, now time.Time) error
}

// Dispatcher is the leader loop that delivers unfinished jobs to the agents
// serving their endpoints, at least once, until each ends: succeeded, failed
// (by the agent, or by the verb's timeout) or cancelled. Every manager runs
// one; only the leader's works, and a new leader resumes from the job queue
// in the state.
//
// A job's timeout (its record's Deadline - CreatedAt) is counted down on the
// monotonic clock, so that a jump of the leader's wall clock neither fails
// jobs early nor keeps them forever. When the dispatcher first sees a job
// (this leader created it, or inherited it from an earlier one) it takes
// the job's age then from the record's CreatedAt, and from there on adds
// the monotonic time that passes; the job fails once
//
//	age + (mono(now) - mono(first sight)) >= timeout
//	age = clamp(min(wall(first sight), steady(first sight)) - CreatedAt, 0, timeout)
//
// where wall is Now and steady is Now as read when the dispatcher was built,
// advanced by the monotonic clock since (a wall clock that no later jump
// moves). Taking the smaller reading means a jump can only make a job look
// younger than it is: a job this leader created while its clock was moved
// (CreatedAt then carries the move) is judged by wall, of age 0; a job
// inherited by a leader whose clock jumped ahead after it started is judged
// by steady. What a jump or skew can still do is give a job inherited
// across a leader change more time, at most its timeout again; it never
// ends a job early. Deliveries carry the time left (JobEnvelope.TimeoutMs),
// which the agent counts down on its own monotonic clock.
type Dispatcher struct {
	d    Deps
	wake chan struct{}
	// wall0 and mono0 are Now and Monotonic read together when the
	// dispatcher was built: wall0 + (Monotonic() - mono0) is a wall clock
	// that no jump moves.
	wall0 time.Time
	mono0 time.Duration

	mu       sync.Mutex
	inflight map[string]context.CancelFunc
	// lastSeq is the newest queue entry a scan has seen: a wake-up only
	// reads the entries created after it (the queue can hold thousands).
	lastSeq uint64
	// delivering holds the jobs with a delivery waiting for the agent's
	// answer (see Delivering).
	delivering map[string]bool
	// byResource names the job in flight for each resource; waiting lists
	// the younger jobs of that resource in creation order (waits: their
	// ids), started one by one as the one before ends.
	byResource map[string]string
	waiting    map[string][]string
	waits      map[string]bool
	// seen is, per queued job this manager has seen while leading, when it
	// first saw it (see Dispatcher).
	seen map[string]sight
}

// Delivering reports whether a delivery of job id is waiting for the
// agent's answer on this manager. That answer carries the job's result
// (and when it is lost, the job is delivered again and the agent answers
// with the result it kept), so the agent's own report of the result need
// not be written too: writing both raced, and the loser's write was a raft
// entry refused by its guard.
func (ds *Dispatcher) Delivering(id string) bool {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.delivering[id]
}

// NewDispatcher builds a dispatcher; Run starts it.
func NewDispatcher(d Deps) *Dispatcher {
	if d.Wait <= 0 {
		d.Wait = 10 * time.Second
	}
	if d.Grace <= 0 {
		d.Grace = 5 * time.Second
	}
	if d.ProbeInterval <= 0 {
		d.ProbeInterval = 3 * time.Second
	}
	if d.ProbeTimeout <= 0 {
		d.ProbeTimeout = 3 * time.Second
	}
	if d.Tick <= 0 {
		d.Tick = 500 * time.Millisecond
	}
	if d.MaxBackoff <= 0 {
		d.MaxBackoff = 5 * time.Second
	}
	if d.Now == nil {
		d.Now = func() time.Time { return time.Now().UTC().Truncate(time.Second) }
	}
	if d.Monotonic == nil {
		start := time.Now()
		d.Monotonic = func() time.Duration { return time.Since(start) }
	}
	return &Dispatcher{d: d, wake: make(chan struct{}, 1), wall0: d.Now(), mono0: d.Monotonic(),
		inflight: map[string]context.CancelFunc{}, delivering: map[string]bool{},
		byResource: map[string]string{}, waiting: map[string][]string{}, waits: map[string]bool{},
		seen: map[string]sight{},
	}
}

// sight is when the dispatcher first saw a job: its Monotonic reading and
// the smaller of its two wall clocks (see Dispatcher).
type sight struct {
	mono time.Duration
	wall time.Time
}

// sightAt is a job seen at Monotonic reading mono (now).
func (ds *Dispatcher) sightAt(mono time.Duration) sight {
	wall, steady := ds.d.Now(), ds.wall0.Add(mono-ds.mono0)
	if steady.Before(wall) {
		wall = steady
	}
	return sight{mono: mono, wall: wall}
}

// remaining is how long job j may still run (ok is false when it has no
// timeout), counted as the Dispatcher doc says.
func (ds *Dispatcher) remaining(j proto.Job) (left time.Duration, ok bool) {
	if j.Deadline == nil {
		return 0, false
	}
	now := ds.d.Monotonic()
	ds.mu.Lock()
	at, seen := ds.seen[j.ID]
	if !seen {
		at = ds.sightAt(now)
		ds.seen[j.ID] = at
	}
	ds.mu.Unlock()
	timeout := j.Deadline.Sub(j.CreatedAt)
	age := min(max(at.wall.Sub(j.CreatedAt), 0), max(timeout, 0))
	return timeout - age - (now - at.mono), true
}

// Wake makes the dispatcher rescan soon (called after every raft apply).
func (ds *Dispatcher) Wake() {
	select {
	case ds.wake <- struct{}{}:
	default:
	}
}

// Run loops until ctx ends.
func (ds *Dispatcher) Run(ctx context.Context) {
	t := time.NewTicker(ds.d.Tick)
	defer t.Stop()
	defer ds.stopAll()
	led := false
	for {
		full := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			full = true
		case <-ds.wake:
		}
		if !ds.d.Cluster.IsLeader() {
			ds.stopAll()
			led = false
			continue
		}
		// The tick (and a new term of leadership) reads the whole queue;
		// a wake-up after an apply only what was enqueued since.
		ds.scan(ctx, full || !led)
		led = true
	}
}

func (ds *Dispatcher) stopAll() {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	for id, cancel := range ds.inflight {
		cancel()
		delete(ds.inflight, id)
	}
	clear(ds.byResource)
	clear(ds.waiting)
	clear(ds.waits)
}

// scan starts a delivery goroutine for every queued job without one: all of
// them (full), or those enqueued since the last scan. The jobs of one
// resource run one at a time, in the order they were made: a job with an
// older job of its resource in flight waits (ds.waiting) and starts when
// that one ends. Each job has its own delivery backoff, so without this a
// job that waited for an unreachable agent could run after a newer one (a
// late poweroff undoing a poweron accepted after it).
func (ds *Dispatcher) scan(ctx context.Context, full bool) {
	var queued []proto.JobQueueEntry
	ds.mu.Lock()
	since := ds.lastSeq
	ds.mu.Unlock()
	if full {
		since = 0
	}
	var last uint64
	_ = ds.d.Cluster.Store().View(func(tx *state.Tx) error {
		// In creation order: the first entry of a resource is its oldest job.
		return tx.EachAfter(proto.KindJobQueue, since, func(e state.Entry) error {
			last = e.Seq
			var q proto.JobQueueEntry
			if json.Unmarshal(e.Value, &q) != nil {
				return nil
			}
			if q.ResourceID == "" { // written before entries named it
				var j proto.Job
				if _, err := tx.Get(proto.KindJob, q.ID, &j); err == nil {
					q.ResourceID = j.ResourceID
				}
			}
			queued = append(queued, q)
			return nil
		})
	})
	now := ds.sightAt(ds.d.Monotonic())
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.lastSeq = max(ds.lastSeq, last)
	// A job's timeout counts from here (a job waiting for an older one of
	// its resource is counted too); a full scan forgets the jobs that
	// ended while another manager led.
	for _, q := range queued {
		if _, ok := ds.seen[q.ID]; !ok {
			ds.seen[q.ID] = now
		}
	}
	if full {
		ids := make(map[string]bool, len(queued))
		for _, q := range queued {
			ids[q.ID] = true
		}
		for id := range ds.seen {
			if !ids[id] {
				delete(ds.seen, id)
			}
		}
	}
	for _, q := range queued {
		if _, ok := ds.inflight[q.ID]; ok || ds.waits[q.ID] {
			continue
		}
		if _, busy := ds.byResource[q.ResourceID]; busy && q.ResourceID != "" {
			ds.waiting[q.ResourceID] = append(ds.waiting[q.ResourceID], q.ID)
			ds.waits[q.ID] = true
			continue
		}
		ds.startLocked(ctx, q)
	}
}

// startLocked starts the delivery of job q; ds.mu is held. When the
// delivery ends with the job out of the queue, the next job of its resource
// starts.
func (ds *Dispatcher) startLocked(ctx context.Context, q proto.JobQueueEntry) {
	jctx, cancel := context.WithCancel(ctx)
	ds.inflight[q.ID] = cancel
	if q.ResourceID != "" {
		ds.byResource[q.ResourceID] = q.ID
	}
	go func() {
		ds.deliver(jctx, q.ID)
		// Still queued: leadership ended; the next leader starts over.
		done := ctx.Err() == nil && !ds.queued(q.ID)
		ds.mu.Lock()
		defer ds.mu.Unlock()
		cancel()
		delete(ds.inflight, q.ID)
		delete(ds.delivering, q.ID)
		if done {
			delete(ds.seen, q.ID)
		}
		r := q.ResourceID
		if r == "" || ds.byResource[r] != q.ID {
			return
		}
		delete(ds.byResource, r)
		if !done {
			return
		}
		if next := ds.waiting[r]; len(next) > 0 {
			ds.waiting[r] = next[1:]
			if len(ds.waiting[r]) == 0 {
				delete(ds.waiting, r)
			}
			delete(ds.waits, next[0])
			ds.startLocked(ctx, proto.JobQueueEntry{ID: next[0], ResourceID: r})
		}
	}()
}

// queued reports whether job id is still in the queue.
func (ds *Dispatcher) queued(id string) bool {
	ok := false
	_ = ds.d.Cluster.Store().View(func(tx *state.Tx) error {
		ok = tx.Exists(proto.KindJobQueue, id)
		return nil
	})
	return ok
}

// load reads the job; ok is false once it left the queue (finished).
func (ds *Dispatcher) load(id string) (proto.Job, state.Meta, bool) {
	var (
		j  proto.Job
		m  state.Meta
		ok bool
	)
	_ = ds.d.Cluster.Store().View(func(tx *state.Tx) error {
		if !tx.Exists(proto.KindJobQueue, id) {
			return nil
		}
		var err error
		m, err = tx.Get(proto.KindJob, id, &j)
		ok = err == nil
		return nil
	})
	return j, m, ok
}

// deliver drives one job to its end while this manager leads.
func (ds *Dispatcher) deliver(ctx context.Context, id string) {
	log := ds.d.Logger.With("job_id", id)
	backoff := 100 * time.Millisecond
	var lastAddr, lastNode, avoid string
	for attempt := 1; ctx.Err() == nil && ds.d.Cluster.IsLeader(); attempt++ {
		j, _, ok := ds.load(id)
		if !ok {
			// Finished elsewhere (cancelled through the API, or reported by
			// the agent). Tell the agent to stop if it may still run it.
			if lastAddr != "" {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, _ = agent.CancelJob(cctx, ds.d.Client, lastAddr, lastNode, id)
				cancel()
			}
			return
		}
		left, timed := ds.remaining(j)
		if timed && left <= 0 {
			ds.finish(ctx, id, FinishFail, fmt.Sprintf("job %s.%s timed out", j.QueueName, j.Verb), nil)
			return
		}
		// The agent that has the job keeps it (a new leader learns which
		// from the record).
		prefer := lastNode
		if prefer == "" && j.WorkerID != nil {
			prefer = *j.WorkerID
		}
		addr, node, err := ds.route(j.QueueName, avoid, prefer)
		if err != nil {
			log.Debug("no agent for job yet", "endpoint", j.QueueName, "error", err)
			ds.sleep(ctx, &backoff)
			continue
		}
		// A job of an endpoint several agents serve (the schedulers) is
		// recorded with its agent before it goes out, so that a new leader
		// keeps it there (two schedulers must not both run it). An agent of
		// its own endpoint needs no such record: a job that ends within its
		// first delivery is then written once, at its end.
		if j.WorkerID != nil && *j.WorkerID != node || j.State == StatePending && proto.EndpointNode(j.QueueName) == "" {
			ds.handOff(ctx, id, node)
		}
		env := proto.JobEnvelope{
			ID: j.ID, Endpoint: j.QueueName, Verb: j.Verb, ResourceID: j.ResourceID, Attempt: attempt,
		}
		if env.Args, err = json.Marshal(j.Params); err != nil {
			ds.finish(ctx, id, FinishFail, "job arguments do not encode: "+err.Error(), nil)
			return
		}
		if left, timed := ds.remaining(j); timed {
			// The time left now (routing and a hand-off took some), at
			// least a millisecond (0 would mean none).
			env.TimeoutMs = max(left.Milliseconds(), 1)
			env.Deadline = *j.Deadline
		}
		ds.setDelivering(id, true)
		res, err := ds.deliverOnce(ctx, addr, node, env)
		if err != nil || !res.Status.Final() {
			// No result came back with this delivery: the agent's report
			// of it (if one comes meanwhile) must be written.
			ds.setDelivering(id, false)
		}
		lastAddr, lastNode, avoid = addr, node, ""
		switch {
		case err == nil && res.Status.Final():
			ds.finishResult(ctx, id, res, node)
			return
		case err == nil:
			// Still running: recorded as such (a job that ends within one
			// delivery goes from pending to finished in one write, with
			// the worker and start time), and delivered again to poll.
			if j.State == StatePending {
				ds.handOff(ctx, id, node)
			}
			backoff = 100 * time.Millisecond
		case rpc.IsRetryable(err) || errs.Is(err, errs.NoLeader):
			log.Debug("agent unreachable; will retry", "addr", addr, "error", err)
			// Another agent of the endpoint, if any, gets the next delivery.
			avoid = addr
			ds.sleep(ctx, &backoff)
		default:
			// The agent refused the job itself (unknown verb, bad arguments):
			// redelivery cannot help.
			ds.finish(ctx, id, FinishFail, "agent refused the job: "+err.Error(), nil)
			return
		}
	}
}

// errAgentGone is the cause of a delivery the watcher abandoned.
var errAgentGone = errors.New("agent stopped answering")

// deliverOnce hands env to the agent at addr and waits for its answer
// (Wait, plus Grace), while a watcher checks that the agent is still there
// (see Deps.ProbeInterval): when it is not, the delivery is abandoned with
// an errs.Unavailable error, which the caller retries.
func (ds *Dispatcher) deliverOnce(ctx context.Context, addr, node string, env proto.JobEnvelope) (proto.JobResult, error) {
	dctx, abandon := context.WithCancelCause(ctx)
	defer abandon(nil)
	wctx, stopWatch := context.WithCancel(dctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		if why := ds.watch(wctx, addr, node, env.ID); why != "" {
			abandon(fmt.Errorf("%w: %s", errAgentGone, why))
		}
	}()
	rctx, cancel := context.WithTimeout(dctx, ds.d.Wait+ds.d.Grace)
	res, err := agent.DeliverJob(rctx, ds.d.Client, addr, env, ds.d.Wait)
	cancel()
	stopWatch()
	<-watched
	if cause := context.Cause(dctx); err != nil && errors.Is(cause, errAgentGone) {
		ds.d.Logger.Info("delivery abandoned", "job_id", env.ID, "node_id", node, "addr", addr, "reason", cause)
		return res, errs.Wrap(errs.Unavailable, cause, "deliver job "+env.ID+" to "+node)
	}
	return res, err
}

// watch returns why the agent node at addr is to be given up ("" when ctx
// ended first): it left serf's alive members, or it did not answer a probe.
func (ds *Dispatcher) watch(ctx context.Context, addr, node, jobID string) string {
	t := time.NewTicker(ds.d.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-t.C:
		}
		if !ds.alive(node) {
			return "it is no longer an alive member"
		}
		pctx, cancel := context.WithTimeout(ctx, ds.d.ProbeTimeout)
		_, err := agent.JobStatus(pctx, ds.d.Client, addr, node, jobID)
		cancel()
		if ctx.Err() != nil {
			return ""
		}
		// Any answer, an error included, shows the agent is there.
		if err != nil && rpc.IsRetryable(err) {
			return "no answer to a status probe within " + ds.d.ProbeTimeout.String() + ": " + err.Error()
		}
	}
}

// alive reports whether a member with node id node is alive.
func (ds *Dispatcher) alive(node string) bool {
	for _, m := range ds.d.Members() {
		if m.Tags[proto.TagNodeID] == node && m.Status == "alive" {
			return true
		}
	}
	return false
}

func (ds *Dispatcher) setDelivering(id string, on bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if on {
		ds.delivering[id] = true
	} else {
		delete(ds.delivering, id)
	}
}

func (ds *Dispatcher) sleep(ctx context.Context, backoff *time.Duration) {
	d := *backoff + time.Duration(rand.Int64N(int64(*backoff)/2+1))
	select {
	case <-ctx.Done():
	case <-time.After(d):
	case <-ds.wake:
		// An apply happened (an agent may have joined); try again sooner.
	}
	if *backoff *= 2; *backoff > ds.d.MaxBackoff {
		*backoff = ds.d.MaxBackoff
	}
}

// route finds the RPC address of an agent serving endpoint: "scheduler" goes
// to any alive scheduler, "<base>.<node id>" to the member with that node id.
// The agent with node id prefer (the one the job was delivered to last)
// keeps it while it is a candidate, so polling a running job does not hand
// it to another scheduler that would run it again; the agent at address
// avoid (which just failed a delivery) is chosen only when there is no
// other.
func (ds *Dispatcher) route(endpoint, avoid, prefer string) (addr, node string, err error) {
	base := proto.EndpointBase(endpoint)
	node = proto.EndpointNode(endpoint)
	var candidates []Member
	for _, m := range ds.d.Members() {
		if m.Status != "alive" || m.Tags[proto.TagRPC] == "" {
			continue
		}
		if node == "" && base == proto.EndpointScheduler && m.Tags[proto.TagRole] == proto.RoleScheduler {
			candidates = append(candidates, m)
		}
		if node != "" && m.Tags[proto.TagNodeID] == node {
			candidates = append(candidates, m)
		}
	}
	if len(candidates) == 0 {
		return "", "", errs.New(errs.Unavailable, "no alive agent serves %s", endpoint)
	}
	if others := slices.DeleteFunc(slices.Clone(candidates), func(m Member) bool { return m.Tags[proto.TagRPC] == avoid }); len(others) > 0 {
		candidates = others
	}
	if prefer != "" {
		for _, m := range candidates {
			if m.Tags[proto.TagNodeID] == prefer && m.Tags[proto.TagRPC] != avoid {
				return m.Tags[proto.TagRPC], prefer, nil
			}
		}
	}
	m := candidates[rand.IntN(len(candidates))]
	return m.Tags[proto.TagRPC], m.Tags[proto.TagNodeID], nil
}

// handOff records that the job goes to agent node: the job is running,
// worker_id names the agent it was handed to last, and retry_count counts
// the hand-offs (1 for a job one agent ran; each redelivery to another
// agent, after the first one failed or froze, adds one).
func (ds *Dispatcher) handOff(ctx context.Context, id, node string) {
	_ = ds.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		var j proto.Job
		m, err := tx.Get(proto.KindJob, id, &j)
		if err != nil || !tx.Exists(proto.KindJobQueue, id) ||
			(j.State == StateRunning && j.WorkerID != nil && *j.WorkerID == node) {
			return nil
		}
		now := ds.d.Now()
		if j.StartedAt == nil {
			j.StartedAt = &now
		}
		j.State, j.WorkerID, j.UpdatedAt = StateRunning, &node, now
		j.RetryCount++
		b.Update(proto.KindJob, id, m.ModifyIndex, j)
		return nil
	})
}

func (ds *Dispatcher) finishResult(ctx context.Context, id string, res proto.JobResult, node string) {
	status := FinishSuccess
	msg := ""
	switch res.Status {
	case proto.JobFailed:
		status = FinishFail
	case proto.JobCancelled:
		status = FinishCancel
	}
	if res.Error != nil {
		msg = res.Error.Message
	}
	var result map[string]any
	if len(res.Result) > 0 {
		_ = json.Unmarshal(res.Result, &result)
	}
	ds.finishBy(ctx, id, status, msg, result, Worker{NodeID: node, StartedAt: res.StartedAt})
}

// finish records the job's end; a job that already ended stays as it was.
func (ds *Dispatcher) finish(ctx context.Context, id, status, msg string, result map[string]any) {
	ds.finishBy(ctx, id, status, msg, result, Worker{})
}

// finishBy is finish with the agent that ran the job.
func (ds *Dispatcher) finishBy(ctx context.Context, id, status, msg string, result map[string]any, w Worker) {
	err := ds.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		now := ds.d.Now()
		if status != FinishSuccess && ds.d.OnFail != nil && tx.Exists(proto.KindJobQueue, id) {
			var j proto.Job
			if _, err := tx.Get(proto.KindJob, id, &j); err == nil {
				if err := ds.d.OnFail(tx, b, j, msg, now); err != nil {
					return err
				}
			}
		}
		return FinishRun(tx, b, id, now, status, msg, result, w)
	})
	if err != nil {
		ds.d.Logger.Warn("record job end", "job_id", id, "status", status, "error", err)
		return
	}
	ds.d.Logger.Info("job finished", "job_id", id, "status", status, "message", msg)
}

// FinishTx ends job id in b unless it ended already (idempotent; used by the
// dispatcher and by the job-collector's job_finished).
func FinishTx(tx *state.Tx, b *state.Builder, id string, now time.Time, status, msg string, result map[string]any) error {
	return FinishRun(tx, b, id, now, status, msg, result, Worker{})
}

// Worker is the agent that ran a job, as its result tells.
type Worker struct {
	NodeID    string
	StartedAt time.Time
}

// FinishRun is FinishTx for a job whose worker is known: a job still
// pending (it ended within its first delivery) also gets the worker, start
// time and run count that marking it running would have recorded.
func FinishRun(tx *state.Tx, b *state.Builder, id string, now time.Time, status, msg string, result map[string]any, w Worker) error {
	if !tx.Exists(proto.KindJobQueue, id) {
		return nil
	}
	var j proto.Job
	m, err := tx.Get(proto.KindJob, id, &j)
	if err != nil {
		return err
	}
	if j.State == StatePending && w.NodeID != "" {
		node, started := w.NodeID, w.StartedAt.UTC().Truncate(time.Second)
		if w.StartedAt.IsZero() || started.After(now) {
			started = now
		}
		j.WorkerID, j.StartedAt = &node, &started
		j.RetryCount++
	}
	Finish(b, j, m.ModifyIndex, now, status, msg, result)
	return nil
}

func (ds *Dispatcher) commit(ctx context.Context, plan func(tx *state.Tx, b *state.Builder) error) error {
	return state.Commit(ctx, ds.d.Cluster.Store(), ds.d.Cluster, plan)
}

// Members converts the cluster layer's member list.
func Members(ms []cluster.Member) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{Name: m.Name, Status: m.Status, Tags: m.Tags})
	}
	return out
}
