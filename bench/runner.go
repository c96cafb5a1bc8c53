// Package bench measures the manager foundation (raft commit path, 12.03 API,
// leader failover) and instance placement end to end (manager, scheduler
// daemon and dummy hvas) in one process on loopback and reports the figures
// with the machine they were taken on, in the style of limits.md.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Runner runs benchmarks with data dirs under Dir.
type Runner struct {
	// Dir holds every cluster's data; each cluster removes its own subdir.
	Dir string
	// Progress gets one line per step (nil = silent).
	Progress io.Writer
}

func (r *Runner) progress(format string, args ...any) {
	if r.Progress != nil {
		fmt.Fprintf(r.Progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

// Options select what `all` runs.
type Options struct {
	Raft     RaftOptions
	API      APIOptions
	Failover FailoverOptions
	Place    PlaceOptions
	DC       DCOptions
	// DCFailover is dc with the leader killed during the create phase.
	DCFailover DCOptions
	Scale      ScaleOptions
	Serf       SerfOptions
}

// DefaultOptions is the full suite.
func DefaultOptions() Options {
	return Options{Raft: DefaultRaftOptions(), API: DefaultAPIOptions(), Failover: DefaultFailoverOptions(),
		Place: DefaultPlaceOptions(), DC: DefaultDCOptions(), DCFailover: DefaultDCFailoverOptions(),
		Scale: DefaultScaleOptions(), Serf: DefaultSerfOptions()}
}

// ShortOptions is the smoke suite: tiny windows, 1 repetition, 2 failover
// trials, few seeded records. Its figures mean nothing; it keeps the harness
// from rotting.
func ShortOptions() Options {
	return Options{Raft: ShortRaftOptions(), API: ShortAPIOptions(), Failover: ShortFailoverOptions(),
		Place: ShortPlaceOptions(), DC: ShortDCOptions(), DCFailover: ShortDCFailoverOptions(),
		Scale: ShortScaleOptions(), Serf: ShortSerfOptions()}
}

// Report is everything one invocation measured, as written by --json.
type Report struct {
	Machine Machine `json:"machine"`
	Short   bool    `json:"short"`

	// Headline figures (absent when their benchmark did not run).
	RaftCommandsPerSec     *float64 `json:"raft_commands_per_sec,omitempty"` // 3 managers, 256 writers, median
	APIGetPerSec           *float64 `json:"api_get_per_sec,omitempty"`       // show of random ids, median
	APIPostPerSec          *float64 `json:"api_post_per_sec,omitempty"`      // create, median
	FailoverP99Ms          *float64 `json:"failover_p99_ms,omitempty"`
	FailoverMedianMs       *float64 `json:"failover_median_ms,omitempty"`
	LostAcknowledgedWrites *int     `json:"lost_acknowledged_writes,omitempty"`
	// End to end through the API with a scheduler and dummy hvas (place).
	PlacementsPerSec      *float64 `json:"placements_per_sec,omitempty"`
	CreateToRunningP50Ms  *float64 `json:"create_to_running_p50_ms,omitempty"`
	CreateToRunningP99Ms  *float64 `json:"create_to_running_p99_ms,omitempty"`
	TerminationsPerSec    *float64 `json:"terminations_per_sec,omitempty"`
	DeleteToTerminatedP50 *float64 `json:"delete_to_terminated_p50_ms,omitempty"`
	DeleteToTerminatedP99 *float64 `json:"delete_to_terminated_p99_ms,omitempty"`
	// The simulated datacenter (dc): managers, schedulers and hvas as
	// separate processes. When it ran, placements_per_sec and the
	// create_to_running figures above are its own (issue 6's figure); the
	// in-process place run's are kept under place_*.
	PlacePlacementsPerSec  *float64 `json:"place_placements_per_sec,omitempty"`
	PlaceCreateToRunP99Ms  *float64 `json:"place_create_to_running_p99_ms,omitempty"`
	AgentsConvergeSeconds  *float64 `json:"agents_converge_seconds,omitempty"`
	ManagerSeesAllSeconds  *float64 `json:"manager_sees_all_agents_seconds,omitempty"`
	LeaderRSSMBAfterCreate *float64 `json:"leader_rss_mb_after_create,omitempty"`
	// Failover under load (dcfailover, or dc with --kill-leader-every):
	// the leading dcmgr killed while instances are created.
	DCLeaderKills         *int     `json:"dc_leader_kills,omitempty"`
	DCFailoverP50Ms       *float64 `json:"dc_failover_p50_ms,omitempty"`
	DCFailoverP99Ms       *float64 `json:"dc_failover_p99_ms,omitempty"`
	DCLostAckedCreates    *int     `json:"dc_lost_acknowledged_creates,omitempty"`
	DCUnfinishedJobs      *int     `json:"dc_unfinished_jobs,omitempty"`
	DCDuplicateCreates    *int     `json:"dc_duplicate_creates,omitempty"`
	DCFailoverPlacePerSec *float64 `json:"dc_failover_placements_per_sec,omitempty"`
	// Scale: at the largest size of the 1-manager run (scale_instances),
	// the leader's memory and files, request latencies and restarts; the
	// 3-manager run's leader RSS and a follower's catching up from nothing.
	ScaleInstances         *int     `json:"scale_instances,omitempty"`
	ScaleFillPerSec        *float64 `json:"scale_fill_per_sec,omitempty"`
	ScaleRSSMB             *float64 `json:"scale_rss_mb,omitempty"`
	ScaleRSSAnonMB         *float64 `json:"scale_rss_anon_mb,omitempty"`
	ScaleStateDBMB         *float64 `json:"scale_state_db_mb,omitempty"`
	ScaleRaftDBMB          *float64 `json:"scale_raft_db_mb,omitempty"`
	ScaleSnapshotMB        *float64 `json:"scale_snapshot_mb,omitempty"`
	ScaleShowP99Ms         *float64 `json:"scale_show_p99_ms,omitempty"`
	ScaleList100P99Ms      *float64 `json:"scale_list_100_p99_ms,omitempty"`
	ScaleList1000P99Ms     *float64 `json:"scale_list_1000_p99_ms,omitempty"`
	ScaleRestartMs         *float64 `json:"scale_restart_ms,omitempty"`
	ScaleSnapshotRestoreMs *float64 `json:"scale_snapshot_restore_ms,omitempty"`
	Scale3mInstances       *int     `json:"scale_3m_instances,omitempty"`
	Scale3mLeaderRSSMB     *float64 `json:"scale_3m_leader_rss_mb,omitempty"`
	Scale3mFollowerSyncMs  *float64 `json:"scale_3m_follower_catchup_ms,omitempty"`
	// Serf: every hva sees every member alive, with the profile as is
	// (-1: not within the bound), and with the best tuning tried at 500.
	SerfConverge100Seconds      *float64 `json:"serf_converge_100_seconds,omitempty"`
	SerfConverge200Seconds      *float64 `json:"serf_converge_200_seconds,omitempty"`
	SerfConverge500Seconds      *float64 `json:"serf_converge_500_seconds,omitempty"`
	SerfConverge500TunedSeconds *float64 `json:"serf_converge_500_tuned_seconds,omitempty"`

	// CPU is the average CPU use while each benchmark ran: its own and
	// everybody else's on the machine (other_cores well above 0 means the
	// figures were taken on a busy machine).
	CPU map[string]cpuUse `json:"cpu,omitempty"`

	Raft       *RaftResult     `json:"raft,omitempty"`
	API        *APIResult      `json:"api,omitempty"`
	Failover   *FailoverResult `json:"failover,omitempty"`
	Place      *PlaceResult    `json:"place,omitempty"`
	DC         *DCResult       `json:"dc,omitempty"`
	DCFailover *DCResult       `json:"dcfailover,omitempty"`
	Scale      *ScaleResult    `json:"scale,omitempty"`
	Serf       *SerfResult     `json:"serf,omitempty"`
}

// Fill sets the headline figures from the results present.
func (rep *Report) Fill() {
	if rep.Raft != nil {
		if row, ok := rep.Raft.Find(3, 256); ok {
			v := row.Rate.Median
			rep.RaftCommandsPerSec = &v
		}
	}
	if rep.API != nil {
		if row, ok := rep.API.Find(APIShow); ok {
			v := row.Rate.Median
			rep.APIGetPerSec = &v
		}
		if row, ok := rep.API.Find(APIPost); ok {
			v := row.Rate.Median
			rep.APIPostPerSec = &v
		}
	}
	if rep.Failover != nil {
		p99, med, lost := rep.Failover.P99Ms, rep.Failover.FailoverMs.Median, rep.Failover.Lost
		rep.FailoverP99Ms, rep.FailoverMedianMs, rep.LostAcknowledgedWrites = &p99, &med, &lost
	}
	if rep.Place != nil {
		rep.fillPlacements(rep.Place.Create, rep.Place.Terminate, rep.Place.Reps)
	}
	if d := rep.DC; d != nil {
		rep.PlacePlacementsPerSec, rep.PlaceCreateToRunP99Ms = rep.PlacementsPerSec, rep.CreateToRunningP99Ms
		rep.PlacementsPerSec, rep.CreateToRunningP50Ms, rep.CreateToRunningP99Ms = nil, nil, nil
		rep.TerminationsPerSec, rep.DeleteToTerminatedP50, rep.DeleteToTerminatedP99 = nil, nil, nil
		rep.fillPlacements(d.Create, d.Terminate, d.Reps)
		conv, mgr, rss := d.AgentsConvergedSeconds, d.ManagerSeesAllSeconds, d.LeaderRSSMB
		rep.AgentsConvergeSeconds, rep.ManagerSeesAllSeconds, rep.LeaderRSSMBAfterCreate = &conv, &mgr, &rss
		left := d.UnfinishedJobs
		rep.DCUnfinishedJobs = &left
		if d.Options.KillLeaderEvery > 0 {
			rep.fillFailover(d)
		}
	}
	if d := rep.DCFailover; d != nil {
		rep.fillFailover(d)
	}
	if s := rep.Scale; s != nil {
		rep.fillScale(s)
	}
	if s := rep.Serf; s != nil {
		for _, x := range []struct {
			n   int
			dst **float64
		}{{100, &rep.SerfConverge100Seconds}, {200, &rep.SerfConverge200Seconds}, {500, &rep.SerfConverge500Seconds}} {
			if v, ok := s.converged(x.n, ""); ok {
				*x.dst = &v
			}
		}
		for _, tune := range s.Options.Tunes {
			v, ok := s.converged(500, tune)
			if tune == "" || !ok || v < 0 {
				continue
			}
			if rep.SerfConverge500TunedSeconds == nil || v < *rep.SerfConverge500TunedSeconds {
				rep.SerfConverge500TunedSeconds = &v
			}
		}
	}
}

// fillFailover sets the failover-under-load figures of a dc run with kills.
func (rep *Report) fillFailover(d *DCResult) {
	kills, lost, left, dups := len(d.Kills), d.LostAcked, d.UnfinishedJobs, d.Duplicates
	rep.DCLeaderKills, rep.DCLostAckedCreates, rep.DCUnfinishedJobs, rep.DCDuplicateCreates = &kills, &lost, &left, &dups
	if d.FailoverMs != nil {
		p50, p99 := d.FailoverMs.Median, d.FailoverP99Ms
		rep.DCFailoverP50Ms, rep.DCFailoverP99Ms = &p50, &p99
	}
	if d.Create != nil && d.Create.PerSec > 0 {
		v := d.Create.PerSec
		rep.DCFailoverPlacePerSec = &v
	}
}

// fillScale sets the scale headline figures.
func (rep *Report) fillScale(s *ScaleResult) {
	f := func(v float64) *float64 { return &v }
	if _, pt := s.largest(1); pt != nil {
		n := pt.Instances
		rep.ScaleInstances = &n
		if pt.FillPerSec > 0 {
			rep.ScaleFillPerSec = f(pt.FillPerSec)
		}
		if l, ok := pt.leader(); ok {
			rep.ScaleRSSMB, rep.ScaleRSSAnonMB = f(l.RSSMB), f(l.RSSAnonMB)
			rep.ScaleStateDBMB, rep.ScaleRaftDBMB, rep.ScaleSnapshotMB = f(l.StateDBMB), f(l.RaftDBMB), f(l.SnapshotMB)
		}
		for name, dst := range map[string]**float64{"show": &rep.ScaleShowP99Ms, "list limit=100": &rep.ScaleList100P99Ms,
			"list limit=1000": &rep.ScaleList1000P99Ms} {
			if l, ok := pt.latency(name); ok {
				*dst = f(l.P99ms)
			}
		}
		if m, ok := pt.restart("crash"); ok {
			rep.ScaleRestartMs = f(m.CaughtUpMs)
		}
		if m, ok := pt.restart("state_db_lost"); ok {
			rep.ScaleSnapshotRestoreMs = f(m.CaughtUpMs)
		}
	}
	if _, pt := s.largest(3); pt != nil {
		n := pt.Instances
		rep.Scale3mInstances = &n
		if l, ok := pt.leader(); ok {
			rep.Scale3mLeaderRSSMB = f(l.RSSMB)
		}
		if m, ok := pt.restart("data_dir_lost"); ok {
			rep.Scale3mFollowerSyncMs = f(m.CaughtUpMs)
		}
	}
}

// fillPlacements sets the placement headline figures from a run (or the
// medians over its repetitions). A phase that did not account for every
// request gives none.
func (rep *Report) fillPlacements(create, terminate *PlacePhase, reps *RepSummary) {
	complete := func(ph *PlacePhase) bool {
		return ph != nil && ph.Reached > 0 && ph.Reached+ph.Failed+ph.Stranded == ph.Requested
	}
	if complete(create) {
		rate, p50, p99 := create.PerSec, create.ToP50ms, create.ToP99ms
		if reps != nil {
			rate, p50, p99 = reps.CreatePerSec.Median, reps.CreateP50ms.Median, reps.CreateP99ms.Median
		}
		rep.PlacementsPerSec, rep.CreateToRunningP50Ms, rep.CreateToRunningP99Ms = &rate, &p50, &p99
	}
	if complete(terminate) {
		rate, p50, p99 := terminate.PerSec, terminate.ToP50ms, terminate.ToP99ms
		if reps != nil {
			rate, p99 = reps.TerminatePerSec.Median, reps.TerminateP99ms.Median
		}
		rep.TerminationsPerSec, rep.DeleteToTerminatedP50, rep.DeleteToTerminatedP99 = &rate, &p50, &p99
	}
}

// WriteTables prints the machine and every table present.
func (rep *Report) WriteTables(w io.Writer) {
	rep.Machine.WriteTable(w)
	if len(rep.CPU) > 0 {
		fmt.Fprint(w, "CPU cores used on average while each benchmark ran (this process / all other processes):")
		for _, name := range []string{"raft", "api", "failover", "place", "dc", "dcfailover", "scale", "serf"} {
			if u, ok := rep.CPU[name]; ok {
				fmt.Fprintf(w, " %s %.2f / %.2f;", name, u.Own, u.Other)
			}
		}
		fmt.Fprint(w, "\n\n")
	}
	if rep.Short {
		fmt.Fprintln(w, "**--short run: windows of ~0.2 s, figures are a smoke test, not measurements.**")
		fmt.Fprintln(w)
	}
	rep.WriteSummary(w)
	if rep.Raft != nil {
		rep.Raft.WriteTable(w)
	}
	if rep.API != nil {
		rep.API.WriteTable(w)
	}
	if rep.Failover != nil {
		rep.Failover.WriteTable(w)
	}
	if rep.Place != nil {
		rep.Place.WriteTable(w)
	}
	if rep.DC != nil {
		rep.DC.WriteTable(w)
	}
	if rep.DCFailover != nil {
		fmt.Fprintln(w, "# dcfailover")
		fmt.Fprintln(w)
		rep.DCFailover.WriteTable(w)
	}
	if rep.Scale != nil {
		rep.Scale.WriteTable(w)
	}
	if rep.Serf != nil {
		rep.Serf.WriteTable(w)
	}
}

// WriteJSON writes the report to path.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Machine is what the figures were measured on.
type Machine struct {
	Cores     int    `json:"cores"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	GitCommit string `json:"git_commit"`
	Date      string `json:"date"`
	// LoadAvg is /proc/loadavg's 1/5/15-minute loads at start and at the end:
	// other processes on the machine skew every figure. The end value
	// includes the benchmark's own load (1–2 on 2 cores).
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
}

// Probe describes this machine now (LoadAvgEnd is set by Finish).
func Probe(ctx context.Context) Machine {
	return Machine{
		Cores:        runtime.NumCPU(),
		CPUModel:     cpuModel(),
		GoVersion:    runtime.Version(),
		Kernel:       readTrim("/proc/sys/kernel/osrelease"),
		GitCommit:    gitCommit(ctx),
		Date:         time.Now().UTC().Format(time.RFC3339),
		LoadAvgStart: loadAvg(),
	}
}

// Finish records the load at the end of the run.
func (m *Machine) Finish() { m.LoadAvgEnd = loadAvg() }

// WriteTable prints the machine as a small table.
func (m Machine) WriteTable(w io.Writer) {
	fmt.Fprintln(w, "## machine")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| cores | CPU | Go | kernel | commit | date (UTC) | loadavg start → end (end includes this run) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s → %s |\n\n",
		m.Cores, m.CPUModel, m.GoVersion, m.Kernel, m.GitCommit, m.Date, m.LoadAvgStart, m.LoadAvgEnd)
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// gitCommit is `git rev-parse --short HEAD` in the working directory with
// "+dirty" when tracked files differ from it, or "unknown" without git or
// outside a repository.
func gitCommit(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(strings.TrimSpace(string(st))) > 0 {
		commit += "+dirty"
	}
	return commit
}

// Run runs the benchmarks named in which ("raft", "api", "failover",
// "place", "dc", "dcfailover", "scale", "serf"), in that order, and returns
// the report. On an error the report holds what finished.
func (r *Runner) Run(ctx context.Context, which []string, o Options, short bool) (*Report, error) {
	rep := &Report{Machine: Probe(ctx), Short: short}
	defer func() { rep.Machine.Finish(); rep.Fill() }()
	for _, name := range which {
		var err error
		before := sampleCPU()
		switch name {
		case "raft":
			rep.Raft, err = r.Raft(ctx, o.Raft)
		case "api":
			rep.API, err = r.API(ctx, o.API)
		case "failover":
			rep.Failover, err = r.Failover(ctx, o.Failover)
		case "place":
			rep.Place, err = r.placeReps(ctx, o.Place, o.Place.Reps)
		case "dc":
			rep.DC, err = r.dcReps(ctx, o.DC, o.DC.Reps)
		case "dcfailover":
			rep.DCFailover, err = r.DC(ctx, o.DCFailover)
		case "scale":
			rep.Scale, err = r.Scale(ctx, o.Scale)
		case "serf":
			rep.Serf, err = r.Serf(ctx, o.Serf)
		default:
			err = fmt.Errorf("unknown benchmark %q", name)
		}
		if u, ok := cpuSince(before); ok && err == nil {
			if rep.CPU == nil {
				rep.CPU = map[string]cpuUse{}
			}
			rep.CPU[name] = u
		}
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}
