package api

import (
	"context"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Backup storages (spec §2.13). Not account resources: lookups check syntax
// and existence only.
func (a *API) registerBackupStorages() {
	a.route("GET /backup_storages", read, a.listBackupStorages)
	a.route("GET /backup_storages/{id}", read, a.showBackupStorage)
	a.route("POST /backup_storages", write, a.createBackupStorage)
	a.route("PUT /backup_storages/{id}", write, a.updateBackupStorage)
	a.route("DELETE /backup_storages/{id}", write, a.deleteBackupStorage)
}

func backupStorageDoc(_ *state.Tx, v *proto.BackupStorage, _ state.Meta) (*format.Map, error) {
	return format.NewMap(9).
		Set("id", v.ID).
		Set("uuid", v.ID).
		Set("display_name", v.DisplayName).
		Set("storage_type", v.StorageType).
		Set("description", v.Description).
		Set("base_uri", v.BaseURI).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("deleted_at", v.DeletedAt), nil
}

func (a *API) listBackupStorages(_ context.Context, req *Request) (any, error) {
	p := req.Params
	return list(a, req, proto.KindBackupStorage, func(v *proto.BackupStorage) bool {
		if dn, ok := p.StrOK("display_name"); ok && v.DisplayName != dn {
			return false
		}
		if st, ok := p.StrOK("storage_type"); ok && v.StorageType != st {
			return false
		}
		return true
	}, backupStorageDoc)
}

func (a *API) showBackupStorage(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getPub[proto.BackupStorage](tx, proto.KindBackupStorage, proto.PrefixBackupStorage, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return backupStorageDoc(tx, v, m)
	})
}

// backupStorageFields applies the settable fields present in params.
func backupStorageFields(req *Request, v *proto.BackupStorage) {
	p := req.Params
	for key, dst := range map[string]*string{
		"storage_type": &v.StorageType, "base_uri": &v.BaseURI,
		"description": &v.Description, "display_name": &v.DisplayName, "node_id": &v.NodeID,
	} {
		if s, ok := p.StrOK(key); ok {
			*dst = s
		}
	}
}

func (a *API) createBackupStorage(ctx context.Context, req *Request) (any, error) {
	id, err := createID(req.Params, proto.PrefixBackupStorage)
	if err != nil {
		return nil, err
	}
	v := proto.BackupStorage{ID: id}
	backupStorageFields(req, &v)
	if v.BaseURI == "" {
		return nil, errs.New(errs.DatabaseError, "Sequel::ValidationFailed: base_uri is not present")
	}
	if v.StorageType == "" {
		return nil, errs.New(errs.DatabaseError, "Sequel::ValidationFailed: storage_type is not present")
	}
	now := a.now()
	v.CreatedAt, v.UpdatedAt = now, now
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		if tx.Exists(proto.KindBackupStorage, id) {
			return nil, errs.New(errs.DatabaseError, "Sequel::UniqueConstraintViolation: duplicate uuid %s", id)
		}
		b.Create(proto.KindBackupStorage, id, v)
		return func(tx *state.Tx) (any, error) {
			return backupStorageDoc(tx, &v, state.Meta{})
		}, nil
	})
}

func (a *API) updateBackupStorage(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getPub[proto.BackupStorage](tx, proto.KindBackupStorage, proto.PrefixBackupStorage, req.ID("id"))
		if err != nil {
			return nil, err
		}
		backupStorageFields(req, v)
		v.UpdatedAt = a.now()
		b.Update(proto.KindBackupStorage, v.ID, m.ModifyIndex, v)
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

func (a *API) deleteBackupStorage(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getPub[proto.BackupStorage](tx, proto.KindBackupStorage, proto.PrefixBackupStorage, req.ID("id"))
		if err != nil {
			return nil, err
		}
		// Backup objects keep a reference to their storage; refuse while any
		// alive one does, instead of leaving them dangling.
		idx := tx.KindIndex(proto.KindBackupObject)
		inUse := false
		_ = tx.Each(proto.KindBackupObject, false, func(e state.Entry) error {
			var bo proto.BackupObject
			if decodeInto(e, &bo) == nil && bo.BackupStorageID == v.ID && bo.DeletedAt == nil {
				inUse = true
				return state.ErrStop
			}
			return nil
		})
		if inUse {
			return nil, errs.New(errs.OperationNotPermitted, "backup storage %s still holds backup objects", v.ID)
		}
		b.CheckKind(proto.KindBackupObject, idx)
		b.Delete(proto.KindBackupStorage, v.ID, m.ModifyIndex)
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}
