package proto

import "time"

// Instance states (spec §3.1).
const (
	InstanceInit         = "init"
	InstanceScheduling   = "scheduling"
	InstancePending      = "pending"
	InstanceStarting     = "starting"
	InstanceRunning      = "running"
	InstanceHalting      = "halting"
	InstanceHalted       = "halted"
	InstanceStopping     = "stopping"
	InstanceStopped      = "stopped"
	InstanceShuttingDown = "shuttingdown"
	InstanceTerminated   = "terminated"
	InstanceMigrating    = "migrating"
)

// Instance status column values.
const (
	StatusInit    = "init"
	StatusOnline  = "online"
	StatusOffline = "offline"
)

// Instance is a virtual machine. Its vifs are NetworkVif records with
// InstanceID set; its volumes are Volume records with InstanceID set.
type Instance struct {
	ID string `json:"id"`
	Timestamps
	AccountID         string         `json:"account_id"`
	HostNodeID        *string        `json:"host_node_id"`
	ImageID           string         `json:"image_id"`
	Arch              string         `json:"arch"`
	Hypervisor        string         `json:"hypervisor"`
	CPUCores          int            `json:"cpu_cores"`
	MemorySize        int64          `json:"memory_size"` // MiB
	QuotaWeight       float64        `json:"quota_weight"`
	State             string         `json:"state"`
	Status            string         `json:"status"`
	SshKeyPairID      *string        `json:"ssh_key_pair_id"`
	Hostname          string         `json:"hostname"`
	HaEnabled         bool           `json:"ha_enabled"`
	DisplayName       string         `json:"display_name"`
	ServiceType       string         `json:"service_type"`
	UserData          string         `json:"user_data"`
	BootVolumeID      string         `json:"boot_volume_id"`
	RequestParams     map[string]any `json:"request_params"`
	Monitoring        map[string]any `json:"monitoring"`
	Labels            []Label        `json:"labels"`
	EncryptedPassword *string        `json:"encrypted_password"`
	TerminatedAt      *time.Time     `json:"terminated_at"`
	// LastError says why the instance ended where it is when a job failed
	// (no host fits, the hypervisor refused, …); empty otherwise.
	LastError string `json:"last_error,omitempty"`
	// MigratingTo is the destination host node while the instance is
	// migrating (PUT /instances/:id/move); its capacity is reserved in that
	// host's HostUsage until the move ends one way or the other.
	MigratingTo *string `json:"migrating_to,omitempty"`
}

func (r *Instance) OwnerID() string         { return r.AccountID }
func (r *Instance) ServiceTypeName() string { return r.ServiceType }

// Volume states (spec §3.2). The original's constant spells attaching
// "attatching"; agents wrote "attaching", which is the value used here.
const (
	VolumeInitialized = "initialized"
	VolumeScheduling  = "scheduling"
	VolumePending     = "pending"
	VolumeCreating    = "creating"
	VolumeAvailable   = "available"
	VolumeAttaching   = "attaching"
	VolumeAttached    = "attached"
	VolumeDetaching   = "detaching"
	VolumeDeleting    = "deleting"
	VolumeDeleted     = "deleted"
	VolumeFailed      = "failed"
)

// Volume is a disk: local (on the instance's host) or shared (on a storage
// node, exported over iSCSI).
type Volume struct {
	ID string `json:"id"`
	Timestamps
	AccountID       string         `json:"account_id"`
	State           string         `json:"state"`
	Status          string         `json:"status"`
	Size            int64          `json:"size"`       // bytes
	StoreType       string         `json:"store_type"` // VolumeLocal | VolumeShared
	InstanceID      *string        `json:"instance_id"`
	StorageNodeID   *string        `json:"storage_node_id"`
	BackupObjectID  *string        `json:"backup_object_id"`
	GuestDeviceName string         `json:"guest_device_name"`
	DisplayName     string         `json:"display_name"`
	ServiceType     string         `json:"service_type"`
	RequestParams   map[string]any `json:"request_params"`
	Device          *VolumeDevice  `json:"volume_device"`
	Labels          []Label        `json:"labels"`
	AttachedAt      *time.Time     `json:"attached_at"`
	DetachedAt      *time.Time     `json:"detached_at"`
	DeletedAt       *time.Time     `json:"deleted_at"`
	// LastError says why the volume ended deleted when a job failed (no
	// storage node fits, the storage agent refused); empty otherwise.
	LastError string `json:"last_error,omitempty"`
	// KeepOnTerminate marks a volume attached through the volumes API: when
	// its instance terminates it is detached (unlinked, available), not
	// deleted with the instance's own volumes (spec §3.2).
	KeepOnTerminate bool `json:"keep_on_terminate,omitempty"`
}

func (r *Volume) OwnerID() string         { return r.AccountID }
func (r *Volume) ServiceTypeName() string { return r.ServiceType }

// KindHostUsage holds one HostUsage per host node that has instances. Every
// placement and every release rewrites it guarded by its ModifyIndex, so two
// schedulers placing on the same host at once conflict in raft instead of
// overcommitting it.
const KindHostUsage = "host_usage"

// HostUsage is what the instances placed on a host take from its offering.
type HostUsage struct {
	ID         string `json:"id"` // host node id
	CPUCores   int    `json:"cpu_cores"`
	MemorySize int64  `json:"memory_size"` // MiB
	DiskBytes  int64  `json:"disk_bytes"`  // local volumes
	// Instances lists the instances counted, so a release is idempotent.
	Instances []string `json:"instances"`
	// LocalDisk is the local volume bytes charged per instance, so that a
	// release gives back exactly what the placement took even if a volume
	// record changed in between (cores and memory come from the instance,
	// which cannot be resized).
	LocalDisk map[string]int64 `json:"local_disk,omitempty"`
}
