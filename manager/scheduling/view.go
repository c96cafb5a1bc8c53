// Package scheduling is the manager's side of placement (spec/agents.md
// §2.1, §4): it builds the views the scheduler daemons place instances in,
// re-checks and applies their plans in one raft transaction, terminates
// instances that cannot be placed, and gives back host capacity when an
// instance leaves its host (Release).
//
// The daemons do the placement work so that scheduling scales out with
// them; the leader only re-checks what a plan claims (host capacity, IP
// addresses, MACs) against its current state. Every claim is a guarded op
// (HostUsage by ModifyIndex, leases and MAC claims by create), so two plans
// that reach for the same capacity or address conflict in raft and the loser
// is re-checked on the new state, where it is rejected as stale.
package scheduling

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler"
)

// nodeOnline is the NodeState value of a live agent.
const nodeOnline = "online"

// macClaimScope prefixes MAC claims in unique_names (as manager/api does).
const macClaimScope = "mac/"

// BuildView reads the view an instance is placed in and converts it for the
// algorithms. MacRanges stay empty (the daemon's configuration has them).
func BuildView(tx *state.Tx, instanceID string, start bool) (*scheduler.View, scheduler.Request, error) {
	w, err := Snapshot(tx, instanceID, start)
	if err != nil {
		return nil, scheduler.Request{}, err
	}
	return scheduler.ViewFromProto(w)
}

// Snapshot reads the wire view of an instance's placement: every host with
// its liveness and usage, storage nodes with free space, networks with their
// leases, groups, MACs in use and the instance's request. It reads one
// consistent state (tx) but takes no guards: the leader re-checks the plan.
func Snapshot(tx *state.Tx, instanceID string, start bool) (*proto.SchedView, error) {
	r, err := readRequest(tx, instanceID, start)
	if err != nil {
		return nil, err
	}
	w, err := snapshotCluster(tx)
	if err != nil {
		return nil, err
	}
	w.Request = r
	return w, nil
}

// snapshotBatch is the view of a batch of instances: the cluster part
// (unless requestsOnly) and the request of each instance that exists.
func snapshotBatch(tx *state.Tx, ids []string, start, requestsOnly bool) (*proto.SchedView, error) {
	w := &proto.SchedView{Index: tx.LastIndex()}
	if !requestsOnly {
		var err error
		if w, err = snapshotCluster(tx); err != nil {
			return nil, err
		}
	}
	w.Requests = make([]proto.SchedRequest, 0, len(ids))
	for _, id := range ids {
		r, err := readRequest(tx, id, start)
		if errs.Is(err, errs.UnknownInstance) {
			continue
		}
		if err != nil {
			return nil, err
		}
		w.Requests = append(w.Requests, r)
	}
	return w, nil
}

// readRequest reads an instance's placement request.
func readRequest(tx *state.Tx, instanceID string, start bool) (proto.SchedRequest, error) {
	var inst proto.Instance
	if _, err := tx.Get(proto.KindInstance, instanceID, &inst); err != nil {
		if errs.Is(err, errs.NotFound) {
			return proto.SchedRequest{}, errs.New(errs.UnknownInstance, "Unknown instance: %s", instanceID)
		}
		return proto.SchedRequest{}, err
	}
	vols, err := instanceVolumes(tx, inst.ID, start)
	if err != nil {
		return proto.SchedRequest{}, err
	}
	r := requestOf(&inst, vols, start)
	if start {
		err = state.EachOfIn(tx, state.IdxVifsByInstance, inst.ID, false, func(v *proto.NetworkVif, _ state.Meta) error {
			sv := proto.SchedVif{ID: v.ID, DeviceIndex: v.DeviceIndex, MacAddr: v.MacAddr}
			if v.NetworkID != nil {
				sv.NetworkID = *v.NetworkID
			}
			if v.NatNetworkID != nil {
				sv.NatNetworkID = *v.NatNetworkID
			}
			r.Vifs = append(r.Vifs, sv)
			return nil
		})
	}
	return r, err
}

// snapshotCluster reads the cluster part of a view: hosts, storage nodes,
// networks with their leases, groups and the MACs in use.
func snapshotCluster(tx *state.Tx) (*proto.SchedView, error) {
	w := &proto.SchedView{Index: tx.LastIndex(), Groups: []string{}, MacLeases: []string{}}

	hostGroups, netGroups := map[string][]string{}, map[string][]string{}
	err := each(tx, proto.KindTag, func(t *proto.Tag, _ state.Meta) error {
		w.Groups = append(w.Groups, t.ID)
		switch t.TypeID {
		case proto.TagTypeHostNodeGroup:
			for _, m := range t.MappedUUIDs {
				hostGroups[m] = append(hostGroups[m], t.ID)
			}
		case proto.TagTypeNetworkGroup:
			for _, m := range t.MappedUUIDs {
				netGroups[m] = append(netGroups[m], t.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	if err := snapshotHosts(tx, w, hostGroups); err != nil {
		return nil, err
	}
	// Free space comes from the StorageUsage records plans charge (storage.go).
	err = each(tx, proto.KindStorageNode, func(sn *proto.StorageNode, _ state.Meta) error {
		free, err := storageFree(tx, sn)
		if err != nil {
			return err
		}
		w.StorageNodes = append(w.StorageNodes, proto.SchedStorageNode{
			ID: sn.ID, NodeID: sn.NodeID, Online: nodeIsOnline(tx, sn.NodeID), FreeBytes: free,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}

	if err := snapshotNetworks(tx, w, netGroups); err != nil {
		return nil, err
	}
	err = tx.EachIDWithPrefix(proto.KindUniqueName, macClaimScope, func(id string) error {
		w.MacLeases = append(w.MacLeases, strings.TrimPrefix(id, macClaimScope))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func snapshotHosts(tx *state.Tx, w *proto.SchedView, groups map[string][]string) error {
	return each(tx, proto.KindHostNode, func(h *proto.HostNode, _ state.Meta) error {
		sh := proto.SchedHost{
			ID: h.ID, NodeID: h.NodeID, Arch: h.Arch, Hypervisor: h.Hypervisor,
			Online: nodeIsOnline(tx, h.NodeID), SchedulingEnabled: h.SchedulingEnabled,
			OfferingCPUCores: h.OfferingCPUCores, OfferingMemoryMB: h.OfferingMemorySize,
			OfferingDiskMB: h.OfferingDiskSpaceMB, Groups: groups[h.ID],
		}
		var u proto.HostUsage
		_, err := tx.Get(proto.KindHostUsage, h.ID, &u)
		switch {
		case err == nil:
			sh.UsedCPU, sh.UsedMemoryMB, sh.UsedDiskBytes = int64(u.CPUCores), u.MemorySize, u.DiskBytes
			for _, id := range u.Instances {
				var in proto.Instance
				if _, err := tx.Get(proto.KindInstance, id, &in); err != nil {
					continue // counted but gone: only the usage sums matter then
				}
				sh.Instances = append(sh.Instances, proto.SchedInstanceUsage{
					InstanceID: in.ID, AccountID: in.AccountID, CPU: int64(in.CPUCores),
					MemoryMB: in.MemorySize, QuotaWeight: in.QuotaWeight,
				})
			}
		case !errs.Is(err, errs.NotFound):
			return err
		}
		w.Hosts = append(w.Hosts, sh)
		return nil
	})
}

func snapshotNetworks(tx *state.Tx, w *proto.SchedView, groups map[string][]string) error {
	return each(tx, proto.KindNetwork, func(n *proto.Network, _ state.Meta) error {
		var leases []proto.SchedLease
		err := tx.EachIn(state.IdxLeasesByNetwork, n.ID, false, func(_ string, e state.Entry) error {
			var l proto.IPLease
			if err := json.Unmarshal(e.Value, &l); err != nil {
				return err
			}
			kind := proto.SchedLeaseStatic
			switch {
			case l.Auto:
				kind = proto.SchedLeaseAuto
			case l.Type == proto.LeaseReserved:
				kind = proto.SchedLeaseReserved
			}
			leases = append(leases, proto.SchedLease{IPv4: l.IPv4, Seq: e.Seq, Kind: kind})
			return nil
		})
		if err != nil {
			return err
		}
		w.Networks = append(w.Networks, proto.SchedNetwork{
			ID: n.ID, IPv4Network: n.IPv4Network, Prefix: n.Prefix,
			Gateway: deref(n.IPv4Gw), DNSServer: deref(n.DNSServer), DHCPServer: deref(n.DHCPServer),
			MetadataServer: deref(n.MetadataServer), IPAssignment: n.IPAssignment,
			DhcpRanges: n.DhcpRanges, Leases: leases, Groups: groups[n.ID],
		})
		return nil
	})
}

// requestOf is the placement request of an instance with the volumes to
// place. A host the API already chose (host_node_id stored on an instance
// being created) becomes request_params host_node_id, which makes the daemon
// use SpecifyNode; a restarted instance's old host is only its current host.
func requestOf(inst *proto.Instance, vols []volEntry, start bool) proto.SchedRequest {
	r := proto.SchedRequest{
		InstanceID: inst.ID, AccountID: inst.AccountID, ServiceType: inst.ServiceType,
		State: inst.State, HostNodeID: deref(inst.HostNodeID),
		Arch: inst.Arch, Hypervisor: inst.Hypervisor,
		CPU: int64(inst.CPUCores), MemoryMB: inst.MemorySize, QuotaWeight: inst.QuotaWeight,
		RequestParams: inst.RequestParams,
		Volumes:       []proto.SchedVolume{},
	}
	if inst.HostNodeID != nil && inst.State == proto.InstanceScheduling && !start {
		if _, set := inst.RequestParams["host_node_id"]; !set {
			p := make(map[string]any, len(inst.RequestParams)+1)
			for k, v := range inst.RequestParams {
				p[k] = v
			}
			p["host_node_id"] = *inst.HostNodeID
			r.RequestParams = p
		}
	}
	for _, v := range vols {
		r.Volumes = append(r.Volumes, proto.SchedVolume{ID: v.ID, SizeBytes: v.Size, Local: v.StoreType == proto.VolumeLocal})
	}
	return r
}

// placeable reports whether a volume of the instance is part of its
// placement: volumes still scheduling, and on a restart also the local
// volumes, which are deployed again on the new host.
func placeable(v *proto.Volume, start bool) bool {
	if v.State == proto.VolumeScheduling {
		return true
	}
	return start && v.StoreType == proto.VolumeLocal && volumeAlive(v.State)
}

// volumeAlive is false for volumes that hold no space any more.
func volumeAlive(s string) bool {
	return s != proto.VolumeDeleted && s != proto.VolumeFailed && s != proto.VolumeDeleting
}

// nodeIsOnline reports whether the agent nodeID's liveness record says online.
func nodeIsOnline(tx *state.Tx, nodeID string) bool {
	var ns proto.NodeState
	if nodeID == "" {
		return false
	}
	if _, err := tx.Get(proto.KindNodeState, nodeID, &ns); err != nil {
		return false
	}
	return ns.State == nodeOnline
}

// each decodes every record of kind in creation order.
func each[T any](tx *state.Tx, kind string, fn func(*T, state.Meta) error) error {
	return tx.Each(kind, false, func(e state.Entry) error {
		var v T
		if err := json.Unmarshal(e.Value, &v); err != nil {
			return fmt.Errorf("decode %s: %w", kind, err)
		}
		return fn(&v, e.Meta)
	})
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
