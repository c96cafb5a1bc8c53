package api

import (
	"context"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Volumes of an instance (spec §2.1 items 20–21). volumeDoc is the volume
// document of §2.2, for the volumes routes to reuse.

// volumeType is upstream's volume_type column: the model class of the
// volume's device, null while a shared volume has no storage node.
func volumeType(tx *state.Tx, v *proto.Volume) (any, error) {
	if v.StoreType == proto.VolumeLocal {
		return "Dcmgr::Models::LocalVolume", nil
	}
	if v.StorageNodeID == nil {
		return nil, nil
	}
	var sn proto.StorageNode
	_, err := tx.Get(proto.KindStorageNode, *v.StorageNodeID, &sn)
	if errs.Is(err, errs.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if sn.StorageType == "nfs" {
		return "Dcmgr::Models::NfsVolume", nil
	}
	return "Dcmgr::Models::IscsiVolume", nil
}

// volumeDeviceDoc is the raw hash of the backing device: local
// {instance_id, mount_label, path}, shared {iscsi_storage_node_id, iqn, lun,
// path}; null before the volume is placed.
func volumeDeviceDoc(v *proto.Volume) any {
	d := v.Device
	if d == nil {
		return nil
	}
	if v.StoreType == proto.VolumeLocal {
		return format.NewMap(3).
			Set("instance_id", strOrNil(v.InstanceID)).
			Set("mount_label", d.MountLabel).
			Set("path", d.Path)
	}
	sn := strOrNil(v.StorageNodeID)
	if d.StorageNodeID != "" {
		sn = d.StorageNodeID
	}
	return format.NewMap(4).
		Set("iscsi_storage_node_id", sn).
		Set("iqn", d.IQN).
		Set("lun", d.LUN).
		Set("path", d.Path)
}

// volumeDoc is the volume document of §2.2: the row's columns in order, then
// store_type, labels and volume_device.
func volumeDoc(tx *state.Tx, v *proto.Volume, _ state.Meta) (*format.Map, error) {
	vt, err := volumeType(tx, v)
	if err != nil {
		return nil, err
	}
	var rp any
	if v.RequestParams != nil {
		rp = v.RequestParams
	}
	return format.NewMap(21).
		Set("id", v.ID).
		Set("account_id", v.AccountID).
		Set("uuid", v.ID).
		Set("status", v.Status).
		Set("state", v.State).
		Set("size", v.Size).
		Set("instance_id", strOrNil(v.InstanceID)).
		Set("guest_device_name", v.GuestDeviceName).
		Set("request_params", rp).
		Set("deleted_at", v.DeletedAt).
		Set("attached_at", v.AttachedAt).
		Set("detached_at", v.DetachedAt).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("service_type", v.ServiceType).
		Set("display_name", v.DisplayName).
		Set("backup_object_id", strOrNil(v.BackupObjectID)).
		Set("volume_type", vt).
		Set("store_type", v.StoreType).
		Set("labels", labelDocs(v.ID, v.Labels)).
		Set("volume_device", volumeDeviceDoc(v)), nil
}

// listInstanceVolumes: a bare array of the instance's volumes, the boot
// volume first, then the others in creation order (mussel reads item 1 as
// the first extra volume).
func (a *API) listInstanceVolumes(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getInstance(tx, req, "instance_id")
		if err != nil {
			return nil, err
		}
		links := &instanceLinks{tx: tx}
		vols, err := links.volumesOf(v)
		if err != nil {
			return nil, err
		}
		out := []any{}
		for _, vol := range vols {
			d, err := volumeDoc(tx, vol, state.Meta{})
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	})
}

// backupInstanceVolume: PUT /instances/:instance_id/volumes/:vol_id/backup
// (§2.1 item 21). No instance state precondition, as upstream; a volume that
// no agent holds (local volume of an instance without a host, shared volume
// without a storage node) cannot be backed up (400/125, 400/140).
func (a *API) backupInstanceVolume(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		inst, im, err := getInstance(tx, req, "instance_id")
		if err != nil {
			return nil, err
		}
		volID := req.ID("vol_id")
		if err := checkUUID(volID, proto.PrefixVolume); err != nil {
			return nil, err
		}
		var vol proto.Volume
		vm, err := tx.Get(proto.KindVolume, volID, &vol)
		if errs.Is(err, errs.NotFound) || (err == nil && (vol.InstanceID == nil || *vol.InstanceID != inst.ID)) {
			return nil, errs.New(errs.UnknownVolume, "%s", volID)
		}
		if err != nil {
			return nil, err
		}
		for _, q := range []struct {
			key    string
			amount float64
			kind   string
		}{
			{QuotaBackupObjectCount, 0, proto.KindBackupObject},
			{QuotaInstanceBackupsPerHour, 0, proto.KindImage},
			{QuotaBackupObjectSizeMB, sizeMB(vol.Size), proto.KindBackupObject},
		} {
			if err := a.guardQuota(tx, b, req, q.key, q.amount, q.kind); err != nil {
				return nil, err
			}
		}
		if vol.DeletedAt != nil || vol.State == proto.VolumeDeleting || vol.State == proto.VolumeDeleted {
			return nil, errs.New(errs.InvalidVolumeState, "%s", vol.State)
		}
		storage, err := a.backupStorageParam(tx, req, inst.ServiceType)
		if err != nil {
			return nil, err
		}
		ep, local, err := volumeJob(tx, inst, &vol)
		if err != nil {
			return nil, err
		}
		now := a.now()
		bo := newBackupObject(&vol, vol.AccountID, storage, vol.ServiceType, p.Str("display_name"), p.Str("description"), now)
		var args any = proto.StaBackupVolumeRequest{VolumeID: vol.ID, BackupObjectID: bo.ID}
		if local {
			args = proto.LocalStoreBackupVolumeRequest{InstanceID: inst.ID, VolumeID: vol.ID, BackupObjectID: bo.ID}
		}
		// The backup writes the instance, so that a concurrent delete or
		// poweron re-checks the backups in flight.
		inst.UpdatedAt = now
		b.Update(proto.KindInstance, inst.ID, im.ModifyIndex, inst)
		b.Check(proto.KindVolume, vol.ID, vm.ModifyIndex)
		b.Create(proto.KindBackupObject, bo.ID, bo)
		if err := enqueueJob(b, now, ep, proto.VerbBackupVolume, vol.ID, args); err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) {
			return format.NewMap(2).Set("volume_id", vol.ID).Set("backup_object_id", bo.ID), nil
		}, nil
	})
}
