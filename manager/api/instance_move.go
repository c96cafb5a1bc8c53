package api

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// moveInstance: PUT /instances/:id/move (§2.1 item 14; the agents' side is
// spec/agents.md §2.4). A running instance becomes migrating and
// migration-handle.<destination>.run_vol_store is enqueued; the agents end
// it running on the destination, or on the source when the move fails.
//
// Checks, in the spec's order, then what a placement checks: state running
// (400/125 "Unsupported instance state for migration: <state>"),
// host_node_id present (upstream crashed: 400/143), the destination by
// pub(HostNode) (400/143, 404/100), not the instance's own host (upstream
// crashed: 400/143), online and enabled for scheduling (400/141), the
// instance's hypervisor and arch (400/179), and room for the instance
// (400/120). The room is reserved on the destination in the same txn, so
// that no placement fills it while the VM is copied; the instance then
// counts on both hosts until the move ends.
//
// Instances on local volumes may move: the destination's local store makes
// their volumes and the hypervisor copies the disks with the memory (block
// migration); their local disk bytes are reserved on the destination too.
func (a *API) moveInstance(ctx context.Context, req *Request) (any, error) {
	return a.instanceAction(ctx, req, func(tx *state.Tx, b *state.Builder, v *proto.Instance, m state.Meta, now time.Time) (any, error) {
		if v.State != proto.InstanceRunning {
			return nil, errs.New(errs.InvalidInstanceState, "Unsupported instance state for migration: %s", v.State)
		}
		hid, _ := req.Params.StrOK("host_node_id")
		if hid == "" {
			return nil, errs.New(errs.InvalidParameter, "host_node_id")
		}
		dest, dm, err := getPub[proto.HostNode](tx, proto.KindHostNode, proto.PrefixHostNode, hid)
		if err != nil {
			return nil, err
		}
		src, err := hostOf(tx, v)
		if err != nil {
			return nil, err
		}
		if src == nil {
			return nil, errs.New(errs.InvalidInstanceState, "%s has no host node", v.ID)
		}
		if src.ID == dest.ID {
			return nil, errs.New(errs.InvalidParameter, "%s already runs on %s", v.ID, dest.ID)
		}
		st, err := nodeStatus(tx, dest.NodeID)
		if err != nil {
			return nil, err
		}
		if st != nodeOnline || !dest.SchedulingEnabled {
			return nil, errs.New(errs.InvalidHostNodeID, "%s is not online", dest.ID)
		}
		if dest.Hypervisor != v.Hypervisor || dest.Arch != v.Arch {
			return nil, errs.New(errs.IncompatibleHostNode, "%s runs %s/%s, the instance needs %s/%s",
				dest.ID, dest.Hypervisor, dest.Arch, v.Hypervisor, v.Arch)
		}
		disk, err := scheduling.LocalDiskOf(tx, v)
		if err != nil {
			return nil, err
		}
		if err := scheduling.Reserve(tx, b, dest, v, disk); err != nil {
			return nil, err
		}
		// A destination disabled or re-bound concurrently makes this re-check.
		b.Check(proto.KindHostNode, dest.ID, dm.ModifyIndex)
		v.State, v.MigratingTo, v.UpdatedAt = proto.InstanceMigrating, &dest.ID, now
		b.Update(proto.KindInstance, v.ID, m.ModifyIndex, v)
		if err := enqueueJob(b, now, proto.MigrationHandle(dest.NodeID), proto.VerbRunVolStore, v.ID,
			proto.MigrationRunVolStoreRequest{InstanceID: v.ID}); err != nil {
			return nil, err
		}
		return instanceIDDoc(v), nil
	})
}
