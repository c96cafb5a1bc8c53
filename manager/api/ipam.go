package api

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Address management shared by networks, vifs, services and IP pools:
// IPv4 arithmetic, the Incremental IP scheduler (agents.md §4.4), the
// Default MAC scheduler (§4.5), and the cascades that release what a vif
// holds. Every address and MAC is claimed by a record keyed by the value
// (ip_leases "<network id>/<ipv4>", unique_names "mac/<12 hex>") created in
// the same txn as its owner, so a concurrent duplicate fails the create guard
// and the request's plan runs again on the new state.

// macVendor is the default vendor id of generated MACs (agents.md §4.5).
const macVendor = "525400"

// macClaimScope prefixes MAC claims in unique_names.
const macClaimScope = "mac/"

// Upstream's reserved lease/route type names.
const routeExternalIP = "external-ip"

// contendedRounds bounds how often a request that lost the race for an
// address re-runs commit (each round is state.MaxCommitAttempts plans). Every lost
// attempt means another request's claim committed, so with finite addresses
// the rounds end; the bound only guards against endless churn.
const contendedRounds = 8

// parseIPv4 reads a strict dotted quad.
func parseIPv4(s string) (uint32, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || a.Zone() != "" {
		return 0, false
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:]), true
}

func ipString(v uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b).String()
}

// subnet is an IPv4 network: base (network address) .. last (broadcast).
type subnet struct {
	base, last uint32
}

func newSubnet(base uint32, prefix int) subnet {
	mask := ^uint32(0) << (32 - prefix)
	return subnet{base: base & mask, last: base&mask | ^mask}
}

func networkSubnet(nw *proto.Network) subnet {
	base, _ := parseIPv4(nw.IPv4Network)
	return newSubnet(base, nw.Prefix)
}

func (s subnet) contains(ip uint32) bool { return ip >= s.base && ip <= s.last }

// isHost excludes the network and broadcast addresses.
func (s subnet) isHost(ip uint32) bool { return ip > s.base && ip < s.last }

func leaseID(networkID, ipv4 string) string { return networkID + "/" + ipv4 }

// leaseEntry is a lease with its bookkeeping.
type leaseEntry struct {
	proto.IPLease
	meta state.Meta
}

// networkLeases returns the leases of a network in creation order.
func networkLeases(tx *state.Tx, networkID string) ([]leaseEntry, error) {
	var out []leaseEntry
	err := tx.Each(proto.KindIPLease, false, func(e state.Entry) error {
		var l proto.IPLease
		if err := decodeInto(e, &l); err != nil {
			return err
		}
		if l.NetworkID == networkID {
			out = append(out, leaseEntry{IPLease: l, meta: e.Meta})
		}
		return nil
	})
	return out, err
}

// reservedAddrs are the addresses the IP scheduler never hands out: the
// network and broadcast addresses and the network's gateway and servers.
func reservedAddrs(nw *proto.Network) []uint32 {
	s := networkSubnet(nw)
	out := []uint32{s.base, s.last}
	for _, p := range []*string{nw.IPv4Gw, nw.DNSServer, nw.DHCPServer, nw.MetadataServer} {
		if p == nil {
			continue
		}
		if v, ok := parseIPv4(*p); ok {
			out = append(out, v)
		}
	}
	return out
}

// ipRange is an inclusive address range.
type ipRange struct{ begin, end uint32 }

func parseRanges(rs []proto.DhcpRange) []ipRange {
	out := make([]ipRange, 0, len(rs))
	for _, r := range rs {
		b, ok1 := parseIPv4(r.Begin)
		e, ok2 := parseIPv4(r.End)
		if ok1 && ok2 && b <= e {
			out = append(out, ipRange{b, e})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].begin < out[j].begin })
	return out
}

// normalizeRanges sorts, merges overlapping and adjacent ranges.
func normalizeRanges(rs []ipRange) []ipRange {
	sort.Slice(rs, func(i, j int) bool { return rs[i].begin < rs[j].begin })
	var out []ipRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint64(r.begin) <= uint64(out[n-1].end)+1 {
			if r.end > out[n-1].end {
				out[n-1].end = r.end
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// subtractRange removes [x.begin, x.end] from every range, splitting ranges
// that contain it.
func subtractRange(rs []ipRange, x ipRange) []ipRange {
	var out []ipRange
	for _, r := range rs {
		if r.end < x.begin || r.begin > x.end {
			out = append(out, r)
			continue
		}
		if r.begin < x.begin {
			out = append(out, ipRange{r.begin, x.begin - 1})
		}
		if r.end > x.end {
			out = append(out, ipRange{x.end + 1, r.end})
		}
	}
	return out
}

func formatRanges(rs []ipRange) []proto.DhcpRange {
	out := make([]proto.DhcpRange, 0, len(rs))
	for _, r := range rs {
		out = append(out, proto.DhcpRange{Begin: ipString(r.begin), End: ipString(r.end)})
	}
	return out
}

// allocator claims addresses and MACs within one txn plan. It remembers what
// it already claimed so that several vifs created by one request get
// distinct values.
type allocator struct {
	tx    *state.Tx
	b     *state.Builder
	ips   map[string]map[uint32]bool // network id → addresses claimed in this txn
	macs  map[string]bool
	leass map[string][]leaseEntry // network id → leases, read once per plan
	// spread > 1 makes pickIP choose at random among the first spread free
	// addresses: set on re-runs after a lost race so that contenders stop
	// all reaching for the same next address.
	spread int
}

func newAllocator(tx *state.Tx, b *state.Builder, attempt int) *allocator {
	return &allocator{
		tx: tx, b: b,
		ips:    map[string]map[uint32]bool{},
		macs:   map[string]bool{},
		leass:  map[string][]leaseEntry{},
		spread: min(attempt+1, 16),
	}
}

func (al *allocator) leases(networkID string) ([]leaseEntry, error) {
	if ls, ok := al.leass[networkID]; ok {
		return ls, nil
	}
	ls, err := networkLeases(al.tx, networkID)
	if err != nil {
		return nil, err
	}
	al.leass[networkID] = ls
	return ls, nil
}

func (al *allocator) claim(networkID string, ip uint32) {
	m := al.ips[networkID]
	if m == nil {
		m = map[uint32]bool{}
		al.ips[networkID] = m
	}
	m[ip] = true
}

// pickIP is the Incremental IP scheduler (agents.md §4.4): continue after the
// newest auto lease in ip_assignment order through the DHCP ranges, wrap
// around once, and take the first address that is neither leased nor one of
// the network's reserved addresses. Upstream created `reserved` leases for
// reserved addresses it stepped on; skipping them leaves the same addresses
// free and keeps dhcp/release from freeing a gateway. None → 400/130.
func (al *allocator) pickIP(nw *proto.Network) (uint32, error) {
	ls, err := al.leases(nw.ID)
	if err != nil {
		return 0, err
	}
	var (
		taken   []uint32
		last    uint32
		hasLast bool
		lastSeq uint64
	)
	for _, l := range ls {
		v, ok := parseIPv4(l.IPv4)
		if !ok {
			continue
		}
		taken = append(taken, v)
		if l.Auto && l.meta.Seq >= lastSeq {
			last, hasLast, lastSeq = v, true, l.meta.Seq
		}
	}
	taken = append(taken, reservedAddrs(nw)...)
	for v := range al.ips[nw.ID] {
		taken = append(taken, v)
	}
	sort.Slice(taken, func(i, j int) bool { return taken[i] < taken[j] })

	ranges := parseRanges(nw.DhcpRanges)
	want := max(al.spread, 1)
	var cands []uint32
	if nw.IPAssignment == "desc" {
		// Search (−∞, last) downwards, then (last, ∞) downwards.
		windows := []ipRange{{0, ^uint32(0)}}
		if hasLast {
			windows = windows[:0]
			if last > 0 {
				windows = append(windows, ipRange{0, last - 1})
			}
			if last < ^uint32(0) {
				windows = append(windows, ipRange{last + 1, ^uint32(0)})
			}
		}
		for _, w := range windows {
			for i := len(ranges) - 1; i >= 0 && len(cands) < want; i-- {
				lo, hi := max(ranges[i].begin, w.begin), min(ranges[i].end, w.end)
				if lo <= hi {
					cands = freeDesc(taken, lo, hi, want-len(cands), cands)
				}
			}
		}
	} else {
		windows := []ipRange{{0, ^uint32(0)}}
		if hasLast {
			windows = windows[:0]
			if last < ^uint32(0) {
				windows = append(windows, ipRange{last + 1, ^uint32(0)})
			}
			if last > 0 {
				windows = append(windows, ipRange{0, last - 1})
			}
		}
		for _, w := range windows {
			for i := 0; i < len(ranges) && len(cands) < want; i++ {
				lo, hi := max(ranges[i].begin, w.begin), min(ranges[i].end, w.end)
				if lo <= hi {
					cands = freeAsc(taken, lo, hi, want-len(cands), cands)
				}
			}
		}
	}
	if len(cands) == 0 {
		return 0, errs.New(errs.OutOfNetworkCapacity, "Run out of dynamic IP addresses in %s", nw.ID)
	}
	ip := cands[0]
	if len(cands) > 1 {
		ip = cands[rand.IntN(len(cands))]
	}
	al.claim(nw.ID, ip)
	return ip, nil
}

// freeAsc appends up to n addresses of [lo, hi] not in the sorted taken list.
func freeAsc(taken []uint32, lo, hi uint32, n int, out []uint32) []uint32 {
	i := sort.Search(len(taken), func(i int) bool { return taken[i] >= lo })
	for x := uint64(lo); x <= uint64(hi) && n > 0; x++ {
		for i < len(taken) && uint64(taken[i]) < x {
			i++
		}
		if i < len(taken) && uint64(taken[i]) == x {
			continue
		}
		out = append(out, uint32(x))
		n--
	}
	return out
}

// freeDesc is freeAsc walking from hi down to lo.
func freeDesc(taken []uint32, lo, hi uint32, n int, out []uint32) []uint32 {
	j := sort.Search(len(taken), func(i int) bool { return taken[i] > hi }) - 1
	for x := int64(hi); x >= int64(lo) && n > 0; x-- {
		for j >= 0 && int64(taken[j]) > x {
			j--
		}
		if j >= 0 && int64(taken[j]) == x {
			continue
		}
		out = append(out, uint32(x))
		n--
	}
	return out
}

// pickMAC is the Default MAC scheduler over the whole vendor range: a random
// address retried until it is not claimed.
func (al *allocator) pickMAC() (string, error) {
	for range 64 {
		mac := fmt.Sprintf("%s%06x", macVendor, 1+rand.IntN(0xfffffe))
		if al.macs[mac] || al.tx.Exists(proto.KindUniqueName, macClaimScope+mac) {
			continue
		}
		al.macs[mac] = true
		return mac, nil
	}
	return "", errs.New(errs.Internal, "no free MAC address found")
}

// macColon renders 12 hex chars as "52:54:00:12:34:56".
func macColon(hex string) string {
	if len(hex) != 12 {
		return hex
	}
	var sb strings.Builder
	for i := 0; i < 12; i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(hex[i : i+2])
	}
	return sb.String()
}

// newVifOnNetwork builds a vif on nw with a fresh MAC and an address: ip when
// given (a static service address), else the next dynamic one. It adds the
// vif, its lease and its MAC claim to the txn.
func (al *allocator) newVifOnNetwork(nw *proto.Network, account string, ip *uint32, leaseType string, now time.Time) (*proto.NetworkVif, error) {
	var addr uint32
	auto := ip == nil
	if ip != nil {
		addr = *ip
		al.claim(nw.ID, addr)
	} else {
		var err error
		if addr, err = al.pickIP(nw); err != nil {
			return nil, err
		}
	}
	mac, err := al.pickMAC()
	if err != nil {
		return nil, err
	}
	id := newID(proto.PrefixNetworkVif)
	ipv4 := ipString(addr)
	nwID := nw.ID
	vif := &proto.NetworkVif{
		ID: id, Timestamps: stamps(now), AccountID: account,
		NetworkID: &nwID, MacAddr: mac, IPv4Address: &ipv4, SecurityGroups: []string{},
	}
	al.b.Create(proto.KindNetworkVif, id, vif)
	al.b.Create(proto.KindUniqueName, macClaimScope+mac, proto.UniqueName{ID: macClaimScope + mac, Owner: id})
	al.b.Create(proto.KindIPLease, leaseID(nw.ID, ipv4), proto.IPLease{
		ID: leaseID(nw.ID, ipv4), Timestamps: stamps(now), NetworkID: nw.ID, IPv4: ipv4,
		Type: leaseType, NetworkVifID: &id, Auto: auto,
	})
	return vif, nil
}

// stamps is a new record's timestamps.
func stamps(now time.Time) proto.Timestamps {
	return proto.Timestamps{CreatedAt: now, UpdatedAt: now}
}

// commitContended is commit for requests that claim scarce values
// (addresses): a burst of requests on one network can make a request lose
// more races than one commit's attempts allow, yet each loss means another
// claim committed, so trying again terminates with a claim or 400/130.
// plan gets the attempt number so that re-runs can spread their picks.
func (a *API) commitContended(ctx context.Context, plan func(tx *state.Tx, b *state.Builder, attempt int) (renderFn, error)) (any, error) {
	attempt := 0
	wrapped := func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		r, err := plan(tx, b, attempt)
		attempt++
		return r, err
	}
	for round := 0; ; round++ {
		out, err := a.commit(ctx, wrapped)
		if errs.Is(err, errs.Conflict) && round < contendedRounds && ctx.Err() == nil {
			continue
		}
		return out, err
	}
}

// opSet keeps one txn from touching a record twice (the FSM refuses that)
// when cascades reach the same record along two paths.
type opSet struct {
	b    *state.Builder
	done map[string]bool
}

func newOpSet(b *state.Builder) *opSet { return &opSet{b: b, done: map[string]bool{}} }

func (o *opSet) first(kind, id string) bool {
	k := kind + "\x00" + id
	if o.done[k] {
		return false
	}
	o.done[k] = true
	return true
}

func (o *opSet) del(kind, id string, index uint64) {
	if o.first(kind, id) {
		o.b.Delete(kind, id, index)
	}
}

func (o *opSet) update(kind, id string, index uint64, v any) {
	if o.first(kind, id) {
		o.b.Update(kind, id, index, v)
	}
}

// releaseVifAddresses adds to the txn the release of everything a vif holds
// on networks: its leases, the NAT routes to it (the IP handles they used
// become free again) and the services it carries when dropServices. It
// guards the scanned kinds so that a concurrent new route or service makes
// the plan run again.
func releaseVifAddresses(tx *state.Tx, o *opSet, vif *proto.NetworkVif, now time.Time, dropServices bool) error {
	if vif.NetworkID != nil && vif.IPv4Address != nil {
		id := leaseID(*vif.NetworkID, *vif.IPv4Address)
		if e, ok := tx.Raw(proto.KindIPLease, id); ok {
			o.del(proto.KindIPLease, id, e.ModifyIndex)
		}
	}
	if vif.NatNetworkID != nil && vif.NatIPv4Address != nil {
		id := leaseID(*vif.NatNetworkID, *vif.NatIPv4Address)
		if e, ok := tx.Raw(proto.KindIPLease, id); ok {
			o.del(proto.KindIPLease, id, e.ModifyIndex)
		}
	}
	o.b.CheckKind(proto.KindNetworkRoute, tx.KindIndex(proto.KindNetworkRoute))
	err := tx.Each(proto.KindNetworkRoute, false, func(e state.Entry) error {
		var r proto.NetworkRoute
		if err := decodeInto(e, &r); err != nil {
			return err
		}
		if r.InnerVifID == nil || *r.InnerVifID != vif.ID {
			return nil
		}
		o.del(proto.KindNetworkRoute, r.ID, e.ModifyIndex)
		return unbindHandle(tx, o, r.IPHandleID, now)
	})
	if err != nil || !dropServices {
		return err
	}
	o.b.CheckKind(proto.KindNetworkService, tx.KindIndex(proto.KindNetworkService))
	return tx.Each(proto.KindNetworkService, false, func(e state.Entry) error {
		var s proto.NetworkService
		if err := decodeInto(e, &s); err != nil {
			return err
		}
		if s.NetworkVifID == vif.ID {
			// Event vnet/network_services {status: delete} goes here with the
			// events issue.
			o.del(proto.KindNetworkService, s.ID, e.ModifyIndex)
		}
		return nil
	})
}

// unbindHandle clears an IP handle's vif after its NAT route went away.
func unbindHandle(tx *state.Tx, o *opSet, handleID *string, now time.Time) error {
	if handleID == nil {
		return nil
	}
	var h proto.IPHandle
	m, err := tx.Get(proto.KindIPHandle, *handleID, &h)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	h.NetworkVifID = nil
	h.UpdatedAt = now
	o.update(proto.KindIPHandle, h.ID, m.ModifyIndex, &h)
	return nil
}

// destroyVif adds the hard delete of a vif and all it holds.
func destroyVif(tx *state.Tx, o *opSet, vif *proto.NetworkVif, m state.Meta, now time.Time) error {
	if err := releaseVifAddresses(tx, o, vif, now, true); err != nil {
		return err
	}
	if vif.MacAddr != "" {
		id := macClaimScope + vif.MacAddr
		if e, ok := tx.Raw(proto.KindUniqueName, id); ok {
			o.del(proto.KindUniqueName, id, e.ModifyIndex)
		}
	}
	if err := deleteVifMonitors(tx, o, vif.ID); err != nil {
		return err
	}
	o.del(proto.KindNetworkVif, vif.ID, m.ModifyIndex)
	return nil
}
