package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/server"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// Sizes of the seeded catalog. Every host offers (and every dummy hypervisor
// has) room for far more instances than a run places on it, so that capacity
// never decides a placement.
const (
	placeHostCores    = 4096
	placeHostMemoryMB = 4 << 20 // 4 TiB
	placeHostDiskMB   = 1 << 30
	placeInstCores    = 1
	placeInstMemoryMB = 256
	placeImageBytes   = 32 << 20
	placeNetwork      = "10.200.0.0" // records only: nothing is sent there
	// placeNetworkPrefix is the network's size for place and dc; scale
	// needs a /15 (131,070 addresses) for 100,000 instances.
	placeNetworkPrefix = 16
	placeNetworkGW     = "10.200.0.1"
	placeNetworkID     = "nw-bench1"
	placeImageID       = "wmi-bench1"
)

// placeReadyTimeout bounds the wait for every hva's host to show online.
const placeReadyTimeout = 2 * time.Minute

// hvaNode is the node id of the i-th (0-based) benchmark hva.
func hvaNode(i int) string { return "hva.b" + strconv.Itoa(i+1) }

// placeHva is one in-process hva: an agent with its own serf member and RPC
// listener, the hva handlers over a dummy hypervisor, and its monitor.
type placeHva struct {
	agent       *agent.Agent
	hv          *dummy.Driver
	stopMonitor context.CancelFunc
	monDone     chan struct{}
}

// placeCluster is 1 manager, 1 scheduler daemon and n hvas in this process.
type placeCluster struct {
	dir       string
	mgr       *server.Manager
	base      string // API base URL including the 12.03 prefix
	scheduler *daemon.Daemon
	// schedLog counts a few of the scheduler daemon's log messages.
	schedLog *msgCounts
	hvas     []*placeHva
}

// startPlaceCluster starts the manager, waits until it leads, then starts
// the scheduler daemon and the hvas, all joining the manager's serf.
func startPlaceCluster(ctx context.Context, root string, o PlaceOptions) (*placeCluster, error) {
	dir, err := os.MkdirTemp(root, "place-")
	if err != nil {
		return nil, err
	}
	c := &placeCluster{dir: dir}
	var lastErr error
	for range startPortAttempts {
		var apiAddr string
		if c.mgr, apiAddr, lastErr = startPlaceManager(dir, o.serfTune()); lastErr == nil {
			c.base = "http://" + apiAddr + api.Prefix
			break
		}
	}
	if c.mgr == nil {
		c.Close()
		return nil, fmt.Errorf("start manager: %w", lastErr)
	}
	if err := waitUntil(ctx, formTimeout, func() error {
		if !c.mgr.Cluster.IsLeader() {
			return errors.New("the manager does not lead yet")
		}
		return nil
	}); err != nil {
		c.Close()
		return nil, err
	}
	join := []string{c.mgr.Cluster.SerfAddr()}

	scfg := daemon.DefaultConfig()
	scfg.NodeID = "scheduler.bench"
	scfg.SerfAddr = "127.0.0.1:0"
	scfg.RPCAddr = "127.0.0.1:0"
	scfg.Join = join
	scfg.FastGossip = true
	scfg.SerfTune = o.serfTune()
	if o.SchedulerConcurrency > 0 {
		scfg.Concurrency = o.SchedulerConcurrency
	}
	var slogger *slog.Logger
	slogger, c.schedLog = newCountingLogger()
	if c.scheduler, err = daemon.New(scfg, slogger); err == nil {
		err = c.scheduler.Start()
	}
	if err != nil {
		c.scheduler = nil
		c.Close()
		return nil, fmt.Errorf("start scheduler: %w", err)
	}

	for i := range o.Hvas {
		h, err := startPlaceHva(hvaNode(i), join, o.LocalStoreConcurrency, o.serfTune(), 0)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start %s: %w", hvaNode(i), err)
		}
		c.hvas = append(c.hvas, h)
	}
	return c, nil
}

// startPlaceManager is manager/server.Start on loopback listeners with the
// shipped cluster and API configuration, FastGossip and a discard logger.
func startPlaceManager(dir string, tune func(*serf.Config)) (*server.Manager, string, error) {
	return startLoopbackManager(dir, tune, nil)
}

// startLoopbackManager is startPlaceManager whose server configuration
// adjust, when set, changes last.
func startLoopbackManager(dir string, tune func(*serf.Config), adjust func(*server.Config)) (*server.Manager, string, error) {
	cfg := cluster.DefaultConfig()
	cfg.SerfTune = tune
	cfg.NodeName = filepath.Base(dir) + "-m1"
	cfg.DataDir = filepath.Join(dir, "m1")
	cfg.BootstrapExpect = 1
	cfg.FastGossip = true
	serfPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	raftPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg.SerfAddr = "127.0.0.1:" + serfPort
	cfg.RaftAddr = "127.0.0.1:" + raftPort
	apiL, rpcL, err := server.Listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	sc := server.Config{Cluster: cfg, API: api.DefaultConfig(), APIListener: apiL, RPCListener: rpcL}
	if adjust != nil {
		adjust(&sc)
	}
	m, err := server.Start(sc, logging.Discard())
	if err != nil {
		apiL.Close()
		rpcL.Close()
		return nil, "", err
	}
	return m, apiL.Addr().String(), nil
}

// startPlaceHva wires an hva the way hva/cmd/hva does (agent, collector
// client, handlers, monitor) with the shipped defaults of its config, over a
// dummy hypervisor large enough for any run.
func startPlaceHva(node string, join []string, localStoreConcurrency int, tune func(*serf.Config), catchUp time.Duration) (*placeHva, error) {
	logger := logging.Discard()
	hv, err := dummy.New(dummy.Config{CPUCores: placeHostCores, MemoryMB: placeHostMemoryMB,
		ShutdownDelay: dummy.DefaultConfig().ShutdownDelay})
	if err != nil {
		return nil, err
	}
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID:      node,
		Role:        proto.RoleHva,
		SerfAddr:    "127.0.0.1:0",
		RPCAddr:     "127.0.0.1:0",
		Join:        join,
		CatchUp:     catchUp,
		FastGossip:  true,
		SerfTune:    tune,
		Logger:      logger,
		Concurrency: map[string]int{proto.EndpointLocalStoreHandle: localStoreConcurrency},
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, collector.DefaultAttemptTimeout)
			defer cancel()
			_ = cc.JobFinished(ctx, node, res)
		},
	})
	if err != nil {
		return nil, err
	}
	cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logger})
	h, err := handlers.New(handlers.Config{
		NodeID:              node,
		Hypervisor:          hv,
		Collector:           cc,
		Events:              a,
		Logger:              logger,
		SoftPoweroffTimeout: handlers.DefaultSoftPoweroffTimeout,
		MonitorInterval:     handlers.DefaultMonitorInterval,
		ForceTerminateAfter: handlers.DefaultForceTerminateAfter,
	})
	if err != nil {
		return nil, err
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		return nil, err
	}
	monCtx, stop := context.WithCancel(context.Background())
	x := &placeHva{agent: a, hv: hv, stopMonitor: stop, monDone: make(chan struct{})}
	go func() {
		defer close(x.monDone)
		h.RunMonitor(monCtx)
	}()
	return x, nil
}

// agentStopTimeout bounds one agent's graceful shutdown at the end.
const agentStopTimeout = 10 * time.Second

// Close stops the hvas and the scheduler (in parallel), then the manager,
// and removes the data directory.
func (c *placeCluster) Close() {
	var wg sync.WaitGroup
	for _, h := range c.hvas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.stop()
		}()
	}
	if c.scheduler != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
			defer cancel()
			_ = c.scheduler.Shutdown(ctx)
		}()
	}
	wg.Wait()
	if c.mgr != nil {
		ctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		c.mgr.Shutdown(ctx)
		cancel()
	}
	_ = os.RemoveAll(c.dir)
}

// seed registers through the API what an instance create needs: a DC
// network offering security-group networks, one network (/16 here) with a DHCP
// range over all of it, a public image on a backup object, and one host
// node per hva (node ids hva.b1 … hva.bN).
func (c *placeCluster) seed(ctx context.Context, hc *http.Client, hosts int) error {
	return seedPlace(ctx, hc, c.base, hosts, placeNetworkPrefix)
}

// seedPlace is seed through the API at base.
func seedPlace(ctx context.Context, hc *http.Client, base string, hosts, prefix int) error {
	type step struct {
		method, path string
		form         url.Values
	}
	acct := url.Values{"account_id": {Account}}
	with := func(v url.Values, extra url.Values) url.Values {
		for k, x := range extra {
			v[k] = x
		}
		return v
	}
	steps := []step{
		{http.MethodPost, "/dc_networks.json", url.Values{"uuid": {"dcn-bench1"}, "name": {"bench"}}},
		{http.MethodPut, "/dc_networks/dcn-bench1.json", url.Values{"allow_new_networks": {"true"}}},
		{http.MethodPut, "/dc_networks/dcn-bench1/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}},
		{http.MethodPost, "/networks.json", with(url.Values{"uuid": {placeNetworkID}, "dc_network": {"dcn-bench1"},
			"network": {placeNetwork}, "prefix": {strconv.Itoa(prefix)}, "gw": {placeNetworkGW}, "network_mode": {"securitygroup"},
			"dhcp_range": {"default"}}, acct)},
		{http.MethodPost, "/backup_storages.json", url.Values{"uuid": {"bkst-bench1"}, "storage_type": {"local"},
			"base_uri": {"file:///var/lib/vdc/bench/"}}},
		{http.MethodPost, "/backup_objects.json", with(url.Values{"uuid": {"bo-bench1"}, "backup_storage_id": {"bkst-bench1"},
			"size": {strconv.Itoa(placeImageBytes)}, "state": {"available"}}, acct)},
		{http.MethodPost, "/images.json", with(url.Values{"uuid": {placeImageID}, "backup_object_id": {"bo-bench1"},
			"arch": {"x86_64"}, "boot_dev_type": {"2"}, "is_public": {"true"}}, acct)},
	}
	for i := range hosts {
		steps = append(steps, step{http.MethodPost, "/host_nodes.json", url.Values{
			"uuid": {fmt.Sprintf("hn-bench%d", i+1)}, "node_id": {hvaNode(i)}, "arch": {"x86_64"},
			"hypervisor": {"dummy"}, "offering_cpu_cores": {strconv.Itoa(placeHostCores)},
			"offering_memory_size":   {strconv.Itoa(placeHostMemoryMB)},
			"offering_disk_space_mb": {strconv.Itoa(placeHostDiskMB)},
		}})
	}
	for _, s := range steps {
		// 503 (no leader: an election under load) is not done; anything
		// else is an answer. A retried create that did land answers 400
		// (its uuid exists), which the seed accepts.
		var err error
		for attempt := range placeRetries {
			_, err = expectOK(operatorRequest(ctx, hc, s.method, base+s.path, s.form))
			var se *statusError
			if err == nil || !errors.As(err, &se) || se.status != http.StatusServiceUnavailable {
				if attempt > 0 && errors.As(err, &se) && se.status == http.StatusBadRequest && s.method == http.MethodPost {
					err = nil
				}
				break
			}
			if serr := sleepCtx(ctx, placeRetryPause(attempt)); serr != nil {
				return serr
			}
		}
		if err != nil {
			return fmt.Errorf("seed %s %s: %w", s.method, s.path, err)
		}
	}
	return nil
}

// operatorRequest is doRequest without an account header: the operator's
// calls that register the catalog (images, host nodes …).
func operatorRequest(ctx context.Context, c *http.Client, method, u string, form url.Values) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// waitReady waits until every seeded host shows online (the node health
// loop saw its hva in serf) and the manager sees the scheduler alive.
func (c *placeCluster) waitReady(ctx context.Context, hc *http.Client, hosts int) error {
	return waitHostsOnline(ctx, hc, c.base, hosts, func() bool {
		for _, m := range jobs.Members(c.mgr.Cluster.Members()) {
			if m.Tags[proto.TagRole] == proto.RoleScheduler && m.Status == "alive" {
				return true
			}
		}
		return false
	})
}

// waitHostsOnline waits until schedulerSeen and every seeded host shows
// online through the API at base.
func waitHostsOnline(ctx context.Context, hc *http.Client, base string, hosts int, schedulerSeen func() bool) error {
	return waitUntil(ctx, placeReadyTimeout, func() error {
		if !schedulerSeen() {
			return errors.New("the manager does not see the scheduler yet")
		}
		var env []struct {
			Results []struct {
				Status string `json:"status"`
			} `json:"results"`
		}
		if err := getJSON(ctx, hc, fmt.Sprintf("%s/host_nodes.json?limit=%d", base, hosts), &env); err != nil {
			return err
		}
		online := 0
		if len(env) == 1 {
			for _, h := range env[0].Results {
				if h.Status == "online" {
					online++
				}
			}
		}
		if online != hosts {
			return fmt.Errorf("%d of %d hosts online", online, hosts)
		}
		return nil
	})
}

// waitUntil polls check every 20 ms until it returns nil, ctx ends or d
// passes (then the last check's error is returned).
func waitUntil(ctx context.Context, d time.Duration, check func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", d, err)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}
