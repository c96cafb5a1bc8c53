package agent

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/jobtable"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
)

// JobHandler runs one job. ctx carries the job (JobFromContext), ends at the
// job's deadline, and is cancelled when the job is cancelled or a shutdown
// runs out of time. The returned value is the job's result (JSON-encoded).
type JobHandler func(ctx context.Context, job proto.JobEnvelope) (any, error)

// JobFunc adapts a typed function to a JobHandler: the job's args are decoded
// into Req (undecodable args fail the job with errs.InvalidBody).
func JobFunc[Req, Resp any](fn func(ctx context.Context, req Req) (Resp, error)) JobHandler {
	return func(ctx context.Context, job proto.JobEnvelope) (any, error) {
		var req Req
		if err := rpc.Decode(job.Args, &req); err != nil {
			return nil, err
		}
		return fn(ctx, req)
	}
}

// jobEntry is one job the agent has been handed; it is shared by every
// delivery of the same job id.
type jobEntry struct {
	env     proto.JobEnvelope
	handler JobHandler
	// deadline ends the job's context (zero: none); see jobDeadline.
	deadline time.Time
	status   proto.JobStatus
	result   proto.JobResult // valid once final
	started  time.Time
	done     chan struct{} // closed when final or dropped
	dropped  bool          // interrupted by shutdown: not final, forgotten
	cancel   context.CancelFunc
	// cancelRequested: a cancel came while the job ran.
	cancelRequested bool
	// waiters counts deliveries waiting for the job to finish: they carry
	// its result back themselves.
	waiters int
	elem    *list.Element // in Agent.finished once final
}

// snapshotLocked is the entry's current result (final or in progress).
func (e *jobEntry) snapshotLocked() proto.JobResult {
	if e.status.Final() {
		return e.result
	}
	return proto.JobResult{JobID: e.env.ID, Status: e.status, StartedAt: e.started}
}

// lane runs the jobs of one endpoint, at most limit at a time, in arrival order.
type lane struct {
	limit   int
	running int
	queue   []*jobEntry
}

// HandleJob serves a job verb: deliveries of jobs for endpoint/verb (POST
// /rpc/v1/<endpoint>/<verb> with a proto.JobDelivery) run h. Registering a
// pair twice panics.
func (a *Agent) HandleJob(endpoint, verb string, h JobHandler) {
	a.mu.Lock()
	if a.handlers[endpoint][verb] != nil {
		a.mu.Unlock()
		panic("agent: duplicate job handler for " + endpoint + "/" + verb)
	}
	if a.handlers[endpoint] == nil {
		a.handlers[endpoint] = map[string]JobHandler{}
	}
	a.handlers[endpoint][verb] = h
	a.mu.Unlock()
	a.server.Register(endpoint, verb, rpc.Func(func(ctx context.Context, d proto.JobDelivery) (proto.JobResult, error) {
		if d.Job.Endpoint != endpoint || d.Job.Verb != verb {
			return proto.JobResult{}, errs.New(errs.InvalidBody,
				"job %s is for %s/%s, delivered to %s/%s", d.Job.ID, d.Job.Endpoint, d.Job.Verb, endpoint, verb)
		}
		wait := min(time.Duration(d.WaitMs)*time.Millisecond, a.cfg.MaxDeliveryWait)
		return a.Deliver(ctx, d.Job, wait)
	}))
}

// Deliver hands a job to the agent and waits up to wait (or until ctx ends)
// for it to finish. A job id seen before is not run again: the delivery gets
// the first one's result, or its progress (status queued or running) if it
// has not finished within wait. Errors: InvalidBody (bad envelope), NotFound
// (no handler for the verb), Conflict (the id was used for another verb),
// Unavailable (the agent is shutting down; deliver again later).
func (a *Agent) Deliver(ctx context.Context, job proto.JobEnvelope, wait time.Duration) (proto.JobResult, error) {
	if err := job.Validate(); err != nil {
		return proto.JobResult{}, errs.Wrap(errs.InvalidBody, err, "bad job")
	}
	a.mu.Lock()
	e, seen := a.jobs[job.ID]
	switch {
	case seen && (e.env.Endpoint != job.Endpoint || e.env.Verb != job.Verb):
		a.mu.Unlock()
		return proto.JobResult{}, errs.New(errs.Conflict, "job %s was delivered as %s/%s before, now as %s/%s",
			job.ID, e.env.Endpoint, e.env.Verb, job.Endpoint, job.Verb)
	case seen && e.status.Final():
		a.finished.MoveToFront(e.elem)
		res := e.result
		a.mu.Unlock()
		return res, nil
	case !seen:
		if a.closing {
			a.mu.Unlock()
			return proto.JobResult{}, errs.New(errs.Unavailable, "agent %s is shutting down", a.cfg.NodeID)
		}
		h := a.handlers[job.Endpoint][job.Verb]
		if h == nil {
			a.mu.Unlock()
			return proto.JobResult{}, errs.New(errs.NotFound, "agent %s has no job verb %s/%s",
				a.cfg.NodeID, job.Endpoint, job.Verb)
		}
		now := time.Now()
		e = &jobEntry{env: job, handler: h, deadline: jobDeadline(job, now), status: proto.JobQueued, done: make(chan struct{})}
		a.jobs[job.ID] = e
		a.logger.Info("job accepted", "job_id", job.ID, "resource_id", job.ResourceID,
			"endpoint", job.Endpoint, "verb", job.Verb, "attempt", job.Attempt, "timeout_ms", job.TimeoutMs)
		if !e.deadline.IsZero() && !now.Before(e.deadline) {
			a.finishLocked(e, proto.JobFailed, errs.New(errs.Timeout, "job deadline %s passed before it started",
				job.Deadline.Format(time.RFC3339)), nil)
		} else {
			a.enqueueLocked(e)
		}
	}
	done := e.done
	if wait > 0 {
		e.waiters++
	}
	a.mu.Unlock()

	if wait > 0 {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-done:
		case <-timer.C:
		case <-ctx.Done():
		case <-a.stopCh:
		}
	}
	stopped := false
	select {
	case <-a.stopCh:
		stopped = true
	default:
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if wait > 0 {
		e.waiters--
	}
	if e.dropped || (stopped && !e.status.Final()) {
		return proto.JobResult{}, errs.New(errs.Unavailable,
			"job %s was interrupted by the shutdown of agent %s; deliver it again", job.ID, a.cfg.NodeID)
	}
	return e.snapshotLocked(), nil
}

// jobDeadline is when job, accepted at now, must end (zero: never): the
// time left it carries, counted from now on this process's monotonic clock
// (now is a time.Now reading), so that the clocks of the manager and of this
// host need not agree. A manager that sends no time left (older than
// TimeoutMs) has its wall-clock deadline used as it is.
func jobDeadline(job proto.JobEnvelope, now time.Time) time.Time {
	if job.TimeoutMs > 0 {
		return now.Add(time.Duration(job.TimeoutMs) * time.Millisecond)
	}
	return job.Deadline
}

// Status returns the current result of a job the agent knows (NotFound
// otherwise: never delivered, forgotten, or interrupted by a shutdown).
func (a *Agent) Status(jobID string) (proto.JobResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.jobs[jobID]
	if !ok {
		return proto.JobResult{}, errs.New(errs.NotFound, "agent %s does not know job %s", a.cfg.NodeID, jobID)
	}
	return e.snapshotLocked(), nil
}

// Cancel cancels a job: a queued one ends cancelled at once; a running one
// has its context cancelled and ends cancelled unless its handler still
// succeeds. A finished job is left as it is. It returns the job's state.
func (a *Agent) Cancel(jobID string) (proto.JobResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.jobs[jobID]
	if !ok {
		return proto.JobResult{}, errs.New(errs.NotFound, "agent %s does not know job %s", a.cfg.NodeID, jobID)
	}
	switch e.status {
	case proto.JobQueued:
		ln := a.lanes[e.env.Endpoint]
		for i, q := range ln.queue {
			if q == e {
				ln.queue = append(ln.queue[:i], ln.queue[i+1:]...)
				break
			}
		}
		a.finishLocked(e, proto.JobCancelled, fmt.Errorf("job %s cancelled before it started: %w", jobID, context.Canceled), nil)
	case proto.JobRunning:
		e.cancelRequested = true
		e.cancel()
	}
	return e.snapshotLocked(), nil
}

func (a *Agent) laneLocked(endpoint string) *lane {
	ln := a.lanes[endpoint]
	if ln == nil {
		limit := 1
		if n, ok := a.cfg.Concurrency[endpoint]; ok {
			limit = n
		} else if n, ok := a.cfg.Concurrency[proto.EndpointBase(endpoint)]; ok {
			limit = n
		}
		ln = &lane{limit: limit}
		a.lanes[endpoint] = ln
	}
	return ln
}

func (a *Agent) enqueueLocked(e *jobEntry) {
	ln := a.laneLocked(e.env.Endpoint)
	if ln.running < ln.limit {
		ln.running++
		a.startLocked(e)
		return
	}
	ln.queue = append(ln.queue, e)
}

func (a *Agent) startLocked(e *jobEntry) {
	e.status = proto.JobRunning
	e.started = time.Now()
	ctx, cancel := context.WithCancel(a.baseCtx)
	if !e.deadline.IsZero() {
		ctx, cancel = context.WithDeadline(a.baseCtx, e.deadline)
	}
	e.cancel = cancel
	ctx = ContextWithJob(ctx, JobInfo{
		ID: e.env.ID, Endpoint: e.env.Endpoint, Verb: e.env.Verb,
		ResourceID: e.env.ResourceID, ParentID: e.env.ParentID, Attempt: e.env.Attempt,
	})
	a.jobsWG.Add(1)
	go a.run(ctx, e)
}

// run executes one job, records its outcome and starts the next queued job
// of its endpoint.
func (a *Agent) run(ctx context.Context, e *jobEntry) {
	defer a.jobsWG.Done()
	a.logger.InfoContext(ctx, "job started", "endpoint", e.env.Endpoint, "verb", e.env.Verb)
	out, err := a.invoke(ctx, e)
	ctxErr := ctx.Err()
	e.cancel()

	var raw json.RawMessage
	if err == nil && out != nil {
		if raw, err = json.Marshal(out); err != nil {
			err = fmt.Errorf("encode result of %s/%s: %w", e.env.Endpoint, e.env.Verb, err)
		}
	}
	a.mu.Lock()
	var status proto.JobStatus
	switch {
	case err == nil:
		status = proto.JobSucceeded
	case e.cancelRequested:
		status = proto.JobCancelled
	case a.aborted && errors.Is(ctxErr, context.Canceled):
		// Interrupted by a shutdown: not final (status stays empty).
	case errors.Is(ctxErr, context.DeadlineExceeded):
		status, err = proto.JobFailed, errs.Wrap(errs.Timeout, err, "job deadline passed")
	default:
		status = proto.JobFailed
	}
	if status == "" {
		a.dropLocked(e)
	} else {
		res := resultOf(e, status, err, raw)
		// Stored before any delivery can see it: a result the manager was
		// answered with is one a restarted agent still has. (A Cancel
		// meanwhile finds the job running and changes nothing.)
		a.mu.Unlock()
		a.record(ctx, e, res)
		a.mu.Lock()
		a.settleLocked(e, res)
	}
	ln := a.lanes[e.env.Endpoint]
	if len(ln.queue) > 0 && !a.closing {
		next := ln.queue[0]
		ln.queue = ln.queue[1:]
		a.startLocked(next)
	} else {
		ln.running--
	}
	res, final := e.result, e.status.Final()
	// A delivery waiting for this job answers the dispatcher with the
	// result; reporting it as well was a second round trip to the
	// managers for every job, which they then ignored. Should that answer
	// be lost, the dispatcher delivers again and gets the result.
	answered := e.waiters > 0
	a.mu.Unlock()

	if !final {
		a.logger.WarnContext(ctx, "job interrupted by shutdown", "error", err)
		return
	}
	attrs := []any{"status", res.Status, "duration", res.FinishedAt.Sub(res.StartedAt).String()}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	a.logger.InfoContext(ctx, "job finished", attrs...)
	if a.cfg.OnJobFinished != nil && !answered {
		a.cfg.OnJobFinished(context.WithoutCancel(ctx), res)
	}
}

// invoke runs the handler, turning a panic into an internal error.
func (a *Agent) invoke(ctx context.Context, e *jobEntry) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			a.logger.ErrorContext(ctx, "job handler panicked", "panic", p, "stack", string(debug.Stack()))
			err = errs.New(errs.Internal, "job handler %s/%s panicked: %v", e.env.Endpoint, e.env.Verb, p)
		}
	}()
	return e.handler(ctx, e.env)
}

// resultOf is e's final result, finished now.
func resultOf(e *jobEntry, status proto.JobStatus, err error, result json.RawMessage) proto.JobResult {
	now := time.Now()
	started := e.started
	if started.IsZero() {
		started = now
	}
	return proto.JobResult{
		JobID: e.env.ID, Status: status, Error: rpc.ToWire(err), Result: result,
		StartedAt: started, FinishedAt: now,
	}
}

// finishLocked ends a job that never ran (its deadline had passed, or it
// was cancelled while queued): recorded like any other.
func (a *Agent) finishLocked(e *jobEntry, status proto.JobStatus, err error, result json.RawMessage) {
	res := resultOf(e, status, err, result)
	a.record(a.baseCtx, e, res)
	a.settleLocked(e, res)
}

// settleLocked makes e final with res and remembers it among the finished
// jobs, forgetting the least recently used ones beyond DedupSize, and now
// and then those older than DedupRetention.
func (a *Agent) settleLocked(e *jobEntry, res proto.JobResult) {
	e.status = res.Status
	e.result = res
	e.elem = a.finished.PushFront(e)
	for a.finished.Len() > a.cfg.DedupSize {
		a.forgetLocked(a.finished.Back())
	}
	if a.settled++; a.settled%pruneEvery == 0 {
		cutoff := time.Now().Add(-a.cfg.DedupRetention)
		for el := a.finished.Front(); el != nil; {
			next := el.Next()
			if el.Value.(*jobEntry).result.FinishedAt.Before(cutoff) {
				a.forgetLocked(el)
			}
			el = next
		}
	}
	close(e.done)
}

func (a *Agent) forgetLocked(el *list.Element) {
	old := a.finished.Remove(el).(*jobEntry)
	delete(a.jobs, old.env.ID)
}

// pruneEvery is how many finished jobs pass between two prunings of the
// finished jobs by age (in memory and in the job table).
const pruneEvery = 64

// record writes a finished job to the job table, if the agent has one, and
// prunes the table now and then. A failed write is logged: the job's
// result still goes to the manager, only a restart before the manager has
// it would run the job again.
func (a *Agent) record(ctx context.Context, e *jobEntry, res proto.JobResult) {
	if a.cfg.Finished == nil {
		return
	}
	err := a.cfg.Finished.Put(jobtable.Record{Endpoint: e.env.Endpoint, Verb: e.env.Verb, Result: res, StoredAt: res.FinishedAt})
	if err != nil {
		a.logger.WarnContext(ctx, "finished job not recorded; a redelivery after a restart would run it again", "error", err)
	}
	if a.recorded.Add(1)%pruneEvery == 0 {
		a.pruneTable(ctx)
	}
}

// pruneTable drops from the job table what the agent would no longer
// remember.
func (a *Agent) pruneTable(ctx context.Context) {
	n, err := a.cfg.Finished.Prune(time.Now().Add(-a.cfg.DedupRetention), a.cfg.DedupSize)
	if err != nil {
		a.logger.WarnContext(ctx, "prune the job table", "error", err)
	} else if n > 0 {
		a.logger.DebugContext(ctx, "job table pruned", "records", n)
	}
}

// loadFinished seeds the finished jobs from the job table (at New): the
// jobs of an earlier run of this agent are answered, not run again.
func (a *Agent) loadFinished() error {
	a.pruneTable(a.baseCtx)
	recs, err := a.cfg.Finished.Load()
	if err != nil {
		return err
	}
	for _, r := range recs { // oldest first: the newest end up in front
		if !r.Result.Status.Final() || a.jobs[r.Result.JobID] != nil {
			continue
		}
		e := &jobEntry{
			env:     proto.JobEnvelope{ID: r.Result.JobID, Endpoint: r.Endpoint, Verb: r.Verb},
			status:  r.Result.Status,
			result:  r.Result,
			started: r.Result.StartedAt,
			done:    make(chan struct{}),
		}
		close(e.done)
		e.elem = a.finished.PushFront(e)
		a.jobs[e.env.ID] = e
	}
	for a.finished.Len() > a.cfg.DedupSize {
		a.forgetLocked(a.finished.Back())
	}
	if len(recs) > 0 {
		a.logger.Info("finished jobs loaded from the job table", "jobs", a.finished.Len())
	}
	return nil
}

// dropLocked forgets a job that did not finish (shutdown): a later delivery
// runs it again.
func (a *Agent) dropLocked(e *jobEntry) {
	e.dropped = true
	delete(a.jobs, e.env.ID)
	close(e.done)
}
