package proto

// Job verbs (spec/agents.md §2.1–§2.6). A verb name may be served by several
// endpoints with different arguments (run_local_store on hva-handle and on
// local-store-handle); the request types are therefore named after endpoint
// and verb. Every request carries uuids only: handlers read the documents
// they need through the collector (collector.go) when they run, so a
// redelivered job never acts on a stale copy.
const (
	// scheduler (§2.1)
	VerbScheduleInstance      = "schedule_instance"
	VerbScheduleStartInstance = "schedule_start_instance"
	VerbScheduleVolume        = "schedule_volume"
	VerbEvacuateFrom          = "evacuate_from"

	// hva-handle (§2.2)
	VerbWaitVolumesAvailable = "wait_volumes_available"
	VerbRunLocalStore        = "run_local_store" // also local-store-handle
	VerbRunVolStore          = "run_vol_store"   // also migration-handle
	VerbTerminate            = "terminate"
	VerbCleanup              = "cleanup"
	VerbStop                 = "stop"
	VerbAttach               = "attach"
	VerbDetach               = "detach"
	VerbAttachNic            = "attach_nic"
	VerbDetachNic            = "detach_nic"
	VerbReboot               = "reboot"
	VerbPoweroff             = "poweroff"
	VerbSoftPoweroff         = "soft_poweroff"
	VerbPoweron              = "poweron"

	// local-store-handle (§2.3)
	VerbDeployVolumeAndAttach = "deploy_volume_and_attach"
	VerbDeleteVolume          = "delete_volume" // also sta-handle
	VerbBackupVolume          = "backup_volume" // also sta-handle
	VerbBackupImage           = "backup_image"  // also sta-handle

	// migration-handle (§2.4)
	VerbStartMigration = "start_migration"

	// windows-handle (§2.5)
	VerbLaunchWindows = "launch_windows"

	// sta-handle (§2.6)
	VerbCreateVolume               = "create_volume"
	VerbCreateVolumeAndRunInstance = "create_volume_and_run_instance"
	VerbCreateSnapshot             = "create_snapshot"
	VerbDeleteSnapshot             = "delete_snapshot"
)

// ---- scheduler (§2.1) ----

// ScheduleInstanceRequest places an instance in state scheduling.
type ScheduleInstanceRequest struct {
	InstanceID string `json:"instance_id"`
}

// ScheduleInstanceResponse tells where the instance went.
type ScheduleInstanceResponse struct {
	InstanceID string `json:"instance_id"`
	HostNodeID string `json:"host_node_id"`
}

// ScheduleStartInstanceRequest re-places a stopped instance (PUT …/start).
type ScheduleStartInstanceRequest struct {
	InstanceID string `json:"instance_id"`
}

// ScheduleStartInstanceResponse tells where the instance went.
type ScheduleStartInstanceResponse struct {
	InstanceID string `json:"instance_id"`
	HostNodeID string `json:"host_node_id"`
}

// ScheduleVolumeRequest places a standalone volume on a storage node.
type ScheduleVolumeRequest struct {
	VolumeID string `json:"volume_id"`
}

// ScheduleVolumeResponse tells where the volume went.
type ScheduleVolumeResponse struct {
	VolumeID      string `json:"volume_id"`
	StorageNodeID string `json:"storage_node_id"`
}

// EvacuateFromRequest moves the HA instances off a failed host.
type EvacuateFromRequest struct {
	HostNodeID      string `json:"host_node_id"`
	KeepNodeOffline bool   `json:"keep_node_offline"`
}

// EvacuateFromResponse lists the instances re-placed (Scheduled), the HA
// instances that could not be (Failed: halted, or left to a job of their
// own), and the instances without HA that were halted (Halted); Reasons
// says why for each instance not scheduled.
type EvacuateFromResponse struct {
	Scheduled []string          `json:"scheduled"`
	Failed    []string          `json:"failed"`
	Halted    []string          `json:"halted"`
	Reasons   map[string]string `json:"reasons,omitempty"`
}

// ---- hva-handle.<node> (§2.2) ----

// HvaWaitVolumesAvailableRequest boots an instance once all its volumes are available.
type HvaWaitVolumesAvailableRequest struct {
	InstanceID string `json:"instance_id"`
}

// HvaWaitVolumesAvailableResponse reports whether the boot job was submitted.
type HvaWaitVolumesAvailableResponse struct {
	Submitted bool `json:"submitted"`
}

// HvaRunLocalStoreRequest is the second phase of a local boot.
type HvaRunLocalStoreRequest struct {
	InstanceID string `json:"instance_id"`
}

// HvaRunLocalStoreResponse is empty.
type HvaRunLocalStoreResponse struct{}

// HvaRunVolStoreRequest boots an instance from shared volumes (SAN boot, HA restart).
type HvaRunVolStoreRequest struct {
	InstanceID string `json:"instance_id"`
	VolumeID   string `json:"volume_id,omitempty"` // boot volume, if given
}

// HvaRunVolStoreResponse is empty.
type HvaRunVolStoreResponse struct{}

// HvaTerminateRequest terminates an instance; Force skips the state check.
type HvaTerminateRequest struct {
	InstanceID string `json:"instance_id"`
	Force      bool   `json:"force"`
}

// HvaTerminateResponse is empty.
type HvaTerminateResponse struct{}

// HvaCleanupRequest kills what is left of an evacuated instance (HA). When
// the host was not fenced, the evacuation waits for it: once the domain is
// gone the hva records FreeVolumes available (detached from this host) and
// submits Then, the instance's boot on its new host.
type HvaCleanupRequest struct {
	InstanceID  string       `json:"instance_id"`
	FreeVolumes []string     `json:"free_volumes,omitempty"`
	Then        *FollowUpJob `json:"then,omitempty"`
}

// HvaCleanupResponse is empty.
type HvaCleanupResponse struct{}

// HvaStopRequest stops a running instance and releases its host.
type HvaStopRequest struct {
	InstanceID string `json:"instance_id"`
}

// HvaStopResponse is empty.
type HvaStopResponse struct{}

// HvaAttachRequest hot-plugs a volume into an instance.
type HvaAttachRequest struct {
	InstanceID string `json:"instance_id"`
	VolumeID   string `json:"volume_id"`
}

// HvaAttachResponse is empty.
type HvaAttachResponse struct{}

// HvaDetachRequest hot-unplugs a volume.
type HvaDetachRequest struct {
	InstanceID string `json:"instance_id"`
	VolumeID   string `json:"volume_id"`
}

// HvaDetachResponse is empty.
type HvaDetachResponse struct{}

// HvaAttachNicRequest brings a vif up and adds it to its DC network's bridge.
type HvaAttachNicRequest struct {
	DcNetwork string `json:"dc_network"` // DC network name (hva config dc_network)
	VifID     string `json:"vif_id"`
	Port      string `json:"port,omitempty"`
}

// HvaAttachNicResponse is empty.
type HvaAttachNicResponse struct{}

// HvaDetachNicRequest takes a vif down and off its bridge.
type HvaDetachNicRequest struct {
	DcNetwork string `json:"dc_network"`
	VifID     string `json:"vif_id"`
	Port      string `json:"port,omitempty"`
}

// HvaDetachNicResponse is empty.
type HvaDetachNicResponse struct{}

// HvaRebootRequest resets a running instance.
type HvaRebootRequest struct {
	InstanceID string `json:"instance_id"`
}

// HvaRebootResponse is empty.
type HvaRebootResponse struct{}

// HvaPoweroffRequest powers an instance off hard (state halting → halted).
type HvaPoweroffRequest struct {
	InstanceID string `json:"instance_id"`
}

// HvaPoweroffResponse is empty.
type HvaPoweroffResponse struct{}

// HvaSoftPoweroffRequest sends an ACPI power-down; the instance monitor
// moves halting → halted when the VM is gone.
type HvaSoftPoweroffRequest struct {
	InstanceID string `json:"instance_id"`
}

// HvaSoftPoweroffResponse is empty.
type HvaSoftPoweroffResponse struct{}

// HvaPoweronRequest powers a halted instance on.
type HvaPoweronRequest struct {
	InstanceID string `json:"instance_id"`
}

// HvaPoweronResponse is empty.
type HvaPoweronResponse struct{}

// ---- local-store-handle.<node> (§2.3) ----

// LocalStoreRunLocalStoreRequest is the first phase of a local boot: deploy
// the local volumes, then submit hva-handle run_local_store.
type LocalStoreRunLocalStoreRequest struct {
	InstanceID string `json:"instance_id"`
}

// LocalStoreRunLocalStoreResponse is empty.
type LocalStoreRunLocalStoreResponse struct{}

// LocalStoreDeployVolumeAndAttachRequest deploys a local volume for a running
// instance and attaches it (a dead path in the source, kept for the verb list).
type LocalStoreDeployVolumeAndAttachRequest struct {
	VolumeID   string `json:"volume_id"`
	InstanceID string `json:"instance_id"`
}

// LocalStoreDeployVolumeAndAttachResponse is empty.
type LocalStoreDeployVolumeAndAttachResponse struct{}

// LocalStoreDeleteVolumeRequest deletes a local volume's file.
type LocalStoreDeleteVolumeRequest struct {
	InstanceID string `json:"instance_id"`
	VolumeID   string `json:"volume_id"`
}

// LocalStoreDeleteVolumeResponse is empty.
type LocalStoreDeleteVolumeResponse struct{}

// LocalStoreBackupVolumeRequest uploads a local volume to a backup object.
type LocalStoreBackupVolumeRequest struct {
	InstanceID     string `json:"instance_id"`
	VolumeID       string `json:"volume_id"`
	BackupObjectID string `json:"backup_object_id"`
}

// LocalStoreBackupVolumeResponse is empty (results go to the backup object).
type LocalStoreBackupVolumeResponse struct{}

// LocalStoreBackupImageRequest uploads an instance's boot volume as an image.
type LocalStoreBackupImageRequest struct {
	InstanceID     string `json:"instance_id"`
	BackupObjectID string `json:"backup_object_id"`
	ImageID        string `json:"image_id"`
}

// LocalStoreBackupImageResponse is empty.
type LocalStoreBackupImageResponse struct{}

// ---- migration-handle.<node> (§2.4) ----

// MigrationRunVolStoreRequest starts the incoming VM on the destination.
type MigrationRunVolStoreRequest struct {
	InstanceID string `json:"instance_id"`
}

// MigrationRunVolStoreResponse is empty (the destination submits start_migration).
type MigrationRunVolStoreResponse struct{}

// MigrationParams is where the destination's incoming VM listens.
type MigrationParams struct {
	ListenIP string `json:"listen_ip"`
	Port     int    `json:"port"`
}

// MigrationStartMigrationRequest migrates the VM on the source to the destination.
type MigrationStartMigrationRequest struct {
	InstanceID string          `json:"instance_id"`
	DestNodeID string          `json:"dest_node_id"` // hva node id
	Params     MigrationParams `json:"params"`
}

// MigrationStartMigrationResponse is empty.
type MigrationStartMigrationResponse struct{}

// ---- windows-handle.<node> (§2.5) ----

// WindowsLaunchWindowsRequest finishes a Windows first boot (password retrieval).
type WindowsLaunchWindowsRequest struct {
	InstanceID string `json:"instance_id"`
}

// WindowsLaunchWindowsResponse is empty.
type WindowsLaunchWindowsResponse struct{}

// ---- sta-handle.<node> (§2.6) ----

// StaCreateVolumeRequest creates a shared volume (blank or from a backup object).
type StaCreateVolumeRequest struct {
	VolumeID string `json:"volume_id"`
}

// StaCreateVolumeResponse is the target device the volume is exported as.
type StaCreateVolumeResponse struct {
	Device *VolumeDevice `json:"volume_device,omitempty"`
}

// StaCreateVolumeAndRunInstanceRequest creates a boot volume, then submits
// hva-handle wait_volumes_available for the instance.
type StaCreateVolumeAndRunInstanceRequest struct {
	VolumeID   string `json:"volume_id"`
	InstanceID string `json:"instance_id"`
}

// StaCreateVolumeAndRunInstanceResponse is the exported device.
type StaCreateVolumeAndRunInstanceResponse struct {
	Device *VolumeDevice `json:"volume_device,omitempty"`
}

// StaDeleteVolumeRequest unexports and deletes a shared volume.
type StaDeleteVolumeRequest struct {
	VolumeID string `json:"volume_id"`
}

// StaDeleteVolumeResponse is empty.
type StaDeleteVolumeResponse struct{}

// StaBackupVolumeRequest backs a shared volume up into a backup object.
type StaBackupVolumeRequest struct {
	VolumeID       string `json:"volume_id"`
	BackupObjectID string `json:"backup_object_id"`
}

// StaBackupVolumeResponse is the object key the store used.
type StaBackupVolumeResponse struct {
	ObjectKey string `json:"object_key"`
}

// StaBackupImageRequest backs a shared boot volume up as an image.
type StaBackupImageRequest struct {
	VolumeID       string `json:"volume_id"`
	BackupObjectID string `json:"backup_object_id"`
	ImageID        string `json:"image_id"`
}

// StaBackupImageResponse is the object key the store used.
type StaBackupImageResponse struct {
	ObjectKey string `json:"object_key"`
}

// StaCreateSnapshotRequest snapshots a volume into a backup object.
type StaCreateSnapshotRequest struct {
	VolumeID       string `json:"volume_id"`
	BackupObjectID string `json:"backup_object_id"`
}

// StaCreateSnapshotResponse is the object key of the uploaded snapshot.
type StaCreateSnapshotResponse struct {
	ObjectKey string `json:"object_key"`
}

// StaDeleteSnapshotRequest removes what create_snapshot stored: the bytes of
// a backup object on its backup storage, which then becomes purged. (The
// source's verb took a legacy volume snapshot id and always failed; volume
// snapshots are backup objects here.) The object must be available or
// deleted.
type StaDeleteSnapshotRequest struct {
	BackupObjectID string `json:"backup_object_id"`
}

// StaDeleteSnapshotResponse is empty.
type StaDeleteSnapshotResponse struct{}

// VerbStaCapacity is a plain RPC verb (not a job) on sta-handle.<node>: the
// space of the node's backing store, for the managers and operators (the
// scheduler places on offering_disk_space_mb; this shows what is really left).
const VerbStaCapacity = "capacity"

// StaCapacityRequest has no fields.
type StaCapacityRequest struct{}

// StaCapacityResponse is the backing store's space.
type StaCapacityResponse struct {
	BackingDriver string `json:"backing_driver"`
	TargetDriver  string `json:"target_driver"`
	TotalBytes    int64  `json:"total_bytes"`
	FreeBytes     int64  `json:"free_bytes"`
	Volumes       int    `json:"volumes"`
}
