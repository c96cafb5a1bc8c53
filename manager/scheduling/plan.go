package scheduling

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler"
)

// stale is the error of a plan that no longer fits the state; the daemon
// answers it by planning again on a fresh view.
func stale(format string, args ...any) error {
	return errs.New(errs.Conflict, "stale plan: "+format, args...)
}

// badPlan is the error of a plan that could not have come from a view (a
// daemon bug or a hand-made request); planning again does not help.
func badPlan(format string, args ...any) error {
	return errs.New(errs.InvalidParameter, "invalid plan: "+format, args...)
}

// volEntry is a volume with the ModifyIndex it was read at.
type volEntry struct {
	proto.Volume
	meta state.Meta
}

// instanceVolumes are the instance's volumes its placement covers (see
// placeable), in creation order.
func instanceVolumes(tx *state.Tx, instanceID string, start bool) ([]volEntry, error) {
	var out []volEntry
	err := state.EachOfIn(tx, state.IdxVolumesByInstance, instanceID, false, func(v *proto.Volume, m state.Meta) error {
		if placeable(v, start) {
			out = append(out, volEntry{Volume: *v, meta: m})
		}
		return nil
	})
	return out, err
}

// planBatch applies the plans of one submit_plan in one transaction. Each
// plan is re-checked on its own, against the state and against the plans of
// the batch before it; its ops reach the transaction only when it holds. The
// records several plans share are written once, after all of them: a host's
// usage (the sum of its plans' charges, guarded by the ModifyIndex read) and
// the guards on hosts and networks. Addresses and MACs claimed by an earlier
// plan of the batch are taken for the later ones.
type planBatch struct {
	tx  *state.Tx
	b   *state.Builder
	now time.Time

	guardOps  state.Builder          // Check ops, written first
	body      state.Builder          // the plans' own ops, written last
	usage     map[string]*hostCharge // by host id
	hostOrder []string               // hosts in first-charge order, for a stable txn
	guards    map[string]bool        // "kind/id" of the Check ops added
	ips       map[string]bool        // lease keys created or deleted
	macs      map[string]bool
	insts     map[string]bool
}

// hostCharge is a host's usage as the batch has charged it so far.
type hostCharge struct {
	u      proto.HostUsage
	meta   state.Meta
	exists bool
}

func newPlanBatch(tx *state.Tx, b *state.Builder, now time.Time) *planBatch {
	return &planBatch{tx: tx, b: b, now: now, usage: map[string]*hostCharge{}, guards: map[string]bool{},
		ips: map[string]bool{}, macs: map[string]bool{}, insts: map[string]bool{}}
}

// applyPlan re-checks a single plan against tx and adds its ops to b: the
// host's usage (guarded by its ModifyIndex, capacity re-checked against the
// offering), the vifs with their IP leases and MAC claims (a taken address or
// MAC fails the create guard), the instance on its host in state pending, its
// volumes pending, and the job that boots it.
func applyPlan(tx *state.Tx, b *state.Builder, req *proto.SubmitPlanRequest, now time.Time) (*proto.SubmitPlanResponse, error) {
	pb := newPlanBatch(tx, b, now)
	resp, err := pb.apply(req)
	if err != nil {
		return nil, err
	}
	pb.finish()
	return resp, nil
}

// planItem is one plan of a batch being checked: its own ops and claims,
// merged into the batch only when the whole plan holds.
type planItem struct {
	pb     *planBatch
	b      state.Builder
	guards []state.Op // Check ops, added once per record by the batch
	usage  *hostCharge
	hostID string
	ips    map[string]bool
	macs   map[string]bool
}

func (it *planItem) guard(kind, id string, index uint64) {
	it.guards = append(it.guards, state.Op{Verb: state.Check, Kind: kind, ID: id, Index: index})
}

// apply checks one plan and, when it holds, adds it to the batch.
func (pb *planBatch) apply(req *proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
	if pb.insts[req.InstanceID] {
		return nil, badPlan("instance %s is placed twice in one batch", req.InstanceID)
	}
	it := &planItem{pb: pb, ips: map[string]bool{}, macs: map[string]bool{}}
	resp, err := it.apply(req)
	if err != nil {
		return nil, err
	}
	pb.insts[req.InstanceID] = true
	pb.body.Append(&it.b)
	for _, g := range it.guards {
		if k := g.Kind + "/" + g.ID; !pb.guards[k] {
			pb.guards[k] = true
			pb.guardOps.Check(g.Kind, g.ID, g.Index)
		}
	}
	if it.usage != nil {
		if _, ok := pb.usage[it.hostID]; !ok {
			pb.hostOrder = append(pb.hostOrder, it.hostID)
		}
		pb.usage[it.hostID] = it.usage
	}
	for k := range it.ips {
		pb.ips[k] = true
	}
	for k := range it.macs {
		pb.macs[k] = true
	}
	return resp, nil
}

// finish writes the batch's ops: the guards, the hosts' usages charged by
// the batch, then every plan's own ops (so that a usage changed meanwhile
// is the guard that fails).
func (pb *planBatch) finish() {
	pb.b.Append(&pb.guardOps)
	for _, id := range pb.hostOrder {
		c := pb.usage[id]
		if c.exists {
			pb.b.Update(proto.KindHostUsage, id, c.meta.ModifyIndex, &c.u)
		} else {
			pb.b.Create(proto.KindHostUsage, id, &c.u)
		}
	}
	pb.b.Append(&pb.body)
}

func (it *planItem) apply(req *proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
	tx, b, now := it.pb.tx, &it.b, it.pb.now
	var inst proto.Instance
	im, err := tx.Get(proto.KindInstance, req.InstanceID, &inst)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.New(errs.UnknownInstance, "Unknown instance: %s", req.InstanceID)
	}
	if err != nil {
		return nil, err
	}
	if inst.State != proto.InstanceScheduling {
		if resp, ok := alreadyApplied(tx, &inst, req); ok {
			return resp, nil
		}
		return nil, errs.New(errs.InvalidInstanceState, "instance %s is %s, not %s", inst.ID, inst.State, proto.InstanceScheduling)
	}

	var host proto.HostNode
	hm, err := tx.Get(proto.KindHostNode, req.HostNodeID, &host)
	if errs.Is(err, errs.NotFound) {
		return nil, stale("host node %s does not exist", req.HostNodeID)
	}
	if err != nil {
		return nil, err
	}
	if !nodeIsOnline(tx, host.NodeID) {
		return nil, stale("host node %s (%s) is not online", host.ID, host.NodeID)
	}
	if !host.SchedulingEnabled {
		return nil, stale("host node %s is not enabled for scheduling", host.ID)
	}
	if host.Arch != inst.Arch || host.Hypervisor != inst.Hypervisor {
		return nil, errs.New(errs.IncompatibleHostNode, "host node %s runs %s %s, the instance needs %s %s",
			host.ID, host.Arch, host.Hypervisor, inst.Arch, inst.Hypervisor)
	}
	// A host disabled or changed concurrently makes the txn fail and the
	// plan be re-checked.
	it.guard(proto.KindHostNode, host.ID, hm.ModifyIndex)

	vols, sns, disk, err := checkVolumes(tx, &inst, req)
	if err != nil {
		return nil, err
	}
	if err := it.charge(&host, &inst, disk); err != nil {
		return nil, err
	}
	if err := chargeVolumes(tx, b, vols, sns); err != nil {
		return nil, err
	}
	nt := newNicTxn(it, &inst)
	var vifIDs []string
	if req.Start {
		vifIDs, err = nt.restartNics(req.Nics)
	} else {
		vifIDs, err = nt.createNics(req.Nics)
	}
	if err != nil {
		return nil, err
	}

	inst.HostNodeID = &host.ID
	inst.State = proto.InstancePending
	inst.LastError = ""
	inst.UpdatedAt = now
	b.Update(proto.KindInstance, inst.ID, im.ModifyIndex, &inst)
	for i := range vols {
		v := &vols[i]
		v.State = proto.VolumePending
		v.UpdatedAt = now
		if v.StoreType == proto.VolumeLocal {
			v.StorageNodeID = nil
			v.Device = &proto.VolumeDevice{MountLabel: "instance"}
		} else if sn, ok := sns[v.ID]; ok {
			v.StorageNodeID = &sn.ID
			v.Device = &proto.VolumeDevice{StorageNodeID: sn.ID}
		}
		b.Update(proto.KindVolume, v.ID, v.meta.ModifyIndex, &v.Volume)
	}
	jobIDs, err := enqueueBoot(tx, b, &inst, &host, vols, sns, req.Start, now)
	if err != nil {
		return nil, err
	}
	return &proto.SubmitPlanResponse{InstanceID: inst.ID, HostNodeID: host.ID, VifIDs: vifIDs, JobIDs: jobIDs}, nil
}

// checkVolumes matches the plan's volumes with the instance's volumes to
// place: each exactly once, local ones on the host, shared ones on an online
// storage node. It returns the volumes, the storage node of each shared one,
// and the local disk the instance takes on its host.
func checkVolumes(tx *state.Tx, inst *proto.Instance, req *proto.SubmitPlanRequest) ([]volEntry, map[string]*proto.StorageNode, int64, error) {
	vols, err := instanceVolumes(tx, inst.ID, req.Start)
	if err != nil {
		return nil, nil, 0, err
	}
	planned := make(map[string]proto.PlannedVolume, len(req.Volumes))
	for _, pv := range req.Volumes {
		if _, dup := planned[pv.VolumeID]; dup {
			return nil, nil, 0, badPlan("volume %s placed twice", pv.VolumeID)
		}
		planned[pv.VolumeID] = pv
	}
	if len(planned) != len(vols) {
		return nil, nil, 0, stale("the plan places %d volumes, instance %s has %d to place", len(planned), inst.ID, len(vols))
	}
	sns := map[string]*proto.StorageNode{}
	var disk int64
	for _, v := range vols {
		pv, ok := planned[v.ID]
		if !ok {
			return nil, nil, 0, stale("volume %s of instance %s is not in the plan", v.ID, inst.ID)
		}
		if local := v.StoreType == proto.VolumeLocal; pv.Local != local {
			return nil, nil, 0, badPlan("volume %s is %s, the plan puts it elsewhere", v.ID, v.StoreType)
		}
		if pv.Local {
			disk += v.Size
			continue
		}
		var sn proto.StorageNode
		if _, err := tx.Get(proto.KindStorageNode, pv.StorageNodeID, &sn); err != nil {
			if errs.Is(err, errs.NotFound) {
				return nil, nil, 0, stale("storage node %q of volume %s does not exist", pv.StorageNodeID, v.ID)
			}
			return nil, nil, 0, err
		}
		if !nodeIsOnline(tx, sn.NodeID) {
			return nil, nil, 0, stale("storage node %s (%s) is not online", sn.ID, sn.NodeID)
		}
		sns[v.ID] = &sn
	}
	return vols, sns, disk, nil
}

// charge books the instance on the host's usage, re-checking capacity
// against the offering (and the plans of the batch before it). The usage is
// written by the batch, guarded by the ModifyIndex it was read at (a create
// when the host has none yet), so two batches reaching for the last capacity
// of a host conflict in raft; the loser is re-checked here and rejected.
func (it *planItem) charge(host *proto.HostNode, inst *proto.Instance, disk int64) error {
	c, ok := it.pb.usage[host.ID]
	if !ok {
		c = &hostCharge{}
		m, err := it.pb.tx.Get(proto.KindHostUsage, host.ID, &c.u)
		c.exists, c.meta = err == nil, m
		if err != nil && !errs.Is(err, errs.NotFound) {
			return err
		}
		if !c.exists {
			c.u = proto.HostUsage{ID: host.ID}
		}
	}
	u := c.u
	if slices.Contains(u.Instances, inst.ID) {
		return nil // counted already (a host chosen before scheduling)
	}
	cpu, mem, d := u.CPUCores+inst.CPUCores, u.MemorySize+inst.MemorySize, u.DiskBytes+disk
	if int64(cpu) > host.OfferingCPUCores || mem > host.OfferingMemorySize || d > host.OfferingDiskSpaceMB<<20 {
		return stale("host node %s has no room for instance %s any more (needs %d cores, %d MB, %d bytes local disk; "+
			"used %d/%d cores, %d/%d MB, %d/%d bytes)", host.ID, inst.ID, inst.CPUCores, inst.MemorySize, disk,
			u.CPUCores, host.OfferingCPUCores, u.MemorySize, host.OfferingMemorySize, u.DiskBytes, host.OfferingDiskSpaceMB<<20)
	}
	u.CPUCores, u.MemorySize, u.DiskBytes = cpu, mem, d
	u.Instances = append(slices.Clip(u.Instances), inst.ID)
	if disk > 0 {
		u.LocalDisk = maps.Clone(u.LocalDisk)
		if u.LocalDisk == nil {
			u.LocalDisk = map[string]int64{}
		}
		u.LocalDisk[inst.ID] = disk
	}
	it.usage = &hostCharge{u: u, meta: c.meta, exists: c.exists}
	it.hostID = host.ID
	return nil
}

// nicTxn adds the vif ops of one plan, remembering what it claimed so that
// the plan cannot claim an address or MAC twice and no record is touched
// twice in the txn.
type nicTxn struct {
	it       *planItem
	tx       *state.Tx
	b        *state.Builder
	inst     *proto.Instance
	now      time.Time
	networks map[string]*proto.Network
	ips      map[string]bool
	macs     map[string]bool
	indexes  map[int]bool
	sgs      map[string]bool
}

func newNicTxn(it *planItem, inst *proto.Instance) *nicTxn {
	return &nicTxn{it: it, tx: it.pb.tx, b: &it.b, inst: inst, now: it.pb.now,
		networks: map[string]*proto.Network{}, ips: it.ips, macs: it.macs,
		indexes: map[int]bool{}, sgs: map[string]bool{}}
}

// network reads a network once per plan and guards it, so that a change of
// its DHCP ranges or servers makes the plan be re-checked.
func (t *nicTxn) network(id string) (*proto.Network, error) {
	if nw, ok := t.networks[id]; ok {
		return nw, nil
	}
	var nw proto.Network
	m, err := t.tx.Get(proto.KindNetwork, id, &nw)
	if errs.Is(err, errs.NotFound) {
		return nil, stale("network %s does not exist", id)
	}
	if err != nil {
		return nil, err
	}
	t.it.guard(proto.KindNetwork, id, m.ModifyIndex)
	t.networks[id] = &nw
	return &nw, nil
}

// lease checks that addr may be leased on network id and adds the lease.
func (t *nicTxn) lease(networkID, addr string, auto bool, vifID string) error {
	nw, err := t.network(networkID)
	if err != nil {
		return err
	}
	if err := checkAddress(nw, addr); err != nil {
		return err
	}
	key := networkID + "/" + addr
	if t.ips[key] {
		return badPlan("address %s of network %s given twice", addr, networkID)
	}
	t.ips[key] = true
	if t.tx.Exists(proto.KindIPLease, key) || t.it.pb.ips[key] {
		return stale("address %s of network %s is taken", addr, networkID)
	}
	vid := vifID
	t.b.Create(proto.KindIPLease, key, proto.IPLease{
		ID: key, Timestamps: proto.Timestamps{CreatedAt: t.now, UpdatedAt: t.now},
		NetworkID: networkID, IPv4: addr, Type: proto.LeaseVif, NetworkVifID: &vid, Auto: auto,
	})
	return nil
}

// checkAddress re-checks an address against its network: a dotted quad in
// the segment, not the network's own or a server's address, inside a DHCP
// range (what both the Incremental and SpecifyIP schedulers guarantee).
func checkAddress(nw *proto.Network, addr string) error {
	a, err := scheduler.ParseIPv4(addr)
	if err != nil {
		return badPlan("address %q on network %s", addr, nw.ID)
	}
	base, err := scheduler.ParseIPv4(nw.IPv4Network)
	if err != nil {
		return errs.New(errs.Internal, "network %s has a bad ipv4_network %q", nw.ID, nw.IPv4Network)
	}
	var mask scheduler.IPv4
	if nw.Prefix > 0 {
		mask = ^scheduler.IPv4(0) << (32 - min(nw.Prefix, 32))
	}
	if a&mask != base&mask {
		return badPlan("address %s is not in network %s (%s/%d)", addr, nw.ID, nw.IPv4Network, nw.Prefix)
	}
	if a == base&mask || a == base|^mask {
		return badPlan("address %s is the network or broadcast address of %s", addr, nw.ID)
	}
	for _, p := range []*string{nw.IPv4Gw, nw.DNSServer, nw.DHCPServer, nw.MetadataServer} {
		if p != nil && *p == addr {
			return stale("address %s is a service address of network %s", addr, nw.ID)
		}
	}
	for _, r := range nw.DhcpRanges {
		lo, err1 := scheduler.ParseIPv4(r.Begin)
		hi, err2 := scheduler.ParseIPv4(r.End)
		if err1 == nil && err2 == nil && a >= lo && a <= hi {
			return nil
		}
	}
	return stale("address %s is not in a DHCP range of network %s", addr, nw.ID)
}

// securityGroups checks that the groups exist (each read once per plan).
func (t *nicTxn) securityGroups(ids []string) ([]string, error) {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !t.sgs[id] {
			if !t.tx.Exists(proto.KindSecurityGroup, id) {
				return nil, errs.New(errs.UnknownSecurityGroup, "Unknown security group: %s", id)
			}
			t.sgs[id] = true
		}
		out = append(out, id)
	}
	return out, nil
}

func validMAC(s string) bool {
	return len(s) == 12 && strings.Trim(s, "0123456789abcdef") == ""
}

// createNics adds a vif per planned NIC with its MAC claim and leases.
func (t *nicTxn) createNics(nics []proto.PlannedNic) ([]string, error) {
	ids := make([]string, 0, len(nics))
	for _, n := range nics {
		if t.indexes[n.Index] {
			return nil, badPlan("vif index %d given twice", n.Index)
		}
		t.indexes[n.Index] = true
		mac := n.MacAddr
		if !validMAC(mac) {
			return nil, badPlan("MAC address %q (want 12 lower-case hex digits)", mac)
		}
		if t.macs[mac] {
			return nil, badPlan("MAC address %s given twice", mac)
		}
		t.macs[mac] = true
		if t.tx.Exists(proto.KindUniqueName, macClaimScope+mac) || t.it.pb.macs[mac] {
			return nil, stale("MAC address %s is taken", mac)
		}
		sgs, err := t.securityGroups(n.SecurityGroups)
		if err != nil {
			return nil, err
		}
		id := newID(proto.PrefixNetworkVif)
		instID := t.inst.ID
		vif := proto.NetworkVif{
			ID: id, Timestamps: proto.Timestamps{CreatedAt: t.now, UpdatedAt: t.now},
			AccountID: t.inst.AccountID, InstanceID: &instID, DeviceIndex: n.Index,
			MacAddr: mac, SecurityGroups: sgs,
		}
		if err := t.addresses(&vif, n); err != nil {
			return nil, err
		}
		t.b.Create(proto.KindNetworkVif, id, &vif)
		t.b.Create(proto.KindUniqueName, macClaimScope+mac, proto.UniqueName{ID: macClaimScope + mac, Owner: id})
		ids = append(ids, id)
	}
	return ids, nil
}

// addresses leases the NIC's address (and NAT address) for vif.
func (t *nicTxn) addresses(vif *proto.NetworkVif, n proto.PlannedNic) error {
	if n.NetworkID == "" {
		if n.IPv4Address != "" || n.NatNetworkID != "" {
			return badPlan("vif %d has an address but no network", n.Index)
		}
		return nil
	}
	if err := t.lease(n.NetworkID, n.IPv4Address, n.IPv4Auto, vif.ID); err != nil {
		return err
	}
	nwID, addr := n.NetworkID, n.IPv4Address
	vif.NetworkID, vif.IPv4Address = &nwID, &addr
	if n.NatNetworkID != "" {
		if err := t.lease(n.NatNetworkID, n.NatIPv4Address, n.NatIPv4Auto, vif.ID); err != nil {
			return err
		}
		natID, natAddr := n.NatNetworkID, n.NatIPv4Address
		vif.NatNetworkID, vif.NatIPv4Address = &natID, &natAddr
	}
	return nil
}

// restartNics gives the existing vifs of a restarted instance their new
// addresses (schedule_start_instance re-leases IPs; vifs and MACs stay).
func (t *nicTxn) restartNics(nics []proto.PlannedNic) ([]string, error) {
	type vifEntry struct {
		proto.NetworkVif
		meta state.Meta
	}
	existing := map[string]*vifEntry{}
	err := state.EachOfIn(t.tx, state.IdxVifsByInstance, t.inst.ID, false, func(v *proto.NetworkVif, m state.Meta) error {
		existing[v.ID] = &vifEntry{NetworkVif: *v, meta: m}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(nics) != len(existing) {
		return nil, stale("the plan has %d vifs, instance %s has %d", len(nics), t.inst.ID, len(existing))
	}
	ids := make([]string, 0, len(nics))
	done := map[string]bool{}
	for _, n := range nics {
		v, ok := existing[n.VifID]
		if !ok || done[n.VifID] {
			return nil, stale("vif %q is not a vif of instance %s", n.VifID, t.inst.ID)
		}
		done[n.VifID] = true
		if n.NetworkID != deref(v.NetworkID) || n.NatNetworkID != deref(v.NatNetworkID) || n.MacAddr != v.MacAddr {
			return nil, badPlan("vif %s keeps its network and MAC on a restart", v.ID)
		}
		// Leases the vif still holds (a stop that did not release them) are
		// given up first; the same address is simply kept.
		keep := func(nwID, addr *string, want string) bool {
			if nwID == nil || addr == nil {
				return false
			}
			key := *nwID + "/" + *addr
			e, ok := t.tx.Raw(proto.KindIPLease, key)
			if !ok {
				return false
			}
			var l proto.IPLease
			if err := json.Unmarshal(e.Value, &l); err != nil || l.NetworkVifID == nil || *l.NetworkVifID != v.ID {
				return false // someone else's now
			}
			if t.it.pb.ips[key] {
				return false // touched by another plan of the batch
			}
			if *addr == want {
				t.ips[key] = true
				return true
			}
			t.ips[key] = true
			t.b.Delete(proto.KindIPLease, key, e.ModifyIndex)
			return false
		}
		if n.NetworkID != "" && !keep(v.NetworkID, v.IPv4Address, n.IPv4Address) {
			if err := t.lease(n.NetworkID, n.IPv4Address, n.IPv4Auto, v.ID); err != nil {
				return nil, err
			}
		}
		if n.NatNetworkID != "" && !keep(v.NatNetworkID, v.NatIPv4Address, n.NatIPv4Address) {
			if err := t.lease(n.NatNetworkID, n.NatIPv4Address, n.NatIPv4Auto, v.ID); err != nil {
				return nil, err
			}
		}
		if n.NetworkID != "" {
			addr := n.IPv4Address
			v.IPv4Address = &addr
		}
		if n.NatNetworkID != "" {
			addr := n.NatIPv4Address
			v.NatIPv4Address = &addr
		}
		v.UpdatedAt = t.now
		t.b.Update(proto.KindNetworkVif, v.ID, v.meta.ModifyIndex, &v.NetworkVif)
		ids = append(ids, v.ID)
	}
	return ids, nil
}

// alreadyApplied recognises a plan submitted again after its first answer
// was lost: the instance is on the plan's host and holds the plan's vifs.
func alreadyApplied(tx *state.Tx, inst *proto.Instance, req *proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, bool) {
	if inst.HostNodeID == nil || *inst.HostNodeID != req.HostNodeID || inst.State == proto.InstanceTerminated {
		return nil, false
	}
	resp := &proto.SubmitPlanResponse{InstanceID: inst.ID, HostNodeID: req.HostNodeID, AlreadyApplied: true, VifIDs: []string{}}
	for _, n := range req.Nics {
		vifID := n.VifID
		if !req.Start {
			var c proto.UniqueName
			if _, err := tx.Get(proto.KindUniqueName, macClaimScope+n.MacAddr, &c); err != nil {
				return nil, false
			}
			vifID = c.Owner
		}
		var v proto.NetworkVif
		if _, err := tx.Get(proto.KindNetworkVif, vifID, &v); err != nil {
			return nil, false
		}
		if v.InstanceID == nil || *v.InstanceID != inst.ID || deref(v.IPv4Address) != n.IPv4Address {
			return nil, false
		}
		resp.VifIDs = append(resp.VifIDs, v.ID)
	}
	return resp, true
}

// enqueueBoot adds the job that boots the placed instance (spec §2.1 steps
// 7–8): a local boot runs local-store-handle.<host> run_local_store; a SAN
// boot creates each shared volume with sta-handle.<sta>
// create_volume_and_run_instance, or on a restart (volumes exist) runs
// hva-handle.<host> run_vol_store.
func enqueueBoot(tx *state.Tx, b *state.Builder, inst *proto.Instance, host *proto.HostNode,
	vols []volEntry, sns map[string]*proto.StorageNode, start bool, now time.Time) ([]string, error) {
	var out []string
	add := func(endpoint, verb string, args any) error {
		j, err := jobs.New(now, endpoint, verb, inst.ID, args)
		if err != nil {
			return err
		}
		jobs.Enqueue(b, j)
		out = append(out, j.ID)
		return nil
	}
	if bootIsLocal(tx, inst) {
		return out, add(proto.LocalStoreHandle(host.NodeID), proto.VerbRunLocalStore,
			proto.LocalStoreRunLocalStoreRequest{InstanceID: inst.ID})
	}
	if start {
		return out, add(proto.HvaHandle(host.NodeID), proto.VerbRunVolStore,
			proto.HvaRunVolStoreRequest{InstanceID: inst.ID, VolumeID: inst.BootVolumeID})
	}
	for _, v := range vols {
		if sn, ok := sns[v.ID]; ok {
			err := add(proto.StaHandle(sn.NodeID), proto.VerbCreateVolumeAndRunInstance,
				proto.StaCreateVolumeAndRunInstanceRequest{VolumeID: v.ID, InstanceID: inst.ID})
			if err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// imageBootLocal is the boot_dev_type of local boot images.
const imageBootLocal = 2

// bootIsLocal tells a local boot from a SAN boot: by the boot volume's store
// type, else (no boot volume record) by the image's boot_dev_type.
func bootIsLocal(tx *state.Tx, inst *proto.Instance) bool {
	if inst.BootVolumeID != "" {
		var v proto.Volume
		if _, err := tx.Get(proto.KindVolume, inst.BootVolumeID, &v); err == nil {
			return v.StoreType == proto.VolumeLocal
		}
	}
	var img proto.Image
	if _, err := tx.Get(proto.KindImage, inst.ImageID, &img); err == nil {
		return img.BootDevType == imageBootLocal
	}
	return true
}
