package scheduler

// StorageScheduler chooses the storage node for a shared volume. The returned
// pointer points into v.StorageNodes.
type StorageScheduler interface {
	ScheduleStorage(v *View, vol *VolumeRequest) (*StorageNode, error)
}

func errNoStorage(vol *VolumeRequest) error {
	return newErr(KindStorageNode, "Unable to find a suitable storage node for volume %s (%d bytes)", vol.ID, vol.SizeBytes)
}

// snapshotNode applies the base rule: a volume made from a snapshot kept on a
// storage node goes to that node.
func snapshotNode(v *View, vol *VolumeRequest) (*StorageNode, bool, error) {
	if vol.SnapshotStorageNodeID == "" {
		return nil, false, nil
	}
	sn := v.storageNode(vol.SnapshotStorageNodeID)
	if sn == nil {
		return nil, true, newErr(KindStorageNode, "Unknown storage node %s of the volume's snapshot", vol.SnapshotStorageNodeID)
	}
	return sn, true, nil
}

// StorageFindFirst places on the first storage node in record order that is
// online and has room (or on the snapshot's node). The original took the
// first row whatever its state; like host FindFirst, that is fixed.
type StorageFindFirst struct{}

// ScheduleStorage implements StorageScheduler.
func (StorageFindFirst) ScheduleStorage(v *View, vol *VolumeRequest) (*StorageNode, error) {
	if sn, ok, err := snapshotNode(v, vol); ok {
		return sn, err
	}
	for i := range v.StorageNodes {
		if sn := &v.StorageNodes[i]; sn.Online && sn.FreeBytes >= vol.SizeBytes {
			return sn, nil
		}
	}
	return nil, errNoStorage(vol)
}

// StorageLeastUsage places on the online storage node with the most free
// space, which must be at least the volume's size; ties go to the earlier
// node. As in the original it overrides the snapshot rule.
type StorageLeastUsage struct{}

// ScheduleStorage implements StorageScheduler.
func (StorageLeastUsage) ScheduleStorage(v *View, vol *VolumeRequest) (*StorageNode, error) {
	var best *StorageNode
	for i := range v.StorageNodes {
		sn := &v.StorageNodes[i]
		if sn.Online && sn.FreeBytes >= vol.SizeBytes && (best == nil || sn.FreeBytes > best.FreeBytes) {
			best = sn
		}
	}
	if best == nil {
		return nil, errNoStorage(vol)
	}
	return best, nil
}
