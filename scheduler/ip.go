package scheduler

import (
	"cmp"
	"math"
	"slices"
)

// IPChoice is an IP scheduler's decision for one network: the address to
// lease and the reserved addresses it met on the way, which the plan records
// as LeaseReserved so later searches skip them (as the original's reserved
// lease rows did).
type IPChoice struct {
	Addr     IPv4
	Kind     LeaseKind
	Reserved []IPv4
}

// IPScheduler chooses an address on a network. want is the address the vif
// template asks for ("" when none); schedulers that allocate dynamically
// ignore it. Schedulers never modify nw: the caller records the choice.
type IPScheduler interface {
	ScheduleIP(nw *Network, want string) (IPChoice, error)
}

// Record adds the choice's leases to the network, with creation sequence
// numbers after every existing lease: what the leader will store when the
// plan is applied, done to the view so the next decision sees it.
func (n *Network) Record(c IPChoice) {
	if n.Leases == nil {
		n.Leases = make(map[IPv4]Lease)
	}
	seq := n.maxSeq()
	for _, a := range c.Reserved {
		seq++
		n.Leases[a] = Lease{Seq: seq, Kind: LeaseReserved}
	}
	n.Leases[c.Addr] = Lease{Seq: seq + 1, Kind: c.Kind}
}

func (n *Network) maxSeq() uint64 {
	var m uint64
	for _, l := range n.Leases {
		m = max(m, l.Seq)
	}
	return m
}

// Incremental hands out the next free address of the network's DHCP ranges,
// continuing after the most recently allocated one and wrapping around, so a
// just-released address is not reused at once (spec §4.4):
//
//   - last = the alive LeaseAuto lease with the highest Seq (may be none);
//   - asc (the default): search (last, ∞) upwards, then [0, last);
//     desc: search (−∞, last) downwards, then (last, ∞) downwards;
//   - a search walks the DHCP ranges meeting its window, by range begin
//     ascending (asc) or range end descending (desc), and takes the first
//     unleased address; a reserved one (network, broadcast, gateway, DNS,
//     DHCP, metadata server) is recorded in IPChoice.Reserved and skipped.
type Incremental struct{}

// ScheduleIP implements IPScheduler.
func (Incremental) ScheduleIP(nw *Network, _ string) (IPChoice, error) {
	var desc bool
	switch nw.IPAssignment {
	case "", "asc":
	case "desc":
		desc = true
	default:
		return IPChoice{}, newErr(KindIPAddress, "Unsupported IP address assignment: %s", nw.IPAssignment)
	}
	var last IPv4
	var lastSeq uint64
	haveLast := false
	for a, l := range nw.Leases {
		if l.Kind == LeaseAuto && (!haveLast || l.Seq > lastSeq) {
			last, lastSeq, haveLast = a, l.Seq, true
		}
	}
	s := ipSearch{nw: nw, desc: desc}
	var addr IPv4
	var ok bool
	switch {
	case !haveLast:
		addr, ok = s.find(0, math.MaxUint32)
	case !desc:
		if addr, ok = s.find(last, math.MaxUint32); !ok {
			addr, ok = s.find(0, last)
		}
	default:
		if addr, ok = s.find(0, last); !ok {
			addr, ok = s.find(last, math.MaxUint32)
		}
	}
	if !ok {
		return IPChoice{}, newErr(KindOutOfIPRange, "Run out of dynamic IP addresses from the network segment: %s/%d", nw.IPv4Network, nw.Prefix)
	}
	return IPChoice{Addr: addr, Kind: LeaseAuto, Reserved: s.reserved}, nil
}

// ipSearch is one Incremental decision's search state.
type ipSearch struct {
	nw       *Network
	desc     bool
	reserved []IPv4 // met so far; treated as leased by later windows
}

func (s *ipSearch) taken(a IPv4) bool {
	if _, ok := s.nw.Leases[a]; ok {
		return true
	}
	return slices.Contains(s.reserved, a)
}

// find returns the first free address in the inclusive window [lo, hi] in
// search order. The window bound "last" is itself leased, so inclusive
// windows equal the spec's open ones.
func (s *ipSearch) find(lo, hi IPv4) (IPv4, bool) {
	ranges := make([]IPRange, 0, len(s.nw.DhcpRanges))
	for _, r := range s.nw.DhcpRanges {
		if r.Begin <= hi && r.End >= lo && r.Begin <= r.End {
			ranges = append(ranges, r)
		}
	}
	if s.desc {
		slices.SortStableFunc(ranges, func(a, b IPRange) int { return cmp.Compare(b.End, a.End) })
	} else {
		slices.SortStableFunc(ranges, func(a, b IPRange) int { return cmp.Compare(a.Begin, b.Begin) })
	}
	for _, r := range ranges {
		f, t := uint64(max(lo, r.Begin)), uint64(min(hi, r.End))
		// uint64 counters so that a range ending at 255.255.255.255 (or
		// starting at 0.0.0.0 when descending) terminates.
		if !s.desc {
			for a := f; a <= t; a++ {
				if ip, ok := s.try(IPv4(a)); ok {
					return ip, true
				}
			}
		} else {
			for a := int64(t); a >= int64(f); a-- {
				if ip, ok := s.try(IPv4(a)); ok {
					return ip, true
				}
			}
		}
	}
	return 0, false
}

// try reports whether a can be handed out, recording it as reserved when it
// is free but one of the network's reserved addresses.
func (s *ipSearch) try(a IPv4) (IPv4, bool) {
	if s.taken(a) {
		return 0, false
	}
	if s.nw.reserved(a) {
		s.reserved = append(s.reserved, a)
		return 0, false
	}
	return a, true
}

// SpecifyIP leases the address the vif template names (ipv4_addr, or
// nat_ipv4_addr on the NAT network). Checks, in the original's order: a valid
// IPv4 address, inside network/prefix, inside one of the DHCP ranges, not
// leased. It also refuses the network's reserved addresses (gateway, servers,
// network, broadcast) even when no reserved lease row exists yet: the
// original only refused them once Incremental had recorded them, so a manual
// address could take the gateway's.
type SpecifyIP struct{}

// ScheduleIP implements IPScheduler.
func (SpecifyIP) ScheduleIP(nw *Network, want string) (IPChoice, error) {
	a, err := ParseIPv4(want)
	if err != nil {
		return IPChoice{}, reasonErr(KindIPAddress, ReasonInvalidAddress, "Invalid IP address: '%s'", want)
	}
	if !nw.Contains(a) {
		return IPChoice{}, reasonErr(KindIPAddress, ReasonNotInSegment, "IP address %s is not in the segment of network %s (%s/%d)", a, nw.ID, nw.IPv4Network, nw.Prefix)
	}
	if !nw.inDhcpRange(a) {
		return IPChoice{}, reasonErr(KindIPAddress, ReasonNotInRange, "IP address %s is not in a DHCP range of network %s", a, nw.ID)
	}
	if _, ok := nw.Leases[a]; ok || nw.reserved(a) {
		return IPChoice{}, reasonErr(KindIPAddress, ReasonLeased, "IP address %s is already leased in network %s", a, nw.ID)
	}
	return IPChoice{Addr: a, Kind: LeaseStatic}, nil
}
