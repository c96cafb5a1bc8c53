package hypervisor

import (
	"context"
	"regexp"

	"github.com/vdc-project/vdc/common/errs"
)

// AttachedDisk is a disk of a domain as the guest sees it.
type AttachedDisk struct {
	// VolumeID is the disk's serial (the volume uuid).
	VolumeID string `json:"volume_id"`
	// Target is the device name the disk is plugged as (vda, vdb, …): the
	// guest device name the managers record (spec §5 "Guest device names").
	Target string `json:"target"`
}

// DiskAttacher is implemented by drivers that hot-plug volumes into domains
// (hva-handle attach and detach, spec/agents.md §2.2); the handlers refuse
// those verbs on a driver without it. A disk is known by its VolumeID.
//
//   - AttachDisk plugs disk into domain id: into the live domain when it is
//     running or paused, and into its definition always, so that the disk
//     is still there after the domain is shut off and started again. It
//     returns the target the disk got: disk.Target when that is free, else
//     the first virtio name (vda, vdb, …) used by no disk of the domain.
//     A disk of that VolumeID attached already is left as it is and its
//     target returned. An invalid disk (no path nor iSCSI target) is
//     errs.InvalidParameter; an absent domain errs.NotFound.
//   - DetachDisk unplugs the disk of volumeID from the live domain and its
//     definition, and returns once the live domain has let go of it (a
//     guest must release a hot-unplugged disk; the request is repeated while
//     it does not). A disk that is not attached is detached already; an
//     absent domain has no disks (nil).
//   - Disks lists the disks of the live domain when it is running or
//     paused, else of its definition, in target order.
//
// Methods end with ctx (errs.Timeout) and are safe for concurrent use.
type DiskAttacher interface {
	AttachDisk(ctx context.Context, id string, disk Disk) (string, error)
	DetachDisk(ctx context.Context, id, volumeID string) error
	Disks(ctx context.Context, id string) ([]AttachedDisk, error)
}

// DiskName is the virtio disk name of index i: vda … vdz, vdaa ….
func DiskName(i int) string {
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('a'+(i-1)%26)) + name
	}
	return "vd" + name
}

var diskNameRE = regexp.MustCompile(`^vd[a-z]{1,3}$`)

// ValidTarget reports whether name is a virtio disk name a disk may ask for.
func ValidTarget(name string) bool { return diskNameRE.MatchString(name) }

// FreeTarget is the disk's own target when it is valid and not in used,
// else the first DiskName not in used.
func FreeTarget(want string, used map[string]bool) string {
	if ValidTarget(want) && !used[want] {
		return want
	}
	for i := 0; ; i++ {
		if n := DiskName(i); !used[n] {
			return n
		}
	}
}

// Targets assigns a target to each disk of a domain being defined, in
// order: the disks that ask for a valid target get it (the first to ask
// when two ask for the same), then the others get the free names in order,
// so that a redefinition keeps the names hot-plugged disks were given.
func Targets(disks []Disk) []string {
	out := make([]string, len(disks))
	used := map[string]bool{}
	for i, d := range disks {
		if ValidTarget(d.Target) && !used[d.Target] {
			out[i], used[d.Target] = d.Target, true
		}
	}
	for i := range disks {
		if out[i] == "" {
			out[i] = FreeTarget("", used)
			used[out[i]] = true
		}
	}
	return out
}

// Validate checks what every driver needs of a disk: a volume id, a file
// or an iSCSI target with its portal (not both), a known format.
func (d Disk) Validate() error {
	switch {
	case d.VolumeID == "":
		return errs.New(errs.InvalidParameter, "a disk without a volume id")
	case d.Format != "" && d.Format != FormatRaw && d.Format != FormatQcow2:
		return errs.New(errs.InvalidParameter, "disk %s: format %q, want raw or qcow2", d.VolumeID, d.Format)
	case d.Path != "" && d.IQN != "":
		return errs.New(errs.InvalidParameter, "disk %s has both a path and an iSCSI target", d.VolumeID)
	case d.Path == "" && d.IQN == "":
		return errs.New(errs.InvalidParameter, "disk %s has neither a path nor an iSCSI target", d.VolumeID)
	case d.IQN != "" && d.StorageIP == "":
		return errs.New(errs.InvalidParameter, "iSCSI disk %s has no portal address", d.VolumeID)
	}
	return nil
}
