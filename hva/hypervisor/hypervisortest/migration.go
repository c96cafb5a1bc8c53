package hypervisortest

import (
	"context"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// MigratingHypervisor is a driver that can live-migrate.
type MigratingHypervisor interface {
	hypervisor.Hypervisor
	hypervisor.Migrator
}

// RunMigration is the conformance suite of hypervisor.Migrator: newPair
// returns a source and a destination host for one subtest, each with room
// for 2 domains of spec(id) (default 1 core, 64 MiB).
func RunMigration(t *testing.T, newPair func(t *testing.T) (src, dst MigratingHypervisor), spec func(id string) hypervisor.Spec) {
	if spec == nil {
		spec = func(id string) hypervisor.Spec { return hypervisor.Spec{ID: id, CPUCores: 1, MemoryMB: 64} }
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, p *pair)
	}{
		{"Migrate", testMigrate},
		{"IncomingIdempotent", testIncomingIdempotent},
		{"IncomingOfRunningDomain", testIncomingOfRunning},
		{"DestinationGaveUp", testDestinationGaveUp},
		{"SourceNotRunning", testSourceNotRunning},
		{"WaitingDomainDoesNotStart", testWaitingDoesNotStart},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst := newPair(t)
			p := &pair{t: t, src: src, dst: dst, spec: spec}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				for _, h := range []hypervisor.Hypervisor{src, dst} {
					doms, _ := h.List(ctx)
					for _, d := range doms {
						_ = h.Stop(ctx, d.ID, true)
						_ = h.Undefine(ctx, d.ID)
					}
				}
			})
			c.fn(t, p)
		})
	}
}

type pair struct {
	t        *testing.T
	src, dst MigratingHypervisor
	spec     func(id string) hypervisor.Spec
}

// running defines and starts id on the source.
func (p *pair) running(id string) hypervisor.Spec {
	p.t.Helper()
	ctx := ctxT(p.t)
	spec := p.spec(id)
	if err := p.src.Define(ctx, spec); err != nil {
		p.t.Fatalf("Define(%s) = %v", id, err)
	}
	if err := p.src.Start(ctx, id); err != nil {
		p.t.Fatalf("Start(%s) = %v", id, err)
	}
	return spec
}

func stateOf(t *testing.T, h hypervisor.Hypervisor, id string) hypervisor.State {
	t.Helper()
	d, err := h.Get(ctxT(t), id)
	if errs.Is(err, errs.NotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("Get(%s) = %v", id, err)
	}
	return d.State
}

func wantStates(t *testing.T, p *pair, id string, src, dst hypervisor.State) {
	t.Helper()
	if got := stateOf(t, p.src, id); got != src {
		t.Errorf("source domain %s is %q, want %q", id, got, src)
	}
	if got := stateOf(t, p.dst, id); got != dst {
		t.Errorf("destination domain %s is %q, want %q", id, got, dst)
	}
}

func testMigrate(t *testing.T, p *pair) {
	ctx := ctxT(t)
	const id = "i-hvtmig1"
	spec := p.running(id)
	target, err := p.dst.Incoming(ctx, spec)
	if err != nil {
		t.Fatalf("Incoming = %v", err)
	}
	wantStates(t, p, id, hypervisor.Running, hypervisor.Paused)
	if err := p.src.MigrateOut(ctx, id, target); err != nil {
		t.Fatalf("MigrateOut = %v", err)
	}
	wantStates(t, p, id, hypervisor.Shutoff, hypervisor.Running)
	// The destination's capacity holds it now.
	c, err := p.dst.Capacity(ctx)
	if err != nil || c.UsedCPUCores != spec.CPUCores {
		t.Errorf("destination capacity = %+v, %v", c, err)
	}
	// Done: a second stream to the same target finds nobody waiting.
	if err := p.src.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := p.src.MigrateOut(ctx, id, target); err == nil {
		t.Error("a second MigrateOut to a finished target succeeded")
	}
	wantStates(t, p, id, hypervisor.Running, hypervisor.Running)
}

func testIncomingIdempotent(t *testing.T, p *pair) {
	ctx := ctxT(t)
	const id = "i-hvtmig2"
	spec := p.spec(id)
	a, err := p.dst.Incoming(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.dst.Incoming(ctx, spec)
	if err != nil || b != a {
		t.Fatalf("second Incoming = %v, %v; want %v", b, err, a)
	}
}

func testIncomingOfRunning(t *testing.T, p *pair) {
	ctx := ctxT(t)
	const id = "i-hvtmig3"
	spec := p.running(id)
	_, err := p.src.Incoming(ctx, spec)
	wantKind(t, "Incoming of a domain running here", err, errs.InvalidInstanceState)
	wantStates(t, p, id, hypervisor.Running, "")
}

func testDestinationGaveUp(t *testing.T, p *pair) {
	ctx := ctxT(t)
	const id = "i-hvtmig4"
	spec := p.running(id)
	target, err := p.dst.Incoming(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.dst.Stop(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if err := p.dst.Undefine(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := p.src.MigrateOut(ctx, id, target); err == nil {
		t.Fatal("MigrateOut to a destination that gave up succeeded")
	}
	// The source keeps running it.
	wantStates(t, p, id, hypervisor.Running, "")
}

func testSourceNotRunning(t *testing.T, p *pair) {
	ctx := ctxT(t)
	const id = "i-hvtmig5"
	spec := p.spec(id)
	if err := p.src.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	target, err := p.dst.Incoming(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, "MigrateOut of a shut-off domain", p.src.MigrateOut(ctx, id, target), errs.InvalidInstanceState)
	wantKind(t, "MigrateOut of an absent domain", p.src.MigrateOut(ctx, "i-hvtnone", target), errs.NotFound)
	wantStates(t, p, id, hypervisor.Shutoff, hypervisor.Paused)
}

func testWaitingDoesNotStart(t *testing.T, p *pair) {
	ctx := ctxT(t)
	const id = "i-hvtmig6"
	if _, err := p.dst.Incoming(ctx, p.spec(id)); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "Start of a waiting domain", p.dst.Start(ctx, id), errs.InvalidInstanceState)
	wantKind(t, "Undefine of a waiting domain", p.dst.Undefine(ctx, id), errs.InvalidInstanceState)
	if err := p.dst.Stop(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	if err := p.dst.Undefine(ctx, id); err != nil {
		t.Fatal(err)
	}
}
