package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler"
)

// ScheduleVolume is the job scheduler.schedule_volume (spec §2.1): it places
// a standalone volume on a storage node with the service type's storage node
// scheduler, planning again on a fresh view when the leader finds the plan
// stale, and reports a volume no node can hold (the leader marks it deleted
// with the reason, and the job fails with it).
func (p *Placer) ScheduleVolume(ctx context.Context, req proto.ScheduleVolumeRequest) (proto.ScheduleVolumeResponse, error) {
	resp := proto.ScheduleVolumeResponse{VolumeID: req.VolumeID}
	if req.VolumeID == "" {
		return resp, errs.New(errs.InvalidParameter, "volume_id is empty")
	}
	var lastStale error
	for attempt := 1; attempt <= p.cfg.PlanAttempts; attempt++ {
		var w proto.VolumeSchedView
		if err := p.call(ctx, proto.VerbGetVolumeView, proto.GetVolumeViewRequest(req), &w); err != nil {
			return resp, err
		}
		switch w.Volume.State {
		case proto.VolumeScheduling:
		case proto.VolumeDeleted, proto.VolumeDeleting:
			return resp, errs.New(errs.InvalidVolumeState, "volume %s is %s", req.VolumeID, w.Volume.State)
		default:
			// Placed already: this job was delivered again after a run whose
			// result was lost.
			p.logger.InfoContext(ctx, "volume already placed", "volume_id", req.VolumeID,
				"state", w.Volume.State, "storage_node_id", w.Volume.StorageNodeID)
			resp.StorageNodeID = w.Volume.StorageNodeID
			return resp, nil
		}
		sn, err := p.placeVolume(&w)
		if err != nil {
			return resp, p.failVolume(ctx, req.VolumeID, err)
		}
		var pr proto.SubmitVolumePlanResponse
		err = p.call(ctx, proto.VerbSubmitVolumePlan,
			proto.SubmitVolumePlanRequest{VolumeID: req.VolumeID, StorageNodeID: sn, ViewIndex: w.Index}, &pr)
		switch {
		case err == nil:
			p.logger.InfoContext(ctx, "volume placed", "volume_id", req.VolumeID, "storage_node_id", pr.StorageNodeID,
				"attempt", attempt, "job_id", pr.JobID, "already_applied", pr.AlreadyApplied)
			resp.StorageNodeID = pr.StorageNodeID
			return resp, nil
		case errs.Is(err, errs.Conflict):
			p.logger.InfoContext(ctx, "volume plan rejected as stale; planning again", "volume_id", req.VolumeID,
				"attempt", attempt, "error", err)
			lastStale = err
			select {
			case <-ctx.Done():
				return resp, ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(replanJitter)))):
			}
			continue
		case errs.Is(err, errs.InvalidVolumeState), errs.Is(err, errs.UnknownVolume), ctx.Err() != nil, rpc.IsRetryable(err):
			// Not ours any more, or the managers are out of reach until the
			// job's deadline: the job fails and the volume is left as it is
			// (the dispatcher's failure hook ends a volume still scheduling).
			return resp, err
		default:
			return resp, p.failVolume(ctx, req.VolumeID, err)
		}
	}
	return resp, p.failVolume(ctx, req.VolumeID, errs.New(errs.OutOfDiskSpace,
		"no placement held after %d attempts: %v", p.cfg.PlanAttempts, lastStale))
}

// placeVolume runs the storage node scheduler of the volume's service type.
func (p *Placer) placeVolume(w *proto.VolumeSchedView) (string, error) {
	s, err := p.schedulers(w.Volume.ServiceType, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	if err != nil {
		return "", err
	}
	v := &scheduler.View{StorageNodes: make([]scheduler.StorageNode, 0, len(w.StorageNodes))}
	for _, sn := range w.StorageNodes {
		v.StorageNodes = append(v.StorageNodes, scheduler.StorageNode{ID: sn.ID, NodeID: sn.NodeID, Online: sn.Online, FreeBytes: sn.FreeBytes})
	}
	sn, err := s.PlaceVolume(v, &scheduler.VolumeRequest{ID: w.Volume.ID, SizeBytes: w.Volume.SizeBytes})
	if err != nil {
		return "", err
	}
	return sn.ID, nil
}

// failVolume reports that the volume cannot be placed and returns the job's
// error (OutOfDiskSpace for "no storage node fits").
func (p *Placer) failVolume(ctx context.Context, volumeID string, cause error) error {
	reason := cause.Error()
	var se *scheduler.SchedulingError
	if errors.As(cause, &se) {
		reason = se.Kind.String() + ": " + se.Msg
		cause = errs.New(jobKind(se.Kind), "%s", reason)
	}
	p.logger.WarnContext(ctx, "volume cannot be placed", "volume_id", volumeID, "reason", reason)
	if err := p.call(ctx, proto.VerbScheduleVolumeFailed, proto.ScheduleVolumeFailedRequest{VolumeID: volumeID, Reason: reason}, nil); err != nil {
		return fmt.Errorf("%w (and reporting the failure: %v)", cause, err)
	}
	return cause
}
