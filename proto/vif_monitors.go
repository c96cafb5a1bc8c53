package proto

import "time"

// Network vif monitors (spec §2.9 items 5–9): what an external monitoring
// gateway watches on a vif. Kept as their own records, as upstream's
// network_vif_monitors table, and deleted logically (deleted_at).
const (
	KindNetworkVifMonitor   = "network_vif_monitors"
	PrefixNetworkVifMonitor = "nwm"
)

// NetworkVifMonitor is one monitor of a vif.
type NetworkVifMonitor struct {
	ID string `json:"id"`
	Timestamps
	NetworkVifID string         `json:"network_vif_id"`
	Enabled      bool           `json:"enabled"`
	Title        string         `json:"title"`
	Params       map[string]any `json:"params"`
	DeletedAt    *time.Time     `json:"deleted_at"`
}
