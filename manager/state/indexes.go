package state

import "github.com/vdc-project/vdc/proto"

// Names of the secondary indexes (see index.go). Each is named for what it
// finds: IdxInstancesByHost finds instances by host node id.
const (
	IdxInstancesByHost             = "instances_by_host"               // Instance.HostNodeID
	IdxInstancesByState            = "instances_by_state"              // Instance.State
	IdxVifsByInstance              = "network_vifs_by_instance"        // NetworkVif.InstanceID
	IdxVolumesByInstance           = "volumes_by_instance"             // Volume.InstanceID
	IdxUniqueNamesByOwner          = "unique_names_by_owner"           // UniqueName.Owner
	IdxHostNodesByNodeID           = "host_nodes_by_node_id"           // HostNode.NodeID
	IdxStorageNodesByNode          = "storage_nodes_by_node_id"        // StorageNode.NodeID
	IdxVolumesByStorage            = "volumes_by_storage_node"         // Volume.StorageNodeID
	IdxBackupObjectsBySourceVolume = "backup_objects_by_source_volume" // BackupObject.SourceVolumeID
	IdxLeasesByNetwork             = "ip_leases_by_network"            // IPLease.NetworkID
	IdxJobQueueByEndpoint          = "job_queue_by_endpoint"           // JobQueueEntry.Endpoint
)

// Indexes is the table of secondary indexes state.db keeps. Changing it
// rebuilds the indexes of an existing file when it is next opened.
func Indexes() []Index {
	return []Index{
		{IdxInstancesByHost, proto.KindInstance, keysOf(func(v *struct {
			H *string `json:"host_node_id"`
		}) []string {
			return one(v.H)
		})},
		{IdxInstancesByState, proto.KindInstance, keysOf(func(v *struct {
			S string `json:"state"`
		}) []string {
			return one(&v.S)
		})},
		{IdxVifsByInstance, proto.KindNetworkVif, keysOf(func(v *struct {
			I *string `json:"instance_id"`
		}) []string {
			return one(v.I)
		})},
		{IdxVolumesByInstance, proto.KindVolume, keysOf(func(v *struct {
			I *string `json:"instance_id"`
		}) []string {
			return one(v.I)
		})},
		{IdxVolumesByStorage, proto.KindVolume, keysOf(func(v *struct {
			S *string `json:"storage_node_id"`
		}) []string {
			return one(v.S)
		})},
		{IdxBackupObjectsBySourceVolume, proto.KindBackupObject, keysOf(func(v *struct {
			S *string `json:"source_volume_id"`
		}) []string {
			return one(v.S)
		})},
		{IdxUniqueNamesByOwner, proto.KindUniqueName, keysOf(func(v *struct {
			O string `json:"owner"`
		}) []string {
			return one(&v.O)
		})},
		{IdxHostNodesByNodeID, proto.KindHostNode, keysOf(func(v *struct {
			N string `json:"node_id"`
		}) []string {
			return one(&v.N)
		})},
		{IdxStorageNodesByNode, proto.KindStorageNode, keysOf(func(v *struct {
			N string `json:"node_id"`
		}) []string {
			return one(&v.N)
		})},
		{IdxLeasesByNetwork, proto.KindIPLease, keysOf(func(v *struct {
			N string `json:"network_id"`
		}) []string {
			return one(&v.N)
		})},
		{IdxJobQueueByEndpoint, proto.KindJobQueue, keysOf(func(v *struct {
			E string `json:"endpoint"`
		}) []string {
			return one(&v.E)
		})},
	}
}
