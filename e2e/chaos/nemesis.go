package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/vdc-project/vdc/e2e/chaos/rig"
)

// FaultKinds are the faults the nemesis injects, in turn.
var FaultKinds = []string{
	"kill-leader", "partition-leader", "pause-leader", "clock-jump", "kill-agent", "oneway-leader",
	"isolate-host", "disk-full", "kill-follower", "partition-random", "pause-any",
}

// Fault is one injected fault and what was measured around it.
type Fault struct {
	Kind, Target string
	// At and HealedAt are on the history's clock (ns), to line faults up
	// with operations.
	At, HealedAt int64
	// Available is the time from the injection to the first write the
	// managers the fault spared acknowledged (0: none during the fault).
	Available time.Duration
	// Held is how long the fault lasted.
	Held time.Duration
	// Recovered is the time from the heal to a healthy cluster (every
	// process up, one leader, everyone alive in serf).
	Recovered time.Duration
	// Writable is the time from the heal to the first acknowledged write.
	Writable time.Duration
}

// Nemesis injects one fault per cycle and heals it.
type Nemesis struct {
	Rig  *rig.Rig
	API  *API
	HTTP *http.Client
	Rand *rand.Rand
	// Probe is the id of a security group outside the model that the
	// nemesis writes to measure availability.
	Probe string
	// Clock, when set, stamps faults on the history's clock.
	Clock func() int64
	// OnKill, when set, is told of each process the nemesis kills.
	OnKill func(p *rig.Proc)
	// OnHvaCut, when set, is told of each hva a fault kept from the
	// managers long enough for HA to evacuate its host (see cutLongEnough),
	// with the fault's span on the history's clock.
	OnHvaCut func(p *rig.Proc, from, to int64)
	// Hold is the shortest time a fault lasts (it lasts up to twice that,
	// and longer while no write goes through, up to Hold+8s).
	Hold time.Duration
	Logf func(format string, args ...any)

	Faults  []Fault
	Crashes []string // processes that died without the nemesis killing them
	probeN  int
}

// injected is a fault in place: how to heal it, which managers it hits
// (not probed while it lasts), which processes may die of it, and which
// hvas it keeps from the managers' majority (a killed one is told through
// OnKill).
type injected struct {
	target string
	heal   func(ctx context.Context) error
	hit    []*rig.Proc
	dies   []*rig.Proc
	cut    []*rig.Proc
}

// cutLongEnough says whether an hva kept from the managers for a fault
// held for held and healthy again recovered after the heal may have had
// its host evacuated: the managers wait rig.HAReschedule after its last
// heartbeat, which was sent at most a heartbeat period (HAFenceAfter/6)
// before the fault. HAFenceAfter is below that by more than the period,
// so the test errs on the side of allowing it.
func cutLongEnough(held, recovered time.Duration) bool {
	return held+recovered >= rig.HAFenceAfter
}

// Cycle injects one fault of kind, holds it, heals it and waits until the
// cluster is healthy again.
func (n *Nemesis) Cycle(ctx context.Context, kind string) error {
	// A loaded machine can lose a leader on its own (missed heartbeats),
	// also between the health check and the injection: start from a
	// healthy cluster whose leader is still known.
	var l *rig.Proc
	deadline := time.Now().Add(90 * time.Second)
	for l == nil {
		if err := n.Rig.WaitHealthy(ctx, n.HTTP, time.Until(deadline)); err != nil {
			return fmt.Errorf("before %s: %w", kind, err)
		}
		l, _ = n.leader(ctx)
	}
	start := time.Now()
	inj, err := n.inject(ctx, kind, l)
	if err != nil {
		return fmt.Errorf("inject %s: %w", kind, err)
	}
	f := Fault{Kind: kind, Target: inj.target, At: n.now(start)}
	hold := n.Hold + time.Duration(n.Rand.Int64N(int64(n.Hold)+1))
	for {
		el := time.Since(start)
		if f.Available == 0 && n.probe(ctx, inj.hit) {
			f.Available = time.Since(start)
		}
		if el >= hold && (f.Available != 0 || el >= n.Hold+8*time.Second) {
			break
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Held = time.Since(start)
	n.noteCrashes(inj.dies)
	healStart := time.Now()
	f.HealedAt = n.now(healStart)
	if err := inj.heal(ctx); err != nil {
		return fmt.Errorf("heal %s: %w", kind, err)
	}
	if err := n.restartExited(); err != nil {
		return err
	}
	if err := n.Rig.WaitHealthy(ctx, n.HTTP, 90*time.Second); err != nil {
		return fmt.Errorf("after %s of %s: %w", kind, inj.target, err)
	}
	f.Recovered = time.Since(healStart)
	for f.Writable == 0 && time.Since(healStart) < 60*time.Second && ctx.Err() == nil {
		if n.probe(ctx, nil) {
			f.Writable = time.Since(healStart)
		}
	}
	if f.Writable == 0 {
		return fmt.Errorf("after %s of %s: no write acknowledged for 60s after the heal", kind, inj.target)
	}
	if n.OnHvaCut != nil && cutLongEnough(f.Held, f.Recovered) {
		for _, p := range inj.cut {
			n.OnHvaCut(p, f.At, n.now(time.Now()))
		}
	}
	n.Faults = append(n.Faults, f)
	n.Logf("nemesis: [%s, %s] %-16s %-24s writes after %s, healthy %.1fs after heal, writable %.1fs",
		ms(f.At), ms(f.HealedAt), kind, inj.target, avail(f.Available), f.Recovered.Seconds(), f.Writable.Seconds())
	return nil
}

// now is t on the history's clock (0 without one).
func (n *Nemesis) now(t time.Time) int64 {
	if n.Clock == nil {
		return 0
	}
	return n.Clock() - int64(time.Since(t))
}

func avail(d time.Duration) string {
	if d == 0 {
		return "never"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// HealAll undoes every fault the rig can hold (used before the final
// checks, and when a cycle failed half way).
func (n *Nemesis) HealAll(ctx context.Context) error {
	var errList []string
	if err := n.Rig.Heal(ctx); err != nil {
		errList = append(errList, err.Error())
	}
	for _, p := range n.Rig.Procs() {
		if p.Paused() {
			if err := p.Resume(); err != nil {
				errList = append(errList, err.Error())
			}
		}
		if p.Role == rig.RoleManager {
			if err := p.SetClockOffset(0); err != nil {
				errList = append(errList, err.Error())
			}
			if err := p.FreeDisk(); err != nil {
				errList = append(errList, err.Error())
			}
		}
	}
	if err := n.restartExited(); err != nil {
		errList = append(errList, err.Error())
	}
	if len(errList) > 0 {
		return fmt.Errorf("heal all: %s", strings.Join(errList, "; "))
	}
	return nil
}

func (n *Nemesis) restartExited() error {
	for _, p := range n.Rig.Procs() {
		if p.Exited() {
			if err := p.Restart(); err != nil {
				return err
			}
		}
	}
	return nil
}

// noteCrashes records processes that exited although the fault was not
// meant to end them.
func (n *Nemesis) noteCrashes(dies []*rig.Proc) {
	for _, p := range n.Rig.Procs() {
		if !p.Exited() || contains(dies, p) {
			continue
		}
		n.Crashes = append(n.Crashes, fmt.Sprintf("%s exited (%v); log tail:\n%s", p.Name, p.ExitErr(), tail(p.LogPath(), 40)))
	}
}

func contains(ps []*rig.Proc, p *rig.Proc) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// probe writes the probe group through a manager not in hit; it reports
// whether the write was acknowledged.
func (n *Nemesis) probe(ctx context.Context, hit []*rig.Proc) bool {
	var ms []*rig.Proc
	for _, m := range n.Rig.Managers {
		if !contains(hit, m) {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return false
	}
	n.probeN++
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	res := n.API.Do(cctx, ms[n.Rand.IntN(len(ms))].API, "PUT", "/security_groups/"+n.Probe+".json",
		url.Values{"description": {fmt.Sprintf("probe-%d", n.probeN)}}, Account)
	return res.Outcome(true) == OK
}

func (n *Nemesis) leader(ctx context.Context) (*rig.Proc, error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return n.Rig.Leader(cctx, n.HTTP)
}

func (n *Nemesis) pick(ps []*rig.Proc) *rig.Proc { return ps[n.Rand.IntN(len(ps))] }

func (n *Nemesis) others(l *rig.Proc) []*rig.Proc {
	var out []*rig.Proc
	for _, m := range n.Rig.Managers {
		if m != l {
			out = append(out, m)
		}
	}
	return out
}

// inject puts a fault of kind in place; l is the current leader.
func (n *Nemesis) inject(ctx context.Context, kind string, l *rig.Proc) (*injected, error) {
	restart := func(p *rig.Proc) func(context.Context) error {
		return func(context.Context) error { return p.Restart() }
	}
	switch kind {
	case "kill-leader", "kill-follower", "kill-agent":
		var p *rig.Proc
		switch kind {
		case "kill-leader":
			p = l
		case "kill-follower":
			p = n.pick(n.others(l))
		default:
			p = n.pick(append(append([]*rig.Proc{}, n.Rig.Schedulers...), n.Rig.Hvas...))
		}
		p.Kill()
		if n.OnKill != nil {
			n.OnKill(p)
		}
		inj := &injected{target: p.Name, heal: restart(p), dies: []*rig.Proc{p}}
		if p.Role == rig.RoleManager {
			inj.hit = []*rig.Proc{p}
		}
		return inj, nil

	case "pause-leader", "pause-any":
		p := l
		if kind == "pause-any" {
			p = n.pick(n.Rig.Procs())
		}
		if err := p.Pause(); err != nil {
			return nil, err
		}
		inj := &injected{target: p.Name, heal: func(context.Context) error { return p.Resume() }}
		switch p.Role {
		case rig.RoleManager:
			inj.hit = []*rig.Proc{p}
		case rig.RoleHva:
			inj.cut = []*rig.Proc{p}
		}
		return inj, nil

	case "partition-leader":
		// The leader, and sometimes an agent with it, against the rest.
		minority := []*rig.Host{l.Host}
		var rest []*rig.Host
		agents := append(append([]*rig.Proc{}, n.Rig.Schedulers...), n.Rig.Hvas...)
		with := agents[n.Rand.IntN(len(agents))]
		withAgent := n.Rand.IntN(2) == 0
		for _, h := range n.Rig.Hosts {
			switch {
			case h == l.Host:
			case withAgent && h == with.Host:
				minority = append(minority, h)
			default:
				rest = append(rest, h)
			}
		}
		if err := n.Rig.Partition(ctx, minority, rest); err != nil {
			return nil, err
		}
		inj := &injected{target: hostNames(minority) + " | rest", heal: n.Rig.Heal, hit: []*rig.Proc{l}}
		if withAgent && with.Role == rig.RoleHva {
			inj.cut = []*rig.Proc{with}
		}
		return inj, nil

	case "partition-random":
		hosts := append([]*rig.Host{}, n.Rig.Hosts...)
		n.Rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
		cut := 1 + n.Rand.IntN(len(hosts)-1)
		a, b := hosts[:cut], hosts[cut:]
		if err := n.Rig.Partition(ctx, a, b); err != nil {
			return nil, err
		}
		// The managers on the side without a majority cannot write.
		var hit []*rig.Proc
		inA := 0
		for _, m := range n.Rig.Managers {
			if containsHost(a, m.Host) {
				inA++
			}
		}
		aLeads := 2*inA > len(n.Rig.Managers)
		for _, m := range n.Rig.Managers {
			if containsHost(a, m.Host) != aLeads {
				hit = append(hit, m)
			}
		}
		var away []*rig.Proc
		for _, p := range n.Rig.Hvas {
			if containsHost(a, p.Host) != aLeads {
				away = append(away, p)
			}
		}
		return &injected{target: hostNames(a) + " | " + hostNames(b), heal: n.Rig.Heal, hit: hit, cut: away}, nil

	case "isolate-host":
		h := n.Rig.Hosts[n.Rand.IntN(len(n.Rig.Hosts))]
		if err := n.Rig.Isolate(ctx, h); err != nil {
			return nil, err
		}
		inj := &injected{target: h.Name, heal: n.Rig.Heal}
		for _, m := range n.Rig.Managers {
			if m.Host == h {
				inj.hit = []*rig.Proc{m}
			}
		}
		for _, p := range n.Rig.Hvas {
			if p.Host == h {
				inj.cut = []*rig.Proc{p}
			}
		}
		return inj, nil

	case "oneway-leader":
		out := n.Rand.IntN(2) == 0
		for _, m := range n.others(l) {
			from, to := l.Host, m.Host
			if !out {
				from, to = to, from
			}
			if err := n.Rig.DropOneWay(ctx, from, to); err != nil {
				return nil, err
			}
		}
		target := l.Name + " -> managers"
		if !out {
			target = "managers -> " + l.Name
		}
		return &injected{target: target, heal: n.Rig.Heal, hit: []*rig.Proc{l}}, nil

	case "clock-jump":
		p := l
		if n.Rand.IntN(2) == 0 {
			p = n.pick(n.Rig.Managers)
		}
		offsets := []time.Duration{45 * time.Second, -45 * time.Second, 10 * time.Minute, -10 * time.Minute, 2 * time.Hour}
		d := offsets[n.Rand.IntN(len(offsets))]
		if err := p.SetClockOffset(d); err != nil {
			return nil, err
		}
		return &injected{target: fmt.Sprintf("%s %+v", p.Name, d),
			heal: func(context.Context) error { return p.SetClockOffset(0) }}, nil

	case "disk-full":
		p := l
		if n.Rand.IntN(2) == 0 {
			p = n.pick(n.Rig.Managers)
		}
		if err := p.FillDisk(); err != nil {
			return nil, err
		}
		// A manager that cannot write its state stops (state: FSM), by design.
		return &injected{target: p.Name, heal: func(context.Context) error { return p.FreeDisk() },
			hit: []*rig.Proc{p}, dies: []*rig.Proc{p}}, nil
	}
	return nil, fmt.Errorf("unknown fault %q", kind)
}

func hostNames(hs []*rig.Host) string {
	var names []string
	for _, h := range hs {
		names = append(names, h.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func containsHost(hs []*rig.Host, h *rig.Host) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}
