package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// vdcbench serf: serf membership convergence of the simulated datacenter
// (dcmgr, a scheduler and N dummy hvas in processes of HvasPerProcess, as
// `dc` starts them) for several N and serf tunings, without placing anything.

// SerfOptions configure the `serf` benchmark.
type SerfOptions struct {
	// Agents are the hva counts (N), one cluster each.
	Agents         []int
	HvasPerProcess int
	Managers       int
	// Gossip is every member's profile (crowd or fast); Tunes are the hva
	// settings tried over it (parseGossipTune; "" is the profile as is).
	Gossip string
	Tunes  []string
	// Reps is how many clusters per (N, tune); Converge bounds each wait.
	Reps     int
	Converge time.Duration
	Bin      string
	Self     string
	// ProfileDir, when set, gets a CPU profile of every hvasim process
	// (of the last cluster run).
	ProfileDir string
	// IdleAfter is how long after convergence the 5 s idle CPU window
	// starts: the gossip of the joins goes on after every member knows
	// them (each member retransmits each alive message).
	IdleAfter time.Duration
}

// DefaultSerfOptions is issue 6's question: 100, 200 and 500 hvas with
// the current CrowdGossip.
func DefaultSerfOptions() SerfOptions {
	return SerfOptions{Agents: []int{100, 200, 500}, HvasPerProcess: 100, Managers: 1, Gossip: "crowd",
		Tunes: []string{""}, Reps: 1, Converge: 5 * time.Minute, Bin: "bin", IdleAfter: 30 * time.Second}
}

// ShortSerfOptions is a seconds-long run of the same code.
func ShortSerfOptions() SerfOptions {
	o := DefaultSerfOptions()
	o.Agents, o.HvasPerProcess, o.Tunes, o.Converge, o.IdleAfter = []int{4}, 2, []string{"", "push_pull=2s,seeds=2"}, time.Minute, 0
	return o
}

// SerfRow is one cluster's membership figures (seconds from the first
// hvasim process started; -1: not within Converge).
type SerfRow struct {
	Agents                 int     `json:"agents"`
	Tune                   string  `json:"tune"`
	HvasStartedSeconds     float64 `json:"hvas_started_seconds"`
	ManagerSeesAllSeconds  float64 `json:"manager_sees_all_seconds"`
	AgentsConvergedSeconds float64 `json:"agents_converged_seconds"`
	// AgentConvergedMedianSeconds: the median hva's first instant of seeing
	// every member alive.
	AgentConvergedMedianSeconds float64 `json:"agent_converged_median_seconds"`
	// ConvergeCPU: cores by role from the first hvasim start until every
	// hva saw all (ConvergeSeconds of wall time); IdleCPU: the 5 s after.
	ConvergeCPU     map[string]float64 `json:"converge_cpu_cores"`
	ConvergeSeconds float64            `json:"converge_cpu_wall_seconds"`
	IdleCPU         map[string]float64 `json:"idle_cpu_cores"`
	// ConvergeGossip: memberlist's counts in the hvas until convergence;
	// IdleGossip: during the idle window (gossipCounter).
	ConvergeGossip map[string]float64 `json:"converge_gossip_counts"`
	IdleGossip     map[string]float64 `json:"idle_gossip_counts"`
}

// SerfResult is the `serf` benchmark's table.
type SerfResult struct {
	Options SerfOptions `json:"options"`
	Rows    []SerfRow   `json:"rows"`
}

// Serf measures membership convergence for every (tune, N).
func (r *Runner) Serf(ctx context.Context, o SerfOptions) (*SerfResult, error) {
	if len(o.Agents) == 0 || len(o.Tunes) == 0 || o.HvasPerProcess < 1 || o.Managers < 1 {
		return nil, fmt.Errorf("serf: need agents, tunes, hvas per process and managers (got %+v)", o)
	}
	out := &SerfResult{Options: o}
	for _, tune := range o.Tunes {
		for _, n := range o.Agents {
			for rep := range max(o.Reps, 1) {
				r.progress("serf: %d hvas, tune %q, run %d", n, tune, rep+1)
				row, err := r.serfRun(ctx, o, n, tune)
				out.Rows = append(out.Rows, row)
				if err != nil {
					return out, fmt.Errorf("serf, %d hvas, tune %q: %w", n, tune, err)
				}
			}
		}
	}
	return out, nil
}

func (r *Runner) serfRun(ctx context.Context, o SerfOptions, n int, tune string) (SerfRow, error) {
	row := SerfRow{Agents: n, Tune: tune}
	do := DCOptions{Managers: o.Managers, Schedulers: 1, Hvas: n, HvasPerProcess: o.HvasPerProcess, Concurrency: 1,
		LocalStoreConcurrency: 2, Gossip: o.Gossip, GossipTune: tune, Bin: o.Bin, Self: o.Self, Converge: o.Converge,
		ProfileDir: o.ProfileDir}
	var res DCResult
	c, err := r.startDC(ctx, do, &res)
	if c != nil {
		defer func() {
			c.Close("")
			c.hc.CloseIdleConnections()
		}()
	}
	row.HvasStartedSeconds, row.ManagerSeesAllSeconds, row.AgentsConvergedSeconds = res.HvasStartedSeconds, res.ManagerSeesAllSeconds, res.AgentsConvergedSeconds
	row.AgentConvergedMedianSeconds, row.ConvergeCPU, row.ConvergeSeconds = res.AgentConvergedMedianSeconds, res.ConvergeCPU, res.ConvergeCPUSeconds
	row.ConvergeGossip = res.ConvergeGossip
	if err != nil {
		return row, err
	}
	if err := sleepCtx(ctx, o.IdleAfter); err != nil {
		return row, err
	}
	cpu0, self0, g0 := c.roleCPU(), sampleCPU(), c.gossipCounts()
	if err := sleepCtx(ctx, 5*time.Second); err != nil {
		return row, err
	}
	row.IdleCPU = cpuRates(cpu0, c.roleCPU(), self0, sampleCPU())
	row.IdleGossip = c.gossipCounts()
	for k, v := range g0 {
		row.IdleGossip[k] -= v
	}
	return row, nil
}

// converged is the median AgentsConvergedSeconds of the rows for (n, tune),
// -1 when one did not converge, and whether there were any.
func (res *SerfResult) converged(n int, tune string) (float64, bool) {
	var xs []float64
	for _, row := range res.Rows {
		if row.Agents != n || row.Tune != tune {
			continue
		}
		if row.AgentsConvergedSeconds < 0 {
			return -1, true
		}
		xs = append(xs, row.AgentsConvergedSeconds)
	}
	if len(xs) == 0 {
		return 0, false
	}
	return Summarize(xs).Median, true
}

// WriteTable prints every cluster's figures.
func (res *SerfResult) WriteTable(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "## serf: membership of %d dcmgr + 1 scheduler + N dummy hvas (%d per process), serf profile %q\n\n", o.Managers, o.HvasPerProcess, o.Gossip)
	fmt.Fprintln(w, "Times in seconds from the instant the driver starts the first hvasim process (the manager and scheduler already members) to the instant it observes:")
	fmt.Fprintln(w, "agents started: every hvasim process has started all its hva agents (serf created, RPC listening, join begun in the background);")
	fmt.Fprintln(w, "leader sees all: GET /internal/v1/members on the leader (polled every 100 ms) lists every member alive;")
	fmt.Fprintln(w, "every hva sees all: the last hva agent's serf (each checked every 100 ms in its process) lists every member alive (goal 5 s); median: the median hva's.")
	fmt.Fprintln(w, "Tune: the hvas' serf settings over the profile (managers and scheduler keep the profile); push_pull is scaled up by memberlist with the cluster size")
	fmt.Fprintln(w, "(×5 at 500 members); seeds=k: each agent also joins k agents of its process started before it; catch_up: agent.Config.CatchUp (off: none). -1: not within the bound.")
	fmt.Fprintln(w, "CPU during convergence: cores by role from the first hvasim start until every hva saw all (other: the rest of the shared machine); idle: the 5 s from --idle-after (default 30 s) after that.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Gossip work in the hvas (memberlist's counters, summed): state changes accepted (alive, suspect, dead; each member accepting the news counts once),")
	fmt.Fprintln(w, "full state exchanges started (pp: joins, catch-ups, periodic); until convergence, then in the idle window.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| N hvas | tune | agents started s | leader sees all s | every hva sees all s (median hva) | CPU cores by role during convergence | idle CPU cores by role | gossip until convergence | gossip idle 5 s |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, row := range res.Rows {
		tune := row.Tune
		if tune == "" {
			tune = "(profile as is)"
		}
		fmt.Fprintf(w, "| %d | %s | %.1f | %.1f | %.1f (%.1f) | %s | %s | %s | %s |\n", row.Agents, tune, row.HvasStartedSeconds,
			row.ManagerSeesAllSeconds, row.AgentsConvergedSeconds, row.AgentConvergedMedianSeconds, fmtCores(row.ConvergeCPU), fmtCores(row.IdleCPU),
			fmtGossip(row.ConvergeGossip), fmtGossip(row.IdleGossip))
	}
	fmt.Fprintln(w)
}

func fmtGossip(m map[string]float64) string {
	return fmt.Sprintf("alive %.0f, suspect %.0f, dead %.0f, pp %.0f", m["msg.alive"], m["msg.suspect"], m["msg.dead"], m["pushPullNode"])
}
