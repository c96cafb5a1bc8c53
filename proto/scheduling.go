package proto

// Scheduler collector (spec/agents.md §2.1, DESIGN.md "Data flow of one
// instance"): the scheduler daemons place instances; the managers only hand
// out views and re-check plans. A daemon reads a view (get_view), runs the
// placement algorithms on it, and submits the result (submit_plan); the raft
// leader re-checks the plan against its current state and applies it in one
// transaction, or rejects it as stale (errs.Conflict) so that the daemon
// plans again on a fresh view. When nothing fits, the daemon reports it
// (schedule_failed) and the leader terminates the instance.
//
// Every verb runs on the raft leader; other managers answer errs.NoLeader
// and the daemon tries the next manager.
const (
	EndpointSchedulerCollector = "scheduler-collector"

	VerbGetView        = "get_view"
	VerbSubmitPlan     = "submit_plan"
	VerbScheduleFailed = "schedule_failed"
)

// IP lease kinds in a scheduling view (SchedLease.Kind).
const (
	SchedLeaseAuto     = "auto"     // chosen by the Incremental IP scheduler
	SchedLeaseReserved = "reserved" // a reserved address recorded as taken
	SchedLeaseStatic   = "static"   // asked for by address (services, handles, ipv4_addr)
)

// GetViewRequest asks for the view an instance is placed in. Start selects
// schedule_start_instance: the instance keeps its vifs and MACs and only
// gets a host and new addresses.
type GetViewRequest struct {
	InstanceID string `json:"instance_id"`
	Start      bool   `json:"start,omitempty"`
	// InstanceIDs asks for the requests of a batch of instances
	// (SchedView.Requests; InstanceID may then be empty). RequestsOnly
	// leaves the cluster part out: a daemon placing against a view it keeps
	// (and records its own placements in) only needs the new requests.
	InstanceIDs  []string `json:"instance_ids,omitempty"`
	RequestsOnly bool     `json:"requests_only,omitempty"`
}

// GetViewResponse is the view.
type GetViewResponse = SchedView

// SchedView is the part of the cluster state placement reads, as of raft
// index Index: every host, storage node and network with its usage and
// leases, the group ids, the MACs in use, and the instance's request.
// MAC ranges are not stored by the manager; the daemon's configuration
// supplies them.
type SchedView struct {
	Index        uint64             `json:"index"`
	Hosts        []SchedHost        `json:"hosts"`
	StorageNodes []SchedStorageNode `json:"storage_nodes"`
	Networks     []SchedNetwork     `json:"networks"`
	Groups       []string           `json:"groups"`     // host node, storage node and network group ids
	MacLeases    []string           `json:"mac_leases"` // 12 lower-case hex chars each
	Request      SchedRequest       `json:"request"`
	// Requests answer GetViewRequest.InstanceIDs, in order; an instance
	// that does not exist is left out.
	Requests []SchedRequest `json:"requests,omitempty"`
}

// SchedHost is a host node with its usage (from its HostUsage record).
type SchedHost struct {
	ID                string               `json:"id"`
	NodeID            string               `json:"node_id"`
	Arch              string               `json:"arch"`
	Hypervisor        string               `json:"hypervisor"`
	Online            bool                 `json:"online"`
	SchedulingEnabled bool                 `json:"scheduling_enabled"`
	OfferingCPUCores  int64                `json:"offering_cpu_cores"`
	OfferingMemoryMB  int64                `json:"offering_memory_size"`
	OfferingDiskMB    int64                `json:"offering_disk_space_mb"`
	UsedCPU           int64                `json:"used_cpu_cores"`
	UsedMemoryMB      int64                `json:"used_memory_size"`
	UsedDiskBytes     int64                `json:"used_disk_bytes"`
	Groups            []string             `json:"groups"`
	Instances         []SchedInstanceUsage `json:"instances"`
}

// SchedInstanceUsage is one instance counted on a host.
type SchedInstanceUsage struct {
	InstanceID  string  `json:"instance_id"`
	AccountID   string  `json:"account_id"`
	CPU         int64   `json:"cpu_cores"`
	MemoryMB    int64   `json:"memory_size"`
	QuotaWeight float64 `json:"quota_weight"`
}

// SchedStorageNode is a storage node with its free space.
type SchedStorageNode struct {
	ID        string `json:"id"`
	NodeID    string `json:"node_id"`
	Online    bool   `json:"online"`
	FreeBytes int64  `json:"free_bytes"`
}

// SchedNetwork is a network with its leases. Optional addresses are "".
type SchedNetwork struct {
	ID             string       `json:"id"`
	IPv4Network    string       `json:"ipv4_network"`
	Prefix         int          `json:"prefix"`
	Gateway        string       `json:"ipv4_gw,omitempty"`
	DNSServer      string       `json:"dns_server,omitempty"`
	DHCPServer     string       `json:"dhcp_server,omitempty"`
	MetadataServer string       `json:"metadata_server,omitempty"`
	IPAssignment   string       `json:"ip_assignment"`
	DhcpRanges     []DhcpRange  `json:"dhcp_ranges"`
	Leases         []SchedLease `json:"leases"`
	Groups         []string     `json:"groups"`
}

// SchedLease is one taken address. Seq orders leases by creation.
type SchedLease struct {
	IPv4 string `json:"ipv4"`
	Seq  uint64 `json:"seq"`
	Kind string `json:"kind"` // SchedLeaseAuto | SchedLeaseReserved | SchedLeaseStatic
}

// SchedRequest is the instance to place.
type SchedRequest struct {
	InstanceID  string  `json:"instance_id"`
	AccountID   string  `json:"account_id"`
	ServiceType string  `json:"service_type"`
	State       string  `json:"state"`        // the instance's state now
	HostNodeID  string  `json:"host_node_id"` // its host now ("" when none)
	Arch        string  `json:"arch"`
	Hypervisor  string  `json:"hypervisor"`
	CPU         int64   `json:"cpu_cores"`
	MemoryMB    int64   `json:"memory_size"`
	QuotaWeight float64 `json:"quota_weight"`
	// Volumes are the instance's volumes still to place (state scheduling).
	Volumes []SchedVolume `json:"volumes"`
	// RequestParams are the API's request_params (vifs, host_node_id, …).
	RequestParams map[string]any `json:"request_params"`
	// Vifs are the instance's existing vifs (schedule_start_instance).
	Vifs []SchedVif `json:"vifs,omitempty"`
}

// SchedVolume is a volume to place.
type SchedVolume struct {
	ID        string `json:"id"`
	SizeBytes int64  `json:"size"`
	Local     bool   `json:"local"`
}

// SchedVif is an existing vif of an instance being started again.
type SchedVif struct {
	ID           string `json:"id"`
	DeviceIndex  int    `json:"device_index"`
	NetworkID    string `json:"network_id,omitempty"`
	NatNetworkID string `json:"nat_network_id,omitempty"`
	MacAddr      string `json:"mac_addr"`
}

// SubmitPlanRequest is a placement for one instance.
type SubmitPlanRequest struct {
	InstanceID string `json:"instance_id"`
	Start      bool   `json:"start,omitempty"`
	HostNodeID string `json:"host_node_id"` // hn-…
	// Nics are the vifs to create (or, with Start, the existing vifs with
	// their new addresses: VifID set, MAC unchanged).
	Nics    []PlannedNic    `json:"nics"`
	Volumes []PlannedVolume `json:"volumes"`
	// ViewIndex is the raft index of the view the plan was made on
	// (informational: the leader re-checks the plan, not the index).
	ViewIndex uint64 `json:"view_index,omitempty"`
	// Plans, when set, is a batch: each plan is re-checked on its own and
	// all that hold are applied in one raft transaction; the answer has a
	// result per plan (SubmitPlanResponse.Results). The other fields are
	// then unused.
	Plans []SubmitPlanRequest `json:"plans,omitempty"`
}

// PlanResult is the outcome of one plan of a batch: the response, or the
// error the plan alone would have got (a stale plan is errs.Conflict).
type PlanResult struct {
	SubmitPlanResponse
	Error *WireError `json:"error,omitempty"`
}

// PlannedNic is one vif of a plan. Addresses are dotted quads, "" when the
// vif is on no network; the Auto flags tell the Incremental scheduler's
// picks from addresses asked for by the client.
type PlannedNic struct {
	VifID          string   `json:"vif_id,omitempty"`
	Name           string   `json:"name,omitempty"`
	Index          int      `json:"index"`
	NetworkID      string   `json:"network_id,omitempty"`
	IPv4Address    string   `json:"ipv4_address,omitempty"`
	IPv4Auto       bool     `json:"ipv4_auto,omitempty"`
	NatNetworkID   string   `json:"nat_network_id,omitempty"`
	NatIPv4Address string   `json:"nat_ipv4_address,omitempty"`
	NatIPv4Auto    bool     `json:"nat_ipv4_auto,omitempty"`
	MacAddr        string   `json:"mac_addr"` // 12 lower-case hex chars
	SecurityGroups []string `json:"security_groups"`
}

// PlannedVolume places one volume: on the instance's host (Local) or on a
// storage node.
type PlannedVolume struct {
	VolumeID      string `json:"volume_id"`
	Local         bool   `json:"local,omitempty"`
	StorageNodeID string `json:"storage_node_id,omitempty"`
}

// SubmitPlanResponse is what the leader applied.
type SubmitPlanResponse struct {
	InstanceID string   `json:"instance_id"`
	HostNodeID string   `json:"host_node_id"`
	VifIDs     []string `json:"vif_ids"`
	JobIDs     []string `json:"job_ids"` // jobs enqueued with the plan (run_local_store, …)
	// AlreadyApplied is set when the same plan had been applied before (a
	// retried submit whose first answer was lost).
	AlreadyApplied bool `json:"already_applied,omitempty"`
	// Results answer a batch (SubmitPlanRequest.Plans), in order.
	Results []PlanResult `json:"results,omitempty"`
}

// ScheduleFailedRequest reports that an instance cannot be placed: the
// leader terminates it with Reason as its last error and releases what it
// held (spec: a scheduling failure destroys the instance).
type ScheduleFailedRequest struct {
	InstanceID string `json:"instance_id"`
	Reason     string `json:"reason"`
}

// ScheduleFailedResponse is empty.
type ScheduleFailedResponse struct{}
