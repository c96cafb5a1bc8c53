package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// Gossip is every member's serf timing: crowd or fast. GossipTune
	// adjusts the hvas' serf timers further (see parseGossipTune); the
	// managers and schedulers keep Gossip's.
	Gossip     string
	GossipTune string
	// Bin holds dcmgr and scheduler; Self is the vdcbench binary (hvasim).
	Bin  string
	Self string
	// Timeout bounds each phase; Converge bounds the wait for membership.
	Timeout  time.Duration
	Converge time.Duration
	// Reps is how many times the whole run is repeated.
	Reps int
	// KillLeaderEvery, when set, makes the create phase a failover test:
	// the leading dcmgr process is killed (SIGKILL) this long after the
	// start (and after the previous kill's recovery), then started again
	// with its data; Kills caps the kills (0: as many as the phase holds).
	// The clients then send to every manager in turn.
	KillLeaderEvery time.Duration
	Kills           int
	// ReportRunning makes the hvasim processes report their running
	// domains this often (scale's flow control).
	ReportRunning time.Duration `json:"-"`
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

// DefaultDCFailoverOptions is issue 6's failover under load: 3 managers,
// 1 scheduler, 100 hvas; the leader killed 12 s into the create phase and
// 12 s after each recovery, 5 times, while 8,000 instances are created.
func DefaultDCFailoverOptions() DCOptions {
	o := DefaultDCOptions()
	o.Hvas, o.HvasPerProcess, o.Instances, o.KillLeaderEvery, o.Kills = 100, 50, 8000, 12*time.Second, 5
	return o
}

// ShortDCFailoverOptions is the short failover run: 3 managers, the leader
// killed twice while 600 instances are created.
func ShortDCFailoverOptions() DCOptions {
	o := ShortDCOptions()
	o.Managers, o.Instances, o.KillLeaderEvery, o.Kills = 3, 600, time.Second, 2
	o.Timeout = 4 * time.Minute
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
	// AgentConvergedMedianSeconds is the median over the hvas of the
	// instant each first saw every member alive (same origin).
	AgentConvergedMedianSeconds float64 `json:"agent_converged_median_seconds"`
	// ConvergeCPU is the cores each role used from the first hvasim start
	// until every hva saw every member alive (or Converge passed), over
	// ConvergeCPUSeconds of wall time.
	ConvergeCPU        map[string]float64 `json:"converge_cpu_cores"`
	ConvergeCPUSeconds float64            `json:"converge_cpu_wall_seconds"`
	// ConvergeGossip is what memberlist counted in the hvasim processes
	// until then (gossipCounter; as last reported, at most 1 s before).
	ConvergeGossip map[string]float64 `json:"converge_gossip_counts"`
	// IdleCPU is the cores each role used with the cluster up and idle.
	IdleCPU   map[string]float64 `json:"idle_cpu_cores"`
	Create    *PlacePhase        `json:"create,omitempty"`
	Terminate *PlacePhase        `json:"terminate,omitempty"`
	// PhaseCPU is the cores each role used per phase.
	PhaseCPU map[string]map[string]float64 `json:"phase_cpu_cores"`
	// LeaderRSSMB is the leader's resident memory after the create phase.
	LeaderRSSMB float64 `json:"leader_rss_mb"`
	// UnfinishedJobs counts the jobs still pending or running (GET /jobs)
	// once the create phase had every instance running, after up to
	// settleTimeout for them to end (must be 0); UnfinishedJobsEnd the
	// same after the terminate phase.
	UnfinishedJobs    int `json:"unfinished_jobs_after_create"`
	UnfinishedJobsEnd int `json:"unfinished_jobs_after_terminate"`
	// Failover under load (KillLeaderEvery): every kill, the spread of
	// their failover times, and what the create phase left.
	Kills         []DCKill `json:"kills,omitempty"`
	FailoverMs    *Summary `json:"failover_ms,omitempty"`
	FailoverP99Ms float64  `json:"failover_p99_ms,omitempty"`
	// LostAcked counts instances whose POST was answered 200 and that the
	// managers do not have after the phase (must be 0). Present without an
	// acknowledgement: Duplicates, of a request answered 200 for another
	// instance after an earlier attempt was answered 503 although it had
	// been committed (a follower whose forward to the dying leader broke
	// off answers 503 "retry"); UnknownLanded, of a request that never got
	// an answer (the connection died with the leader) but was committed.
	LostAcked     int `json:"lost_acknowledged_creates"`
	Duplicates    int `json:"duplicate_creates"`
	UnknownLanded int `json:"unanswered_creates_present"`
	// Reps is the spread over repeated runs; the tables are the median run's.
	Reps *RepSummary `json:"reps,omitempty"`
}

// DCKill is one kill of the leader during the create phase.
type DCKill struct {
	Killed string `json:"killed"`
	// AtSeconds is from the start of the create phase.
	AtSeconds float64 `json:"at_seconds"`
	// FailoverMs is from the SIGKILL to the first 200 answer to a POST
	// sent after it (-1: none within failoverTimeout); NewLeaderMs until a
	// survivor's /internal/v1/status says Leader (polled).
	FailoverMs  float64 `json:"failover_ms"`
	NewLeaderMs float64 `json:"new_leader_ms"`
	// RejoinMs is from starting the killed process again to its applied
	// index reaching the leader's of that moment (its last state change:
	// raft's own no-op and barrier entries never reach the state).
	RejoinMs float64 `json:"rejoin_ms"`
}

// dcGossipArgs are the serf flags of dcmgr and scheduler for o.Gossip.
func dcGossipArgs(gossip string) []string {
	args := []string{"-fast-gossip"}
	if gossip != "fast" {
		args = append(args, "-crowd-gossip")
	}
	return args
}

// startDC starts the datacenter of o — managers, schedulers, hvas — and
// waits for a leader and for serf membership (timed into out). The cluster
// is returned even on an error, for Close.
func (r *Runner) startDC(ctx context.Context, o DCOptions, out *DCResult) (*dcCluster, error) {
	if o.Managers < 1 || o.Schedulers < 1 || o.Hvas < 1 || o.HvasPerProcess < 1 || o.Concurrency < 1 {
		return nil, fmt.Errorf("dc: need managers, schedulers, hvas, hvas per process and concurrency (got %+v)", o)
	}
	if _, err := parseGossipTune(o.GossipTune); err != nil {
		return nil, err
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
	hc := newHTTPClient(o.Concurrency + 8)
	hc.Timeout = placeRequestTimeout
	c := &dcCluster{dir: dir, hc: hc, simEvents: map[string][]hvaSimReport{}, simRunning: map[string]int{}}
	gossip := dcGossipArgs(o.Gossip)

	r.progress("dc: starting %d managers, %d schedulers, %d hvas in %d processes",
		o.Managers, o.Schedulers, o.Hvas, (o.Hvas+o.HvasPerProcess-1)/o.HvasPerProcess)
	if err := c.startManagers(o.Managers, o.Bin, gossip); err != nil {
		return c, err
	}
	if err := c.waitLeader(ctx); err != nil {
		return c, err
	}
	r.progress("dc: %s leads", c.currentLeader().name)

	for i := range o.Schedulers {
		ports := make([]string, 2)
		for j := range ports {
			if ports[j], err = freePort(); err != nil {
				return c, err
			}
		}
		name := fmt.Sprintf("scheduler.b%d", i+1)
		args := append([]string{"-node-id", name, "-serf", "127.0.0.1:" + ports[0], "-rpc", "127.0.0.1:" + ports[1],
			"-log-level", "warn"}, gossip...)
		for _, m := range c.managers {
			args = append(args, "-join", m.serf)
		}
		if _, err := c.start(name, "scheduler", filepath.Join(o.Bin, "scheduler"), args, nil); err != nil {
			return c, err
		}
	}

	expect := o.Managers + o.Schedulers + o.Hvas
	procs := 0
	cpu0, self0 := c.roleCPU(), sampleCPU()
	t0 := time.Now()
	for first := 1; first <= o.Hvas; first += o.HvasPerProcess {
		n := min(o.HvasPerProcess, o.Hvas-first+1)
		name := fmt.Sprintf("hvasim%d", procs+1)
		logf, err := os.Create(filepath.Join(dir, name+".out"))
		if err != nil {
			return c, err
		}
		args := []string{"hvasim", "-first", strconv.Itoa(first), "-count", strconv.Itoa(n),
			"-expect-members", strconv.Itoa(expect), "-local-store-concurrency", strconv.Itoa(o.LocalStoreConcurrency),
			"-gossip", o.Gossip}
		// Every manager, as an operator lists them in an agent's -join: each
		// joiner is then learnt first hand by every manager (with only the
		// first, a leader elsewhere waited for gossip to miss no one: up to
		// ~50 s at 500 agents).
		for _, m := range c.managers {
			args = append(args, "-join", m.serf)
		}
		if o.GossipTune != "" {
			args = append(args, "-gossip-tune", o.GossipTune)
		}
		if o.ReportRunning > 0 {
			args = append(args, "-report-running", o.ReportRunning.String())
		}
		if o.ProfileDir != "" {
			args = append(args, "-cpuprofile", filepath.Join(o.ProfileDir, name+".prof"))
		}
		if _, err := c.start(name, "hvasim", o.Self, args, c.simOutput(name, t0, logf)); err != nil {
			logf.Close()
			return c, err
		}
		procs++
	}
	if err := c.waitMembership(ctx, r, o, procs, expect, t0, out); err != nil {
		return c, err
	}
	self1 := sampleCPU()
	out.ConvergeCPU, out.ConvergeCPUSeconds = cpuRates(cpu0, c.roleCPU(), self0, self1), self1.at.Sub(self0.at).Seconds()
	out.ConvergeGossip = c.gossipCounts()
	if ts := c.simTimes("converged"); len(ts) > 0 {
		out.AgentConvergedMedianSeconds = Summarize(ts).Median / 1000
	}
	r.progress("dc: hvas started in %.1f s; the leader saw all %d members alive after %.1f s; every hva saw them after %.1f s",
		out.HvasStartedSeconds, expect, out.ManagerSeesAllSeconds, out.AgentsConvergedSeconds)
	return c, nil
}

// seed registers o.Hvas host nodes, a network of the given prefix and an
// image through the API and waits until every host is online.
func (c *dcCluster) seed(ctx context.Context, r *Runner, hosts, prefix int) error {
	r.progress("dc: seeding %d host nodes, a /%d network and an image through the API", hosts, prefix)
	base := c.currentLeader().api + api.Prefix
	if err := seedPlace(ctx, c.hc, base, hosts, prefix); err != nil {
		return err
	}
	return waitHostsOnline(ctx, c.hc, base, hosts, func() bool { return c.schedulerAlive(ctx) })
}

// DC runs the simulated datacenter benchmark.
func (r *Runner) DC(ctx context.Context, o DCOptions) (_ *DCResult, runErr error) {
	if o.Instances < 1 {
		return nil, fmt.Errorf("dc: need instances (got %d)", o.Instances)
	}
	if o.KillLeaderEvery > 0 && o.Managers < 3 {
		return nil, fmt.Errorf("dc: killing the leader needs 3 managers or more (got %d)", o.Managers)
	}
	out := &DCResult{Options: o, PhaseCPU: map[string]map[string]float64{}}
	start := time.Now()
	c, err := r.startDC(ctx, o, out)
	if c != nil {
		defer func() {
			r.progress("dc: stopping %d processes", len(c.procs))
			keep := ""
			if runErr != nil {
				keep = o.KeepLogs
			}
			c.Close(keep)
			c.hc.CloseIdleConnections()
			if keep != "" {
				r.progress("dc: logs of the failed run kept in %s", keep)
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	if err := c.seed(ctx, r, o.Hvas, placeNetworkPrefix); err != nil {
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
		ms, err := c.members(ctx)
		if err != nil {
			return nil
		}
		return ms
	}, nil, names, o.Hvas+o.Schedulers, time.Second)
	defer watch.Stop()
	env := phaseEnv{hc: c.hc, base: c.base, watch: watch}
	po := PlaceOptions{Hvas: o.Hvas, Instances: o.Instances, Concurrency: o.Concurrency, Poll: o.Poll,
		LocalStoreConcurrency: o.LocalStoreConcurrency, Timeout: o.Timeout, Gossip: o.Gossip}
	ids := make([]string, o.Instances)
	create := createInstance(c.hc, c.base, ids)
	var killer *leaderKiller
	if o.KillLeaderEvery > 0 {
		c.mu.Lock()
		c.anyManager = true
		c.mu.Unlock()
		killer = newLeaderKiller(r, c, o.KillLeaderEvery, o.Kills, o.Instances, o.Concurrency)
		create = killer.wrap(create)
	}
	cpu0, self0 = c.roleCPU(), sampleCPU()
	if killer != nil {
		killer.start(ctx)
	}
	out.Create, err = r.placePhase(ctx, env, po, o.Instances, "create", "", proto.InstanceRunning, false, create)
	if killer != nil {
		out.Kills = killer.stop()
		out.summarizeKills()
	}
	out.PhaseCPU["create"] = cpuRates(cpu0, c.roleCPU(), self0, sampleCPU())
	if l, lerr := c.findLeader(ctx, formTimeout); lerr == nil {
		out.LeaderRSSMB = l.rssMB()
	}
	if killer != nil && out.Create != nil {
		// Lost writes are counted even after a phase that did not finish:
		// that is when they matter.
		chk, lerr := c.checkAcked(ctx, ids)
		out.LostAcked, out.Duplicates, out.UnknownLanded = chk.Lost, chk.Duplicates, chk.Unknown
		if lerr != nil {
			return out, errors.Join(err, fmt.Errorf("count lost creates: %w", lerr))
		}
		r.progress("dc: %d kills; %d acknowledged creates lost; %d duplicates (a 503 answered to a committed create), %d creates without an answer that landed",
			len(out.Kills), chk.Lost, chk.Duplicates, chk.Unknown)
	}
	if err != nil {
		return out, fmt.Errorf("create: %w", err)
	}
	if out.UnfinishedJobs, err = c.settleJobs(ctx, r); err != nil {
		return out, err
	}
	r.progress("dc: create used %s", fmtCores(out.PhaseCPU["create"]))
	ids = out.Create.reached
	cpu0, self0 = c.roleCPU(), sampleCPU()
	out.Terminate, err = r.placePhase(ctx, env, po, len(ids), "terminate", proto.InstanceRunning, proto.InstanceTerminated, true, terminateInstance(c.hc, c.base, ids))
	out.PhaseCPU["terminate"] = cpuRates(cpu0, c.roleCPU(), self0, sampleCPU())
	if err != nil {
		return out, fmt.Errorf("terminate: %w", err)
	}
	if out.UnfinishedJobsEnd, err = c.settleJobs(ctx, r); err != nil {
		return out, err
	}
	for _, p := range c.procs {
		if !p.alive() {
			return out, fmt.Errorf("dc: %s exited during the run; see its log", p.name)
		}
	}
	return out, nil
}

func (out *DCResult) summarizeKills() {
	var times []float64
	var durs []time.Duration
	for _, k := range out.Kills {
		if k.FailoverMs >= 0 {
			times = append(times, k.FailoverMs)
			durs = append(durs, time.Duration(k.FailoverMs*float64(time.Millisecond)))
		}
	}
	if len(times) == 0 {
		return
	}
	s := Summarize(times)
	out.FailoverMs = &s
	slices.Sort(durs)
	out.FailoverP99Ms = ms(Percentile(durs, 99))
}

// settleTimeout bounds the wait for every job to end after a phase.
const settleTimeout = 2 * time.Minute

// settleJobs waits until GET /jobs shows no job pending or running (up to
// settleTimeout) and returns how many are left.
func (c *dcCluster) settleJobs(ctx context.Context, r *Runner) (int, error) {
	left := -1
	err := waitUntil(ctx, settleTimeout, func() error {
		n, err := c.unfinishedJobs(ctx)
		if err != nil {
			return err
		}
		if left = n; n > 0 {
			return fmt.Errorf("%d jobs pending or running", n)
		}
		return nil
	})
	if left < 0 {
		return 0, fmt.Errorf("count unfinished jobs: %w", err)
	}
	if err != nil {
		r.progress("dc: %v", err)
	}
	return left, nil
}

// unfinishedJobs counts the jobs pending or running (operator's view: every account).
func (c *dcCluster) unfinishedJobs(ctx context.Context) (int, error) {
	n := 0
	for _, st := range []string{"pending", "running"} {
		total, err := listTotal(ctx, c.hc, c.liveAPI()+api.Prefix+"/jobs.json?state="+st+"&limit=1", true)
		if err != nil {
			return 0, err
		}
		n += total
	}
	return n, nil
}

// listTotal is the total of a list envelope; operator requests name no account.
func listTotal(ctx context.Context, hc *http.Client, u string, operator bool) (int, error) {
	var body []byte
	var err error
	if operator {
		body, err = expectOK(operatorRequest(ctx, hc, http.MethodGet, u, nil))
	} else {
		body, err = expectOK(doRequest(ctx, hc, http.MethodGet, u, nil))
	}
	if err != nil {
		return 0, err
	}
	var env []listEnvelope
	if err := json.Unmarshal(body, &env); err != nil || len(env) != 1 {
		return 0, fmt.Errorf("list %s: not an envelope: %.200s", u, body)
	}
	return env[0].Total, nil
}

// allInstances pages through GET /instances (every state) of a running
// manager: display name by id. Nothing may be created meanwhile (the pages
// would shift).
func (c *dcCluster) allInstances(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	const page = 1000
	for start := 0; ; start += page {
		var env []struct {
			Total   int `json:"total"`
			Results []struct {
				ID          string `json:"id"`
				DisplayName string `json:"display_name"`
			} `json:"results"`
		}
		u := fmt.Sprintf("%s%s/instances.json?start=%d&limit=%d", c.liveAPI(), api.Prefix, start, page)
		if err := getJSON(ctx, c.hc, u, &env); err != nil {
			return nil, err
		}
		if len(env) != 1 {
			return nil, errors.New("instance list: not an envelope")
		}
		for _, x := range env[0].Results {
			out[x.ID] = x.DisplayName
		}
		if len(env[0].Results) < page || start+page >= env[0].Total {
			return out, nil
		}
	}
}

// ackCheck compares the instances the managers have with the
// acknowledged creates.
type ackCheck struct {
	// Lost: acknowledged, missing. Duplicates: present, unacknowledged, of
	// a request that was acknowledged for another instance (an attempt
	// answered 503 that had been committed). Unknown: present, of a request
	// that never got a 200 (its answer was lost with the connection).
	Lost, Duplicates, Unknown int
}

// checkAcked compares the instances present with ids (the i-th request's
// instance, "" when it got no 200; its display name is bench-i).
func (c *dcCluster) checkAcked(ctx context.Context, ids []string) (ackCheck, error) {
	var res ackCheck
	have, err := c.allInstances(ctx)
	if err != nil {
		return res, err
	}
	acked := map[string]bool{}
	for _, id := range ids {
		if id == "" {
			continue
		}
		acked[id] = true
		if _, ok := have[id]; !ok {
			res.Lost++
		}
	}
	for id, name := range have {
		if acked[id] {
			continue
		}
		i, err := strconv.Atoi(strings.TrimPrefix(name, "bench-"))
		if err == nil && i >= 0 && i < len(ids) && ids[i] != "" {
			res.Duplicates++
		} else {
			res.Unknown++
		}
	}
	return res, nil
}

// leaderKiller kills the leading manager during a phase, measures how long
// writes fail, and starts the killed manager again.
type leaderKiller struct {
	r       *Runner
	c       *dcCluster
	every   time.Duration
	max     int
	n, conc int

	issued atomic.Int64 // highest request index sent + 1

	mu       sync.Mutex
	killAt   time.Time // the current kill, zero when none awaits its first ack
	firstAck time.Time
	acked    chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
	kills  []DCKill
}

// failoverTimeoutDC bounds the wait for the first write acknowledged after
// a kill; killRejoinTimeout the killed manager's catching up.
const (
	failoverTimeoutDC = time.Minute
	killRejoinTimeout = 3 * time.Minute
)

func newLeaderKiller(r *Runner, c *dcCluster, every time.Duration, maxKills, n, conc int) *leaderKiller {
	return &leaderKiller{r: r, c: c, every: every, max: maxKills, n: n, conc: conc}
}

// wrap records, for each successful request, when it was sent and answered.
func (k *leaderKiller) wrap(do func(ctx context.Context, i int) (string, error)) func(ctx context.Context, i int) (string, error) {
	return func(ctx context.Context, i int) (string, error) {
		for {
			cur := k.issued.Load()
			if int64(i+1) <= cur || k.issued.CompareAndSwap(cur, int64(i+1)) {
				break
			}
		}
		sent := time.Now()
		id, err := do(ctx, i)
		if err == nil {
			done := time.Now()
			k.mu.Lock()
			if !k.killAt.IsZero() && !sent.Before(k.killAt) && (k.firstAck.IsZero() || done.Before(k.firstAck)) {
				k.firstAck = done
				select {
				case k.acked <- struct{}{}:
				default:
				}
			}
			k.mu.Unlock()
		}
		return id, err
	}
}

func (k *leaderKiller) start(ctx context.Context) {
	kctx, cancel := context.WithCancel(ctx)
	k.cancel, k.done = cancel, make(chan struct{})
	t0 := time.Now()
	go func() {
		defer close(k.done)
		for k.max == 0 || len(k.kills) < k.max {
			if sleepCtx(kctx, k.every) != nil {
				return
			}
			// Only while enough requests are still to be sent that one
			// will be sent after the kill.
			if int(k.issued.Load())+2*k.conc >= k.n {
				return
			}
			kill, err := k.killOnce(ctx, kctx, t0)
			if err != nil {
				k.r.progress("dc: kill %d: %v", len(k.kills)+1, err)
				return
			}
			k.kills = append(k.kills, kill)
			k.r.progress("dc: kill %d: %s killed; failover %.0f ms (new leader seen after %.0f ms); restarted, caught up in %.0f ms",
				len(k.kills), kill.Killed, kill.FailoverMs, kill.NewLeaderMs, kill.RejoinMs)
		}
	}()
}

// killOnce kills the leader, waits for the first acknowledged write sent
// after that, then starts the killed manager again and waits until it has
// caught up. The restart runs to its end even when kctx ends.
func (k *leaderKiller) killOnce(ctx, kctx context.Context, t0 time.Time) (DCKill, error) {
	c := k.c
	leader, err := c.findLeader(ctx, formTimeout)
	if err != nil {
		return DCKill{}, err
	}
	kill := DCKill{Killed: leader.name, FailoverMs: -1, NewLeaderMs: -1}
	acked := make(chan struct{}, 1)
	k.mu.Lock()
	k.acked, k.firstAck = acked, time.Time{}
	k.killAt = time.Now()
	at := k.killAt
	k.mu.Unlock()
	kill.AtSeconds = at.Sub(t0).Seconds()
	leader.kill()

	if l, err := c.findLeader(ctx, failoverTimeoutDC); err == nil {
		kill.NewLeaderMs = ms(time.Since(at))
		_ = l
	}
	timer := time.NewTimer(failoverTimeoutDC)
	select {
	case <-acked:
	case <-timer.C:
	case <-kctx.Done():
	}
	timer.Stop()
	k.mu.Lock()
	if !k.firstAck.IsZero() {
		kill.FailoverMs = ms(k.firstAck.Sub(at))
	}
	k.killAt = time.Time{}
	k.mu.Unlock()

	l := c.currentLeader()
	if err := c.restart(leader); err != nil {
		return kill, err
	}
	restarted := time.Now()
	st, err := c.status(ctx, l)
	if err != nil {
		return kill, fmt.Errorf("leader %s status: %w", l.name, err)
	}
	_, caught, err := c.waitCaughtUp(ctx, leader, st.AppliedIndex, false, killRejoinTimeout)
	if err != nil {
		return kill, err
	}
	kill.RejoinMs = ms(caught.Sub(restarted))
	return kill, nil
}

// stop ends the kills (a restart in progress finishes) and returns them.
func (k *leaderKiller) stop() []DCKill {
	k.cancel()
	<-k.done
	return k.kills
}

// waitMembership waits until the hvasim processes started their agents,
// the leader sees every member alive and every agent does (or Converge
// passes: then AgentsConvergedSeconds is -1 and the run goes on).
func (c *dcCluster) waitMembership(ctx context.Context, r *Runner, o DCOptions, procs, expect int, t0 time.Time, out *DCResult) error {
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
			if ms, err := c.members(ctx); err == nil {
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
				return fmt.Errorf("dc: %s exited; see %s", p.name, p.logPath)
			}
		}
		if time.Since(lastNote) >= 5*time.Second {
			lastNote = time.Now()
			r.progress("dc: %.0f s: leader sees %d of %d members alive; hvasim processes started %v, converged %v",
				time.Since(t0).Seconds(), c.aliveAtLeader(ctx), expect, c.simCount("started"), c.simCount("converged"))
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
	to := "the leader"
	if o.KillLeaderEvery > 0 {
		to = "every manager in turn"
	}
	tune := ""
	if o.GossipTune != "" {
		tune = " (hvas: " + o.GossipTune + ")"
	}
	fmt.Fprintf(w, "Serf timing %q%s. %d instances (%d core, %d MB, 1 vif, local boot volume) POSTed to %s by %d keep-alive clients, then DELETEd;\n",
		o.Gossip, tune, o.Instances, placeInstCores, placeInstMemoryMB, to, o.Concurrency)
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
	fmt.Fprintf(w, "Jobs still pending or running (GET /jobs) after the create phase: %d; after the terminate phase: %d.\n\n", res.UnfinishedJobs, res.UnfinishedJobsEnd)
	res.writeKills(w)
	writeReps(w, res.Reps)
}

// writeKills prints the failover-under-load table (KillLeaderEvery).
func (res *DCResult) writeKills(w io.Writer) {
	o := res.Options
	if o.KillLeaderEvery <= 0 {
		return
	}
	fmt.Fprintf(w, "### dc failover under load: the leading dcmgr killed (SIGKILL) %s into the create phase and %s after each recovery, then restarted with its data\n\n",
		o.KillLeaderEvery, o.KillLeaderEvery)
	fmt.Fprintln(w, "failover = kill → first 200 answer to a POST /instances sent after the kill (clients send to every manager in turn; a refused connection or a 503 is sent again).")
	fmt.Fprintln(w, "new leader = kill → a survivor's /internal/v1/status says Leader; rejoin = restart of the killed process → its applied index reaches the leader's commit index.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Kill | killed | at s | failover ms | new leader ms | rejoin ms |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for i, k := range res.Kills {
		fmt.Fprintf(w, "| %d | %s | %.1f | %.0f | %.0f | %.0f |\n", i+1, k.Killed, k.AtSeconds, k.FailoverMs, k.NewLeaderMs, k.RejoinMs)
	}
	fmt.Fprintln(w)
	med, p99 := "–", "–"
	if res.FailoverMs != nil {
		med, p99 = fmtNum(res.FailoverMs.Median, 0), fmtNum(res.FailoverP99Ms, 0)
	}
	fmt.Fprintln(w, "| Kills | failover p50 ms | p99 ms (nearest rank: the max below 100 kills) | acknowledged creates lost | jobs unfinished after recovery | creates failed for good (no answer) | duplicates: a 503 answered to a committed create | unanswered creates that landed |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	failed := 0
	if res.Create != nil {
		failed = res.Create.Failed
	}
	fmt.Fprintf(w, "| %d | %s | %s | %d | %d | %d | %d | %d |\n\n", len(res.Kills), med, p99, res.LostAcked, res.UnfinishedJobs, failed, res.Duplicates, res.UnknownLanded)
}
