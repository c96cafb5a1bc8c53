package api

import (
	"context"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/sgrule"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Accounts (spec §2.17). These are operator routes. A caller without an
// account header may address any account; a caller with one may address
// only its own account, and any other answers 404/100 as if it did not
// exist (the original had no check at all, so any account could read or
// wipe any other).
//
// Served here: show, usage, the logical delete, the bulk deletes of security
// groups, ssh key pairs and backup objects, and PUT /accounts/:id (not in
// the original) to enable or disable an account. The instance, volume and
// load balancer bulk routes arrive with those resources.
func (a *API) registerAccounts() {
	a.route("GET /accounts/{id}", read, a.showAccount)
	a.route("GET /accounts/{id}/usage", read, a.accountUsage)
	a.route("PUT /accounts/{id}", write, a.updateAccount)
	a.route("DELETE /accounts/{id}", write, a.deleteAccount)
	a.route("DELETE /accounts/{id}/security_groups", write, a.deleteAccountSecurityGroups)
	a.route("DELETE /accounts/{id}/ssh_key_pairs", write, a.deleteAccountSshKeyPairs)
	a.route("DELETE /accounts/{id}/backup_objects", write, a.deleteAccountBackupObjects)
}

// getAccount finds the target account: a wrong prefix is 400/110 (the model
// raised on it), missing or another caller's account 404/100.
func getAccount(tx *state.Tx, req *Request) (*proto.Account, state.Meta, error) {
	id := req.ID("id")
	if !strings.HasPrefix(id, proto.PrefixAccount+"-") {
		return nil, state.Meta{}, errs.New(errs.DatabaseError, "Dcmgr::Models::InvalidUUIDError: Invalid uuid or unsupported uuid: %s", id)
	}
	if req.Account != "" && id != req.Account {
		return nil, state.Meta{}, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	var v proto.Account
	m, err := tx.Get(proto.KindAccount, id, &v)
	if errs.Is(err, errs.NotFound) {
		return nil, m, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	return &v, m, err
}

func accountDoc(v *proto.Account) *format.Map {
	return format.NewMap(3).
		Set("id", v.ID).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt)
}

func (a *API) showAccount(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getAccount(tx, req)
		if err != nil {
			return nil, err
		}
		return accountDoc(v), nil
	})
}

// accountUsage is the "usage" column of §4 for every quota key, for the
// target account and the `service_type` parameter when given.
func (a *API) accountUsage(_ context.Context, req *Request) (any, error) {
	st, hasST := req.Params.StrOK("service_type")
	if hasST && st != "" {
		if err := a.checkServiceType(st); err != nil {
			return nil, err
		}
	}
	now := a.now()
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getAccount(tx, req)
		if err != nil {
			return nil, err
		}
		d := format.NewMap(len(QuotaKeys))
		for _, key := range QuotaKeys {
			u, err := quotaUsage(tx, v.ID, st, key, now)
			if err != nil {
				return nil, err
			}
			// quota_weight is a sum of floats; every other usage is a count
			// or whole megabytes.
			if key == QuotaInstanceWeight {
				d.Set(key, u)
			} else {
				d.Set(key, int64(u))
			}
		}
		return d, nil
	})
}

// updateAccount switches `enabled` (not in the original API: operators need
// it to lock an account out with 403/104).
func (a *API) updateAccount(ctx context.Context, req *Request) (any, error) {
	var enabled *bool
	if req.Params.Has("enabled") {
		switch s, _ := req.Params.StrOK("enabled"); s {
		case "true":
			enabled = new(bool)
			*enabled = true
		case "false":
			enabled = new(bool)
		default:
			return nil, errs.New(errs.InvalidParameter, "enabled must be true or false")
		}
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getAccount(tx, req)
		if err != nil {
			return nil, err
		}
		if enabled != nil && *enabled != v.Enabled {
			v.Enabled = *enabled
			v.UpdatedAt = a.now()
			b.Update(proto.KindAccount, v.ID, m.ModifyIndex, v)
		}
		return func(*state.Tx) (any, error) { return accountDoc(v), nil }, nil
	})
}

// deleteAccount is a logical delete: the account stays readable by
// operators, and the account header then answers 403/104 like a disabled
// account. Deleting a deleted account succeeds without changing it.
func (a *API) deleteAccount(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getAccount(tx, req)
		if err != nil {
			return nil, err
		}
		if v.DeletedAt == nil {
			now := a.now()
			v.DeletedAt, v.UpdatedAt = &now, now
			b.Update(proto.KindAccount, v.ID, m.ModifyIndex, v)
		}
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// deleteAccountSecurityGroups deletes the account's security groups that the
// single DELETE would allow: a group some alive vif is in, or that another
// remaining group references, is skipped and not reported. Deleting a
// referencing group can free the group it references, so the rule is applied
// until nothing more can go (groups referencing each other stay).
func (a *API) deleteAccountSecurityGroups(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		acc, _, err := getAccount(tx, req)
		if err != nil {
			return nil, err
		}
		sgIdx, vifIdx := tx.KindIndex(proto.KindSecurityGroup), tx.KindIndex(proto.KindNetworkVif)

		type group struct {
			id   string
			mod  uint64
			mine bool
		}
		var groups []group
		refs := map[string][]string{} // referencer -> referenced groups
		err = tx.Each(proto.KindSecurityGroup, false, func(e state.Entry) error {
			var sg proto.SecurityGroup
			if err := decodeInto(e, &sg); err != nil {
				return err
			}
			groups = append(groups, group{id: sg.ID, mod: e.ModifyIndex, mine: sg.AccountID == acc.ID})
			// Stored rules were validated when written; a text that no longer
			// parses references nothing.
			if rules, err := sgrule.Parse(sg.Rule); err == nil {
				refs[sg.ID] = sgrule.References(rules)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		inUse := map[string]bool{}
		err = tx.Each(proto.KindNetworkVif, false, func(e state.Entry) error {
			var vif proto.NetworkVif
			if err := decodeInto(e, &vif); err != nil {
				return err
			}
			if vif.DeletedAt == nil {
				for _, sg := range vif.SecurityGroups {
					inUse[sg] = true
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}

		deleted := map[string]bool{}
		referenced := func(id string) bool {
			for from, to := range refs {
				if from == id || deleted[from] {
					continue
				}
				for _, t := range to {
					if t == id {
						return true
					}
				}
			}
			return false
		}
		for progress := true; progress; {
			progress = false
			for _, g := range groups {
				if g.mine && !deleted[g.id] && !inUse[g.id] && !referenced(g.id) {
					deleted[g.id] = true
					progress = true
				}
			}
		}
		out := []any{}
		for _, g := range groups {
			if deleted[g.id] {
				b.Delete(proto.KindSecurityGroup, g.id, g.mod)
				out = append(out, g.id)
			}
		}
		if len(out) > 0 {
			// The decision rests on scans of groups and vifs.
			b.CheckKind(proto.KindSecurityGroup, sgIdx)
			b.CheckKind(proto.KindNetworkVif, vifIdx)
		}
		return func(*state.Tx) (any, error) { return out, nil }, nil
	})
}

// deleteAccountSshKeyPairs logically deletes the account's alive key pairs.
// Upstream also re-deleted deleted ones; they are left as they are and not
// reported.
func (a *API) deleteAccountSshKeyPairs(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		acc, _, err := getAccount(tx, req)
		if err != nil {
			return nil, err
		}
		now := a.now()
		out := []any{}
		err = tx.Each(proto.KindSshKeyPair, false, func(e state.Entry) error {
			var k proto.SshKeyPair
			if err := decodeInto(e, &k); err != nil {
				return err
			}
			if k.AccountID != acc.ID || k.DeletedAt != nil {
				return nil
			}
			k.DeletedAt, k.UpdatedAt = &now, now
			b.Update(proto.KindSshKeyPair, k.ID, e.ModifyIndex, k)
			out = append(out, k.ID)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) { return out, nil }, nil
	})
}

// deleteAccountBackupObjects logically deletes the account's available
// backup objects, as DELETE /backup_objects/:id does for one. Upstream
// selected state `halted`, which backup objects never have, so it always
// answered [].
func (a *API) deleteAccountBackupObjects(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		acc, _, err := getAccount(tx, req)
		if err != nil {
			return nil, err
		}
		now := a.now()
		out := []any{}
		err = tx.Each(proto.KindBackupObject, false, func(e state.Entry) error {
			var bo proto.BackupObject
			if err := decodeInto(e, &bo); err != nil {
				return err
			}
			if bo.AccountID != acc.ID || bo.State != "available" {
				return nil
			}
			bo.State, bo.DeletedAt, bo.UpdatedAt = "deleted", &now, now
			b.Update(proto.KindBackupObject, bo.ID, e.ModifyIndex, bo)
			out = append(out, bo.ID)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) { return out, nil }, nil
	})
}
