package api

import (
	"context"
	"slices"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Networks (spec §2.8): account-owned IPv4 networks on a DC network, with
// their DHCP ranges, reservations, vifs, services and routes. Addresses are
// claimed through ip_leases records (see ipam.go).

func (a *API) registerNetworks() {
	a.route("GET /networks", read, a.listNetworks)
	a.route("GET /networks/{id}", read, a.showNetwork)
	a.route("POST /networks", write, a.createNetwork)
	a.route("DELETE /networks/{id}", write, a.deleteNetwork)
	a.route("GET /networks/{id}/dhcp_ranges", read, a.showDhcpRanges)
	a.route("PUT /networks/{id}/dhcp_ranges/add", write, a.addDhcpRange)
	a.route("PUT /networks/{id}/dhcp_ranges/remove", write, a.removeDhcpRange)
	a.route("PUT /networks/{id}/dhcp/reserve", write, a.reserveAddresses)
	a.route("PUT /networks/{id}/dhcp/release", write, a.releaseAddresses)
	a.route("GET /networks/{id}/vifs", read, a.listNetworkVifsOf)
	a.route("GET /networks/{id}/vifs/{vif_id}", read, a.showNetworkVifOf)
	a.route("POST /networks/{id}/vifs", write, a.createNetworkVif)
	a.route("DELETE /networks/{id}/vifs/{vif_id}", write, a.deleteNetworkVif)
	a.route("PUT /networks/{id}/vifs/{vif_id}/attach", write, a.attachNetworkVif)
	a.route("PUT /networks/{id}/vifs/{vif_id}/detach", write, a.detachNetworkVif)
	a.route("GET /networks/{id}/services", read, a.listNetworkServices)
	a.route("POST /networks/{id}/services", write, a.createNetworkService)
	a.route("DELETE /networks/{id}/services", write, a.deleteNetworkService)
	a.route("GET /networks/{id}/routes", read, a.listNetworkRoutes)
	a.route("PUT /networks/{id}", write, a.updateNetwork)
}

func strOrNil(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

func intOrNil(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// networkDoc is the raw row (§2.8) without dc_network_id and
// gateway_network_id, with the DC network document, the services, and
// bandwidth_mark (the record's sequence number stands in for the integer
// primary key).
func networkDoc(tx *state.Tx, v *proto.Network, m state.Meta) (*format.Map, error) {
	var bandwidth any
	if v.Bandwidth != nil {
		bandwidth = *v.Bandwidth
	}
	var dcn any
	var dc proto.DcNetwork
	if _, err := tx.Get(proto.KindDcNetwork, v.DcNetworkID, &dc); err == nil {
		if dcn, err = dcNetworkDoc(tx, &dc, state.Meta{}); err != nil {
			return nil, err
		}
	} else if !errs.Is(err, errs.NotFound) {
		return nil, err
	}
	services, err := networkServiceDocs(tx, v.ID)
	if err != nil {
		return nil, err
	}
	return format.NewMap(25).
		Set("id", v.ID).
		Set("account_id", v.AccountID).
		Set("uuid", v.ID).
		Set("ipv4_network", v.IPv4Network).
		Set("ipv4_gw", strOrNil(v.IPv4Gw)).
		Set("prefix", v.Prefix).
		Set("metric", v.Metric).
		Set("domain_name", v.DomainName).
		Set("dns_server", strOrNil(v.DNSServer)).
		Set("dhcp_server", strOrNil(v.DHCPServer)).
		Set("metadata_server", strOrNil(v.MetadataServer)).
		Set("metadata_server_port", intOrNil(v.MetadataServerPort)).
		Set("nat_network_id", strOrNil(v.NatNetworkID)).
		Set("description", v.Description).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("network_mode", v.NetworkMode).
		Set("bandwidth", bandwidth).
		Set("ip_assignment", v.IPAssignment).
		Set("editable", v.Editable).
		Set("service_type", v.ServiceType).
		Set("display_name", v.DisplayName).
		Set("dc_network", dcn).
		Set("network_services", services).
		Set("bandwidth_mark", int64(m.Seq)), nil
}

// serviceDoc renders a network service with its vif's address and MAC.
func serviceDoc(tx *state.Tx, s *proto.NetworkService, _ state.Meta) (*format.Map, error) {
	var addr, mac any
	var vif proto.NetworkVif
	if _, err := tx.Get(proto.KindNetworkVif, s.NetworkVifID, &vif); err == nil {
		addr = strOrNil(vif.IPv4Address)
		mac = macColon(vif.MacAddr)
	} else if !errs.Is(err, errs.NotFound) {
		return nil, err
	}
	return format.NewMap(9).
		Set("name", s.Name).
		Set("network_id", s.NetworkID).
		Set("network_vif_id", s.NetworkVifID).
		Set("address", addr).
		Set("mac_addr", mac).
		Set("incoming_port", intOrNil(s.IncomingPort)).
		Set("outgoing_port", intOrNil(s.OutgoingPort)).
		Set("created_at", s.CreatedAt).
		Set("updated_at", s.UpdatedAt), nil
}

func networkServiceDocs(tx *state.Tx, networkID string) ([]any, error) {
	out := []any{}
	err := state.EachOf(tx, proto.KindNetworkService, false, func(s *proto.NetworkService, m state.Meta) error {
		if s.NetworkID != networkID {
			return nil
		}
		d, err := serviceDoc(tx, s, m)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

func getNetwork(tx *state.Tx, req *Request) (*proto.Network, state.Meta, error) {
	return getOwned[proto.Network](tx, req, proto.KindNetwork, proto.PrefixNetwork, req.ID("id"))
}

// renderNetwork renders the committed network.
func renderNetwork(id string) renderFn {
	return func(tx *state.Tx) (any, error) {
		var nw proto.Network
		m, err := tx.Get(proto.KindNetwork, id, &nw)
		if err != nil {
			return nil, err
		}
		return networkDoc(tx, &nw, m)
	}
}

func (a *API) listNetworks(_ context.Context, req *Request) (any, error) {
	p := req.Params
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	of, err := a.ownerFilterOf(p, true)
	if err != nil {
		return nil, err
	}
	return a.view(func(tx *state.Tx) (any, error) {
		var withService map[string]bool
		svc, hasSvc := p.StrOK("has_service")
		if hasSvc {
			withService = map[string]bool{}
			err := state.EachOf(tx, proto.KindNetworkService, false, func(s *proto.NetworkService, _ state.Meta) error {
				if s.Name == svc {
					withService[s.NetworkID] = true
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
		return listTx(tx, o, proto.KindNetwork, func(v *proto.Network) bool {
			if !of.match(v.AccountID, v.ServiceType, v.DisplayName) {
				return false
			}
			if dcn, ok := p.StrOK("dc_network"); ok && v.DcNetworkID != dcn {
				return false
			}
			return !hasSvc || withService[v.ID]
		}, networkDoc)
	})
}

func (a *API) showNetwork(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		return networkDoc(tx, v, m)
	})
}

// serviceSpec is one network service to create on an address.
type serviceSpec struct {
	name     string
	in, out  *int
	addr     uint32
	explicit bool
}

func intPtr(n int) *int { return &n }

// networkServiceParams are POST /networks' service parameters: the value is
// the service's address, empty meaning the network's first address.
var networkServiceParams = []struct {
	param, name string
	in, out     int // 0 = none
}{
	{"service_dhcp", "dhcp", 67, 68},
	{"service_dns", "dns", 53, 0},
	{"service_gateway", "gateway", 0, 0},
}

// networkFromParams builds the network of POST /networks from its
// parameters; model validation failures are 400/110.
func networkFromParams(req *Request, id, dcnID, serviceType string, now time.Time) (*proto.Network, []serviceSpec, error) {
	p := req.Params
	addr, ok := parseIPv4(p.Str("network"))
	if !ok {
		return nil, nil, dbError("network %q is not an IPv4 address", p.Str("network"))
	}
	prefix := 24
	if n, set, err := p.Int("prefix"); err != nil || (set && (n < 1 || n > 31)) {
		return nil, nil, dbError("prefix must be an integer in 1..31")
	} else if set {
		prefix = int(n)
	}
	sn := newSubnet(addr, prefix)
	if sn.base != addr {
		return nil, nil, dbError("%s is not the network address of /%d", p.Str("network"), prefix)
	}
	metric := 100
	if n, set, err := p.Int("metric"); err != nil || (set && (n < 0 || n > 1<<31-1)) {
		return nil, nil, dbError("metric must be a non-negative integer")
	} else if set {
		metric = int(n)
	}
	assign := "asc"
	if s, ok := p.StrOK("ip_assignment"); ok && s != "" {
		if s != "asc" && s != "desc" {
			return nil, nil, dbError("ip_assignment must be asc or desc")
		}
		assign = s
	}
	nw := &proto.Network{
		ID: id, Timestamps: stamps(now), AccountID: req.Owner(), DcNetworkID: dcnID,
		IPv4Network: ipString(addr), Prefix: prefix, Metric: metric,
		DomainName: p.Str("domain_name"), Description: p.Str("description"),
		NetworkMode: p.Str("network_mode"), IPAssignment: assign, Editable: p.IsTrue("editable"),
		ServiceType: serviceType, DisplayName: p.Str("display_name"), DhcpRanges: []proto.DhcpRange{},
	}
	if gw := p.Str("gw"); gw != "" {
		v, ok := parseIPv4(gw)
		if !ok || !sn.isHost(v) {
			return nil, nil, dbError("gw %q is not a host address of %s/%d", gw, nw.IPv4Network, prefix)
		}
		s := ipString(v)
		nw.IPv4Gw = &s
	}
	if p.Str("dhcp_range") == "default" && sn.base+1 <= sn.last-1 {
		nw.DhcpRanges = formatRanges([]ipRange{{sn.base + 1, sn.last - 1}})
	}
	var svcs []serviceSpec
	for _, sp := range networkServiceParams {
		if !p.Has(sp.param) {
			continue
		}
		s := serviceSpec{name: sp.name, addr: sn.base + 1}
		if sp.in != 0 {
			s.in = intPtr(sp.in)
		}
		if sp.out != 0 {
			s.out = intPtr(sp.out)
		}
		if v := p.Str(sp.param); v != "" {
			ip, ok := parseIPv4(v)
			// Upstream only refused addresses whose last octet is 0 (500/170);
			// the code stays, for any address that is not a host of the
			// network.
			if !ok || !sn.isHost(ip) {
				return nil, nil, errs.New(errs.NetworkVifInvalidAddress, "%s: %q is not a host address of %s/%d", sp.param, v, nw.IPv4Network, prefix)
			}
			s.addr, s.explicit = ip, true
		} else if !sn.isHost(s.addr) {
			return nil, nil, errs.New(errs.NetworkVifInvalidAddress, "%s: %s/%d has no host address", sp.param, nw.IPv4Network, prefix)
		}
		svcs = append(svcs, s)
	}
	return nw, svcs, nil
}

func (a *API) createNetwork(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	id, err := createID(p, proto.PrefixNetwork)
	if err != nil {
		return nil, err
	}
	dcnID := p.Str("dc_network")
	if checkUUID(dcnID, proto.PrefixDcNetwork) != nil {
		return nil, dbError("dc_network %q is not a DC network uuid", dcnID)
	}
	st, err := a.serviceTypeParam(req)
	if err != nil {
		return nil, err
	}
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		dcn, dm, err := getDcNetwork(tx, dcnID)
		if errs.Is(err, errs.UnknownUUIDResource) {
			return nil, errs.New(errs.UnknownDcNetwork, "%s", dcnID)
		}
		if err != nil {
			return nil, err
		}
		if !dcn.AllowNewNetworks || !slices.Contains(dcn.OfferingNetworkModes, p.Str("network_mode")) {
			return nil, errs.New(errs.DcNetworkNotPermitted, "DC network %s does not offer new %q networks", dcn.ID, p.Str("network_mode"))
		}
		nw, svcs, err := networkFromParams(req, id, dcn.ID, st, now)
		if err != nil {
			return nil, err
		}
		if tx.Exists(proto.KindNetwork, id) {
			return nil, errs.New(errs.DatabaseError, "Sequel::UniqueConstraintViolation: duplicate uuid %s", id)
		}
		// The DC network must still allow new networks when this commits.
		b.Check(proto.KindDcNetwork, dcn.ID, dm.ModifyIndex)
		b.Create(proto.KindNetwork, id, nw)
		al := newAllocator(tx, b, 0)
		// Services on the same address share one service vif.
		vifAt := map[uint32]*proto.NetworkVif{}
		for _, s := range svcs {
			vif := vifAt[s.addr]
			if vif == nil {
				addr := s.addr
				if vif, err = al.newVifOnNetwork(nw, nw.AccountID, &addr, proto.LeaseService, now); err != nil {
					return nil, err
				}
				vifAt[s.addr] = vif
			}
			sid := nw.ID + "/" + s.name + "/" + vif.ID
			b.Create(proto.KindNetworkService, sid, proto.NetworkService{
				ID: sid, Timestamps: stamps(now), Name: s.name, NetworkID: nw.ID,
				NetworkVifID: vif.ID, IncomingPort: s.in, OutgoingPort: s.out,
			})
		}
		return renderNetwork(id), nil
	})
}

func (a *API) updateNetwork(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		if dn, ok := req.Params.StrOK("display_name"); ok {
			v.DisplayName = dn
			v.UpdatedAt = a.now()
			b.Update(proto.KindNetwork, v.ID, m.ModifyIndex, v)
		}
		return renderNetwork(v.ID), nil
	})
}

// deleteNetwork removes the network with its DHCP ranges, leases,
// reservations, services, service and bare vifs and the routes through it,
// and clears NAT references to it. Upstream deleted it even while instances
// had vifs on it; that is refused here (400/143), and so are networks with
// IP handles, which belong to IP pools possibly of other accounts.
func (a *API) deleteNetwork(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		nw, m, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		now := a.now()
		o := newOpSet(b)
		for _, k := range []string{proto.KindNetwork, proto.KindNetworkVif, proto.KindIPLease, proto.KindIPHandle, proto.KindNetworkRoute, proto.KindNetworkService} {
			b.CheckKind(k, tx.KindIndex(k))
		}
		type vifEntry struct {
			v proto.NetworkVif
			m state.Meta
		}
		var onNetwork, natted []vifEntry
		err = state.EachOf(tx, proto.KindNetworkVif, false, func(v *proto.NetworkVif, vm state.Meta) error {
			switch {
			case v.NetworkID != nil && *v.NetworkID == nw.ID:
				if v.InstanceID != nil {
					return errs.New(errs.InvalidParameter, "network %s still has vif %s of instance %s", nw.ID, v.ID, *v.InstanceID)
				}
				onNetwork = append(onNetwork, vifEntry{*v, vm})
			case v.NatNetworkID != nil && *v.NatNetworkID == nw.ID:
				natted = append(natted, vifEntry{*v, vm})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		err = state.EachOf(tx, proto.KindIPHandle, false, func(h *proto.IPHandle, _ state.Meta) error {
			if h.NetworkID != nil && *h.NetworkID == nw.ID {
				return errs.New(errs.InvalidParameter, "network %s still has IP handle %s", nw.ID, h.ID)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		for _, ve := range onNetwork {
			if err := destroyVif(tx, o, &ve.v, ve.m, now); err != nil {
				return nil, err
			}
		}
		for _, ve := range natted {
			v := ve.v
			v.NatNetworkID, v.NatIPv4Address, v.UpdatedAt = nil, nil, now
			o.update(proto.KindNetworkVif, v.ID, ve.m.ModifyIndex, &v)
		}
		err = state.EachOfIn(tx, state.IdxLeasesByNetwork, nw.ID, false, func(l *proto.IPLease, lm state.Meta) error {
			o.del(proto.KindIPLease, l.ID, lm.ModifyIndex)
			return nil
		})
		if err != nil {
			return nil, err
		}
		err = state.EachOf(tx, proto.KindNetworkService, false, func(s *proto.NetworkService, sm state.Meta) error {
			if s.NetworkID == nw.ID {
				o.del(proto.KindNetworkService, s.ID, sm.ModifyIndex)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		err = state.EachOf(tx, proto.KindNetworkRoute, false, func(r *proto.NetworkRoute, rm state.Meta) error {
			if r.OuterNetworkID == nw.ID || r.InnerNetworkID == nw.ID {
				o.del(proto.KindNetworkRoute, r.ID, rm.ModifyIndex)
				return unbindHandle(tx, o, r.IPHandleID, now)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		err = state.EachOf(tx, proto.KindNetwork, false, func(other *proto.Network, om state.Meta) error {
			if other.ID != nw.ID && other.NatNetworkID != nil && *other.NatNetworkID == nw.ID {
				other.NatNetworkID, other.UpdatedAt = nil, now
				o.update(proto.KindNetwork, other.ID, om.ModifyIndex, other)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		o.del(proto.KindNetwork, nw.ID, m.ModifyIndex)
		return func(*state.Tx) (any, error) { return []any{nw.ID}, nil }, nil
	})
}

// --- DHCP ranges and reservations ---

func dhcpRangesDoc(nw *proto.Network) []any {
	out := []any{}
	for _, r := range parseRanges(nw.DhcpRanges) {
		out = append(out, []string{ipString(r.begin), ipString(r.end)})
	}
	return out
}

func (a *API) showDhcpRanges(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		return dhcpRangesDoc(nw), nil
	})
}

// rangeParams reads range_begin..range_end. Upstream raised a plain 500 for
// an address outside the subnet or begin > end; those are 400/143 here.
func rangeParams(req *Request, nw *proto.Network) (ipRange, error) {
	sn := networkSubnet(nw)
	var r ipRange
	for _, k := range []struct {
		key string
		dst *uint32
	}{{"range_begin", &r.begin}, {"range_end", &r.end}} {
		v, ok := parseIPv4(req.Params.Str(k.key))
		if !ok {
			return r, errs.New(errs.InvalidParameter, "%s", k.key)
		}
		if !sn.contains(v) {
			return r, errs.New(errs.InvalidParameter, "%s %s is not in %s/%d", k.key, ipString(v), nw.IPv4Network, nw.Prefix)
		}
		*k.dst = v
	}
	if r.begin > r.end {
		return r, errs.New(errs.InvalidParameter, "range_begin %s is after range_end %s", ipString(r.begin), ipString(r.end))
	}
	return r, nil
}

func (a *API) addDhcpRange(ctx context.Context, req *Request) (any, error) {
	return a.changeDhcpRanges(ctx, req, func(rs []ipRange, r ipRange) []ipRange {
		return normalizeRanges(append(rs, r))
	})
}

func (a *API) removeDhcpRange(ctx context.Context, req *Request) (any, error) {
	return a.changeDhcpRanges(ctx, req, subtractRange)
}

func (a *API) changeDhcpRanges(ctx context.Context, req *Request, change func([]ipRange, ipRange) []ipRange) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		nw, m, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		if !nw.Editable {
			return nil, errs.New(errs.NetworkNotPermitted, "network %s is not editable", nw.ID)
		}
		r, err := rangeParams(req, nw)
		if err != nil {
			return nil, err
		}
		nw.DhcpRanges = formatRanges(change(parseRanges(nw.DhcpRanges), r))
		nw.UpdatedAt = a.now()
		b.Update(proto.KindNetwork, nw.ID, m.ModifyIndex, nw)
		return func(*state.Tx) (any, error) { return format.NewMap(0), nil }, nil
	})
}

// addressesParam reads `ipaddr` (a string or an array): 400/143 when
// missing, 400/176 for a malformed address, 400/178 outside the network.
func addressesParam(req *Request, nw *proto.Network) ([]string, error) {
	vs, ok := req.Params.Strings("ipaddr")
	if !ok || len(vs) == 0 {
		return nil, errs.New(errs.InvalidParameter, "ipaddr")
	}
	sn := networkSubnet(nw)
	var out []string
	for _, s := range vs {
		v, ok := parseIPv4(s)
		if !ok {
			return nil, errs.New(errs.InvalidIPAddress, "%q is not an IPv4 address", s)
		}
		if !sn.contains(v) {
			return nil, errs.New(errs.IPAddressNotInSegment, "%s is not in %s/%d", s, nw.IPv4Network, nw.Prefix)
		}
		if ip := ipString(v); !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out, nil
}

func (a *API) reserveAddresses(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		nw, m, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		ips, err := addressesParam(req, nw)
		if err != nil {
			return nil, err
		}
		now := a.now()
		for _, ip := range ips {
			id := leaseID(nw.ID, ip)
			if tx.Exists(proto.KindIPLease, id) {
				return nil, errs.New(errs.DuplicateIPAddress, "%s is already leased on %s", ip, nw.ID)
			}
			b.Create(proto.KindIPLease, id, proto.IPLease{
				ID: id, Timestamps: stamps(now), NetworkID: nw.ID, IPv4: ip, Type: proto.LeaseReserved,
			})
		}
		b.Check(proto.KindNetwork, nw.ID, m.ModifyIndex)
		return func(*state.Tx) (any, error) { return format.NewMap(0), nil }, nil
	})
}

// releaseAddresses removes reservations; addresses that are not reserved
// (free, or leased to a vif) are left alone.
func (a *API) releaseAddresses(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		ips, err := addressesParam(req, nw)
		if err != nil {
			return nil, err
		}
		for _, ip := range ips {
			var l proto.IPLease
			lm, err := tx.Get(proto.KindIPLease, leaseID(nw.ID, ip), &l)
			if errs.Is(err, errs.NotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if l.Type == proto.LeaseReserved {
				b.Delete(proto.KindIPLease, l.ID, lm.ModifyIndex)
			}
		}
		return func(*state.Tx) (any, error) { return format.NewMap(0), nil }, nil
	})
}

// --- vifs of a network ---

func (a *API) listNetworkVifsOf(_ context.Context, req *Request) (any, error) {
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	return a.view(func(tx *state.Tx) (any, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		return listTx(tx, o, proto.KindNetworkVif, func(v *proto.NetworkVif) bool {
			return v.DeletedAt == nil && v.NetworkID != nil && *v.NetworkID == nw.ID
		}, vifDoc)
	})
}

// vifOnNetwork looks up own(NetworkVif) and requires it on nw (404/144).
func vifOnNetwork(tx *state.Tx, req *Request, nw *proto.Network) (*proto.NetworkVif, state.Meta, error) {
	v, m, err := getOwned[proto.NetworkVif](tx, req, proto.KindNetworkVif, proto.PrefixNetworkVif, req.ID("vif_id"))
	if err != nil {
		return nil, m, err
	}
	if v.NetworkID == nil || *v.NetworkID != nw.ID || v.DeletedAt != nil {
		return nil, m, errs.New(errs.UnknownNetworkVif, "%s is not on %s", v.ID, nw.ID)
	}
	return v, m, nil
}

// showNetworkVifOf also requires the vif to be on the network (404/144),
// which upstream checked only for DELETE.
func (a *API) showNetworkVifOf(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		v, m, err := vifOnNetwork(tx, req, nw)
		if err != nil {
			return nil, err
		}
		return vifDoc(tx, v, m)
	})
}

// renderVif renders the committed vif.
func renderVif(id string) renderFn {
	return func(tx *state.Tx) (any, error) {
		var v proto.NetworkVif
		m, err := tx.Get(proto.KindNetworkVif, id, &v)
		if err != nil {
			return nil, err
		}
		return vifDoc(tx, &v, m)
	}
}

// createNetworkVif creates a bare vif (no instance) on the network with a
// new MAC and the next dynamic address.
func (a *API) createNetworkVif(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	return a.commitContended(ctx, func(tx *state.Tx, b *state.Builder, attempt int) (renderFn, error) {
		nw, m, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		// Guard the network so that a concurrent change of its DHCP ranges
		// or its deletion makes this plan run again.
		b.Check(proto.KindNetwork, nw.ID, m.ModifyIndex)
		vif, err := newAllocator(tx, b, attempt).newVifOnNetwork(nw, nw.AccountID, nil, proto.LeaseVif, now)
		if err != nil {
			return nil, err
		}
		// Event vnic_created/joined for the vif's groups goes here with the
		// events issue.
		return renderVif(vif.ID), nil
	})
}

// deleteNetworkVif destroys a vif with its lease, MAC and NAT routes. A vif
// of an instance is refused (400/143): it goes with its instance.
func (a *API) deleteNetworkVif(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		v, m, err := vifOnNetwork(tx, req, nw)
		if err != nil {
			return nil, err
		}
		if v.InstanceID != nil {
			return nil, errs.New(errs.InvalidParameter, "vif %s belongs to instance %s", v.ID, *v.InstanceID)
		}
		if err := destroyVif(tx, newOpSet(b), v, m, a.now()); err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) { return format.NewMap(0), nil }, nil
	})
}

// vifForAttach is the attach/detach lookup: any failure to find the caller's
// vif is 500/146 NetworkVifNicNotFound, as upstream.
func vifForAttach(tx *state.Tx, req *Request) (*proto.NetworkVif, state.Meta, error) {
	v, m, err := getOwned[proto.NetworkVif](tx, req, proto.KindNetworkVif, proto.PrefixNetworkVif, req.ID("vif_id"))
	if err == nil && v.DeletedAt != nil {
		err = errs.New(errs.UnknownUUIDResource, "%s", v.ID)
	}
	if errs.Is(err, errs.UnknownUUIDResource) || errs.Is(err, errs.InvalidParameter) {
		return nil, m, errs.New(errs.NetworkVifNicNotFound, "%s", req.ID("vif_id"))
	}
	return v, m, err
}

// attachNetworkVif attaches a vif that is on no network to this one
// (upstream attach_to_network): it gets the next dynamic address. A vif on
// any network is 500/145.
func (a *API) attachNetworkVif(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	return a.commitContended(ctx, func(tx *state.Tx, b *state.Builder, attempt int) (renderFn, error) {
		nw, nm, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		v, m, err := vifForAttach(tx, req)
		if err != nil {
			return nil, err
		}
		if v.NetworkID != nil {
			return nil, errs.New(errs.NetworkVifAlreadyAttached, "%s is attached to %s", v.ID, *v.NetworkID)
		}
		al := newAllocator(tx, b, attempt)
		ip, err := al.pickIP(nw)
		if err != nil {
			return nil, err
		}
		ipv4, nwID := ipString(ip), nw.ID
		v.NetworkID, v.IPv4Address, v.UpdatedAt = &nwID, &ipv4, now
		b.Check(proto.KindNetwork, nw.ID, nm.ModifyIndex)
		b.Update(proto.KindNetworkVif, v.ID, m.ModifyIndex, v)
		b.Create(proto.KindIPLease, leaseID(nw.ID, ipv4), proto.IPLease{
			ID: leaseID(nw.ID, ipv4), Timestamps: stamps(now), NetworkID: nw.ID, IPv4: ipv4,
			Type: proto.LeaseVif, NetworkVifID: &v.ID, Auto: true,
		})
		// When the vif's instance is placed on a host, the job
		// hva-handle.<node> attach_nic(dc network name, vif id) goes here
		// with the instances issue.
		return renderVif(v.ID), nil
	})
}

// detachNetworkVif takes a vif off this network: its lease, NAT routes and
// services are released; it keeps its MAC. Not on this network → 500/147.
func (a *API) detachNetworkVif(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		v, m, err := vifForAttach(tx, req)
		if err != nil {
			return nil, err
		}
		if v.NetworkID == nil || *v.NetworkID != nw.ID {
			return nil, errs.New(errs.NetworkVifNotAttached, "%s is not attached to %s", v.ID, nw.ID)
		}
		now := a.now()
		if err := releaseVifAddresses(tx, newOpSet(b), v, now, true); err != nil {
			return nil, err
		}
		v.NetworkID, v.IPv4Address, v.NatNetworkID, v.NatIPv4Address, v.UpdatedAt = nil, nil, nil, nil, now
		b.Update(proto.KindNetworkVif, v.ID, m.ModifyIndex, v)
		// Job hva-handle.<node> detach_nic(dc network name, vif id) for a
		// placed instance goes here with the instances issue.
		return renderVif(v.ID), nil
	})
}

// --- services ---

// listNetworkServices is the envelope upstream intended (its
// implementation crashed with a 500).
func (a *API) listNetworkServices(_ context.Context, req *Request) (any, error) {
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	return a.view(func(tx *state.Tx) (any, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		return listTx(tx, o, proto.KindNetworkService, func(s *proto.NetworkService) bool {
			return s.NetworkID == nw.ID
		}, serviceDoc)
	})
}

// portParam reads an optional TCP/UDP port (model error 400/110 if bad).
func portParam(req *Request, key string) (*int, error) {
	n, set, err := req.Params.Int(key)
	if !set {
		return nil, nil
	}
	if err != nil || n < 1 || n > 65535 {
		return nil, dbError("%s must be a port number", key)
	}
	return intPtr(int(n)), nil
}

// createNetworkService adds a service on `ipv4` (or the next dynamic
// address when absent). A service address that already carries services of
// this network shares their vif; an address leased otherwise is 400/177.
func (a *API) createNetworkService(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	now := a.now()
	return a.commitContended(ctx, func(tx *state.Tx, b *state.Builder, attempt int) (renderFn, error) {
		nw, nm, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		if !nw.Editable {
			return nil, errs.New(errs.NetworkNotPermitted, "network %s is not editable", nw.ID)
		}
		name := p.Str("name")
		if !isWord(name) {
			return nil, dbError("name %q must match \\w+", name)
		}
		in, err := portParam(req, "incoming_port")
		if err != nil {
			return nil, err
		}
		out, err := portParam(req, "outgoing_port")
		if err != nil {
			return nil, err
		}
		b.Check(proto.KindNetwork, nw.ID, nm.ModifyIndex)
		al := newAllocator(tx, b, attempt)
		var vifID string
		if s := p.Str("ipv4"); s != "" {
			ip, ok := parseIPv4(s)
			if !ok {
				return nil, errs.New(errs.InvalidIPAddress, "%q is not an IPv4 address", s)
			}
			if !networkSubnet(nw).isHost(ip) {
				return nil, errs.New(errs.IPAddressNotInSegment, "%s is not a host address of %s/%d", s, nw.IPv4Network, nw.Prefix)
			}
			var l proto.IPLease
			lm, err := tx.Get(proto.KindIPLease, leaseID(nw.ID, ipString(ip)), &l)
			switch {
			case err == nil && l.Type == proto.LeaseService && l.NetworkVifID != nil:
				vifID = *l.NetworkVifID
				b.Check(proto.KindIPLease, l.ID, lm.ModifyIndex)
			case err == nil:
				return nil, errs.New(errs.DuplicateIPAddress, "%s is already leased on %s", s, nw.ID)
			case !errs.Is(err, errs.NotFound):
				return nil, err
			default:
				vif, err := al.newVifOnNetwork(nw, nw.AccountID, &ip, proto.LeaseService, now)
				if err != nil {
					return nil, err
				}
				vifID = vif.ID
			}
		} else {
			vif, err := al.newVifOnNetwork(nw, nw.AccountID, nil, proto.LeaseService, now)
			if err != nil {
				return nil, err
			}
			vifID = vif.ID
		}
		sid := nw.ID + "/" + name + "/" + vifID
		if tx.Exists(proto.KindNetworkService, sid) {
			return nil, dbError("service %s already exists on %s", name, vifID)
		}
		svc := proto.NetworkService{
			ID: sid, Timestamps: stamps(now), Name: name, NetworkID: nw.ID,
			NetworkVifID: vifID, IncomingPort: in, OutgoingPort: out,
		}
		b.Create(proto.KindNetworkService, sid, svc)
		// Event vnet/network_services {status: add, service} goes here with
		// the events issue.
		return func(tx *state.Tx) (any, error) { return serviceDoc(tx, &svc, state.Meta{}) }, nil
	})
}

// deleteNetworkService removes the service selected by name and vif_id; a
// service vif left with no service goes too.
func (a *API) deleteNetworkService(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		if !nw.Editable {
			return nil, errs.New(errs.NetworkNotPermitted, "network %s is not editable", nw.ID)
		}
		sid := nw.ID + "/" + p.Str("name") + "/" + p.Str("vif_id")
		var svc proto.NetworkService
		sm, err := tx.Get(proto.KindNetworkService, sid, &svc)
		if errs.Is(err, errs.NotFound) {
			return nil, errs.New(errs.UnknownNetworkService, "no service %q on vif %q of %s", p.Str("name"), p.Str("vif_id"), nw.ID)
		}
		if err != nil {
			return nil, err
		}
		o := newOpSet(b)
		o.del(proto.KindNetworkService, sid, sm.ModifyIndex)
		others := false
		err = state.EachOf(tx, proto.KindNetworkService, false, func(s *proto.NetworkService, _ state.Meta) error {
			if s.ID != sid && s.NetworkVifID == svc.NetworkVifID {
				others = true
				return state.ErrStop
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		b.CheckKind(proto.KindNetworkService, tx.KindIndex(proto.KindNetworkService))
		var vif proto.NetworkVif
		vm, err := tx.Get(proto.KindNetworkVif, svc.NetworkVifID, &vif)
		switch {
		case errs.Is(err, errs.NotFound):
		case err != nil:
			return nil, err
		case !others && vif.InstanceID == nil:
			if err := destroyVif(tx, o, &vif, vm, a.now()); err != nil {
				return nil, err
			}
		}
		// Event vnet/network_services {status: delete, service} goes here
		// with the events issue.
		return func(*state.Tx) (any, error) { return format.NewMap(0), nil }, nil
	})
}

// --- routes ---

func routeSide(networkID string, vifID *string, ipv4 string) *format.Map {
	return format.NewMap(3).
		Set("network_id", networkID).
		Set("network_vif_id", strOrNil(vifID)).
		Set("ipv4", ipv4)
}

func routeDoc(_ *state.Tx, r *proto.NetworkRoute, _ state.Meta) (*format.Map, error) {
	return format.NewMap(3).
		Set("route_type", r.RouteType).
		Set("outer", routeSide(r.OuterNetworkID, r.OuterVifID, r.OuterIPv4)).
		Set("inner", routeSide(r.InnerNetworkID, r.InnerVifID, r.InnerIPv4)), nil
}

func (a *API) listNetworkRoutes(_ context.Context, req *Request) (any, error) {
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	rt, hasRT := req.Params.StrOK("route_type")
	return a.view(func(tx *state.Tx) (any, error) {
		nw, _, err := getNetwork(tx, req)
		if err != nil {
			return nil, err
		}
		return listTx(tx, o, proto.KindNetworkRoute, func(r *proto.NetworkRoute) bool {
			if hasRT && r.RouteType != rt {
				return false
			}
			return r.OuterNetworkID == nw.ID || r.InnerNetworkID == nw.ID
		}, routeDoc)
	})
}
