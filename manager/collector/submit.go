package collector

import (
	"context"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// submitClaimScope prefixes the uniqueness claims of submitted jobs:
// "submit_job/<parent job>/<key>" → the job made for it.
const submitClaimScope = "submit_job/"

// submitJob is job-collector submit_job: a running job asks for a
// follow-up job (sta create_volume_and_run_instance → hva-handle
// wait_volumes_available; a migration's destination → the source's
// start_migration; the source's jobs submitted from inside a job).
// The job is made durable like any other; the (parent, key) pair is claimed
// in the same txn, so a re-run parent gets the job it submitted before
// instead of a second one.
func (s *Service) submitJob(ctx context.Context, req proto.SubmitJobRequest) (proto.SubmitJobResponse, error) {
	var out proto.SubmitJobResponse
	switch {
	case req.ParentID == "" || req.Key == "":
		return out, errs.New(errs.InvalidParameter, "submit_job needs parent_id and key")
	case proto.EndpointNode(req.Endpoint) == "" && req.Endpoint != proto.EndpointScheduler:
		return out, errs.New(errs.InvalidParameter, "endpoint %q names no agent", req.Endpoint)
	}
	if _, ok := proto.LookupJobVerb(req.Endpoint, req.Verb); !ok {
		return out, errs.New(errs.InvalidParameter, "unknown job verb %s.%s", req.Endpoint, req.Verb)
	}
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		claim := submitClaimScope + req.ParentID + "/" + req.Key
		var c proto.UniqueName
		if _, err := tx.Get(proto.KindUniqueName, claim, &c); err == nil {
			out.JobID = c.Owner
			return nil
		} else if !errs.Is(err, errs.NotFound) {
			return err
		}
		if !tx.Exists(proto.KindJob, req.ParentID) {
			return errs.New(errs.InvalidParameter, "unknown parent job %s", req.ParentID)
		}
		var args any
		if len(req.Args) > 0 {
			args = req.Args
		}
		j, err := jobs.New(s.d.Now(), req.Endpoint, req.Verb, req.ResourceID, args)
		if err != nil {
			return errs.Wrap(errs.InvalidParameter, err, "submit_job args")
		}
		parent := req.ParentID
		j.ParentID = &parent
		jobs.Enqueue(b, j)
		b.Create(proto.KindUniqueName, claim, proto.UniqueName{ID: claim, Owner: j.ID})
		out.JobID = j.ID
		return nil
	})
	return out, err
}
