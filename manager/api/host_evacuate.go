package api

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// PUT /host_nodes/:id/evacuate (spec §2.4 item 6): the original made a
// synchronous RPC to the scheduler's evacuate_from and returned its result
// ({scheduled, failed}). Here the evacuation is a durable job like every
// other (scheduler.evacuate_from, the one the HA monitor submits for a
// failed host), which may take a while (each instance is re-placed and
// handed to the leader): the route submits it, or finds the host's
// evacuation already running (then it changes nothing), and answers at
// once, like the API's other asynchronous operations (copy_to answers its
// job). With api.evacuate_wait_ms it first waits up to that long for the
// job to end. The response keeps the original's keys first and adds halted
// (instances without HA), reasons, job_id and state: "running" (the lists
// are empty; GET /jobs/:id follows the job, the host's scheduling_enabled
// and the instances' host_node, state and last_error show what it did) or
// "finished" with the result.
//
// An online host's instances are moved after its hva removed their old
// domains. For an offline host the operator vouches that it runs nothing
// (it may not have fenced itself): its instances boot on their new hosts at
// once, and the host is fenced, so when its hva comes back it stops what
// is left and removes the domains of the instances that moved.
func (a *API) registerHostEvacuate() {
	a.route("PUT /host_nodes/{id}/evacuate", write, a.evacuateHostNode)
}

// MaxEvacuateWait bounds api.evacuate_wait_ms: a request forwarded from a
// follower must be answered well within the forwarder's header timeout.
const MaxEvacuateWait = 30 * time.Second

// evacuatePoll is how often a waiting evacuate checks its job.
const evacuatePoll = 50 * time.Millisecond

func (a *API) evacuateHostNode(ctx context.Context, req *Request) (any, error) {
	var hostID, jobID string
	_, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		hn, m, err := getPub[proto.HostNode](tx, proto.KindHostNode, proto.PrefixHostNode, req.ID("id"))
		if err != nil {
			return nil, err
		}
		status, err := nodeStatus(tx, hn.NodeID)
		if err != nil {
			return nil, err
		}
		reason := "evacuated by an operator (PUT /host_nodes/" + hn.ID + "/evacuate)"
		if status != nodeOnline {
			reason += " while offline"
		}
		hostID = hn.ID
		jobID, err = scheduling.StartEvacuation(tx, b, hn, m, scheduling.EvacuationStart{
			Reason: reason, Fence: status != nodeOnline}, a.now())
		return nil, err
	})
	if err != nil {
		return nil, err
	}
	if wait := time.Duration(a.cfg.EvacuateWaitMS) * time.Millisecond; wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		t := time.NewTicker(evacuatePoll)
		defer t.Stop()
		for a.jobRunning(jobID) && wctx.Err() == nil {
			select {
			case <-wctx.Done():
			case <-t.C:
			}
		}
	}
	return a.view(func(tx *state.Tx) (any, error) { return evacuationDoc(tx, hostID, jobID) })
}

func (a *API) jobRunning(id string) bool {
	running := false
	_ = a.b.Store().View(func(tx *state.Tx) error {
		running = tx.Exists(proto.KindJobQueue, id)
		return nil
	})
	return running
}

// evacuationDoc renders the evacuation's result.
func evacuationDoc(tx *state.Tx, hostID, jobID string) (any, error) {
	var j proto.Job
	if _, err := tx.Get(proto.KindJob, jobID, &j); err != nil {
		return nil, err
	}
	list := func(k string) any {
		if v, ok := j.Result[k].([]any); ok {
			return v
		}
		return []any{}
	}
	reasons := map[string]any{}
	if v, ok := j.Result["reasons"].(map[string]any); ok {
		reasons = v
	}
	st := "finished"
	if tx.Exists(proto.KindJobQueue, j.ID) {
		st = "running"
	}
	doc := format.NewMap(8).
		Set("scheduled", list("scheduled")).
		Set("failed", list("failed")).
		Set("halted", list("halted")).
		Set("reasons", reasons).
		Set("host_node_id", hostID).
		Set("job_id", j.ID).
		Set("state", st)
	if j.FinishStatus != nil && *j.FinishStatus != jobs.FinishSuccess {
		doc.Set("error", j.FinishMessage["message"])
	}
	return doc, nil
}
