package bench

import (
	"bufio"
	"cmp"
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
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/bbolt"

	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/proto"
)

// The processes of the simulated datacenter (vdcbench dc, scale, serf):
// starting, killing and restarting them, and asking the managers who
// leads and how far they have applied the log.

// dcProc is one process of the datacenter. A manager can be killed and
// started again with the same arguments (and data directory).
type dcProc struct {
	name string
	role string // manager, scheduler, hvasim
	bin  string
	args []string
	// stdout, when set, gets the process's stdout instead of its log.
	stdout  io.Writer
	logPath string

	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	// cpuBefore is the CPU seconds of the earlier runs of this process.
	cpuBefore float64

	// manager
	api, raft, serf, dataDir string
}

// launch starts (or starts again) the process; its log is appended to.
func (p *dcProc) launch() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stderr = logf
	cmd.Stdout = logf
	if p.stdout != nil {
		cmd.Stdout = p.stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s (%s): %w", p.name, p.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.log, p.done = cmd, logf, done
	p.mu.Unlock()
	return nil
}

func (p *dcProc) current() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd, p.done
}

// stop ends a process: SIGTERM, then SIGKILL after a while.
func (p *dcProc) stop(grace time.Duration) {
	cmd, done := p.current()
	select {
	case <-done:
	default:
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	p.mu.Lock()
	p.log.Close()
	p.mu.Unlock()
}

// kill ends the process with SIGKILL (a crash: nothing is flushed or left)
// and waits until it is gone. Its CPU so far is kept for cpuSeconds.
func (p *dcProc) kill() {
	cpu := p.cpuSeconds()
	cmd, done := p.current()
	_ = cmd.Process.Kill()
	<-done
	p.mu.Lock()
	p.cpuBefore = cpu
	p.log.Close()
	p.mu.Unlock()
}

func (p *dcProc) alive() bool {
	_, done := p.current()
	select {
	case <-done:
		return false
	default:
		return true
	}
}

func (p *dcProc) pid() int {
	cmd, _ := p.current()
	return cmd.Process.Pid
}

// cpuSeconds is the process's user+system CPU so far, over all its runs.
func (p *dcProc) cpuSeconds() float64 {
	p.mu.Lock()
	before := p.cpuBefore
	p.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return before
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return before
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return before + (u+st)/clockTicks
}

// ProcMemory is a process's memory from /proc/PID/status, in MB: RSS is
// RSSAnon (heap, stacks) plus RSSFile (mapped files: a manager's bbolt
// state.db and raft.db pages it has touched); HWM is the peak RSS.
type ProcMemory struct {
	RSSMB     float64 `json:"rss_mb"`
	RSSAnonMB float64 `json:"rss_anon_mb"`
	RSSFileMB float64 `json:"rss_file_mb"`
	HWMMB     float64 `json:"peak_rss_mb"`
	// RSSStateDBMB and RSSRaftDBMB split RSSFileMB by mapping (/proc/PID/smaps):
	// the pages of each bbolt file the process has touched through its mmap.
	RSSStateDBMB float64 `json:"rss_state_db_mb"`
	RSSRaftDBMB  float64 `json:"rss_raft_db_mb"`
}

// memory reads the process's memory figures (zero once it is gone).
func (p *dcProc) memory() ProcMemory {
	var m ProcMemory
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		switch k {
		case "VmRSS":
			m.RSSMB = kb / 1024
		case "RssAnon":
			m.RSSAnonMB = kb / 1024
		case "RssFile":
			m.RSSFileMB = kb / 1024
		case "VmHWM":
			m.HWMMB = kb / 1024
		}
	}
	m.RSSStateDBMB, m.RSSRaftDBMB = mappedFileRSS(p.pid())
	return m
}

// mappedFileRSS sums the Rss of the mappings of state.db and raft.db.
func mappedFileRSS(pid int) (stateMB, raftMB float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0
	}
	var cur *float64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			// A mapping's header: range perms offset dev inode [path].
			cur = nil
			if len(f) >= 6 {
				switch filepath.Base(f[5]) {
				case "state.db":
					cur = &stateMB
				case "raft.db":
					cur = &raftMB
				}
			}
		case len(f) >= 2 && f[0] == "Rss:" && cur != nil:
			kb, _ := strconv.ParseFloat(f[1], 64)
			*cur += kb / 1024
		}
	}
	return stateMB, raftMB
}

// rssMB is the process's resident memory.
func (p *dcProc) rssMB() float64 { return p.memory().RSSMB }

// dcCluster is the running datacenter.
type dcCluster struct {
	dir      string
	procs    []*dcProc
	managers []*dcProc
	hc       *http.Client
	join     string // the first manager's serf address

	mu     sync.Mutex
	leader *dcProc
	// anyManager: requests go to every manager in turn (a client with the
	// whole list; followers forward writes) instead of to the leader.
	anyManager bool
	next       atomic.Uint64
	simEvents  map[string][]hvaSimReport     // by process, but "running"
	simRunning map[string]int                // the last "running" count by process
	simGossip  map[string]map[string]float64 // the last "gossip" counts by process
}

func (c *dcCluster) start(name, role, bin string, args []string, stdout io.Writer) (*dcProc, error) {
	p := &dcProc{name: name, role: role, bin: bin, args: args, stdout: stdout,
		logPath: filepath.Join(c.dir, name+".log")}
	if err := p.launch(); err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

// startManagers starts n dcmgr processes forming one raft cluster.
func (c *dcCluster) startManagers(n int, bin string, gossip []string) error {
	for i := range n {
		ports := make([]string, 4)
		for j := range ports {
			var err error
			if ports[j], err = freePort(); err != nil {
				return err
			}
		}
		name := fmt.Sprintf("m%d", i+1)
		dataDir := filepath.Join(c.dir, name)
		args := append([]string{"-node", name, "-data-dir", dataDir,
			"-api", "127.0.0.1:" + ports[0], "-rpc", "127.0.0.1:" + ports[1],
			"-serf", "127.0.0.1:" + ports[2], "-raft", "127.0.0.1:" + ports[3],
			"-bootstrap-expect", strconv.Itoa(n), "-log-level", "warn"}, gossip...)
		if c.join != "" {
			args = append(args, "-join", c.join)
		}
		p, err := c.start(name, "manager", filepath.Join(bin, "dcmgr"), args, nil)
		if err != nil {
			return err
		}
		p.api, p.serf, p.raft, p.dataDir = "http://127.0.0.1:"+ports[0], "127.0.0.1:"+ports[2], "127.0.0.1:"+ports[3], dataDir
		c.managers = append(c.managers, p)
		if c.join == "" {
			c.join = p.serf
		}
	}
	return nil
}

// restart starts a killed manager again with its arguments, joining
// another manager's serf (the first manager started with no -join).
func (c *dcCluster) restart(p *dcProc) error {
	if p.alive() {
		return fmt.Errorf("restart %s: still running", p.name)
	}
	if !slices.Contains(p.args, "-join") {
		for _, m := range c.managers {
			if m != p {
				p.args = append(p.args, "-join", m.serf)
				break
			}
		}
	}
	return p.launch()
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

// roleCPU sums the CPU seconds of every process by role.
func (c *dcCluster) roleCPU() map[string]float64 {
	out := map[string]float64{}
	for _, p := range c.procs {
		out[p.role] += p.cpuSeconds()
	}
	return out
}

// cpuRates turns two roleCPU samples secs apart into cores per role; the
// bench process itself is "driver" and everything else on the machine
// "other".
func cpuRates(a, b map[string]float64, selfA, selfB cpuSample) map[string]float64 {
	secs := selfB.at.Sub(selfA.at).Seconds()
	out := map[string]float64{}
	if secs <= 0 {
		return out
	}
	total := 0.0
	for role, v := range b {
		out[role] = (v - a[role]) / secs
		total += out[role]
	}
	if selfA.ok && selfB.ok {
		out["driver"] = (selfB.own - selfA.own) / clockTicks / secs
		total += out["driver"]
		out["other"] = max(0, (selfB.busy-selfA.busy)/clockTicks/secs-total)
	}
	return out
}

func fmtCores(m map[string]float64) string {
	var parts []string
	for _, role := range []string{"manager", "scheduler", "hvasim", "driver", "other"} {
		if v, ok := m[role]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", role, v))
		}
	}
	return strings.Join(parts, ", ") + " cores"
}

// setLeader records the leading manager.
func (c *dcCluster) setLeader(p *dcProc) {
	c.mu.Lock()
	c.leader = p
	c.mu.Unlock()
}

func (c *dcCluster) currentLeader() *dcProc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// base is the API base a request goes to: the leader's, or with
// anyManager each manager's in turn (dead ones included: a client does not
// know, and a refused connection is retried).
func (c *dcCluster) base() string {
	c.mu.Lock()
	anyM, leader := c.anyManager, c.leader
	c.mu.Unlock()
	if !anyM {
		return leader.api + api.Prefix
	}
	return c.managers[int(c.next.Add(1))%len(c.managers)].api + api.Prefix
}

// liveAPI is the API root of a manager that runs, the leader's if it does.
func (c *dcCluster) liveAPI() string {
	if l := c.currentLeader(); l != nil && l.alive() {
		return l.api
	}
	for _, m := range c.managers {
		if m.alive() {
			return m.api
		}
	}
	return c.managers[0].api
}

// raftStatus is a manager's /internal/v1/status.
type raftStatus struct {
	State        string `json:"state"`
	CommitIndex  uint64 `json:"commit_index,string"`
	AppliedIndex uint64 `json:"applied_index,string"`
}

func (c *dcCluster) status(ctx context.Context, p *dcProc) (raftStatus, error) {
	var st raftStatus
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := getJSON(ctx, c.hc, p.api+"/internal/v1/status", &st)
	return st, err
}

// findLeader waits until a running manager reports itself leader, records
// and returns it.
func (c *dcCluster) findLeader(ctx context.Context, within time.Duration) (*dcProc, error) {
	var found *dcProc
	err := waitUntil(ctx, within, func() error {
		for _, m := range c.managers {
			if !m.alive() {
				continue
			}
			if st, err := c.status(ctx, m); err == nil && st.State == "Leader" {
				found = m
				return nil
			}
		}
		return errors.New("no manager leads")
	})
	if err != nil {
		return nil, err
	}
	c.setLeader(found)
	return found, nil
}

// waitCaughtUp waits until manager p answers and has applied the log up to
// index (and, when lead is set, leads), and returns when its API first
// answered and when it had caught up.
func (c *dcCluster) waitCaughtUp(ctx context.Context, p *dcProc, index uint64, lead bool, within time.Duration) (apiUp, caughtUp time.Time, err error) {
	err = waitUntil(ctx, within, func() error {
		if !p.alive() {
			return fmt.Errorf("%s exited; see %s", p.name, p.logPath)
		}
		st, err := c.status(ctx, p)
		if err != nil {
			return err
		}
		if apiUp.IsZero() {
			apiUp = time.Now()
		}
		if st.AppliedIndex < index {
			return fmt.Errorf("%s applied %d of %d", p.name, st.AppliedIndex, index)
		}
		if lead && st.State != "Leader" {
			return fmt.Errorf("%s is %s", p.name, st.State)
		}
		return nil
	})
	return apiUp, time.Now(), err
}

// waitLeader waits until every manager agrees on a leader and records it.
func (c *dcCluster) waitLeader(ctx context.Context) error {
	return waitUntil(ctx, formTimeout, func() error {
		var leaderRaft string
		for _, m := range c.managers {
			if !m.alive() {
				return fmt.Errorf("%s exited; see %s", m.name, m.logPath)
			}
			var peers []struct {
				Address string `json:"address"`
				Leader  bool   `json:"leader"`
			}
			if err := getJSON(ctx, c.hc, m.api+"/internal/v1/peers", &peers); err != nil {
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
				c.setLeader(m)
				return nil
			}
		}
		return fmt.Errorf("leader %s is none of the managers", leaderRaft)
	})
}

// members is the serf member list of a running manager (the leader's
// when it runs).
func (c *dcCluster) members(ctx context.Context) ([]watchedMember, error) {
	var ms []struct {
		Name   string            `json:"name"`
		Status string            `json:"status"`
		Tags   map[string]string `json:"tags"`
	}
	if err := getJSON(ctx, c.hc, c.liveAPI()+"/internal/v1/members", &ms); err != nil {
		return nil, err
	}
	out := make([]watchedMember, 0, len(ms))
	for _, m := range ms {
		out = append(out, watchedMember{Name: m.Name, Status: m.Status, Role: m.Tags[proto.TagRole]})
	}
	return out, nil
}

// aliveAtLeader counts the members alive in the leader's serf.
func (c *dcCluster) aliveAtLeader(ctx context.Context) int {
	ms, _ := c.members(ctx)
	n := 0
	for _, m := range ms {
		if m.Status == "alive" {
			n++
		}
	}
	return n
}

// schedulerAlive says whether the managers' serf shows a scheduler alive.
func (c *dcCluster) schedulerAlive(ctx context.Context) bool {
	ms, err := c.members(ctx)
	return err == nil && slices.ContainsFunc(ms, func(m watchedMember) bool {
		return m.Role == proto.RoleScheduler && m.Status == "alive"
	})
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
			now := ms(time.Since(t0))
			for i := range r.Times {
				r.Times[i] += now - r.Ms
			}
			r.Ms = now
			c.mu.Lock()
			if r.Event == "running" {
				c.simRunning[name] = r.Count
			} else if r.Event == "gossip" {
				if c.simGossip == nil {
					c.simGossip = map[string]map[string]float64{}
				}
				c.simGossip[name] = r.Gossip
			} else {
				c.simEvents[name] = append(c.simEvents[name], r)
			}
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

// simTimes gathers the per-agent Times of every process's first event of
// kind (driver clock, ms).
func (c *dcCluster) simTimes(kind string) []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []float64
	for _, evs := range c.simEvents {
		for _, e := range evs {
			if e.Event == kind {
				out = append(out, e.Times...)
				break
			}
		}
	}
	return out
}

// gossipCounts sums the hvasim processes' last gossip counts.
func (c *dcCluster) gossipCounts() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]float64{}
	for _, m := range c.simGossip {
		for k, v := range m {
			out[k] += v
		}
	}
	return out
}

// domainsRunning is the domains the hvasim processes last reported running.
func (c *dcCluster) domainsRunning() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.simRunning {
		n += v
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

// dirSize is the apparent size of a file in MB (0 when missing).
func fileMB(path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(fi.Size()) / (1 << 20)
}

// DiskUsage is a manager's data directory: state.db (the bbolt state), raft.db
// (the raft log and stable store) and the newest raft snapshot.
type DiskUsage struct {
	StateDBMB     float64 `json:"state_db_mb"`
	RaftDBMB      float64 `json:"raft_db_mb"`
	SnapshotMB    float64 `json:"snapshot_mb"`
	SnapshotIndex uint64  `json:"snapshot_index"`
	Snapshots     int     `json:"snapshots"`
}

// diskUsage reads a manager's data directory.
func diskUsage(dataDir string) DiskUsage {
	d := DiskUsage{StateDBMB: fileMB(filepath.Join(dataDir, "state.db")), RaftDBMB: fileMB(filepath.Join(dataDir, "raft.db"))}
	entries, _ := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dataDir, "snapshots", e.Name(), "meta.json"))
		if err != nil {
			continue // a snapshot being written
		}
		var meta struct {
			Index uint64
			Size  int64
		}
		if json.Unmarshal(b, &meta) != nil {
			continue
		}
		d.Snapshots++
		if meta.Index > d.SnapshotIndex {
			d.SnapshotIndex, d.SnapshotMB = meta.Index, float64(meta.Size)/(1<<20)
		}
	}
	return d
}

// FileUse is what a bbolt file holds: its size, the bytes its pages hold
// in use (live data and the b-tree around it; the rest is free pages and
// page slack), and the in-use bytes of the largest top-level buckets.
type FileUse struct {
	FileMB  float64            `json:"file_mb"`
	InUseMB float64            `json:"in_use_mb"`
	Buckets map[string]float64 `json:"top_buckets_mb"`
}

// boltUse reads path (a bbolt file nobody writes, such as a raft snapshot
// of state.db) read-only and sums its buckets' page use.
func boltUse(path string) (FileUse, error) {
	u := FileUse{FileMB: fileMB(path), Buckets: map[string]float64{}}
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return u, err
	}
	defer db.Close()
	type use struct {
		name string
		mb   float64
	}
	var all []use
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			st := b.Stats()
			mb := float64(st.BranchInuse+st.LeafInuse) / (1 << 20)
			u.InUseMB += mb
			all = append(all, use{string(name), mb})
			return nil
		})
	})
	slices.SortFunc(all, func(a, b use) int { return cmp.Compare(b.mb, a.mb) })
	for _, x := range all[:min(6, len(all))] {
		u.Buckets[x.name] = x.mb
	}
	return u, err
}

// snapshotPath is the state file of the newest snapshot in dataDir.
func snapshotPath(dataDir string) string {
	best, bestIdx := "", uint64(0)
	entries, _ := os.ReadDir(filepath.Join(dataDir, "snapshots"))
	for _, e := range entries {
		dir := filepath.Join(dataDir, "snapshots", e.Name())
		b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
		if err != nil {
			continue
		}
		var meta struct{ Index uint64 }
		if json.Unmarshal(b, &meta) == nil && meta.Index >= bestIdx && !strings.HasSuffix(e.Name(), ".tmp") {
			best, bestIdx = filepath.Join(dir, "state.bin"), meta.Index
		}
	}
	return best
}
