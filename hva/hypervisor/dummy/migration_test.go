package dummy_test

import (
	"context"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/hva/hypervisor/hypervisortest"
)

func TestMigrationConformance(t *testing.T) {
	hypervisortest.RunMigration(t, func(t *testing.T) (src, dst hypervisortest.MigratingHypervisor) {
		return newDummy(t, nil), newDummy(t, nil)
	}, nil)
}

func TestIncomingBeyondCapacity(t *testing.T) {
	dst := newDummy(t, func(c *dummy.Config) { c.CPUCores = 2 })
	ctx := context.Background()
	_, err := dst.Incoming(ctx, hypervisor.Spec{ID: "i-big", CPUCores: 3, MemoryMB: 64})
	if !errs.Is(err, errs.OutOfHostCapacity) {
		t.Fatalf("Incoming beyond capacity = %v, want OutOfHostCapacity", err)
	}
	if _, err := dst.Get(ctx, "i-big"); !errs.Is(err, errs.NotFound) {
		t.Fatalf("refused incoming domain is defined: %v", err)
	}
}

func TestMigrateOutInjectedError(t *testing.T) {
	src, dst := newDummy(t, nil), newDummy(t, nil)
	ctx := context.Background()
	spec := hypervisor.Spec{ID: "i-inj", CPUCores: 1, MemoryMB: 64}
	if err := src.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	target, err := dst.Incoming(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	src.InjectError(dummy.OpMigrate, errs.New(errs.Internal, "injected"))
	if err := src.MigrateOut(ctx, spec.ID, target); err == nil {
		t.Fatal("MigrateOut with an injected error succeeded")
	}
	if d, _ := src.Get(ctx, spec.ID); d.State != hypervisor.Running {
		t.Fatalf("source after a failed migration is %s", d.State)
	}
	src.InjectError(dummy.OpMigrate, nil)
	if err := src.MigrateOut(ctx, spec.ID, target); err != nil {
		t.Fatalf("MigrateOut after the error cleared = %v", err)
	}
}
