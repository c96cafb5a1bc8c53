package proto

import "strings"

// RPC wire constants (DESIGN.md "Messaging"): every daemon serves
// POST RPCPathPrefix + "<endpoint>/<verb>" with a JSON body on its rpc address.
const (
	RPCPathPrefix = "/rpc/v1/"
	// HeaderAuthorization carries "Bearer <token>" when the cluster uses a shared token.
	HeaderAuthorization = "Authorization"
)

// RPCPath is the URL path of one endpoint verb.
func RPCPath(endpoint, verb string) string { return RPCPathPrefix + endpoint + "/" + verb }

// Serf member tags every vdc daemon sets (DESIGN.md "Processes"). The values
// are those manager/cluster uses.
const (
	TagRole   = "role"
	TagNodeID = "node_id"
	TagRPC    = "rpc"
	// TagEvents lists the event patterns the member subscribes to,
	// separated by spaces; publishers send an event only where a pattern
	// matches it (common/agent/interest.go).
	TagEvents = "events"
)

// Roles (values of TagRole).
const (
	RoleManager   = "manager"
	RoleScheduler = "scheduler"
	RoleHva       = "hva"
	RoleSta       = "sta"
)

// WireError is how an error crosses RPC: the error kind's code (common/errs
// Kind.WireCode, which is Kind.Code except where two kinds share a 12.03
// code) and its message. common/rpc converts both ways.
type WireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *WireError) Error() string { return e.Code + ": " + e.Message }

// Endpoint base names (spec/agents.md §1.1). Node-scoped endpoints embed the
// agent's full node id after the base: "hva-handle.hva.demo1".
const (
	EndpointScheduler        = "scheduler"
	EndpointHvaHandle        = "hva-handle"
	EndpointLocalStoreHandle = "local-store-handle"
	EndpointMigrationHandle  = "migration-handle"
	EndpointWindowsHandle    = "windows-handle"
	EndpointStaHandle        = "sta-handle"
	// EndpointJobControl is served by every agent: status and cancel of the
	// jobs it has been handed (isono's job-stats.<node_id>).
	EndpointJobControl = "job-control"
)

// HvaHandle is the hva-handle endpoint of an hva node ("hva-handle.hva.demo1").
func HvaHandle(nodeID string) string { return EndpointHvaHandle + "." + nodeID }

// LocalStoreHandle is the local-store-handle endpoint of an hva node.
func LocalStoreHandle(nodeID string) string { return EndpointLocalStoreHandle + "." + nodeID }

// MigrationHandle is the migration-handle endpoint of an hva node.
func MigrationHandle(nodeID string) string { return EndpointMigrationHandle + "." + nodeID }

// WindowsHandle is the windows-handle endpoint of an hva node.
func WindowsHandle(nodeID string) string { return EndpointWindowsHandle + "." + nodeID }

// StaHandle is the sta-handle endpoint of an sta node ("sta-handle.sta.demo1").
func StaHandle(nodeID string) string { return EndpointStaHandle + "." + nodeID }

// JobControl is the job-control endpoint of any agent.
func JobControl(nodeID string) string { return EndpointJobControl + "." + nodeID }

// EndpointBase is the endpoint without its node id: "hva-handle" for
// "hva-handle.hva.demo1", "scheduler" for "scheduler".
func EndpointBase(endpoint string) string {
	base, _, _ := strings.Cut(endpoint, ".")
	return base
}

// EndpointNode is the node id part of a node-scoped endpoint ("hva.demo1"
// for "hva-handle.hva.demo1"), "" for cluster-wide ones such as "scheduler".
func EndpointNode(endpoint string) string {
	_, node, _ := strings.Cut(endpoint, ".")
	return node
}
