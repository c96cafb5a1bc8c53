package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/filter/filtertest"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/hva/netfilter"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/server"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// The netfilter cluster: 1 manager, 1 scheduler daemon and 1 hva in this
// process on loopback; the hva's host is a network namespace with bridge
// nfbr0 (filtertest.Lab), its vnics are plugged there, and its netfilter
// service applies to that namespace's nftables. Addresses are
// 192.168.251.0/24, which exists nowhere else on the machine.
const (
	nfNode    = "hva.nf1"
	nfHost    = "hn-nf1"
	nfDcNet   = "nfpub"
	nfBridge  = "nfbr0"
	nfTable   = "nfvdc"
	nfNetwork = "nw-nf1"
	nfImage   = "wmi-nf1"
)

type nfOptions struct {
	// events: the service subscribes to events; interval: its period.
	events   bool
	interval time.Duration
	// hostNet plugs the hva's vnics into the lab.
	hostNet func(c *nfCluster) netfilter.HostNetwork
}

type nfCluster struct {
	t    testing.TB
	base string // API base URL
	hc   *http.Client
	lab  *filtertest.Lab
	nft  *filter.NFT
	cc   *collector.Client
	ag   *agent.Agent

	mu      sync.Mutex
	svc     *netfilter.Service
	stopSvc func()
}

func startNFCluster(t testing.TB, o nfOptions) *nfCluster {
	t.Helper()
	testutil.Real(t, testutil.NeedRoot)
	c := &nfCluster{t: t, hc: newHTTPClient(8)}
	ctx := context.Background()
	var mgr *server.Manager
	var apiAddr string
	var err error
	for range startPortAttempts {
		if mgr, apiAddr, err = startPlaceManager(t.TempDir(), nil); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start manager: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		mgr.Shutdown(ctx)
	})
	c.base = "http://" + apiAddr + api.Prefix
	testutil.WaitFor(t, formTimeout, func() error {
		if !mgr.Cluster.IsLeader() {
			return errors.New("the manager does not lead yet")
		}
		return nil
	})
	join := []string{mgr.Cluster.SerfAddr()}

	scfg := daemon.DefaultConfig()
	scfg.NodeID, scfg.SerfAddr, scfg.RPCAddr, scfg.Join, scfg.FastGossip = "scheduler.nf", "127.0.0.1:0", "127.0.0.1:0", join, true
	sched, err := daemon.New(scfg, logging.Discard())
	if err == nil {
		err = sched.Start()
	}
	if err != nil {
		t.Fatalf("start scheduler: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		_ = sched.Shutdown(ctx)
	})

	c.lab = filtertest.NewLab(t, nfBridge)
	c.nft = c.lab.NFT()
	logger := logging.Discard()
	c.ag, err = agent.New(agent.Config{
		NodeID: nfNode, Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0", Join: join,
		FastGossip: true, Logger: logger,
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, collector.DefaultAttemptTimeout)
			defer cancel()
			_ = c.cc.JobFinished(ctx, nfNode, res)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.cc = collector.New(collector.Config{Members: c.ag, RPC: c.ag.Client(), Logger: logger})
	c.startService(o.events, o.interval)
	hv, err := dummy.New(dummy.Config{CPUCores: 512, MemoryMB: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	h, err := handlers.New(handlers.Config{
		NodeID: nfNode, Hypervisor: hv, Collector: c.cc, Events: c.ag, Logger: logger,
		Network: &netfilter.Vnics{Inner: o.hostNet(c), NodeID: nfNode, Publisher: c.ag, Changed: c.trigger},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(c.ag)
	if err := c.ag.Start(); err != nil {
		t.Fatal(err)
	}
	monCtx, stopMon := context.WithCancel(ctx)
	monDone := make(chan struct{})
	go func() { defer close(monDone); h.RunMonitor(monCtx) }()
	t.Cleanup(func() {
		stopMon()
		<-monDone
		c.stopService()
		ctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		_ = c.ag.Shutdown(ctx)
	})
	c.seed(ctx)
	return c
}

// startService runs a netfilter service for the hva (replacing the one
// running, if any).
func (c *nfCluster) startService(events bool, interval time.Duration) {
	c.t.Helper()
	c.stopService()
	cfg := netfilter.Config{NodeID: nfNode, Source: netfilter.CollectorSource{C: c.cc}, Filter: c.nft,
		Table: nfTable, Bridges: map[string]string{nfDcNet: nfBridge}, Publisher: c.ag, Interval: interval,
		Logger: logging.Discard()}
	if events {
		cfg.Events = c.ag
	}
	svc, err := netfilter.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	c.mu.Lock()
	c.svc = svc
	c.stopSvc = func() {
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("netfilter service: %v", err)
		}
	}
	c.mu.Unlock()
}

func (c *nfCluster) stopService() {
	c.mu.Lock()
	stop := c.stopSvc
	c.stopSvc = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}

func (c *nfCluster) service() *netfilter.Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.svc
}

func (c *nfCluster) trigger() {
	if s := c.service(); s != nil {
		s.Trigger()
	}
}

// call sends an API request as the benchmark account (or the operator) and
// decodes the answer into out (if not nil).
func (c *nfCluster) call(ctx context.Context, operator bool, method, path string, form url.Values, out any) error {
	var status int
	var body []byte
	var err error
	if operator {
		status, body, err = operatorRequest(ctx, c.hc, method, c.base+path, form)
	} else {
		status, body, err = doRequest(ctx, c.hc, method, c.base+path, form)
	}
	if body, err = expectOK(status, body, err); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

func (c *nfCluster) must(method, path string, form url.Values, out any) {
	c.t.Helper()
	if err := c.call(context.Background(), false, method, path, form, out); err != nil {
		c.t.Fatal(err)
	}
}

// seed registers the DC network, the network, an image and the host node,
// and waits for the host to be online.
func (c *nfCluster) seed(ctx context.Context) {
	c.t.Helper()
	acct := func(v url.Values) url.Values { v["account_id"] = []string{Account}; return v }
	for _, s := range []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodPost, "/dc_networks.json", url.Values{"uuid": {"dcn-nf1"}, "name": {nfDcNet}}},
		{http.MethodPut, "/dc_networks/dcn-nf1.json", url.Values{"allow_new_networks": {"true"}}},
		{http.MethodPut, "/dc_networks/dcn-nf1/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}},
		{http.MethodPost, "/networks.json", acct(url.Values{"uuid": {nfNetwork}, "dc_network": {"dcn-nf1"},
			"network": {"192.168.251.0"}, "prefix": {"24"}, "gw": {"192.168.251.1"}, "network_mode": {"securitygroup"},
			"dhcp_range": {"default"}})},
		{http.MethodPost, "/backup_storages.json", url.Values{"uuid": {"bkst-nf1"}, "storage_type": {"local"},
			"base_uri": {"file:///var/lib/vdc/nf/"}}},
		{http.MethodPost, "/backup_objects.json", acct(url.Values{"uuid": {"bo-nf1"}, "backup_storage_id": {"bkst-nf1"},
			"size": {"33554432"}, "state": {"available"}})},
		{http.MethodPost, "/images.json", acct(url.Values{"uuid": {nfImage}, "backup_object_id": {"bo-nf1"},
			"arch": {"x86_64"}, "boot_dev_type": {"2"}, "is_public": {"true"}})},
		{http.MethodPost, "/host_nodes.json", url.Values{"uuid": {nfHost}, "node_id": {nfNode}, "arch": {"x86_64"},
			"hypervisor": {"dummy"}, "offering_cpu_cores": {"512"}, "offering_memory_size": {"524288"},
			"offering_disk_space_mb": {"1073741824"}}},
	} {
		if err := c.call(ctx, true, s.method, s.path, s.form, nil); err != nil {
			c.t.Fatalf("seed: %v", err)
		}
	}
	testutil.WaitFor(c.t, placeReadyTimeout, func() error {
		var h struct {
			Status string `json:"status"`
		}
		if err := c.call(ctx, true, http.MethodGet, "/host_nodes/"+nfHost+".json", nil, &h); err != nil {
			return err
		}
		if h.Status != "online" {
			return fmt.Errorf("host is %s", h.Status)
		}
		return nil
	})
}

// securityGroup creates a group with rule and returns its id.
func (c *nfCluster) securityGroup(rule string) string {
	c.t.Helper()
	var doc struct {
		ID string `json:"id"`
	}
	c.must(http.MethodPost, "/security_groups.json", url.Values{"rule": {rule}}, &doc)
	return doc.ID
}

// setRule replaces a group's rule text.
func (c *nfCluster) setRule(ctx context.Context, sg, rule string) error {
	return c.call(ctx, false, http.MethodPut, "/security_groups/"+sg+".json", url.Values{"rule": {rule}}, nil)
}

// nfVnic is an instance's vnic as the API shows it.
type nfVnic struct {
	instance, vif, ip string
}

// createInstance POSTs an instance with one vif in groups and returns its id.
func (c *nfCluster) createInstance(ctx context.Context, groups ...string) (string, error) {
	sgs, _ := json.Marshal(groups)
	vifs := `{"eth0":{"index":"0","network":"` + nfNetwork + `","security_groups":` + string(sgs) + `}}`
	var doc struct {
		ID string `json:"id"`
	}
	err := c.call(ctx, false, http.MethodPost, "/instances.json", url.Values{
		"image_id": {nfImage}, "hypervisor": {"dummy"}, "cpu_cores": {"1"}, "memory_size": {"256"}, "vifs": {vifs},
	}, &doc)
	return doc.ID, err
}

// running waits until the instance runs and returns its vnic.
func (c *nfCluster) running(ctx context.Context, id string) (nfVnic, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var doc struct {
			State string `json:"state"`
			Vif   []struct {
				VifID string `json:"vif_id"`
				IPv4  struct {
					Address string `json:"address"`
				} `json:"ipv4"`
			} `json:"vif"`
		}
		err := c.call(ctx, false, http.MethodGet, "/instances/"+id+".json", nil, &doc)
		if err == nil && doc.State == proto.InstanceRunning && len(doc.Vif) == 1 {
			return nfVnic{instance: id, vif: doc.Vif[0].VifID, ip: doc.Vif[0].IPv4.Address}, nil
		}
		if err == nil {
			err = fmt.Errorf("instance %s is %s", id, doc.State)
		}
		if time.Now().After(deadline) {
			return nfVnic{}, err
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return nfVnic{}, err
		}
	}
}

// hasChain reports whether the kernel has the vnic's inet chain.
func (c *nfCluster) hasChain(ctx context.Context, vif string) error {
	_, err := c.nft.ChainRules(ctx, filter.FamilyInet, nfTable, filter.InChain(vif))
	return err
}

// chainHas reports whether the vnic's inet chain has a rule whose text
// contains s.
func (c *nfCluster) chainHas(ctx context.Context, vif, s string) (bool, error) {
	rules, err := c.nft.ChainRules(ctx, filter.FamilyInet, nfTable, filter.InChain(vif))
	if err != nil {
		return false, err
	}
	for _, r := range rules {
		if strings.Contains(r.String(), s) {
			return true, nil
		}
	}
	return false, nil
}

// vethNet plugs each vnic as a guest namespace on the lab's bridge, joined
// by a veth named like the vnic's tap: a stand-in for a guest VM on its tap
// that sends real packets. Guests get their address from the test.
type vethNet struct {
	lab    *filtertest.Lab
	mu     sync.Mutex
	guests map[string]*filtertest.Guest
}

func (v *vethNet) Plug(_ context.Context, nics []hypervisor.NIC) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, n := range nics {
		if v.guests[n.VifID] != nil {
			continue
		}
		mac := n.MAC
		if len(mac) == 12 {
			mac = strings.Join([]string{mac[0:2], mac[2:4], mac[4:6], mac[6:8], mac[8:10], mac[10:12]}, ":")
		}
		g, err := v.lab.NewGuest(n.VifID, mac, "")
		if err != nil {
			return err
		}
		v.guests[n.VifID] = g
	}
	return nil
}

func (v *vethNet) Unplug(_ context.Context, ids []string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, id := range ids {
		if g := v.guests[id]; g != nil {
			delete(v.guests, id)
			if err := g.Remove(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (v *vethNet) guest(vif string) *filtertest.Guest {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.guests[vif]
}

// portOf is a port number of a rule in the benchmark's changes.
func portOf(i int) string { return strconv.Itoa(10000 + i%50000) }
