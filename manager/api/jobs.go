package api

import (
	"context"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Jobs (spec §2.14): the durable work queue (copy_to and, later, the job
// dispatcher). Routes create no jobs; they list, show and cancel them.
func (a *API) registerJobs() {
	a.route("GET /jobs", read, a.listJobs)
	a.route("GET /jobs/{id}", read, a.showJob)
	a.route("DELETE /jobs/{id}", write, a.cancelJob)
}

func optString(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func optMap(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

func jobDoc(_ *state.Tx, v *proto.Job, _ state.Meta) (*format.Map, error) {
	return format.NewMap(16).
		Set("id", v.ID).
		Set("uuid", v.ID).
		Set("parent_id", optString(v.ParentID)).
		Set("queue_name", v.QueueName).
		Set("params", optMap(v.Params)).
		Set("resource_id", v.ResourceID).
		Set("worker_id", optString(v.WorkerID)).
		Set("state", v.State).
		Set("retry_max", v.RetryMax).
		Set("retry_count", v.RetryCount).
		Set("finish_status", optString(v.FinishStatus)).
		Set("finish_message", optMap(v.FinishMessage)).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("finished_at", v.FinishedAt).
		Set("started_at", v.StartedAt), nil
}

func (a *API) listJobs(_ context.Context, req *Request) (any, error) {
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	// Jobs have no deleted_at or terminated_at: upstream's query failed on
	// the missing column (400/110), even when there were no jobs at all.
	for _, r := range o.ranges {
		if r.key != "created_at" {
			return nil, noColumn(r.key)
		}
	}
	st, hasState := req.Params.StrOK("state")
	return a.view(func(tx *state.Tx) (any, error) {
		return listTx(tx, o, proto.KindJob, func(v *proto.Job) bool {
			return (!hasState || v.State == st) && jobVisible(tx, req, v)
		}, jobDoc)
	})
}

func (a *API) showJob(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getJob(tx, req)
		if err != nil {
			return nil, err
		}
		return jobDoc(tx, v, m)
	})
}

// cancelJob finishes a pending or running job with finish_status cancel (the
// intended behaviour; upstream called a missing method and crashed).
func (a *API) cancelJob(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getJob(tx, req)
		if err != nil {
			return nil, err
		}
		if v.State == jobs.StateFinished {
			return nil, errs.New(errs.InvalidParameter, "job %s is already finished", v.ID)
		}
		// The dispatcher sees the queue entry go and tells the agent to stop.
		const reason = "cancelled through the API"
		if a.onJobEnd != nil && tx.Exists(proto.KindJobQueue, v.ID) {
			if err := a.onJobEnd(tx, b, *v, reason, a.now()); err != nil {
				return nil, err
			}
		}
		jobs.Finish(b, *v, m.ModifyIndex, a.now(), jobs.FinishCancel, reason, nil)
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// getJob is the job of the path, "not found" for an account whose records
// the job does not work on.
func getJob(tx *state.Tx, req *Request) (*proto.Job, state.Meta, error) {
	v, m, err := getPub[proto.Job](tx, proto.KindJob, proto.PrefixJob, req.ID("id"))
	if err == nil && !jobVisible(tx, req, v) {
		return nil, m, errs.New(errs.UnknownUUIDResource, "%s", v.ID)
	}
	return v, m, err
}
