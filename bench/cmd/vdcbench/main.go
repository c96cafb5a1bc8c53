// Command vdcbench measures the manager foundation — raft commit path, the
// 12.03 API and leader failover — and instances/s end to end (POST
// /instances to running with a scheduler daemon and dummy hvas) in one
// process on loopback, and prints the figures with the machine they were
// taken on.
//
//	vdcbench raft|api|failover|place|dc|dcfailover|scale|serf|all [--short] [--json FILE] [--cpuprofile FILE] [flags]
//
// dc runs the simulated datacenter: dcmgr and scheduler processes (from
// --dc-bin, default bin/) and processes of many dummy hvas each (vdcbench
// hvasim, this binary). Everything it starts listens on 127.0.0.1 only,
// keeps its data under a temporary directory removed at exit, and stops by
// itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/bench"
)

const usage = `usage: vdcbench raft|api|failover|place|dc|dcfailover|scale|serf|all [flags]

  raft      commands/s and commit latency of srv.Apply on 1 and 3 managers
  api       req/s and latency of show, list and create through the 12.03 API
  failover  leader kill under API write load: time to the next acked write, lost acked writes
  place     instances/s end to end: POST /instances to running and DELETE to terminated,
            1 manager + 1 scheduler daemon + N dummy hvas in this process
  dc        the simulated datacenter: 1 or 3 dcmgr processes, scheduler processes and
            N dummy hvas in processes of many (each its own serf member and RPC listener):
            serf convergence, then instances/s end to end as in place
  dcfailover  dc with the leading dcmgr killed (SIGKILL) and restarted every so often while
            instances are created: time until writes succeed again, acknowledged creates
            lost, jobs left unfinished
  scale     the managers with 10,000 and 100,000 instances in their state (filled through
            the API onto dc's processes): RSS, state.db/raft.db/snapshot size, show and
            list latency, restart and catch-up time; 1 and 3 managers
  serf      dc's serf convergence alone for 100, 200 and 500 hvas, with serf tunings
  all       every one in turn (flags get a raft-/api-/failover-/place-/dc-/dcfailover-/
            scale-/serf- prefix)
  hvasim    (internal) a process of simulated hvas, started by dc

Run "vdcbench <command> -h" for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd := args[0]
	var which []string
	switch cmd {
	case "hvasim":
		return runHvaSim(args[1:], stdout, stderr)
	case "raft", "api", "failover", "place", "dc", "dcfailover", "scale", "serf":
		which = []string{cmd}
	case "all":
		which = []string{"raft", "api", "failover", "place", "dc", "dcfailover", "scale", "serf"}
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	// --short changes the defaults, so it is looked for before the flags
	// are defined; explicit flags still override it.
	short := slices.ContainsFunc(args[1:], func(a string) bool {
		return a == "-short" || a == "--short" || a == "-short=true" || a == "--short=true"
	})
	opts := bench.DefaultOptions()
	if short {
		opts = bench.ShortOptions()
	}

	fs := flag.NewFlagSet("vdcbench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("short", false, "tiny windows, 1 repetition, 2 failover trials, place 5 hvas × 50 instances (smoke run)")
	jsonPath := fs.String("json", "", "also write figures and machine info as JSON to `FILE`")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `FILE`")
	mutexProfile := fs.String("mutexprofile", "", "write a mutex contention profile of the whole run to `FILE`")
	allocProfile := fs.String("allocprofile", "", "write the allocations of the whole run (heap profile, alloc_space) to `FILE`")
	blockProfile := fs.String("blockprofile", "", "write a blocking profile of the whole run to `FILE` (costly: sampled every 1 ms blocked)")
	tracePath := fs.String("trace", "", "write a runtime/trace of the whole run to `FILE` (large: keep windows short)")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	timeout := fs.Duration("timeout", time.Hour, "stop everything after this long")
	prefix := func(name string) string { return "" }
	if cmd == "all" {
		prefix = func(name string) string { return name + "-" }
	}
	if slices.Contains(which, "raft") {
		p := prefix("raft")
		o := &opts.Raft
		intList(fs, p+"managers", &o.Managers, "cluster sizes")
		intList(fs, p+"writers", &o.Writers, "concurrent writers per row")
		fs.DurationVar(&o.Warmup, p+"warmup", o.Warmup, "warm-up per row")
		fs.DurationVar(&o.Window, p+"window", o.Window, "measured window")
		fs.IntVar(&o.Reps, p+"reps", o.Reps, "windows per row")
		raftTimeoutFlags(fs, p, &o.Timeouts)
	}
	if slices.Contains(which, "api") {
		p := prefix("api")
		o := &opts.API
		fs.IntVar(&o.Clients, p+"clients", o.Clients, "keep-alive clients")
		fs.IntVar(&o.Seed, p+"seed", o.Seed, "records seeded through the API")
		fs.StringVar(&o.Resource, p+"resource", o.Resource, "auto|ssh_key_pairs|backup_storages (auto: ssh_key_pairs if served)")
		fs.DurationVar(&o.Warmup, p+"warmup", o.Warmup, "warm-up per row")
		fs.DurationVar(&o.Window, p+"window", o.Window, "measured window")
		fs.IntVar(&o.Reps, p+"reps", o.Reps, "windows per row")
		fs.Func(p+"rows", "only these rows (comma-separated: get_show,get_show_stale,get_list_10,get_list_default,post_create)", func(s string) error {
			o.Rows = strings.Split(s, ",")
			return nil
		})
		fs.StringVar(&o.ProfileDir, p+"row-profiles", o.ProfileDir, "write a CPU profile of each row into `DIR` (cpu-<row>.prof)")
	}
	if slices.Contains(which, "failover") {
		p := prefix("failover")
		o := &opts.Failover
		fs.IntVar(&o.Trials, p+"trials", o.Trials, "trials, fresh cluster each")
		fs.IntVar(&o.Writers, p+"writers", o.Writers, "writers POSTing through the API")
		fs.DurationVar(&o.Before, p+"before", o.Before, "load before the leader is killed")
		fs.DurationVar(&o.After, p+"after", o.After, "load after the first write acked post-kill")
		fs.StringVar(&o.Resource, p+"resource", o.Resource, "auto|ssh_key_pairs|backup_storages")
		raftTimeoutFlags(fs, p, &o.Timeouts)
	}
	if slices.Contains(which, "place") {
		p := prefix("place")
		o := &opts.Place
		fs.IntVar(&o.Hvas, p+"hvas", o.Hvas, "in-process dummy hvas (N), host nodes hva.b1..hva.bN")
		fs.IntVar(&o.Instances, p+"instances", o.Instances, "instances created then terminated (M)")
		fs.IntVar(&o.Concurrency, p+"concurrency", o.Concurrency, "keep-alive clients sending POST/DELETE (C)")
		fs.DurationVar(&o.Poll, p+"poll", o.Poll, "period of the list polls observing states")
		fs.IntVar(&o.SchedulerConcurrency, p+"scheduler-concurrency", o.SchedulerConcurrency, "scheduler daemon job concurrency")
		fs.IntVar(&o.LocalStoreConcurrency, p+"local-store-concurrency", o.LocalStoreConcurrency, "local-store-handle jobs at once per hva")
		fs.DurationVar(&o.Timeout, p+"phase-timeout", o.Timeout, "bound of each phase (create, terminate)")
		fs.StringVar(&o.Gossip, p+"gossip", o.Gossip, "serf timing of every member: crowd (many members per process) or fast")
		fs.StringVar(&o.ProfileDir, p+"phase-profiles", o.ProfileDir, "write a CPU profile of each phase into `DIR` (cpu-create.prof, cpu-terminate.prof)")
		fs.IntVar(&o.Reps, p+"reps", o.Reps, "repetitions of the whole run (figures: median, min, max)")
	}
	for _, name := range []string{"dc", "dcfailover"} {
		if !slices.Contains(which, name) {
			continue
		}
		p := prefix(name)
		o := &opts.DC
		if name == "dcfailover" {
			o = &opts.DCFailover
		}
		fs.DurationVar(&o.KillLeaderEvery, p+"kill-leader-every", o.KillLeaderEvery, "kill (SIGKILL) the leading dcmgr this long into the create phase and after each recovery, then restart it (0: never)")
		fs.IntVar(&o.Kills, p+"kills", o.Kills, "most leader kills (0: as many as the create phase holds)")
		fs.StringVar(&o.GossipTune, p+"gossip-tune", o.GossipTune, "the hvas' serf settings over --gossip, e.g. push_pull=2s,retransmit_mult=6,seeds=2")
		fs.IntVar(&o.Managers, p+"managers", o.Managers, "dcmgr processes (1 or 3)")
		fs.IntVar(&o.Schedulers, p+"schedulers", o.Schedulers, "scheduler processes")
		fs.IntVar(&o.Hvas, p+"hvas", o.Hvas, "dummy hvas (N), host nodes hva.b1..hva.bN")
		fs.IntVar(&o.HvasPerProcess, p+"hvas-per-process", o.HvasPerProcess, "hvas per hvasim process")
		fs.IntVar(&o.Instances, p+"instances", o.Instances, "instances created then terminated (M)")
		fs.IntVar(&o.Concurrency, p+"concurrency", o.Concurrency, "keep-alive clients sending POST/DELETE (C)")
		fs.DurationVar(&o.Poll, p+"poll", o.Poll, "period of the list polls observing states")
		fs.IntVar(&o.LocalStoreConcurrency, p+"local-store-concurrency", o.LocalStoreConcurrency, "local-store-handle jobs at once per hva")
		fs.StringVar(&o.Gossip, p+"gossip", o.Gossip, "serf timing of every member: crowd or fast")
		fs.StringVar(&o.Bin, p+"bin", o.Bin, "directory holding dcmgr and scheduler")
		fs.DurationVar(&o.Timeout, p+"phase-timeout", o.Timeout, "bound of each phase (create, terminate)")
		fs.DurationVar(&o.Converge, p+"converge-timeout", o.Converge, "bound of the wait for serf membership")
		fs.StringVar(&o.KeepLogs, p+"keep-logs", o.KeepLogs, "move the processes' logs of a failed run to `DIR`")
		fs.StringVar(&o.ProfileDir, p+"profile-dir", o.ProfileDir, "write a CPU profile of every hvasim process into `DIR`")
		fs.IntVar(&o.Reps, p+"reps", o.Reps, "repetitions of the whole run (figures: median, min, max)")
	}
	if slices.Contains(which, "scale") {
		p := prefix("scale")
		o := &opts.Scale
		intList(fs, p+"managers", &o.Managers, "cluster sizes, one run each")
		intList(fs, p+"sizes", &o.Sizes, "instance counts measured at, ascending")
		fs.IntVar(&o.Hvas, p+"hvas", o.Hvas, "dummy hvas carrying the instances")
		fs.IntVar(&o.HvasPerProcess, p+"hvas-per-process", o.HvasPerProcess, "hvas per hvasim process")
		fs.IntVar(&o.Concurrency, p+"concurrency", o.Concurrency, "clients POSTing the instances")
		fs.IntVar(&o.Window, p+"window", o.Window, "most instances POSTed and not yet running")
		fs.IntVar(&o.Samples, p+"samples", o.Samples, "requests per latency row")
		fs.BoolVar(&o.Restarts, p+"restarts", o.Restarts, "restart a manager three ways at each size and time its catching up")
		fs.StringVar(&o.Gossip, p+"gossip", o.Gossip, "serf timing of every member: crowd or fast")
		fs.StringVar(&o.Bin, p+"bin", o.Bin, "directory holding dcmgr and scheduler")
		fs.DurationVar(&o.Timeout, p+"fill-timeout", o.Timeout, "bound of each fill")
		fs.StringVar(&o.KeepLogs, p+"keep-logs", o.KeepLogs, "move the processes' logs of a failed run to `DIR`-<managers>m")
	}
	if slices.Contains(which, "serf") {
		p := prefix("serf")
		o := &opts.Serf
		intList(fs, p+"agents", &o.Agents, "hva counts, one cluster each")
		fs.IntVar(&o.HvasPerProcess, p+"hvas-per-process", o.HvasPerProcess, "hvas per hvasim process")
		fs.IntVar(&o.Managers, p+"managers", o.Managers, "dcmgr processes")
		fs.StringVar(&o.Gossip, p+"gossip", o.Gossip, "serf profile of every member: crowd or fast")
		tunesSet := false
		fs.Func(p+"tune", `the hvas' serf settings over the profile, repeatable (one cluster set each): "none" or e.g. push_pull=2s,retransmit_mult=6,gossip_nodes=6,seeds=2 (default: none)`, func(v string) error {
			if !tunesSet {
				o.Tunes, tunesSet = nil, true
			}
			if v == "none" {
				v = ""
			}
			o.Tunes = append(o.Tunes, v)
			return nil
		})
		fs.IntVar(&o.Reps, p+"reps", o.Reps, "clusters per (N, tune)")
		fs.DurationVar(&o.Converge, p+"converge-timeout", o.Converge, "bound of each wait for membership")
		fs.StringVar(&o.Bin, p+"bin", o.Bin, "directory holding dcmgr and scheduler")
		fs.StringVar(&o.ProfileDir, p+"profile-dir", o.ProfileDir, "write a CPU profile of every hvasim process to `DIR`")
		fs.DurationVar(&o.IdleAfter, p+"idle-after", o.IdleAfter, "start of the 5 s idle CPU window after convergence")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if self, err := os.Executable(); err == nil {
		opts.DC.Self, opts.DCFailover.Self, opts.Scale.Self, opts.Serf.Self = self, self, self, self
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %v\n", fs.Args())
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	for _, p := range []struct {
		path, name string
		on         func()
	}{
		{*mutexProfile, "mutex", func() { runtime.SetMutexProfileFraction(5) }},
		{*blockProfile, "block", func() { runtime.SetBlockProfileRate(int(time.Millisecond)) }},
		{*allocProfile, "allocs", func() {}},
	} {
		if p.path == "" {
			continue
		}
		p.on()
		defer func() {
			if err := writeProfile(p.name, p.path); err != nil {
				fmt.Fprintln(stderr, err)
			}
		}()
	}

	if *tracePath != "" {
		f, err := os.Create(*tracePath)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer trace.Stop()
	}

	dir, err := os.MkdirTemp("", "vdcbench-")
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	r := &bench.Runner{Dir: dir, Progress: stderr}
	if *quiet {
		r.Progress = nil
	}

	rep, runErr := r.Run(ctx, which, opts, short)
	rep.WriteTables(stdout)
	if *jsonPath != "" {
		if err := rep.WriteJSON(*jsonPath); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "vdcbench:", runErr)
		return 1
	}
	if rep.LostAcknowledgedWrites != nil && *rep.LostAcknowledgedWrites > 0 {
		fmt.Fprintf(stderr, "vdcbench: %d acknowledged writes were lost\n", *rep.LostAcknowledgedWrites)
		return 1
	}
	if rep.DCLostAckedCreates != nil && *rep.DCLostAckedCreates > 0 {
		fmt.Fprintf(stderr, "vdcbench: %d acknowledged creates were lost\n", *rep.DCLostAckedCreates)
		return 1
	}
	return 0
}

// intList defines a flag of comma-separated integers stored in *dst.
func intList(fs *flag.FlagSet, name string, dst *[]int, help string) {
	def := make([]string, len(*dst))
	for i, v := range *dst {
		def[i] = strconv.Itoa(v)
	}
	fs.Func(name, help+" (comma-separated, default "+strings.Join(def, ",")+")", func(s string) error {
		var out []int
		for _, f := range strings.Split(s, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || v < 1 {
				return errors.New("want positive integers separated by commas")
			}
			out = append(out, v)
		}
		*dst = out
		return nil
	})
}

// raftTimeoutFlags defines the managers' raft timeout flags.
func raftTimeoutFlags(fs *flag.FlagSet, p string, t *bench.RaftTimeouts) {
	fs.DurationVar(&t.Heartbeat, p+"heartbeat-timeout", t.Heartbeat, "raft heartbeat timeout of the managers (0: the shipped default)")
	fs.DurationVar(&t.Election, p+"election-timeout", t.Election, "raft election timeout (0: the shipped default)")
	fs.DurationVar(&t.LeaderLease, p+"lease-timeout", t.LeaderLease, "raft leader lease timeout (0: the shipped default)")
}

// writeProfile writes the named runtime profile to path.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("write %s profile: %w", name, err)
	}
	return f.Close()
}

// runHvaSim is the hvasim command: a process of simulated hvas for dc,
// running until SIGTERM or SIGINT.
func runHvaSim(args []string, stdout, stderr io.Writer) int {
	o := bench.HvaSimOptions{LocalStoreConcurrency: 2, Gossip: "crowd"}
	fs := flag.NewFlagSet("vdcbench hvasim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.First, "first", 1, "number of the first hva (hva.b<first>)")
	fs.IntVar(&o.Count, "count", 1, "hvas in this process")
	var join []string
	fs.Func("join", "serf address of a member to join (repeatable)", func(v string) error { join = append(join, v); return nil })
	fs.IntVar(&o.ExpectMembers, "expect-members", 0, "cluster size at which membership has converged (0: do not watch)")
	fs.IntVar(&o.LocalStoreConcurrency, "local-store-concurrency", o.LocalStoreConcurrency, "local-store-handle jobs at once per hva")
	fs.StringVar(&o.Gossip, "gossip", o.Gossip, "serf timing: crowd or fast")
	fs.StringVar(&o.GossipTune, "gossip-tune", "", "serf settings over --gossip (see vdcbench dc -h)")
	fs.DurationVar(&o.ReportRunning, "report-running", 0, "report the running domains this often (0: never)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this process to `FILE`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	o.Join = join
	// The simulated fleet is harness, not product: its hundreds of agents
	// share one heap, and collecting it as often as a daemon's would take
	// the CPU the managers are measured with.
	debug.SetGCPercent(400)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench.RunHvaSim(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "vdcbench hvasim:", err)
		return 1
	}
	return 0
}
