package scheduling

import (
	"maps"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Storage node usage (spec §4.2): every shared volume placed on a storage
// node is charged to the node's StorageUsage record when it is placed (by a
// plan or by the API's storage_node_id) and given back when it reaches
// deleted. The record is rewritten guarded by its ModifyIndex, so two
// placements reaching for a node's last space conflict in raft and the loser
// is re-checked on the new state, where it no longer fits.

// StorageCharges collects the charges of one transaction, so that several
// volumes placed on the same node in one txn update its record once.
type StorageCharges struct {
	tx    *state.Tx
	b     *state.Builder
	nodes map[string]*storageEntry
}

type storageEntry struct {
	u      proto.StorageUsage
	meta   state.Meta
	exists bool
	dirty  bool
}

// NewStorageCharges starts the charges of a txn being built in b.
func NewStorageCharges(tx *state.Tx, b *state.Builder) *StorageCharges {
	return &StorageCharges{tx: tx, b: b, nodes: map[string]*storageEntry{}}
}

func (c *StorageCharges) entry(snID string) (*storageEntry, error) {
	if e, ok := c.nodes[snID]; ok {
		return e, nil
	}
	e := &storageEntry{u: proto.StorageUsage{ID: snID}}
	m, err := c.tx.Get(proto.KindStorageUsage, snID, &e.u)
	switch {
	case err == nil:
		e.meta, e.exists = m, true
	case !errs.Is(err, errs.NotFound):
		return nil, err
	}
	e.u.Volumes = maps.Clone(e.u.Volumes)
	if e.u.Volumes == nil {
		e.u.Volumes = map[string]int64{}
	}
	c.nodes[snID] = e
	return e, nil
}

// Charge books size bytes of volume volID on sn. It reports false, charging
// nothing, when they do not fit in the node's offering. A volume charged
// already is not charged again.
func (c *StorageCharges) Charge(sn *proto.StorageNode, volID string, size int64) (bool, error) {
	e, err := c.entry(sn.ID)
	if err != nil {
		return false, err
	}
	if _, ok := e.u.Volumes[volID]; ok {
		return true, nil
	}
	if e.u.UsedBytes+size > sn.OfferingDiskSpaceMB<<20 {
		return false, nil
	}
	e.u.UsedBytes += size
	e.u.Volumes[volID] = size
	e.dirty = true
	return true, nil
}

// Release gives back what volume volID took on node snID (nothing if it
// was not charged there).
func (c *StorageCharges) Release(snID, volID string) error {
	e, err := c.entry(snID)
	if err != nil {
		return err
	}
	size, ok := e.u.Volumes[volID]
	if !ok {
		return nil
	}
	delete(e.u.Volumes, volID)
	e.u.UsedBytes = max(e.u.UsedBytes-size, 0)
	e.dirty = true
	return nil
}

// Flush adds the changed records to the txn: an update guarded by the
// ModifyIndex read, a create for a node seen without one (which fails if a
// concurrent txn created it first), a delete when a node holds nothing.
func (c *StorageCharges) Flush() {
	for id, e := range c.nodes {
		if !e.dirty {
			continue
		}
		switch {
		case len(e.u.Volumes) == 0 && e.exists:
			c.b.Delete(proto.KindStorageUsage, id, e.meta.ModifyIndex)
		case len(e.u.Volumes) == 0:
		case e.exists:
			c.b.Update(proto.KindStorageUsage, id, e.meta.ModifyIndex, &e.u)
		default:
			c.b.Create(proto.KindStorageUsage, id, &e.u)
		}
		e.dirty = false
	}
}

// ReleaseVolume adds to b the return of a volume's space on its storage
// node; idempotent. The caller must not touch the node's StorageUsage
// otherwise in the same txn.
func ReleaseVolume(tx *state.Tx, b *state.Builder, v *proto.Volume) error {
	if v.StorageNodeID == nil {
		return nil
	}
	c := NewStorageCharges(tx, b)
	if err := c.Release(*v.StorageNodeID, v.ID); err != nil {
		return err
	}
	c.Flush()
	return nil
}

// StorageUsed is what the volumes placed on node snID take, in bytes.
func StorageUsed(tx *state.Tx, snID string) (int64, error) {
	var u proto.StorageUsage
	_, err := tx.Get(proto.KindStorageUsage, snID, &u)
	if errs.Is(err, errs.NotFound) {
		return 0, nil
	}
	return u.UsedBytes, err
}

// storageFree is a node's offering minus its usage (negative when an
// operator shrank the offering below what is placed).
func storageFree(tx *state.Tx, sn *proto.StorageNode) (int64, error) {
	used, err := StorageUsed(tx, sn.ID)
	return sn.OfferingDiskSpaceMB<<20 - used, err
}

// chargeVolumes books the shared volumes of an instance plan on their
// storage nodes; a node without room any more makes the plan stale.
func chargeVolumes(tx *state.Tx, b *state.Builder, vols []volEntry, sns map[string]*proto.StorageNode) error {
	c := NewStorageCharges(tx, b)
	for _, v := range vols {
		sn, ok := sns[v.ID]
		if !ok {
			continue
		}
		fits, err := c.Charge(sn, v.ID, v.Size)
		if err != nil {
			return err
		}
		if !fits {
			return stale("storage node %s has no room for volume %s (%d bytes) any more", sn.ID, v.ID, v.Size)
		}
	}
	c.Flush()
	return nil
}
