// Package rig runs a vdc cluster as real processes on one machine, each in
// its own network namespace with its own address on a private bridge, and
// injects faults into it: kill -9 and restart, partitions (symmetric, one
// host cut off, one-way), SIGSTOP/SIGCONT, a wall-clock jump on a manager,
// and a full disk under a manager's data dir.
//
// Topology (names carry Config.Prefix, so several rigs can coexist):
//
//	<p>-sw   switch: bridge br0, one port p-<host> per host (no address)
//	<p>-m1.. managers, <p>-s1 scheduler, <p>-h1.. hvas: eth0 = <subnet>.N/24
//	<p>-c    the client host (.200) the API clients dial from
//
// Nothing is created in the root network namespace: veth pairs are made
// directly inside their namespaces. Manager data dirs are tmpfs mounts of a
// fixed size, so that one can be filled. Every process is started with
// `ip netns exec` and a parent-death signal; Close kills them, deletes the
// namespaces and unmounts the data dirs, and Start first removes what a rig
// of a dead test process left behind.
package rig

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Role is what a process runs.
type Role string

// Roles.
const (
	RoleManager   Role = "manager"
	RoleScheduler Role = "scheduler"
	RoleHva       Role = "hva"
)

// Fixed ports: each process has its own address, so every one can use the
// daemons' defaults.
const (
	portAPI  = 9001
	portSerf = 9010
	portRaft = 9011
	portRPC  = 9012
)

// Config sizes a rig.
type Config struct {
	// Prefix starts every name the rig creates on the host: namespaces,
	// mount points. It must start with "ch" (this rig's host-resource
	// prefix) and be unique among live rigs; DefaultPrefix gives one.
	Prefix string
	// Subnet is the first three octets of the private /24 ("192.168.252").
	Subnet string
	// Bin holds dcmgr, scheduler and hva (see Build).
	Bin string
	// Dir receives logs, configs and the data dir mounts.
	Dir string
	// Managers (3), Schedulers (1) and Hvas (2) to run.
	Managers, Schedulers, Hvas int
	// DataSizeMB is the size of each manager's tmpfs data dir (64).
	DataSizeMB int
	// HvaCores and HvaMemoryMB size each dummy hypervisor (64, 65536).
	HvaCores, HvaMemoryMB int
	// Logf receives one line per fault and lifecycle step (may be nil).
	Logf func(format string, args ...any)
	// RaftLogLevel is the managers' raft log level (dcmgr's default, warn,
	// when empty; debug shows replication).
	RaftLogLevel string
}

// DefaultPrefix is "ch" + this process id: unique among live processes, and
// recognisable as stale once the process is gone.
func DefaultPrefix() string { return fmt.Sprintf("ch%d", os.Getpid()) }

// stalePrefix matches the namespaces of DefaultPrefix rigs, staleMount
// their data dir mount points.
var (
	stalePrefix = regexp.MustCompile(`^ch(\d+)-`)
	staleMount  = regexp.MustCompile(`/ch(\d+)-[^/]*$`)
)

// Host is one network namespace on the bridge.
type Host struct {
	Name string // m1, s1, h1, c
	NS   string // namespace name
	Addr string // IPv4 address on the bridge
	Port string // its port on the switch bridge
}

// Rig is a running cluster.
type Rig struct {
	cfg    Config
	sw     string // switch namespace
	Hosts  []*Host
	Client *Host

	Managers   []*Proc
	Schedulers []*Proc
	Hvas       []*Proc

	mu       sync.Mutex
	faults   map[string]func() error // active network faults by key, with their heal
	closed   bool
	netFiles []*os.File // open namespace handles (the client dialer's)
}

func (c *Config) fill() error {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix()
	}
	if !strings.HasPrefix(c.Prefix, "ch") || strings.ContainsAny(c.Prefix, " /") {
		return fmt.Errorf("rig prefix %q must start with ch and hold no space or slash", c.Prefix)
	}
	if c.Subnet == "" {
		c.Subnet = "192.168.252"
	}
	if c.Managers == 0 {
		c.Managers = 3
	}
	if c.Schedulers == 0 {
		c.Schedulers = 1
	}
	if c.Hvas == 0 {
		c.Hvas = 2
	}
	if c.DataSizeMB == 0 {
		c.DataSizeMB = 64
	}
	if c.HvaCores == 0 {
		c.HvaCores = 64
	}
	if c.HvaMemoryMB == 0 {
		c.HvaMemoryMB = 65536
	}
	if c.Bin == "" || c.Dir == "" {
		return fmt.Errorf("rig needs Bin and Dir")
	}
	return nil
}

func (r *Rig) logf(format string, args ...any) {
	if r.cfg.Logf != nil {
		r.cfg.Logf(format, args...)
	}
}

// Start builds the network, mounts the data dirs and starts every process.
// It returns once the processes are started (not yet clustered: see
// WaitHealthy). On error everything made so far is removed.
func Start(ctx context.Context, cfg Config) (_ *Rig, err error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := CleanStale(ctx); err != nil {
		return nil, err
	}
	r := &Rig{cfg: cfg, sw: cfg.Prefix + "-sw", faults: map[string]func() error{}}
	defer func() {
		if err != nil {
			_ = r.Close()
		}
	}()
	for _, d := range []string{cfg.Dir, r.logDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := r.buildNetwork(ctx); err != nil {
		return nil, err
	}
	if err := r.startProcesses(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Rig) logDir() string { return filepath.Join(r.cfg.Dir, "logs") }

// hostAddr numbers hosts: managers .11.., schedulers .21.., hvas .31..,
// client .200.
func (r *Rig) addHost(name string, n int) *Host {
	h := &Host{Name: name, NS: r.cfg.Prefix + "-" + name, Addr: fmt.Sprintf("%s.%d", r.cfg.Subnet, n), Port: "p-" + name}
	if name == "c" {
		r.Client = h
	} else {
		r.Hosts = append(r.Hosts, h)
	}
	return h
}

func (r *Rig) buildNetwork(ctx context.Context) error {
	for i := 1; i <= r.cfg.Managers; i++ {
		r.addHost(fmt.Sprintf("m%d", i), 10+i)
	}
	for i := 1; i <= r.cfg.Schedulers; i++ {
		r.addHost(fmt.Sprintf("s%d", i), 20+i)
	}
	for i := 1; i <= r.cfg.Hvas; i++ {
		r.addHost(fmt.Sprintf("h%d", i), 30+i)
	}
	r.addHost("c", 200)

	if err := run(ctx, "ip", "netns", "add", r.sw); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"-n", r.sw, "link", "set", "lo", "up"},
		{"-n", r.sw, "link", "add", "br0", "type", "bridge"},
		{"-n", r.sw, "link", "set", "br0", "up"},
	} {
		if err := run(ctx, "ip", args...); err != nil {
			return err
		}
	}
	for _, h := range append(append([]*Host{}, r.Hosts...), r.Client) {
		if err := run(ctx, "ip", "netns", "add", h.NS); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"link", "add", "eth0", "netns", h.NS, "type", "veth", "peer", "name", h.Port, "netns", r.sw},
			{"-n", r.sw, "link", "set", h.Port, "master", "br0"},
			{"-n", r.sw, "link", "set", h.Port, "up"},
			{"-n", h.NS, "link", "set", "lo", "up"},
			{"-n", h.NS, "addr", "add", h.Addr + "/24", "dev", "eth0"},
			{"-n", h.NS, "link", "set", "eth0", "up"},
		} {
			if err := run(ctx, "ip", args...); err != nil {
				return err
			}
		}
	}
	r.logf("rig: network %s.0/24 up: switch %s, %d hosts", r.cfg.Subnet, r.sw, len(r.Hosts)+1)
	return nil
}

// Host returns the host named name (m1, s1, h1, c), nil if none.
func (r *Rig) Host(name string) *Host {
	for _, h := range append(append([]*Host{}, r.Hosts...), r.Client) {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Procs lists every process: managers, schedulers, hvas.
func (r *Rig) Procs() []*Proc {
	var out []*Proc
	out = append(out, r.Managers...)
	out = append(out, r.Schedulers...)
	return append(out, r.Hvas...)
}

// Close stops every process, removes the network and unmounts the data
// dirs. Logs stay in Dir. It is safe to call twice.
func (r *Rig) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	files := r.netFiles
	r.netFiles = nil
	r.mu.Unlock()
	for _, f := range files {
		f.Close()
	}
	var errList []string
	for _, p := range r.Procs() {
		p.kill()
		if p.clockFile != "" {
			_ = os.Remove(p.clockFile)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, h := range append(append([]*Host{}, r.Hosts...), r.Client) {
		if h == nil {
			continue
		}
		if err := deleteNetns(ctx, h.NS); err != nil {
			errList = append(errList, err.Error())
		}
	}
	if err := deleteNetns(ctx, r.sw); err != nil {
		errList = append(errList, err.Error())
	}
	for _, p := range r.Managers {
		if err := unmount(ctx, p.DataDir); err != nil {
			errList = append(errList, err.Error())
		}
	}
	if len(errList) > 0 {
		return fmt.Errorf("rig close: %s", strings.Join(errList, "; "))
	}
	r.logf("rig: closed")
	return nil
}

// CleanStale removes what rigs of dead processes left: their processes
// (found by namespace), namespaces and data dir mounts. Only names of the
// DefaultPrefix form ("ch<pid>-...") whose pid is gone are touched.
func CleanStale(ctx context.Context) error {
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range entries {
		m := stalePrefix.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pidAlive(pid) {
			continue
		}
		if err := deleteNetns(ctx, e.Name()); err != nil {
			return err
		}
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "vdc-rig" {
			continue
		}
		m := staleMount.FindStringSubmatch(f[1])
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if !pidAlive(pid) {
			if err := unmount(ctx, f[1]); err != nil {
				return err
			}
		}
	}
	return nil
}

func pidAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// deleteNetns kills what still runs in namespace ns (processes of this rig
// whose parent died before they could be killed) and deletes it.
func deleteNetns(ctx context.Context, ns string) error {
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); os.IsNotExist(err) {
		return nil
	}
	out, _ := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			if p, err := os.FindProcess(pid); err == nil {
				_ = p.Kill()
			}
		}
	}
	return run(ctx, "ip", "netns", "del", ns)
}

func unmount(ctx context.Context, dir string) error {
	if dir == "" || !mounted(dir) {
		return nil
	}
	if err := run(ctx, "umount", dir); err != nil {
		// Still referenced by a dying process's mount namespace: detach it;
		// the kernel frees it with the last reference.
		return run(ctx, "umount", "-l", dir)
	}
	return nil
}

func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[1] == dir {
			return true
		}
	}
	return false
}

// run runs a command, returning its output in the error.
func run(ctx context.Context, name string, args ...string) error {
	return runInput(ctx, "", name, args...)
}

func runInput(ctx context.Context, stdin, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Build compiles dcmgr, scheduler and hva from the module at root into dir.
func Build(ctx context.Context, root, dir string) error {
	for _, pkg := range []string{"manager/cmd/dcmgr", "scheduler/cmd/scheduler", "hva/cmd/hva"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), "./"+pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	return nil
}

// ModuleRoot finds the directory of go.mod above dir.
func ModuleRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
}
