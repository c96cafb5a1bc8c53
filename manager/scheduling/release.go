package scheduling

import (
	"slices"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Release adds to b the return of the instance's share of its host's usage
// (cores and memory from the instance, local disk as charged). It is
// idempotent: an instance not counted in any HostUsage releases nothing. The
// host is looked up by inst.HostNodeID and, when that is not where the
// instance is counted (the host already cleared by a stop), by a scan of the
// usages. The usage is updated guarded by its ModifyIndex, so a concurrent
// placement on the same host makes the caller's plan run again; b must not
// touch the HostUsage otherwise. A migrating instance's reservation on its
// destination is released too.
func Release(tx *state.Tx, b *state.Builder, inst *proto.Instance) error {
	if err := ReleaseReservation(tx, b, inst); err != nil {
		return err
	}
	var (
		u     proto.HostUsage
		m     state.Meta
		found bool
	)
	if inst.HostNodeID != nil {
		meta, err := tx.Get(proto.KindHostUsage, *inst.HostNodeID, &u)
		if err != nil && !errs.Is(err, errs.NotFound) {
			return err
		}
		found, m = err == nil && slices.Contains(u.Instances, inst.ID), meta
	}
	if !found {
		err := each(tx, proto.KindHostUsage, func(hu *proto.HostUsage, meta state.Meta) error {
			if inst.MigratingTo != nil && hu.ID == *inst.MigratingTo {
				return nil // released above
			}
			if slices.Contains(hu.Instances, inst.ID) {
				u, m, found = *hu, meta, true
				return state.ErrStop
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if !found {
		return nil
	}
	u.Instances = slices.DeleteFunc(u.Instances, func(id string) bool { return id == inst.ID })
	u.CPUCores = max(u.CPUCores-inst.CPUCores, 0)
	u.MemorySize = max(u.MemorySize-inst.MemorySize, 0)
	u.DiskBytes = max(u.DiskBytes-u.LocalDisk[inst.ID], 0)
	delete(u.LocalDisk, inst.ID)
	if len(u.Instances) == 0 {
		// "One HostUsage per host that has instances": an idle host has none,
		// and rounding drift cannot survive an empty host.
		b.Delete(proto.KindHostUsage, u.ID, m.ModifyIndex)
		return nil
	}
	b.Update(proto.KindHostUsage, u.ID, m.ModifyIndex, &u)
	return nil
}

// failInstance terminates an instance that cannot be placed: whatever it
// holds is released in the same txn (host usage, vifs with their leases and
// MAC claims, uniqueness claims it owns such as its hostname, volumes), and
// it is left terminated with the reason as last_error. An instance already
// terminated is left alone.
func failInstance(tx *state.Tx, b *state.Builder, instanceID, reason string, now time.Time) error {
	var inst proto.Instance
	im, err := tx.Get(proto.KindInstance, instanceID, &inst)
	if errs.Is(err, errs.NotFound) {
		return errs.New(errs.UnknownInstance, "Unknown instance: %s", instanceID)
	}
	if err != nil {
		return err
	}
	if inst.State == proto.InstanceTerminated {
		return nil
	}
	if inst.State != proto.InstanceScheduling {
		return errs.New(errs.InvalidInstanceState, "instance %s is %s, not %s", inst.ID, inst.State, proto.InstanceScheduling)
	}
	if err := Release(tx, b, &inst); err != nil {
		return err
	}
	vifs := map[string]bool{}
	err = state.EachOfIn(tx, state.IdxVifsByInstance, inst.ID, false, func(v *proto.NetworkVif, m state.Meta) error {
		vifs[v.ID] = true
		for _, l := range [][2]*string{{v.NetworkID, v.IPv4Address}, {v.NatNetworkID, v.NatIPv4Address}} {
			if l[0] == nil || l[1] == nil {
				continue
			}
			// A stopped instance's addresses may belong to someone else by now.
			var lease proto.IPLease
			lm, err := tx.Get(proto.KindIPLease, *l[0]+"/"+*l[1], &lease)
			if err == nil && lease.NetworkVifID != nil && *lease.NetworkVifID == v.ID {
				b.Delete(proto.KindIPLease, lease.ID, lm.ModifyIndex)
			}
		}
		b.Delete(proto.KindNetworkVif, v.ID, m.ModifyIndex)
		return nil
	})
	if err != nil {
		return err
	}
	// MAC claims are owned by the vifs; other claims owned by the instance
	// (its hostname) go with it.
	owners := []string{inst.ID}
	for id := range vifs {
		owners = append(owners, id)
	}
	slices.Sort(owners[1:]) // map order would make the txn's op order vary
	for _, owner := range owners {
		err = state.EachOfIn(tx, state.IdxUniqueNamesByOwner, owner, false, func(c *proto.UniqueName, m state.Meta) error {
			b.Delete(proto.KindUniqueName, c.ID, m.ModifyIndex)
			return nil
		})
		if err != nil {
			return err
		}
	}
	err = state.EachOfIn(tx, state.IdxVolumesByInstance, inst.ID, false, func(v *proto.Volume, m state.Meta) error {
		if !volumeAlive(v.State) {
			return nil
		}
		// Spec §2.1: a failure destroys the instance and its volumes. A
		// volume that never left scheduling has no data anywhere and is
		// simply deleted; a restarted instance's shared volume exists on its
		// storage node, which deletes it (sta-handle delete_volume). A local
		// volume lived on the host the instance was stopped on, which nothing
		// records any more.
		v.UpdatedAt = now
		if v.State != proto.VolumeScheduling && v.StoreType != proto.VolumeLocal && v.StorageNodeID != nil {
			var sn proto.StorageNode
			if _, err := tx.Get(proto.KindStorageNode, *v.StorageNodeID, &sn); err == nil {
				j, err := jobs.New(now, proto.StaHandle(sn.NodeID), proto.VerbDeleteVolume, v.ID,
					proto.StaDeleteVolumeRequest{VolumeID: v.ID})
				if err != nil {
					return err
				}
				jobs.Enqueue(b, j)
				v.State = proto.VolumeDeleting
				b.Update(proto.KindVolume, v.ID, m.ModifyIndex, v)
				return nil
			}
		}
		v.State = proto.VolumeDeleted
		v.DeletedAt = &now
		b.Update(proto.KindVolume, v.ID, m.ModifyIndex, v)
		return nil
	})
	if err != nil {
		return err
	}
	inst.State = proto.InstanceTerminated
	inst.Status = proto.StatusOffline
	inst.TerminatedAt = &now
	inst.UpdatedAt = now
	inst.LastError = reason
	inst.HostNodeID = nil
	b.Update(proto.KindInstance, inst.ID, im.ModifyIndex, &inst)
	return nil
}

// FailUnplaced is the dispatcher's hook for a scheduler job that ended
// without success (deadline passed, agent refused it): an instance still in
// scheduling would otherwise wait there forever, so it is terminated and
// released in the same txn, with the job's reason as last_error. Volume
// jobs likewise end their volume (failUnplacedVolume).
func FailUnplaced(tx *state.Tx, b *state.Builder, j proto.Job, reason string, now time.Time) error {
	if j.Verb == proto.VerbScheduleVolume || j.Verb == proto.VerbCreateVolume {
		return failUnplacedVolume(tx, b, j, reason, now)
	}
	if j.QueueName != proto.EndpointScheduler ||
		(j.Verb != proto.VerbScheduleInstance && j.Verb != proto.VerbScheduleStartInstance) {
		return nil
	}
	id, _ := j.Params["instance_id"].(string)
	var inst proto.Instance
	if _, err := tx.Get(proto.KindInstance, id, &inst); err != nil || inst.State != proto.InstanceScheduling {
		return nil
	}
	return failInstance(tx, b, id, "scheduling did not finish: "+reason, now)
}
