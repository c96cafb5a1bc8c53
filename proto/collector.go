package proto

import (
	"encoding/json"
	"time"
)

// Collector endpoints (spec/agents.md §2.0): served by every manager (writes
// are forwarded to the leader), called by agents while they run jobs. Agents
// never touch the state store; what they read and write goes through these.
const (
	EndpointHvaCollector = "hva-collector"
	EndpointStaCollector = "sta-collector"
	EndpointJobCollector = "job-collector"
)

// Collector verbs.
const (
	// hva-collector
	VerbGetInstance                       = "get_instance"
	VerbUpdateInstance                    = "update_instance"
	VerbFinalizeInstance                  = "finalize_instance"
	VerbUpdateImage                       = "update_image"
	VerbGetHostNode                       = "get_host_node"
	VerbGetNetwork                        = "get_network"
	VerbGetNic                            = "get_nic"
	VerbGetInstanceMonitorData            = "get_instance_monitor_data"
	VerbGetNetfilterData                  = "get_netfilter_data"
	VerbGetNetfilterVnic                  = "get_netfilter_vnic"
	VerbGetNetfilterSecurityGroup         = "get_netfilter_security_group"
	VerbSwitchInstanceHostNode            = "switch_instance_host_node"
	VerbAbortMigration                    = "abort_migration"
	VerbGetExternalMonitorTargetHostNodes = "get_external_monitor_target_host_nodes"

	// sta-collector (also VerbUpdateImage, VerbGetInstance,
	// VerbUpdateInstance: see the sta-collector section below)
	VerbGetVolume              = "get_volume"
	VerbGetAvailableVolumes    = "get_available_volumes"
	VerbGetBackupObject        = "get_backup_object"
	VerbGetImage               = "get_image"
	VerbUpdateVolume           = "update_volume"
	VerbUpdateBackupObject     = "update_backup_object"
	VerbPostProcessBackupImage = "post_process_backup_image"

	// job-collector
	VerbJobFinished = "job_finished"
	VerbJobProgress = "job_progress"
	VerbSubmitJob   = "submit_job"
)

// ---- documents agents read ----

// InstanceView is an instance as an agent sees it (the seed's GI hash): the
// instance with its image, host, vifs and volumes resolved.
type InstanceView struct {
	ID string `json:"id"`
	Timestamps
	AccountID    string          `json:"account_id"`
	State        string          `json:"state"`
	Status       string          `json:"status"`
	Hostname     string          `json:"hostname"`
	DisplayName  string          `json:"display_name"`
	ServiceType  string          `json:"service_type"`
	Arch         string          `json:"arch"`
	Hypervisor   string          `json:"hypervisor"`
	CPUCores     int             `json:"cpu_cores"`
	MemorySize   int64           `json:"memory_size"` // MiB
	UserData     string          `json:"user_data"`
	SshPublicKey string          `json:"ssh_public_key,omitempty"`
	HostNode     *HostNode       `json:"host_node"`
	Image        *ImageView      `json:"image"`
	BootVolumeID string          `json:"boot_volume_id"`
	Volumes      []VolumeView    `json:"volumes"`
	Vifs         []VifView       `json:"vifs"`
	HaEnabled    bool            `json:"ha_enabled"`
	Metadata     json.RawMessage `json:"metadata,omitempty"` // extra metadata-drive items
	TerminatedAt *time.Time      `json:"terminated_at"`

	// MigrationDest is the host the instance moves to while it is migrating.
	MigrationDest *HostNode `json:"migration_dest,omitempty"`
}

// VifView is a vif with its address and network resolved.
type VifView struct {
	ID             string     `json:"id"`
	InstanceID     *string    `json:"instance_id"`
	DeviceIndex    int        `json:"device_index"`
	MacAddr        string     `json:"mac_addr"`
	SecurityGroups []string   `json:"security_groups"`
	IPv4Address    *string    `json:"ipv4_address"`
	NatIPv4Address *string    `json:"nat_ipv4_address"`
	Network        *Network   `json:"network"`
	DcNetwork      *DcNetwork `json:"dc_network"`
}

// Volume store types.
const (
	VolumeLocal  = "local"
	VolumeShared = "shared"
)

// VolumeDevice is where a volume's data lives: a path on the host for local
// volumes, an iSCSI target for shared ones.
type VolumeDevice struct {
	Path          string `json:"path,omitempty"` // local: the file; iSCSI: the sta's backing file or device
	MountLabel    string `json:"mount_label,omitempty"`
	IQN           string `json:"iqn,omitempty"`
	LUN           int    `json:"lun,omitempty"`
	StorageNodeID string `json:"storage_node_id,omitempty"` // sn-… of an iSCSI volume
	StorageIP     string `json:"storage_ip,omitempty"`      // portal address
	// Format is what the LUN holds: "" or "raw" for a plain disk, "qcow2"
	// when the sta keeps volumes as qcow2 images (the initiator, QEMU,
	// opens the LUN with that format).
	Format string `json:"format,omitempty"`
}

// VolumeView is a volume with its device and source backup object.
type VolumeView struct {
	ID string `json:"id"`
	Timestamps
	AccountID       string            `json:"account_id"`
	State           string            `json:"state"`
	Size            int64             `json:"size"`       // bytes
	StoreType       string            `json:"store_type"` // VolumeLocal | VolumeShared
	InstanceID      *string           `json:"instance_id"`
	GuestDeviceName string            `json:"guest_device_name"`
	BackupObject    *BackupObjectView `json:"backup_object"`
	Device          *VolumeDevice     `json:"volume_device"`
	StorageNode     *StorageNode      `json:"storage_node,omitempty"`
	AttachedAt      *time.Time        `json:"attached_at"`
	DetachedAt      *time.Time        `json:"detached_at"`
	DeletedAt       *time.Time        `json:"deleted_at"`
}

// BackupObjectView is a backup object with its storage and full URI.
type BackupObjectView struct {
	BackupObject
	BackupStorage *BackupStorage `json:"backup_storage"`
	URI           string         `json:"uri"`
}

// ImageView is an image with its backup object.
type ImageView struct {
	Image
	BackupObject *BackupObjectView `json:"backup_object"`
}

// ---- hva-collector ----

// GetInstanceRequest reads one instance (UnknownInstance if absent).
type GetInstanceRequest struct {
	InstanceID string `json:"instance_id"`
}

// GetInstanceResponse is the instance.
type GetInstanceResponse = InstanceView

// UpdateInstanceRequest changes an instance; nil fields stay. State
// terminated runs finalize_instance. Timestamps (terminated_at, …) are
// stamped by the leader from the transition.
//
// ExpectState, when set with State, is the state the agent read and acts
// from (starting for starting → running): the leader refuses the update
// with InvalidInstanceState when the instance is in neither ExpectState nor
// State, so a report based on a stale read (the user terminated or moved
// the instance meanwhile) does not overwrite the newer state. Already being
// in State counts as done (a retried call). Older agents leave it unset.
type UpdateInstanceRequest struct {
	InstanceID              string     `json:"instance_id"`
	State                   *string    `json:"state,omitempty"`
	ExpectState             *string    `json:"expect_state,omitempty"`
	Status                  *string    `json:"status,omitempty"`
	ClearHostNode           bool       `json:"clear_host_node,omitempty"` // stop: host_node_id = nil
	EncryptedPassword       *string    `json:"encrypted_password,omitempty"`
	PasswordWillBeDeletedAt *time.Time `json:"password_will_be_deleted_at,omitempty"`
}

// UpdateInstanceResponse is empty.
type UpdateInstanceResponse struct{}

// FinalizeInstanceRequest terminates an instance's records (idempotent):
// volumes to deleting with their delete jobs, leases released, state terminated.
type FinalizeInstanceRequest struct {
	InstanceID string `json:"instance_id"`
}

// FinalizeInstanceResponse is empty.
type FinalizeInstanceResponse struct{}

// UpdateImageRequest changes an image's state (deleted destroys it).
type UpdateImageRequest struct {
	ImageID string  `json:"image_id"`
	State   *string `json:"state,omitempty"`
}

// UpdateImageResponse is empty.
type UpdateImageResponse struct{}

// GetHostNodeRequest reads a host node by uuid or by agent node id.
type GetHostNodeRequest struct {
	HostNodeID string `json:"host_node_id,omitempty"`
	NodeID     string `json:"node_id,omitempty"`
}

// GetHostNodeResponse is the host node.
type GetHostNodeResponse = HostNode

// GetNetworkRequest reads a network.
type GetNetworkRequest struct {
	NetworkID string `json:"network_id"`
}

// GetNetworkResponse is the network.
type GetNetworkResponse = Network

// GetNicRequest reads a vif.
type GetNicRequest struct {
	VifID string `json:"vif_id"`
}

// GetNicResponse is the vif.
type GetNicResponse = VifView

// GetInstanceMonitorDataRequest lists what the instance monitor of a host checks.
type GetInstanceMonitorDataRequest struct {
	NodeID string `json:"node_id"` // hva node id
}

// InstanceMonitorEntry is one instance in state running, halting or shuttingdown.
type InstanceMonitorEntry struct {
	InstanceID string    `json:"instance_id"`
	Hypervisor string    `json:"hypervisor"`
	State      string    `json:"state"`
	Status     string    `json:"status"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// GetInstanceMonitorDataResponse lists the host's instances.
type GetInstanceMonitorDataResponse struct {
	Instances []InstanceMonitorEntry `json:"instances"`
}

// GetNetfilterDataRequest reads everything a host's packet filter needs
// (hva/filter compiles it): one call gives the whole desired state, so a
// host reconciles from it alone.
type GetNetfilterDataRequest struct {
	NodeID string `json:"node_id"` // hva node id (UnknownHostNode if no host is bound to it)
}

// NetfilterMember is a vif in a security group, anywhere in the cluster:
// a vif of an instance from placement (pending) until its host starts taking
// it down (shuttingdown, stopping), or a vif on no instance.
type NetfilterMember struct {
	VifID       string  `json:"vif_id"`
	MacAddr     string  `json:"mac_addr"`
	IPv4Address *string `json:"ipv4_address"`
}

// NetfilterSecurityGroup is a group with its rules, members and references.
type NetfilterSecurityGroup struct {
	ID          string            `json:"id"`
	Rule        string            `json:"rule"` // text, parsed by common/sgrule
	Members     []NetfilterMember `json:"members"`
	Referencers []string          `json:"referencers"` // groups whose rules name this one
	Referencees []string          `json:"referencees"` // groups this one's rules name
}

// GetNetfilterDataResponse is the host's vnics (vifs of instances placed on
// it, in the states of NetfilterMember), sorted by id, and every group they
// are in, their groups' rules name, or whose rules name their groups, sorted
// by id.
type GetNetfilterDataResponse struct {
	Vnics          []VifView                `json:"vnics"`
	SecurityGroups []NetfilterSecurityGroup `json:"security_groups"`
}

// GetNetfilterVnicRequest reads one vif for the packet filter.
type GetNetfilterVnicRequest struct {
	VifID string `json:"vif_id"`
}

// GetNetfilterVnicResponse is the vif.
type GetNetfilterVnicResponse = VifView

// GetNetfilterSecurityGroupRequest reads one group for a host's packet filter.
type GetNetfilterSecurityGroupRequest struct {
	SecurityGroupID string `json:"security_group_id"`
	NodeID          string `json:"node_id"`
}

// GetNetfilterSecurityGroupResponse is the group.
type GetNetfilterSecurityGroupResponse = NetfilterSecurityGroup

// SwitchInstanceHostNodeRequest moves a migrating instance's record to the
// destination host once its VM runs there: host_node_id, and its share of
// the source host's usage to the destination's (idempotent).
type SwitchInstanceHostNodeRequest struct {
	InstanceID string `json:"instance_id"`
	DestNodeID string `json:"dest_node_id"` // hva node id
}

// SwitchInstanceHostNodeResponse is empty.
type SwitchInstanceHostNodeResponse struct{}

// AbortMigrationRequest ends a failed migration: the instance goes back to
// running on its source host, the destination's reservation is released and
// the destination is told to remove what it prepared (hva-handle cleanup).
// An instance that is not migrating is left alone (idempotent).
type AbortMigrationRequest struct {
	InstanceID string `json:"instance_id"`
	Reason     string `json:"reason"`
}

// AbortMigrationResponse is empty.
type AbortMigrationResponse struct{}

// GetExternalMonitorTargetHostNodesRequest has no fields.
type GetExternalMonitorTargetHostNodesRequest struct{}

// GetExternalMonitorTargetHostNodesResponse lists host uuids to monitor:
// online hosts and offline hosts still scheduling_enabled.
type GetExternalMonitorTargetHostNodesResponse struct {
	HostNodeIDs []string `json:"host_node_ids"`
}

// ---- sta-collector ----
//
// What the sta (sta/collector) calls, all on endpoint sta-collector unless
// said otherwise; every call may be repeated (a retried RPC, a redelivered
// job), so each must be idempotent:
//
//	get_volume                 GetVolumeRequest → VolumeView
//	get_available_volumes      GetAvailableVolumesRequest → GetAvailableVolumesResponse
//	get_backup_object          GetBackupObjectRequest → BackupObjectView
//	get_image                  GetImageRequest → ImageView
//	update_volume              UpdateVolumeRequest → {}
//	update_backup_object       UpdateBackupObjectRequest → {}
//	update_image               UpdateImageRequest → {}   (the source's sta
//	                           called sta-collector.update_image, which did
//	                           not exist; it is served here)
//	post_process_backup_image  PostProcessBackupImageRequest → {}
//	hva-collector get_instance / update_instance (create_volume_and_run_instance)
//	job-collector submit_job   (create_volume_and_run_instance → hva-handle
//	                           wait_volumes_available), job_finished
//
// Documents: a volume (VolumeView) carries its device (the manager's
// placement sets volume_device.storage_node_id), its storage node, and its
// source backup object with backup_storage and uri. A backup object
// (BackupObjectView) carries its backup_storage and uri = base_uri +
// object_key. Deleted volumes, backup objects and images stay readable
// (state deleted) so that a redelivered job sees they are gone.

// GetVolumeRequest reads one volume (UnknownVolume if absent).
type GetVolumeRequest struct {
	VolumeID string `json:"volume_id"`
}

// GetVolumeResponse is the volume.
type GetVolumeResponse = VolumeView

// GetAvailableVolumesRequest lists a storage node's exported volumes: the
// sta re-exports them when it starts (tgtd keeps no configuration).
type GetAvailableVolumesRequest struct {
	NodeID string `json:"node_id"` // sta node id
}

// GetAvailableVolumesResponse lists the volumes of the storage node whose
// node_id is the request's, in state available, attaching, attached or
// detaching, each with its volume_device (iqn, lun, path).
type GetAvailableVolumesResponse struct {
	Volumes []VolumeView `json:"volumes"`
}

// GetBackupObjectRequest reads one backup object (UnknownBackupObject if absent).
type GetBackupObjectRequest struct {
	BackupObjectID string `json:"backup_object_id"`
}

// GetBackupObjectResponse is the backup object.
type GetBackupObjectResponse = BackupObjectView

// GetImageRequest reads one image (UnknownImage if absent).
type GetImageRequest struct {
	ImageID string `json:"image_id"`
}

// GetImageResponse is the image.
type GetImageResponse = ImageView

// UpdateVolumeRequest changes a volume; nil fields stay. Timestamps
// (attached_at, detached_at, deleted_at) are stamped by the leader from the
// transition; state deleted runs the delete hooks. A volume in deleting
// moves only to deleted, and a deleted one stays deleted (setting deleted
// again succeeds): anything else is InvalidVolumeState, which is how a
// create that lost the race with a delete learns it (sta undoes its work).
type UpdateVolumeRequest struct {
	VolumeID        string        `json:"volume_id"`
	State           *string       `json:"state,omitempty"`
	DetachInstance  bool          `json:"detach_instance,omitempty"` // instance_id = nil
	Device          *VolumeDevice `json:"volume_device,omitempty"`   // replaces the device
	GuestDeviceName *string       `json:"guest_device_name,omitempty"`
}

// UpdateVolumeResponse is empty.
type UpdateVolumeResponse struct{}

// Backup object states (spec api §3.3).
const (
	BackupObjectPending   = "pending"
	BackupObjectCreating  = "creating"
	BackupObjectAvailable = "available"
	BackupObjectDeleted   = "deleted"
	BackupObjectPurged    = "purged" // deleted, and its stored bytes removed
)

// UpdateBackupObjectRequest changes a backup object; nil fields stay. State
// available forces progress 100; deleted stamps deleted_at. deleted and
// purged are final: a deleted object moves only to purged (or stays), and
// other changes of a deleted or purged object are InvalidBackupObjectState.
// Checksum is the md5 (hex) of the stored object, AllocationSize its
// length in bytes (after the container format).
type UpdateBackupObjectRequest struct {
	BackupObjectID string   `json:"backup_object_id"`
	State          *string  `json:"state,omitempty"`
	Checksum       *string  `json:"checksum,omitempty"`
	AllocationSize *int64   `json:"allocation_size,omitempty"`
	Progress       *float64 `json:"progress,omitempty"` // percent
	ObjectKey      *string  `json:"object_key,omitempty"`
}

// UpdateBackupObjectResponse is empty.
type UpdateBackupObjectResponse struct{}

// PostProcessBackupImageRequest makes an image available once all its
// backup objects (backup_object_id and volumes[].backup_object_id) are
// available; until then the image stays as it is (the source's check was a
// no-op that always made it available). Idempotent.
type PostProcessBackupImageRequest struct {
	ImageID string `json:"image_id"`
}

// PostProcessBackupImageResponse says whether the image is available now.
type PostProcessBackupImageResponse struct {
	Available bool `json:"available"`
}

// ---- job-collector ----

// JobFinishedRequest reports a job's final result (the dispatcher also learns
// it by redelivering the job; this only makes it faster).
type JobFinishedRequest struct {
	NodeID string    `json:"node_id"`
	Result JobResult `json:"result"`
}

// JobFinishedResponse is empty.
type JobFinishedResponse struct{}

// JobProgressRequest reports how far a long job is.
type JobProgressRequest struct {
	NodeID   string  `json:"node_id"`
	JobID    string  `json:"job_id"`
	Progress float64 `json:"progress"` // percent
	Message  string  `json:"message,omitempty"`
}

// JobProgressResponse is empty.
type JobProgressResponse struct{}

// SubmitJobRequest asks the leader for a follow-up job (hva submits
// hva-handle run_local_store after local-store-handle run_local_store). The
// leader dedups by (ParentID, Key), so a re-run parent does not submit twice.
type SubmitJobRequest struct {
	ParentID   string          `json:"parent_id"`
	Key        string          `json:"key"`
	Endpoint   string          `json:"endpoint"`
	Verb       string          `json:"verb"`
	Args       json.RawMessage `json:"args"`
	ResourceID string          `json:"resource_id,omitempty"`
}

// SubmitJobResponse is the id of the (new or existing) job.
type SubmitJobResponse struct {
	JobID string `json:"job_id"`
}
