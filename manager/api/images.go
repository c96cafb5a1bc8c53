package api

import (
	"context"
	"encoding/json"
	"slices"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Image states (spec §3.3).
const (
	imageAvailable = "available"
	imageDeleted   = "deleted"
)

// Images (spec §2.3). The spec has no POST /images: images come from
// instance backups or are registered by the operator. POST /images here is
// that operator registration (used by vdc-manage); it is not part of 12.03
// and refuses calls that carry an account header.
func (a *API) registerImages() {
	a.route("GET /images", read, a.listImages)
	a.route("GET /images/{id}", read, a.showImage)
	a.route("POST /images", write, a.createImage)
	a.route("PUT /images/{id}", write, a.updateImage)
	a.route("PUT /images/{id}/copy_to", write, a.copyImage)
	a.route("DELETE /images/{id}", write, a.deleteImage)
	a.registerLabels("/images", proto.KindImage, proto.PrefixImage)
}

// imageDoc is the raw row in column order plus labels.
func imageDoc(_ *state.Tx, v *proto.Image, _ state.Meta) (*format.Map, error) {
	features := v.Features
	if features == nil {
		features = map[string]any{}
	}
	vols := make([]any, 0, len(v.Volumes))
	for _, iv := range v.Volumes {
		vols = append(vols, format.NewMap(1).Set("backup_object_id", iv.BackupObjectID))
	}
	vifs := v.Vifs
	if vifs == nil {
		vifs = []any{}
	}
	return format.NewMap(24).
		Set("id", v.ID).
		Set("account_id", v.AccountID).
		Set("uuid", v.ID).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("boot_dev_type", v.BootDevType).
		Set("arch", v.Arch).
		Set("description", v.Description).
		Set("is_public", v.IsPublic).
		Set("state", v.State).
		Set("features", features).
		Set("file_format", v.FileFormat).
		Set("root_device", strPtr(v.RootDevice)).
		Set("is_cacheable", v.IsCacheable).
		Set("instance_model_name", strPtr(v.InstanceModelName)).
		Set("parent_image_id", strPtr(v.ParentImageID)).
		Set("service_type", v.ServiceType).
		Set("display_name", v.DisplayName).
		Set("backup_object_id", v.BackupObjectID).
		Set("deleted_at", v.DeletedAt).
		Set("volumes", vols).
		Set("vifs", vifs).
		Set("os_type", v.OSType).
		Set("labels", labelDocs(v.ID, v.Labels)), nil
}

// boolParam reads true/false/1/0; anything else is 400/143 naming key.
func boolParam(p params.Params, key string) (val, present bool, err error) {
	if !p.Has(key) {
		return false, false, nil
	}
	switch s, _ := p.StrOK(key); s {
	case "true", "1":
		return true, true, nil
	case "false", "0":
		return false, true, nil
	}
	return false, true, errs.New(errs.InvalidParameter, "%s", key)
}

// listImages scopes by account_id and is_public OR-ed (§2.3): with the
// account header that is "my images", or "mine and the public ones" with
// is_public=true. Upstream is_public=false OR-ed `is_public = 0` and so also
// listed other accounts' private images; with an account header that term is
// dropped here (the caller sees only their own images). Operator calls keep
// the plain OR.
func (a *API) listImages(_ context.Context, req *Request) (any, error) {
	p := req.Params
	pub, hasPub, err := boolParam(p, "is_public")
	if err != nil {
		return nil, err
	}
	if hasPub && !pub && req.Account != "" {
		hasPub = false // a caller always has the account_id term
	}
	acc, hasAcc := p.StrOK("account_id")
	st, hasST := p.StrOK("service_type")
	if hasST {
		if err := a.checkServiceType(st); err != nil {
			return nil, err
		}
	}
	stateOK, err := a.stateFilter(req, imageAvailable, imageDeleted)
	if err != nil {
		return nil, err
	}
	return list(a, req, proto.KindImage, func(v *proto.Image) bool {
		if (hasAcc || hasPub) && !(hasAcc && v.AccountID == acc) && !(hasPub && v.IsPublic == pub) {
			return false
		}
		if hasST && v.ServiceType != st {
			return false
		}
		return stateOK(v.State, v.DeletedAt)
	}, imageDoc)
}

func (a *API) showImage(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getOwned[proto.Image](tx, req, proto.KindImage, proto.PrefixImage, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return imageDoc(tx, v, m)
	})
}

func (a *API) updateImage(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.Image](tx, req, proto.KindImage, proto.PrefixImage, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if s, ok := req.Params.StrOK("display_name"); ok {
			v.DisplayName = s
		}
		if s, ok := req.Params.StrOK("description"); ok {
			v.Description = s
		}
		v.UpdatedAt = now
		b.Update(proto.KindImage, v.ID, m.ModifyIndex, v)
		return func(tx *state.Tx) (any, error) { return imageDoc(tx, v, m) }, nil
	})
}

// deleteImage is a logical delete with no state precondition. Deleting a
// deleted image succeeds and keeps the first deleted_at.
func (a *API) deleteImage(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.Image](tx, req, proto.KindImage, proto.PrefixImage, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if v.DeletedAt == nil {
			v.State = imageDeleted
			v.DeletedAt = &now
			v.UpdatedAt = now
			b.Update(proto.KindImage, v.ID, m.ModifyIndex, v)
		}
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// copyImage queues a copy of the image's backup object (§2.3 item 5).
func (a *API) copyImage(ctx context.Context, req *Request) (any, error) {
	jobID := newID(proto.PrefixJob)
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.Image](tx, req, proto.KindImage, proto.PrefixImage, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if dest, _ := req.Params.StrOK("destination"); dest == "" {
			return nil, errs.New(errs.InvalidParameter, "destination")
		}
		var bo proto.BackupObject
		bm, err := tx.Get(proto.KindBackupObject, v.BackupObjectID, &bo)
		if errs.Is(err, errs.NotFound) {
			return nil, errs.New(errs.UnknownBackupObject, "%s", v.BackupObjectID)
		}
		if err != nil {
			return nil, err
		}
		img, err := rawHash(v.ID, v)
		if err != nil {
			return nil, err
		}
		boh, err := rawHash(bo.ID, &bo)
		if err != nil {
			return nil, err
		}
		b.Check(proto.KindImage, v.ID, m.ModifyIndex)
		b.Check(proto.KindBackupObject, bo.ID, bm.ModifyIndex)
		return copyToJob(tx, b, req, &bo, jobID, now, map[string]any{"image": img, "backup_object": boh})
	})
}

// Allowed values of the operator registration.
var (
	imageArches      = []string{"x86", "x86_64"}
	imageOSTypes     = []string{"linux", "windows"}
	imageRegStates   = []string{"init", "creating", "pending", imageAvailable}
	imageFeatureKeys = []string{"virtio", "acpi"}
)

// featuresParam reads `features` as a hash (features[virtio]=true) or as
// JSON object text; keys must be virtio or acpi; "true"/"false" become
// booleans.
func featuresParam(p params.Params) (map[string]any, error) {
	bad := errs.New(errs.InvalidParameter, "features")
	var m map[string]any
	switch v := p.Get("features").(type) {
	case nil:
		return map[string]any{}, nil
	case string:
		if v == "" {
			return map[string]any{}, nil
		}
		if json.Unmarshal([]byte(v), &m) != nil {
			return nil, bad
		}
	case map[string]any:
		m = v
	case params.Params:
		m = v
	default:
		return nil, bad
	}
	out := make(map[string]any, len(m))
	for k, val := range m {
		if !slices.Contains(imageFeatureKeys, k) {
			return nil, bad
		}
		switch val {
		case "true":
			val = true
		case "false":
			val = false
		}
		switch val.(type) {
		case bool, string, float64:
		default:
			return nil, bad
		}
		out[k] = val
	}
	return out, nil
}

// oneOf reads an optional string parameter restricted to allowed values.
func oneOf(p params.Params, key, def string, allowed []string) (string, error) {
	s, ok := p.StrOK(key)
	if !ok || s == "" {
		if p.Has(key) && !ok && p.Get(key) != nil {
			return "", errs.New(errs.InvalidParameter, "%s", key)
		}
		return def, nil
	}
	if !slices.Contains(allowed, s) {
		return "", errs.New(errs.InvalidParameter, "%s", key)
	}
	return s, nil
}

// createImage is the operator registration of an image over an existing
// backup object (not in the 12.03 spec; vdc-manage uses it). Calls with an
// account header are refused with 403/105; the image belongs to `account_id`
// or the system account.
func (a *API) createImage(ctx context.Context, req *Request) (any, error) {
	if req.Account != "" {
		return nil, errs.New(errs.OperationNotPermitted, "images are registered by the operator")
	}
	p := req.Params
	id, err := createID(p, proto.PrefixImage)
	if err != nil {
		return nil, err
	}
	owner := req.Owner()
	if err := checkUUID(owner, proto.PrefixAccount); err != nil {
		return nil, errs.New(errs.InvalidParameter, "account_id")
	}
	boID := p.Str("backup_object_id")
	if boID == "" {
		return nil, errs.New(errs.InvalidParameter, "backup_object_id")
	}
	if err := checkUUID(boID, proto.PrefixBackupObject); err != nil {
		return nil, err
	}
	st, err := a.serviceTypeParam(req)
	if err != nil {
		return nil, err
	}
	now := a.now()
	v := proto.Image{
		ID:             id,
		Timestamps:     proto.Timestamps{CreatedAt: now, UpdatedAt: now},
		AccountID:      owner,
		Description:    p.Str("description"),
		DisplayName:    p.Str("display_name"),
		FileFormat:     "raw",
		ServiceType:    st,
		BackupObjectID: boID,
		Volumes:        []proto.ImageVolume{},
		Vifs:           []any{},
	}
	if v.Arch, err = oneOf(p, "arch", "x86_64", imageArches); err != nil {
		return nil, err
	}
	if v.OSType, err = oneOf(p, "os_type", "linux", imageOSTypes); err != nil {
		return nil, err
	}
	if v.State, err = oneOf(p, "state", imageAvailable, imageRegStates); err != nil {
		return nil, err
	}
	bdt, has, err := optInt(req, "boot_dev_type")
	if err != nil {
		return nil, err
	}
	v.BootDevType = 2
	if has {
		if bdt != 1 && bdt != 2 {
			return nil, errs.New(errs.InvalidParameter, "boot_dev_type")
		}
		v.BootDevType = int(bdt)
	}
	if v.IsPublic, _, err = boolParam(p, "is_public"); err != nil {
		return nil, err
	}
	if v.IsCacheable, _, err = boolParam(p, "is_cacheable"); err != nil {
		return nil, err
	}
	if s := p.Str("file_format"); s != "" {
		v.FileFormat = s
	}
	if s := p.Str("root_device"); s != "" {
		v.RootDevice = &s
	}
	if v.Features, err = featuresParam(p); err != nil {
		return nil, err
	}
	if v.Labels, err = createLabels(p, now); err != nil {
		return nil, err
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		if tx.Exists(proto.KindImage, id) {
			return nil, errs.New(errs.DatabaseError, "Sequel::UniqueConstraintViolation: duplicate uuid %s", id)
		}
		if !tx.Exists(proto.KindBackupObject, boID) {
			return nil, errs.New(errs.UnknownBackupObject, "%s", boID)
		}
		b.Check(proto.KindBackupObject, boID, 0)
		b.Create(proto.KindImage, id, v)
		return func(tx *state.Tx) (any, error) { return imageDoc(tx, &v, state.Meta{}) }, nil
	})
}
