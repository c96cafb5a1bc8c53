package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/agent"
)

// HvaSimOptions configure one process of simulated hvas (vdcbench hvasim):
// Count hvas hva.b<First> … each a full hva agent (its own serf member and
// RPC listener, the hva handlers over a dummy hypervisor, its monitor).
type HvaSimOptions struct {
	First, Count int
	Join         []string
	// ExpectMembers is the cluster size at which an agent's membership has
	// converged (every agent, scheduler and manager).
	ExpectMembers         int
	LocalStoreConcurrency int
	Gossip                string // crowd or fast
	// GossipTune adjusts the serf timers after Gossip (parseGossipTune).
	GossipTune string
	// ReportRunning, when set, is how often the process reports how many
	// domains its dummy hypervisors run (event "running").
	ReportRunning time.Duration
}

// gossipTune is a parsed GossipTune: serf settings over the Gossip
// profile, and how agents join.
type gossipTune struct {
	set []func(*serf.Config)
	// seeds is how many more agents of its process, picked at random among
	// those started before it, an agent joins besides its parent.
	seeds int
	// catchUp is agent.Config.CatchUp (0: the default; -1: off).
	catchUp time.Duration
}

// parseGossipTune reads comma-separated key=value settings: push_pull
// (memberlist PushPullInterval, a duration; memberlist scales it up with the
// cluster size), retransmit_mult, gossip_nodes, gossip_interval,
// suspicion_mult, probe_interval, probe_timeout, seeds (joins per agent, see
// gossipTune) and catch_up (agent.Config.CatchUp, a duration or off). ""
// is no change.
func parseGossipTune(s string) (gossipTune, error) {
	var t gossipTune
	if s == "" {
		return t, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return t, fmt.Errorf("gossip tune %q: want key=value", kv)
		}
		var d time.Duration
		var n int
		var err error
		switch k {
		case "catch_up":
			if v == "off" {
				t.catchUp = -1
				continue
			}
			if t.catchUp, err = time.ParseDuration(v); err == nil && t.catchUp <= 0 {
				err = errors.New("not positive")
			}
			if err != nil {
				return t, fmt.Errorf("gossip tune %s: %w", kv, err)
			}
			continue
		case "push_pull", "gossip_interval", "probe_interval", "probe_timeout":
			d, err = time.ParseDuration(v)
			if err == nil && d <= 0 {
				err = errors.New("not positive")
			}
		case "retransmit_mult", "gossip_nodes", "suspicion_mult", "seeds":
			n, err = strconv.Atoi(v)
			if err == nil && n < 0 {
				err = errors.New("negative")
			}
		default:
			return t, fmt.Errorf("gossip tune: unknown key %q", k)
		}
		if err != nil {
			return t, fmt.Errorf("gossip tune %s: %w", kv, err)
		}
		switch k {
		case "push_pull":
			t.set = append(t.set, func(c *serf.Config) { c.MemberlistConfig.PushPullInterval = d })
		case "gossip_interval":
			t.set = append(t.set, func(c *serf.Config) { c.MemberlistConfig.GossipInterval = d })
		case "probe_interval":
			t.set = append(t.set, func(c *serf.Config) { c.MemberlistConfig.ProbeInterval = d })
		case "probe_timeout":
			t.set = append(t.set, func(c *serf.Config) { c.MemberlistConfig.ProbeTimeout = d })
		case "retransmit_mult":
			t.set = append(t.set, func(c *serf.Config) { c.MemberlistConfig.RetransmitMult = n })
		case "gossip_nodes":
			t.set = append(t.set, func(c *serf.Config) { c.MemberlistConfig.GossipNodes = n })
		case "suspicion_mult":
			t.set = append(t.set, func(c *serf.Config) { c.MemberlistConfig.SuspicionMult = n })
		case "seeds":
			t.seeds = n
		}
	}
	return t, nil
}

// hvaSimReport is one line of an hvasim process's stdout.
type hvaSimReport struct {
	Event string `json:"event"` // started, converged, running, gossip, stopped, error
	// Ms is milliseconds since the process started its first agent.
	Ms    float64 `json:"ms"`
	Count int     `json:"count,omitempty"`
	// Times are, in "converged", each agent's ms (since the process
	// started its first agent) at which it first saw every member alive.
	Times []float64 `json:"times,omitempty"`
	// Gossip are the process's memberlist counts so far (gossipCounter),
	// in "gossip" events.
	Gossip map[string]float64 `json:"gossip,omitempty"`
	Error  string             `json:"error,omitempty"`
}

// RunHvaSim starts the agents, reports "started", then "converged" once
// every agent's serf sees ExpectMembers members alive, and runs until ctx
// ends; then it stops them ("stopped"). Reports are JSON lines on out.
func RunHvaSim(ctx context.Context, o HvaSimOptions, out io.Writer) error {
	if o.Count < 1 || o.First < 1 || len(o.Join) == 0 || o.LocalStoreConcurrency < 1 {
		return fmt.Errorf("hvasim: need first, count, join and local-store concurrency (got %+v)", o)
	}
	var wmu sync.Mutex
	report := func(r hvaSimReport) {
		b, _ := json.Marshal(r)
		wmu.Lock()
		fmt.Fprintf(out, "%s\n", b)
		wmu.Unlock()
	}
	gt, err := parseGossipTune(o.GossipTune)
	if err != nil {
		return err
	}
	tune := func(c *serf.Config) {
		if o.Gossip != "fast" {
			agent.CrowdGossip(c)
		}
		for _, f := range gt.set {
			f(c)
		}
	}
	gc, err := countGossip()
	if err != nil {
		return fmt.Errorf("hvasim: gossip counters: %w", err)
	}
	rnd := rand.New(rand.NewPCG(uint64(o.First), 1))
	t0 := time.Now()
	since := func() float64 { return ms(time.Since(t0)) }
	hvas := make([]*placeHva, 0, o.Count)
	defer func() {
		var wg sync.WaitGroup
		for _, h := range hvas {
			wg.Go(func() { h.stop() })
		}
		wg.Wait()
		report(hvaSimReport{Event: "stopped", Ms: since()})
	}()
	for i := range o.Count {
		// Every agent joins through the given members and, after the
		// first, an agent of this process started before it (a tree of
		// degree 4): a join is a full state exchange with each, so the
		// joiner starts out knowing what both know.
		join := o.Join
		if i > 0 {
			join = append(slices.Clone(o.Join), hvas[(i-1)/4].agent.SerfAddr())
			for range min(gt.seeds, i) {
				join = append(join, hvas[rnd.IntN(i)].agent.SerfAddr())
			}
		}
		h, err := startPlaceHva(hvaNode(o.First-1+i), join, o.LocalStoreConcurrency, tune, gt.catchUp)
		if err != nil {
			report(hvaSimReport{Event: "error", Ms: since(), Error: err.Error()})
			return err
		}
		hvas = append(hvas, h)
		if ctx.Err() != nil {
			return nil
		}
	}
	report(hvaSimReport{Event: "started", Ms: since(), Count: len(hvas)})

	converged := o.ExpectMembers <= 0
	seenAll := make([]float64, len(hvas))
	for i := range seenAll {
		seenAll[i] = -1
	}
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var lastRunning, lastGossip time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if o.ReportRunning > 0 && time.Since(lastRunning) >= o.ReportRunning {
			lastRunning = time.Now()
			report(hvaSimReport{Event: "running", Ms: since(), Count: runningDomains(ctx, hvas)})
		}
		if time.Since(lastGossip) >= time.Second {
			lastGossip = time.Now()
			report(hvaSimReport{Event: "gossip", Ms: since(), Gossip: gc.counts()})
		}
		if converged {
			continue
		}
		// Each agent's first instant of seeing every member alive (the
		// members do not fail here, so it stays converged).
		for i, h := range hvas {
			if seenAll[i] < 0 && h.agent.NumAlive() >= o.ExpectMembers {
				seenAll[i] = since()
			}
		}
		if !slices.Contains(seenAll, -1) {
			converged = true
			report(hvaSimReport{Event: "converged", Ms: since(), Count: len(hvas), Times: seenAll})
		}
	}
}

// runningDomains counts the domains alive on the hvas' dummy hypervisors.
func runningDomains(ctx context.Context, hvas []*placeHva) int {
	n := 0
	for _, h := range hvas {
		doms, err := h.hv.List(ctx)
		if err != nil {
			continue
		}
		for _, d := range doms {
			if d.State.Alive() {
				n++
			}
		}
	}
	return n
}

// stop ends an hva's monitor, then its agent.
func (h *placeHva) stop() {
	h.stopMonitor()
	<-h.monDone
	ctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
	defer cancel()
	_ = h.agent.Shutdown(ctx)
}
