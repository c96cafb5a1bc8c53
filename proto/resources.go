// Package proto holds the types that cross process boundaries: the resource
// records the manager stores and agents read, and (later) RPC requests and
// events. Plain structs with JSON tags; no I/O.
package proto

import "time"

// Resource kinds: the state bucket names and the 12.03 uuid prefixes.
const (
	KindAccount        = "accounts"
	KindHostNode       = "host_nodes"
	KindStorageNode    = "storage_nodes"
	KindTag            = "tags" // host/storage/network groups
	KindDcNetwork      = "dc_networks"
	KindNetwork        = "networks"
	KindNetworkVif     = "network_vifs"
	KindNetworkService = "network_services"
	KindIPLease        = "ip_leases"
	KindIPPool         = "ip_pools"
	KindIPHandle       = "ip_handles"
	KindSecurityGroup  = "security_groups"
	KindSshKeyPair     = "ssh_key_pairs"
	KindImage          = "images"
	KindBackupStorage  = "backup_storages"
	KindBackupObject   = "backup_objects"
	KindJob            = "jobs"
	KindNodeState      = "node_states"
	KindUniqueName     = "unique_names" // uniqueness claims: "<scope>/<value>" -> owner id

	// Kinds of later issues, named here because catalog routes already look
	// at them (quotas, "in use" checks).
	KindInstance     = "instances"
	KindVolume       = "volumes"
	KindLoadBalancer = "load_balancers"
	KindNetworkRoute = "network_routes"
)

// Uuid prefixes (spec §1.9).
const (
	PrefixAccount          = "a"
	PrefixHostNode         = "hn"
	PrefixStorageNode      = "sn"
	PrefixHostNodeGroup    = "hng"
	PrefixStorageNodeGroup = "sng"
	PrefixNetworkGroup     = "nwg"
	PrefixDcNetwork        = "dcn"
	PrefixNetwork          = "nw"
	PrefixNetworkVif       = "vif"
	PrefixIPPool           = "ipp"
	PrefixIPHandle         = "ip"
	PrefixSecurityGroup    = "sg"
	PrefixSshKeyPair       = "ssh"
	PrefixImage            = "wmi"
	PrefixBackupStorage    = "bkst"
	PrefixBackupObject     = "bo"
	PrefixJob              = "job"
	PrefixInstance         = "i"
	PrefixVolume           = "vol"
)

// SystemAccount is the account of resources created without an account header.
const SystemAccount = "a-00000000"

// Timestamps every record carries.
type Timestamps struct {
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Label is a resource label (spec §2.1 items 22–29).
type Label struct {
	Name      string    `json:"name"`
	ValueType int       `json:"value_type"` // 1 string (≤255 bytes), 2 blob
	Value     string    `json:"value"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Account is created implicitly by the account header.
type Account struct {
	ID string `json:"id"`
	Timestamps
	Enabled   bool       `json:"enabled"`
	DeletedAt *time.Time `json:"deleted_at"`
}

// HostNode is a hypervisor host; NodeID binds it to a live hva agent.
type HostNode struct {
	ID string `json:"id"`
	Timestamps
	NodeID              string `json:"node_id"`
	Arch                string `json:"arch"`
	Hypervisor          string `json:"hypervisor"`
	DisplayName         string `json:"display_name"`
	OfferingCPUCores    int64  `json:"offering_cpu_cores"`
	OfferingMemorySize  int64  `json:"offering_memory_size"`
	OfferingDiskSpaceMB int64  `json:"offering_disk_space_mb"`
	SchedulingEnabled   bool   `json:"scheduling_enabled"`
}

// StorageNode is a storage server; NodeID binds it to a live sta agent.
type StorageNode struct {
	ID string `json:"id"`
	Timestamps
	NodeID              string `json:"node_id"`
	DisplayName         string `json:"display_name"`
	OfferingDiskSpaceMB int64  `json:"offering_disk_space_mb"`
	StorageType         string `json:"storage_type"` // iscsi | nfs
	IPAddress           string `json:"ip_address"`   // iscsi
	MountPoint          string `json:"mount_point"`  // nfs
}

// NodeState is the liveness of an agent, keyed by its node id (hva.demo1).
type NodeState struct {
	NodeID    string    `json:"node_id"`
	State     string    `json:"state"` // online | offline
	BootToken string    `json:"boot_token"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Tag type ids (spec §2.21).
const (
	TagTypeNetworkGroup     = 10
	TagTypeHostNodeGroup    = 11
	TagTypeStorageNodeGroup = 12
)

// Tag is a host node group, storage node group or network group.
type Tag struct {
	ID string `json:"id"`
	Timestamps
	AccountID   string   `json:"account_id"`
	TypeID      int      `json:"type_id"`
	Name        string   `json:"name"`
	Attributes  string   `json:"attributes"`
	ServiceType string   `json:"service_type"`
	MappedUUIDs []string `json:"mapped_uuids"`
}

// DcNetwork is a physical (datacenter) network that virtual networks live on.
type DcNetwork struct {
	ID string `json:"id"`
	Timestamps
	Name                 string   `json:"name"`
	Description          string   `json:"description"`
	VlanLeaseID          *string  `json:"vlan_lease_id"`
	OfferingNetworkModes []string `json:"offering_network_modes"`
	AllowNewNetworks     bool     `json:"allow_new_networks"`
}

// DhcpRange is an inclusive range of dynamically assignable addresses.
type DhcpRange struct {
	Begin string `json:"begin"`
	End   string `json:"end"`
}

// Network is a virtual IPv4 network on a DC network.
type Network struct {
	ID string `json:"id"`
	Timestamps
	AccountID          string      `json:"account_id"`
	DcNetworkID        string      `json:"dc_network_id"`
	IPv4Network        string      `json:"ipv4_network"`
	IPv4Gw             *string     `json:"ipv4_gw"`
	Prefix             int         `json:"prefix"`
	Metric             int         `json:"metric"`
	DomainName         string      `json:"domain_name"`
	DNSServer          *string     `json:"dns_server"`
	DHCPServer         *string     `json:"dhcp_server"`
	MetadataServer     *string     `json:"metadata_server"`
	MetadataServerPort *int        `json:"metadata_server_port"`
	NatNetworkID       *string     `json:"nat_network_id"`
	Description        string      `json:"description"`
	NetworkMode        string      `json:"network_mode"`
	Bandwidth          *float64    `json:"bandwidth"`
	IPAssignment       string      `json:"ip_assignment"`
	Editable           bool        `json:"editable"`
	ServiceType        string      `json:"service_type"`
	DisplayName        string      `json:"display_name"`
	DhcpRanges         []DhcpRange `json:"dhcp_ranges"`
}

// NetworkVif is a virtual NIC: on a network, optionally on an instance.
type NetworkVif struct {
	ID string `json:"id"`
	Timestamps
	AccountID      string     `json:"account_id"`
	NetworkID      *string    `json:"network_id"`
	InstanceID     *string    `json:"instance_id"`
	DeviceIndex    int        `json:"device_index"`
	MacAddr        string     `json:"mac_addr"` // 12 lower-case hex chars
	IPv4Address    *string    `json:"ipv4_address"`
	NatNetworkID   *string    `json:"nat_network_id"`
	NatIPv4Address *string    `json:"nat_ipv4_address"`
	SecurityGroups []string   `json:"security_groups"`
	DeletedAt      *time.Time `json:"deleted_at"`
}

// NetworkService is a service (dhcp, dns, gateway, …) offered on a network
// through a service vif.
type NetworkService struct {
	ID string `json:"id"` // "<network id>/<name>/<vif id>"
	Timestamps
	Name         string `json:"name"`
	NetworkID    string `json:"network_id"`
	NetworkVifID string `json:"network_vif_id"`
	IncomingPort *int   `json:"incoming_port"`
	OutgoingPort *int   `json:"outgoing_port"`
}

// IPLease is one address taken on a network, keyed "<network id>/<ipv4>", so
// that a create of the same key is how uniqueness is enforced by raft.
type IPLease struct {
	ID string `json:"id"`
	Timestamps
	NetworkID    string  `json:"network_id"`
	IPv4         string  `json:"ipv4"`
	Type         string  `json:"type"` // vif | reserved | service | handle
	NetworkVifID *string `json:"network_vif_id"`
	IPHandleID   *string `json:"ip_handle_id"`
	// Auto is set when the IP scheduler chose the address (upstream
	// alloc_type AUTO); the Incremental scheduler continues after the
	// newest auto lease.
	Auto bool `json:"auto"`
}

// IP lease types.
const (
	LeaseVif      = "vif"
	LeaseReserved = "reserved"
	LeaseService  = "service"
	LeaseHandle   = "handle"
)

// NetworkRoute is a NAT route between two addresses (spec §2.8 routes,
// §2.9 external_ip), keyed "<route_type>/<outer lease id>" so that an outer
// address carries at most one route.
type NetworkRoute struct {
	ID string `json:"id"`
	Timestamps
	RouteType      string  `json:"route_type"` // external-ip
	OuterNetworkID string  `json:"outer_network_id"`
	OuterVifID     *string `json:"outer_network_vif_id"`
	OuterIPv4      string  `json:"outer_ipv4"`
	InnerNetworkID string  `json:"inner_network_id"`
	InnerVifID     *string `json:"inner_network_vif_id"`
	InnerIPv4      string  `json:"inner_ipv4"`
	IPHandleID     *string `json:"ip_handle_id"`
}

// IPPool groups DC networks from which external addresses are handed out.
type IPPool struct {
	ID string `json:"id"`
	Timestamps
	AccountID    string   `json:"account_id"`
	DisplayName  string   `json:"display_name"`
	DcNetworkIDs []string `json:"dc_network_ids"`
}

// IPHandle is an address acquired from an IP pool.
type IPHandle struct {
	ID string `json:"id"`
	Timestamps
	AccountID    string     `json:"account_id"`
	IPPoolID     string     `json:"ip_pool_id"`
	NetworkID    *string    `json:"network_id"`
	NetworkVifID *string    `json:"network_vif_id"`
	IPv4         string     `json:"ipv4"`
	DisplayName  string     `json:"display_name"`
	ExpiresAt    *time.Time `json:"expires_at"`
}

// SecurityGroup holds firewall rules as text (parsed by common/sgrule).
type SecurityGroup struct {
	ID string `json:"id"`
	Timestamps
	AccountID   string  `json:"account_id"`
	Description string  `json:"description"`
	Rule        string  `json:"rule"`
	ServiceType string  `json:"service_type"`
	DisplayName string  `json:"display_name"`
	Labels      []Label `json:"labels"`
}

// SshKeyPair is a public key; the private key is never stored.
type SshKeyPair struct {
	ID string `json:"id"`
	Timestamps
	AccountID   string     `json:"account_id"`
	FingerPrint string     `json:"finger_print"`
	PublicKey   string     `json:"public_key"`
	Description string     `json:"description"`
	ServiceType string     `json:"service_type"`
	DisplayName string     `json:"display_name"`
	DeletedAt   *time.Time `json:"deleted_at"`
	Labels      []Label    `json:"labels"`
}

// ImageVolume is an extra disk of an image.
type ImageVolume struct {
	BackupObjectID string `json:"backup_object_id"`
}

// Image is a machine image backed by a backup object.
type Image struct {
	ID string `json:"id"`
	Timestamps
	AccountID         string         `json:"account_id"`
	BootDevType       int            `json:"boot_dev_type"` // 1 SAN/shared volume, 2 local
	Arch              string         `json:"arch"`
	Description       string         `json:"description"`
	IsPublic          bool           `json:"is_public"`
	State             string         `json:"state"`
	Features          map[string]any `json:"features"`
	FileFormat        string         `json:"file_format"`
	RootDevice        *string        `json:"root_device"`
	IsCacheable       bool           `json:"is_cacheable"`
	InstanceModelName *string        `json:"instance_model_name"`
	ParentImageID     *string        `json:"parent_image_id"`
	ServiceType       string         `json:"service_type"`
	DisplayName       string         `json:"display_name"`
	BackupObjectID    string         `json:"backup_object_id"`
	DeletedAt         *time.Time     `json:"deleted_at"`
	Volumes           []ImageVolume  `json:"volumes"`
	Vifs              []any          `json:"vifs"`
	OSType            string         `json:"os_type"`
	Labels            []Label        `json:"labels"`
}

// BackupStorage is where backup objects live (a directory or an HTTP base URI).
type BackupStorage struct {
	ID string `json:"id"`
	Timestamps
	DisplayName string     `json:"display_name"`
	StorageType string     `json:"storage_type"` // local | webdav | s3 | …
	Description string     `json:"description"`
	BaseURI     string     `json:"base_uri"`
	NodeID      string     `json:"node_id"`
	DeletedAt   *time.Time `json:"deleted_at"`
}

// BackupObject is a stored disk image or volume backup.
type BackupObject struct {
	ID string `json:"id"`
	Timestamps
	AccountID       string     `json:"account_id"`
	State           string     `json:"state"`
	Size            int64      `json:"size"` // bytes
	AllocationSize  *int64     `json:"allocation_size"`
	BackupStorageID string     `json:"backup_storage_id"`
	ObjectKey       string     `json:"object_key"`
	Checksum        string     `json:"checksum"`
	Progress        float64    `json:"progress"`
	Description     string     `json:"description"`
	DisplayName     string     `json:"display_name"`
	ServiceType     string     `json:"service_type"`
	ContainerFormat string     `json:"container_format"`
	SourceVolumeID  *string    `json:"source_volume_id"`
	DeletedAt       *time.Time `json:"deleted_at"`
	Labels          []Label    `json:"labels"`
}

// KindJobQueue holds one entry per unfinished job (id -> JobQueueEntry), so
// the leader's dispatcher finds the work left without scanning finished jobs.
// It is written in the same raft transaction as the job's state changes.
const KindJobQueue = "job_queue"

// JobQueueEntry marks an unfinished job.
type JobQueueEntry struct {
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	// ResourceID is the job's resource: its jobs are delivered one at a
	// time, oldest first (empty in entries written before it was kept).
	ResourceID string `json:"resource_id,omitempty"`
}

// Job is a durable unit of work (spec §2.14 shape). Two kinds share it: the
// 12.03 queue jobs (copy_to, QueueName = queue, popped by a worker) and agent
// jobs (QueueName = endpoint such as "hva-handle.hva.demo1", Verb set, Params =
// the verb's request), which the leader's dispatcher delivers. A job is
// created in the same raft transaction as the state change that needs it.
type Job struct {
	ID string `json:"id"`
	Timestamps
	ParentID      *string        `json:"parent_id"`
	QueueName     string         `json:"queue_name"`
	Params        map[string]any `json:"params"`
	ResourceID    string         `json:"resource_id"`
	WorkerID      *string        `json:"worker_id"`
	State         string         `json:"state"` // pending | running | finished
	RetryMax      int            `json:"retry_max"`
	RetryCount    int            `json:"retry_count"`
	FinishStatus  *string        `json:"finish_status"` // success | fail | cancel
	FinishMessage map[string]any `json:"finish_message"`
	FinishedAt    *time.Time     `json:"finished_at"`
	StartedAt     *time.Time     `json:"started_at"`
	// Agent jobs only.
	Verb string `json:"verb,omitempty"`
	// Deadline is created_at plus the verb's timeout, on the clock of the
	// leader that created the job: shown by GET /jobs, and the job's
	// timeout is Deadline - CreatedAt. The dispatcher does not compare it
	// with a clock; it counts the timeout down on the leader's monotonic
	// clock (manager/jobs, Dispatcher).
	Deadline *time.Time     `json:"deadline,omitempty"`
	Result   map[string]any `json:"result,omitempty"`
}

// UniqueName claims a unique value (a host node's node_id, a DC network's
// name) for its owner. Creating the claim in the same raft transaction as the
// owner makes the uniqueness check race-free.
type UniqueName struct {
	ID    string `json:"id"` // "<scope>/<value>"
	Owner string `json:"owner"`
}
