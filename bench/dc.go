package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/proto"
)

// The simulated datacenter (vdcbench dc): the control plane as separate
// processes on loopback — Managers dcmgr processes (one raft cluster),
// Schedulers scheduler daemons, and Hvas dummy hvas in processes of
// HvasPerProcess each (vdcbench hvasim: every hva its own serf member and
// RPC listener) — driven through the 12.03 API like `place`. It measures
// the agents' serf convergence, then instances/s end to end.

// DCOptions configure the simulated datacenter.
type DCOptions struct {
	Managers       int
	Schedulers     int
	Hvas           int
	HvasPerProcess int
	Instances      int
	Concurrency    int
	Poll           time.Duration
	// LocalStoreConcurrency is each hva's local-store-handle concurrency.
	LocalStoreConcurrency int
	// Gossip is every member's serf timing: crowd or fast.
	Gossip string
	// Bin holds dcmgr and scheduler; Self is the vdcbench binary (hvasim).
	Bin  string
	Self string
	// Timeout bounds each phase; Converge bounds the wait for membership.
	Timeout  time.Duration
	Converge time.Duration
	// Reps is how many times the whole run is repeated.
	Reps int
	// KeepLogs, when set, keeps the processes' logs of a failed run;
	// ProfileDir gets a CPU profile of every hvasim process.
	KeepLogs   string `json:"-"`
	ProfileDir string `json:"-"`
}

// DefaultDCOptions is issue 6's datacenter: 3 managers, 1 scheduler, 500
// hvas (100 per process), 20,000 instances at concurrency 64.
func DefaultDCOptions() DCOptions {
	return DCOptions{
		Managers: 3, Schedulers: 1, Hvas: 500, HvasPerProcess: 100,
		Instances: 20000, Concurrency: 64, Poll: 200 * time.Millisecond,
		LocalStoreConcurrency: 2, Gossip: "crowd", Bin: "bin",
		Timeout: 30 * time.Minute, Converge: 5 * time.Minute, Reps: 1,
	}
}

// ShortDCOptions is a seconds-long run of the same code.
func ShortDCOptions() DCOptions {
	o := DefaultDCOptions()
	o.Managers, o.Hvas, o.HvasPerProcess, o.Instances, o.Concurrency = 1, 4, 2, 20, 8
	o.Poll, o.Timeout, o.Converge = 50*time.Millisecond, 2*time.Minute, time.Minute
	return o
}

// DCResult is the simulated datacenter's figures.
type DCResult struct {
	Options DCOptions `json:"options"`
	// SetupSeconds is from the first process started to every host online.
	SetupSeconds float64 `json:"setup_seconds"`
	// Membership, timed from the start of the first hvasim process:
	// HvasStartedSeconds until every hva agent has started, ManagerSeesAll
	// until the leader's serf shows every member alive, AgentsConverged
	// until every hva's serf does (-1: not within Converge).
	HvasStartedSeconds     float64 `json:"hvas_started_seconds"`
	ManagerSeesAllSeconds  float64 `json:"manager_sees_all_seconds"`
	AgentsConvergedSeconds float64 `json:"agents_converged_seconds"`
	// IdleCPU is the cores each role used with the cluster up and idle.
	IdleCPU   map[string]float64 `json:"idle_cpu_cores"`
	Create    *PlacePhase        `json:"create,omitempty"`
	Terminate *PlacePhase        `json:"terminate,omitempty"`
	// PhaseCPU is the cores each role used per phase.
	PhaseCPU map[string]map[string]float64 `json:"phase_cpu_cores"`
	// LeaderRSSMB is the leader's resident memory after the create phase.
	LeaderRSSMB float64 `json:"leader_rss_mb"`
	// Reps is the spread over repeated runs; the tables are the median run's.
	Reps *RepSummary `json:"reps,omitempty"`
}

// dcProc is one process of the datacenter.
type dcProc struct {
	name string
	role string // manager, scheduler, hvasim
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}

	// manager
	api, raft, serf string
}

// dcCluster is the running datacenter.
type dcCluster struct {
	dir      string
	procs    []*dcProc
	managers []*dcProc
	leader   *dcProc

	mu        sync.Mutex
	simEvents map[string][]hvaSimReport // by process
}

func (c *dcCluster) start(ctx context.Context, name, role, bin string, args []string, stdout io.Writer) (*dcProc, error) {
	logf, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &dcProc{name: name, role: role, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.procs = append(c.procs, p)
	return p, nil
}

// stop ends a process: SIGTERM, then SIGKILL after a while.
func (p *dcProc) stop(grace time.Duration) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.log.Close()
}

func (p *dcProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// cpuSeconds is the process's user+system CPU so far (0 once it is gone).
func (p *dcProc) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clockTicks
}

// rssMB is the process's resident memory.
func (p *dcProc) rssMB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// roleCPU sums the CPU seconds of every process by role.
func (c *dcCluster) roleCPU() map[string]float64 {
	out := map[string]float64{}
	for _, p := range c.procs {
		out[p.role] += p.cpuSeconds()
	}
	return out
}

// cpuRates turns two roleCPU samples secs apart into cores per role; the
// bench process itself is "driver".
func cpuRates(a, b map[string]float64, selfA, selfB cpuSample) map[string]float64 {
	secs := selfB.at.Sub(selfA.at).Seconds()
	out := map[string]float64{}
	if secs <= 0 {
		return out
	}
	for role, v := range b {
		out[role] = (v - a[role]) / secs
	}
	if selfA.ok && selfB.ok {
		out["driver"] = (selfB.own - selfA.own) / clockTicks / secs
	}
	return out
}

func (c *dcCluster) Close(keepTo string) {
	// Agents first, then schedulers, managers last.
	for _, role := range []string{"hvasim", "scheduler", "manager"} {
		var wg sync.WaitGroup
		for _, p := range c.procs {
			if p.role == role {
				wg.Go(func() { p.stop(20 * time.Second) })
			}
		}
		wg.Wait()
	}
	if keepTo == "" || os.Rename(c.dir, keepTo) != nil {
		_ = os.RemoveAll(c.dir)
	}
}

func (c *dcCluster) simOutput(name string, t0 time.Time, logf io.Writer) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Bytes()
			fmt.Fprintf(logf, "%s\n", line)
			var r hvaSimReport
			if json.Unmarshal(line, &r) != nil || r.Event == "" {
				continue
			}
			// Re-based on the driver's clock: from the first hvasim start.
			r.Ms = ms(time.Since(t0))
			c.mu.Lock()
			c.simEvents[name] = append(c.simEvents[name], r)
			c.mu.Unlock()
		}
	}()
	return pw
}

// simEvent returns, for every hvasim process, the time of its first
// event of kind, and whether every process has reported it.
func (c *dcCluster) simEvent(kind string, procs int) (latestMs float64, all bool, errMsg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, evs := range c.simEvents {
		for _, e := range evs {
			if e.Event == "error" {
				errMsg = e.Error
			}
			if e.Event == kind {
				n++
				latestMs = max(latestMs, e.Ms)
				break
			}
		}
	}
	return latestMs, n == procs, errMsg
}

// DC runs the simulated datacenter benchmark.
func (r *Runner) DC(ctx context.Context, o DCOptions) (_ *DCResult, runErr error) {
	if o.Managers < 1 || o.Schedulers < 1 || o.Hvas < 1 || o.HvasPerProcess < 1 || o.Instances < 1 || o.Concurrency < 1 {
		return nil, fmt.Errorf("dc: need managers, schedulers, hvas, hvas per process, instances and concurrency (got %+v)", o)
	}
	for _, b := range []string{filepath.Join(o.Bin, "dcmgr"), filepath.Join(o.Bin, "scheduler"), o.Self} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("dc: %w (run make build)", err)
		}
	}
	dir, err := os.MkdirTemp(r.Dir, "dc-")
	if err != nil {
		return nil, err
	}
	c := &dcCluster{dir: dir, simEvents: map[string][]hvaSimReport{}}
	defer func() {
		r.progress("dc: stopping %d processes", len(c.procs))
		keep := ""
		if runErr != nil {
			keep = o.KeepLogs
		}
		c.Close(keep)
		if keep != "" {
			r.progress("dc: logs of the failed run kept in %s", keep)
		}
	}()
	out := &DCResult{Options: o, PhaseCPU: map[string]map[string]float64{}}
	start := time.Now()
	gossip := []string{"-fast-gossip"}
	if o.Gossip != "fast" {
		gossip = append(gossip, "-crowd-gossip")
	}

	// Managers.
	r.progress("dc: starting %d managers, %d schedulers, %d hvas in %d processes",
		o.Managers, o.Schedulers, o.Hvas, (o.Hvas+o.HvasPerProcess-1)/o.HvasPerProcess)
	var join string
	for i := range o.Managers {
		ports := make([]string, 4)
		for j := range ports {
			if ports[j], err = freePort(); err != nil {
				return nil, err
			}
		}
		name := fmt.Sprintf("m%d", i+1)
		p := &dcProc{}
		args := append([]string{"-node", name, "-data-dir", filepath.Join(dir, name),
			"-api", "127.0.0.1:" + ports[0], "-rpc", "127.0.0.1:" + ports[1],
			"-serf", "127.0.0.1:" + ports[2], "-raft", "127.0.0.1:" + ports[3],
			"-bootstrap-expect", strconv.Itoa(o.Managers), "-log-level", "warn"}, gossip...)
		if join != "" {
			args = append(args, "-join", join)
		}
		if p, err = c.start(ctx, name, "manager", filepath.Join(o.Bin, "dcmgr"), args, nil); err != nil {
			return nil, err
		}
		p.api, p.serf, p.raft = "http://127.0.0.1:"+ports[0], "127.0.0.1:"+ports[2], "127.0.0.1:"+ports[3]
		c.managers = append(c.managers, p)
		if join == "" {
			join = p.serf
		}
	}
	hc := newHTTPClient(o.Concurrency + 4)
	hc.Timeout = placeRequestTimeout
	defer hc.CloseIdleConnections()
	if err := c.waitLeader(ctx, hc); err != nil {
		return nil, err
	}
	base := c.leader.api + api.Prefix
	r.progress("dc: %s leads", c.leader.name)

	// Schedulers.
	for i := range o.Schedulers {
		ports := make([]string, 2)
		for j := range ports {
			if ports[j], err = freePort(); err != nil {
				return nil, err
			}
		}
		name := fmt.Sprintf("scheduler.b%d", i+1)
		args := append([]string{"-node-id", name, "-serf", "127.0.0.1:" + ports[0], "-rpc", "127.0.0.1:" + ports[1],
			"-join", join, "-log-level", "warn"}, gossip...)
		if _, err := c.start(ctx, name, "scheduler", filepath.Join(o.Bin, "scheduler"), args, nil); err != nil {
			return nil, err
		}
	}

	// Hvas.
	expect := o.Managers + o.Schedulers + o.Hvas
	procs := 0
	t0 := time.Now()
	for first := 1; first <= o.Hvas; first += o.HvasPerProcess {
		n := min(o.HvasPerProcess, o.Hvas-first+1)
		name := fmt.Sprintf("hvasim%d", procs+1)
		logf, err := os.Create(filepath.Join(dir, name+".out"))
		if err != nil {
			return nil, err
		}
		defer logf.Close()
		args := []string{"hvasim", "-first", strconv.Itoa(first), "-count", strconv.Itoa(n), "-join", join,
			"-expect-members", strconv.Itoa(expect), "-local-store-concurrency", strconv.Itoa(o.LocalStoreConcurrency),
			"-gossip", o.Gossip}
		if o.ProfileDir != "" {
			args = append(args, "-cpuprofile", filepath.Join(o.ProfileDir, name+".prof"))
		}
		if _, err := c.start(ctx, name, "hvasim", o.Self, args, c.simOutput(name, t0, logf)); err != nil {
			return nil, err
		}
		procs++
	}
	if err := c.waitMembership(ctx, r, hc, o, procs, expect, t0, out); err != nil {
		return nil, err
	}
	r.progress("dc: hvas started in %.1f s; the leader saw all %d members alive after %.1f s; every hva saw them after %.1f s",
		out.HvasStartedSeconds, expect, out.ManagerSeesAllSeconds, out.AgentsConvergedSeconds)

	r.progress("dc: seeding %d host nodes, a /16 network and an image through the API", o.Hvas)
	if err := seedPlace(ctx, hc, base, o.Hvas); err != nil {
		return nil, err
	}
	if err := waitHostsOnline(ctx, hc, base, o.Hvas, func() bool {
		ms, err := c.members(ctx, hc)
		return err == nil && slices.ContainsFunc(ms, func(m watchedMember) bool {
			return m.Role == proto.RoleScheduler && m.Status == "alive"
		})
	}); err != nil {
		return nil, err
	}
	out.SetupSeconds = time.Since(start).Seconds()

	cpu0, self0 := c.roleCPU(), sampleCPU()
	if err := sleepCtx(ctx, idleSample); err != nil {
		return nil, err
	}
	out.IdleCPU = cpuRates(cpu0, c.roleCPU(), self0, sampleCPU())
	r.progress("dc: idle cluster uses %s", fmtCores(out.IdleCPU))

	var names []string
	for _, m := range c.managers {
		names = append(names, m.name)
	}
	watch := watchMembers(func() []watchedMember {
		ms, err := c.members(ctx, hc)
		if err != nil {
			return nil
		}
		return ms
	}, nil, names, o.Hvas+o.Schedulers, time.Second)
	defer watch.Stop()
	env := phaseEnv{hc: hc, base: base, watch: watch}
	po := PlaceOptions{Hvas: o.Hvas, Instances: o.Instances, Concurrency: o.Concurrency, Poll: o.Poll,
		LocalStoreConcurrency: o.LocalStoreConcurrency, Timeout: o.Timeout, Gossip: o.Gossip}
	ids := make([]string, o.Instances)
	cpu0, self0 = c.roleCPU(), sampleCPU()
	out.Create, err = r.placePhase(ctx, env, po, o.Instances, "create", "", proto.InstanceRunning, false, createInstance(hc, base, ids))
	out.PhaseCPU["create"] = cpuRates(cpu0, c.roleCPU(), self0, sampleCPU())
	out.LeaderRSSMB = c.leader.rssMB()
	if err != nil {
		return out, fmt.Errorf("create: %w", err)
	}
	r.progress("dc: create used %s", fmtCores(out.PhaseCPU["create"]))
	ids = out.Create.reached
	cpu0, self0 = c.roleCPU(), sampleCPU()
	out.Terminate, err = r.placePhase(ctx, env, po, len(ids), "terminate", proto.InstanceRunning, proto.InstanceTerminated, true, terminateInstance(hc, base, ids))
	out.PhaseCPU["terminate"] = cpuRates(cpu0, c.roleCPU(), self0, sampleCPU())
	if err != nil {
		return out, fmt.Errorf("terminate: %w", err)
	}
	for _, p := range c.procs {
		if !p.alive() {
			return out, fmt.Errorf("dc: %s exited during the run; see its log", p.name)
		}
	}
	return out, nil
}

func fmtCores(m map[string]float64) string {
	var parts []string
	for _, role := range []string{"manager", "scheduler", "hvasim", "driver"} {
		if v, ok := m[role]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", role, v))
		}
	}
	return strings.Join(parts, ", ") + " cores"
}

// waitLeader waits until every manager agrees on a leader and records it.
func (c *dcCluster) waitLeader(ctx context.Context, hc *http.Client) error {
	return waitUntil(ctx, formTimeout, func() error {
		var leaderRaft string
		for _, m := range c.managers {
			if !m.alive() {
				return fmt.Errorf("%s exited; see %s", m.name, m.log.Name())
			}
			var peers []struct {
				Address string `json:"address"`
				Leader  bool   `json:"leader"`
			}
			if err := getJSON(ctx, hc, m.api+"/internal/v1/peers", &peers); err != nil {
				return err
			}
			if len(peers) != len(c.managers) {
				return fmt.Errorf("%s knows %d of %d raft servers", m.name, len(peers), len(c.managers))
			}
			lead := ""
			for _, p := range peers {
				if p.Leader {
					lead = p.Address
				}
			}
			if lead == "" || (leaderRaft != "" && lead != leaderRaft) {
				return errors.New("no agreed leader yet")
			}
			leaderRaft = lead
		}
		for _, m := range c.managers {
			if m.raft == leaderRaft {
				c.leader = m
				return nil
			}
		}
		return fmt.Errorf("leader %s is none of the managers", leaderRaft)
	})
}

// members is the leader's serf member list.
func (c *dcCluster) members(ctx context.Context, hc *http.Client) ([]watchedMember, error) {
	var ms []struct {
		Name   string            `json:"name"`
		Status string            `json:"status"`
		Tags   map[string]string `json:"tags"`
	}
	if err := getJSON(ctx, hc, c.leader.api+"/internal/v1/members", &ms); err != nil {
		return nil, err
	}
	out := make([]watchedMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, watchedMember{Name: m.Name, Status: m.Status, Role: m.Tags[proto.TagRole]})
	}
	return out, nil
}

// aliveAtLeader counts the members alive in the leader's serf.
func (c *dcCluster) aliveAtLeader(ctx context.Context, hc *http.Client) int {
	ms, _ := c.members(ctx, hc)
	n := 0
	for _, m := range ms {
		if m.Status == "alive" {
			n++
		}
	}
	return n
}

// simCount counts the hvasim processes that reported kind.
func (c *dcCluster) simCount(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, evs := range c.simEvents {
		if slices.ContainsFunc(evs, func(e hvaSimReport) bool { return e.Event == kind }) {
			n++
		}
	}
	return n
}

// waitMembership waits until the hvasim processes started their agents,
// the leader sees every member alive and every agent does (or Converge
// passes: then AgentsConvergedSeconds is -1 and the run goes on).
func (c *dcCluster) waitMembership(ctx context.Context, r *Runner, hc *http.Client, o DCOptions, procs, expect int, t0 time.Time, out *DCResult) error {
	out.ManagerSeesAllSeconds, out.AgentsConvergedSeconds = -1, -1
	deadline := t0.Add(o.Converge)
	lastNote := time.Now()
	for {
		if started, all, errMsg := c.simEvent("started", procs); errMsg != "" {
			return fmt.Errorf("dc: an hvasim process failed: %s", errMsg)
		} else if all && out.HvasStartedSeconds == 0 {
			out.HvasStartedSeconds = started / 1000
		}
		if out.ManagerSeesAllSeconds < 0 {
			if ms, err := c.members(ctx, hc); err == nil {
				alive := 0
				for _, m := range ms {
					if m.Status == "alive" {
						alive++
					}
				}
				if alive >= expect {
					out.ManagerSeesAllSeconds = time.Since(t0).Seconds()
				}
			}
		}
		if conv, all, _ := c.simEvent("converged", procs); all {
			out.AgentsConvergedSeconds = conv / 1000
		}
		if out.ManagerSeesAllSeconds >= 0 && out.AgentsConvergedSeconds >= 0 {
			return nil
		}
		for _, p := range c.procs {
			if !p.alive() {
				return fmt.Errorf("dc: %s exited; see %s", p.name, p.log.Name())
			}
		}
		if time.Since(lastNote) >= 5*time.Second {
			lastNote = time.Now()
			r.progress("dc: %.0f s: leader sees %d of %d members alive; hvasim processes started %v, converged %v",
				time.Since(t0).Seconds(), c.aliveAtLeader(ctx, hc), expect, c.simCount("started"), c.simCount("converged"))
		}
		if time.Now().After(deadline) {
			if out.ManagerSeesAllSeconds < 0 {
				return fmt.Errorf("dc: the leader did not see all %d members alive within %s", expect, o.Converge)
			}
			return nil // agents not converged: reported as -1
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// WriteTable prints the datacenter's figures.
func (res *DCResult) WriteTable(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "## dc: %d managers + %d schedulers + %d dummy hvas (%d per process) as separate processes on loopback\n\n",
		o.Managers, o.Schedulers, o.Hvas, o.HvasPerProcess)
	fmt.Fprintf(w, "Serf timing %q. %d instances (%d core, %d MB, 1 vif, local boot volume) POSTed to the leader by %d keep-alive clients, then DELETEd;\n",
		o.Gossip, o.Instances, placeInstCores, placeInstMemoryMB, o.Concurrency)
	fmt.Fprintf(w, "states observed by polling GET /instances?state=… every %s.\n", o.Poll)
	conv := "not within " + o.Converge.String()
	if res.AgentsConvergedSeconds >= 0 {
		conv = fmt.Sprintf("%.1f s", res.AgentsConvergedSeconds)
	}
	fmt.Fprintf(w, "Membership of %d members, from the first hva process started: all hva agents started %.1f s, the leader sees all alive %.1f s, every hva sees all alive %s (goal 5 s).\n",
		o.Managers+o.Schedulers+o.Hvas, res.HvasStartedSeconds, res.ManagerSeesAllSeconds, conv)
	fmt.Fprintf(w, "Setup %.1f s; idle cluster: %s; leader RSS after create %.0f MB.\n\n", res.SetupSeconds, fmtCores(res.IdleCPU), res.LeaderRSSMB)
	fmt.Fprintln(w, "| Phase | reached | end-to-end inst/s | goal | requests/s (API only) | request p50 / p99 ms | → state p50 / p99 / max ms | polls (full) mean ms, failed | requests retried / failed | serf failures at the leader (fewest alive) | CPU cores by role |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, ph := range []*PlacePhase{res.Create, res.Terminate} {
		if ph == nil {
			continue
		}
		goal := "–"
		if ph.Name == "create" {
			goal = strconv.Itoa(placeGoalPerSec)
		}
		fmt.Fprintf(w, "| %s → %s | %d / %d | %.1f (%.1f s) | %s | %.1f | %.1f / %.1f | %.0f / %.0f / %.0f | %d (%d) %.1f, %d failed | %d / %d | %d (%d of %d) | %s |\n",
			ph.Name, ph.Target, ph.Reached, ph.Requested, ph.PerSec, ph.Seconds, goal, ph.RequestsPerSec,
			ph.RequestP50ms, ph.RequestP99ms, ph.ToP50ms, ph.ToP99ms, ph.ToMaxms,
			ph.Polls, ph.FullPolls, ph.PollMeanMs, ph.PollErrors, ph.Retries, ph.Failed,
			ph.SerfFailures, ph.MinAliveAgents, o.Hvas+o.Schedulers, fmtCores(res.PhaseCPU[ph.Name]))
	}
	fmt.Fprintln(w)
	writeReps(w, res.Reps)
}
