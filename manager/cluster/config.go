// Package cluster runs a manager's raft node and serf member: it bootstraps or
// joins the raft cluster from serf membership, applies commands on the leader
// and tells the API where the leader is.
package cluster

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/proto"
)

// Config is what a manager's cluster layer needs. Zero durations take the
// defaults of DefaultConfig.
type Config struct {
	// NodeName is unique per manager; raft server id and serf member name.
	NodeName string
	// DataDir holds raft.db, state.db and snapshots/.
	DataDir string
	// SerfAddr is host:port serf binds to (gossip, TCP and UDP).
	SerfAddr string
	// RaftAddr is host:port the raft transport binds to.
	RaftAddr string
	// AdvertiseHost replaces an unspecified bind host (0.0.0.0) in the
	// addresses other nodes are told; empty means the first non-loopback address.
	AdvertiseHost string
	// APIAddr is the advertised host:port of this manager's HTTP API, so that
	// followers can forward to the leader.
	APIAddr string
	// RPCAddr is the advertised host:port of this manager's agent RPC
	// endpoints (collector, scheduler plans); empty when not served.
	RPCAddr string
	// BootstrapExpect: 1 bootstraps a single manager by itself; N>1 waits for
	// N managers in serf and bootstraps them together; 0 never bootstraps
	// (the node only joins an existing cluster).
	BootstrapExpect int
	// Join lists serf addresses of other members to join at start.
	Join []string

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is the number of log entries between snapshots;
	// raft checks it every SnapshotInterval to 2×SnapshotInterval.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries stay in the log after a snapshot.
	TrailingLogs uint64
	// ApplyTimeout bounds how long one write waits for raft.
	ApplyTimeout time.Duration
	// ReconcileInterval is how often the leader re-checks raft membership
	// against serf (events trigger it too).
	ReconcileInterval time.Duration
	// FastGossip selects tight serf timers (loopback clusters and tests).
	FastGossip bool
	// SerfTune, when set, adjusts the serf configuration last (the
	// benchmark's simulated datacenter sets agent.CrowdGossip).
	SerfTune func(*serf.Config) `json:"-"`
	// RaftLogLevel is hclog's level for raft's own messages.
	RaftLogLevel string
	// Security: with Security.RPC.TLS set, raft runs over mutual TLS between
	// manager certificates; with Security.Keyring set, serf gossip is
	// encrypted. The RPC settings are the manager server's business.
	Security security.Settings
}

// DefaultConfig is a single manager on this host with the shipped timeouts.
//
// The raft timeouts are tighter than raft's 1 s defaults. Failover takes
// about two to three of them: a follower notices the silence after 1–2
// heartbeat timeouts, but the other follower refuses its vote until it has
// noticed too, and the candidate asks again after 1–2 election timeouts.
// With 300 ms the leader-kill benchmark (vdcbench failover, 15 trials on a
// loaded 2-core machine) measured a median of 0.66 s and a maximum of 1.13 s
// (500 ms: 1.11 s and 1.37 s); 200 ms with a 100 ms lease caused an
// election under write load on the same machine, 300 ms none in nine
// 15-second rows of vdcbench raft. The lease equals the heartbeat timeout
// (raft's maximum): a shorter one only makes a busy leader step down
// sooner, and reads are confirmed with a quorum anyway (VerifyLeader).
//
// The log is bounded by the snapshots: raft only truncates it after one, and
// raft.db (bbolt, never shrinking) keeps the size of its longest log, all of
// which the manager's mmap ends up touching. A check every 2–4 s (every 2–4
// minutes before let a 2,000 entries/s fill grow the log to ~250,000
// entries, raft.db 646 MB at 100,000 instances) keeps it under TrailingLogs +
// SnapshotThreshold + 8,000 entries. 4096 trailing entries are seconds of a
// busy log; a follower further behind gets the snapshot.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		NodeName:           host,
		DataDir:            "var/dcmgr",
		SerfAddr:           "0.0.0.0:9010",
		RaftAddr:           "0.0.0.0:9011",
		APIAddr:            "127.0.0.1:9001",
		BootstrapExpect:    1,
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 300 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		SnapshotThreshold:  16384,
		SnapshotInterval:   2 * time.Second,
		TrailingLogs:       4096,
		ApplyTimeout:       10 * time.Second,
		ReconcileInterval:  5 * time.Second,
		RaftLogLevel:       "warn",
	}
}

// Validate checks the config and fills zero values with defaults.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.NodeName == "" {
		return fmt.Errorf("node name is empty")
	}
	if c.DataDir == "" {
		return fmt.Errorf("data dir is empty")
	}
	for _, a := range []struct{ name, v string }{{"serf", c.SerfAddr}, {"raft", c.RaftAddr}, {"api", c.APIAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return fmt.Errorf("%s address %q: %w", a.name, a.v, err)
		}
	}
	if c.BootstrapExpect < 0 {
		return fmt.Errorf("bootstrap expect %d < 0", c.BootstrapExpect)
	}
	if id := c.Security.RPC.TLS; id != nil && id.Role != proto.RoleManager {
		return fmt.Errorf("tls certificate of role %s: a manager needs a manager certificate", id.Role)
	}
	fill := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	fill(&c.HeartbeatTimeout, d.HeartbeatTimeout)
	fill(&c.ElectionTimeout, d.ElectionTimeout)
	fill(&c.LeaderLeaseTimeout, d.LeaderLeaseTimeout)
	fill(&c.CommitTimeout, d.CommitTimeout)
	fill(&c.SnapshotInterval, d.SnapshotInterval)
	fill(&c.ApplyTimeout, d.ApplyTimeout)
	fill(&c.ReconcileInterval, d.ReconcileInterval)
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.RaftLogLevel == "" {
		c.RaftLogLevel = d.RaftLogLevel
	}
	return nil
}
