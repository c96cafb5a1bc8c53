package scheduler

import (
	"maps"
	"slices"
)

// Schedulers is the set of algorithms of one service type (dcmgr.conf
// service_type). Build one with ServiceTypeConfig.Build or by hand. It is not
// safe for concurrent use when its MAC scheduler's random source is not (a
// math/rand/v2 *Rand is not): give each planning goroutine its own.
type Schedulers struct {
	Host HostScheduler
	// HostHA re-places the instances of a failed host (evacuate_from).
	// ServiceTypeConfig.Build defaults it to DefaultHostHA (the original had
	// no default); PlaceEvacuee uses the default when it is nil.
	HostHA  HostScheduler
	Storage StorageScheduler
	Network NetworkScheduler
	MAC     MacScheduler
	IP      IPScheduler
	// SpecifyMAC serves vifs whose template names a mac_addr.
	SpecifyMAC SpecifyMacAddress
}

// VolumePlacement is where one volume of a request goes.
type VolumePlacement struct {
	VolumeID      string
	Local         bool   // on the instance's host
	StorageNodeID string // for shared volumes
}

// Placement is the outcome for one request. When Err is set nothing of it
// was recorded in the view and the other fields are empty.
type Placement struct {
	InstanceID string
	HostID     string
	NICs       []NIC
	// Reserved are reserved addresses the IP scheduler met; the leader stores
	// them as reserved leases with the placement.
	Reserved []ReservedLease
	Volumes  []VolumePlacement
	Err      error
}

// Plan is the outcome of one batch, one Placement per request in order.
type Plan struct {
	Placements []Placement
}

// Failed counts placements that did not succeed.
func (p *Plan) Failed() int {
	n := 0
	for i := range p.Placements {
		if p.Placements[i].Err != nil {
			n++
		}
	}
	return n
}

// Place places the requests one after another in v, recording each success
// in v (host usage, IP leases, MAC leases, storage space) before the next
// decision, so that one plan never gives the same capacity, address or MAC
// twice. A request that fails leaves v as it was and does not stop the
// batch. v is modified: pass v.Clone() to keep the original.
func (s *Schedulers) Place(v *View, reqs []Request) *Plan {
	p := &Plan{Placements: make([]Placement, len(reqs))}
	for i := range reqs {
		pl, err := s.PlaceOne(v, &reqs[i])
		if err != nil {
			pl = Placement{InstanceID: reqs[i].InstanceID, Err: err}
		}
		p.Placements[i] = pl
	}
	return p
}

// PlaceOne is schedule_instance for one request (spec §2.1): host node,
// local disk, NICs with MACs and addresses, storage nodes for shared volumes.
// On error v is unchanged.
func (s *Schedulers) PlaceOne(v *View, r *Request) (Placement, error) {
	var log undoLog
	pl, err := s.placeOne(v, r, &log)
	if err != nil {
		log.rollback(0)
		return Placement{}, err
	}
	return pl, nil
}

func (s *Schedulers) placeOne(v *View, r *Request, log *undoLog) (Placement, error) {
	pl := Placement{InstanceID: r.InstanceID}
	if s.Host == nil {
		return pl, newErr(KindConfig, "No host node scheduler configured")
	}
	h, err := s.Host.ScheduleHost(v, r)
	if err != nil {
		return pl, err
	}
	if err := charge(h, r, log); err != nil {
		return pl, err
	}
	pl.HostID = h.ID
	if s.Network != nil {
		mac := s.MAC
		if mac == nil {
			return pl, newErr(KindConfig, "No MAC address scheduler configured")
		}
		ip := s.IP
		if ip == nil {
			ip = Incremental{}
		}
		a := &NICAllocator{view: v, req: r, host: h, mac: mac, ip: ip, specifyMAC: s.SpecifyMAC, log: log}
		if pl.NICs, err = s.Network.ScheduleNetworks(a); err != nil {
			return pl, err
		}
		pl.Reserved = a.reserved
	}
	for i := range r.Volumes {
		vol := &r.Volumes[i]
		if vol.Local {
			pl.Volumes = append(pl.Volumes, VolumePlacement{VolumeID: vol.ID, Local: true})
			continue
		}
		sn, err := s.placeVolume(v, vol, log)
		if err != nil {
			return pl, err
		}
		pl.Volumes = append(pl.Volumes, VolumePlacement{VolumeID: vol.ID, StorageNodeID: sn.ID})
	}
	return pl, nil
}

// PlaceVolume is schedule_volume: the storage node scheduler for a
// standalone shared volume, charging its size to the chosen node.
func (s *Schedulers) PlaceVolume(v *View, vol *VolumeRequest) (*StorageNode, error) {
	return s.placeVolume(v, vol, nil)
}

// placeVolume places a shared volume; log (nil for PlaceVolume, which has
// nothing to roll back) records how to give the space back.
func (s *Schedulers) placeVolume(v *View, vol *VolumeRequest, log *undoLog) (*StorageNode, error) {
	if s.Storage == nil {
		return nil, newErr(KindConfig, "No storage node scheduler configured")
	}
	sn, err := s.Storage.ScheduleStorage(v, vol)
	if err != nil {
		return nil, err
	}
	size := vol.SizeBytes
	sn.FreeBytes -= size
	if log != nil {
		log.add(func() { sn.FreeBytes += size })
	}
	return sn, nil
}

// PlaceHA is the host part of evacuate_from for one instance: the HA
// scheduler's host (over capacity when the scheduler supports it, so that
// instances of a failed host restart even on a full cluster), charged with
// the request. NICs and volumes stay as they are. On error v is unchanged.
func (s *Schedulers) PlaceHA(v *View, r *Request) (*Host, error) {
	if s.HostHA == nil {
		return nil, newErr(KindConfig, "No host_node_ha_scheduler configured")
	}
	var h *Host
	var err error
	if oc, ok := s.HostHA.(OverCommitScheduler); ok {
		h, err = oc.ScheduleOverCommit(v, r)
	} else {
		h, err = s.HostHA.ScheduleHost(v, r)
	}
	if err != nil {
		return nil, err
	}
	var log undoLog
	if err := charge(h, r, &log); err != nil {
		return nil, err
	}
	return h, nil
}

// charge books the request's cores, memory and local disk on h, failing with
// the original's "Insufficient local disk space" when the local volumes do
// not fit (host schedulers that check capacity never pick such a host; the
// over-committing HA path can).
func charge(h *Host, r *Request, log *undoLog) error {
	n := needOf(r)
	if n.disk > 0 && h.AvailableDiskBytes() < n.disk {
		return newErr(KindHostNode, "Insufficient local disk space")
	}
	old := h.Instances
	h.UsedCPU += n.cpu
	h.UsedMemoryMB += n.mem
	h.UsedDiskBytes += n.disk
	h.Instances = append(h.Instances, InstanceUsage{
		InstanceID: r.InstanceID, AccountID: r.AccountID,
		CPU: r.CPU, MemoryMB: r.MemoryMB, QuotaWeight: r.QuotaWeight,
	})
	log.add(func() {
		h.UsedCPU -= n.cpu
		h.UsedMemoryMB -= n.mem
		h.UsedDiskBytes -= n.disk
		h.Instances = old
	})
	return nil
}

// undoLog records how to revert the view changes of a request in progress,
// so that a failure halfway (second NIC, a volume) leaves no trace.
type undoLog struct{ fns []func() }

func (u *undoLog) add(f func()) { u.fns = append(u.fns, f) }

func (u *undoLog) mark() int { return len(u.fns) }

// rollback reverts, newest first, every change made since mark.
func (u *undoLog) rollback(mark int) {
	for i := len(u.fns) - 1; i >= mark; i-- {
		u.fns[i]()
	}
	u.fns = u.fns[:mark]
}

// Clone returns a deep copy of v, for planning without touching the
// original.
func (v *View) Clone() *View {
	c := &View{
		Hosts:        slices.Clone(v.Hosts),
		StorageNodes: slices.Clone(v.StorageNodes),
		Networks:     slices.Clone(v.Networks),
		Groups:       maps.Clone(v.Groups),
		MacRanges:    slices.Clone(v.MacRanges),
		MacLeases:    maps.Clone(v.MacLeases),
	}
	for i := range c.Hosts {
		h := &c.Hosts[i]
		h.Groups = slices.Clone(h.Groups)
		h.Instances = slices.Clone(h.Instances)
	}
	for i := range c.Networks {
		n := &c.Networks[i]
		n.DhcpRanges = slices.Clone(n.DhcpRanges)
		n.Leases = maps.Clone(n.Leases)
		n.Groups = slices.Clone(n.Groups)
	}
	return c
}
