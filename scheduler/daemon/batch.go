package daemon

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler"
)

// Batched placement. Placing one instance per job cost a whole cluster view
// (every host, lease and MAC, O(instances) to build, send and decode) and a
// raft commit of its own, and concurrent jobs of one daemon raced each other
// for the same "least used host" and "next free address". The batcher
// places all the schedule_instance jobs waiting at one moment together: one
// view, the placements made one after another on it (each recorded in the
// view before the next, so one batch never gives an address, MAC or
// capacity twice), one submit_plan the leader applies in one transaction.
//
// The daemon keeps the view between batches and records its own
// placements in it, asking the leader only for the new requests; it reads
// a whole view again when the kept one is older than ViewMaxAge, when the
// leader rejected a plan as stale (another writer got there first), or when
// nothing fitted in it. The leader re-checks every plan against its state,
// so a view that is a little behind costs a re-plan, never an overcommit.

// batchReq is one schedule_instance job waiting for its batch.
type batchReq struct {
	ctx     context.Context
	id      string
	attempt int // plans made for it so far
	done    chan batchResult
	// fresh: the last placement failed on a kept view; the next one must
	// use a fresh view before the failure counts.
	fresh bool
}

type batchResult struct {
	host string
	err  error
}

// batcher runs rounds while jobs wait; no goroutine runs when none do.
type batcher struct {
	p *Placer

	mu      sync.Mutex
	pending []*batchReq
	running bool

	// The kept view (used by one round at a time: rounds run one by one).
	view      *scheduler.View
	viewIndex uint64
	viewAt    time.Time
}

// scheduleBatched queues the instance for the next round and waits for its
// outcome.
func (b *batcher) schedule(ctx context.Context, id string) (string, error) {
	r := &batchReq{ctx: ctx, id: id, done: make(chan batchResult, 1)}
	b.enqueue(r)
	select {
	case res := <-r.done:
		return res.host, res.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (b *batcher) enqueue(rs ...*batchReq) {
	b.mu.Lock()
	b.pending = append(b.pending, rs...)
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		go b.run()
	}
}

// run takes batches until none wait.
func (b *batcher) run() {
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		n := min(len(b.pending), b.p.cfg.BatchSize)
		batch := append([]*batchReq(nil), b.pending[:n]...)
		b.pending = append(b.pending[:0], b.pending[n:]...)
		b.mu.Unlock()
		b.round(batch)
	}
}

func (r *batchReq) finish(host string, err error) {
	r.done <- batchResult{host: host, err: err}
}

// roundContext lasts as long as the longest job of the round may wait: the
// calls retry (another manager, a new leader) until then, as a job's own
// calls do until its deadline.
func roundContext(rs []*batchReq) (context.Context, context.CancelFunc) {
	var last time.Time
	for _, r := range rs {
		d, ok := r.ctx.Deadline()
		if !ok {
			return context.WithCancel(context.Background())
		}
		if d.After(last) {
			last = d
		}
	}
	return context.WithDeadline(context.Background(), last)
}

// viewFresh reports whether the kept view may be used for a round.
func (b *batcher) viewFresh() bool {
	return b.view != nil && time.Since(b.viewAt) < b.p.cfg.viewMaxAge()
}

func (b *batcher) dropView() { b.view = nil }

// round places one batch.
func (b *batcher) round(batch []*batchReq) {
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.finish("", r.ctx.Err()) // its job ended while it waited
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := roundContext(live)
	defer cancel()

	ids := make([]string, len(live))
	needFresh := !b.viewFresh()
	for i, r := range live {
		ids[i] = r.id
		needFresh = needFresh || r.fresh
	}
	var w proto.SchedView
	if err := b.p.call(ctx, proto.VerbGetView, proto.GetViewRequest{InstanceIDs: ids, RequestsOnly: !needFresh}, &w); err != nil {
		for _, r := range live {
			r.finish("", err)
		}
		return
	}
	if needFresh {
		v, _, err := scheduler.ViewFromProto(&w)
		if err != nil {
			b.dropView()
			for _, r := range live {
				r.finish("", errs.Wrap(errs.Internal, err, "decode view"))
			}
			return
		}
		v.MacRanges = b.p.macRanges
		b.view, b.viewIndex, b.viewAt = v, w.Index, time.Now()
	}
	reqs := make(map[string]*proto.SchedRequest, len(w.Requests))
	for i := range w.Requests {
		reqs[w.Requests[i].InstanceID] = &w.Requests[i]
	}

	var (
		plans   []proto.SubmitPlanRequest
		planned []*batchReq
		again   []*batchReq
	)
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for _, r := range live {
		req, ok := reqs[r.id]
		if !ok {
			r.finish("", errs.New(errs.UnknownInstance, "Unknown instance: %s", r.id))
			continue
		}
		switch req.State {
		case proto.InstanceScheduling:
		case proto.InstanceTerminated:
			r.finish("", errs.New(errs.InvalidInstanceState, "instance %s is terminated", r.id))
			continue
		default:
			b.p.logger.InfoContext(r.ctx, "instance already placed", "instance_id", r.id,
				"state", req.State, "host_node_id", req.HostNodeID)
			r.finish(req.HostNodeID, nil)
			continue
		}
		r.attempt++
		plan, err := b.place(req, r.attempt, rnd)
		if err != nil {
			var se *scheduler.SchedulingError
			if errors.As(err, &se) && !needFresh {
				// Nothing fitted in a kept view: it may miss capacity given
				// back since; only a fresh view's answer counts.
				r.attempt--
				r.fresh = true
				again = append(again, r)
				continue
			}
			go r.finish("", b.p.fail(r.ctx, r.id, err))
			continue
		}
		plan.ViewIndex = b.viewIndex
		plans = append(plans, plan)
		planned = append(planned, r)
	}
	if len(plans) > 0 {
		again = append(again, b.submit(ctx, plans, planned)...)
	}
	if len(again) > 0 {
		b.dropView()
		b.enqueue(again...)
	}
}

// place makes one request's plan on the kept view, recording it there.
func (b *batcher) place(req *proto.SchedRequest, attempt int, rnd *rand.Rand) (proto.SubmitPlanRequest, error) {
	s, err := b.p.schedulers(req.ServiceType, rnd)
	if err != nil {
		return proto.SubmitPlanRequest{}, err
	}
	r := scheduler.RequestFromProto(req)
	if hasHostParam(&r) {
		s.Host = scheduler.SpecifyNode{}
	}
	run := func(v *scheduler.View) (proto.SubmitPlanRequest, error) {
		pl, err := s.PlaceOne(v, &r)
		if err != nil {
			return proto.SubmitPlanRequest{}, err
		}
		return scheduler.PlacementToProto(&pl), nil
	}
	return b.p.spread(b.view, run, attempt, rnd, s.IP)
}

// submit sends the batch's plans and sorts out their results: the placed
// and the failed are finished, the stale are returned to be planned again.
func (b *batcher) submit(ctx context.Context, plans []proto.SubmitPlanRequest, reqs []*batchReq) (again []*batchReq) {
	var resp proto.SubmitPlanResponse
	err := b.p.call(ctx, proto.VerbSubmitPlan, proto.SubmitPlanRequest{Plans: plans}, &resp)
	if err == nil && len(resp.Results) != len(plans) {
		err = errs.New(errs.Internal, "submit_plan answered %d results for %d plans", len(resp.Results), len(plans))
	}
	if err != nil {
		// What the leader applied is unknown: forget the kept view. A plan
		// applied whose answer was lost is found placed by the next round.
		b.dropView()
		for _, r := range reqs {
			switch {
			case errs.Is(err, errs.Conflict) && r.attempt < b.p.cfg.PlanAttempts:
				again = append(again, r)
			case rpc.IsRetryable(err) || ctx.Err() != nil:
				r.finish("", err)
			default:
				go r.finish("", b.p.fail(r.ctx, r.id, err))
			}
		}
		return again
	}
	for i, res := range resp.Results {
		r := reqs[i]
		perr := rpc.FromWire(res.Error)
		switch {
		case perr == nil:
			b.p.logger.InfoContext(r.ctx, "instance placed", "instance_id", r.id, "host_node_id", res.HostNodeID,
				"attempt", r.attempt, "batch", len(plans), "vifs", res.VifIDs, "jobs", res.JobIDs,
				"already_applied", res.AlreadyApplied)
			r.finish(res.HostNodeID, nil)
		case errs.Is(perr, errs.Conflict):
			b.p.logger.InfoContext(r.ctx, "plan rejected as stale; planning again", "instance_id", r.id,
				"attempt", r.attempt, "error", perr)
			if r.attempt >= b.p.cfg.PlanAttempts {
				go r.finish("", b.p.fail(r.ctx, r.id, errs.New(errs.OutOfHostCapacity,
					"no placement held after %d attempts: %v", r.attempt, perr)))
				continue
			}
			again = append(again, r)
		case errs.Is(perr, errs.InvalidInstanceState), errs.Is(perr, errs.UnknownInstance):
			r.finish("", perr)
		default:
			go r.finish("", b.p.fail(r.ctx, r.id, perr))
		}
	}
	return again
}
