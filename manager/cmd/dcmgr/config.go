package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/config"
	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/health"
	"github.com/vdc-project/vdc/manager/jobs"
)

// Config is dcmgr's configuration: defaults, then a JSON file, then flags.
type Config struct {
	NodeName        string   `json:"node_name"`
	DataDir         string   `json:"data_dir"`
	APIAddr         string   `json:"api_addr"`
	RPCAddr         string   `json:"rpc_addr"`
	RPCToken        string   `json:"rpc_token"`
	SerfAddr        string   `json:"serf_addr"`
	RaftAddr        string   `json:"raft_addr"`
	AdvertiseHost   string   `json:"advertise_host"`
	BootstrapExpect int      `json:"bootstrap_expect"`
	Join            []string `json:"join"`
	FastGossip      bool     `json:"fast_gossip"`
	CrowdGossip     bool     `json:"crowd_gossip"`
	LeaveOnTerm     bool     `json:"leave_on_terminate"`
	LogLevel        string   `json:"log_level"`
	LogFormat       string   `json:"log_format"`

	HeartbeatTimeoutMS   int    `json:"raft_heartbeat_timeout_ms"`
	ElectionTimeoutMS    int    `json:"raft_election_timeout_ms"`
	LeaderLeaseTimeoutMS int    `json:"raft_leader_lease_timeout_ms"`
	SnapshotThreshold    uint64 `json:"raft_snapshot_threshold"`
	// RaftLogLevel is the level of raft's own messages (default warn).
	RaftLogLevel string `json:"raft_log_level"`

	// HARescheduleAfterMS is ha_reschedule_after: a host whose hva failed
	// (serf) and sent no heartbeat for this long is evacuated; 0 turns
	// automatic evacuation off. It must exceed each hva's fence_after_ms
	// plus HAFenceMarginMS (checked as hvas are seen; see README "HA").
	HARescheduleAfterMS int `json:"ha_reschedule_after_ms"`
	// HAFenceMarginMS is ha_fence_margin: the time an hva may take to stop
	// its domains once its fence timeout has passed.
	HAFenceMarginMS int `json:"ha_fence_margin_ms"`
	// JobRetentionMinutes and JobRetentionCount bound the finished jobs
	// kept: older than this, or beyond this many of the newest, they are
	// deleted (0: no limit of that kind).
	JobRetentionMinutes int `json:"job_retention_minutes"`
	JobRetentionCount   int `json:"job_retention_count"`

	API api.Config `json:"api"`
	// Security: RPC token(s), mutual TLS files (RPC and raft), gossip keyring.
	Security security.Config `json:"security"`
}

// DefaultConfig is a single manager answering on 0.0.0.0:9001, the port
// existing 12.03 clients use.
func DefaultConfig() Config {
	c := cluster.DefaultConfig()
	return Config{
		NodeName:             c.NodeName,
		DataDir:              "var/dcmgr",
		APIAddr:              "0.0.0.0:9001",
		RPCAddr:              "0.0.0.0:9012",
		SerfAddr:             c.SerfAddr,
		RaftAddr:             c.RaftAddr,
		BootstrapExpect:      1,
		LogLevel:             "info",
		LogFormat:            "text",
		HeartbeatTimeoutMS:   int(c.HeartbeatTimeout / time.Millisecond),
		ElectionTimeoutMS:    int(c.ElectionTimeout / time.Millisecond),
		LeaderLeaseTimeoutMS: int(c.LeaderLeaseTimeout / time.Millisecond),
		SnapshotThreshold:    c.SnapshotThreshold,
		HARescheduleAfterMS:  int(health.DefaultRescheduleAfter / time.Millisecond),
		HAFenceMarginMS:      int(health.DefaultFenceMargin / time.Millisecond),
		JobRetentionMinutes:  int(jobs.DefaultRetentionAge / time.Minute),
		JobRetentionCount:    jobs.DefaultRetentionCount,
		API:                  api.DefaultConfig(),
	}
}

// loadConfig builds the config from args: -config FILE is read first, then
// the other flags override it.
func loadConfig(args []string, stderr io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("dcmgr", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "JSON config file (flags override it)")
	node := fs.String("node", "", "node name, unique per manager (default: host name)")
	dataDir := fs.String("data-dir", "", "data directory (raft.db, state.db, snapshots)")
	apiAddr := fs.String("api", "", "API listen address (default 0.0.0.0:9001)")
	rpcAddr := fs.String("rpc", "", "agent RPC listen address: collector, scheduler plans (default 0.0.0.0:9012)")
	serfAddr := fs.String("serf", "", "serf gossip address (default 0.0.0.0:9010)")
	raftAddr := fs.String("raft", "", "raft transport address (default 0.0.0.0:9011)")
	adv := fs.String("advertise", "", "host other nodes use to reach this one when binding 0.0.0.0")
	expect := fs.Int("bootstrap-expect", -1, "managers to wait for before bootstrapping (1 = alone, 0 = join only)")
	var join config.List
	fs.Var(&join, "join", "serf address of a member to join (repeatable)")
	fast := fs.Bool("fast-gossip", false, "tight serf timers for loopback or test clusters")
	crowd := fs.Bool("crowd-gossip", false, "serf timers for hundreds of members on one machine (simulated datacenter)")
	leave := fs.Bool("leave-on-terminate", false, "leave the cluster (give up the raft seat) on SIGTERM")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	logFormat := fs.String("log-format", "", "text or json")
	serviceTypes := fs.String("service-types", "", "comma-separated service types (default std)")
	trusted := fs.String("trusted-frontends", "", "comma-separated addresses/CIDRs whose account header the API believes (default loopback)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *path != "" {
		if err := config.LoadFile(*path, &c); err != nil {
			return c, err
		}
	}
	set := config.Set
	set(&c.NodeName, *node)
	set(&c.DataDir, *dataDir)
	set(&c.APIAddr, *apiAddr)
	set(&c.RPCAddr, *rpcAddr)
	set(&c.SerfAddr, *serfAddr)
	set(&c.RaftAddr, *raftAddr)
	set(&c.AdvertiseHost, *adv)
	set(&c.LogLevel, *logLevel)
	set(&c.LogFormat, *logFormat)
	if *expect >= 0 {
		c.BootstrapExpect = *expect
	}
	if len(join) > 0 {
		c.Join = join
	}
	c.FastGossip = c.FastGossip || *fast
	c.CrowdGossip = c.CrowdGossip || *crowd
	c.LeaveOnTerm = c.LeaveOnTerm || *leave
	if *trusted != "" {
		c.API.TrustedFrontends = strings.Split(*trusted, ",")
	}
	if *serviceTypes != "" {
		c.API.ServiceTypes = strings.Split(*serviceTypes, ",")
		c.API.DefaultServiceType = c.API.ServiceTypes[0]
	}
	return c, c.Validate()
}

// Validate checks what the libraries would otherwise reject late.
func (c *Config) Validate() error {
	if c.NodeName == "" {
		return errors.New("node name is empty (set -node)")
	}
	if c.DataDir == "" {
		return errors.New("data dir is empty")
	}
	if c.BootstrapExpect < 0 {
		return errors.New("bootstrap_expect must be >= 0")
	}
	if c.BootstrapExpect == 0 && len(c.Join) == 0 {
		return errors.New("bootstrap_expect 0 needs -join: this manager could never form or join a cluster")
	}
	// raft refuses these at start with its own field names; say it here in
	// the config's.
	switch {
	case c.HeartbeatTimeoutMS < 5 || c.ElectionTimeoutMS < 5 || c.LeaderLeaseTimeoutMS < 5:
		return errors.New("raft_heartbeat_timeout_ms, raft_election_timeout_ms and raft_leader_lease_timeout_ms must be at least 5")
	case c.LeaderLeaseTimeoutMS > c.HeartbeatTimeoutMS:
		return fmt.Errorf("raft_leader_lease_timeout_ms %d is larger than raft_heartbeat_timeout_ms %d", c.LeaderLeaseTimeoutMS, c.HeartbeatTimeoutMS)
	case c.ElectionTimeoutMS < c.HeartbeatTimeoutMS:
		return fmt.Errorf("raft_election_timeout_ms %d is smaller than raft_heartbeat_timeout_ms %d", c.ElectionTimeoutMS, c.HeartbeatTimeoutMS)
	}
	if err := c.API.Validate(); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if c.JobRetentionMinutes < 0 || c.JobRetentionCount < 0 {
		return errors.New("job_retention_minutes and job_retention_count must be >= 0 (0: no limit)")
	}
	ha := c.haConfig()
	return ha.Validate()
}

// jobRetention maps to the job pruner's config.
func (c *Config) jobRetention() jobs.Retention {
	return jobs.Retention{Age: time.Duration(c.JobRetentionMinutes) * time.Minute, Count: c.JobRetentionCount}
}

// haConfig maps to the HA loop's config.
func (c *Config) haConfig() health.HAConfig {
	ha := health.DefaultHAConfig()
	ha.RescheduleAfter = time.Duration(c.HARescheduleAfterMS) * time.Millisecond
	ha.FenceMargin = time.Duration(c.HAFenceMarginMS) * time.Millisecond
	return ha
}

// clusterConfig maps to the cluster layer's config.
func (c *Config) clusterConfig() cluster.Config {
	cc := cluster.DefaultConfig()
	cc.NodeName = c.NodeName
	cc.DataDir = c.DataDir
	cc.SerfAddr = c.SerfAddr
	cc.RaftAddr = c.RaftAddr
	cc.AdvertiseHost = c.AdvertiseHost
	cc.BootstrapExpect = c.BootstrapExpect
	cc.Join = c.Join
	cc.FastGossip = c.FastGossip
	if c.CrowdGossip {
		cc.SerfTune = agent.CrowdGossip
	}
	cc.HeartbeatTimeout = time.Duration(c.HeartbeatTimeoutMS) * time.Millisecond
	cc.ElectionTimeout = time.Duration(c.ElectionTimeoutMS) * time.Millisecond
	cc.LeaderLeaseTimeout = time.Duration(c.LeaderLeaseTimeoutMS) * time.Millisecond
	cc.SnapshotThreshold = c.SnapshotThreshold
	if c.RaftLogLevel != "" {
		cc.RaftLogLevel = c.RaftLogLevel
	}
	return cc
}
