package handlers

import (
	"context"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
)

// evacuationBootKey names the boot a cleanup submits (submit_job dedups by
// parent job and key, so a cleanup run again does not boot twice).
const evacuationBootKey = "evacuation_boot"

// afterEvacuationCleanup finishes the cleanup of an instance evacuated from
// a host that was not fenced (proto.HvaCleanupRequest): its domain is gone
// from here, so its shared volumes are recorded free and its boot on the
// new host is submitted. Only volumes still detaching are freed: a cleanup
// run again after the new host attached them must not undo that.
func (h *Handlers) afterEvacuationCleanup(ctx context.Context, v *proto.InstanceView, req proto.HvaCleanupRequest) error {
	if len(req.FreeVolumes) == 0 && req.Then == nil {
		return nil
	}
	states := make(map[string]string, len(v.Volumes))
	for _, vol := range v.Volumes {
		states[vol.ID] = vol.State
	}
	available := proto.VolumeAvailable
	for _, id := range req.FreeVolumes {
		if states[id] != proto.VolumeDetaching {
			continue
		}
		if err := h.coll.UpdateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: id, State: &available}); err != nil {
			return annotate(err, "record volume "+id+" detached from "+h.cfg.NodeID)
		}
	}
	then := req.Then
	if then == nil {
		return nil
	}
	// The boot only makes sense for the instance still waiting for it on
	// the host it names.
	if v.State != proto.InstancePending || v.HostNode == nil || v.HostNode.NodeID != proto.EndpointNode(then.Endpoint) {
		h.logger.InfoContext(ctx, "evacuated instance moved on; not submitting its boot", "instance_id", v.ID,
			"state", v.State, "boot", then.Endpoint)
		return nil
	}
	job, ok := agent.JobFromContext(ctx)
	if !ok {
		return errs.New(errs.Internal, "cleanup of %s runs outside a job", v.ID)
	}
	id, err := h.coll.SubmitJob(ctx, proto.SubmitJobRequest{ParentID: job.ID, Key: evacuationBootKey,
		Endpoint: then.Endpoint, Verb: then.Verb, Args: then.Args, ResourceID: then.ResourceID})
	if err != nil {
		return annotate(err, "submit the boot of "+v.ID+" on "+then.Endpoint)
	}
	h.logger.InfoContext(ctx, "old domain removed; boot submitted on the new host", "instance_id", v.ID,
		"boot", then.Endpoint+"/"+then.Verb, "boot_job_id", id)
	return nil
}
