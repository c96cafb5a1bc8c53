package api

import (
	"context"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Volume snapshots (spec §2.20, §3.3): legacy routes that crashed upstream
// (a typo, a missing model method) and that backup objects superseded. They
// work here on top of backup objects:
//   - POST makes a pending backup object of the volume on the backup
//     storage named by `destination` (a bkst-… id; default: the service
//     type's backup storage) and a snapshot record pointing at it, and
//     enqueues sta-handle.<node>.create_snapshot(volume, backup object) — the
//     verb's arguments on the agent side (§2.6);
//   - a snapshot's state follows its backup object: initialized while it is
//     written, available once it is, deleted when it is deleted;
//   - DELETE (available only, 400/140) deletes the snapshot and its backup
//     object logically, as DELETE /backup_objects does; no agent message
//     (delete_snapshot always failed upstream, and the data lives on the
//     backup storage, which is purged elsewhere);
//   - GET upload_destination lists the backup storages a snapshot can go to.
//
// A volume is made from a snapshot with POST /volumes backup_object_id=<the
// snapshot's backup_object_id>.
func (a *API) registerVolumeSnapshots() {
	a.route("GET /volume_snapshots", read, a.listVolumeSnapshots)
	a.route("GET /volume_snapshots/upload_destination", read, a.snapshotDestinations)
	a.route("GET /volume_snapshots/{id}", read, a.showVolumeSnapshot)
	a.route("POST /volume_snapshots", write, a.createVolumeSnapshot)
	a.route("PUT /volume_snapshots/{id}", write, a.updateVolumeSnapshot)
	a.route("DELETE /volume_snapshots/{id}", write, a.deleteVolumeSnapshot)
}

// snapshotState derives a snapshot's state from its backup object.
func snapshotState(tx *state.Tx, s *proto.VolumeSnapshot) (string, *proto.BackupObject, error) {
	if s.DeletedAt != nil {
		return proto.SnapshotDeleted, nil, nil
	}
	var bo proto.BackupObject
	_, err := tx.Get(proto.KindBackupObject, s.BackupObjectID, &bo)
	if errs.Is(err, errs.NotFound) {
		return proto.SnapshotDeleted, nil, nil
	}
	if err != nil {
		return "", nil, err
	}
	switch bo.State {
	case boAvailable:
		return proto.SnapshotAvailable, &bo, nil
	case boDeleted, boPurged:
		return proto.SnapshotDeleted, &bo, nil
	}
	return proto.SnapshotInitialized, &bo, nil
}

func volumeSnapshotDoc(tx *state.Tx, s *proto.VolumeSnapshot, _ state.Meta) (*format.Map, error) {
	st, bo, err := snapshotState(tx, s)
	if err != nil {
		return nil, err
	}
	var key any
	if bo != nil {
		key = bo.ObjectKey
		if bo.BackupStorageID != "" {
			key = bo.BackupStorageID + "@" + bo.ObjectKey
		}
	}
	return format.NewMap(15).
		Set("id", s.ID).
		Set("account_id", s.AccountID).
		Set("uuid", s.ID).
		Set("storage_node_id", strOrNil(s.StorageNodeID)).
		Set("origin_volume_id", s.OriginVolumeID).
		Set("size", s.Size).
		Set("state", st).
		Set("backup_object_id", s.BackupObjectID).
		Set("destination_key", key).
		Set("deleted_at", s.DeletedAt).
		Set("created_at", s.CreatedAt).
		Set("updated_at", s.UpdatedAt).
		Set("service_type", s.ServiceType).
		Set("display_name", s.DisplayName), nil
}

func getSnapshot(tx *state.Tx, req *Request) (*proto.VolumeSnapshot, state.Meta, error) {
	return getOwned[proto.VolumeSnapshot](tx, req, proto.KindVolumeSnapshot, proto.PrefixVolumeSnapshot, req.ID("id"))
}

func (a *API) listVolumeSnapshots(_ context.Context, req *Request) (any, error) {
	p := req.Params
	stateOK, err := a.stateFilter(req, proto.SnapshotAvailable, proto.SnapshotDeleted, proto.SnapshotInitialized)
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
		var failed error
		out, err := listTx(tx, o, proto.KindVolumeSnapshot, func(s *proto.VolumeSnapshot) bool {
			cur, _, err := snapshotState(tx, s)
			if err != nil {
				failed = err
				return false
			}
			if !stateOK(cur, s.DeletedAt) {
				return false
			}
			if !of.match(s.AccountID, s.ServiceType, s.DisplayName) {
				return false
			}
			return sn == "" || (s.StorageNodeID != nil && *s.StorageNodeID == sn)
		}, volumeSnapshotDoc)
		if failed != nil {
			return nil, failed
		}
		return out, err
	})
}

func (a *API) showVolumeSnapshot(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		s, m, err := getSnapshot(tx, req)
		if err != nil {
			return nil, err
		}
		return volumeSnapshotDoc(tx, s, m)
	})
}

// snapshotDestinations: GET /volume_snapshots/upload_destination (a typo
// made it 500 upstream): the backup storages snapshots can be written to,
// in the list envelope.
func (a *API) snapshotDestinations(_ context.Context, req *Request) (any, error) {
	return list(a, req, proto.KindBackupStorage, func(v *proto.BackupStorage) bool { return v.DeletedAt == nil },
		func(_ *state.Tx, v *proto.BackupStorage, _ state.Meta) (*format.Map, error) {
			name := v.DisplayName
			if name == "" {
				name = v.ID
			}
			return format.NewMap(3).
				Set("destination_id", v.ID).
				Set("destination_name", name).
				Set("storage_type", v.StorageType), nil
		})
}

// createVolumeSnapshot: POST /volume_snapshots. volume_id required (400/111)
// and own()ed; the volume available or attached (400/140) and shared on a
// storage node (a local volume has no storage agent: 400/140).
func (a *API) createVolumeSnapshot(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		volID := p.Str("volume_id")
		if volID == "" {
			return nil, errs.New(errs.UndefinedVolumeID, "volume_id is required")
		}
		v, vm, err := getVolume(tx, req, volID)
		if err != nil {
			return nil, err
		}
		if v.State != proto.VolumeAvailable && v.State != proto.VolumeAttached {
			return nil, invalidVolumeState(v)
		}
		if v.StoreType == proto.VolumeLocal {
			return nil, errs.New(errs.InvalidVolumeState, "%s is a local volume", v.ID)
		}
		sn, err := volumeStorageNode(tx, v)
		if err != nil {
			return nil, err
		}
		dest := p.Str("destination")
		if dest == "" {
			dest = a.cfg.BackupStorages[v.ServiceType]
		}
		storage := ""
		if dest != "" {
			var bs proto.BackupStorage
			_, err := tx.Get(proto.KindBackupStorage, dest, &bs)
			if errs.Is(err, errs.NotFound) || (err == nil && bs.DeletedAt != nil) {
				return nil, errs.New(errs.UnknownBackupStorage, "%s", dest)
			}
			if err != nil {
				return nil, err
			}
			storage = bs.ID
		}
		account := req.Account
		if account == "" {
			account = v.AccountID
		}
		now := a.now()
		bo := newBackupObject(v, account, storage, v.ServiceType, p.Str("display_name"), "", now)
		snap := proto.VolumeSnapshot{
			ID: newID(proto.PrefixVolumeSnapshot), Timestamps: stamps(now), AccountID: account,
			OriginVolumeID: v.ID, StorageNodeID: &sn.ID, BackupObjectID: bo.ID, Size: v.Size,
			DisplayName: p.Str("display_name"), ServiceType: v.ServiceType,
		}
		b.Check(proto.KindVolume, v.ID, vm.ModifyIndex)
		if v.InstanceID != nil {
			// The snapshot is a backup of the instance's volume in flight.
			var inst proto.Instance
			if im, err := tx.Get(proto.KindInstance, *v.InstanceID, &inst); err == nil {
				inst.UpdatedAt = now
				b.Update(proto.KindInstance, inst.ID, im.ModifyIndex, &inst)
			}
		}
		b.Create(proto.KindBackupObject, bo.ID, bo)
		b.Create(proto.KindVolumeSnapshot, snap.ID, &snap)
		if err := enqueueJob(b, now, proto.StaHandle(sn.NodeID), proto.VerbCreateSnapshot, v.ID,
			proto.StaCreateSnapshotRequest{VolumeID: v.ID, BackupObjectID: bo.ID}); err != nil {
			return nil, err
		}
		return func(tx *state.Tx) (any, error) { return volumeSnapshotDoc(tx, &snap, state.Meta{}) }, nil
	})
}

func (a *API) updateVolumeSnapshot(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		s, m, err := getSnapshot(tx, req)
		if err != nil {
			return nil, err
		}
		if dn, ok := req.Params.StrOK("display_name"); ok {
			s.DisplayName = dn
			s.UpdatedAt = a.now()
			b.Update(proto.KindVolumeSnapshot, s.ID, m.ModifyIndex, s)
		}
		return func(tx *state.Tx) (any, error) { return volumeSnapshotDoc(tx, s, m) }, nil
	})
}

// deleteVolumeSnapshot: available only (400/140 with the state); the
// snapshot and its backup object are deleted logically.
func (a *API) deleteVolumeSnapshot(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		s, m, err := getSnapshot(tx, req)
		if err != nil {
			return nil, err
		}
		st, bo, err := snapshotState(tx, s)
		if err != nil {
			return nil, err
		}
		if st != proto.SnapshotAvailable {
			return nil, errs.New(errs.InvalidVolumeState, "%s", st)
		}
		now := a.now()
		s.DeletedAt, s.UpdatedAt = &now, now
		b.Update(proto.KindVolumeSnapshot, s.ID, m.ModifyIndex, s)
		bm, _ := tx.Get(proto.KindBackupObject, bo.ID, new(proto.BackupObject))
		bo.State, bo.DeletedAt, bo.UpdatedAt = boDeleted, &now, now
		b.Update(proto.KindBackupObject, bo.ID, bm.ModifyIndex, bo)
		return func(*state.Tx) (any, error) { return []any{s.ID}, nil }, nil
	})
}
