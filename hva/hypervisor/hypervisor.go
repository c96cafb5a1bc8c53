// Package hypervisor is the hva's boundary to the virtualisation layer
// (DESIGN.md "Node agents", house style §10.3): the Hypervisor interface the
// verb handlers drive, the domain spec they build from an instance, and the
// errors every driver returns. Drivers live in sub-packages (libvirt,
// dummy); hypervisortest is the conformance suite all of them pass.
package hypervisor

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
)

// State is a domain's run state.
type State string

// Domain states, as libvirt names them.
const (
	// Running: the guest runs.
	Running State = "running"
	// Shutoff: defined but not running (never started, stopped, or died).
	Shutoff State = "shutoff"
	// Paused: the guest's vCPUs are stopped but its process is alive
	// (libvirt pauses a guest on a disk I/O error, for example).
	Paused State = "paused"
)

// Alive reports whether the domain's process exists (running or paused):
// what the instance monitor calls "the VM is there".
func (s State) Alive() bool { return s == Running || s == Paused }

// Spec is what a domain is defined from. ID is its identity: the instance
// uuid (i-…), also its name on the host.
type Spec struct {
	ID       string `json:"id"`
	CPUCores int    `json:"cpu_cores"`
	MemoryMB int64  `json:"memory_mb"`
	Disks    []Disk `json:"disks,omitempty"`
	NICs     []NIC  `json:"nics,omitempty"`
}

// Disk is one volume of a domain, in boot order.
type Disk struct {
	// VolumeID is the volume uuid (vol-…); the guest sees it as the disk serial.
	VolumeID string `json:"volume_id"`
	// Path is the file or block device of a local volume.
	Path string `json:"path,omitempty"`
	// IQN and LUN locate a shared volume at the iSCSI portal StorageIP.
	IQN       string `json:"iqn,omitempty"`
	LUN       int    `json:"lun,omitempty"`
	StorageIP string `json:"storage_ip,omitempty"`
	// Boot marks the boot volume.
	Boot bool `json:"boot,omitempty"`
	// Format is the image format the disk holds, a file's or an iSCSI
	// LUN's: FormatQcow2 or FormatRaw ("" = raw).
	Format string `json:"format,omitempty"`
	// ReadOnly attaches the disk read-only.
	ReadOnly bool `json:"read_only,omitempty"`
	// Target is the device name the disk asks for (vdc; see Targets):
	// the name it was hot-plugged as, kept when the domain is defined
	// again. "" = the next free name.
	Target string `json:"target,omitempty"`
}

// Disk image formats.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// DefaultISCSIPort is the portal port of an iSCSI disk.
const DefaultISCSIPort = 3260

// NIC is one virtual interface of a domain.
type NIC struct {
	// VifID is the vif uuid (vif-…), also the tap device's name.
	VifID string `json:"vif_id"`
	// MAC is the address as 12 hex digits (the manager's form).
	MAC string `json:"mac"`
	// DeviceIndex orders the NICs in the guest.
	DeviceIndex int `json:"device_index"`
	// DcNetwork is the DC network whose bridge the tap joins ("" = none).
	DcNetwork string `json:"dc_network,omitempty"`
	// Bridge is that DC network's bridge on this host and MTU the tap's
	// MTU (0 = the bridge's), filled in by the host network (hva/network).
	Bridge string `json:"bridge,omitempty"`
	MTU    int    `json:"mtu,omitempty"`
}

// Validate checks what every driver needs.
func (s Spec) Validate() error {
	switch {
	case s.ID == "":
		return errs.New(errs.InvalidParameter, "domain spec without an id")
	case s.CPUCores < 1:
		return errs.New(errs.InvalidParameter, "domain %s: %d cpu cores, want at least 1", s.ID, s.CPUCores)
	case s.MemoryMB < 1:
		return errs.New(errs.InvalidParameter, "domain %s: %d MiB of memory, want at least 1", s.ID, s.MemoryMB)
	}
	return nil
}

// Domain is a defined domain as the driver sees it.
type Domain struct {
	ID       string `json:"id"`
	State    State  `json:"state"`
	CPUCores int    `json:"cpu_cores"`
	MemoryMB int64  `json:"memory_mb"`
}

// Capacity is what the host offers and what its defined domains (running or
// not: a halted instance keeps its place) take of it.
type Capacity struct {
	CPUCores     int   `json:"cpu_cores"`
	MemoryMB     int64 `json:"memory_mb"`
	UsedCPUCores int   `json:"used_cpu_cores"`
	UsedMemoryMB int64 `json:"used_memory_mb"`
}

// Hypervisor drives the domains of one host. Every method is idempotent
// where the name allows it, so that a handler re-run after an agent restart
// converges instead of failing:
//
//   - Define of an id already defined replaces its definition (the state
//     stays); Start of a running domain, Stop of a shut-off one, Shutdown of
//     a shut-off one and Undefine of an absent one succeed without effect.
//   - An absent domain is errs.NotFound (Get, Start, Stop, Reboot, Shutdown).
//   - Reboot of a domain that is not running, and Undefine of a running or
//     paused one, are errs.InvalidInstanceState.
//   - A Define beyond the host's capacity may be errs.OutOfHostCapacity.
//
// Methods end with ctx (errs.Timeout) and are safe for concurrent use.
type Hypervisor interface {
	// Define creates (or replaces) the domain's definition; it stays shut off.
	Define(ctx context.Context, spec Spec) error
	// Start boots a defined domain.
	Start(ctx context.Context, id string) error
	// Stop ends a domain and returns once it is shut off. force pulls the
	// plug; without force the guest gets an ACPI power-down and Stop waits
	// for it until ctx ends (then errs.Timeout, and the domain may still run).
	Stop(ctx context.Context, id string, force bool) error
	// Reboot resets a running domain.
	Reboot(ctx context.Context, id string) error
	// Shutdown sends an ACPI power-down and returns at once; the domain
	// shuts off when its guest obliges.
	Shutdown(ctx context.Context, id string) error
	// Undefine removes a shut-off domain's definition.
	Undefine(ctx context.Context, id string) error
	// Get returns one domain.
	Get(ctx context.Context, id string) (Domain, error)
	// List returns every defined domain, sorted by id.
	List(ctx context.Context) ([]Domain, error)
	// Capacity returns the host's offering and usage.
	Capacity(ctx context.Context) (Capacity, error)
}

// CtxErr is how drivers report a context that ended: errs.Timeout wrapping
// the context's error, or nil while ctx is live.
func CtxErr(ctx context.Context, what string) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, what)
	}
	return nil
}

// NotFound is the error of an absent domain.
func NotFound(id string) error {
	return errs.New(errs.NotFound, "domain %s is not defined", id)
}

// WrongState is the error of an operation the domain's state forbids.
func WrongState(id string, st State, op string) error {
	return errs.New(errs.InvalidInstanceState, "cannot %s domain %s: it is %s", op, id, st)
}

// FormatMAC turns the manager's 12 hex digits into aa:bb:cc:dd:ee:ff (lower
// case), the form of libvirt and of the guest.
func FormatMAC(hex12 string) (string, error) {
	h := strings.ToLower(hex12)
	if len(h) != 12 {
		return "", fmt.Errorf("mac address %q: want 12 hex digits", hex12)
	}
	parts := make([]string, 6)
	for i := range parts {
		p := h[2*i : 2*i+2]
		if _, err := strconv.ParseUint(p, 16, 8); err != nil {
			return "", fmt.Errorf("mac address %q: want 12 hex digits", hex12)
		}
		parts[i] = p
	}
	return strings.Join(parts, ":"), nil
}
