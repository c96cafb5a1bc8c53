package proto

// Event is a fan-out notification (spec/agents.md §3): a name and ids only.
// Receivers reconcile from the manager's state, so an event that is lost is
// repaired by the next periodic reconcile. Events travel as serf user events
// and must stay small (common/agent checks the size).
type Event struct {
	Name string   `json:"name"`
	Args []string `json:"args,omitempty"`
}

// Global event names.
const (
	EventInstanceStarted        = "hva/instance_started"    // [instance]
	EventInstanceTerminated     = "hva/instance_terminated" // [instance]
	EventInstanceTurnedOff      = "hva/instance_turnedoff"  // [instance]
	EventInstanceTurnedOn       = "hva/instance_turnedon"   // [instance]
	EventFaultInstance          = "hva/fault_instance"      // [instance]
	EventVolumeAttaching        = "hva/volume_attaching"    // [volume] or [instance, volume]
	EventVolumeAttached         = "hva/volume_attached"
	EventVolumeAvailable        = "hva/volume_available"
	EventVolumeDetached         = "hva/volume_detached"
	EventVolumeDeleted          = "hva/volume_deleted"
	EventSecurityGroupUpdated   = "hva/security_group_updated" // [sg] (legacy)
	EventInstanceScheduled      = "instance.scheduled"         // [instance]
	EventInstanceMonitorRefresh = "instance.monitoring.refreshed"
	EventVifMonitoringCreated   = "vif.monitoring.created"
	EventVifMonitoringUpdated   = "vif.monitoring.updated"
	EventVifMonitoringDeleted   = "vif.monitoring.deleted"
)

// Resource-scoped event verbs: the name is "<resource or node id>/<verb>".
const (
	EvVnicJoined         = "vnic_joined"
	EvVnicLeft           = "vnic_left"
	EvJoinedGroup        = "joined_group"
	EvLeftGroup          = "left_group"
	EvReferencerAdded    = "referencer_added"
	EvReferencerRemoved  = "referencer_removed"
	EvRulesUpdated       = "rules_updated"
	EvVnicCreated        = "vnic_created"
	EvVnicDestroyed      = "vnic_destroyed"
	EvInstanceTerminated = "instance_terminated"
)

// ScopedEvent is the name of a resource-scoped event.
func ScopedEvent(id, verb string) string { return id + "/" + verb }

// EventVnicJoined: a vif joined security group sg. Args [vif].
func EventVnicJoined(sg string) string { return ScopedEvent(sg, EvVnicJoined) }

// EventVnicLeft: a vif left security group sg. Args [vif].
func EventVnicLeft(sg string) string { return ScopedEvent(sg, EvVnicLeft) }

// EventJoinedGroup: vif joined a group. Args [sg].
func EventJoinedGroup(vif string) string { return ScopedEvent(vif, EvJoinedGroup) }

// EventLeftGroup: vif left a group. Args [sg].
func EventLeftGroup(vif string) string { return ScopedEvent(vif, EvLeftGroup) }

// EventReferencerAdded: a group whose rules reference sg appeared. Args [referencing sg].
func EventReferencerAdded(sg string) string { return ScopedEvent(sg, EvReferencerAdded) }

// EventReferencerRemoved is the reverse of EventReferencerAdded. Args [sg].
func EventReferencerRemoved(sg string) string { return ScopedEvent(sg, EvReferencerRemoved) }

// EventRulesUpdated: sg's rules changed. No args.
func EventRulesUpdated(sg string) string { return ScopedEvent(sg, EvRulesUpdated) }

// EventVnicCreated: a vif came up on hva node. Args [vif].
func EventVnicCreated(node string) string { return ScopedEvent(node, EvVnicCreated) }

// EventVnicDestroyed: a vif went away on hva node. Args [vif].
func EventVnicDestroyed(node string) string { return ScopedEvent(node, EvVnicDestroyed) }

// EventNodeInstanceTerminated: an instance on hva node terminated. Args [instance].
func EventNodeInstanceTerminated(node string) string {
	return ScopedEvent(node, EvInstanceTerminated)
}
