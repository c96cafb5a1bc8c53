package api

import (
	"context"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Volumes (spec §2.2, §3.2). A volume is created blank or from a backup
// object, placed on a storage node (by the scheduler, or by the caller's
// storage_node_id) and made by the node's sta; attach and detach hand the
// hot-plug to the instance's hva. The API makes only the transitions marked
// "API" in §3.2; each precondition failure is answered with the spec's
// error and writes nothing. The volume document is volumeDoc
// (instance_volumes.go).
func (a *API) registerVolumes() {
	a.route("GET /volumes", read, a.listVolumes)
	a.route("GET /volumes/{id}", read, a.showVolume)
	a.route("POST /volumes", write, a.createVolume)
	a.route("PUT /volumes/{id}", write, a.updateVolume)
	a.route("DELETE /volumes/{id}", write, a.deleteVolume)
	a.route("PUT /volumes/{id}/attach", write, a.attachVolume)
	a.route("PUT /volumes/{id}/detach", write, a.detachVolume)
	a.route("PUT /volumes/{id}/backup", write, a.backupVolume)
	// Not in 12.03: attach and detach addressed through the instance, as
	// the instance's volumes sub-routes (same rules as the routes above).
	a.route("PUT /instances/{instance_id}/volumes/{vol_id}/attach", write, a.attachInstanceVolume)
	a.route("PUT /instances/{instance_id}/volumes/{vol_id}/detach", write, a.detachInstanceVolume)
}

func getVolume(tx *state.Tx, req *Request, id string) (*proto.Volume, state.Meta, error) {
	return getOwned[proto.Volume](tx, req, proto.KindVolume, proto.PrefixVolume, id)
}

func invalidVolumeState(v *proto.Volume) error {
	return errs.New(errs.InvalidVolumeState, "%s", v.State)
}

// listVolumes: GET /volumes. storage_node_id named a column that no longer
// existed upstream (400/110); here it filters the volumes placed on that
// storage node (unknown node 404/100).
func (a *API) listVolumes(_ context.Context, req *Request) (any, error) {
	p := req.Params
	stateOK, err := a.stateFilter(req, proto.VolumeAvailable, proto.VolumeAttached, proto.VolumeDeleted)
	if err != nil {
		return nil, err
	}
	of, err := a.ownerFilterOf(p, false)
	if err != nil {
		return nil, err
	}
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	return a.view(func(tx *state.Tx) (any, error) {
		sn := ""
		if p.Has("storage_node_id") {
			v, _, err := getPub[proto.StorageNode](tx, proto.KindStorageNode, proto.PrefixStorageNode, p.Str("storage_node_id"))
			if err != nil {
				return nil, err
			}
			sn = v.ID
		}
		return listTx(tx, o, proto.KindVolume, func(v *proto.Volume) bool {
			if !stateOK(v.State, v.DeletedAt) {
				return false
			}
			if !of.match(v.AccountID, v.ServiceType, v.DisplayName) {
				return false
			}
			if sn != "" && (v.StorageNodeID == nil || *v.StorageNodeID != sn) {
				return false
			}
			return true
		}, volumeDoc)
	})
}

func (a *API) showVolume(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getVolume(tx, req, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return volumeDoc(tx, v, m)
	})
}

// renderVolume renders the committed volume.
func renderVolume(id string) renderFn {
	return func(tx *state.Tx) (any, error) {
		var v proto.Volume
		m, err := tx.Get(proto.KindVolume, id, &v)
		if err != nil {
			return nil, err
		}
		return volumeDoc(tx, &v, m)
	}
}

// createVolume: POST /volumes (§2.2 item 3). Quotas first (upstream order);
// volume.size_mb's amount is the backup object's size or volume_size in
// whole MB (upstream added the raw string and crashed). Then the size:
// backup_object_id (its size; it must be available, else 400/157 — a volume
// made from an object still being written or deleted could only fail on the
// storage node), else volume_size in MB within create_volume_min_size ..
// create_volume_max_size (400/119), else 400/118. With storage_node_id the
// volume is charged to that node now (no room: 400/109) and goes pending
// with sta-handle.<node>.create_volume; without, the free space of the
// online storage nodes must hold it (400/109) and it waits in scheduling for
// scheduler.schedule_volume.
func (a *API) createVolume(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	owner := req.Owner()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		boID, hasBO := p.StrOK("backup_object_id")
		hasBO = hasBO && boID != ""
		var amount float64
		if hasBO {
			if bo, _, err := getOwned[proto.BackupObject](tx, req, proto.KindBackupObject, proto.PrefixBackupObject, boID); err == nil {
				amount = sizeMB(bo.Size)
			}
		} else if n, ok, err := p.Int("volume_size"); ok && err == nil && n > 0 {
			amount = float64(n)
		}
		if err := a.guardQuota(tx, b, req, QuotaVolumeSizeMB, amount, proto.KindVolume); err != nil {
			return nil, err
		}
		if err := a.guardQuota(tx, b, req, QuotaVolumeCount, 0, proto.KindVolume); err != nil {
			return nil, err
		}

		now := a.now()
		v := proto.Volume{
			ID: newID(proto.PrefixVolume), Timestamps: stamps(now), AccountID: owner,
			Status: volumeStatusInitialized, StoreType: proto.VolumeShared, Labels: []proto.Label{},
		}
		switch {
		case hasBO:
			bo, bm, err := getOwned[proto.BackupObject](tx, req, proto.KindBackupObject, proto.PrefixBackupObject, boID)
			if err != nil {
				return nil, err
			}
			if bo.State != boAvailable {
				return nil, invalidBOState(bo)
			}
			b.Check(proto.KindBackupObject, bo.ID, bm.ModifyIndex)
			v.BackupObjectID, v.Size = &bo.ID, bo.Size
		case p.Has("volume_size"):
			n, _, err := p.Int("volume_size")
			if err != nil || n < a.cfg.CreateVolumeMinSize || n > a.cfg.CreateVolumeMaxSize {
				return nil, errs.New(errs.InvalidVolumeSize, "volume_size must be %d..%d MB: %v",
					a.cfg.CreateVolumeMinSize, a.cfg.CreateVolumeMaxSize, p.Get("volume_size"))
			}
			v.Size = n << 20
		default:
			return nil, errs.New(errs.UndefinedRequiredParameter, "backup_object_id or volume_size is required")
		}
		var sn *proto.StorageNode
		if p.Has("storage_node_id") {
			node, sm, err := getPub[proto.StorageNode](tx, proto.KindStorageNode, proto.PrefixStorageNode, p.Str("storage_node_id"))
			if err != nil {
				return nil, err
			}
			b.Check(proto.KindStorageNode, node.ID, sm.ModifyIndex)
			sn = node
		}
		var err error
		if v.ServiceType, err = a.serviceTypeParam(req); err != nil {
			return nil, err
		}
		v.DisplayName = p.Str("display_name")

		if sn != nil {
			c := scheduling.NewStorageCharges(tx, b)
			fits, err := c.Charge(sn, v.ID, v.Size)
			if err != nil {
				return nil, err
			}
			if !fits {
				return nil, errs.New(errs.OutOfDiskSpace, "storage node %s has no room for %d bytes", sn.ID, v.Size)
			}
			c.Flush()
			v.State = proto.VolumePending
			v.StorageNodeID = &sn.ID
			v.Device = &proto.VolumeDevice{StorageNodeID: sn.ID, StorageIP: sn.IPAddress}
			if err := enqueueJob(b, now, proto.StaHandle(sn.NodeID), proto.VerbCreateVolume, v.ID,
				proto.StaCreateVolumeRequest{VolumeID: v.ID}); err != nil {
				return nil, err
			}
		} else {
			free, err := onlineStorageFree(tx)
			if err != nil {
				return nil, err
			}
			if free < v.Size {
				return nil, errs.New(errs.OutOfDiskSpace, "the online storage nodes have %d bytes free, the volume needs %d", max(free, 0), v.Size)
			}
			v.State = proto.VolumeScheduling
			if err := enqueueJob(b, now, proto.EndpointScheduler, proto.VerbScheduleVolume, v.ID,
				proto.ScheduleVolumeRequest{VolumeID: v.ID}); err != nil {
				return nil, err
			}
		}
		b.Create(proto.KindVolume, v.ID, &v)
		return renderVolume(v.ID), nil
	})
}

// onlineStorageFree is the spec's global capacity: the free space of the
// online storage nodes (offering minus what is placed on each), summed.
// Upstream subtracted every alive volume, including those on offline nodes,
// from the online nodes' offering; counting each node's own usage is what
// the scheduler will find.
func onlineStorageFree(tx *state.Tx) (int64, error) {
	var free int64
	err := tx.Each(proto.KindStorageNode, false, func(e state.Entry) error {
		var sn proto.StorageNode
		if err := decodeInto(e, &sn); err != nil {
			return err
		}
		st, err := nodeStatus(tx, sn.NodeID)
		if err != nil || st != nodeOnline {
			return err
		}
		used, err := scheduling.StorageUsed(tx, sn.ID)
		if err != nil {
			return err
		}
		if f := sn.OfferingDiskSpaceMB<<20 - used; f > 0 {
			free += f
		}
		return nil
	})
	return free, err
}

func (a *API) updateVolume(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getVolume(tx, req, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if s, ok := req.Params.StrOK("display_name"); ok {
			v.DisplayName = s
			v.UpdatedAt = a.now()
			b.Update(proto.KindVolume, v.ID, m.ModifyIndex, v)
		}
		return renderVolume(v.ID), nil
	})
}

// deleteVolume: DELETE /volumes/:id — available only (400/140 with the
// state); → deleting and sta-handle.<node>.delete_volume, the agent sets
// deleted. What the model refused upstream is 400/112 here: a volume linked
// to an instance (its attach is in flight or it belongs to the instance) and
// a volume whose backup is still being written (the sta would read a volume
// being deleted).
func (a *API) deleteVolume(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getVolume(tx, req, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if v.State != proto.VolumeAvailable {
			return nil, invalidVolumeState(v)
		}
		if v.InstanceID != nil {
			return nil, errs.New(errs.InvalidDeleteRequest, "%s is attached to %s", v.ID, *v.InstanceID)
		}
		busy, err := backupInProgress(tx, v.ID)
		if err != nil {
			return nil, err
		}
		if busy != "" {
			return nil, errs.New(errs.InvalidDeleteRequest, "%s is being backed up to %s", v.ID, busy)
		}
		sn, err := volumeStorageNode(tx, v)
		if err != nil {
			return nil, err
		}
		now := a.now()
		v.State, v.UpdatedAt = proto.VolumeDeleting, now
		b.Update(proto.KindVolume, v.ID, m.ModifyIndex, v)
		if err := enqueueJob(b, now, proto.StaHandle(sn.NodeID), proto.VerbDeleteVolume, v.ID,
			proto.StaDeleteVolumeRequest{VolumeID: v.ID}); err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// volumeStorageNode is the storage node a shared volume lives on.
func volumeStorageNode(tx *state.Tx, v *proto.Volume) (*proto.StorageNode, error) {
	if v.StorageNodeID == nil {
		return nil, errs.New(errs.InvalidVolumeState, "%s is on no storage node", v.ID)
	}
	var sn proto.StorageNode
	_, err := tx.Get(proto.KindStorageNode, *v.StorageNodeID, &sn)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.New(errs.UnknownStorageNode, "%s", *v.StorageNodeID)
	}
	return &sn, err
}

// backupInProgress returns a backup object of the volume still being
// written ("" when none).
func backupInProgress(tx *state.Tx, volID string) (string, error) {
	busy := ""
	err := tx.Each(proto.KindBackupObject, false, func(e state.Entry) error {
		var bo proto.BackupObject
		if err := decodeInto(e, &bo); err != nil {
			return err
		}
		if bo.SourceVolumeID != nil && *bo.SourceVolumeID == volID && (bo.State == boPending || bo.State == boCreating) {
			busy = bo.ID
			return state.ErrStop
		}
		return nil
	})
	return busy, err
}

// --- attach and detach ---

// attachable is the instance precondition of attach and detach: alive and
// running (hot-plug by its hva) or halted (cold: the link is all there is).
func attachable(inst *proto.Instance) error {
	if inst.TerminatedAt != nil || (inst.State != proto.InstanceRunning && inst.State != proto.InstanceHalted) {
		return invalidState(inst)
	}
	return nil
}

func (a *API) attachVolume(ctx context.Context, req *Request) (any, error) {
	return a.attach(ctx, req, req.ID("id"), req.Params.Str("instance_id"))
}

func (a *API) attachInstanceVolume(ctx context.Context, req *Request) (any, error) {
	return a.attach(ctx, req, req.ID("vol_id"), req.ID("instance_id"))
}

// attach: PUT /volumes/:id/attach (§2.2 item 5). instance_id blank →
// 404/139; the instance own()ed, alive and running/halted (400/125); a
// volume already linked to an instance → 400/124; a volume not available
// (being created, deleted, …) → 400/140. The volume is linked to the
// instance at once, so a concurrent attach elsewhere is refused. Running:
// hva-handle.<host>.attach, the agent drives attaching → attached; halted:
// attached now. A volume attached here is detached, not deleted, when its
// instance terminates (KeepOnTerminate, finalizeInstance).
func (a *API) attach(ctx context.Context, req *Request, volID, instID string) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, vm, err := getVolume(tx, req, volID)
		if err != nil {
			return nil, err
		}
		if instID == "" {
			return nil, errs.New(errs.UndefinedInstanceID, "instance_id is required")
		}
		inst, im, err := getOwned[proto.Instance](tx, req, proto.KindInstance, proto.PrefixInstance, instID)
		if err != nil {
			return nil, err
		}
		if err := attachable(inst); err != nil {
			return nil, err
		}
		if v.InstanceID != nil || v.State == proto.VolumeAttached {
			return nil, errs.New(errs.AttachVolumeFailure, "Volume is attached to running instance.")
		}
		if v.State != proto.VolumeAvailable {
			return nil, invalidVolumeState(v)
		}
		now := a.now()
		v.InstanceID, v.KeepOnTerminate = &inst.ID, true
		v.UpdatedAt = now
		if inst.State == proto.InstanceHalted {
			v.State, v.AttachedAt = proto.VolumeAttached, &now
		} else if err := hvaJob(tx, b, inst, now, proto.VerbAttach, proto.HvaAttachRequest{InstanceID: inst.ID, VolumeID: v.ID}); err != nil {
			return nil, err
		}
		b.Update(proto.KindVolume, v.ID, vm.ModifyIndex, v)
		// Linking writes the instance (finalizeInstance relies on it).
		inst.UpdatedAt = now
		b.Update(proto.KindInstance, inst.ID, im.ModifyIndex, inst)
		return renderVolume(v.ID), nil
	})
}

func (a *API) detachVolume(ctx context.Context, req *Request) (any, error) {
	return a.detach(ctx, req, req.ID("id"), "")
}

func (a *API) detachInstanceVolume(ctx context.Context, req *Request) (any, error) {
	return a.detach(ctx, req, req.ID("vol_id"), req.ID("instance_id"))
}

// detach: PUT /volumes/:id/detach (§2.2 item 6). Not linked → 400/123 "Volume
// is not attached to any instance."; the boot volume (and any local volume,
// whose file lives with the instance) → 400/123; the instance alive and
// running/halted (400/125). An attached volume of a running instance gets
// hva-handle.<host>.detach (detaching → available, unlinked by the agent); of
// a halted one it is unlinked and available at once. A volume linked but
// never attached (its attach failed, or the agent never took it) is unlinked
// at once, unless its attach or detach job is still queued (400/140); other
// states are 400/140.
func (a *API) detach(ctx context.Context, req *Request, volID, pathInst string) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		var inst *proto.Instance
		var im state.Meta
		var err error
		if pathInst != "" {
			if inst, im, err = getInstance(tx, req, "instance_id"); err != nil {
				return nil, err
			}
		}
		v, vm, err := getVolume(tx, req, volID)
		if err != nil {
			return nil, err
		}
		if inst != nil && (v.InstanceID == nil || *v.InstanceID != inst.ID) {
			return nil, errs.New(errs.UnknownVolume, "%s", volID)
		}
		if v.InstanceID == nil {
			return nil, errs.New(errs.DetachVolumeFailure, "Volume is not attached to any instance.")
		}
		if inst == nil {
			var x proto.Instance
			m, err := tx.Get(proto.KindInstance, *v.InstanceID, &x)
			if errs.Is(err, errs.NotFound) {
				return nil, errs.New(errs.UnknownInstance, "%s", *v.InstanceID)
			}
			if err != nil {
				return nil, err
			}
			inst, im = &x, m
		}
		if v.ID == inst.BootVolumeID {
			return nil, errs.New(errs.DetachVolumeFailure, "boot device can not be detached")
		}
		if v.StoreType == proto.VolumeLocal {
			return nil, errs.New(errs.DetachVolumeFailure, "local volume can not be detached")
		}
		if err := attachable(inst); err != nil {
			return nil, err
		}
		now := a.now()
		unlink := func() {
			v.InstanceID, v.DetachedAt, v.KeepOnTerminate = nil, &now, false
			v.State = proto.VolumeAvailable
		}
		switch {
		case v.State == proto.VolumeAttached && inst.State == proto.InstanceRunning:
			if err := hvaJob(tx, b, inst, now, proto.VerbDetach, proto.HvaDetachRequest{InstanceID: inst.ID, VolumeID: v.ID}); err != nil {
				return nil, err
			}
		case v.State == proto.VolumeAttached:
			unlink()
		case v.State == proto.VolumeAvailable:
			busy, err := volumeJobQueued(tx, v.ID, proto.VerbAttach, proto.VerbDetach)
			if err != nil {
				return nil, err
			}
			if busy {
				return nil, errs.New(errs.InvalidVolumeState, "%s: its attach is still in progress", v.State)
			}
			unlink()
		default:
			return nil, invalidVolumeState(v)
		}
		v.UpdatedAt = now
		b.Update(proto.KindVolume, v.ID, vm.ModifyIndex, v)
		inst.UpdatedAt = now
		b.Update(proto.KindInstance, inst.ID, im.ModifyIndex, inst)
		return renderVolume(v.ID), nil
	})
}

// volumeJobQueued reports whether an unfinished hva job of one of verbs is
// queued for the volume. The queue holds only unfinished jobs, so this reads
// a handful of records.
func volumeJobQueued(tx *state.Tx, volID string, verbs ...string) (bool, error) {
	found := false
	err := tx.Each(proto.KindJobQueue, false, func(e state.Entry) error {
		var q proto.JobQueueEntry
		if err := decodeInto(e, &q); err != nil {
			return err
		}
		if proto.EndpointBase(q.Endpoint) != proto.EndpointHvaHandle {
			return nil
		}
		var j proto.Job
		if _, err := tx.Get(proto.KindJob, q.ID, &j); err != nil {
			return nil
		}
		for _, verb := range verbs {
			if j.Verb == verb && j.Params["volume_id"] == volID {
				found = true
				return state.ErrStop
			}
		}
		return nil
	})
	return found, err
}

// --- backup ---

// backupVolume: PUT /volumes/:id/backup (§2.2 item 7). Quotas first; the
// volume attached or available (400/140), an attached volume's instance
// running or halted (400/125); a pending backup object of the volume's size
// on the chosen backup storage, with local-store-handle.<host>.backup_volume
// for a local volume, sta-handle.<node>.backup_volume otherwise.
func (a *API) backupVolume(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, vm, err := getVolume(tx, req, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if err := a.guardQuota(tx, b, req, QuotaBackupObjectSizeMB, sizeMB(v.Size), proto.KindBackupObject); err != nil {
			return nil, err
		}
		if err := a.guardQuota(tx, b, req, QuotaBackupObjectCount, 0, proto.KindBackupObject); err != nil {
			return nil, err
		}
		if v.State != proto.VolumeAttached && v.State != proto.VolumeAvailable {
			return nil, invalidVolumeState(v)
		}
		var inst *proto.Instance
		var im state.Meta
		if v.InstanceID != nil {
			var x proto.Instance
			m, err := tx.Get(proto.KindInstance, *v.InstanceID, &x)
			if err != nil && !errs.Is(err, errs.NotFound) {
				return nil, err
			}
			if err == nil {
				inst, im = &x, m
			}
		}
		if v.State == proto.VolumeAttached && (inst == nil || (inst.State != proto.InstanceRunning && inst.State != proto.InstanceHalted)) {
			if inst == nil {
				return nil, errs.New(errs.UnknownInstance, "%s", *v.InstanceID)
			}
			return nil, invalidState(inst)
		}
		if v.StoreType == proto.VolumeLocal && inst == nil {
			return nil, errs.New(errs.InvalidVolumeState, "%s is a local volume of no instance", v.ID)
		}
		storage, err := a.backupStorageParam(tx, req, v.ServiceType)
		if err != nil {
			return nil, err
		}
		ep, local, err := volumeJob(tx, inst, v)
		if err != nil {
			return nil, err
		}
		account := req.Account
		if account == "" {
			account = v.AccountID
		}
		now := a.now()
		bo := newBackupObject(v, account, storage, v.ServiceType, p.Str("display_name"), p.Str("description"), now)
		var args any = proto.StaBackupVolumeRequest{VolumeID: v.ID, BackupObjectID: bo.ID}
		if local {
			args = proto.LocalStoreBackupVolumeRequest{InstanceID: inst.ID, VolumeID: v.ID, BackupObjectID: bo.ID}
		}
		b.Check(proto.KindVolume, v.ID, vm.ModifyIndex)
		if inst != nil {
			// As the instance backup routes: a concurrent delete or poweron
			// of the instance re-checks the backups in flight.
			inst.UpdatedAt = now
			b.Update(proto.KindInstance, inst.ID, im.ModifyIndex, inst)
		}
		b.Create(proto.KindBackupObject, bo.ID, bo)
		if err := enqueueJob(b, now, ep, proto.VerbBackupVolume, v.ID, args); err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) {
			return format.NewMap(2).Set("volume_id", v.ID).Set("backup_object_id", bo.ID), nil
		}, nil
	})
}
