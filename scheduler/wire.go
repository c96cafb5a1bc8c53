package scheduler

import (
	"fmt"

	"github.com/vdc-project/vdc/proto"
)

// Conversions between the wire form of views and plans (proto.SchedView,
// proto.SubmitPlanRequest), which the manager sends and receives, and the
// in-memory View and Placement the algorithms work on. The manager and the
// daemon both use them, so the two ends read the same records the same way.

// ViewFromProto builds the View and the Request of a wire view. MacRanges
// stay empty: they come from the daemon's configuration.
func ViewFromProto(w *proto.SchedView) (*View, Request, error) {
	v := &View{
		Hosts:        make([]Host, 0, len(w.Hosts)),
		StorageNodes: make([]StorageNode, 0, len(w.StorageNodes)),
		Networks:     make([]Network, 0, len(w.Networks)),
		Groups:       make(map[string]bool, len(w.Groups)),
		MacLeases:    make(map[MAC]struct{}, len(w.MacLeases)),
	}
	for _, h := range w.Hosts {
		host := Host{
			ID: h.ID, NodeID: h.NodeID, Arch: h.Arch, Hypervisor: h.Hypervisor,
			Online: h.Online, SchedulingEnabled: h.SchedulingEnabled,
			OfferingCPUCores: h.OfferingCPUCores, OfferingMemoryMB: h.OfferingMemoryMB, OfferingDiskMB: h.OfferingDiskMB,
			UsedCPU: h.UsedCPU, UsedMemoryMB: h.UsedMemoryMB, UsedDiskBytes: h.UsedDiskBytes,
			Groups: h.Groups,
		}
		for _, in := range h.Instances {
			host.Instances = append(host.Instances, InstanceUsage{
				InstanceID: in.InstanceID, AccountID: in.AccountID,
				CPU: in.CPU, MemoryMB: in.MemoryMB, QuotaWeight: in.QuotaWeight,
			})
		}
		v.Hosts = append(v.Hosts, host)
	}
	for _, s := range w.StorageNodes {
		v.StorageNodes = append(v.StorageNodes, StorageNode{ID: s.ID, NodeID: s.NodeID, Online: s.Online, FreeBytes: s.FreeBytes})
	}
	for i := range w.Networks {
		nw, err := networkFromProto(&w.Networks[i])
		if err != nil {
			return nil, Request{}, err
		}
		v.Networks = append(v.Networks, nw)
	}
	for _, g := range w.Groups {
		v.Groups[g] = true
	}
	for _, s := range w.MacLeases {
		m, err := ParseMAC(s)
		if err != nil {
			return nil, Request{}, fmt.Errorf("view: MAC lease: %w", err)
		}
		v.MacLeases[m] = struct{}{}
	}
	return v, RequestFromProto(&w.Request), nil
}

func networkFromProto(n *proto.SchedNetwork) (Network, error) {
	opt := func(what, s string) (IPv4, error) {
		if s == "" {
			return 0, nil
		}
		a, err := ParseIPv4(s)
		if err != nil {
			return 0, fmt.Errorf("view: network %s %s: %w", n.ID, what, err)
		}
		return a, nil
	}
	nw := Network{ID: n.ID, Prefix: n.Prefix, IPAssignment: n.IPAssignment, Groups: n.Groups,
		Leases: make(map[IPv4]Lease, len(n.Leases))}
	var err error
	if nw.IPv4Network, err = ParseIPv4(n.IPv4Network); err != nil {
		return nw, fmt.Errorf("view: network %s: %w", n.ID, err)
	}
	if nw.Gateway, err = opt("gateway", n.Gateway); err != nil {
		return nw, err
	}
	if nw.DNSServer, err = opt("dns server", n.DNSServer); err != nil {
		return nw, err
	}
	if nw.DHCPServer, err = opt("dhcp server", n.DHCPServer); err != nil {
		return nw, err
	}
	if nw.MetadataServer, err = opt("metadata server", n.MetadataServer); err != nil {
		return nw, err
	}
	for _, r := range n.DhcpRanges {
		b, err1 := ParseIPv4(r.Begin)
		e, err2 := ParseIPv4(r.End)
		if err1 != nil || err2 != nil || b > e {
			// A range the API would never store; skipping it only makes
			// fewer addresses available, never a wrong one.
			continue
		}
		nw.DhcpRanges = append(nw.DhcpRanges, IPRange{Begin: b, End: e})
	}
	for _, l := range n.Leases {
		a, err := ParseIPv4(l.IPv4)
		if err != nil {
			return nw, fmt.Errorf("view: network %s lease: %w", n.ID, err)
		}
		kind := LeaseStatic
		switch l.Kind {
		case proto.SchedLeaseAuto:
			kind = LeaseAuto
		case proto.SchedLeaseReserved:
			kind = LeaseReserved
		}
		nw.Leases[a] = Lease{Seq: l.Seq, Kind: kind}
	}
	return nw, nil
}

// RequestFromProto is the Request of a wire request.
func RequestFromProto(r *proto.SchedRequest) Request {
	req := Request{
		InstanceID: r.InstanceID, AccountID: r.AccountID, Arch: r.Arch, Hypervisor: r.Hypervisor,
		CPU: r.CPU, MemoryMB: r.MemoryMB, QuotaWeight: r.QuotaWeight,
		CurrentHostID: r.HostNodeID, RequestParams: r.RequestParams,
	}
	for _, vol := range r.Volumes {
		req.Volumes = append(req.Volumes, VolumeRequest{ID: vol.ID, SizeBytes: vol.SizeBytes, Local: vol.Local})
	}
	return req
}

// PlacementToProto is the submit_plan request of a successful placement.
func PlacementToProto(pl *Placement) proto.SubmitPlanRequest {
	out := proto.SubmitPlanRequest{
		InstanceID: pl.InstanceID,
		HostNodeID: pl.HostID,
		Nics:       make([]proto.PlannedNic, 0, len(pl.NICs)),
		Volumes:    make([]proto.PlannedVolume, 0, len(pl.Volumes)),
	}
	for _, n := range pl.NICs {
		out.Nics = append(out.Nics, NICToProto(&n))
	}
	for _, vol := range pl.Volumes {
		out.Volumes = append(out.Volumes, proto.PlannedVolume{VolumeID: vol.VolumeID, Local: vol.Local, StorageNodeID: vol.StorageNodeID})
	}
	return out
}

// NICToProto is the wire form of a planned NIC.
func NICToProto(n *NIC) proto.PlannedNic {
	p := proto.PlannedNic{
		Name: n.Name, Index: n.Index, MacAddr: n.MacAddr.String(),
		SecurityGroups: append([]string{}, n.SecurityGroups...),
	}
	if n.NetworkID != "" {
		p.NetworkID, p.IPv4Address, p.IPv4Auto = n.NetworkID, n.IPv4Addr.String(), n.IPv4Kind == LeaseAuto
	}
	if n.NatNetworkID != "" {
		p.NatNetworkID, p.NatIPv4Address, p.NatIPv4Auto = n.NatNetworkID, n.NatIPv4Addr.String(), n.NatIPv4Kind == LeaseAuto
	}
	return p
}
