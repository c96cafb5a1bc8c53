package handlers

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/backup"
)

// ---- create_volume, create_volume_and_run_instance ----

// createVolume: pending → creating → (volume made, blank or from its backup
// object; exported) → available with its volume_device. On failure the
// volume file and target are removed and the volume becomes deleted
// (spec §2.6 "on failure").
func (h *Handlers) createVolume(ctx context.Context, req proto.StaCreateVolumeRequest) (proto.StaCreateVolumeResponse, error) {
	dev, err := h.create(ctx, req.VolumeID)
	return proto.StaCreateVolumeResponse{Device: dev}, err
}

// createVolumeAndRunInstance creates an instance's boot volume, then asks
// for hva-handle.<host> wait_volumes_available, which boots the instance
// once all its volumes are available. On failure the volume is deleted (as
// for create_volume) and the instance terminated (the manager finalizes it).
// The source downloaded through a temporary file here; the download is the
// same as create_volume's.
func (h *Handlers) createVolumeAndRunInstance(ctx context.Context, req proto.StaCreateVolumeAndRunInstanceRequest) (proto.StaCreateVolumeAndRunInstanceResponse, error) {
	if req.InstanceID == "" {
		return proto.StaCreateVolumeAndRunInstanceResponse{}, errs.New(errs.UndefinedInstanceID, "job without an instance id")
	}
	dev, err := h.create(ctx, req.VolumeID)
	if err == nil {
		err = h.submitBoot(ctx, req.InstanceID)
	}
	if err != nil {
		if interrupted(ctx) {
			return proto.StaCreateVolumeAndRunInstanceResponse{}, err
		}
		return proto.StaCreateVolumeAndRunInstanceResponse{}, h.terminateInstance(ctx, req.InstanceID, err)
	}
	return proto.StaCreateVolumeAndRunInstanceResponse{Device: dev}, nil
}

// submitBoot submits hva-handle.<host>.wait_volumes_available for the
// instance, once per job (the leader deduplicates by parent and key).
func (h *Handlers) submitBoot(ctx context.Context, instanceID string) error {
	inst, err := h.coll.GetInstance(ctx, instanceID)
	if err != nil {
		return annotate(err, "get instance "+instanceID)
	}
	if inst.State == proto.InstanceTerminated {
		// Deleted meanwhile: its finalize deletes the volume too.
		h.logger.InfoContext(ctx, "instance terminated while its volume was created; not booting it", "instance_id", instanceID)
		return nil
	}
	if inst.HostNode == nil || inst.HostNode.NodeID == "" {
		return errs.New(errs.InvalidInstanceState, "instance %s has no host node to boot on", instanceID)
	}
	job, _ := agent.JobFromContext(ctx)
	id, err := h.coll.SubmitJob(ctx, job.ID, proto.VerbWaitVolumesAvailable+"/"+instanceID,
		proto.HvaHandle(inst.HostNode.NodeID), proto.VerbWaitVolumesAvailable, instanceID,
		proto.HvaWaitVolumesAvailableRequest{InstanceID: instanceID})
	if err != nil {
		return annotate(err, "submit wait_volumes_available for "+instanceID)
	}
	h.logger.InfoContext(ctx, "boot of the instance submitted", "instance_id", instanceID, "boot_job_id", id)
	return nil
}

// terminateInstance reports a failed boot volume: the instance goes to
// terminated (the manager finalizes it).
func (h *Handlers) terminateInstance(ctx context.Context, id string, cause error) error {
	actx, cancel := h.afterwards(ctx)
	defer cancel()
	err := h.coll.UpdateInstance(actx, proto.UpdateInstanceRequest{InstanceID: id, State: ptr(proto.InstanceTerminated)})
	if err != nil && !errs.Is(err, errs.UnknownInstance) {
		return &errs.Error{Kind: errs.KindOf(cause), Err: cause,
			Msg: fmt.Sprintf("boot volume of instance %s failed, and terminating the instance failed too (%v)", id, err)}
	}
	return &errs.Error{Kind: errs.KindOf(cause), Err: cause, Msg: "boot volume of instance " + id + " failed; the instance was terminated"}
}

// create makes and exports a volume and marks it available.
func (h *Handlers) create(ctx context.Context, id string) (*proto.VolumeDevice, error) {
	if id == "" {
		return nil, errs.New(errs.UndefinedVolumeID, "job without a volume id")
	}
	unlock, err := h.locks.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	v, err := h.coll.GetVolume(ctx, id)
	if err != nil {
		return nil, annotate(err, "get volume "+id)
	}
	if err := h.checkNode(v); err != nil {
		return nil, err
	}
	switch v.State {
	case proto.VolumeAvailable, proto.VolumeAttaching, proto.VolumeAttached, proto.VolumeDetaching:
		// Done before (a redelivery): the volume must still be there and served.
		bv, err := h.store.Get(ctx, id)
		if err != nil {
			return nil, annotate(err, "volume "+id+" is "+v.State+" but its data")
		}
		return h.export(ctx, v, bv)
	case proto.VolumePending:
		if err := h.updateVolumeState(ctx, id, proto.VolumeCreating); err != nil {
			return nil, err
		}
	case proto.VolumeCreating:
		// A redelivery: carry on (the store has the volume or nothing).
	case proto.VolumeDeleting, proto.VolumeDeleted:
		// Deleted before it was made: make sure nothing of it is here.
		err := errs.New(errs.InvalidVolumeState, "volume %s is %s; not creating it", id, v.State)
		if derr := h.discard(ctx, id); derr != nil {
			return nil, errors.Join(err, derr)
		}
		return nil, err
	default:
		return nil, errs.New(errs.InvalidVolumeState, "volume %s is %s; create_volume wants it pending", id, v.State)
	}
	bv, err := h.build(ctx, v)
	var dev *proto.VolumeDevice
	if err == nil {
		dev, err = h.export(ctx, v, bv)
	}
	if err == nil {
		err = h.coll.UpdateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: id, State: ptr(proto.VolumeAvailable), Device: dev})
		if err == nil {
			return dev, nil
		}
		switch state, rerr := h.stateNow(ctx, id); {
		case rerr != nil:
			// The update may have been applied with its answer lost, and the
			// managers cannot say: the volume is kept (a redelivery finishes
			// it; the re-export serves it if it is available).
			return nil, errors.Join(annotate(err, "update volume "+id+" to available"),
				annotate(rerr, "read it back; the volume is kept"))
		case state == proto.VolumeAvailable:
			return dev, nil
		}
		err = annotate(err, "update volume "+id+" to available")
	}
	return nil, h.failCreate(ctx, id, err)
}

// stateNow reads back the state of a volume whose update failed: the
// update may have been applied and its answer lost.
func (h *Handlers) stateNow(ctx context.Context, id string) (string, error) {
	actx, cancel := h.afterwards(ctx)
	defer cancel()
	v, err := h.coll.GetVolume(actx, id)
	if err != nil {
		return "", err
	}
	return v.State, nil
}

// failCreate undoes a create: the target and the volume are removed and,
// unless the job was interrupted (it will run again), the volume becomes
// deleted.
func (h *Handlers) failCreate(ctx context.Context, id string, cause error) error {
	actx, cancel := h.afterwards(ctx)
	defer cancel()
	h.logger.WarnContext(ctx, "create failed; removing what it made", "volume_id", id, "error", cause)
	if err := h.discard(actx, id); err != nil {
		cause = errors.Join(cause, err)
	}
	if interrupted(ctx) {
		return cause
	}
	if err := h.updateVolumeState(actx, id, proto.VolumeDeleted); err != nil {
		return errors.Join(cause, err)
	}
	return &errs.Error{Kind: errs.KindOf(cause), Err: cause, Msg: "create volume " + id + " failed; the volume was deleted"}
}

// build makes the volume's data: found from an earlier delivery (creates
// are atomic, so it is complete), blank, or from its backup object.
func (h *Handlers) build(ctx context.Context, v *proto.VolumeView) (backing.Volume, error) {
	bv, err := h.store.Get(ctx, v.ID)
	if err == nil {
		return bv, nil
	}
	if !errs.Is(err, errs.NotFound) {
		return backing.Volume{}, annotate(err, "look for volume "+v.ID)
	}
	if v.BackupObject == nil || v.BackupObject.ID == "" {
		bv, err = h.store.Create(ctx, v.ID, v.Size)
		if err != nil {
			return backing.Volume{}, annotate(err, "create blank volume "+v.ID)
		}
		return bv, nil
	}
	bo, err := h.coll.GetBackupObject(ctx, v.BackupObject.ID)
	if err != nil {
		return backing.Volume{}, annotate(err, "get backup object "+v.BackupObject.ID)
	}
	switch bo.State {
	case proto.BackupObjectAvailable:
	case proto.BackupObjectDeleted, proto.BackupObjectPurged:
		return backing.Volume{}, errs.New(errs.InvalidBackupObjectState, "backup object %s of volume %s is %s", bo.ID, v.ID, bo.State)
	default:
		return backing.Volume{}, errs.New(errs.InvalidBackupObjectState, "backup object %s of volume %s is %s, not available", bo.ID, v.ID, bo.State)
	}
	return h.restore(ctx, v, bo)
}

// restore makes a volume from a backup object, checking the object's md5.
// A plain object on this node that the store can share blocks with
// (reflink) is verified, then cloned; anything else is streamed once
// through the checksum and the decoder into the store.
func (h *Handlers) restore(ctx context.Context, v *proto.VolumeView, bo *proto.BackupObjectView) (backing.Volume, error) {
	uri, err := backup.Locate(bo, h.cfg.LocalBackupStorageID, h.cfg.LocalBackupPath)
	if err != nil {
		return backing.Volume{}, err
	}
	what := fmt.Sprintf("create volume %s from backup object %s (%s)", v.ID, bo.ID, uri)
	sharer, _ := h.store.(backing.Sharer)
	if path, ok := backup.LocalPath(uri); ok && backup.Plain(bo.ContainerFormat) && sharer != nil && sharer.Shares(path) {
		if bo.Checksum != "" {
			sum, n, err := backup.FileSum(ctx, path)
			if err != nil {
				return backing.Volume{}, annotate(errs.Wrap(errs.NotFound, err, "read it"), what)
			}
			if sum != bo.Checksum {
				return backing.Volume{}, errs.New(errs.InvalidBackupObjectState,
					"%s: checksum mismatch: md5 %s over %d bytes, want %s", what, sum, n, bo.Checksum)
			}
		}
		bv, err := h.store.CreateFrom(ctx, v.ID, v.Size, backing.Source{Path: path})
		if err != nil {
			return backing.Volume{}, annotate(err, what)
		}
		return bv, nil
	}
	rc, _, err := h.cfg.Backups.Open(ctx, uri)
	if err != nil {
		return backing.Volume{}, annotate(err, what)
	}
	defer rc.Close()
	r, err := backup.Decode(backup.Verify(rc, bo.Checksum), bo.ContainerFormat)
	if err != nil {
		return backing.Volume{}, annotate(err, what)
	}
	bv, err := h.store.CreateFrom(ctx, v.ID, v.Size, backing.Source{Reader: r})
	if err != nil {
		return backing.Volume{}, annotate(err, what)
	}
	return bv, nil
}

// export serves a volume through the target and returns its device.
func (h *Handlers) export(ctx context.Context, v *proto.VolumeView, bv backing.Volume) (*proto.VolumeDevice, error) {
	iqn := h.iqn(v.ID)
	e, err := h.tg.Export(ctx, iqn, bv.Path)
	if err != nil {
		return nil, annotate(err, "export volume "+v.ID)
	}
	dev := &proto.VolumeDevice{IQN: e.IQN, LUN: e.LUN, Path: bv.Path, StorageIP: h.cfg.PortalIP}
	if v.Device != nil {
		dev.StorageNodeID = v.Device.StorageNodeID
	}
	if sn := v.StorageNode; sn != nil {
		dev.StorageNodeID = cmp.Or(dev.StorageNodeID, sn.ID)
		dev.StorageIP = cmp.Or(dev.StorageIP, sn.IPAddress)
	}
	if bv.Format != backing.FormatRaw {
		dev.Format = bv.Format
	}
	return dev, nil
}

// discard removes a volume's target and data; absent ones are removed.
func (h *Handlers) discard(ctx context.Context, id string) error {
	var errList []error
	if err := h.tg.Unexport(ctx, h.iqn(id)); err != nil {
		errList = append(errList, annotate(err, "unexport volume "+id))
	}
	if err := h.store.Delete(ctx, id); err != nil {
		errList = append(errList, annotate(err, "delete the data of volume "+id))
	}
	return errors.Join(errList...)
}

// ---- delete_volume ----

// deleteVolume: deleting → (unexported, data removed) → deleted. As in the
// source, the volume becomes deleted even when the target or the data
// could not be removed, and the job then fails saying what is left. Unlike
// the source, a volume already deleted (a redelivery) or unknown to the
// managers is not an error: what is left of it here is removed.
func (h *Handlers) deleteVolume(ctx context.Context, req proto.StaDeleteVolumeRequest) (proto.StaDeleteVolumeResponse, error) {
	id := req.VolumeID
	if id == "" {
		return proto.StaDeleteVolumeResponse{}, errs.New(errs.UndefinedVolumeID, "job without a volume id")
	}
	unlock, err := h.locks.Lock(ctx, id)
	if err != nil {
		return proto.StaDeleteVolumeResponse{}, err
	}
	defer unlock()
	v, err := h.coll.GetVolume(ctx, id)
	if errs.Is(err, errs.UnknownVolume) {
		h.logger.WarnContext(ctx, "delete of a volume the managers do not know; removing what is here", "volume_id", id)
		return proto.StaDeleteVolumeResponse{}, h.discard(ctx, id)
	}
	if err != nil {
		return proto.StaDeleteVolumeResponse{}, annotate(err, "get volume "+id)
	}
	if err := h.checkNode(v); err != nil {
		return proto.StaDeleteVolumeResponse{}, err
	}
	switch v.State {
	case proto.VolumeDeleted:
		return proto.StaDeleteVolumeResponse{}, h.discard(ctx, id)
	case proto.VolumeDeleting:
	case proto.VolumeAttaching, proto.VolumeAttached, proto.VolumeDetaching:
		// An instance may be writing to it: the manager detaches first.
		return proto.StaDeleteVolumeResponse{}, errs.New(errs.InvalidVolumeState,
			"volume %s is %s; delete_volume wants it deleting (detached)", id, v.State)
	default:
		h.logger.WarnContext(ctx, "delete of a volume not in deleting", "volume_id", id, "state", v.State)
		if err := h.updateVolumeState(ctx, id, proto.VolumeDeleting); err != nil {
			return proto.StaDeleteVolumeResponse{}, err
		}
	}
	derr := h.discard(ctx, id)
	if derr != nil && interrupted(ctx) {
		return proto.StaDeleteVolumeResponse{}, derr
	}
	actx, cancel := h.afterwards(ctx)
	defer cancel()
	if err := h.updateVolumeState(actx, id, proto.VolumeDeleted); err != nil {
		return proto.StaDeleteVolumeResponse{}, errors.Join(derr, err)
	}
	if derr != nil {
		return proto.StaDeleteVolumeResponse{}, &errs.Error{Kind: errs.KindOf(derr), Err: derr,
			Msg: "volume " + id + " is deleted, but some of it is left on " + h.cfg.NodeID}
	}
	return proto.StaDeleteVolumeResponse{}, nil
}
