// Package health turns serf membership into node liveness: the leader keeps
// one NodeState per agent node id, online while its agent is an alive serf
// member, offline once it failed or left (spec §3.4). Host and storage node
// status, and the schedulers, read these records.
package health

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Node states.
const (
	Online  = "online"
	Offline = "offline"
)

// Monitor is the leader loop keeping NodeState records in step with serf.
type Monitor struct {
	cluster  jobs.Cluster
	members  func() []jobs.Member
	logger   *slog.Logger
	interval time.Duration
	now      func() time.Time
}

// New builds a monitor that reconciles every interval.
func New(c jobs.Cluster, members func() []jobs.Member, logger *slog.Logger, interval time.Duration) *Monitor {
	if interval <= 0 {
		interval = time.Second
	}
	return &Monitor{cluster: c, members: members, logger: logger, interval: interval,
		now: func() time.Time { return time.Now().UTC().Truncate(time.Second) }}
}

// Run reconciles until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m.cluster.IsLeader() {
			if err := m.Reconcile(ctx); err != nil {
				m.logger.Warn("node health reconcile", "error", err)
			}
		}
	}
}

// agentRoles are the members whose liveness the state tracks.
var agentRoles = map[string]bool{proto.RoleHva: true, proto.RoleSta: true}

// Reconcile writes the NodeState changes serf shows since the last run.
func (m *Monitor) Reconcile(ctx context.Context) error {
	want := map[string]proto.NodeState{}
	for _, mem := range m.members() {
		node := mem.Tags[proto.TagNodeID]
		if !agentRoles[mem.Tags[proto.TagRole]] || node == "" {
			continue
		}
		st := Offline
		if mem.Status == "alive" {
			st = Online
		}
		// A node id seen twice (an agent restarted under a new serf name)
		// counts as online if any incarnation is alive.
		if prev, ok := want[node]; ok && prev.State == Online {
			continue
		}
		want[node] = proto.NodeState{NodeID: node, State: st, BootToken: mem.Name}
	}
	return state.Commit(ctx, m.cluster.Store(), m.cluster, func(tx *state.Tx, b *state.Builder) error {
		now := m.now()
		// Nodes the state thinks online but serf no longer lists go offline.
		err := tx.Each(proto.KindNodeState, false, func(e state.Entry) error {
			var ns proto.NodeState
			if json.Unmarshal(e.Value, &ns) == nil && ns.State == Online {
				if _, ok := want[ns.NodeID]; !ok {
					want[ns.NodeID] = proto.NodeState{NodeID: ns.NodeID, State: Offline, BootToken: ns.BootToken}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for node, ns := range want {
			var cur proto.NodeState
			_, err := tx.Get(proto.KindNodeState, node, &cur)
			if err == nil && cur.State == ns.State && cur.BootToken == ns.BootToken {
				continue
			}
			if err != nil && ns.State == Offline {
				continue // never seen online: no record means offline already
			}
			ns.UpdatedAt = now
			b.Put(proto.KindNodeState, node, ns)
			m.logger.Info("node state", "node_id", node, "state", ns.State)
		}
		return nil
	})
}
