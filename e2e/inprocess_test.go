package e2e

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/server"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
	scheddaemon "github.com/vdc-project/vdc/scheduler/daemon"
)

// The in-process tier: one manager (raft, bbolt, serf, RPC, API on
// loopback), one scheduler daemon and hvas over dummy hypervisors, all in
// the test's process, wired the way their commands wire them. Unlike the
// process tests it can reach into the dummies (inject errors, look at
// domains) and read the manager's state directly.

// ipHva is one in-process hva.
type ipHva struct {
	node  string
	agent *agent.Agent
	hv    *dummy.Driver
	coll  *recordingCollector
}

// recordingCollector is the hva's collector client, recording the state
// reports the managers accepted.
type recordingCollector struct {
	handlers.Collector
	mu       sync.Mutex
	accepted []proto.UpdateInstanceRequest
}

func (r *recordingCollector) UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error {
	err := r.Collector.UpdateInstance(ctx, req)
	if err == nil {
		r.mu.Lock()
		r.accepted = append(r.accepted, req)
		r.mu.Unlock()
	}
	return err
}

// moves returns the accepted state reports about id as "from>to" ("" from
// when the report named none).
func (r *recordingCollector) moves(id string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, u := range r.accepted {
		if u.InstanceID != id || u.State == nil {
			continue
		}
		from := ""
		if u.ExpectState != nil {
			from = *u.ExpectState
		}
		out = append(out, from+">"+*u.State)
	}
	return out
}

// ipCluster is an in-process cluster; *cluster1 gives it the HTTP helpers.
type ipCluster struct {
	*cluster1
	mgr  *server.Manager
	hvas map[string]*ipHva
}

// hvaOpts describe one hva: its node id, its dummy's cores, and whether it
// leaves out the migration-handle verbs (an hva of a version without them).
type hvaOpts struct {
	node        string
	cores       int
	noMigration bool
}

func newInProcess(t *testing.T, hvas ...hvaOpts) *ipCluster {
	t.Helper()
	return newInProcessWith(t, server.Config{}, hvas...)
}

// newInProcessWith is newInProcess with the manager's other settings (HA)
// taken from base.
func newInProcessWith(t *testing.T, base server.Config, hvas ...hvaOpts) *ipCluster {
	t.Helper()
	logger := logging.NewTest(t)
	apiL, rpcL, err := server.Listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base.Cluster, base.API, base.APIListener, base.RPCListener = cluster.TestConfig(t), api.DefaultConfig(), apiL, rpcL
	mgr, err := server.Start(base, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mgr.Shutdown(ctx)
	})
	cluster.WaitForLeader(t, mgr.Cluster)
	c := &ipCluster{cluster1: &cluster1{t: t, api: "http://" + apiL.Addr().String() + api.Prefix},
		mgr: mgr, hvas: map[string]*ipHva{}}
	join := []string{mgr.Cluster.SerfAddr()}

	scfg := scheddaemon.DefaultConfig()
	scfg.NodeID, scfg.SerfAddr, scfg.RPCAddr, scfg.Join, scfg.FastGossip =
		"scheduler.ip", "127.0.0.1:0", "127.0.0.1:0", join, true
	sched, err := scheddaemon.New(scfg, logger)
	if err == nil {
		err = sched.Start()
	}
	if err != nil {
		t.Fatalf("start scheduler: %v", err)
	}
	t.Cleanup(func() { stopAgent(sched.Agent()) })

	for _, o := range hvas {
		c.hvas[o.node] = startIPHva(t, o, join)
	}
	return c
}

func stopAgent(a *agent.Agent) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = a.Shutdown(ctx)
}

// skipMigration registers every verb but migration-handle's.
type skipMigration struct{ a *agent.Agent }

func (r skipMigration) HandleJob(endpoint, verb string, h agent.JobHandler) {
	if proto.EndpointBase(endpoint) != proto.EndpointMigrationHandle {
		r.a.HandleJob(endpoint, verb, h)
	}
}

// startIPHva wires an hva as hva/cmd/hva does: agent, collector client,
// handlers over a dummy (8 GiB), instance monitor.
func startIPHva(t *testing.T, o hvaOpts, join []string) *ipHva {
	t.Helper()
	logger := logging.NewTest(t).With("hva", o.node)
	hv, err := dummy.New(dummy.Config{CPUCores: o.cores, MemoryMB: 8192, ShutdownDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID: o.node, Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0", Join: join,
		FastGossip: true, Logger: logger,
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_ = cc.JobFinished(ctx, o.node, res)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logger,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	rc := &recordingCollector{Collector: cc}
	h, err := handlers.New(handlers.Config{NodeID: o.node, Hypervisor: hv, Collector: rc, Events: a, Logger: logger,
		MonitorInterval: 200 * time.Millisecond, SoftPoweroffTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if o.noMigration {
		h.Register(skipMigration{a})
	} else {
		h.Register(a)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.RunMonitor(ctx) }()
	t.Cleanup(func() { stop(); <-done; stopAgent(a) })
	return &ipHva{node: o.node, agent: a, hv: hv, coll: rc}
}

// seed registers the catalog (as newClusterWith does) and one host node
// per hva (hn-<last part of the node id>, 8 cores, 8 GiB), and waits until
// every host is online.
func (c *ipCluster) seed() {
	c.t.Helper()
	c.must("POST", "/dc_networks.json", url.Values{"uuid": {"dcn-ip1"}, "name": {"ip"}}, "")
	c.must("PUT", "/dc_networks/dcn-ip1.json", url.Values{"allow_new_networks": {"true"}}, "")
	c.must("PUT", "/dc_networks/dcn-ip1/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}, "")
	c.must("POST", "/networks.json", url.Values{"uuid": {"nw-ip1"}, "dc_network": {"dcn-ip1"},
		"network": {"10.78.0.0"}, "prefix": {"24"}, "gw": {"10.78.0.1"}, "network_mode": {"securitygroup"},
		"dhcp_range": {"default"}, "account_id": {account}}, "")
	c.must("POST", "/backup_storages.json", url.Values{"uuid": {"bkst-ip1"}, "storage_type": {"local"},
		"base_uri": {"file:///tmp/i3-e2e/"}}, "")
	c.must("POST", "/backup_objects.json", url.Values{"uuid": {"bo-ip1"}, "backup_storage_id": {"bkst-ip1"},
		"size": {"33554432"}, "state": {"available"}, "account_id": {account}}, "")
	c.must("POST", "/images.json", url.Values{"uuid": {"wmi-ip1"}, "backup_object_id": {"bo-ip1"},
		"arch": {"x86_64"}, "boot_dev_type": {"2"}, "is_public": {"true"}, "account_id": {account}}, "")
	for node := range c.hvas {
		c.must("POST", "/host_nodes.json", url.Values{"uuid": {hostOf(node)}, "node_id": {node}, "arch": {"x86_64"},
			"hypervisor": {"dummy"}, "offering_cpu_cores": {"8"}, "offering_memory_size": {"8192"},
			"offering_disk_space_mb": {"100000"}}, "")
	}
	testutil.WaitFor(c.t, 30*time.Second, func() error {
		for node := range c.hvas {
			doc := c.must("GET", "/host_nodes/"+hostOf(node)+".json", nil, "").(map[string]any)
			if doc["status"] != "online" {
				return fmt.Errorf("%s is %v", node, doc["status"])
			}
		}
		return nil
	})
}

// hostOf is the host node uuid of an hva node id ("hva.ip1" → "hn-ip1").
func hostOf(node string) string { return "hn-" + node[len("hva."):] }

// runningOn creates an instance of cores pinned to host and waits until it runs.
func (c *ipCluster) runningOn(host string, cores int) string {
	c.t.Helper()
	doc := c.must("POST", "/instances.json", url.Values{
		"image_id": {"wmi-ip1"}, "hypervisor": {"dummy"}, "cpu_cores": {fmt.Sprint(cores)}, "memory_size": {"512"},
		"vifs": {`{"eth0":{"index":"0","network":"nw-ip1"}}`}, "host_node_id": {host},
	}, account).(map[string]any)
	id := doc["id"].(string)
	if doc := c.waitState(id, "running"); doc["host_node"] != host {
		c.t.Fatalf("instance %s runs on %v, want %s", id, doc["host_node"], host)
	}
	return id
}

// usage reads a host's usage from the manager's state (zero when absent).
func (c *ipCluster) usage(host string) proto.HostUsage {
	c.t.Helper()
	var u proto.HostUsage
	err := c.mgr.Cluster.Store().View(func(tx *state.Tx) error {
		if !tx.Exists(proto.KindHostUsage, host) {
			return nil
		}
		_, err := tx.Get(proto.KindHostUsage, host, &u)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return u
}

// record reads a stored record.
func (c *ipCluster) record(kind, id string, v any) {
	c.t.Helper()
	if err := c.mgr.Cluster.Store().View(func(tx *state.Tx) error {
		_, err := tx.Get(kind, id, v)
		return err
	}); err != nil {
		c.t.Fatal(err)
	}
}

// domain is the state of id's domain on an hva's dummy ("" = not defined).
func (c *ipCluster) domain(node, id string) string {
	c.t.Helper()
	d, err := c.hvas[node].hv.Get(context.Background(), id)
	if err != nil {
		return ""
	}
	return string(d.State)
}
