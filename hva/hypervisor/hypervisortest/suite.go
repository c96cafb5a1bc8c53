// Package hypervisortest is the conformance suite of hypervisor drivers
// (house style §10.3): the dummy's unit tests and the real drivers'
// integration tests run the same cases, so the dummy cannot drift from what
// the handlers may rely on.
package hypervisortest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// Options tune the suite to a driver.
type Options struct {
	// New returns a driver for one subtest (each subtest gets its own).
	New func(t *testing.T) hypervisor.Hypervisor
	// Spec builds the spec of a test domain. Default: 1 core, 64 MiB, no
	// disks or NICs (a real driver boots such a domain into its firmware).
	Spec func(id string) hypervisor.Spec
	// ACPISpec builds the spec of a domain whose guest answers an ACPI
	// power-down (GracefulStop, Shutdown): a real driver needs a guest
	// operating system for that. Default: Spec.
	ACPISpec func(t *testing.T, id string) hypervisor.Spec
	// GuestReady, if set, waits after Start until the ACPI guest of domain
	// id listens for the power button: a real guest misses a press that
	// comes while it boots. Shutdown, which presses once, waits for it.
	GuestReady func(t *testing.T, id string)
	// ShutdownTimeout bounds how long a guest may take to act on an ACPI
	// power-down. Default 30s.
	ShutdownTimeout time.Duration
	// IDPrefix goes after "i-" in every domain id, so that suites of
	// several users on one real host do not collide.
	IDPrefix string
	// Concurrent is how many domains the Concurrent case runs at once.
	// Default 8; a real host of TCG guests wants fewer.
	Concurrent int
}

// Run runs the suite with the default options. The host behind newFn must
// have room for 8 domains of 1 core and 64 MiB each.
func Run(t *testing.T, newFn func(t *testing.T) hypervisor.Hypervisor) {
	RunWith(t, Options{New: newFn})
}

// RunWith runs the suite.
func RunWith(t *testing.T, o Options) {
	if o.Spec == nil {
		o.Spec = func(id string) hypervisor.Spec { return hypervisor.Spec{ID: id, CPUCores: 1, MemoryMB: 64} }
	}
	if o.ACPISpec == nil {
		o.ACPISpec = func(_ *testing.T, id string) hypervisor.Spec { return o.Spec(id) }
	}
	if o.Concurrent <= 0 {
		o.Concurrent = 8
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"AbsentDomain", testAbsent},
		{"DefineIdempotent", testDefine},
		{"DefineInvalid", testDefineInvalid},
		{"StartStopIdempotent", testStartStop},
		{"GracefulStop", testGracefulStop},
		{"Shutdown", testShutdown},
		{"Reboot", testReboot},
		{"UndefineIdempotent", testUndefine},
		{"ListSorted", testList},
		{"Capacity", testCapacity},
		{"ContextEnded", testContextEnded},
		{"Concurrent", testConcurrent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &suite{t: t, h: o.New(t), opts: o}
			c.fn(t, s)
		})
	}
}

// suite is one subtest's driver and the domains it created (removed at cleanup).
type suite struct {
	t    *testing.T
	h    hypervisor.Hypervisor
	opts Options
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// id is the test domain id name ("i-hvt…") with the configured prefix.
func (s *suite) id(name string) string {
	return "i-" + s.opts.IDPrefix + strings.TrimPrefix(name, "i-")
}

// define defines a fresh test domain and removes it when the test ends.
func (s *suite) define(id string) hypervisor.Spec {
	s.t.Helper()
	return s.defineSpec(s.opts.Spec(id))
}

// defineACPI defines a test domain whose guest answers ACPI.
func (s *suite) defineACPI(id string) hypervisor.Spec {
	s.t.Helper()
	return s.defineSpec(s.opts.ACPISpec(s.t, id))
}

func (s *suite) defineSpec(spec hypervisor.Spec) hypervisor.Spec {
	s.t.Helper()
	id := spec.ID
	if err := s.h.Define(ctxT(s.t), spec); err != nil {
		s.t.Fatalf("Define(%s) = %v", id, err)
	}
	s.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.h.Stop(ctx, id, true)
		_ = s.h.Undefine(ctx, id)
	})
	return spec
}

func (s *suite) state(id string) hypervisor.State {
	s.t.Helper()
	d, err := s.h.Get(ctxT(s.t), id)
	if err != nil {
		s.t.Fatalf("Get(%s) = %v", id, err)
	}
	return d.State
}

func (s *suite) wantState(id string, want hypervisor.State) {
	s.t.Helper()
	if got := s.state(id); got != want {
		s.t.Fatalf("domain %s is %s, want %s", id, got, want)
	}
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(err, k) {
		t.Errorf("%s = %v, want %s", what, err, k.Name())
	}
}

func testAbsent(t *testing.T, s *suite) {
	ctx := ctxT(t)
	id := s.id("i-hvtabsent")
	_, err := s.h.Get(ctx, id)
	wantKind(t, "Get(absent)", err, errs.NotFound)
	wantKind(t, "Start(absent)", s.h.Start(ctx, id), errs.NotFound)
	wantKind(t, "Stop(absent, force)", s.h.Stop(ctx, id, true), errs.NotFound)
	wantKind(t, "Stop(absent)", s.h.Stop(ctx, id, false), errs.NotFound)
	wantKind(t, "Reboot(absent)", s.h.Reboot(ctx, id), errs.NotFound)
	wantKind(t, "Shutdown(absent)", s.h.Shutdown(ctx, id), errs.NotFound)
	if err := s.h.Undefine(ctx, id); err != nil {
		t.Errorf("Undefine(absent) = %v, want nil", err)
	}
}

func testDefine(t *testing.T, s *suite) {
	ctx := ctxT(t)
	id := s.id("i-hvtdefine")
	spec := s.define(id)
	if err := s.h.Define(ctx, spec); err != nil {
		t.Fatalf("Define(%s) again = %v, want nil", id, err)
	}
	d, err := s.h.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get = %v", err)
	}
	want := hypervisor.Domain{ID: id, State: hypervisor.Shutoff, CPUCores: spec.CPUCores, MemoryMB: spec.MemoryMB}
	if d != want {
		t.Errorf("Get = %+v, want %+v", d, want)
	}
	n := 0
	list, err := s.h.List(ctx)
	if err != nil {
		t.Fatalf("List = %v", err)
	}
	for _, d := range list {
		if d.ID == id {
			n++
		}
	}
	if n != 1 {
		t.Errorf("List has %s %d times after two Defines, want once", id, n)
	}
	// A redefinition replaces the definition.
	spec.MemoryMB *= 2
	if err := s.h.Define(ctx, spec); err != nil {
		t.Fatalf("Define(bigger) = %v", err)
	}
	if d, _ := s.h.Get(ctx, id); d.MemoryMB != spec.MemoryMB || d.State != hypervisor.Shutoff {
		t.Errorf("after redefinition Get = %+v, want %d MiB, shutoff", d, spec.MemoryMB)
	}
}

func testDefineInvalid(t *testing.T, s *suite) {
	ctx := ctxT(t)
	id := s.id("i-hvtinvalid")
	for name, spec := range map[string]hypervisor.Spec{
		"no id":     {CPUCores: 1, MemoryMB: 64},
		"no cores":  {ID: id, MemoryMB: 64},
		"no memory": {ID: id, CPUCores: 1},
	} {
		if err := s.h.Define(ctx, spec); err == nil {
			t.Errorf("Define(%s) = nil, want an error", name)
		}
	}
	if _, err := s.h.Get(ctx, id); !errs.Is(err, errs.NotFound) {
		t.Errorf("Get after invalid Defines = %v, want NotFound", err)
	}
}

func testStartStop(t *testing.T, s *suite) {
	ctx := ctxT(t)
	id := s.id("i-hvtstartstop")
	s.define(id)
	for i := range 2 {
		if err := s.h.Start(ctx, id); err != nil {
			t.Fatalf("Start #%d = %v", i+1, err)
		}
		s.wantState(id, hypervisor.Running)
	}
	for i := range 2 {
		if err := s.h.Stop(ctx, id, true); err != nil {
			t.Fatalf("Stop(force) #%d = %v", i+1, err)
		}
		s.wantState(id, hypervisor.Shutoff)
	}
	if err := s.h.Stop(ctx, id, false); err != nil {
		t.Errorf("Stop(graceful) of a shut-off domain = %v, want nil", err)
	}
	// A stopped domain boots again.
	if err := s.h.Start(ctx, id); err != nil {
		t.Fatalf("Start after Stop = %v", err)
	}
	s.wantState(id, hypervisor.Running)
}

func testGracefulStop(t *testing.T, s *suite) {
	id := s.id("i-hvtgraceful")
	s.defineACPI(id)
	if err := s.h.Start(ctxT(t), id); err != nil {
		t.Fatalf("Start = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	if err := s.h.Stop(ctx, id, false); err != nil {
		t.Fatalf("Stop(graceful) = %v", err)
	}
	s.wantState(id, hypervisor.Shutoff)
}

func testShutdown(t *testing.T, s *suite) {
	ctx := ctxT(t)
	id := s.id("i-hvtshutdown")
	s.defineACPI(id)
	if err := s.h.Shutdown(ctx, id); err != nil {
		t.Errorf("Shutdown(shut off) = %v, want nil", err)
	}
	if err := s.h.Start(ctx, id); err != nil {
		t.Fatalf("Start = %v", err)
	}
	if s.opts.GuestReady != nil {
		s.opts.GuestReady(t, id)
	}
	if err := s.h.Shutdown(ctx, id); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	testutil.WaitFor(t, s.opts.ShutdownTimeout, func() error {
		if st := s.state(id); st != hypervisor.Shutoff {
			return fmt.Errorf("domain is %s after an ACPI power-down", st)
		}
		return nil
	})
}

func testReboot(t *testing.T, s *suite) {
	ctx := ctxT(t)
	id := s.id("i-hvtreboot")
	s.define(id)
	wantKind(t, "Reboot(shut off)", s.h.Reboot(ctx, id), errs.InvalidInstanceState)
	if err := s.h.Start(ctx, id); err != nil {
		t.Fatalf("Start = %v", err)
	}
	if err := s.h.Reboot(ctx, id); err != nil {
		t.Fatalf("Reboot = %v", err)
	}
	s.wantState(id, hypervisor.Running)
}

func testUndefine(t *testing.T, s *suite) {
	ctx := ctxT(t)
	id := s.id("i-hvtundefine")
	s.define(id)
	if err := s.h.Start(ctx, id); err != nil {
		t.Fatalf("Start = %v", err)
	}
	wantKind(t, "Undefine(running)", s.h.Undefine(ctx, id), errs.InvalidInstanceState)
	s.wantState(id, hypervisor.Running)
	if err := s.h.Stop(ctx, id, true); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	for i := range 2 {
		if err := s.h.Undefine(ctx, id); err != nil {
			t.Fatalf("Undefine #%d = %v", i+1, err)
		}
	}
	if _, err := s.h.Get(ctx, id); !errs.Is(err, errs.NotFound) {
		t.Errorf("Get after Undefine = %v, want NotFound", err)
	}
}

func testList(t *testing.T, s *suite) {
	ctx := ctxT(t)
	l1, l2, l3 := s.id("i-hvtlist1"), s.id("i-hvtlist2"), s.id("i-hvtlist3")
	ids := []string{l2, l3, l1}
	for _, id := range ids {
		s.define(id)
	}
	if err := s.h.Start(ctx, l3); err != nil {
		t.Fatalf("Start = %v", err)
	}
	list, err := s.h.List(ctx)
	if err != nil {
		t.Fatalf("List = %v", err)
	}
	var got []string
	states := map[string]hypervisor.State{}
	for _, d := range list {
		if slices.Contains(ids, d.ID) {
			got = append(got, d.ID)
			states[d.ID] = d.State
		}
	}
	if want := []string{l1, l2, l3}; !slices.Equal(got, want) {
		t.Errorf("List ids = %v, want %v (sorted)", got, want)
	}
	if !slices.IsSortedFunc(list, func(a, b hypervisor.Domain) int { return cmp.Compare(a.ID, b.ID) }) {
		t.Errorf("List is not sorted by id")
	}
	if states[l3] != hypervisor.Running || states[l1] != hypervisor.Shutoff {
		t.Errorf("List states = %v, want %s running, the others shutoff", states, l3)
	}
}

func testCapacity(t *testing.T, s *suite) {
	ctx := ctxT(t)
	before, err := s.h.Capacity(ctx)
	if err != nil {
		t.Fatalf("Capacity = %v", err)
	}
	if before.CPUCores < 1 || before.MemoryMB < 1 || before.UsedCPUCores > before.CPUCores {
		t.Errorf("Capacity = %+v, want an offering of at least 1 core and 1 MiB", before)
	}
	id := s.id("i-hvtcapacity")
	spec := s.define(id)
	after, err := s.h.Capacity(ctx)
	if err != nil {
		t.Fatalf("Capacity = %v", err)
	}
	if after.UsedCPUCores < before.UsedCPUCores+spec.CPUCores || after.UsedMemoryMB < before.UsedMemoryMB+spec.MemoryMB {
		t.Errorf("Capacity after Define = %+v, before %+v: want usage grown by %d cores, %d MiB",
			after, before, spec.CPUCores, spec.MemoryMB)
	}
	if err := s.h.Undefine(ctx, id); err != nil {
		t.Fatalf("Undefine = %v", err)
	}
	if got, _ := s.h.Capacity(ctx); got.UsedCPUCores != before.UsedCPUCores || got.UsedMemoryMB != before.UsedMemoryMB {
		t.Errorf("Capacity after Undefine = %+v, want the usage of before %+v", got, before)
	}
}

func testContextEnded(t *testing.T, s *suite) {
	id := s.id("i-hvtctx")
	spec := s.define(id)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, getErr := s.h.Get(ctx, id)
	_, listErr := s.h.List(ctx)
	_, capErr := s.h.Capacity(ctx)
	for what, err := range map[string]error{
		"Define":   s.h.Define(ctx, spec),
		"Start":    s.h.Start(ctx, id),
		"Stop":     s.h.Stop(ctx, id, true),
		"Reboot":   s.h.Reboot(ctx, id),
		"Shutdown": s.h.Shutdown(ctx, id),
		"Undefine": s.h.Undefine(ctx, id),
		"Get":      getErr,
		"List":     listErr,
		"Capacity": capErr,
	} {
		wantKind(t, what+"(ended ctx)", err, errs.Timeout)
	}
	s.wantState(id, hypervisor.Shutoff)
}

func testConcurrent(t *testing.T, s *suite) {
	n := s.opts.Concurrent
	var wg sync.WaitGroup
	errCh := make(chan error, n)
	for i := range n {
		id := s.id(fmt.Sprintf("i-hvtconc%d", i))
		s.define(id)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, step := range []func() error{
				func() error { return s.h.Start(ctx, id) },
				func() error { return s.h.Reboot(ctx, id) },
				func() error { return s.h.Stop(ctx, id, true) },
				func() error { return s.h.Undefine(ctx, id) },
			} {
				if err := step(); err != nil {
					errCh <- fmt.Errorf("%s: %w", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		t.Error(err)
	}
	list, err := s.h.List(ctxT(t))
	if err != nil {
		t.Fatalf("List = %v", err)
	}
	for _, d := range list {
		for i := range n {
			if d.ID == s.id(fmt.Sprintf("i-hvtconc%d", i)) {
				t.Errorf("domain %s still listed after Undefine", d.ID)
			}
		}
	}
}
