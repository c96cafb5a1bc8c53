package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
)

// vdcbench scale: the managers with many instances in their state. The
// simulated datacenter (dcmgr processes, a scheduler process, a process of
// dummy hvas) is filled through the API — every instance a POST
// /instances placed by the scheduler and run by its hva, so the state holds
// what a normal create leaves: the instance, its boot volume, its vif, IP
// lease and MAC claim, and its two finished jobs — up to each size in turn.
// At each size it reports the managers' memory and data files, the latency
// of show and list requests, and how long a manager takes to come back.

// ScaleOptions configure the `scale` benchmark.
type ScaleOptions struct {
	// Managers are the cluster sizes, one run each.
	Managers []int
	// Sizes are the instance counts measured at, ascending.
	Sizes []int
	// Hvas dummy hvas in processes of HvasPerProcess carry the instances
	// (each host offers room for placeHostCores of them).
	Hvas           int
	HvasPerProcess int
	// Concurrency is the clients POSTing the instances; Window bounds the
	// instances POSTed and not yet running (the hvas' count), so that the
	// fill runs at the rate the pipeline sustains instead of queueing
	// (POSTs are accepted faster than they are placed).
	Concurrency int
	Window      int
	// Samples is the requests of each latency row (sequential, one client).
	Samples int
	// Restarts: at each size, restart a manager (crash, lost state.db, and
	// with several managers a lost data directory) and time its catching up.
	Restarts bool
	Gossip   string
	Bin      string
	Self     string
	// Timeout bounds each fill.
	Timeout  time.Duration
	KeepLogs string `json:"-"`
}

// DefaultScaleOptions is issue 6's run: 1 and 3 managers at 10,000 and
// 100,000 instances on 50 hvas.
func DefaultScaleOptions() ScaleOptions {
	return ScaleOptions{
		Managers: []int{1, 3}, Sizes: []int{10000, 100000}, Hvas: 50, HvasPerProcess: 50,
		Concurrency: 64, Window: 1000, Samples: 200, Restarts: true, Gossip: "crowd", Bin: "bin",
		Timeout: 2 * time.Hour,
	}
}

// ShortScaleOptions is a seconds-long run of the same code.
func ShortScaleOptions() ScaleOptions {
	o := DefaultScaleOptions()
	o.Managers, o.Sizes, o.Hvas, o.HvasPerProcess, o.Concurrency, o.Samples = []int{1}, []int{40, 80}, 2, 2, 8, 10
	o.Timeout = 3 * time.Minute
	return o
}

// ScaleResult is the `scale` benchmark's figures.
type ScaleResult struct {
	Options ScaleOptions `json:"options"`
	Runs    []*ScaleRun  `json:"runs"`
}

// ScaleRun is one cluster filled size by size.
type ScaleRun struct {
	Managers     int           `json:"managers"`
	SetupSeconds float64       `json:"setup_seconds"`
	Points       []*ScalePoint `json:"points"`
	// Fill is the running-instance count every few seconds of the fills.
	Fill []FillSample `json:"fill_samples"`
}

// FillSample is the running instances at a time since the first fill began.
type FillSample struct {
	Seconds float64 `json:"s"`
	Running int     `json:"running"`
}

// ScalePoint is everything measured at one size.
type ScalePoint struct {
	Instances int `json:"instances"`
	// The fill from the previous size: requests acknowledged, retried
	// (503 or refused) and failed for good, and the rate from the first
	// request to the poll that saw every acknowledged instance running.
	Acked        int                `json:"acked"`
	Retries      int                `json:"retries"`
	Failed       int                `json:"failed_requests"`
	FillSeconds  float64            `json:"fill_seconds"`
	FillPerSec   float64            `json:"fill_per_sec"`
	FillCPU      map[string]float64 `json:"fill_cpu_cores"`
	IdleCPU      map[string]float64 `json:"idle_cpu_cores"`
	UnfinishedJb int                `json:"unfinished_jobs"`
	// Records are list totals by kind (instances, volumes, network_vifs, jobs).
	Records  map[string]int   `json:"records"`
	Managers []ScaleManager   `json:"managers"`
	Latency  []LatencyRow     `json:"latency"`
	Restarts []RestartMeasure `json:"restarts,omitempty"`
	// SnapshotWaitSeconds is the wait for raft's next snapshot after the
	// fill (see waitSnapshots).
	SnapshotWaitSeconds float64 `json:"snapshot_wait_seconds"`
	// ApplyStalls are the times during the fill when the leader's state
	// stopped advancing although the log had more to apply.
	ApplyStalls []ApplyStall `json:"apply_stalls,omitempty"`
	// SnapshotUse is what the leader's newest snapshot (a copy of
	// state.db) holds.
	SnapshotUse *FileUse `json:"snapshot_use,omitempty"`
	// AppliedIndex is the leader's state index (its last state change).
	AppliedIndex uint64            `json:"applied_index"`
	Errors       map[string]string `json:"errors,omitempty"`
}

// ScaleManager is one manager's memory and data directory.
type ScaleManager struct {
	Name   string `json:"name"`
	Leader bool   `json:"leader"`
	ProcMemory
	DiskUsage
}

// LatencyRow is one request's latency, sent Samples times in a row.
type LatencyRow struct {
	Name   string  `json:"name"`
	Path   string  `json:"path"`
	N      int     `json:"n"`
	Errors int     `json:"errors"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	MeanMs float64 `json:"mean_ms"`
	MaxMs  float64 `json:"max_ms"`
	// Bytes is the size of the last answer.
	Bytes int `json:"bytes"`
}

// RestartMeasure is one manager restart.
type RestartMeasure struct {
	Kind    string `json:"kind"` // crash, state_db_lost, data_dir_lost
	Manager string `json:"manager"`
	// Index is the log index the manager had to reach (the leader's
	// applied index when it was killed: its last state change).
	Index uint64 `json:"index"`
	// APIUpMs is from the start of the process to its first answer,
	// CaughtUpMs to its applied index reaching Index (and, alone, leading).
	APIUpMs    float64 `json:"api_up_ms"`
	CaughtUpMs float64 `json:"caught_up_ms"`
	// After is its memory once caught up.
	After ProcMemory `json:"after"`
}

// scaleLatencyTimeout bounds one latency row.
const scaleLatencyTimeout = 60 * time.Second

// scaleRestartTimeout bounds one restart's catching up.
const scaleRestartTimeout = 10 * time.Minute

// Scale runs the scale benchmark: one run per cluster size.
func (r *Runner) Scale(ctx context.Context, o ScaleOptions) (*ScaleResult, error) {
	if len(o.Managers) == 0 || len(o.Sizes) == 0 || o.Hvas < 1 || o.Concurrency < 1 || o.Window < 1 || o.Samples < 1 {
		return nil, fmt.Errorf("scale: need managers, sizes, hvas, concurrency, window and samples (got %+v)", o)
	}
	if !slices.IsSorted(o.Sizes) || o.Sizes[0] < 1 {
		return nil, fmt.Errorf("scale: sizes must be positive and ascending (got %v)", o.Sizes)
	}
	if need := (o.Sizes[len(o.Sizes)-1] + o.Hvas - 1) / o.Hvas; need > placeHostCores {
		return nil, fmt.Errorf("scale: %d instances need %d hvas or more (each takes %d)", o.Sizes[len(o.Sizes)-1], (o.Sizes[len(o.Sizes)-1]+placeHostCores-1)/placeHostCores, placeHostCores)
	}
	out := &ScaleResult{Options: o}
	for _, n := range o.Managers {
		run, err := r.scaleRun(ctx, o, n)
		if run != nil {
			out.Runs = append(out.Runs, run)
		}
		if err != nil {
			return out, fmt.Errorf("scale, %d managers: %w", n, err)
		}
	}
	return out, nil
}

// scaleNetworkPrefix makes room for 131,070 leases.
const scaleNetworkPrefix = 15

func (r *Runner) scaleRun(ctx context.Context, o ScaleOptions, managers int) (_ *ScaleRun, runErr error) {
	do := DCOptions{Managers: managers, Schedulers: 1, Hvas: o.Hvas, HvasPerProcess: o.HvasPerProcess,
		Concurrency: o.Concurrency, LocalStoreConcurrency: 2, Gossip: o.Gossip, Bin: o.Bin, Self: o.Self,
		Converge: 5 * time.Minute, ReportRunning: time.Second}
	run := &ScaleRun{Managers: managers}
	start := time.Now()
	c, err := r.startDC(ctx, do, &DCResult{})
	if c != nil {
		defer func() {
			keep := ""
			if runErr != nil && o.KeepLogs != "" {
				keep = fmt.Sprintf("%s-%dm-%s", o.KeepLogs, managers, time.Now().Format("150405"))
			}
			c.Close(keep)
			c.hc.CloseIdleConnections()
		}()
	}
	if err != nil {
		return nil, err
	}
	if err := c.seed(ctx, r, o.Hvas, scaleNetworkPrefix); err != nil {
		return nil, err
	}
	run.SetupSeconds = time.Since(start).Seconds()

	var ids []string
	fillStart := time.Now()
	for _, size := range o.Sizes {
		pt := &ScalePoint{Instances: size, Errors: map[string]string{}}
		run.Points = append(run.Points, pt)
		r.progress("scale: %d managers: filling %d → %d instances with %d clients", managers, len(ids), size, o.Concurrency)
		newIDs, err := r.scaleFill(ctx, c, o, len(ids), size, pt, run, fillStart)
		ids = append(ids, newIDs...)
		if err != nil {
			for _, st := range pt.ApplyStalls {
				r.progress("scale: the leader's state stood still for %.1f s at %.0f s into the fill (snapshot being written: %v)", st.Seconds, st.AtSeconds, st.DuringSnapshot)
			}
			return run, err
		}
		for _, st := range pt.ApplyStalls {
			r.progress("scale: the leader's state stood still for %.1f s at %.0f s into the fill (snapshot being written: %v)", st.Seconds, st.AtSeconds, st.DuringSnapshot)
		}
		r.progress("scale: %d instances running after %.0f s (%.1f inst/s; fill used %s)", size, pt.FillSeconds, pt.FillPerSec, fmtCores(pt.FillCPU))
		if err := r.waitSnapshots(ctx, c, pt); err != nil {
			return run, err
		}
		r.scaleMeasure(ctx, c, o, pt, ids)
		if o.Restarts {
			if err := r.scaleRestarts(ctx, c, o, pt); err != nil {
				return run, err
			}
		}
	}
	return run, nil
}

// scaleFill creates instances from..to-1 and waits until all of them run
// and no job is left.
func (r *Runner) scaleFill(ctx context.Context, c *dcCluster, o ScaleOptions, from, to int, pt *ScalePoint, run *ScaleRun, fillStart time.Time) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	n := to - from
	ids := make([]string, n)
	create := createInstance(c.hc, c.base, ids)
	var (
		next            atomic.Int64
		mu              sync.Mutex
		retries, failed int
		lastErr         string
		answered, acked atomic.Int64
		wg              sync.WaitGroup
		cpu0, self0     = c.roleCPU(), sampleCPU()
		base            = func() string { return c.liveAPI() + api.Prefix }
	)
	previouslyRunning, err := listTotal(ctx, c.hc, base()+"/instances.json?state=running&limit=1", false)
	if err != nil {
		return nil, err
	}
	domains0 := c.domainsRunning()
	var failedN atomic.Int64
	for range o.Concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				// Wait while Window instances are on their way.
				for int64(i)-failedN.Load()-int64(c.domainsRunning()-domains0) >= int64(o.Window) {
					if sleepCtx(ctx, 50*time.Millisecond) != nil {
						return
					}
				}
				var err error
				for attempt := range placeRetries {
					if _, err = create(ctx, i); err == nil || ctx.Err() != nil || !notDone(err) {
						break
					}
					mu.Lock()
					retries++
					mu.Unlock()
					_ = sleepCtx(ctx, placeRetryPause(attempt))
				}
				answered.Add(1)
				if err != nil {
					failedN.Add(1)
					mu.Lock()
					failed++
					lastErr = err.Error()
					mu.Unlock()
					continue
				}
				acked.Add(1)
			}
		})
	}
	t0 := time.Now()
	requestsDone := make(chan struct{})
	go func() { wg.Wait(); close(requestsDone) }()
	stalls := watchApply(ctx, c, requestsDone)
	defer func() { pt.ApplyStalls = stalls() }()

	// Poll the running count until every acknowledged instance runs after
	// the last answer, and no job is left.
	var doneAt time.Time
	lastNote := time.Now()
	for {
		pollStart := time.Now()
		running, err := listTotal(ctx, c.hc, base()+"/instances.json?state=running&limit=1", false)
		pollTook := time.Since(pollStart)
		if err == nil {
			run.Fill = append(run.Fill, FillSample{Seconds: time.Since(fillStart).Seconds(), Running: running})
			select {
			case <-requestsDone:
				if running >= previouslyRunning+int(acked.Load()) {
					doneAt = time.Now()
				}
			default:
			}
		}
		if !doneAt.IsZero() {
			break
		}
		if term, err := listTotal(ctx, c.hc, base()+"/instances.json?state=terminated&limit=1", false); err == nil && term > 0 {
			cancel()
			<-requestsDone
			return ids, fmt.Errorf("%d instances were terminated while being created (no room?)", term)
		}
		if time.Since(lastNote) >= 10*time.Second {
			lastNote = time.Now()
			r.progress("scale: %d of %d answered, %d running (hvas: %d domains) (%.0f s)", int(answered.Load()), n, running, c.domainsRunning(), time.Since(t0).Seconds())
		}
		// The count decodes every running instance on the leader: polls
		// are spaced so that they take at most a tenth of its time.
		if err := sleepCtx(ctx, max(fillPoll, 10*pollTook)); err != nil {
			<-requestsDone
			return ids, fmt.Errorf("fill to %d: %d of %d answered, %d failed (%s): %w", to, answered.Load(), n, failed, lastErr, err)
		}
	}
	pt.FillCPU = cpuRates(cpu0, c.roleCPU(), self0, sampleCPU())
	pt.Acked, pt.Retries, pt.Failed = int(acked.Load()), retries, failed
	pt.FillSeconds = doneAt.Sub(t0).Seconds()
	pt.FillPerSec = float64(pt.Acked) / pt.FillSeconds
	if failed > 0 {
		pt.Errors["fill"] = fmt.Sprintf("%d requests failed, the last: %s", failed, lastErr)
	}
	if pt.UnfinishedJb, err = c.settleJobs(ctx, r); err != nil {
		return ids, err
	}
	out := ids[:0]
	for _, id := range ids {
		if id != "" {
			out = append(out, id)
		}
	}
	return out, nil
}

// snapshotWait bounds the wait for raft's snapshots: raft looks every
// SnapshotInterval to 2×SnapshotInterval (2–4 s shipped), and a snapshot of
// a large state takes a while to write.
const snapshotWait = 6 * time.Minute

// waitSnapshots waits until every manager has a snapshot at most one
// SnapshotThreshold behind the leader's state (raft takes one at its next
// check once the log has grown by a threshold), so that the snapshot size
// and the restore from it are of this size.
func (r *Runner) waitSnapshots(ctx context.Context, c *dcCluster, pt *ScalePoint) error {
	leader, err := c.findLeader(ctx, formTimeout)
	if err != nil {
		return err
	}
	st, err := c.status(ctx, leader)
	if err != nil {
		return err
	}
	pt.AppliedIndex = st.AppliedIndex
	threshold := cluster.DefaultConfig().SnapshotThreshold
	start := time.Now()
	err = waitUntil(ctx, snapshotWait, func() error {
		for _, m := range c.managers {
			if d := diskUsage(m.dataDir); d.SnapshotIndex+threshold < st.AppliedIndex {
				return fmt.Errorf("%s's newest snapshot is at index %d, the state at %d", m.name, d.SnapshotIndex, st.AppliedIndex)
			}
		}
		return nil
	})
	pt.SnapshotWaitSeconds = time.Since(start).Seconds()
	if err != nil {
		// Measured anyway: the table shows the snapshot index.
		pt.Errors["snapshot"] = err.Error()
		r.progress("scale: %v", err)
	}
	return ctx.Err()
}

// ApplyStall is a time when the leader's applied index stayed put while its
// commit index was ahead (writes waiting), and whether raft was writing a
// snapshot meanwhile.
type ApplyStall struct {
	AtSeconds      float64 `json:"at_seconds"`
	Seconds        float64 `json:"seconds"`
	DuringSnapshot bool    `json:"during_snapshot"`
}

// stallMin is the shortest stall reported.
const stallMin = 3 * time.Second

// watchApply samples the leader's status every 500 ms until done closes and
// returns the stalls seen (call the returned func after done closed).
func watchApply(ctx context.Context, c *dcCluster, done <-chan struct{}) func() []ApplyStall {
	var out []ApplyStall
	finished := make(chan struct{})
	t0 := time.Now()
	go func() {
		defer close(finished)
		var last uint64
		var since time.Time
		snap := false
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		flush := func() {
			if !since.IsZero() && time.Since(since) >= stallMin {
				out = append(out, ApplyStall{AtSeconds: since.Sub(t0).Seconds(), Seconds: time.Since(since).Seconds(), DuringSnapshot: snap})
			}
			since, snap = time.Time{}, false
		}
		for {
			select {
			case <-done:
				flush()
				return
			case <-ctx.Done():
				flush()
				return
			case <-t.C:
			}
			l := c.currentLeader()
			st, err := c.status(ctx, l)
			if err != nil {
				continue
			}
			switch {
			case st.AppliedIndex != last || st.CommitIndex <= st.AppliedIndex+2:
				// Moving, or nothing (but raft's own entries) to apply.
				flush()
				last = st.AppliedIndex
			case since.IsZero():
				since = time.Now()
			}
			if !since.IsZero() && snapshotting(l.dataDir) {
				snap = true
			}
		}
	}()
	return func() []ApplyStall { <-finished; return out }
}

// snapshotting says whether raft is writing a snapshot into dataDir.
func snapshotting(dataDir string) bool {
	entries, _ := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			return true
		}
	}
	return false
}

// fillPoll is the shortest period of a fill's running-count polls.
const fillPoll = 2 * time.Second

// scaleMeasure takes the figures of one size: idle CPU, records, memory
// and files of every manager, request latencies.
func (r *Runner) scaleMeasure(ctx context.Context, c *dcCluster, o ScaleOptions, pt *ScalePoint, ids []string) {
	cpu0, self0 := c.roleCPU(), sampleCPU()
	if err := sleepCtx(ctx, 5*time.Second); err != nil {
		return
	}
	pt.IdleCPU = cpuRates(cpu0, c.roleCPU(), self0, sampleCPU())

	leader, err := c.findLeader(ctx, formTimeout)
	if err != nil {
		pt.Errors["leader"] = err.Error()
		return
	}
	base := leader.api + api.Prefix
	pt.Records = map[string]int{}
	for _, kind := range []string{"instances", "volumes", "network_vifs", "jobs"} {
		if n, err := listTotal(ctx, c.hc, base+"/"+kind+".json?limit=1", true); err == nil {
			pt.Records[kind] = n
		} else {
			pt.Errors["records "+kind] = err.Error()
		}
	}
	for _, m := range c.managers {
		pt.Managers = append(pt.Managers, ScaleManager{Name: m.name, Leader: m == leader, ProcMemory: m.memory(), DiskUsage: diskUsage(m.dataDir)})
	}
	if p := snapshotPath(leader.dataDir); p != "" {
		if u, err := boltUse(p); err == nil {
			pt.SnapshotUse = &u
			r.progress("scale: %d instances: the newest snapshot (%.0f MB) holds %.0f MB in use; largest buckets %v", pt.Instances, u.FileMB, u.InUseMB, u.Buckets)
		} else {
			pt.Errors["snapshot use"] = err.Error()
		}
	}
	lm := pt.Managers[slices.IndexFunc(pt.Managers, func(m ScaleManager) bool { return m.Leader })]
	r.progress("scale: %d instances: leader RSS %.0f MB (anon %.0f, file %.0f of which state.db %.0f, raft.db %.0f; peak %.0f); state.db %.0f MB, raft.db %.0f MB, snapshot %.0f MB; idle %s",
		pt.Instances, lm.RSSMB, lm.RSSAnonMB, lm.RSSFileMB, lm.RSSStateDBMB, lm.RSSRaftDBMB, lm.HWMMB,
		lm.StateDBMB, lm.RaftDBMB, lm.SnapshotMB, fmtCores(pt.IdleCPU))

	rnd := rand.New(rand.NewPCG(uint64(len(ids)), 2))
	rows := []struct {
		name string
		path func() string
	}{
		{"show", func() string { return "/instances/" + ids[rnd.IntN(len(ids))] + ".json" }},
		{"list limit=100", func() string { return "/instances.json?limit=100" }},
		{"list limit=1000", func() string { return "/instances.json?limit=1000" }},
		{"list start=n/2 limit=100", func() string { return fmt.Sprintf("/instances.json?start=%d&limit=100", len(ids)/2) }},
		{"list state=running limit=100", func() string { return "/instances.json?state=running&limit=100" }},
	}
	for _, row := range rows {
		lr := latencyRow(ctx, c.hc, base, row.name, row.path, o.Samples)
		pt.Latency = append(pt.Latency, lr)
		r.progress("scale: %d instances: %s: p50 %.1f ms, p99 %.1f ms (%d requests, %d errors, %d bytes)",
			pt.Instances, row.name, lr.P50ms, lr.P99ms, lr.N, lr.Errors, lr.Bytes)
	}
}

// latencyRow sends GET base+path() n times in a row (or for
// scaleLatencyTimeout) and summarizes the latencies of the 200 answers.
func latencyRow(ctx context.Context, hc *http.Client, base, name string, path func() string, n int) LatencyRow {
	row := LatencyRow{Name: name, Path: path()}
	deadline := time.Now().Add(scaleLatencyTimeout)
	var lats []time.Duration
	var total time.Duration
	for range n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		s := time.Now()
		body, err := expectOK(doRequest(ctx, hc, http.MethodGet, base+path(), nil))
		d := time.Since(s)
		if err != nil {
			row.Errors++
			continue
		}
		row.Bytes = len(body)
		lats = append(lats, d)
		total += d
	}
	row.N = len(lats)
	if row.N > 0 {
		slices.Sort(lats)
		row.P50ms, row.P99ms, row.MaxMs = ms(Percentile(lats, 50)), ms(Percentile(lats, 99)), ms(lats[len(lats)-1])
		row.MeanMs = ms(total) / float64(row.N)
	}
	return row
}

// scaleRestarts kills a manager (a follower when there are several: the
// cluster goes on) and starts it again, three ways, timing each.
func (r *Runner) scaleRestarts(ctx context.Context, c *dcCluster, o ScaleOptions, pt *ScalePoint) error {
	kinds := []string{"crash", "state_db_lost"}
	if len(c.managers) > 1 {
		kinds = append(kinds, "data_dir_lost")
	}
	for _, kind := range kinds {
		m, err := r.scaleRestart(ctx, c, kind)
		pt.Restarts = append(pt.Restarts, m)
		if err != nil {
			return fmt.Errorf("restart (%s): %w", kind, err)
		}
		r.progress("scale: %d instances: restart (%s) of %s: API up after %.0f ms, caught up to index %d after %.0f ms; RSS then %.0f MB",
			pt.Instances, kind, m.Manager, m.APIUpMs, m.Index, m.CaughtUpMs, m.After.RSSMB)
	}
	// Agents and the scheduler find the managers again before the next fill.
	return waitHostsOnline(ctx, c.hc, c.liveAPI()+api.Prefix, o.Hvas, func() bool { return c.schedulerAlive(ctx) })
}

func (r *Runner) scaleRestart(ctx context.Context, c *dcCluster, kind string) (RestartMeasure, error) {
	leader, err := c.findLeader(ctx, formTimeout)
	if err != nil {
		return RestartMeasure{Kind: kind}, err
	}
	victim := leader
	alone := len(c.managers) == 1
	if !alone {
		victim = c.managers[(slices.Index(c.managers, leader)+1)%len(c.managers)]
	}
	m := RestartMeasure{Kind: kind, Manager: victim.name}
	st, err := c.status(ctx, leader)
	if err != nil {
		return m, err
	}
	victim.kill()
	if !alone {
		// The index to reach: everything committed while it was down too.
		if st, err = c.status(ctx, leader); err != nil {
			return m, err
		}
	}
	m.Index = st.AppliedIndex
	switch kind {
	case "state_db_lost":
		if err := os.Remove(filepath.Join(victim.dataDir, "state.db")); err != nil {
			return m, err
		}
	case "data_dir_lost":
		if err := os.RemoveAll(victim.dataDir); err != nil {
			return m, err
		}
	}
	if err := c.restart(victim); err != nil {
		return m, err
	}
	started := time.Now()
	up, caught, err := c.waitCaughtUp(ctx, victim, m.Index, alone, scaleRestartTimeout)
	if !up.IsZero() {
		m.APIUpMs = ms(up.Sub(started))
	}
	if err != nil {
		return m, err
	}
	m.CaughtUpMs = ms(caught.Sub(started))
	m.After = victim.memory()
	if alone {
		c.setLeader(victim)
	}
	return m, nil
}

// WriteTable prints the scale figures.
func (res *ScaleResult) WriteTable(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "## scale: managers with many instances in their state (dcmgr processes, 1 scheduler, %d dummy hvas in processes of %d)\n\n", o.Hvas, o.HvasPerProcess)
	fmt.Fprintf(w, "Filled through the API: POST /instances (%d clients, at most %d instances on their way to running; 1 core, %d MB, 1 vif on a /%d, local boot volume),\n",
		o.Concurrency, o.Window, placeInstMemoryMB, scaleNetworkPrefix)
	fmt.Fprintln(w, "placed by the scheduler, run by the dummy hvas;")
	fmt.Fprintln(w, "each instance leaves its volume, vif, IP lease, MAC claim and two finished jobs. Fill rate: from the first POST to the running-count poll")
	fmt.Fprintln(w, "that saw them all (polls every 2 s or more: spaced to a tenth of the leader's time). Then raft's next snapshot is waited for.")
	fmt.Fprintln(w, "Latencies: one client, requests in a row to the leader.")
	fmt.Fprintln(w, "RSS = anon (Go heap, stacks) + file (pages of the mmapped state.db / raft.db the process touched); goal ≤ 1024 MB at 100,000.")
	fmt.Fprintln(w)
	for _, run := range res.Runs {
		fmt.Fprintf(w, "### %d manager(s) (setup %.1f s)\n\n", run.Managers, run.SetupSeconds)
		fmt.Fprintln(w, "| Instances | fill inst/s (s) | fill CPU cores by role | idle CPU at this size | records: volumes / vifs / jobs | leader RSS MB (anon / file: state.db + raft.db mapped; peak) | followers RSS MB | state.db MB | raft.db MB | newest snapshot MB (index / state index) |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
		for _, pt := range run.Points {
			var lm ScaleManager
			var fol []string
			for _, m := range pt.Managers {
				if m.Leader {
					lm = m
				} else {
					fol = append(fol, fmt.Sprintf("%.0f", m.RSSMB))
				}
			}
			fs := "–"
			if len(fol) > 0 {
				fs = strings.Join(fol, ", ")
			}
			fmt.Fprintf(w, "| %d | %.1f (%.0f) | %s | %s | %d / %d / %d | %.0f (%.0f / %.0f: %.0f + %.0f; %.0f) | %s | %.1f | %.1f | %.1f (%d / %d) |\n",
				pt.Instances, pt.FillPerSec, pt.FillSeconds, fmtCores(pt.FillCPU), fmtCores(pt.IdleCPU),
				pt.Records["volumes"], pt.Records["network_vifs"], pt.Records["jobs"],
				lm.RSSMB, lm.RSSAnonMB, lm.RSSFileMB, lm.RSSStateDBMB, lm.RSSRaftDBMB, lm.HWMMB, fs,
				lm.StateDBMB, lm.RaftDBMB, lm.SnapshotMB, lm.SnapshotIndex, pt.AppliedIndex)
		}
		fmt.Fprintln(w)
		for _, pt := range run.Points {
			if u := pt.SnapshotUse; u != nil {
				var bs []string
				for name, mb := range u.Buckets {
					bs = append(bs, fmt.Sprintf("%s %.1f", name, mb))
				}
				slices.Sort(bs)
				fmt.Fprintf(w, "- at %d: the newest snapshot (a copy of state.db, %.0f MB) holds %.0f MB in use (largest buckets, MB: %s); the rest is free pages and page slack.\n",
					pt.Instances, u.FileMB, u.InUseMB, strings.Join(bs, ", "))
			}
		}
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| Instances | request | p50 ms | p99 ms | mean ms | max ms | n (errors) | answer bytes |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
		for _, pt := range run.Points {
			for _, l := range pt.Latency {
				fmt.Fprintf(w, "| %d | GET %s | %.1f | %.1f | %.1f | %.1f | %d (%d) | %d |\n",
					pt.Instances, l.Name, l.P50ms, l.P99ms, l.MeanMs, l.MaxMs, l.N, l.Errors, l.Bytes)
			}
		}
		fmt.Fprintln(w)
		if slices.ContainsFunc(run.Points, func(p *ScalePoint) bool { return len(p.Restarts) > 0 }) {
			fmt.Fprintln(w, "Restart: the manager (a follower when there are 3) killed with SIGKILL and started again: crash = with its data;")
			fmt.Fprintln(w, "state_db_lost = state.db removed (restored from its newest snapshot, then the log after it replayed); data_dir_lost = everything removed (the leader sends a snapshot).")
			fmt.Fprintln(w, "Caught up = its applied index reached the leader's when it was killed (alone: and it leads again).")
			fmt.Fprintln(w)
			fmt.Fprintln(w, "| Instances | restart | manager | API answers after ms | caught up after ms (index) | RSS MB after (anon / file) |")
			fmt.Fprintln(w, "|---|---|---|---|---|---|")
			for _, pt := range run.Points {
				for _, m := range pt.Restarts {
					fmt.Fprintf(w, "| %d | %s | %s | %.0f | %.0f (%d) | %.0f (%.0f / %.0f) |\n",
						pt.Instances, m.Kind, m.Manager, m.APIUpMs, m.CaughtUpMs, m.Index, m.After.RSSMB, m.After.RSSAnonMB, m.After.RSSFileMB)
				}
			}
			fmt.Fprintln(w)
		}
		for _, pt := range run.Points {
			for _, st := range pt.ApplyStalls {
				fmt.Fprintf(w, "- fill to %d: the leader's state stood still for %.1f s at %.0f s into the fill (raft writing a snapshot: %v)\n",
					pt.Instances, st.Seconds, st.AtSeconds, st.DuringSnapshot)
			}
			for k, e := range pt.Errors {
				fmt.Fprintf(w, "- at %d: %s: %s\n", pt.Instances, k, e)
			}
		}
	}
}

// largest returns the run with n managers and its largest point.
func (res *ScaleResult) largest(n int) (*ScaleRun, *ScalePoint) {
	for _, run := range res.Runs {
		if run.Managers == n && len(run.Points) > 0 {
			return run, run.Points[len(run.Points)-1]
		}
	}
	return nil, nil
}

func (pt *ScalePoint) leader() (ScaleManager, bool) {
	for _, m := range pt.Managers {
		if m.Leader {
			return m, true
		}
	}
	return ScaleManager{}, false
}

func (pt *ScalePoint) latency(name string) (LatencyRow, bool) {
	for _, l := range pt.Latency {
		if l.Name == name && l.N > 0 {
			return l, true
		}
	}
	return LatencyRow{}, false
}

func (pt *ScalePoint) restart(kind string) (RestartMeasure, bool) {
	for _, m := range pt.Restarts {
		if m.Kind == kind && m.CaughtUpMs > 0 {
			return m, true
		}
	}
	return RestartMeasure{}, false
}
