package api

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Instance actions (spec §2.1 items 7–9, 11–13, §3.1). Each checks the
// state it needs (else 400/125 with the current state, nothing written),
// makes the API's transition, and enqueues the agent job in the same txn.
// Actions that leave the state as it is still guard the instance's
// ModifyIndex, so a concurrent transition makes them re-check.

// instanceAction runs act on the caller's instance in one commit.
func (a *API) instanceAction(ctx context.Context, req *Request,
	act func(tx *state.Tx, b *state.Builder, v *proto.Instance, m state.Meta, now time.Time) (any, error)) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getInstance(tx, req, "id")
		if err != nil {
			return nil, err
		}
		out, err := act(tx, b, v, m, a.now())
		if err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) { return out, nil }, nil
	})
}

// hvaEndpoint is hva-handle.<node id> of the instance's host.
func hvaEndpoint(tx *state.Tx, v *proto.Instance) (string, error) {
	h, err := hostOf(tx, v)
	if err != nil {
		return "", err
	}
	if h == nil {
		return "", errs.New(errs.InvalidInstanceState, "%s has no host node", v.ID)
	}
	return proto.HvaHandle(h.NodeID), nil
}

// hvaJob enqueues verb on the instance's host.
func hvaJob(tx *state.Tx, b *state.Builder, v *proto.Instance, now time.Time, verb string, args any) error {
	ep, err := hvaEndpoint(tx, v)
	if err != nil {
		return err
	}
	return enqueueJob(b, now, ep, verb, v.ID, args)
}

func requireState(v *proto.Instance, states ...string) error {
	for _, s := range states {
		if v.State == s {
			return nil
		}
	}
	return invalidState(v)
}

func instanceIDDoc(v *proto.Instance) *format.Map {
	return format.NewMap(1).Set("instance_id", v.ID)
}

// rebootInstance: running → hva reboot; no state change.
func (a *API) rebootInstance(ctx context.Context, req *Request) (any, error) {
	return a.instanceAction(ctx, req, func(tx *state.Tx, b *state.Builder, v *proto.Instance, m state.Meta, now time.Time) (any, error) {
		if err := requireState(v, proto.InstanceRunning); err != nil {
			return nil, err
		}
		b.Check(proto.KindInstance, v.ID, m.ModifyIndex)
		if err := hvaJob(tx, b, v, now, proto.VerbReboot, proto.HvaRebootRequest{InstanceID: v.ID}); err != nil {
			return nil, err
		}
		return []any{v.ID}, nil
	})
}

// stopInstance: running → hva stop (the agent drives stopping → stopped);
// every vif's addresses are released now, as upstream: the leases, the NAT
// routes to them; the vifs keep their networks and MACs, and
// schedule_start_instance leases addresses again.
func (a *API) stopInstance(ctx context.Context, req *Request) (any, error) {
	return a.instanceAction(ctx, req, func(tx *state.Tx, b *state.Builder, v *proto.Instance, m state.Meta, now time.Time) (any, error) {
		if err := requireState(v, proto.InstanceRunning); err != nil {
			return nil, err
		}
		o := newOpSet(b)
		o.check(proto.KindInstance, v.ID, m.ModifyIndex)
		err := tx.EachIn(state.IdxVifsByInstance, v.ID, false, func(_ string, e state.Entry) error {
			var vif proto.NetworkVif
			if err := decodeInto(e, &vif); err != nil {
				return err
			}
			if vif.DeletedAt != nil {
				return nil
			}
			if vif.IPv4Address == nil && vif.NatIPv4Address == nil {
				return nil
			}
			if err := releaseVifAddresses(tx, o, &vif, now, false); err != nil {
				return err
			}
			vif.IPv4Address, vif.NatIPv4Address, vif.UpdatedAt = nil, nil, now
			o.update(proto.KindNetworkVif, vif.ID, e.ModifyIndex, &vif)
			return nil
		})
		if err != nil {
			return nil, err
		}
		if err := hvaJob(tx, b, v, now, proto.VerbStop, proto.HvaStopRequest{InstanceID: v.ID}); err != nil {
			return nil, err
		}
		return []any{v.ID}, nil
	})
}

// startInstance: stopped → scheduling → scheduler.schedule_start_instance.
func (a *API) startInstance(ctx context.Context, req *Request) (any, error) {
	return a.instanceAction(ctx, req, func(_ *state.Tx, b *state.Builder, v *proto.Instance, m state.Meta, now time.Time) (any, error) {
		if err := requireState(v, proto.InstanceStopped); err != nil {
			return nil, err
		}
		v.State, v.UpdatedAt = proto.InstanceScheduling, now
		b.Update(proto.KindInstance, v.ID, m.ModifyIndex, v)
		if err := enqueueJob(b, now, proto.EndpointScheduler, proto.VerbScheduleStartInstance, v.ID,
			proto.ScheduleStartInstanceRequest{InstanceID: v.ID}); err != nil {
			return nil, err
		}
		return []any{v.ID}, nil
	})
}

// poweroffInstance: running|halting → halting → hva poweroff (force) or
// soft_poweroff. `force` is "true"/"false"; anything else, or none, takes
// default_force_poweroff_instance.
func (a *API) poweroffInstance(ctx context.Context, req *Request) (any, error) {
	force := a.cfg.DefaultForcePoweroff
	switch req.Params.Str("force") {
	case "true":
		force = true
	case "false":
		force = false
	}
	return a.instanceAction(ctx, req, func(tx *state.Tx, b *state.Builder, v *proto.Instance, m state.Meta, now time.Time) (any, error) {
		if err := requireState(v, proto.InstanceRunning, proto.InstanceHalting); err != nil {
			return nil, err
		}
		var err error
		if force {
			err = hvaJob(tx, b, v, now, proto.VerbPoweroff, proto.HvaPoweroffRequest{InstanceID: v.ID})
		} else {
			err = hvaJob(tx, b, v, now, proto.VerbSoftPoweroff, proto.HvaSoftPoweroffRequest{InstanceID: v.ID})
		}
		if err != nil {
			return nil, err
		}
		v.State, v.UpdatedAt = proto.InstanceHalting, now
		b.Update(proto.KindInstance, v.ID, m.ModifyIndex, v)
		return instanceIDDoc(v), nil
	})
}

// poweronInstance: halted → starting → hva poweron. With
// enable_instance_poweron_readiness_validation, a backup of the instance's
// volumes still in progress refuses it (400/125).
func (a *API) poweronInstance(ctx context.Context, req *Request) (any, error) {
	return a.instanceAction(ctx, req, func(tx *state.Tx, b *state.Builder, v *proto.Instance, m state.Meta, now time.Time) (any, error) {
		if err := requireState(v, proto.InstanceHalted); err != nil {
			return nil, err
		}
		if a.cfg.PoweronReadinessValidation {
			ok, err := backupsSettled(tx, v)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, errs.New(errs.InvalidInstanceState, "%s is not ready for poweron operation", v.ID)
			}
		}
		if err := hvaJob(tx, b, v, now, proto.VerbPoweron, proto.HvaPoweronRequest{InstanceID: v.ID}); err != nil {
			return nil, err
		}
		v.State, v.UpdatedAt = proto.InstanceStarting, now
		b.Update(proto.KindInstance, v.ID, m.ModifyIndex, v)
		return instanceIDDoc(v), nil
	})
}

// --- backups ---

// backupStorageParam chooses where a backup goes: `backup_storage_id`
// (unknown or deleted 404/153), else the service type's configured storage,
// else none ("").
func (a *API) backupStorageParam(tx *state.Tx, req *Request, serviceType string) (string, error) {
	id := req.Params.Str("backup_storage_id")
	if id == "" {
		id = a.cfg.BackupStorages[serviceType]
	}
	if id == "" {
		return "", nil
	}
	var bs proto.BackupStorage
	_, err := tx.Get(proto.KindBackupStorage, id, &bs)
	if errs.Is(err, errs.NotFound) || (err == nil && bs.DeletedAt != nil) {
		return "", errs.New(errs.UnknownBackupStorage, "%s", id)
	}
	if err != nil {
		return "", err
	}
	return bs.ID, nil
}

// volumeJob is the endpoint that backs a volume up: the local store of the
// instance's host for local volumes, the volume's storage node otherwise.
func volumeJob(tx *state.Tx, inst *proto.Instance, vol *proto.Volume) (endpoint string, local bool, err error) {
	if vol.StoreType == proto.VolumeLocal {
		h, err := hostOf(tx, inst)
		if err != nil {
			return "", true, err
		}
		if h == nil {
			return "", true, errs.New(errs.InvalidInstanceState, "%s has no host node", inst.ID)
		}
		return proto.LocalStoreHandle(h.NodeID), true, nil
	}
	if vol.StorageNodeID != nil {
		var sn proto.StorageNode
		_, err := tx.Get(proto.KindStorageNode, *vol.StorageNodeID, &sn)
		if err == nil {
			return proto.StaHandle(sn.NodeID), false, nil
		}
		if !errs.Is(err, errs.NotFound) {
			return "", false, err
		}
	}
	return "", false, errs.New(errs.InvalidVolumeState, "%s is on no storage node", vol.ID)
}

// newBackupObject is a pending backup object of vol.
func newBackupObject(vol *proto.Volume, account, storage, serviceType, displayName, description string, now time.Time) proto.BackupObject {
	id := newID(proto.PrefixBackupObject)
	volID := vol.ID
	return proto.BackupObject{
		ID: id, Timestamps: stamps(now), AccountID: account, State: boPending, Size: vol.Size,
		BackupStorageID: storage, ObjectKey: id, ServiceType: serviceType, DisplayName: displayName,
		Description: description, ContainerFormat: "raw", SourceVolumeID: &volID, Labels: []proto.Label{},
	}
}

// imageCreating is the state of an image whose backup is in progress.
const imageCreating = "creating"

func sizeMB(bytes int64) float64 { return float64(bytes / (1 << 20)) }

// instanceVolumes returns the instance's volumes that are not gone, the boot
// volume first.
func instanceVolumes(tx *state.Tx, inst *proto.Instance) ([]*proto.Volume, []state.Meta, error) {
	var vols []*proto.Volume
	var metas []state.Meta
	err := tx.EachIn(state.IdxVolumesByInstance, inst.ID, false, func(_ string, e state.Entry) error {
		v := new(proto.Volume)
		if err := decodeInto(e, v); err != nil {
			return err
		}
		if v.DeletedAt != nil ||
			v.State == proto.VolumeDeleting || v.State == proto.VolumeDeleted {
			return nil
		}
		if v.ID == inst.BootVolumeID {
			vols = append([]*proto.Volume{v}, vols...)
			metas = append([]state.Meta{e.Meta}, metas...)
		} else {
			vols = append(vols, v)
			metas = append(metas, e.Meta)
		}
		return nil
	})
	return vols, metas, err
}

// backupInstance: PUT /instances/:id/backup (§2.1 item 11). Upstream sent no
// job for the extra volumes when the boot volume was local (their backup
// objects stayed pending); here every backup object gets its job.
func (a *API) backupInstance(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	pub, hasPub, err := boolParam(p, "is_public")
	if err != nil {
		return nil, err
	}
	cache, hasCache, err := boolParam(p, "is_cacheable")
	if err != nil {
		return nil, err
	}
	return a.instanceAction(ctx, req, func(tx *state.Tx, b *state.Builder, v *proto.Instance, m state.Meta, now time.Time) (any, error) {
		vols, vmetas, err := instanceVolumes(tx, v)
		if err != nil {
			return nil, err
		}
		var total int64
		for _, vol := range vols {
			if vol.State == proto.VolumeAttached {
				total += vol.Size
			}
		}
		for _, q := range []struct {
			key    string
			amount float64
			kind   string
		}{
			{QuotaBackupObjectCount, 0, proto.KindBackupObject},
			{QuotaImageCount, 0, proto.KindImage},
			{QuotaInstanceBackupsPerHour, 0, proto.KindImage},
			{QuotaBackupObjectSizeMB, sizeMB(total), proto.KindBackupObject},
		} {
			if err := a.guardQuota(tx, b, req, q.key, q.amount, q.kind); err != nil {
				return nil, err
			}
		}
		if err := requireState(v, proto.InstanceHalted); err != nil {
			return nil, err
		}
		storage, err := a.backupStorageParam(tx, req, v.ServiceType)
		if err != nil {
			return nil, err
		}
		if len(vols) == 0 || vols[0].ID != v.BootVolumeID {
			return nil, errs.New(errs.InvalidVolumeState, "%s has no boot volume", v.ID)
		}
		if !p.IsTrue("all") {
			vols, vmetas = vols[:1], vmetas[:1]
		}
		var src proto.Image
		srcMeta, err := tx.Get(proto.KindImage, v.ImageID, &src)
		if errs.Is(err, errs.NotFound) {
			return nil, errs.New(errs.UnknownImage, "%s", v.ImageID)
		}
		if err != nil {
			return nil, err
		}
		account := req.Account
		if account == "" {
			account = v.AccountID
		}
		img := src
		img.ID = newID(proto.PrefixImage)
		img.Timestamps = stamps(now)
		img.AccountID = account
		img.IsPublic, img.IsCacheable = false, false
		if hasPub {
			img.IsPublic = pub
		}
		if hasCache {
			img.IsCacheable = cache
		}
		if s, ok := p.StrOK("display_name"); ok {
			img.DisplayName = s
		}
		if s, ok := p.StrOK("description"); ok {
			img.Description = s
		}
		img.ParentImageID = &src.ID
		img.State = imageCreating
		img.DeletedAt = nil
		img.Labels = []proto.Label{}
		img.Volumes = []proto.ImageVolume{}

		o := newOpSet(b)
		// The backup writes the instance, so that a concurrent delete or
		// poweron re-checks the backups in flight.
		v.UpdatedAt = now
		o.update(proto.KindInstance, v.ID, m.ModifyIndex, v)
		o.check(proto.KindImage, src.ID, srcMeta.ModifyIndex)
		ids := []any{}
		for i, vol := range vols {
			o.check(proto.KindVolume, vol.ID, vmetas[i].ModifyIndex)
			bo := newBackupObject(vol, account, storage, v.ServiceType, p.Str("display_name"), p.Str("description"), now)
			ep, local, err := volumeJob(tx, v, vol)
			if err != nil {
				return nil, err
			}
			var verb string
			var args any
			switch {
			case i == 0 && local:
				verb, args = proto.VerbBackupImage, proto.LocalStoreBackupImageRequest{InstanceID: v.ID, BackupObjectID: bo.ID, ImageID: img.ID}
			case i == 0:
				verb, args = proto.VerbBackupImage, proto.StaBackupImageRequest{VolumeID: vol.ID, BackupObjectID: bo.ID, ImageID: img.ID}
			case local:
				verb, args = proto.VerbBackupVolume, proto.LocalStoreBackupVolumeRequest{InstanceID: v.ID, VolumeID: vol.ID, BackupObjectID: bo.ID}
			default:
				verb, args = proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: vol.ID, BackupObjectID: bo.ID}
			}
			if i == 0 {
				img.BackupObjectID = bo.ID
			} else {
				img.Volumes = append(img.Volumes, proto.ImageVolume{BackupObjectID: bo.ID})
			}
			b.Create(proto.KindBackupObject, bo.ID, bo)
			if err := enqueueJob(b, now, ep, verb, v.ID, args); err != nil {
				return nil, err
			}
			ids = append(ids, bo.ID)
		}
		b.Create(proto.KindImage, img.ID, img)
		return format.NewMap(4).
			Set("instance_id", v.ID).
			Set("backup_object_id", ids[0]).
			Set("image_id", img.ID).
			Set("backup_object_ids", ids), nil
	})
}
