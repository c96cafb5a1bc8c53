package rig

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one daemon of the rig. Its process changes across restarts; its
// name, host, addresses and data dir do not.
type Proc struct {
	Name   string // m1, s1, h1 (its host's name)
	Role   Role
	Host   *Host
	NodeID string // serf member name: m1 for managers, the node id for agents
	// API is the 12.03 base URL of a manager ("" for agents).
	API string
	// Internal is the base URL of a manager's /internal/v1 routes.
	Internal string
	// SerfAddr is host:port of its serf member.
	SerfAddr string
	// DataDir is a manager's tmpfs data dir ("" for agents).
	DataDir string

	r         *Rig
	bin       string
	args      []string
	env       []string
	clockFile string
	logPath   string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current process has been reaped
	exitErr error
	starts  int
	paused  bool
}

func (r *Rig) startProcesses(ctx context.Context) error {
	var joins []string
	for i := 1; i <= r.cfg.Managers; i++ {
		joins = append(joins, fmt.Sprintf("%s.%d:%d", r.cfg.Subnet, 10+i, portSerf))
	}
	for i := 1; i <= r.cfg.Managers; i++ {
		h := r.Host(fmt.Sprintf("m%d", i))
		p := &Proc{Name: h.Name, Role: RoleManager, Host: h, NodeID: h.Name, r: r, bin: "dcmgr",
			API:      fmt.Sprintf("http://%s:%d/api/12.03", h.Addr, portAPI),
			Internal: fmt.Sprintf("http://%s:%d/internal/v1", h.Addr, portAPI),
			SerfAddr: fmt.Sprintf("%s:%d", h.Addr, portSerf),
			DataDir:  filepath.Join(r.cfg.Dir, h.NS+"-data"),
		}
		if err := os.MkdirAll(p.DataDir, 0o700); err != nil {
			return err
		}
		if err := run(ctx, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0700", r.cfg.DataSizeMB),
			"vdc-rig", p.DataDir); err != nil {
			return err
		}
		// Raft timeouts are dcmgr's defaults (300 ms each): tight already,
		// and tighter ones make a loaded 2-core machine elect spuriously.
		confPath := filepath.Join(r.cfg.Dir, h.Name+".json")
		conf := map[string]any{"raft_snapshot_threshold": 2048,
			"ha_reschedule_after_ms": HAReschedule.Milliseconds()}
		if r.cfg.RaftLogLevel != "" {
			conf["raft_log_level"] = r.cfg.RaftLogLevel
		}
		b, _ := json.Marshal(conf)
		if err := os.WriteFile(confPath, b, 0o600); err != nil {
			return err
		}
		p.clockFile = filepath.Join(r.cfg.Dir, h.Name+".clock")
		p.env = []string{"VDC_TEST_CLOCK_OFFSET_FILE=" + p.clockFile}
		p.args = []string{"-config", confPath, "-node", h.Name, "-data-dir", p.DataDir,
			"-api", fmt.Sprintf("%s:%d", h.Addr, portAPI), "-rpc", fmt.Sprintf("%s:%d", h.Addr, portRPC),
			"-serf", p.SerfAddr, "-raft", fmt.Sprintf("%s:%d", h.Addr, portRaft),
			"-bootstrap-expect", fmt.Sprint(r.cfg.Managers), "-fast-gossip", "-log-level", "info",
			// The rig's clients (and the test) call from the private /24:
			// its frontends, as a load balancer there would be.
			"-trusted-frontends", r.cfg.Subnet + ".0/24"}
		for _, j := range joins {
			if j != p.SerfAddr {
				p.args = append(p.args, "-join", j)
			}
		}
		r.Managers = append(r.Managers, p)
	}
	agent := func(h *Host, role Role, nodeID, bin string, extra ...string) *Proc {
		p := &Proc{Name: h.Name, Role: role, Host: h, NodeID: nodeID, r: r, bin: bin,
			SerfAddr: fmt.Sprintf("%s:%d", h.Addr, portSerf)}
		p.args = []string{"-node-id", nodeID, "-serf", p.SerfAddr, "-rpc", fmt.Sprintf("%s:%d", h.Addr, portRPC),
			"-fast-gossip", "-log-level", "info"}
		for _, j := range joins {
			p.args = append(p.args, "-join", j)
		}
		p.args = append(p.args, extra...)
		return p
	}
	for i := 1; i <= r.cfg.Schedulers; i++ {
		h := r.Host(fmt.Sprintf("s%d", i))
		r.Schedulers = append(r.Schedulers, agent(h, RoleScheduler, "scheduler.ch"+h.Name[1:], "scheduler"))
	}
	for i := 1; i <= r.cfg.Hvas; i++ {
		h := r.Host(fmt.Sprintf("h%d", i))
		r.Hvas = append(r.Hvas, agent(h, RoleHva, HvaNodeID(i), "hva", "-hypervisor", "dummy",
			"-cpu-cores", fmt.Sprint(r.cfg.HvaCores), "-memory-mb", fmt.Sprint(r.cfg.HvaMemoryMB),
			"-monitor-interval", "1s", "-fence-after", HAFenceAfter.String(),
			// Kept across the nemesis's kills, as a data dir is.
			"-jobs-file", filepath.Join(r.cfg.Dir, h.NS+"-jobs.db")))
	}
	for _, p := range r.Procs() {
		p.logPath = filepath.Join(r.logDir(), p.Name+".log")
		if err := p.Start(); err != nil {
			return err
		}
	}
	return nil
}

// HA timings of the rig's daemons (their defaults, written out so that the
// nemesis can tell the faults HA may act on): an hva fences itself after
// HAFenceAfter without a heartbeat answered by the managers, and the
// managers evacuate the host of an hva that failed and sent no heartbeat
// for HAReschedule (its instances, none of them HA, are halted).
const (
	HAFenceAfter = 30 * time.Second
	HAReschedule = 45 * time.Second
)

// HvaNodeID is the node id of hva number i (1-based): hva.ch<i>.
func HvaNodeID(i int) string { return fmt.Sprintf("hva.ch%d", i) }

// Start starts the process (again). It is an error while it runs.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return fmt.Errorf("%s is running", p.Name)
	}
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "==== rig: start #%d of %s at %s ====\n", p.starts, p.Name, time.Now().Format(time.RFC3339Nano))
	args := append([]string{"netns", "exec", p.Host.NS, filepath.Join(p.r.cfg.Bin, p.bin)}, p.args...)
	cmd := exec.Command("ip", args...)
	// GOTRACEBACK=all: DumpStacks (SIGQUIT) prints every goroutine.
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=all"), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	// ip execs the daemon in place, so the pid is the daemon's; the parent
	// death signal takes it down with a test process that dies before Close.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr, p.paused = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *Proc) exitedLocked() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Exited reports whether the current process has ended (killed or crashed).
func (p *Proc) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd == nil || p.exitedLocked()
}

// ExitErr is how the last process ended (nil while it runs).
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// Starts counts the processes started under this name.
func (p *Proc) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Pid is the current process id (0 when none).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL and waits until the process is reaped.
func (p *Proc) Kill() {
	p.r.logf("rig: kill -9 %s (pid %d)", p.Name, p.Pid())
	p.kill()
}

func (p *Proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// DumpStacks makes the process print every goroutine's stack to its log
// and exit (SIGQUIT): for finding out where a stuck daemon is stuck.
func (p *Proc) DumpStacks() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	p.r.logf("rig: SIGQUIT %s (stack dump in %s)", p.Name, p.logPath)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

// Restart kills the process if it runs and starts it again.
func (p *Proc) Restart() error {
	if !p.Exited() {
		p.kill()
	}
	p.r.logf("rig: start %s", p.Name)
	return p.Start()
}

// Pause freezes the process (SIGSTOP): its sockets stay open, nothing
// answers.
func (p *Proc) Pause() error {
	p.r.logf("rig: SIGSTOP %s", p.Name)
	if err := p.signal(syscall.SIGSTOP, true); err != nil {
		return err
	}
	// kill(2) returns before the process stops: on a loaded machine it
	// could still answer a request sent right after. Wait (briefly) until
	// the kernel shows it stopped.
	p.mu.Lock()
	pid := p.cmd.Process.Pid
	p.mu.Unlock()
	for range 200 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil // gone: nothing left to answer
		}
		// The state follows the ")" closing the command name.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'T' {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s did not stop within 2s of SIGSTOP", p.Name)
}

// Resume thaws a paused process (SIGCONT).
func (p *Proc) Resume() error {
	p.r.logf("rig: SIGCONT %s", p.Name)
	return p.signal(syscall.SIGCONT, false)
}

// Paused reports whether Pause was the last signal sent.
func (p *Proc) Paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

func (p *Proc) signal(sig syscall.Signal, paused bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return fmt.Errorf("%s is not running", p.Name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s %v: %w", p.Name, sig, err)
	}
	p.paused = paused
	return nil
}

// SetClockOffset moves a manager's wall clock by d from the true time (0
// puts it back); dcmgr picks the change up within 100 ms.
func (p *Proc) SetClockOffset(d time.Duration) error {
	if p.clockFile == "" {
		return fmt.Errorf("%s has no test clock", p.Name)
	}
	p.r.logf("rig: clock of %s offset %v", p.Name, d)
	tmp := p.clockFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(d.String()+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.clockFile)
}

// fillerName is the file FillDisk writes in a data dir.
const fillerName = "rig-disk-filler"

// FillDisk fills a manager's data dir filesystem: the next write of raft
// or bbolt that needs a new block fails with ENOSPC.
func (p *Proc) FillDisk() error {
	if p.DataDir == "" {
		return fmt.Errorf("%s has no data dir of its own", p.Name)
	}
	p.r.logf("rig: disk of %s full", p.Name)
	f, err := os.OpenFile(filepath.Join(p.DataDir, fillerName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if strings.Contains(err.Error(), "no space left") {
				break
			}
			return fmt.Errorf("fill %s: %w", p.DataDir, err)
		}
	}
	// Page-sized leftovers would let small writes through: fill them too.
	for _, n := range []int{64 << 10, 4 << 10, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return nil
}

// FreeDisk removes FillDisk's file.
func (p *Proc) FreeDisk() error {
	if p.DataDir == "" {
		return nil
	}
	p.r.logf("rig: disk of %s freed", p.Name)
	err := os.Remove(filepath.Join(p.DataDir, fillerName))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

// LogPath is the process's log file (all its starts, appended).
func (p *Proc) LogPath() string { return p.logPath }
