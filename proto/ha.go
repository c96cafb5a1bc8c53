package proto

import (
	"encoding/json"
	"time"
)

// Host-failure HA with fencing (spec/agents.md §2.1 evacuate_from, §8).
//
// An hva proves it is in contact with the managers by a heartbeat
// (hva-collector heartbeat) that only the raft leader answers. An hva that
// has had no answered heartbeat for its fence timeout fences itself: it
// hard-stops its domains and starts none until it is in contact again. It
// publishes that timeout in the serf tag TagFenceMs, so the leader knows,
// even once the hva is gone, how long to wait: it evacuates a host only when
// serf says the hva failed and no heartbeat came for ha_reschedule_after,
// which is longer than the hva's fence timeout plus a margin. By then the
// host has fenced itself, so an instance never runs on two hosts at once.
//
// The evacuation is recorded as a HostFence: while it exists the host's
// heartbeats answer Fenced, and a returning hva keeps its domains stopped
// and removes those of instances that moved.

// TagFenceMs is the serf tag in which an hva publishes its fence timeout in
// milliseconds; "0" (or no tag) means it does not fence itself, and the
// managers never evacuate it on their own.
const TagFenceMs = "fence_ms"

// VerbHeartbeat is hva-collector heartbeat.
const VerbHeartbeat = "heartbeat"

// HeartbeatRequest is an hva's periodic proof of contact.
type HeartbeatRequest struct {
	NodeID string `json:"node_id"`
	// FenceAfterMs is the hva's fence timeout (as its serf tag says).
	FenceAfterMs int64 `json:"fence_after_ms"`
}

// HeartbeatResponse tells the hva whether the managers have fenced it.
type HeartbeatResponse struct {
	// Fenced: the managers evacuated this host (or are evacuating it); the
	// hva keeps every domain stopped until a later heartbeat says otherwise.
	Fenced bool   `json:"fenced"`
	Reason string `json:"reason,omitempty"`
	// ConfigError, when set, says why the managers will not evacuate this
	// host on their own (its fence timeout leaves no margin before theirs).
	ConfigError string `json:"config_error,omitempty"`
}

// KindHostFence holds one HostFence per hva node id the managers have
// decided to evacuate.
const KindHostFence = "host_fences"

// HostFence records that a host's instances are being, or have been, moved
// away: the host must run none of them. The leader removes it once the
// evacuation has ended and the host's hva is back in contact.
type HostFence struct {
	ID         string    `json:"id"` // agent node id (hva.demo1)
	HostNodeID string    `json:"host_node_id"`
	Reason     string    `json:"reason"`
	JobID      string    `json:"job_id"` // the scheduler.evacuate_from job
	CreatedAt  time.Time `json:"created_at"`
}

// Scheduler-collector verbs of evacuate_from: the scheduler daemon reads the
// instances of the host and the other hosts (get_evacuation), places each
// HA instance and hands the move to the leader, which re-checks and applies
// it (evacuate_instance), and finally re-enables scheduling on the host
// (finish_evacuation).
const (
	VerbGetEvacuation    = "get_evacuation"
	VerbEvacuateInstance = "evacuate_instance"
	VerbFinishEvacuation = "finish_evacuation"
)

// GetEvacuationRequest names the host to evacuate.
type GetEvacuationRequest struct {
	HostNodeID string `json:"host_node_id"`
}

// GetEvacuationResponse is the host, the hosts its instances may go to,
// and its instances, as of raft index Index.
type GetEvacuationResponse struct {
	Index      uint64 `json:"index"`
	HostNodeID string `json:"host_node_id"`
	NodeID     string `json:"node_id"`
	// Fenced: the host is fenced (its domains are down); moved instances
	// boot at once on their new host. Otherwise the old domain is removed
	// first.
	Fenced    bool           `json:"fenced"`
	Hosts     []SchedHost    `json:"hosts"`
	Groups    []string       `json:"groups"`
	Instances []EvacInstance `json:"instances"`
}

// EvacInstance is one alive instance on the evacuated host. Request.State is
// its state, Request.HostNodeID the evacuated host, Request.Volumes its
// local volumes (what it needs of a new host's disk).
type EvacInstance struct {
	Request   SchedRequest `json:"request"`
	HaEnabled bool         `json:"ha_enabled"`
}

// EvacuateInstanceRequest moves one instance off the host to ToHostNodeID,
// or, with ToHostNodeID empty, halts it there with Reason as its last error.
type EvacuateInstanceRequest struct {
	HostNodeID   string `json:"host_node_id"`
	InstanceID   string `json:"instance_id"`
	ToHostNodeID string `json:"to_host_node_id,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// Outcomes of evacuate_instance.
const (
	EvacMoved  = "moved"  // placed on the new host (booting, or kept halted)
	EvacHalted = "halted" // halted (or halting) on the evacuated host
	EvacLeft   = "left"   // left as it is (a job of its own ends it: migrating, stopping, …)
	EvacGone   = "gone"   // not on the host any more (terminated, moved before)
)

// EvacuateInstanceResponse is what the leader did.
type EvacuateInstanceResponse struct {
	Outcome string   `json:"outcome"`
	Message string   `json:"message,omitempty"`
	JobIDs  []string `json:"job_ids,omitempty"`
}

// FinishEvacuationRequest ends an evacuation: unless KeepNodeOffline, the
// host is enabled for scheduling again.
type FinishEvacuationRequest struct {
	HostNodeID      string `json:"host_node_id"`
	KeepNodeOffline bool   `json:"keep_node_offline"`
}

// FinishEvacuationResponse is empty.
type FinishEvacuationResponse struct{}

// FollowUpJob is a job an agent submits (job-collector submit_job) once its
// own job has done its part: the boot of an evacuated instance on its new
// host waits until the old host's cleanup removed the old domain.
type FollowUpJob struct {
	Endpoint   string          `json:"endpoint"`
	Verb       string          `json:"verb"`
	Args       json.RawMessage `json:"args"`
	ResourceID string          `json:"resource_id,omitempty"`
}
