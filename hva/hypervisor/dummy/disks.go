package dummy

import (
	"cmp"
	"context"
	"slices"

	"github.com/vdc-project/vdc/hva/hypervisor"
)

// Hot-plug: the dummy keeps a domain's disks in its spec, each with the
// target it was given; the guest releases an unplugged disk at once.

var _ hypervisor.DiskAttacher = (*Driver)(nil)

// assignTargets gives every disk of dom its target (at Define).
func (dom *domain) assignTargets() {
	for i, t := range hypervisor.Targets(dom.spec.Disks) {
		dom.spec.Disks[i].Target = t
	}
}

// AttachDisk implements hypervisor.DiskAttacher.
func (d *Driver) AttachDisk(ctx context.Context, id string, disk hypervisor.Disk) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.begin(ctx, Call{Op: OpAttachDisk, ID: id}); err != nil {
		return "", err
	}
	if err := disk.Validate(); err != nil {
		return "", err
	}
	dom := d.domains[id]
	if dom == nil {
		return "", hypervisor.NotFound(id)
	}
	used := map[string]bool{}
	for _, x := range dom.spec.Disks {
		if x.VolumeID == disk.VolumeID {
			return x.Target, nil
		}
		used[x.Target] = true
	}
	disk.Target = hypervisor.FreeTarget(disk.Target, used)
	dom.spec.Disks = append(dom.spec.Disks, disk)
	return disk.Target, nil
}

// DetachDisk implements hypervisor.DiskAttacher.
func (d *Driver) DetachDisk(ctx context.Context, id, volumeID string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.begin(ctx, Call{Op: OpDetachDisk, ID: id}); err != nil {
		return err
	}
	dom := d.domains[id]
	if dom == nil {
		return nil
	}
	dom.spec.Disks = slices.DeleteFunc(dom.spec.Disks, func(x hypervisor.Disk) bool { return x.VolumeID == volumeID })
	return nil
}

// Disks implements hypervisor.DiskAttacher.
func (d *Driver) Disks(ctx context.Context, id string) ([]hypervisor.AttachedDisk, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.begin(ctx, Call{Op: OpDisks, ID: id}); err != nil {
		return nil, err
	}
	dom := d.domains[id]
	if dom == nil {
		return nil, hypervisor.NotFound(id)
	}
	out := make([]hypervisor.AttachedDisk, 0, len(dom.spec.Disks))
	for _, x := range dom.spec.Disks {
		out = append(out, hypervisor.AttachedDisk{VolumeID: x.VolumeID, Target: x.Target})
	}
	slices.SortFunc(out, func(a, b hypervisor.AttachedDisk) int {
		return cmp.Or(cmp.Compare(len(a.Target), len(b.Target)), cmp.Compare(a.Target, b.Target))
	})
	return out, nil
}
