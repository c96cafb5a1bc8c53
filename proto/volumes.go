package proto

import "time"

// Volumes issue: storage node usage, volume snapshots, and the scheduler
// verbs of schedule_volume (spec/agents.md §2.1, §4.2; api-12.03 §2.20).

// KindStorageUsage holds one StorageUsage per storage node that holds
// volumes. Every placement on a node and every release rewrites it guarded by
// its ModifyIndex (a create when the node has none), so two schedulers
// placing on the same node at once conflict in raft instead of overcommitting
// its offering_disk_space_mb.
const KindStorageUsage = "storage_usage"

// StorageUsage is what the volumes on a storage node take from its offering.
type StorageUsage struct {
	ID        string `json:"id"` // storage node id (sn-…)
	UsedBytes int64  `json:"used_bytes"`
	// Volumes is the size charged per volume, so that a release is
	// idempotent and gives back exactly what was taken.
	Volumes map[string]int64 `json:"volumes"`
}

// Volume snapshots (legacy 12.03 resource, prefix snap). A snapshot is kept
// as a backup object made by sta-handle create_snapshot; its state follows
// that object's.
const (
	KindVolumeSnapshot   = "volume_snapshots"
	PrefixVolumeSnapshot = "snap"
)

// Volume snapshot states (spec §3.3).
const (
	SnapshotInitialized = "initialized"
	SnapshotAvailable   = "available"
	SnapshotDeleted     = "deleted"
)

// VolumeSnapshot is a point-in-time copy of a volume stored as a backup object.
type VolumeSnapshot struct {
	ID string `json:"id"`
	Timestamps
	AccountID      string     `json:"account_id"`
	OriginVolumeID string     `json:"origin_volume_id"`
	StorageNodeID  *string    `json:"storage_node_id"`
	BackupObjectID string     `json:"backup_object_id"`
	Size           int64      `json:"size"` // bytes
	DisplayName    string     `json:"display_name"`
	ServiceType    string     `json:"service_type"`
	DeletedAt      *time.Time `json:"deleted_at"`
}

func (r *VolumeSnapshot) OwnerID() string         { return r.AccountID }
func (r *VolumeSnapshot) ServiceTypeName() string { return r.ServiceType }

// Scheduler-collector verbs of schedule_volume: the daemon reads the storage
// nodes (get_volume_view), chooses one with the configured storage node
// scheduler and submits it (submit_volume_plan); the leader re-checks the
// node's capacity against its StorageUsage and applies the plan with the
// sta-handle create_volume job, or rejects it as stale (errs.Conflict). When
// no node fits the daemon reports schedule_volume_failed and the leader
// marks the volume deleted with the reason.
const (
	VerbGetVolumeView        = "get_volume_view"
	VerbSubmitVolumePlan     = "submit_volume_plan"
	VerbScheduleVolumeFailed = "schedule_volume_failed"
)

// GetVolumeViewRequest asks for the view a standalone volume is placed in.
type GetVolumeViewRequest struct {
	VolumeID string `json:"volume_id"`
}

// VolumeSchedView is every storage node with its free space (from its
// StorageUsage) and the volume to place, as of raft index Index.
type VolumeSchedView struct {
	Index        uint64             `json:"index"`
	StorageNodes []SchedStorageNode `json:"storage_nodes"`
	Volume       SchedVolumeRequest `json:"volume"`
}

// SchedVolumeRequest is the volume to place.
type SchedVolumeRequest struct {
	ID            string `json:"id"`
	AccountID     string `json:"account_id"`
	ServiceType   string `json:"service_type"`
	State         string `json:"state"`           // the volume's state now
	StorageNodeID string `json:"storage_node_id"` // its node now ("" when none)
	SizeBytes     int64  `json:"size"`
}

// SubmitVolumePlanRequest places one volume on a storage node.
type SubmitVolumePlanRequest struct {
	VolumeID      string `json:"volume_id"`
	StorageNodeID string `json:"storage_node_id"`
	ViewIndex     uint64 `json:"view_index,omitempty"`
}

// SubmitVolumePlanResponse is what the leader applied.
type SubmitVolumePlanResponse struct {
	VolumeID      string `json:"volume_id"`
	StorageNodeID string `json:"storage_node_id"`
	JobID         string `json:"job_id,omitempty"` // sta-handle create_volume
	// AlreadyApplied is set when the volume had been placed on that node
	// before (a retried submit whose first answer was lost).
	AlreadyApplied bool `json:"already_applied,omitempty"`
}

// ScheduleVolumeFailedRequest reports that a volume cannot be placed; the
// leader marks it deleted with Reason as its last error.
type ScheduleVolumeFailedRequest struct {
	VolumeID string `json:"volume_id"`
	Reason   string `json:"reason"`
}

// ScheduleVolumeFailedResponse is empty.
type ScheduleVolumeFailedResponse struct{}
