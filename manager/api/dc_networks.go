package api

import (
	"context"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// DC networks (spec §2.10): physical networks that virtual networks live on.
// Not account resources: lookups check syntax and existence only. Names are
// unique through a unique_names claim "dc_network_name/<name>".

// dcNetworkNameScope prefixes DC network name claims.
const dcNetworkNameScope = "dc_network_name/"

// networkModes are the modes a DC network may offer.
var networkModes = []string{"securitygroup", "passthrough", "l2overlay"}

func (a *API) registerDcNetworks() {
	a.route("GET /dc_networks", read, a.listDcNetworks)
	a.route("GET /dc_networks/{id}", read, a.showDcNetwork)
	a.route("POST /dc_networks", write, a.createDcNetwork)
	a.route("DELETE /dc_networks/{id}", write, a.deleteDcNetwork)
	a.route("PUT /dc_networks/{id}", write, a.updateDcNetwork)
	a.route("GET /dc_networks/{id}/offering_modes", read, a.showOfferingModes)
	a.route("PUT /dc_networks/{id}/offering_modes/add", write, a.addOfferingModes)
	a.route("PUT /dc_networks/{id}/offering_modes/delete", write, a.deleteOfferingModes)
}

func dcNetworkDoc(_ *state.Tx, v *proto.DcNetwork, _ state.Meta) (*format.Map, error) {
	var vlan any
	if v.VlanLeaseID != nil {
		vlan = *v.VlanLeaseID
	}
	modes := v.OfferingNetworkModes
	if modes == nil {
		modes = []string{}
	}
	return format.NewMap(9).
		Set("id", v.ID).
		Set("uuid", v.ID).
		Set("name", v.Name).
		Set("description", v.Description).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("vlan_lease_id", vlan).
		Set("offering_network_modes", modes).
		Set("allow_new_networks", v.AllowNewNetworks), nil
}

func dbError(msg string, args ...any) error {
	return errs.New(errs.DatabaseError, "Sequel::ValidationFailed: "+msg, args...)
}

func (a *API) listDcNetworks(_ context.Context, req *Request) (any, error) {
	p := req.Params
	return list(a, req, proto.KindDcNetwork, func(v *proto.DcNetwork) bool {
		if n, ok := p.StrOK("name"); ok && v.Name != n {
			return false
		}
		return true
	}, dcNetworkDoc)
}

func getDcNetwork(tx *state.Tx, id string) (*proto.DcNetwork, state.Meta, error) {
	return getPub[proto.DcNetwork](tx, proto.KindDcNetwork, proto.PrefixDcNetwork, id)
}

func (a *API) showDcNetwork(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getDcNetwork(tx, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return dcNetworkDoc(tx, v, m)
	})
}

// checkDcNetworkName is the model's rule: `\w+`.
func checkDcNetworkName(name string) error {
	if !isWord(name) {
		return dbError("name %q must match \\w+", name)
	}
	return nil
}

// claimDcNetworkName adds the name claim, or fails when another DC network
// holds the name.
func claimDcNetworkName(tx *state.Tx, b *state.Builder, name, owner string) error {
	if tx.Exists(proto.KindUniqueName, dcNetworkNameScope+name) {
		return dbError("name %q is already taken", name)
	}
	b.Create(proto.KindUniqueName, dcNetworkNameScope+name, proto.UniqueName{ID: dcNetworkNameScope + name, Owner: owner})
	return nil
}

func (a *API) createDcNetwork(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	id, err := createID(p, proto.PrefixDcNetwork)
	if err != nil {
		return nil, err
	}
	name, _ := p.StrOK("name")
	if err := checkDcNetworkName(name); err != nil {
		return nil, err
	}
	desc, _ := p.StrOK("description")
	now := a.now()
	v := proto.DcNetwork{
		ID: id, Timestamps: stamps(now), Name: name, Description: desc,
		OfferingNetworkModes: []string{"passthrough"},
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		if tx.Exists(proto.KindDcNetwork, id) {
			return nil, errs.New(errs.DatabaseError, "Sequel::UniqueConstraintViolation: duplicate uuid %s", id)
		}
		if err := claimDcNetworkName(tx, b, name, id); err != nil {
			return nil, err
		}
		b.Create(proto.KindDcNetwork, id, v)
		return func(tx *state.Tx) (any, error) { return dcNetworkDoc(tx, &v, state.Meta{}) }, nil
	})
}

func (a *API) deleteDcNetwork(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getDcNetwork(tx, req.ID("id"))
		if err != nil {
			return nil, err
		}
		// Upstream deleted the row and left networks and IP pools pointing
		// at nothing; refuse while anything still refers to it.
		used := false
		err = tx.Each(proto.KindNetwork, false, func(e state.Entry) error {
			var nw proto.Network
			if err := decodeInto(e, &nw); err != nil {
				return err
			}
			if nw.DcNetworkID == v.ID {
				used = true
				return state.ErrStop
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if used {
			return nil, errs.New(errs.InvalidParameter, "DC network %s still has networks", v.ID)
		}
		err = tx.Each(proto.KindIPPool, false, func(e state.Entry) error {
			var pool proto.IPPool
			if err := decodeInto(e, &pool); err != nil {
				return err
			}
			if slices.Contains(pool.DcNetworkIDs, v.ID) {
				used = true
				return state.ErrStop
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if used {
			return nil, errs.New(errs.InvalidParameter, "DC network %s is in an IP pool", v.ID)
		}
		b.CheckKind(proto.KindNetwork, tx.KindIndex(proto.KindNetwork))
		b.CheckKind(proto.KindIPPool, tx.KindIndex(proto.KindIPPool))
		b.Delete(proto.KindDcNetwork, v.ID, m.ModifyIndex)
		b.DeleteIfExists(proto.KindUniqueName, dcNetworkNameScope+v.Name)
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// parseBool is Sequel's boolean typecast for form values; anything else is a
// model error.
func parseBool(key, s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "t", "1", "yes", "y", "on":
		return true, nil
	case "false", "f", "0", "no", "n", "off", "":
		return false, nil
	}
	return false, dbError("%s %q is not a boolean", key, s)
}

// modesParam reads `key` as a comma string or an array of mode names, each
// of which must be a known mode (else 400/110).
func modesParam(req *Request, key string) ([]string, error) {
	vs, ok := req.Params.Strings(key)
	if !ok {
		return nil, errs.New(errs.InvalidParameter, "%s", key)
	}
	var out []string
	for _, v := range vs {
		for m := range strings.SplitSeq(v, ",") {
			m = strings.TrimSpace(m)
			if m == "" {
				continue
			}
			if !slices.Contains(networkModes, m) {
				return nil, dbError("unknown network mode %q", m)
			}
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out, nil
}

func (a *API) updateDcNetwork(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getDcNetwork(tx, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if name, ok := p.StrOK("name"); ok && name != v.Name {
			if err := checkDcNetworkName(name); err != nil {
				return nil, err
			}
			if err := claimDcNetworkName(tx, b, name, v.ID); err != nil {
				return nil, err
			}
			b.DeleteIfExists(proto.KindUniqueName, dcNetworkNameScope+v.Name)
			v.Name = name
		}
		if d, ok := p.StrOK("description"); ok {
			v.Description = d
		}
		if s, ok := p.StrOK("allow_new_networks"); ok {
			if v.AllowNewNetworks, err = parseBool("allow_new_networks", s); err != nil {
				return nil, err
			}
		}
		if p.Has("offering_network_modes") {
			if v.OfferingNetworkModes, err = modesParam(req, "offering_network_modes"); err != nil {
				return nil, err
			}
		}
		v.UpdatedAt = a.now()
		b.Update(proto.KindDcNetwork, v.ID, m.ModifyIndex, v)
		return func(tx *state.Tx) (any, error) { return dcNetworkDoc(tx, v, m) }, nil
	})
}

func modesDoc(v *proto.DcNetwork) []string {
	if v.OfferingNetworkModes == nil {
		return []string{}
	}
	return v.OfferingNetworkModes
}

func (a *API) showOfferingModes(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getDcNetwork(tx, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return modesDoc(v), nil
	})
}

func (a *API) addOfferingModes(ctx context.Context, req *Request) (any, error) {
	return a.changeOfferingModes(ctx, req, func(have, given []string) []string {
		for _, m := range given {
			if !slices.Contains(have, m) {
				have = append(have, m)
			}
		}
		return have
	})
}

// deleteOfferingModes validates the names as add does, so a typo is an
// error rather than a silent no-op.
func (a *API) deleteOfferingModes(ctx context.Context, req *Request) (any, error) {
	return a.changeOfferingModes(ctx, req, func(have, given []string) []string {
		out := []string{}
		for _, m := range have {
			if !slices.Contains(given, m) {
				out = append(out, m)
			}
		}
		return out
	})
}

func (a *API) changeOfferingModes(ctx context.Context, req *Request, change func(have, given []string) []string) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getDcNetwork(tx, req.ID("id"))
		if err != nil {
			return nil, err
		}
		given, err := modesParam(req, "mode")
		if err != nil {
			return nil, err
		}
		v.OfferingNetworkModes = change(slices.Clone(modesDoc(v)), given)
		v.UpdatedAt = a.now()
		b.Update(proto.KindDcNetwork, v.ID, m.ModifyIndex, v)
		return func(*state.Tx) (any, error) { return modesDoc(v), nil }, nil
	})
}
