package scheduler

import (
	"fmt"
	"strconv"
)

// View is the part of the cluster state the algorithms read: a snapshot built
// by the daemon from the manager's records. Plan mutates it as it places
// requests so that one batch never double-books capacity, addresses or MACs;
// the algorithms themselves only read it.
type View struct {
	// Hosts in record order: FindFirst and every tie-break follow this order.
	Hosts        []Host
	StorageNodes []StorageNode
	// Networks in record order; FlatSingle takes the first.
	Networks []Network
	// Groups is the set of existing host node, storage node and network group
	// ids (tags), so that a rule naming a missing group fails as "unknown"
	// rather than as "no member fits".
	Groups map[string]bool
	// MacRanges in record order; the Default MAC scheduler uses the first.
	MacRanges []MacRange
	// MacLeases is every MAC in use in the cluster.
	MacLeases map[MAC]struct{}
}

// InstanceUsage is one alive instance on a host, as the PipedRules rules see it.
type InstanceUsage struct {
	InstanceID  string
	AccountID   string
	CPU         int64
	MemoryMB    int64
	QuotaWeight float64
}

// Host is a host node with its usage. Used* are the sums over the host's alive
// instances (and, for disk, their local volumes): the daemon computes them once
// so that the hot LeastUsage scan reads two fields instead of walking
// Instances.
type Host struct {
	ID                string
	NodeID            string
	Arch              string
	Hypervisor        string
	Online            bool // the node's agent is online
	SchedulingEnabled bool // operators (and evacuation) turn this off

	OfferingCPUCores int64
	OfferingMemoryMB int64
	OfferingDiskMB   int64

	UsedCPU       int64
	UsedMemoryMB  int64
	UsedDiskBytes int64

	// Groups are the host node groups (hng-…) the host belongs to, in order.
	Groups    []string
	Instances []InstanceUsage
}

// AvailableCPU is offering minus usage; negative when over-committed.
func (h *Host) AvailableCPU() int64 { return h.OfferingCPUCores - h.UsedCPU }

// AvailableMemoryMB is offering minus usage; negative when over-committed.
func (h *Host) AvailableMemoryMB() int64 { return h.OfferingMemoryMB - h.UsedMemoryMB }

// AvailableDiskBytes is offering_disk_space_mb·1 MiB minus local volumes.
func (h *Host) AvailableDiskBytes() int64 { return h.OfferingDiskMB<<20 - h.UsedDiskBytes }

// schedulable is the spec's "online host": agent online and scheduling enabled.
func (h *Host) schedulable() bool { return h.Online && h.SchedulingEnabled }

// fits reports whether the request's cores, memory and local disk fit. Disk is
// checked here (the original checks it only after choosing the host, then
// fails with "Insufficient local disk space") so that a host with CPU and
// memory but no disk is passed over instead of failing the instance.
func (h *Host) fits(n need) bool {
	return h.OfferingCPUCores-h.UsedCPU >= n.cpu && h.OfferingMemoryMB-h.UsedMemoryMB >= n.mem &&
		(n.disk == 0 || h.AvailableDiskBytes() >= n.disk)
}

// need is what a request takes from a host, computed once per decision so the
// scan over hosts does not walk the request's volumes again for every host.
type need struct{ cpu, mem, disk int64 }

func needOf(r *Request) need {
	n := need{cpu: r.CPU, mem: r.MemoryMB}
	for _, v := range r.Volumes {
		if v.Local {
			n.disk += v.SizeBytes
		}
	}
	return n
}

// InGroup reports whether the host is a member of group id.
func (h *Host) InGroup(id string) bool {
	for _, g := range h.Groups {
		if g == id {
			return true
		}
	}
	return false
}

// StorageNode is a storage node with its free space.
type StorageNode struct {
	ID     string
	NodeID string
	Online bool
	// FreeBytes is offering_disk_space_mb·1 MiB minus the alive volumes on it.
	FreeBytes int64
}

// IPRange is an inclusive range of addresses (a DHCP range).
type IPRange struct{ Begin, End IPv4 }

// LeaseKind tells how an address was taken; only LeaseAuto leases move the
// Incremental scheduler's starting point.
type LeaseKind int

// Lease kinds.
const (
	// LeaseAuto: chosen by the Incremental scheduler.
	LeaseAuto LeaseKind = iota
	// LeaseReserved: a network/broadcast/gateway/server address the Incremental
	// scheduler met and recorded so it is skipped from then on.
	LeaseReserved
	// LeaseStatic: asked for by address (SpecifyIP, network services, IP handles).
	LeaseStatic
)

// Lease is one taken address of a network. Seq orders leases by creation (the
// row id of the original): Incremental continues after the highest-Seq alive
// LeaseAuto lease.
type Lease struct {
	Seq  uint64
	Kind LeaseKind
}

// Network is a virtual network with its current leases.
type Network struct {
	ID          string
	IPv4Network IPv4
	Prefix      int
	// Optional service addresses; zero when unset. The Incremental scheduler
	// never hands these out.
	Gateway        IPv4
	DNSServer      IPv4
	DHCPServer     IPv4
	MetadataServer IPv4
	DhcpRanges     []IPRange
	// IPAssignment is "asc" (also when empty, the column default) or "desc".
	IPAssignment string
	// Leases maps every taken address to its lease.
	Leases map[IPv4]Lease
	// Groups are the network groups (nwg-…) the network belongs to.
	Groups []string
}

// Broadcast is the last address of the segment.
func (n *Network) Broadcast() IPv4 { return n.IPv4Network | ^mask(n.Prefix) }

// Contains reports whether a lies inside network/prefix.
func (n *Network) Contains(a IPv4) bool { return a&mask(n.Prefix) == n.IPv4Network&mask(n.Prefix) }

// reserved reports whether a is one of the addresses never given to a vif:
// network, broadcast, gateway, DNS, DHCP and metadata server.
func (n *Network) reserved(a IPv4) bool {
	if a == n.IPv4Network&mask(n.Prefix) || a == n.Broadcast() {
		return true
	}
	for _, s := range [...]IPv4{n.Gateway, n.DNSServer, n.DHCPServer, n.MetadataServer} {
		if s != 0 && s == a {
			return true
		}
	}
	return false
}

// inDhcpRange reports whether a lies inside one of the network's DHCP ranges.
func (n *Network) inDhcpRange(a IPv4) bool {
	for _, r := range n.DhcpRanges {
		if a >= r.Begin && a <= r.End {
			return true
		}
	}
	return false
}

// InGroup reports whether the network is a member of group id.
func (n *Network) InGroup(id string) bool {
	for _, g := range n.Groups {
		if g == id {
			return true
		}
	}
	return false
}

// MacRange is a range of MAC addresses: vendor id (OUI) plus an inclusive
// range of the low 24 bits.
type MacRange struct {
	ID     string
	Vendor uint32
	Begin  uint32
	End    uint32
}

func (r *MacRange) contains(m MAC) bool {
	return m.Vendor() == r.Vendor && m.Addr() >= r.Begin && m.Addr() <= r.End
}

// VolumeRequest is a volume an instance (or a standalone volume create) needs.
type VolumeRequest struct {
	ID        string
	SizeBytes int64
	// Local volumes live on the instance's host and consume its disk; the
	// others go to a storage node.
	Local bool
	// SnapshotStorageNodeID, when the volume is made from a snapshot kept on a
	// storage node ("local" destination), pins the volume there.
	SnapshotStorageNodeID string
}

// Request is one instance to place.
type Request struct {
	InstanceID  string
	AccountID   string
	Arch        string // the image's arch
	Hypervisor  string
	CPU         int64
	MemoryMB    int64
	QuotaWeight float64
	Volumes     []VolumeRequest
	// CurrentHostID is the host the instance is on now (evacuation, restart);
	// ExcludeSame avoids it.
	CurrentHostID string
	// RequestParams are the API's request_params: vifs, host_node_id,
	// host_node_group, network_scheduler, … Values are as decoded from JSON or
	// from a Rack form (strings and nested maps).
	RequestParams map[string]any
}

// param returns request_params[key] as a string: Rack forms give strings, JSON
// may give numbers; anything else (maps, lists) is treated as absent.
func (r *Request) param(key string) string {
	return scalarString(r.RequestParams[key])
}

// scalarString renders a decoded scalar as the string Ruby's to_s would.
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	case fmt.Stringer:
		return x.String()
	}
	return ""
}

// host returns the host with id, or nil.
func (v *View) host(id string) *Host {
	for i := range v.Hosts {
		if v.Hosts[i].ID == id {
			return &v.Hosts[i]
		}
	}
	return nil
}

// network returns the network with id, or nil.
func (v *View) network(id string) *Network {
	for i := range v.Networks {
		if v.Networks[i].ID == id {
			return &v.Networks[i]
		}
	}
	return nil
}

// storageNode returns the storage node with id, or nil.
func (v *View) storageNode(id string) *StorageNode {
	for i := range v.StorageNodes {
		if v.StorageNodes[i].ID == id {
			return &v.StorageNodes[i]
		}
	}
	return nil
}
