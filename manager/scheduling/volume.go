package scheduling

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// schedule_volume (spec/agents.md §2.1): a standalone volume created
// without a storage node waits in scheduling; a scheduler daemon chooses a
// node on the view served here, and the leader re-checks the node (it
// exists, its agent is online, the volume fits its StorageUsage) and applies
// the plan with the job sta-handle.<node>.create_volume in one txn.

// GetVolumeView returns the view a volume is placed in (leader only, as
// GetView).
func (s *Service) GetVolumeView(_ context.Context, req proto.GetVolumeViewRequest) (*proto.VolumeSchedView, error) {
	if !s.ap.IsLeader() {
		return nil, errs.New(errs.NoLeader, "this manager is not the leader")
	}
	var w *proto.VolumeSchedView
	err := s.store.View(func(tx *state.Tx) error {
		var err error
		w, err = VolumeSnapshot(tx, req.VolumeID)
		return err
	})
	return w, err
}

// SubmitVolumePlan re-checks a volume placement and applies it; a node that
// no longer fits is errs.Conflict ("stale plan …").
func (s *Service) SubmitVolumePlan(ctx context.Context, req proto.SubmitVolumePlanRequest) (*proto.SubmitVolumePlanResponse, error) {
	var resp *proto.SubmitVolumePlanResponse
	err := s.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		var err error
		resp, err = applyVolumePlan(tx, b, &req, s.now())
		return err
	})
	if err != nil {
		return nil, err
	}
	s.logger.Info("volume plan applied", "volume_id", req.VolumeID, "storage_node_id", req.StorageNodeID,
		"job_id", resp.JobID, "already_applied", resp.AlreadyApplied)
	return resp, nil
}

// ScheduleVolumeFailed marks a volume that cannot be placed deleted, with
// the reason; idempotent.
func (s *Service) ScheduleVolumeFailed(ctx context.Context, req proto.ScheduleVolumeFailedRequest) (*proto.ScheduleVolumeFailedResponse, error) {
	err := s.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		return failVolume(tx, b, req.VolumeID, req.Reason, s.now())
	})
	if err != nil {
		return nil, err
	}
	s.logger.Info("volume scheduling failed; volume deleted", "volume_id", req.VolumeID, "reason", req.Reason)
	return &proto.ScheduleVolumeFailedResponse{}, nil
}

// VolumeSnapshot reads the wire view of a volume's placement: every storage
// node with its liveness and free space, and the volume.
func VolumeSnapshot(tx *state.Tx, volumeID string) (*proto.VolumeSchedView, error) {
	var v proto.Volume
	if _, err := tx.Get(proto.KindVolume, volumeID, &v); err != nil {
		if errs.Is(err, errs.NotFound) {
			return nil, errs.New(errs.UnknownVolume, "Unknown volume: %s", volumeID)
		}
		return nil, err
	}
	w := &proto.VolumeSchedView{Index: tx.LastIndex(), StorageNodes: []proto.SchedStorageNode{},
		Volume: proto.SchedVolumeRequest{
			ID: v.ID, AccountID: v.AccountID, ServiceType: v.ServiceType, State: v.State,
			StorageNodeID: deref(v.StorageNodeID), SizeBytes: v.Size,
		}}
	err := each(tx, proto.KindStorageNode, func(sn *proto.StorageNode, _ state.Meta) error {
		free, err := storageFree(tx, sn)
		if err != nil {
			return err
		}
		w.StorageNodes = append(w.StorageNodes, proto.SchedStorageNode{
			ID: sn.ID, NodeID: sn.NodeID, Online: nodeIsOnline(tx, sn.NodeID), FreeBytes: free,
		})
		return nil
	})
	return w, err
}

// applyVolumePlan re-checks a volume plan against tx and adds its ops to b.
func applyVolumePlan(tx *state.Tx, b *state.Builder, req *proto.SubmitVolumePlanRequest, now time.Time) (*proto.SubmitVolumePlanResponse, error) {
	var v proto.Volume
	vm, err := tx.Get(proto.KindVolume, req.VolumeID, &v)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.New(errs.UnknownVolume, "Unknown volume: %s", req.VolumeID)
	}
	if err != nil {
		return nil, err
	}
	resp := &proto.SubmitVolumePlanResponse{VolumeID: v.ID, StorageNodeID: req.StorageNodeID}
	if v.State != proto.VolumeScheduling {
		if v.StorageNodeID != nil && *v.StorageNodeID == req.StorageNodeID && v.State != proto.VolumeDeleted {
			resp.AlreadyApplied = true
			return resp, nil
		}
		return nil, errs.New(errs.InvalidVolumeState, "volume %s is %s, not %s", v.ID, v.State, proto.VolumeScheduling)
	}
	if v.StoreType == proto.VolumeLocal || v.InstanceID != nil {
		// An instance's volumes are placed with the instance (submit_plan).
		return nil, badPlan("volume %s belongs to an instance's placement", v.ID)
	}
	var sn proto.StorageNode
	sm, err := tx.Get(proto.KindStorageNode, req.StorageNodeID, &sn)
	if errs.Is(err, errs.NotFound) {
		return nil, stale("storage node %q does not exist", req.StorageNodeID)
	}
	if err != nil {
		return nil, err
	}
	if !nodeIsOnline(tx, sn.NodeID) {
		return nil, stale("storage node %s (%s) is not online", sn.ID, sn.NodeID)
	}
	// A node changed concurrently (its offering shrunk) makes the plan be
	// re-checked.
	b.Check(proto.KindStorageNode, sn.ID, sm.ModifyIndex)
	c := NewStorageCharges(tx, b)
	fits, err := c.Charge(&sn, v.ID, v.Size)
	if err != nil {
		return nil, err
	}
	if !fits {
		return nil, stale("storage node %s has no room for volume %s (%d bytes) any more", sn.ID, v.ID, v.Size)
	}
	c.Flush()
	v.State = proto.VolumePending
	v.StorageNodeID = &sn.ID
	v.Device = &proto.VolumeDevice{StorageNodeID: sn.ID, StorageIP: sn.IPAddress}
	v.LastError = ""
	v.UpdatedAt = now
	b.Update(proto.KindVolume, v.ID, vm.ModifyIndex, &v)
	j, err := jobs.New(now, proto.StaHandle(sn.NodeID), proto.VerbCreateVolume, v.ID, proto.StaCreateVolumeRequest{VolumeID: v.ID})
	if err != nil {
		return nil, err
	}
	jobs.Enqueue(b, j)
	resp.JobID = j.ID
	return resp, nil
}

// failVolume marks a volume still in scheduling deleted with reason as its
// last error (nothing was charged for it yet); a deleted volume is left as
// it is.
func failVolume(tx *state.Tx, b *state.Builder, volumeID, reason string, now time.Time) error {
	var v proto.Volume
	m, err := tx.Get(proto.KindVolume, volumeID, &v)
	if errs.Is(err, errs.NotFound) {
		return errs.New(errs.UnknownVolume, "Unknown volume: %s", volumeID)
	}
	if err != nil {
		return err
	}
	if v.State == proto.VolumeDeleted {
		return nil
	}
	if v.State != proto.VolumeScheduling {
		return errs.New(errs.InvalidVolumeState, "volume %s is %s, not %s", v.ID, v.State, proto.VolumeScheduling)
	}
	v.State = proto.VolumeDeleted
	v.DeletedAt = &now
	v.UpdatedAt = now
	v.LastError = reason
	b.Update(proto.KindVolume, v.ID, m.ModifyIndex, &v)
	return nil
}

// failUnplacedVolume is the dispatcher's hook for jobs that ended without
// success and leave a standalone volume where nothing moves it any more:
// schedule_volume (volume still scheduling) and sta-handle create_volume
// (volume still pending or creating, as when the storage agent never took
// the job before its deadline). The volume ends deleted with the reason, as
// a create_volume failure does on the agent (spec §8), and its space is
// given back.
func failUnplacedVolume(tx *state.Tx, b *state.Builder, j proto.Job, reason string, now time.Time) error {
	id, _ := j.Params["volume_id"].(string)
	var v proto.Volume
	m, err := tx.Get(proto.KindVolume, id, &v)
	if err != nil {
		return nil
	}
	switch {
	case j.QueueName == proto.EndpointScheduler && j.Verb == proto.VerbScheduleVolume && v.State == proto.VolumeScheduling:
		return failVolume(tx, b, id, "scheduling did not finish: "+reason, now)
	case proto.EndpointBase(j.QueueName) == proto.EndpointStaHandle && j.Verb == proto.VerbCreateVolume &&
		(v.State == proto.VolumePending || v.State == proto.VolumeCreating):
		if err := ReleaseVolume(tx, b, &v); err != nil {
			return err
		}
		v.State = proto.VolumeDeleted
		v.DeletedAt = &now
		v.UpdatedAt = now
		v.LastError = "create_volume did not finish: " + reason
		b.Update(proto.KindVolume, v.ID, m.ModifyIndex, &v)
	}
	return nil
}
