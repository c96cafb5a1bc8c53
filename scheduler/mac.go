package scheduler

import (
	"strconv"
	"strings"
)

// DefaultMacVendor is dcmgr.conf's mac_address_vendor_id default (52:54:00,
// the QEMU/KVM OUI).
const DefaultMacVendor uint32 = 0x525400

// Rand is the random source of the MAC schedulers, taken as an interface so
// that tests are deterministic; *math/rand/v2.Rand satisfies it.
type Rand interface {
	Uint64N(n uint64) uint64
}

// MacScheduler chooses a MAC address for a NIC on host (the host the
// instance was placed on; may be nil for a bare vif). want is the vif
// template's mac_addr, "" when none; only SpecifyMacAddress reads it.
type MacScheduler interface {
	ScheduleMAC(v *View, host *Host, want string) (MAC, error)
}

// randomProbes is how many random picks are tried before an exhaustive
// probe from a random start. A range is rarely more than half full, so the
// random picks almost always end the search; the probe bounds the work on a
// nearly full range and proves a full one full, instead of retrying random
// picks for as long as chance takes.
const randomProbes = 16

// pickMAC returns a free address of range r, random if possible.
func pickMAC(v *View, r *MacRange, rnd Rand) (MAC, bool) {
	if r.End < r.Begin {
		return 0, false
	}
	size := uint64(r.End-r.Begin) + 1
	for range randomProbes {
		m := makeMAC(r.Vendor, r.Begin+uint32(rnd.Uint64N(size)))
		if _, leased := v.MacLeases[m]; !leased {
			return m, true
		}
	}
	start := rnd.Uint64N(size)
	for k := range size {
		m := makeMAC(r.Vendor, r.Begin+uint32((start+k)%size))
		if _, leased := v.MacLeases[m]; !leased {
			return m, true
		}
	}
	return 0, false
}

func (v *View) macRange(id string) *MacRange {
	for i := range v.MacRanges {
		if v.MacRanges[i].ID == id {
			return &v.MacRanges[i]
		}
	}
	return nil
}

func errMacFull(r *MacRange) error {
	return newErr(KindMacAddress, "No free MAC address left in range '%s'", r.ID)
}

// DefaultMAC picks a random free address of the first MAC range (the
// mac_address_scheduler "Default").
type DefaultMAC struct{ Rand Rand }

// ScheduleMAC implements MacScheduler.
func (d DefaultMAC) ScheduleMAC(v *View, _ *Host, _ string) (MAC, error) {
	if len(v.MacRanges) == 0 {
		return 0, newErr(KindMacAddress, "No MAC address range defined")
	}
	r := &v.MacRanges[0]
	if m, ok := pickMAC(v, r, d.Rand); ok {
		return m, nil
	}
	return 0, errMacFull(r)
}

// ByHostNodeGroup takes the MAC from the range paired with one of the host's
// groups (the first, in the host's group order, with a free address), else
// from the default range.
type ByHostNodeGroup struct {
	Default string            // MAC range id
	Pairs   map[string]string // hng id -> MAC range id
	Rand    Rand
}

// ScheduleMAC implements MacScheduler.
func (b ByHostNodeGroup) ScheduleMAC(v *View, host *Host, _ string) (MAC, error) {
	if host != nil {
		for _, g := range host.Groups {
			id, ok := b.Pairs[g]
			if !ok {
				continue
			}
			r := v.macRange(id)
			if r == nil {
				return 0, newErr(KindMacAddress, "MAC address range '%s' not found", id)
			}
			if m, ok := pickMAC(v, r, b.Rand); ok {
				return m, nil
			}
		}
	}
	r := v.macRange(b.Default)
	if r == nil {
		return 0, newErr(KindMacAddress, "MAC address range '%s' not found", b.Default)
	}
	if m, ok := pickMAC(v, r, b.Rand); ok {
		return m, nil
	}
	return 0, errMacFull(r)
}

// SpecifyMacAddress leases the address the vif template asks for: 12 hex
// digits, or 6 for the address part under Vendor (dcmgr.conf
// mac_address_vendor_id). It must be free and inside a range of the same
// vendor. Plan uses it for every vif with mac_addr, whatever the configured
// MAC scheduler, as the original did.
type SpecifyMacAddress struct {
	Vendor uint32 // 0 means DefaultMacVendor
}

// ScheduleMAC implements MacScheduler.
func (s SpecifyMacAddress) ScheduleMAC(v *View, _ *Host, want string) (MAC, error) {
	m, err := s.Parse(want)
	if err != nil {
		return 0, err
	}
	if _, leased := v.MacLeases[m]; leased {
		return 0, reasonErr(KindMacAddress, ReasonLeased, "MAC address %s is already leased", m)
	}
	for i := range v.MacRanges {
		if v.MacRanges[i].contains(m) {
			return m, nil
		}
	}
	return 0, reasonErr(KindMacAddress, ReasonNotInRange, "MAC address %s is not in any MAC address range", m)
}

// Parse turns a vif template's mac_addr into an address.
func (s SpecifyMacAddress) Parse(want string) (MAC, error) {
	h := strings.ToLower(strings.TrimSpace(want))
	bad := reasonErr(KindMacAddress, ReasonInvalidAddress, "Invalid MAC address: '%s'", want)
	if (len(h) != 6 && len(h) != 12) || strings.Trim(h, "0123456789abcdef") != "" {
		return 0, bad
	}
	n, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return 0, bad
	}
	if len(h) == 6 {
		vendor := s.Vendor
		if vendor == 0 {
			vendor = DefaultMacVendor
		}
		return makeMAC(vendor, uint32(n)), nil
	}
	return MAC(n), nil
}
