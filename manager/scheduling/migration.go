package scheduling

import (
	"slices"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Host usage during a live migration (PUT /instances/:id/move). While an
// instance migrates it is counted on both hosts: the destination holds its
// memory from the moment the incoming VM starts, the source until the move
// ends. Reserve counts it on the destination when the move is accepted (so
// the destination cannot be filled meanwhile), SwitchHost gives the
// source's share back when the VM runs on the destination, and
// ReleaseReservation gives the destination's back when the move fails.
// Every change is guarded by the usage's ModifyIndex, like a placement.

// LocalDiskOf is the local volume bytes inst is charged on its host.
func LocalDiskOf(tx *state.Tx, inst *proto.Instance) (int64, error) {
	if inst.HostNodeID == nil {
		return 0, nil
	}
	var u proto.HostUsage
	_, err := tx.Get(proto.KindHostUsage, *inst.HostNodeID, &u)
	if errs.Is(err, errs.NotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return u.LocalDisk[inst.ID], nil
}

// Reserve counts inst (cores, memory and disk bytes of local volumes) on
// host, guarded by the usage's ModifyIndex: errs.OutOfHostCapacity when the
// host's offering cannot hold it. An instance counted there already is left
// as it is.
func Reserve(tx *state.Tx, b *state.Builder, host *proto.HostNode, inst *proto.Instance, disk int64) error {
	var u proto.HostUsage
	m, err := tx.Get(proto.KindHostUsage, host.ID, &u)
	exists := err == nil
	if err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	if !exists {
		u = proto.HostUsage{ID: host.ID}
	}
	if slices.Contains(u.Instances, inst.ID) {
		return nil
	}
	cpu, mem, d := u.CPUCores+inst.CPUCores, u.MemorySize+inst.MemorySize, u.DiskBytes+disk
	if int64(cpu) > host.OfferingCPUCores || mem > host.OfferingMemorySize || d > host.OfferingDiskSpaceMB<<20 {
		return errs.New(errs.OutOfHostCapacity, "host node %s has no room for instance %s (needs %d cores, %d MB, "+
			"%d bytes of local disk; %d/%d cores, %d/%d MB, %d/%d bytes used)", host.ID, inst.ID, inst.CPUCores,
			inst.MemorySize, disk, u.CPUCores, host.OfferingCPUCores, u.MemorySize, host.OfferingMemorySize,
			u.DiskBytes, host.OfferingDiskSpaceMB<<20)
	}
	u.CPUCores, u.MemorySize, u.DiskBytes = cpu, mem, d
	u.Instances = append(u.Instances, inst.ID)
	if disk > 0 {
		if u.LocalDisk == nil {
			u.LocalDisk = map[string]int64{}
		}
		u.LocalDisk[inst.ID] = disk
	}
	if exists {
		b.Update(proto.KindHostUsage, host.ID, m.ModifyIndex, &u)
	} else {
		b.Create(proto.KindHostUsage, host.ID, &u)
	}
	return nil
}

// drop removes inst from hostID's usage, if it is counted there.
func drop(tx *state.Tx, b *state.Builder, hostID string, inst *proto.Instance) error {
	var u proto.HostUsage
	m, err := tx.Get(proto.KindHostUsage, hostID, &u)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !slices.Contains(u.Instances, inst.ID) {
		return nil
	}
	u.Instances = slices.DeleteFunc(u.Instances, func(id string) bool { return id == inst.ID })
	u.CPUCores = max(u.CPUCores-inst.CPUCores, 0)
	u.MemorySize = max(u.MemorySize-inst.MemorySize, 0)
	u.DiskBytes = max(u.DiskBytes-u.LocalDisk[inst.ID], 0)
	delete(u.LocalDisk, inst.ID)
	if len(u.Instances) == 0 {
		b.Delete(proto.KindHostUsage, u.ID, m.ModifyIndex)
		return nil
	}
	b.Update(proto.KindHostUsage, u.ID, m.ModifyIndex, &u)
	return nil
}

// SwitchHost moves inst's usage from its current host to dest: dest counts
// it (reserved when the move was accepted; reserved now, capacity checked,
// if that reservation is missing) and the source no longer does. The caller
// sets inst.HostNodeID and writes the instance in the same txn.
func SwitchHost(tx *state.Tx, b *state.Builder, inst *proto.Instance, dest *proto.HostNode) error {
	if inst.HostNodeID != nil && *inst.HostNodeID == dest.ID {
		return nil
	}
	disk, err := LocalDiskOf(tx, inst)
	if err != nil {
		return err
	}
	if err := Reserve(tx, b, dest, inst, disk); err != nil {
		return err
	}
	if inst.HostNodeID == nil {
		return nil
	}
	return drop(tx, b, *inst.HostNodeID, inst)
}

// ReleaseReservation gives back what a migration reserved on its
// destination (inst.MigratingTo); nothing when inst is not migrating.
func ReleaseReservation(tx *state.Tx, b *state.Builder, inst *proto.Instance) error {
	if inst.MigratingTo == nil || (inst.HostNodeID != nil && *inst.HostNodeID == *inst.MigratingTo) {
		return nil
	}
	return drop(tx, b, *inst.MigratingTo, inst)
}
