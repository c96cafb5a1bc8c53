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

// IP pools (spec §2.11): an account's set of DC networks from which it
// acquires addresses as IP handles. A handle's address is an ip_leases
// record of type "handle" on the network it came from.

func (a *API) registerIPPools() {
	a.route("GET /ip_pools", read, a.listIPPools)
	a.route("POST /ip_pools", write, a.createIPPool)
	a.route("DELETE /ip_pools/{id}", write, a.deleteIPPool)
	a.route("GET /ip_pools/{id}", read, a.showIPPool)
	a.route("GET /ip_pools/{id}/ip_handles", read, a.listPoolIPHandles)
	a.route("PUT /ip_pools/{id}/acquire", write, a.acquireIP)
	a.route("PUT /ip_pools/{id}/release", write, a.releaseIP)
}

func ipPoolDoc(tx *state.Tx, v *proto.IPPool, _ state.Meta) (*format.Map, error) {
	dcns := []any{}
	for _, id := range v.DcNetworkIDs {
		var dc proto.DcNetwork
		if _, err := tx.Get(proto.KindDcNetwork, id, &dc); err != nil {
			if errs.Is(err, errs.NotFound) {
				continue
			}
			return nil, err
		}
		d, err := dcNetworkDoc(tx, &dc, state.Meta{})
		if err != nil {
			return nil, err
		}
		dcns = append(dcns, d)
	}
	return format.NewMap(5).
		Set("id", v.ID).
		Set("display_name", v.DisplayName).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("dc_networks", dcns), nil
}

func getIPPool(tx *state.Tx, req *Request) (*proto.IPPool, state.Meta, error) {
	return getOwned[proto.IPPool](tx, req, proto.KindIPPool, proto.PrefixIPPool, req.ID("id"))
}

// listIPPools filters by account only: upstream's date filters referenced
// network columns and never worked; here they apply to the pool document.
func (a *API) listIPPools(_ context.Context, req *Request) (any, error) {
	p := req.Params
	return list(a, req, proto.KindIPPool, func(v *proto.IPPool) bool {
		acc, ok := p.StrOK("account_id")
		return !ok || v.AccountID == acc
	}, ipPoolDoc)
}

func (a *API) showIPPool(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getIPPool(tx, req)
		if err != nil {
			return nil, err
		}
		return ipPoolDoc(tx, v, m)
	})
}

// createIPPool: `dc_networks` must be an array whose items are DC network
// uuids (unknown → 404/100) or names (unknown names are skipped).
func (a *API) createIPPool(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	display := ""
	if p.Has("display_name") {
		s, ok := p.StrOK("display_name")
		if !ok {
			return nil, errs.New(errs.InvalidParameter, "display_name")
		}
		display = s
	}
	var items []string
	if p.Has("dc_networks") {
		arr, isArr := p.Get("dc_networks").([]any)
		if !isArr {
			return nil, errs.New(errs.InvalidParameter, "dc_networks")
		}
		for _, it := range arr {
			s, ok := it.(string)
			if !ok {
				return nil, errs.New(errs.InvalidParameter, "dc_networks")
			}
			items = append(items, s)
		}
	}
	now := a.now()
	id := newID(proto.PrefixIPPool)
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		pool := proto.IPPool{ID: id, Timestamps: stamps(now), AccountID: req.Owner(), DisplayName: display, DcNetworkIDs: []string{}}
		for _, it := range items {
			var dcnID string
			if strings.HasPrefix(it, proto.PrefixDcNetwork+"-") {
				dc, _, err := getDcNetwork(tx, it)
				if err != nil {
					return nil, err
				}
				dcnID = dc.ID
			} else {
				var claim proto.UniqueName
				_, err := tx.Get(proto.KindUniqueName, dcNetworkNameScope+it, &claim)
				if errs.Is(err, errs.NotFound) {
					continue
				}
				if err != nil {
					return nil, err
				}
				dcnID = claim.Owner
			}
			if !slices.Contains(pool.DcNetworkIDs, dcnID) {
				// The DC network must still exist when the pool commits.
				b.Check(proto.KindDcNetwork, dcnID, 0)
				pool.DcNetworkIDs = append(pool.DcNetworkIDs, dcnID)
			}
		}
		b.Create(proto.KindIPPool, id, pool)
		return func(tx *state.Tx) (any, error) { return ipPoolDoc(tx, &pool, state.Meta{}) }, nil
	})
}

// deleteIPPool releases the pool's handles with it; a handle in use by a
// NAT route is 404/185 (release it from its vif first).
func (a *API) deleteIPPool(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		pool, m, err := getIPPool(tx, req)
		if err != nil {
			return nil, err
		}
		b.CheckKind(proto.KindIPHandle, tx.KindIndex(proto.KindIPHandle))
		err = tx.Each(proto.KindIPHandle, false, func(e state.Entry) error {
			var h proto.IPHandle
			if err := decodeInto(e, &h); err != nil {
				return err
			}
			if h.IPPoolID != pool.ID {
				return nil
			}
			if h.NetworkVifID != nil {
				return errs.New(errs.IpHandleInUse, "%s is in use by %s", h.ID, *h.NetworkVifID)
			}
			destroyHandle(tx, b, &h, e.Meta)
			return nil
		})
		if err != nil {
			return nil, err
		}
		b.Delete(proto.KindIPPool, pool.ID, m.ModifyIndex)
		return func(*state.Tx) (any, error) { return []any{pool.ID}, nil }, nil
	})
}

// destroyHandle adds the delete of a handle and its lease.
func destroyHandle(tx *state.Tx, b *state.Builder, h *proto.IPHandle, m state.Meta) {
	b.Delete(proto.KindIPHandle, h.ID, m.ModifyIndex)
	if h.NetworkID != nil {
		id := leaseID(*h.NetworkID, h.IPv4)
		if e, ok := tx.Raw(proto.KindIPLease, id); ok {
			b.Delete(proto.KindIPLease, id, e.ModifyIndex)
		}
	}
}

func (a *API) listPoolIPHandles(_ context.Context, req *Request) (any, error) {
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	return a.view(func(tx *state.Tx) (any, error) {
		pool, _, err := getIPPool(tx, req)
		if err != nil {
			return nil, err
		}
		return listTx(tx, o, proto.KindIPHandle, func(h *proto.IPHandle) bool {
			return h.IPPoolID == pool.ID
		}, ipHandleDoc)
	})
}

// acquireIP takes the next dynamic address of `network_id` (any network
// whose DC network is in the pool, as upstream) as a new IP handle.
func (a *API) acquireIP(ctx context.Context, req *Request) (any, error) {
	nwID := req.Params.Str("network_id")
	now := a.now()
	return a.commitContended(ctx, func(tx *state.Tx, b *state.Builder, attempt int) (renderFn, error) {
		pool, pm, err := getIPPool(tx, req)
		if err != nil {
			return nil, err
		}
		var nw proto.Network
		var nm state.Meta
		if checkUUID(nwID, proto.PrefixNetwork) == nil {
			nm, err = tx.Get(proto.KindNetwork, nwID, &nw)
		}
		if checkUUID(nwID, proto.PrefixNetwork) != nil || errs.Is(err, errs.NotFound) ||
			(err == nil && !usableBy(req.Account, nw.AccountID)) {
			return nil, errs.New(errs.UnknownNetwork, "%s", nwID)
		}
		if err != nil {
			return nil, err
		}
		if !slices.Contains(pool.DcNetworkIDs, nw.DcNetworkID) {
			return nil, errs.New(errs.NetworkNotInDcNetwork, "%s is not on a DC network of %s", nw.ID, pool.ID)
		}
		ip, err := newAllocator(tx, b, attempt).pickIP(&nw)
		if err != nil {
			return nil, err
		}
		ipv4, hid := ipString(ip), newID(proto.PrefixIPHandle)
		h := proto.IPHandle{
			ID: hid, Timestamps: stamps(now), AccountID: pool.AccountID, IPPoolID: pool.ID,
			NetworkID: &nw.ID, IPv4: ipv4,
		}
		b.Check(proto.KindIPPool, pool.ID, pm.ModifyIndex)
		b.Check(proto.KindNetwork, nw.ID, nm.ModifyIndex)
		b.Create(proto.KindIPHandle, hid, h)
		b.Create(proto.KindIPLease, leaseID(nw.ID, ipv4), proto.IPLease{
			ID: leaseID(nw.ID, ipv4), Timestamps: stamps(now), NetworkID: nw.ID, IPv4: ipv4,
			Type: proto.LeaseHandle, IPHandleID: &hid, Auto: true,
		})
		doc := format.NewMap(4).
			Set("ip_handle_id", hid).
			Set("dc_network_id", nw.DcNetworkID).
			Set("network_id", nw.ID).
			Set("ipv4", ipv4)
		return func(*state.Tx) (any, error) { return doc, nil }, nil
	})
}

func (a *API) releaseIP(ctx context.Context, req *Request) (any, error) {
	hid := req.Params.Str("ip_handle_id")
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		pool, _, err := getIPPool(tx, req)
		if err != nil {
			return nil, err
		}
		var h proto.IPHandle
		var hm state.Meta
		if checkUUID(hid, proto.PrefixIPHandle) == nil {
			hm, err = tx.Get(proto.KindIPHandle, hid, &h)
		}
		if checkUUID(hid, proto.PrefixIPHandle) != nil || errs.Is(err, errs.NotFound) || (err == nil && h.IPPoolID != pool.ID) {
			return nil, errs.New(errs.UnknownIpHandle, "%s", hid)
		}
		if err != nil {
			return nil, err
		}
		if h.NetworkVifID != nil {
			return nil, errs.New(errs.IpHandleInUse, "%s is in use by %s", h.ID, *h.NetworkVifID)
		}
		destroyHandle(tx, b, &h, hm)
		return func(*state.Tx) (any, error) { return format.NewMap(0), nil }, nil
	})
}
