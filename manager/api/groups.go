package api

import (
	"context"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// groupKind is one of the three tag-backed group resources (spec §2.21).
type groupKind struct {
	path        string // collection path
	prefix      string // uuid prefix
	typeID      int    // tags.type_id
	memberParam string // PUT parameter holding the member list
	memberKind  string // kind every member must be
}

// groupKinds: host node groups, storage node groups, network groups. The
// seed groups of the original (hng-shhost, sng-shstor, nwg-shnet) are not
// created here; the quick start creates them with vdc-manage.
var groupKinds = []groupKind{
	{"/host_node_groups", proto.PrefixHostNodeGroup, proto.TagTypeHostNodeGroup, "host_nodes", proto.KindHostNode},
	{"/storage_node_groups", proto.PrefixStorageNodeGroup, proto.TagTypeStorageNodeGroup, "storage_nodes", proto.KindStorageNode},
	{"/network_groups", proto.PrefixNetworkGroup, proto.TagTypeNetworkGroup, "networks", proto.KindNetwork},
}

func (a *API) registerGroups() {
	for _, g := range groupKinds {
		a.route("GET "+g.path, read, func(_ context.Context, req *Request) (any, error) { return a.listGroups(req, g) })
		a.route("GET "+g.path+"/{id}", read, func(_ context.Context, req *Request) (any, error) { return a.showGroup(req, g) })
		a.route("POST "+g.path, write, func(ctx context.Context, req *Request) (any, error) { return a.createGroup(ctx, req, g) })
		a.route("PUT "+g.path+"/{id}", write, func(ctx context.Context, req *Request) (any, error) { return a.updateGroup(ctx, req, g) })
		a.route("DELETE "+g.path+"/{id}", write, func(ctx context.Context, req *Request) (any, error) { return a.deleteGroup(ctx, req, g) })
	}
}

// groupDoc is the raw tags row plus mapped_uuids. Members deleted without
// going through their own DELETE route (which drops them from groups) are
// not shown.
func groupDoc(tx *state.Tx, g groupKind, v *proto.Tag) *format.Map {
	members := make([]string, 0, len(v.MappedUUIDs))
	for _, id := range v.MappedUUIDs {
		if tx.Exists(g.memberKind, id) {
			members = append(members, id)
		}
	}
	return format.NewMap(9).
		Set("id", v.ID).
		Set("account_id", v.AccountID).
		Set("uuid", v.ID).
		Set("type_id", v.TypeID).
		Set("name", v.Name).
		Set("attributes", v.Attributes).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("mapped_uuids", members)
}

// getGroup finds a group of kind g: syntax 400/143, missing 404/100. Groups
// are shown and changed without an account check, as upstream.
func getGroup(tx *state.Tx, g groupKind, id string) (*proto.Tag, state.Meta, error) {
	v, m, err := getPub[proto.Tag](tx, proto.KindTag, g.prefix, id)
	if err != nil {
		return nil, m, err
	}
	if v.TypeID != g.typeID {
		return nil, m, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	return v, m, nil
}

func (a *API) listGroups(req *Request, g groupKind) (any, error) {
	p := req.Params
	// Upstream answered a service_type filter with 400/110 (tags had no such
	// column). Our groups carry a service type, so the filter works like on
	// any other resource: validated, then matched.
	st, hasST := p.StrOK("service_type")
	if hasST {
		if err := a.checkServiceType(st); err != nil {
			return nil, err
		}
	}
	return list(a, req, proto.KindTag, func(v *proto.Tag) bool {
		if v.TypeID != g.typeID {
			return false
		}
		if acc, ok := p.StrOK("account_id"); ok && v.AccountID != acc {
			return false
		}
		if hasST && v.ServiceType != st {
			return false
		}
		if name, ok := p.StrOK("name"); ok && v.Name != name {
			return false
		}
		return true
	}, func(tx *state.Tx, v *proto.Tag, _ state.Meta) (*format.Map, error) { return groupDoc(tx, g, v), nil })
}

func (a *API) showGroup(req *Request, g groupKind) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getGroup(tx, g, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return groupDoc(tx, g, v), nil
	})
}

// groupName reads a present `name`: it must be a non-empty single value.
func groupName(req *Request) (string, bool, error) {
	if !req.Params.Has("name") {
		return "", false, nil
	}
	s, _, err := columnValue(req.Params, "name")
	if err != nil {
		return "", true, err
	}
	if s == "" {
		return "", true, errs.New(errs.UndefinedRequiredParameter, "name")
	}
	return s, true, nil
}

func (a *API) createGroup(ctx context.Context, req *Request, g groupKind) (any, error) {
	p := req.Params
	name, ok, err := groupName(req)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errs.New(errs.UndefinedRequiredParameter, "name")
	}
	attrs, _, err := columnValue(p, "attributes")
	if err != nil {
		return nil, err
	}
	st, err := a.serviceTypeParam(req)
	if err != nil {
		return nil, err
	}
	// A caller-chosen uuid (not in the original route) lets vdc-manage create
	// the well-known seed groups such as hng-shhost.
	id, err := createID(p, g.prefix)
	if err != nil {
		return nil, err
	}
	now := a.now()
	v := proto.Tag{
		ID: id, Timestamps: proto.Timestamps{CreatedAt: now, UpdatedAt: now},
		AccountID: req.Owner(), TypeID: g.typeID, Name: name, Attributes: attrs, ServiceType: st,
		MappedUUIDs: []string{},
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		if tx.Exists(proto.KindTag, id) {
			return nil, errs.New(errs.DatabaseError, "Sequel::UniqueConstraintViolation: duplicate uuid %s", id)
		}
		b.Create(proto.KindTag, id, v)
		return func(tx *state.Tx) (any, error) { return groupDoc(tx, g, &v), nil }, nil
	})
}

// memberList reads the member list parameter: "" (or a bare key) clears, a
// string or an array replaces. Empty entries (`host_nodes[]=`) are skipped,
// duplicates kept once.
func memberList(req *Request, key string) ([]string, error) {
	if req.Params.Get(key) == nil {
		return []string{}, nil
	}
	raw, ok := req.Params.Strings(key)
	if !ok {
		return nil, errs.New(errs.InvalidParameter, "%s", key)
	}
	out := make([]string, 0, len(raw))
	seen := map[string]bool{}
	for _, s := range raw {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out, nil
}

func (a *API) updateGroup(ctx context.Context, req *Request, g groupKind) (any, error) {
	p := req.Params
	var members []string
	hasMembers := p.Has(g.memberParam)
	if hasMembers {
		var err error
		if members, err = memberList(req, g.memberParam); err != nil {
			return nil, err
		}
	}
	// Upstream rejected every `name` with 400/143 (a bug); here it renames.
	name, hasName, err := groupName(req)
	if err != nil {
		return nil, err
	}
	attrs, hasAttrs, err := columnValue(p, "attributes")
	if err != nil {
		return nil, err
	}
	var st string
	hasST := p.Has("service_type")
	if hasST {
		if st, err = a.serviceTypeParam(req); err != nil {
			return nil, err
		}
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getGroup(tx, g, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if hasMembers {
			for _, id := range members {
				if !tx.Exists(g.memberKind, id) {
					return nil, errs.New(errs.UnknownUUIDResource, "%s", id)
				}
				// The member must still exist when the change commits.
				b.Check(g.memberKind, id, 0)
			}
			v.MappedUUIDs = members
		}
		if hasName {
			v.Name = name
		}
		if hasAttrs {
			v.Attributes = attrs
		}
		if hasST {
			v.ServiceType = st
		}
		v.UpdatedAt = a.now()
		b.Update(proto.KindTag, v.ID, m.ModifyIndex, v)
		return func(tx *state.Tx) (any, error) { return groupDoc(tx, g, v), nil }, nil
	})
}

func (a *API) deleteGroup(ctx context.Context, req *Request, g groupKind) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getGroup(tx, g, req.ID("id"))
		if err != nil {
			return nil, err
		}
		b.Delete(proto.KindTag, v.ID, m.ModifyIndex)
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// dropFromGroups removes member from every group of typeID, for a member
// being deleted in the same transaction. The tags kind is guarded so that a
// concurrent membership change re-plans the delete.
func dropFromGroups(tx *state.Tx, b *state.Builder, typeID int, member string) error {
	b.CheckKind(proto.KindTag, tx.KindIndex(proto.KindTag))
	return tx.Each(proto.KindTag, false, func(e state.Entry) error {
		var t proto.Tag
		if err := decodeInto(e, &t); err != nil {
			return err
		}
		if t.TypeID != typeID {
			return nil
		}
		kept := make([]string, 0, len(t.MappedUUIDs))
		for _, id := range t.MappedUUIDs {
			if id != member {
				kept = append(kept, id)
			}
		}
		if len(kept) != len(t.MappedUUIDs) {
			t.MappedUUIDs = kept
			b.Update(proto.KindTag, t.ID, e.ModifyIndex, t)
		}
		return nil
	})
}
