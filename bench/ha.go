package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/health"
	"github.com/vdc-project/vdc/manager/server"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// HAOptions configure the host-failure benchmark: how long the hvas wait
// before fencing themselves and the manager before it restarts a dead
// host's instances elsewhere.
type HAOptions struct {
	Trials          int
	FenceAfter      time.Duration // hva fence_after_ms
	RescheduleAfter time.Duration // dcmgr ha_reschedule_after_ms
	FenceMargin     time.Duration // dcmgr ha_fence_margin_ms
}

// FastHAOptions is a configuration meant for quick failover: hvas fence
// after 8 s without the managers, the managers restart after 12 s.
func FastHAOptions() HAOptions {
	return HAOptions{Trials: 3, FenceAfter: 8 * time.Second, RescheduleAfter: 12 * time.Second, FenceMargin: 4 * time.Second}
}

// HAResult is the `ha` benchmark's table.
type HAResult struct {
	Options HAOptions `json:"-"`
	// DeathToRunningMs: from the host's death (its hva and VMs gone at
	// once) to its HA instance reported running on the other host, per
	// trial.
	DeathToRunningMs []float64 `json:"death_to_running_ms"`
	Summary          Summary   `json:"death_to_running_summary_ms"`
}

// HAFailover runs o.Trials trials, each on a fresh cluster of 1 manager,
// 1 scheduler daemon and 2 dummy hvas in this process: an HA instance runs
// on the first hva, the host dies, and the time until the instance runs on
// the second is measured.
func HAFailover(ctx context.Context, root string, o HAOptions) (*HAResult, error) {
	out := &HAResult{Options: o}
	for i := range o.Trials {
		d, err := haTrial(ctx, root, o)
		if err != nil {
			return out, fmt.Errorf("ha trial %d: %w", i+1, err)
		}
		out.DeathToRunningMs = append(out.DeathToRunningMs, ms(d))
	}
	out.Summary = Summarize(out.DeathToRunningMs)
	return out, nil
}

// WriteTable prints the result.
func (res *HAResult) WriteTable(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "## host death → HA instance running elsewhere (fence_after %s, ha_reschedule_after %s, margin %s)\n\n",
		o.FenceAfter, o.RescheduleAfter, o.FenceMargin)
	fmt.Fprintln(w, "| trials | min ms | median ms | max ms |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| %d | %.0f | %.0f | %.0f |\n\n", len(res.DeathToRunningMs), res.Summary.Min, res.Summary.Median, res.Summary.Max)
}

// haHva is one in-process hva with self-fencing.
type haHva struct {
	agent *agent.Agent
	hv    *dummy.Driver
	stop  context.CancelFunc
	done  chan struct{}
}

func (h *haHva) kill() {
	h.agent.Kill()
	h.stop()
	<-h.done
}

func haTrial(ctx context.Context, root string, o HAOptions) (time.Duration, error) {
	dir, err := os.MkdirTemp(root, "ha-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	mgr, apiAddr, err := startHAManager(dir, o)
	if err != nil {
		return 0, err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		mgr.Shutdown(sctx)
		cancel()
	}()
	if err := waitUntil(ctx, formTimeout, func() error {
		if !mgr.Cluster.IsLeader() {
			return errors.New("the manager does not lead yet")
		}
		return nil
	}); err != nil {
		return 0, err
	}
	join := []string{mgr.Cluster.SerfAddr()}
	scfg := daemon.DefaultConfig()
	scfg.NodeID, scfg.SerfAddr, scfg.RPCAddr, scfg.Join, scfg.FastGossip = "scheduler.ha", "127.0.0.1:0", "127.0.0.1:0", join, true
	sched, err := daemon.New(scfg, logging.Discard())
	if err == nil {
		err = sched.Start()
	}
	if err != nil {
		return 0, fmt.Errorf("start scheduler: %w", err)
	}
	defer sched.Agent().Kill()
	var hvas []*haHva
	defer func() {
		for _, h := range hvas {
			h.kill()
		}
	}()
	for i := range 2 {
		h, err := startHAHva(hvaNode(i), join, o)
		if err != nil {
			return 0, err
		}
		hvas = append(hvas, h)
	}
	pc := &placeCluster{mgr: mgr, base: "http://" + apiAddr + api.Prefix}
	hc := newHTTPClient(2)
	if err := pc.seed(ctx, hc, 2); err != nil {
		return 0, err
	}
	if err := pc.waitReady(ctx, hc, 2); err != nil {
		return 0, err
	}
	body, err := expectOK(doRequest(ctx, hc, http.MethodPost, pc.base+"/instances.json", url.Values{
		"image_id": {placeImageID}, "hypervisor": {"dummy"}, "cpu_cores": {"1"}, "memory_size": {"256"},
		"vifs": {`{"eth0":{"index":"0","network":"` + placeNetworkID + `"}}`}, "host_node_id": {"hn-bench1"},
		"ha_enabled": {"true"},
	}))
	if err != nil {
		return 0, fmt.Errorf("create instance: %w", err)
	}
	var inst struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &inst); err != nil {
		return 0, err
	}
	runningOn := func(host string) func() error {
		return func() error {
			var doc struct {
				State    string `json:"state"`
				HostNode string `json:"host_node"`
			}
			if err := getJSON(ctx, hc, pc.base+"/instances/"+inst.ID+".json", &doc); err != nil {
				return err
			}
			if doc.State != "running" || doc.HostNode != host {
				return fmt.Errorf("instance %s is %s on %s", inst.ID, doc.State, doc.HostNode)
			}
			return nil
		}
	}
	if err := waitUntil(ctx, time.Minute, runningOn("hn-bench1")); err != nil {
		return 0, err
	}

	// The host dies: its hva and, with it, its VMs.
	start := time.Now()
	hvas[0].kill()
	doms, err := hvas[0].hv.List(ctx)
	if err != nil {
		return 0, err
	}
	for _, d := range doms {
		_ = hvas[0].hv.Stop(ctx, d.ID, true)
	}
	hvas = hvas[1:]
	if err := waitUntil(ctx, 4*o.RescheduleAfter+time.Minute, runningOn("hn-bench2")); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func startHAManager(dir string, o HAOptions) (*server.Manager, string, error) {
	var lastErr error
	for range startPortAttempts {
		m, addr, err := startLoopbackManager(dir, nil, func(c *server.Config) {
			c.HA = health.HAConfig{RescheduleAfter: o.RescheduleAfter, FenceMargin: o.FenceMargin, Interval: 100 * time.Millisecond}
		})
		if err == nil {
			return m, addr, nil
		}
		lastErr = err
	}
	return nil, "", lastErr
}

// startHAHva wires an hva as hva/cmd/hva does, fencing after o.FenceAfter.
func startHAHva(node string, join []string, o HAOptions) (*haHva, error) {
	logger := logging.Discard()
	hv, err := dummy.New(dummy.DefaultConfig())
	if err != nil {
		return nil, err
	}
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID: node, Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0", Join: join,
		FastGossip: true, Logger: logger,
		Tags: map[string]string{proto.TagFenceMs: strconv.FormatInt(o.FenceAfter.Milliseconds(), 10)},
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
	h, err := handlers.New(handlers.Config{NodeID: node, Hypervisor: hv, Collector: cc, Events: a, Logger: logger,
		Fence: handlers.FenceConfig{Heartbeat: cc, After: o.FenceAfter}})
	if err != nil {
		return nil, err
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(context.Background())
	x := &haHva{agent: a, hv: hv, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(x.done)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); h.RunMonitor(ctx) }()
		go func() { defer wg.Done(); h.RunFence(ctx) }()
		wg.Wait()
	}()
	return x, nil
}
