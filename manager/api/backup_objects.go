package api

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Backup object states (spec §3.3).
const (
	boCreating  = "creating"
	boPending   = "pending"
	boAvailable = "available"
	boDeleted   = "deleted"
)

// containerFormats are the allowed `container_format` values.
var containerFormats = []string{"tgz", "tar", "gz", "none", "raw"}

// Backup objects (spec §2.12).
func (a *API) registerBackupObjects() {
	a.route("GET /backup_objects", read, a.listBackupObjects)
	a.route("GET /backup_objects/{id}", read, a.showBackupObject)
	a.route("POST /backup_objects", write, a.createBackupObject)
	a.route("PUT /backup_objects/{id}", write, a.updateBackupObject)
	a.route("PUT /backup_objects/{id}/copy_to", write, a.copyBackupObject)
	a.route("DELETE /backup_objects/{id}", write, a.deleteBackupObject)
	a.registerLabels("/backup_objects", proto.KindBackupObject, proto.PrefixBackupObject)
}

func int64Ptr(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func strPtr(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// backupObjectDoc has the explicit field order of §2.12.
func backupObjectDoc(_ *state.Tx, v *proto.BackupObject, _ state.Meta) (*format.Map, error) {
	return format.NewMap(18).
		Set("id", v.ID).
		Set("uuid", v.ID).
		Set("account_id", v.AccountID).
		Set("state", v.State).
		Set("size", v.Size).
		Set("allocation_size", int64Ptr(v.AllocationSize)).
		Set("backup_storage_id", v.BackupStorageID).
		Set("object_key", v.ObjectKey).
		Set("checksum", v.Checksum).
		Set("progress", v.Progress).
		Set("backup_storage", format.NewMap(1).Set("id", v.BackupStorageID)).
		Set("description", v.Description).
		Set("display_name", v.DisplayName).
		Set("service_type", v.ServiceType).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("deleted_at", v.DeletedAt).
		Set("labels", labelDocs(v.ID, v.Labels)), nil
}

// stateFilter reads a list's `state` parameter: one of the exact states, or
// the meta values alive (deleted_at null) and alive_with_deleted (alive, or
// deleted within the configured recent period). Anything else is 400/143.
func (a *API) stateFilter(req *Request, exact ...string) (func(st string, deletedAt *time.Time) bool, error) {
	if !req.Params.Has("state") {
		return func(string, *time.Time) bool { return true }, nil
	}
	s, _ := req.Params.StrOK("state")
	switch {
	case slices.Contains(exact, s):
		return func(st string, _ *time.Time) bool { return st == s }, nil
	case s == "alive":
		return func(_ string, d *time.Time) bool { return d == nil }, nil
	case s == "alive_with_deleted":
		since := a.now().Add(-a.cfg.RecentTerminatedPeriod)
		return func(_ string, d *time.Time) bool { return d == nil || !d.Before(since) }, nil
	}
	return nil, errs.New(errs.InvalidParameter, "state")
}

func (a *API) listBackupObjects(_ context.Context, req *Request) (any, error) {
	p := req.Params
	stateOK, err := a.stateFilter(req, boAvailable, boDeleted)
	if err != nil {
		return nil, err
	}
	of, err := a.ownerFilterOf(p, false)
	if err != nil {
		return nil, err
	}
	bkst, hasBkst := p.StrOK("backup_storage_id")
	if hasBkst {
		if _, err := a.view(func(tx *state.Tx) (any, error) {
			_, _, err := getPub[proto.BackupStorage](tx, proto.KindBackupStorage, proto.PrefixBackupStorage, bkst)
			return nil, err
		}); err != nil {
			return nil, err
		}
	}
	return list(a, req, proto.KindBackupObject, func(v *proto.BackupObject) bool {
		if !stateOK(v.State, v.DeletedAt) {
			return false
		}
		if !of.match(v.AccountID, v.ServiceType, v.DisplayName) {
			return false
		}
		if hasBkst && v.BackupStorageID != bkst {
			return false
		}
		return true
	}, backupObjectDoc)
}

func (a *API) showBackupObject(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getOwned[proto.BackupObject](tx, req, proto.KindBackupObject, proto.PrefixBackupObject, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return backupObjectDoc(tx, v, m)
	})
}

func modelError(msg string, args ...any) error {
	return errs.New(errs.DatabaseError, "Sequel::ValidationFailed: "+msg, args...)
}

// optInt reads an optional integer parameter (400/143 naming it when it is
// not one).
func optInt(req *Request, key string) (int64, bool, error) {
	n, ok, err := req.Params.Int(key)
	if err != nil {
		return 0, false, errs.New(errs.InvalidParameter, "%s", key)
	}
	return n, ok, nil
}

// createBackupObject is the admin registration of an object already on a
// backup storage. State defaults to `creating` (the model's entry default);
// registering a finished object passes state=available, which also sets
// progress to 100.
func (a *API) createBackupObject(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	id, err := createID(p, proto.PrefixBackupObject)
	if err != nil {
		return nil, err
	}
	now := a.now()
	owner := req.Owner()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		if tx.Exists(proto.KindBackupObject, id) {
			return nil, errs.New(errs.DatabaseError, "Sequel::UniqueConstraintViolation: duplicate uuid %s", id)
		}
		size, hasSize, err := optInt(req, "size")
		if err != nil {
			return nil, err
		}
		// Quotas first (upstream order); the amount is the size in whole MiB.
		if err := a.guardQuota(tx, b, req, QuotaBackupObjectSizeMB, float64(size>>20), proto.KindBackupObject); err != nil {
			return nil, err
		}
		if err := a.guardQuota(tx, b, req, QuotaBackupObjectCount, 0, proto.KindBackupObject); err != nil {
			return nil, err
		}
		bkstID := p.Str("backup_storage_id")
		if bkstID == "" {
			return nil, errs.New(errs.InvalidParameter, "backup_storage_id")
		}
		bkst, bm, err := getPub[proto.BackupStorage](tx, proto.KindBackupStorage, proto.PrefixBackupStorage, bkstID)
		if errs.Is(err, errs.UnknownUUIDResource) {
			return nil, errs.New(errs.UnknownBackupStorage, "%s", bkstID)
		}
		if err != nil {
			return nil, err
		}
		if err := checkUUID(owner, proto.PrefixAccount); err != nil {
			return nil, errs.New(errs.InvalidParameter, "account_id")
		}
		st, err := a.serviceTypeParam(req)
		if err != nil {
			return nil, err
		}
		if !hasSize {
			return nil, modelError("size is not present")
		}
		if size < 0 {
			return nil, modelError("size must be 0 or greater")
		}
		v := proto.BackupObject{
			ID:              id,
			Timestamps:      proto.Timestamps{CreatedAt: now, UpdatedAt: now},
			AccountID:       owner,
			State:           boCreating,
			Size:            size,
			BackupStorageID: bkst.ID,
			ObjectKey:       id,
			Checksum:        p.Str("checksum"),
			Description:     p.Str("description"),
			DisplayName:     p.Str("display_name"),
			ServiceType:     st,
			ContainerFormat: "raw",
		}
		alloc, hasAlloc, err := optInt(req, "allocation_size")
		if err != nil {
			return nil, err
		}
		if hasAlloc {
			if alloc < 0 {
				return nil, modelError("allocation_size must be 0 or greater")
			}
			v.AllocationSize = &alloc
		}
		if s := p.Str("object_key"); s != "" {
			v.ObjectKey = s
		}
		if s, ok := p.StrOK("state"); ok && s != "" {
			if s != boCreating && s != boPending && s != boAvailable {
				return nil, modelError("state %q is not one of creating, pending, available", s)
			}
			v.State = s
		}
		if v.State == boAvailable {
			v.Progress = 100.0
		}
		if s, ok := p.StrOK("container_format"); ok && s != "" {
			if !slices.Contains(containerFormats, s) {
				return nil, modelError("container_format %q is not one of tgz, tar, gz, none, raw", s)
			}
			v.ContainerFormat = s
		}
		if v.Labels, err = createLabels(p, now); err != nil {
			return nil, err
		}
		b.Check(proto.KindBackupStorage, bkst.ID, bm.ModifyIndex)
		b.Create(proto.KindBackupObject, id, v)
		return func(tx *state.Tx) (any, error) { return backupObjectDoc(tx, &v, state.Meta{}) }, nil
	})
}

func (a *API) updateBackupObject(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.BackupObject](tx, req, proto.KindBackupObject, proto.PrefixBackupObject, req.ID("id"))
		if err != nil {
			return nil, err
		}
		p := req.Params
		if err := a.updateOwnerFields(p, &v.ServiceType, &v.Description, &v.DisplayName); err != nil {
			return nil, err
		}
		v.UpdatedAt = now
		b.Update(proto.KindBackupObject, v.ID, m.ModifyIndex, v)
		return func(tx *state.Tx) (any, error) { return backupObjectDoc(tx, v, m) }, nil
	})
}

func invalidBOState(v *proto.BackupObject) error {
	return errs.New(errs.InvalidBackupObjectState, "%s:%s", v.ID, v.State)
}

// deleteBackupObject is a logical delete of an available object; the data is
// purged elsewhere.
func (a *API) deleteBackupObject(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.BackupObject](tx, req, proto.KindBackupObject, proto.PrefixBackupObject, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if v.State != boAvailable {
			return nil, invalidBOState(v)
		}
		v.State = boDeleted
		v.DeletedAt = &now
		v.UpdatedAt = now
		b.Update(proto.KindBackupObject, v.ID, m.ModifyIndex, v)
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

func (a *API) copyBackupObject(ctx context.Context, req *Request) (any, error) {
	jobID := newID(proto.PrefixJob)
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.BackupObject](tx, req, proto.KindBackupObject, proto.PrefixBackupObject, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if v.State != boAvailable {
			return nil, invalidBOState(v)
		}
		raw, err := rawHash(v.ID, v)
		if err != nil {
			return nil, err
		}
		b.Check(proto.KindBackupObject, v.ID, m.ModifyIndex)
		return copyToJob(tx, b, req, v, jobID, now, map[string]any{"backup_object": raw})
	})
}

// rawHash is a record as the row hash a copy_to job carries: every stored
// field plus uuid, without labels (they are not columns).
func rawHash(id string, v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "labels")
	m["uuid"] = id
	return m, nil
}

// copyToJob queues a copy of bo to `destination` on the job queue of the
// node serving bo's backup storage (backup_storage.copy_to.<node_id>) and
// answers {uuid, created_at}. A storage without a node cannot run the copy:
// 400/182.
func copyToJob(tx *state.Tx, b *state.Builder, req *Request, bo *proto.BackupObject, jobID string, now time.Time, jobParams map[string]any) (renderFn, error) {
	p := req.Params
	dest, _ := p.StrOK("destination")
	if dest == "" {
		return nil, errs.New(errs.InvalidParameter, "destination")
	}
	var bkst proto.BackupStorage
	bm, err := tx.Get(proto.KindBackupStorage, bo.BackupStorageID, &bkst)
	if err != nil && !errs.Is(err, errs.NotFound) {
		return nil, err
	}
	if err != nil || bkst.NodeID == "" {
		return nil, errs.New(errs.InvalidBackupStorage, "Not ready for copy task")
	}
	jobParams["destination"] = dest
	for _, k := range []string{"display_name", "description"} {
		if s, ok := p.StrOK(k); ok {
			jobParams[k] = s
		}
	}
	job := proto.Job{
		ID:         jobID,
		Timestamps: proto.Timestamps{CreatedAt: now, UpdatedAt: now},
		QueueName:  fmt.Sprintf("backup_storage.copy_to.%s", bkst.NodeID),
		Params:     jobParams,
		ResourceID: bo.ID,
		State:      "pending",
	}
	// The job goes to the node the storage has now.
	b.Check(proto.KindBackupStorage, bkst.ID, bm.ModifyIndex)
	b.Create(proto.KindJob, jobID, job)
	return func(*state.Tx) (any, error) {
		return format.NewMap(2).Set("uuid", jobID).Set("created_at", now), nil
	}, nil
}
