// Package dummy is an in-memory hypervisor: a host with a configured number
// of cores and memory whose domains change state like real ones (an ACPI
// power-down takes effect after a delay), with hooks for tests to inject
// errors and to make a domain die. It is the driver of the quick start and
// of every test that does not need a real hypervisor.
package dummy

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// Op names a driver operation, for InjectError and Calls.
type Op string

// Operations.
const (
	OpDefine     Op = "define"
	OpStart      Op = "start"
	OpStop       Op = "stop"
	OpReboot     Op = "reboot"
	OpShutdown   Op = "shutdown"
	OpUndefine   Op = "undefine"
	OpGet        Op = "get"
	OpList       Op = "list"
	OpCapacity   Op = "capacity"
	OpIncoming   Op = "incoming"
	OpMigrate    Op = "migrate"
	OpAttachDisk Op = "attach_disk"
	OpDetachDisk Op = "detach_disk"
	OpDisks      Op = "disks"
)

// Config is the simulated host.
type Config struct {
	CPUCores int
	MemoryMB int64
	// ShutdownDelay is how long a guest takes to act on an ACPI power-down:
	// 0 = at once, negative = never (a guest that ignores ACPI).
	ShutdownDelay time.Duration
	// MigrationHost is the address incoming migrations listen on
	// (default 127.0.0.1: the dummies of one machine).
	MigrationHost string
}

// DefaultConfig is a small host whose guests shut down in half a second.
func DefaultConfig() Config {
	return Config{CPUCores: 8, MemoryMB: 16384, ShutdownDelay: 500 * time.Millisecond}
}

// Validate checks the config.
func (c Config) Validate() error {
	if c.CPUCores < 1 || c.MemoryMB < 1 {
		return errs.New(errs.InvalidParameter, "dummy hypervisor: %d cores and %d MiB, want at least 1 of each",
			c.CPUCores, c.MemoryMB)
	}
	return nil
}

// Call is one mutating operation the driver was asked for (recorded before
// an injected error is returned, so failed attempts show too).
type Call struct {
	Op    Op
	ID    string
	Force bool // Stop only
}

// Driver is the dummy hypervisor. It is safe for concurrent use.
type Driver struct {
	cfg Config

	mu      sync.Mutex
	domains map[string]*domain
	inject  map[Op]error
	calls   []Call
	// incoming are the domains waiting for a migration stream (migration.go).
	incoming map[string]*waiter
}

type domain struct {
	spec  hypervisor.Spec
	state hypervisor.State
	boots int
	// gen counts state changes; a pending ACPI power-down only acts on the
	// generation it was requested in.
	gen uint64
	// changed is closed (and replaced) on every state change, waking Stop
	// calls that wait for a graceful shutdown.
	changed chan struct{}
}

// New returns a dummy host with no domains.
func New(cfg Config) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MigrationHost == "" {
		cfg.MigrationHost = "127.0.0.1"
	}
	return &Driver{cfg: cfg, domains: map[string]*domain{}, inject: map[Op]error{}, incoming: map[string]*waiter{}}, nil
}

var _ hypervisor.Hypervisor = (*Driver)(nil)

// InjectError makes every later call of op fail with err (nil clears it).
func (d *Driver) InjectError(op Op, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		delete(d.inject, op)
		return
	}
	d.inject[op] = err
}

// Calls returns the mutating operations asked for so far, in order.
func (d *Driver) Calls() []Call {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// Boots is how many times the domain was booted (starts and reboots).
func (d *Driver) Boots(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if dom := d.domains[id]; dom != nil {
		return dom.boots
	}
	return 0
}

// Kill simulates the domain's process dying: it becomes shut off.
func (d *Driver) Kill(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.domains[id]
	if dom == nil {
		return hypervisor.NotFound(id)
	}
	d.endIncomingLocked(id)
	dom.setState(hypervisor.Shutoff)
	return nil
}

// Pause simulates the hypervisor pausing a running domain (e.g. on an I/O error).
func (d *Driver) Pause(id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.domains[id]
	if dom == nil {
		return hypervisor.NotFound(id)
	}
	if dom.state != hypervisor.Running {
		return hypervisor.WrongState(id, dom.state, "pause")
	}
	dom.setState(hypervisor.Paused)
	return nil
}

func (dom *domain) setState(st hypervisor.State) {
	dom.state = st
	dom.gen++
	close(dom.changed)
	dom.changed = make(chan struct{})
}

// begin is the common prologue: the context check, the call record and the
// injected error. It is called with d.mu held.
func (d *Driver) begin(ctx context.Context, c Call) error {
	if err := hypervisor.CtxErr(ctx, "dummy "+string(c.Op)); err != nil {
		return err
	}
	switch c.Op {
	case OpGet, OpList, OpCapacity, OpDisks:
	default:
		d.calls = append(d.calls, c)
	}
	return d.inject[c.Op]
}

// Define implements hypervisor.Hypervisor; it refuses a domain that would
// take the host beyond its cores or memory.
func (d *Driver) Define(ctx context.Context, spec hypervisor.Spec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.begin(ctx, Call{Op: OpDefine, ID: spec.ID}); err != nil {
		return err
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	cores, mem := d.usedLocked(spec.ID)
	if cores+spec.CPUCores > d.cfg.CPUCores || mem+spec.MemoryMB > d.cfg.MemoryMB {
		return errs.New(errs.OutOfHostCapacity,
			"domain %s needs %d cores and %d MiB; the host has %d of %d cores and %d of %d MiB free",
			spec.ID, spec.CPUCores, spec.MemoryMB, d.cfg.CPUCores-cores, d.cfg.CPUCores, d.cfg.MemoryMB-mem, d.cfg.MemoryMB)
	}
	spec.Disks = slices.Clone(spec.Disks)
	spec.NICs = slices.Clone(spec.NICs)
	if dom := d.domains[spec.ID]; dom != nil {
		dom.spec = spec
		dom.assignTargets()
		return nil
	}
	dom := &domain{spec: spec, state: hypervisor.Shutoff, changed: make(chan struct{})}
	dom.assignTargets()
	d.domains[spec.ID] = dom
	return nil
}

// usedLocked sums the defined domains other than except.
func (d *Driver) usedLocked(except string) (int, int64) {
	var cores int
	var mem int64
	for id, dom := range d.domains {
		if id != except {
			cores += dom.spec.CPUCores
			mem += dom.spec.MemoryMB
		}
	}
	return cores, mem
}

// lookupLocked runs the prologue and finds the domain.
func (d *Driver) lookupLocked(ctx context.Context, c Call) (*domain, error) {
	if err := d.begin(ctx, c); err != nil {
		return nil, err
	}
	dom := d.domains[c.ID]
	if dom == nil {
		return nil, hypervisor.NotFound(c.ID)
	}
	return dom, nil
}

// Start implements hypervisor.Hypervisor. A paused domain is resumed.
func (d *Driver) Start(ctx context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.lookupLocked(ctx, Call{Op: OpStart, ID: id})
	if err != nil {
		return err
	}
	if d.incoming[id] != nil {
		// QEMU refuses to run an -incoming guest before its state arrived.
		return hypervisor.WrongState(id, dom.state, "start a domain waiting for its migration")
	}
	switch dom.state {
	case hypervisor.Shutoff:
		dom.boots++
		dom.setState(hypervisor.Running)
	case hypervisor.Paused:
		dom.setState(hypervisor.Running)
	}
	return nil
}

// Stop implements hypervisor.Hypervisor.
func (d *Driver) Stop(ctx context.Context, id string, force bool) error {
	d.mu.Lock()
	dom, err := d.lookupLocked(ctx, Call{Op: OpStop, ID: id, Force: force})
	if err != nil {
		d.mu.Unlock()
		return err
	}
	if dom.state == hypervisor.Shutoff {
		d.mu.Unlock()
		return nil
	}
	if force {
		d.endIncomingLocked(id)
		dom.setState(hypervisor.Shutoff)
		d.mu.Unlock()
		return nil
	}
	d.requestShutdownLocked(id, dom)
	for {
		if dom.state == hypervisor.Shutoff || d.domains[id] != dom {
			d.mu.Unlock()
			return nil
		}
		changed := dom.changed
		d.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return errs.Wrap(errs.Timeout, ctx.Err(), "domain "+id+" did not shut down")
		}
		d.mu.Lock()
	}
}

// Reboot implements hypervisor.Hypervisor.
func (d *Driver) Reboot(ctx context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.lookupLocked(ctx, Call{Op: OpReboot, ID: id})
	if err != nil {
		return err
	}
	if dom.state != hypervisor.Running {
		return hypervisor.WrongState(id, dom.state, "reboot")
	}
	dom.boots++
	// A reset cancels a pending ACPI power-down, as on real hardware.
	dom.setState(hypervisor.Running)
	return nil
}

// Shutdown implements hypervisor.Hypervisor.
func (d *Driver) Shutdown(ctx context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.lookupLocked(ctx, Call{Op: OpShutdown, ID: id})
	if err != nil {
		return err
	}
	if dom.state != hypervisor.Shutoff {
		d.requestShutdownLocked(id, dom)
	}
	return nil
}

// requestShutdownLocked makes the guest power off after the configured
// delay, unless its state changes first (a reset, a forced stop, a kill).
func (d *Driver) requestShutdownLocked(id string, dom *domain) {
	switch {
	case d.cfg.ShutdownDelay < 0 || dom.state == hypervisor.Paused:
		// The guest ignores ACPI, or cannot act on it while paused.
	case d.cfg.ShutdownDelay == 0:
		dom.setState(hypervisor.Shutoff)
	default:
		gen := dom.gen
		time.AfterFunc(d.cfg.ShutdownDelay, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.domains[id] == dom && dom.gen == gen && dom.state == hypervisor.Running {
				dom.setState(hypervisor.Shutoff)
			}
		})
	}
}

// Undefine implements hypervisor.Hypervisor.
func (d *Driver) Undefine(ctx context.Context, id string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.lookupLocked(ctx, Call{Op: OpUndefine, ID: id})
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if dom.state.Alive() {
		return hypervisor.WrongState(id, dom.state, "undefine")
	}
	d.endIncomingLocked(id)
	delete(d.domains, id)
	dom.setState(hypervisor.Shutoff) // wakes waiters
	return nil
}

// Get implements hypervisor.Hypervisor.
func (d *Driver) Get(ctx context.Context, id string) (hypervisor.Domain, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dom, err := d.lookupLocked(ctx, Call{Op: OpGet, ID: id})
	if err != nil {
		return hypervisor.Domain{}, err
	}
	return dom.view(), nil
}

func (dom *domain) view() hypervisor.Domain {
	return hypervisor.Domain{ID: dom.spec.ID, State: dom.state, CPUCores: dom.spec.CPUCores, MemoryMB: dom.spec.MemoryMB}
}

// List implements hypervisor.Hypervisor.
func (d *Driver) List(ctx context.Context) ([]hypervisor.Domain, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.begin(ctx, Call{Op: OpList}); err != nil {
		return nil, err
	}
	out := make([]hypervisor.Domain, 0, len(d.domains))
	for _, dom := range d.domains {
		out = append(out, dom.view())
	}
	slices.SortFunc(out, func(a, b hypervisor.Domain) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Capacity implements hypervisor.Hypervisor.
func (d *Driver) Capacity(ctx context.Context) (hypervisor.Capacity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.begin(ctx, Call{Op: OpCapacity}); err != nil {
		return hypervisor.Capacity{}, err
	}
	cores, mem := d.usedLocked("")
	return hypervisor.Capacity{CPUCores: d.cfg.CPUCores, MemoryMB: d.cfg.MemoryMB, UsedCPUCores: cores, UsedMemoryMB: mem}, nil
}
