package api

import (
	"context"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/sgrule"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Network vifs (spec §2.9): security group membership and external IPs
// (NAT routes from an IP handle's address to the vif's address). The
// monitor routes (§2.9 items 5–9) are in network_vif_monitors.go.

func (a *API) registerNetworkVifs() {
	a.route("GET /network_vifs", read, a.listNetworkVifs)
	a.route("GET /network_vifs/{vif_id}", read, a.showNetworkVif)
	a.route("PUT /network_vifs/{vif_id}/add_security_group", write, a.addVifSecurityGroup)
	a.route("PUT /network_vifs/{vif_id}/remove_security_group", write, a.removeVifSecurityGroup)
	a.route("GET /network_vifs/{vif_id}/external_ip", read, a.listExternalIPs)
	a.route("POST /network_vifs/{vif_id}/external_ip", write, a.addExternalIP)
	a.route("DELETE /network_vifs/{vif_id}/external_ip", write, a.removeExternalIP)
}

// leaseDoc is an entry of a vif's ip_leases.
func leaseDoc(tx *state.Tx, networkID, ipv4 string) (*format.Map, error) {
	var l proto.IPLease
	if _, err := tx.Get(proto.KindIPLease, leaseID(networkID, ipv4), &l); err != nil {
		if errs.Is(err, errs.NotFound) {
			return nil, nil
		}
		return nil, err
	}
	var handle any
	if l.IPHandleID != nil {
		var h proto.IPHandle
		if _, err := tx.Get(proto.KindIPHandle, *l.IPHandleID, &h); err == nil {
			handle = format.NewMap(2).Set("id", h.ID).Set("display_name", h.DisplayName)
		} else if !errs.Is(err, errs.NotFound) {
			return nil, err
		}
	}
	return format.NewMap(3).
		Set("ipv4", l.IPv4).
		Set("network_id", l.NetworkID).
		Set("ip_handle", handle), nil
}

// vifDoc is the network vif document of §2.8.
func vifDoc(tx *state.Tx, v *proto.NetworkVif, _ state.Meta) (*format.Map, error) {
	leases := []any{}
	for _, side := range []struct{ nw, ip *string }{{v.NetworkID, v.IPv4Address}, {v.NatNetworkID, v.NatIPv4Address}} {
		if side.nw == nil || side.ip == nil {
			continue
		}
		d, err := leaseDoc(tx, *side.nw, *side.ip)
		if err != nil {
			return nil, err
		}
		if d != nil {
			leases = append(leases, d)
		}
	}
	sgs := v.SecurityGroups
	if sgs == nil {
		sgs = []string{}
	}
	monitors, err := vifMonitorDocs(tx, v.ID)
	if err != nil {
		return nil, err
	}
	return format.NewMap(10).
		Set("id", v.ID).
		Set("uuid", v.ID).
		Set("ipv4_address", strOrNil(v.IPv4Address)).
		Set("nat_ipv4_address", strOrNil(v.NatIPv4Address)).
		Set("network_id", strOrNil(v.NetworkID)).
		Set("instance_id", strOrNil(v.InstanceID)).
		Set("security_groups", sgs).
		Set("mac_addr", macColon(v.MacAddr)).
		Set("network_monitors", monitors).
		Set("ip_leases", leases), nil
}

// listNetworkVifs lists alive vifs (upstream forgot the alive filter).
func (a *API) listNetworkVifs(_ context.Context, req *Request) (any, error) {
	p := req.Params
	return list(a, req, proto.KindNetworkVif, func(v *proto.NetworkVif) bool {
		if acc, ok := p.StrOK("account_id"); ok && v.AccountID != acc {
			return false
		}
		return v.DeletedAt == nil
	}, vifDoc)
}

func getVif(tx *state.Tx, req *Request) (*proto.NetworkVif, state.Meta, error) {
	v, m, err := getOwned[proto.NetworkVif](tx, req, proto.KindNetworkVif, proto.PrefixNetworkVif, req.ID("vif_id"))
	if err == nil && v.DeletedAt != nil {
		return nil, m, errs.New(errs.UnknownUUIDResource, "%s", v.ID)
	}
	return v, m, err
}

func (a *API) showNetworkVif(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		return vifDoc(tx, v, m)
	})
}

// groupEvents are the events of vif joining groups added and leaving groups
// removed (spec §2.9, §3): <sg>/vnic_joined|vnic_left(vif),
// <vif>/joined_group|left_group(sg), and <R>/referencer_added|removed(sg)
// for every group R whose rules name sg, whose hosts hold sg's members.
func groupEvents(tx *state.Tx, vif string, added, removed []string) ([]proto.Event, error) {
	if len(added) == 0 && len(removed) == 0 {
		return nil, nil
	}
	referencers := map[string][]string{}
	err := tx.Each(proto.KindSecurityGroup, false, func(e state.Entry) error {
		var g proto.SecurityGroup
		if err := decodeInto(e, &g); err != nil {
			return err
		}
		rules, _ := sgrule.Parse(g.Rule)
		for _, ref := range sgrule.References(rules) {
			referencers[ref] = append(referencers[ref], g.ID)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var evs []proto.Event
	for _, sg := range removed {
		evs = append(evs,
			proto.Event{Name: proto.EventVnicLeft(sg), Args: []string{vif}},
			proto.Event{Name: proto.EventLeftGroup(vif), Args: []string{sg}})
		for _, r := range referencers[sg] {
			evs = append(evs, proto.Event{Name: proto.EventReferencerRemoved(r), Args: []string{sg}})
		}
	}
	for _, sg := range added {
		evs = append(evs,
			proto.Event{Name: proto.EventVnicJoined(sg), Args: []string{vif}},
			proto.Event{Name: proto.EventJoinedGroup(vif), Args: []string{sg}})
		for _, r := range referencers[sg] {
			evs = append(evs, proto.Event{Name: proto.EventReferencerAdded(r), Args: []string{sg}})
		}
	}
	return evs, nil
}

func (a *API) addVifSecurityGroup(ctx context.Context, req *Request) (any, error) {
	var evs []proto.Event
	doc, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		sgID := req.Params.Str("security_group_id")
		sg, sm, err := getOwned[proto.SecurityGroup](tx, req, proto.KindSecurityGroup, proto.PrefixSecurityGroup, sgID)
		if err != nil {
			return nil, err
		}
		if sg.AccountID != v.AccountID {
			return nil, errs.New(errs.UnknownUUIDResource, "%s", sgID)
		}
		if slices.Contains(v.SecurityGroups, sg.ID) {
			return nil, errs.New(errs.DuplicatedSecurityGroup, "%s is already in %s", v.ID, sg.ID)
		}
		v.SecurityGroups = append(slices.Clone(v.SecurityGroups), sg.ID)
		v.UpdatedAt = a.now()
		b.Check(proto.KindSecurityGroup, sg.ID, sm.ModifyIndex)
		b.Update(proto.KindNetworkVif, v.ID, m.ModifyIndex, v)
		if evs, err = groupEvents(tx, v.ID, []string{sg.ID}, nil); err != nil {
			return nil, err
		}
		return renderVif(v.ID), nil
	})
	if err == nil {
		a.publish(ctx, evs...)
	}
	return doc, err
}

func (a *API) removeVifSecurityGroup(ctx context.Context, req *Request) (any, error) {
	var evs []proto.Event
	doc, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		sgID := req.Params.Str("security_group_id")
		i := slices.Index(v.SecurityGroups, sgID)
		if i < 0 {
			return nil, errs.New(errs.UnknownSecurityGroup, "%s is not a group of %s", sgID, v.ID)
		}
		v.SecurityGroups = slices.Delete(slices.Clone(v.SecurityGroups), i, i+1)
		v.UpdatedAt = a.now()
		b.Update(proto.KindNetworkVif, v.ID, m.ModifyIndex, v)
		if evs, err = groupEvents(tx, v.ID, nil, []string{sgID}); err != nil {
			return nil, err
		}
		return renderVif(v.ID), nil
	})
	if err == nil {
		a.publish(ctx, evs...)
	}
	return doc, err
}

// externalIPDoc is the outer side of an external-ip route.
func externalIPDoc(r *proto.NetworkRoute) *format.Map {
	return format.NewMap(4).
		Set("network_id", r.OuterNetworkID).
		Set("vif_id", strOrNil(r.InnerVifID)).
		Set("ip_handle_id", strOrNil(r.IPHandleID)).
		Set("ipv4", r.OuterIPv4)
}

// vifRoutes returns the external-ip routes into vif, with their metadata.
func vifRoutes(tx *state.Tx, vifID string, fn func(r *proto.NetworkRoute, m state.Meta)) error {
	return tx.Each(proto.KindNetworkRoute, false, func(e state.Entry) error {
		var r proto.NetworkRoute
		if err := decodeInto(e, &r); err != nil {
			return err
		}
		if r.RouteType == routeExternalIP && r.InnerVifID != nil && *r.InnerVifID == vifID {
			fn(&r, e.Meta)
		}
		return nil
	})
}

func (a *API) listExternalIPs(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		out := []any{}
		err = vifRoutes(tx, v.ID, func(r *proto.NetworkRoute, _ state.Meta) { out = append(out, externalIPDoc(r)) })
		return out, err
	})
}

// handleFilter applies `ip_handle_filter` (col.nil / col.not_nil) to the
// handle document: syntax errors are 400/143, an unknown column 400/110, a
// handle that does not pass is not found (404/100).
func handleFilter(req *Request, doc *format.Map, id string) error {
	if !req.Params.Has("ip_handle_filter") {
		return nil
	}
	fs, ok := req.Params.Strings("ip_handle_filter")
	if !ok {
		return errs.New(errs.InvalidParameter, "ip_handle_filter")
	}
	for _, f := range fs {
		col, op, hasOp := strings.Cut(f, ".")
		if !isWord(col) || (hasOp && op != "nil" && op != "not_nil") {
			return errs.New(errs.InvalidParameter, "ip_handle_filter")
		}
		if !hasOp {
			continue
		}
		v, ok := doc.Get(col)
		if !ok {
			return noColumn(col)
		}
		if isNil(v) != (op == "nil") {
			return errs.New(errs.UnknownUUIDResource, "%s", id)
		}
	}
	return nil
}

// addExternalIP routes an IP handle's address to the vif's address. The
// handle records the vif, so it counts as in use until the route goes.
func (a *API) addExternalIP(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		if v.NetworkID == nil || v.IPv4Address == nil {
			return nil, errs.New(errs.NetworkVifNotAttached, "%s is not on a network", v.ID)
		}
		hid, ok := req.Params.StrOK("ip_handle_id")
		if !ok || hid == "" {
			return nil, errs.New(errs.InvalidParameter, "ip_handle_id")
		}
		h, hm, err := getPub[proto.IPHandle](tx, proto.KindIPHandle, proto.PrefixIPHandle, hid)
		if err != nil {
			return nil, err
		}
		if err := handlePoolOwned(tx, req, h); err != nil {
			return nil, err
		}
		hdoc, err := ipHandleDoc(tx, h, hm)
		if err != nil {
			return nil, err
		}
		if err := handleFilter(req, hdoc, h.ID); err != nil {
			return nil, err
		}
		if h.NetworkVifID != nil {
			return nil, errs.New(errs.InvalidParameter, "IP handle %s is already in use by %s", h.ID, *h.NetworkVifID)
		}
		if h.NetworkID == nil {
			return nil, errs.New(errs.InvalidParameter, "IP handle %s has no address", h.ID)
		}
		outer := leaseID(*h.NetworkID, h.IPv4)
		rid := routeExternalIP + "/" + outer
		if tx.Exists(proto.KindNetworkRoute, rid) {
			return nil, errs.New(errs.InvalidParameter, "%s is already routed", h.IPv4)
		}
		now := a.now()
		r := proto.NetworkRoute{
			ID: rid, Timestamps: stamps(now), RouteType: routeExternalIP,
			OuterNetworkID: *h.NetworkID, OuterIPv4: h.IPv4,
			InnerNetworkID: *v.NetworkID, InnerVifID: &v.ID, InnerIPv4: *v.IPv4Address,
			IPHandleID: &h.ID,
		}
		h.NetworkVifID, h.UpdatedAt = &v.ID, now
		b.Check(proto.KindNetworkVif, v.ID, m.ModifyIndex)
		b.Check(proto.KindIPLease, outer, 0)
		b.Check(proto.KindIPLease, leaseID(*v.NetworkID, *v.IPv4Address), 0)
		b.Update(proto.KindIPHandle, h.ID, hm.ModifyIndex, h)
		b.Create(proto.KindNetworkRoute, rid, r)
		return func(*state.Tx) (any, error) { return externalIPDoc(&r), nil }, nil
	})
}

func (a *API) removeExternalIP(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, _, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		hid, ok := req.Params.StrOK("ip_handle_id")
		if !ok || hid == "" {
			return nil, errs.New(errs.InvalidParameter, "ip_handle_id")
		}
		now := a.now()
		o := newOpSet(b)
		out := []any{}
		var ferr error
		err = vifRoutes(tx, v.ID, func(r *proto.NetworkRoute, m state.Meta) {
			if r.IPHandleID == nil || *r.IPHandleID != hid || ferr != nil {
				return
			}
			o.del(proto.KindNetworkRoute, r.ID, m.ModifyIndex)
			ferr = unbindHandle(tx, o, r.IPHandleID, now)
			out = append(out, externalIPDoc(r))
		})
		if err == nil {
			err = ferr
		}
		if err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) { return out, nil }, nil
	})
}
