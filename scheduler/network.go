package scheduler

import (
	"errors"
	"slices"
)

// DefaultBandwidth is the bandwidth every scheduled NIC gets (kbit/s), as
// the original's network schedulers set it.
const DefaultBandwidth = 100000

// NIC is a planned network interface of an instance.
type NIC struct {
	Name           string
	Index          int
	NetworkID      string // "" when the NIC is on no network
	NatNetworkID   string
	SecurityGroups []string
	Bandwidth      int
	MacAddr        MAC
	IPv4Addr       IPv4 // zero when the NIC has no network
	IPv4Kind       LeaseKind
	NatIPv4Addr    IPv4 // zero without a NAT network
	NatIPv4Kind    LeaseKind
}

// ReservedLease is a reserved address met by the IP scheduler, to be stored
// as a reserved lease so no later search hands it out.
type ReservedLease struct {
	NetworkID string
	Addr      IPv4
}

// NetworkScheduler creates an instance's NICs. It decides the networks and
// calls back into the NICAllocator, which runs the MAC scheduler for every
// NIC and the IP scheduler for every NIC attached to a network, recording
// both in the view.
type NetworkScheduler interface {
	ScheduleNetworks(a *NICAllocator) ([]NIC, error)
}

// NICAllocator is the per-request context network schedulers work in.
type NICAllocator struct {
	view       *View
	req        *Request
	host       *Host
	mac        MacScheduler
	ip         IPScheduler
	specifyMAC SpecifyMacAddress
	log        *undoLog
	reserved   []ReservedLease
}

// View returns the cluster view the request is placed in.
func (a *NICAllocator) View() *View { return a.view }

// Request returns the request being placed.
func (a *NICAllocator) Request() *Request { return a.req }

// Vifs returns the request's vifs with indexes assigned; ok is false when
// request_params["vifs"] is missing or not a hash of hashes.
func (a *NICAllocator) Vifs() (vifs []VifParam, ok bool) {
	vifs, ok = parseVifs(a.req.RequestParams["vifs"])
	assignIndexes(vifs)
	return vifs, ok
}

// AddNIC creates a NIC with a MAC address for vif p, on no network yet. A
// mac_addr in the template is honoured with SpecifyMacAddress whichever
// network scheduler runs: the API validated it for the client (12.03 codes
// 174/175/180), so dropping it silently would be wrong; the original passed it
// on only from SpecifyNetwork.
func (a *NICAllocator) AddNIC(p VifParam) (NIC, error) {
	var m MAC
	var err error
	if p.MacAddr != "" {
		m, err = a.specifyMAC.ScheduleMAC(a.view, a.host, p.MacAddr)
	} else {
		m, err = a.mac.ScheduleMAC(a.view, a.host, "")
	}
	if err != nil {
		return NIC{}, err
	}
	if a.view.MacLeases == nil {
		a.view.MacLeases = make(map[MAC]struct{})
	}
	a.view.MacLeases[m] = struct{}{}
	a.log.add(func() { delete(a.view.MacLeases, m) })
	return NIC{
		Name:           p.Name,
		Index:          p.Index,
		SecurityGroups: p.SecurityGroups,
		Bandwidth:      DefaultBandwidth,
		MacAddr:        m,
	}, nil
}

// LookupNetwork returns the network with id: InvalidUUIDError when id is
// malformed, NetworkSchedulingError "Network 'x' doesn't exist." when
// there is no such network.
func (a *NICAllocator) LookupNetwork(id string) (*Network, error) {
	if !validNetworkUUID(id) {
		return nil, newErr(KindInvalidUUID, "Invalid uuid or unsupported uuid: %s in Network", id)
	}
	nw := a.view.network(id)
	if nw == nil {
		return nil, reasonErr(KindNetwork, ReasonUnknownNetwork, "Network '%s' doesn't exist.", id)
	}
	return nw, nil
}

// Attach puts nic on nw and leases its address, and with p.NatNetwork a
// second address on the NAT network. The address comes from SpecifyIP when
// specify is set or the template names one (ipv4_addr / nat_ipv4_addr),
// otherwise from the configured IP scheduler. On error nothing of the
// attempt stays recorded, so a caller may try another network.
func (a *NICAllocator) Attach(nic *NIC, nw *Network, p VifParam, specify bool) error {
	mark := a.log.mark()
	saved := *nic
	err := a.attach(nic, nw, p, specify)
	if err != nil {
		a.log.rollback(mark)
		*nic = saved
	}
	return err
}

func (a *NICAllocator) attach(nic *NIC, nw *Network, p VifParam, specify bool) error {
	addr, kind, err := a.lease(nw, p.IPv4Addr, specify)
	if err != nil {
		return err
	}
	nic.NetworkID, nic.IPv4Addr, nic.IPv4Kind = nw.ID, addr, kind
	if p.NatNetwork == "" {
		return nil
	}
	nat, err := a.LookupNetwork(p.NatNetwork)
	if err != nil {
		return err
	}
	addr, kind, err = a.lease(nat, p.NatIPv4Addr, specify)
	if err != nil {
		return err
	}
	nic.NatNetworkID, nic.NatIPv4Addr, nic.NatIPv4Kind = nat.ID, addr, kind
	return nil
}

// lease runs the IP scheduler on nw and records the result in the view.
func (a *NICAllocator) lease(nw *Network, want string, specify bool) (IPv4, LeaseKind, error) {
	var sched IPScheduler = a.ip
	if specify || want != "" {
		sched = SpecifyIP{}
	}
	c, err := sched.ScheduleIP(nw, want)
	if err != nil {
		return 0, 0, err
	}
	keys := append(slices.Clone(c.Reserved), c.Addr)
	nw.Record(c)
	old := a.reserved
	for _, r := range c.Reserved {
		a.reserved = append(a.reserved, ReservedLease{NetworkID: nw.ID, Addr: r})
	}
	a.log.add(func() {
		for _, k := range keys {
			delete(nw.Leases, k)
		}
		a.reserved = old
	})
	return c.Addr, c.Kind, nil
}

// strictVif is the VifsRequestParam / SpecifyNetwork step for one vif.
func (a *NICAllocator) strictVif(p VifParam, specify bool) (NIC, error) {
	var nw *Network
	if p.Network != "" {
		var err error
		if nw, err = a.LookupNetwork(p.Network); err != nil {
			return NIC{}, err
		}
	}
	nic, err := a.AddNIC(p)
	if err != nil || nw == nil {
		return nic, err
	}
	return nic, a.Attach(&nic, nw, p, specify)
}

// FlatSingle creates one NIC, from the first vif of request_params (or
// {index 0} when there is none), on the first network.
type FlatSingle struct{}

// ScheduleNetworks implements NetworkScheduler.
func (FlatSingle) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	if len(a.view.Networks) == 0 {
		return nil, newErr(KindNetwork, "No network found")
	}
	p := VifParam{Name: "eth0", HasIndex: true}
	if vifs, _ := a.Vifs(); len(vifs) > 0 {
		p = vifs[0]
	}
	nic, err := a.AddNIC(p)
	if err != nil {
		return nil, err
	}
	if err := a.Attach(&nic, &a.view.Networks[0], p, false); err != nil {
		return nil, err
	}
	return []NIC{nic}, nil
}

// VifsRequestParam creates one NIC per entry of request_params["vifs"],
// which must be a hash of name → hash. An entry without network gives a NIC
// on no network; a named network must exist.
type VifsRequestParam struct{}

// ScheduleNetworks implements NetworkScheduler.
func (VifsRequestParam) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	return strictNetworks(a, false)
}

// SpecifyNetwork is VifsRequestParam where every address is the template's
// own: ipv4_addr (and nat_ipv4_addr) through SpecifyIP, never a dynamic one.
type SpecifyNetwork struct{}

// ScheduleNetworks implements NetworkScheduler.
func (SpecifyNetwork) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	return strictNetworks(a, true)
}

func strictNetworks(a *NICAllocator, specify bool) ([]NIC, error) {
	vifs, ok := a.Vifs()
	if !ok {
		return nil, errBadVifs()
	}
	nics := make([]NIC, 0, len(vifs))
	for _, p := range vifs {
		nic, err := a.strictVif(p, specify)
		if err != nil {
			return nil, err
		}
		nics = append(nics, nic)
	}
	return nics, nil
}

// VifParamTemplate is the tolerant VifsRequestParam: a vifs parameter that is
// not a hash gives no NICs, and an entry naming a missing (or malformed)
// network is skipped.
type VifParamTemplate struct{}

// ScheduleNetworks implements NetworkScheduler.
func (VifParamTemplate) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	vifs, _ := a.Vifs()
	var nics []NIC
	for _, p := range vifs {
		if p.Network != "" {
			if _, err := a.LookupNetwork(p.Network); err != nil {
				continue
			}
		}
		nic, err := a.strictVif(p, false)
		if err != nil {
			return nil, err
		}
		nics = append(nics, nic)
	}
	return nics, nil
}

// VifTemplate puts each requested vif on the network its name maps to in
// Template; a name not in the template gives a NIC on no network.
type VifTemplate struct {
	Template map[string]string // vif name -> network id
}

// ScheduleNetworks implements NetworkScheduler.
func (t VifTemplate) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	vifs, _ := a.Vifs()
	nics := make([]NIC, 0, len(vifs))
	for _, p := range vifs {
		p.Network = t.Template[p.Name]
		nic, err := a.strictVif(p, false)
		if err != nil {
			return nil, err
		}
		nics = append(nics, nic)
	}
	return nics, nil
}

// NatOneToOne puts every requested vif on NetworkID with a second address on
// NatNetworkID.
type NatOneToOne struct {
	NetworkID    string
	NatNetworkID string
}

// ScheduleNetworks implements NetworkScheduler.
func (n NatOneToOne) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	vifs, _ := a.Vifs()
	nics := make([]NIC, 0, len(vifs))
	for _, p := range vifs {
		p.Network, p.NatNetwork = n.NetworkID, n.NatNetworkID
		nic, err := a.strictVif(p, false)
		if err != nil {
			return nil, err
		}
		nics = append(nics, nic)
	}
	return nics, nil
}

// attachFirstFree tries the networks in order and attaches nic to the first
// that still has an address, moving on only on OutOfIpRange, or, for a vif
// that names its address, when the address is outside a network's segment
// or DHCP ranges (it may belong to another network of the group).
func attachFirstFree(a *NICAllocator, nic *NIC, p VifParam, nws []*Network, group string) error {
	for _, nw := range nws {
		err := a.Attach(nic, nw, p, false)
		if err == nil {
			return nil
		}
		var se *SchedulingError
		if !errors.As(err, &se) {
			return err
		}
		if se.Kind != KindOutOfIPRange && (p.IPv4Addr == "" || (se.Reason != ReasonNotInSegment && se.Reason != ReasonNotInRange)) {
			return err
		}
	}
	if p.IPv4Addr != "" {
		return newErr(KindNetwork, "No network in network group %s can lease IP address %s", group, p.IPv4Addr)
	}
	return newErr(KindNetwork, "No network in network group %s has a free IP address", group)
}

func networksInGroup(v *View, group string) []*Network {
	var nws []*Network
	for i := range v.Networks {
		if v.Networks[i].InGroup(group) {
			nws = append(nws, &v.Networks[i])
		}
	}
	return nws
}

// NetworkRequestParamToGroup puts every requested vif on a network of the
// network group paired with request_params[Key] (else Default): the first
// network of the group, in view order, with a free address.
type NetworkRequestParamToGroup struct {
	Key     string
	Default string
	Pairs   map[string]string // request param value -> nwg id
}

// ScheduleNetworks implements NetworkScheduler.
func (g NetworkRequestParamToGroup) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	group, err := pairedGroup(a.view, a.req, g.Key, g.Default, g.Pairs, KindNetwork, "network")
	if err != nil {
		return nil, err
	}
	vifs, _ := a.Vifs()
	nws := networksInGroup(a.view, group)
	nics := make([]NIC, 0, len(vifs))
	for _, p := range vifs {
		nic, err := a.AddNIC(p)
		if err != nil {
			return nil, err
		}
		if err := attachFirstFree(a, &nic, p, nws, group); err != nil {
			return nil, err
		}
		nics = append(nics, nic)
	}
	return nics, nil
}

// NetworkGroup puts every requested vif on the least allocated network (the
// fewest leases) of a network group: the vif's own network field when it
// names a group, else NetworkGroupID. A network that turns out full is
// dropped and the next least allocated tried. least_allocation is the only
// algorithm the original had.
type NetworkGroup struct {
	NetworkGroupID string
}

// ScheduleNetworks implements NetworkScheduler.
func (g NetworkGroup) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	vifs, _ := a.Vifs()
	nics := make([]NIC, 0, len(vifs))
	for _, p := range vifs {
		group := g.NetworkGroupID
		if p.Network != "" {
			group = p.Network
		}
		if !a.view.Groups[group] {
			return nil, newErr(KindNetwork, "Unknown network group: %s", group)
		}
		nws := networksInGroup(a.view, group)
		// Least allocated first; a stable sort keeps view order among equals.
		slices.SortStableFunc(nws, func(x, y *Network) int { return len(x.Leases) - len(y.Leases) })
		nic, err := a.AddNIC(p)
		if err != nil {
			return nil, err
		}
		p.Network = "" // a group id, not a network: do not look it up again
		if err := attachFirstFree(a, &nic, p, nws, group); err != nil {
			return nil, err
		}
		nics = append(nics, nic)
	}
	return nics, nil
}

// PerInstance picks a network scheduler per request by
// request_params["network_scheduler"]; empty means Default.
type PerInstance struct {
	Default    string
	Schedulers map[string]NetworkScheduler
}

// ScheduleNetworks implements NetworkScheduler.
func (p PerInstance) ScheduleNetworks(a *NICAllocator) ([]NIC, error) {
	name := a.req.param("network_scheduler")
	if name == "" {
		name = p.Default
	}
	s, ok := p.Schedulers[name]
	if !ok {
		return nil, newErr(KindNetwork, "Unknown network scheduler: %s", name)
	}
	return s.ScheduleNetworks(a)
}
