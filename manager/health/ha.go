package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Host-failure HA, the managers' side (proto/ha.go has the protocol). The
// leader answers hva heartbeats and remembers, in memory, when each hva's
// last one arrived. A host is evacuated (scheduler.evacuate_from, once: the
// HostFence written with the job makes it idempotent across passes and
// leaders) when
//   - serf reports its hva failed (not left: an hva stopped on purpose may
//     leave its VMs running, and its host is evacuated by an operator);
//   - its hva publishes a fence timeout (serf tag fence_ms) that, plus
//     FenceMargin, is at most RescheduleAfter;
//   - no heartbeat came for RescheduleAfter, counted from the later of its
//     last heartbeat and the moment this manager became leader (a new
//     leader does not know what the old one heard).
// By then the hva has had no answered heartbeat for longer than its fence
// timeout plus the margin, so it has fenced itself. The margin covers the
// time the hva takes to stop its domains.
//
// The HostFence is removed once the evacuation job has ended and the hva is
// alive and heartbeating again; until then its heartbeats answer Fenced.

// HA defaults.
const (
	DefaultRescheduleAfter = 45 * time.Second
	DefaultFenceMargin     = 10 * time.Second
	DefaultHAInterval      = time.Second
)

// HAConfig configures automatic evacuation.
type HAConfig struct {
	// RescheduleAfter is dcmgr ha_reschedule_after: how long a failed hva's
	// heartbeats must have been missing before its host is evacuated. 0
	// turns automatic evacuation off (heartbeats are still answered).
	RescheduleAfter time.Duration
	// FenceMargin is dcmgr ha_fence_margin: how much longer than an hva's
	// fence timeout RescheduleAfter must be for that hva's host to be
	// evacuated automatically.
	FenceMargin time.Duration
	// Interval is how often the leader looks for failed hosts.
	Interval time.Duration
	// Now is the clock of heartbeat ages (nil = time.Now, monotonic).
	Now func() time.Time
	// StampNow is the clock of stored timestamps (nil = UTC seconds).
	StampNow func() time.Time
}

// DefaultHAConfig is HA on with the default timeouts.
func DefaultHAConfig() HAConfig {
	return HAConfig{RescheduleAfter: DefaultRescheduleAfter, FenceMargin: DefaultFenceMargin, Interval: DefaultHAInterval}
}

// Validate checks what can be checked before any hva is known: the
// margin fits in RescheduleAfter. Each hva's fence timeout is checked
// against them when it is known (its serf tag, its heartbeats).
func (c *HAConfig) Validate() error {
	switch {
	case c.RescheduleAfter < 0 || c.FenceMargin < 0 || c.Interval < 0:
		return errors.New("ha_reschedule_after, ha_fence_margin and the HA interval must not be negative")
	case c.RescheduleAfter > 0 && c.RescheduleAfter <= c.FenceMargin:
		return fmt.Errorf("ha_reschedule_after (%s) must be longer than ha_fence_margin (%s): an hva fences itself "+
			"after its fence_after_ms, and the managers must wait at least that plus the margin", c.RescheduleAfter, c.FenceMargin)
	}
	return nil
}

// HACluster is what HA needs of the manager's cluster layer
// (*cluster.Server).
type HACluster interface {
	jobs.Cluster
	// VerifyLeader confirms leadership with a quorum.
	VerifyLeader(ctx context.Context) error
	// Stats carries raft's "term".
	Stats() map[string]string
}

// HA is the leader loop that evacuates failed hosts, and the heartbeat
// verb.
type HA struct {
	cluster HACluster
	members func() []jobs.Member
	cfg     HAConfig
	logger  *slog.Logger

	// mu orders heartbeats against evacuation decisions: a decision checks
	// the heartbeat age and writes the fence under it, and a heartbeat
	// records its arrival and then reads the fence, so a heartbeat either
	// prevents the decision or sees its fence.
	mu       sync.Mutex
	term     string
	since    time.Time            // when this manager's current term began, as far as it saw
	contact  map[string]time.Time // node id → last heartbeat this leader answered
	told     map[string]bool      // node ids this leader has told they are fenced
	reported map[string]string    // node id → last configuration problem logged
}

// NewHA builds the loop; Run starts it and Register serves the heartbeat.
func NewHA(c HACluster, members func() []jobs.Member, cfg HAConfig, logger *slog.Logger) (*HA, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultHAInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StampNow == nil {
		cfg.StampNow = func() time.Time { return time.Now().UTC().Truncate(time.Second) }
	}
	return &HA{cluster: c, members: members, cfg: cfg, logger: logger.With("component", "ha"),
		contact: map[string]time.Time{}, told: map[string]bool{}, reported: map[string]string{}}, nil
}

// Register serves hva-collector heartbeat on srv.
func (m *HA) Register(srv *rpc.Server) {
	srv.Register(proto.EndpointHvaCollector, proto.VerbHeartbeat, rpc.Func(m.Heartbeat))
}

// leaderTermLocked notes a new term (or the first one seen): contact ages
// then count from now. It returns false when this manager does not lead.
func (m *HA) leaderTermLocked() bool {
	if !m.cluster.IsLeader() {
		return false
	}
	if t := m.cluster.Stats()["term"]; t != m.term || m.since.IsZero() {
		m.term, m.since = t, m.cfg.Now()
		clear(m.contact)
		clear(m.told)
	}
	return true
}

// Heartbeat is hva-collector heartbeat: it records the hva's contact and
// answers whether its host is fenced, once this manager has confirmed that
// it still leads (a deposed leader's answer would count as contact the
// real leader never saw).
func (m *HA) Heartbeat(ctx context.Context, req proto.HeartbeatRequest) (*proto.HeartbeatResponse, error) {
	if req.NodeID == "" {
		return nil, errs.New(errs.InvalidParameter, "heartbeat without a node id")
	}
	// Under mutual TLS an hva speaks only for its own host: a heartbeat in
	// another host's name would keep a failed host from being evacuated.
	if p, ok := rpc.PeerFrom(ctx); ok && (p.Role != proto.RoleHva || p.Name != req.NodeID) {
		return nil, errs.New(errs.Unauthorized, "%s %q may not send heartbeats for %q", p.Role, p.Name, req.NodeID)
	}
	m.mu.Lock()
	if !m.leaderTermLocked() {
		m.mu.Unlock()
		return nil, errs.New(errs.NoLeader, "this manager is not the leader")
	}
	m.contact[req.NodeID] = m.cfg.Now()
	m.mu.Unlock()

	resp := &proto.HeartbeatResponse{ConfigError: m.configProblem(time.Duration(req.FenceAfterMs) * time.Millisecond)}
	err := m.cluster.Store().View(func(tx *state.Tx) error {
		var f proto.HostFence
		_, err := tx.Get(proto.KindHostFence, req.NodeID, &f)
		switch {
		case err == nil:
			resp.Fenced, resp.Reason = true, f.Reason
			return nil
		case errs.Is(err, errs.NotFound):
			return nil
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := m.cluster.VerifyLeader(ctx); err != nil {
		return nil, errs.Wrap(errs.NoLeader, err, "leadership not confirmed")
	}
	if resp.Fenced {
		m.mu.Lock()
		m.told[req.NodeID] = true
		m.mu.Unlock()
	}
	return resp, nil
}

// configProblem says why an hva fencing after fence would not be
// evacuated automatically ("" when it would).
func (m *HA) configProblem(fence time.Duration) string {
	switch {
	case m.cfg.RescheduleAfter == 0:
		return ""
	case fence <= 0:
		return "the hva does not fence itself (fence_after_ms 0): its instances are not restarted elsewhere automatically"
	case fence+m.cfg.FenceMargin > m.cfg.RescheduleAfter:
		return fmt.Sprintf("the hva fences itself after %s, which with ha_fence_margin %s exceeds ha_reschedule_after %s: "+
			"its instances are not restarted elsewhere automatically; lower fence_after_ms or raise ha_reschedule_after",
			fence, m.cfg.FenceMargin, m.cfg.RescheduleAfter)
	}
	return ""
}

// Run checks for failed hosts every Interval while this manager leads.
func (m *HA) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.Check(ctx); err != nil && ctx.Err() == nil {
			m.logger.Warn("HA check", "error", err)
		}
	}
}

// failedHva is an hva serf reports failed.
type failedHva struct {
	node  string
	fence time.Duration
}

// Check runs one pass: evacuates the hosts whose hva failed long enough
// ago, and lifts the fences of hosts that are back.
func (m *HA) Check(ctx context.Context) error {
	m.mu.Lock()
	leader := m.leaderTermLocked()
	m.mu.Unlock()
	if !leader {
		return nil
	}
	alive := map[string]bool{}
	var failed []failedHva
	for _, mem := range m.members() {
		node := mem.Tags[proto.TagNodeID]
		if mem.Tags[proto.TagRole] != proto.RoleHva || node == "" {
			continue
		}
		switch mem.Status {
		case "alive":
			alive[node] = true
		case "failed":
			ms, _ := strconv.ParseInt(mem.Tags[proto.TagFenceMs], 10, 64)
			failed = append(failed, failedHva{node: node, fence: time.Duration(ms) * time.Millisecond})
		}
	}
	var errList []error
	if m.cfg.RescheduleAfter > 0 {
		for _, f := range failed {
			if alive[f.node] {
				continue // a new incarnation is up
			}
			if err := m.maybeEvacuate(ctx, f); err != nil {
				errList = append(errList, err)
			}
		}
	}
	if err := m.liftFences(ctx, alive); err != nil {
		errList = append(errList, err)
	}
	return errors.Join(errList...)
}

// maybeEvacuate starts the evacuation of a failed hva's host when its
// heartbeats have been missing for RescheduleAfter.
func (m *HA) maybeEvacuate(ctx context.Context, f failedHva) error {
	if p := m.configProblem(f.fence); p != "" {
		m.mu.Lock()
		changed := m.reported[f.node] != p
		m.reported[f.node] = p
		m.mu.Unlock()
		if changed {
			m.logger.Error("failed host not evacuated", "node_id", f.node, "problem", p)
		}
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.leaderTermLocked() {
		return nil
	}
	last := m.since
	if c, ok := m.contact[f.node]; ok && c.After(last) {
		last = c
	}
	silent := m.cfg.Now().Sub(last)
	if silent < m.cfg.RescheduleAfter {
		return nil
	}
	reason := fmt.Sprintf("hva %s failed (serf) and sent no heartbeat for %s (it fences itself after %s)",
		f.node, silent.Round(time.Second), f.fence)
	var hostID, jobID string
	err := state.Commit(ctx, m.cluster.Store(), m.cluster, func(tx *state.Tx, b *state.Builder) error {
		hostID, jobID = "", ""
		if tx.Exists(proto.KindHostFence, f.node) {
			return nil // evacuated already (idempotent)
		}
		var host proto.HostNode
		var hm state.Meta
		err := state.EachOfIn(tx, state.IdxHostNodesByNodeID, f.node, false, func(h *proto.HostNode, m state.Meta) error {
			host, hm = *h, m
			return state.ErrStop
		})
		if err != nil || host.ID == "" {
			return err // no host node for this hva: nothing to evacuate
		}
		hostID = host.ID
		jobID, err = scheduling.StartEvacuation(tx, b, &host, hm, scheduling.EvacuationStart{
			Reason: reason, Fence: true, KeepNodeOffline: true,
		}, m.cfg.StampNow())
		return err
	})
	if err != nil {
		return fmt.Errorf("evacuate the host of %s: %w", f.node, err)
	}
	if jobID != "" {
		m.logger.Warn("host failed: evacuating it", "node_id", f.node, "host_node_id", hostID, "job_id", jobID, "reason", reason)
	}
	return nil
}

// liftFences removes the fences whose evacuation has ended and whose hva
// is alive and has been told by this leader that it is fenced (a returning
// hva then stops whatever survived on its host before it reconciles).
func (m *HA) liftFences(ctx context.Context, alive map[string]bool) error {
	m.mu.Lock()
	told := make(map[string]bool, len(m.told))
	for k, v := range m.told {
		told[k] = v
	}
	m.mu.Unlock()
	var lifted []string
	err := state.Commit(ctx, m.cluster.Store(), m.cluster, func(tx *state.Tx, b *state.Builder) error {
		lifted = lifted[:0]
		return tx.Each(proto.KindHostFence, false, func(e state.Entry) error {
			var f proto.HostFence
			if err := json.Unmarshal(e.Value, &f); err != nil {
				return err
			}
			if !told[f.ID] || !alive[f.ID] || tx.Exists(proto.KindJobQueue, f.JobID) {
				return nil
			}
			b.Delete(proto.KindHostFence, f.ID, e.ModifyIndex)
			lifted = append(lifted, f.ID)
			return nil
		})
	})
	if err == nil && len(lifted) > 0 {
		m.logger.Info("fences lifted: evacuation over and the hvas are back", "node_ids", lifted)
	}
	return err
}
