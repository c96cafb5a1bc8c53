package dummy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/hva/hypervisor/hypervisortest"
)

func newDummy(t *testing.T, mod func(*dummy.Config)) *dummy.Driver {
	t.Helper()
	cfg := dummy.Config{CPUCores: 16, MemoryMB: 4096, ShutdownDelay: 20 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	d, err := dummy.New(cfg)
	if err != nil {
		t.Fatalf("dummy.New(%+v) = %v", cfg, err)
	}
	return d
}

func TestConformance(t *testing.T) {
	hypervisortest.Run(t, func(t *testing.T) hypervisor.Hypervisor { return newDummy(t, nil) })
}

func TestConformanceImmediateShutdown(t *testing.T) {
	hypervisortest.Run(t, func(t *testing.T) hypervisor.Hypervisor {
		return newDummy(t, func(c *dummy.Config) { c.ShutdownDelay = 0 })
	})
}

func TestNewRejectsEmptyHost(t *testing.T) {
	for _, cfg := range []dummy.Config{{MemoryMB: 1}, {CPUCores: 1}} {
		if _, err := dummy.New(cfg); !errs.Is(err, errs.InvalidParameter) {
			t.Errorf("New(%+v) = %v, want InvalidParameter", cfg, err)
		}
	}
}

func TestDefineBeyondCapacity(t *testing.T) {
	ctx := context.Background()
	d := newDummy(t, func(c *dummy.Config) { c.CPUCores, c.MemoryMB = 4, 1024 })
	if err := d.Define(ctx, hypervisor.Spec{ID: "i-a", CPUCores: 3, MemoryMB: 512}); err != nil {
		t.Fatalf("Define(i-a) = %v", err)
	}
	for name, spec := range map[string]hypervisor.Spec{
		"too many cores":  {ID: "i-b", CPUCores: 2, MemoryMB: 100},
		"too much memory": {ID: "i-b", CPUCores: 1, MemoryMB: 513},
	} {
		if err := d.Define(ctx, spec); !errs.Is(err, errs.OutOfHostCapacity) {
			t.Errorf("Define(%s) = %v, want OutOfHostCapacity", name, err)
		}
	}
	// What is left fits exactly; a shut-off domain still holds its share.
	if err := d.Define(ctx, hypervisor.Spec{ID: "i-b", CPUCores: 1, MemoryMB: 512}); err != nil {
		t.Errorf("Define(rest) = %v", err)
	}
	// Redefining counts the new size instead of the old one.
	if err := d.Define(ctx, hypervisor.Spec{ID: "i-a", CPUCores: 3, MemoryMB: 512}); err != nil {
		t.Errorf("Define(i-a unchanged) = %v", err)
	}
	if err := d.Define(ctx, hypervisor.Spec{ID: "i-a", CPUCores: 4, MemoryMB: 512}); !errs.Is(err, errs.OutOfHostCapacity) {
		t.Errorf("Define(i-a grown) = %v, want OutOfHostCapacity", err)
	}
	c, _ := d.Capacity(ctx)
	if want := (hypervisor.Capacity{CPUCores: 4, MemoryMB: 1024, UsedCPUCores: 4, UsedMemoryMB: 1024}); c != want {
		t.Errorf("Capacity = %+v, want %+v", c, want)
	}
}

func TestInjectError(t *testing.T) {
	ctx := context.Background()
	d := newDummy(t, nil)
	boom := errors.New("boom")
	d.InjectError(dummy.OpStart, boom)
	if err := d.Define(ctx, hypervisor.Spec{ID: "i-a", CPUCores: 1, MemoryMB: 1}); err != nil {
		t.Fatalf("Define = %v", err)
	}
	if err := d.Start(ctx, "i-a"); !errors.Is(err, boom) {
		t.Fatalf("Start with injected error = %v, want boom", err)
	}
	if dom, _ := d.Get(ctx, "i-a"); dom.State != hypervisor.Shutoff {
		t.Errorf("failed Start changed the state to %s", dom.State)
	}
	d.InjectError(dummy.OpStart, nil)
	if err := d.Start(ctx, "i-a"); err != nil {
		t.Fatalf("Start after clearing = %v", err)
	}
	d.InjectError(dummy.OpList, boom)
	if _, err := d.List(ctx); !errors.Is(err, boom) {
		t.Errorf("List = %v, want boom", err)
	}
	want := []dummy.Call{{Op: dummy.OpDefine, ID: "i-a"}, {Op: dummy.OpStart, ID: "i-a"}, {Op: dummy.OpStart, ID: "i-a"}}
	if got := d.Calls(); !slices.Equal(got, want) {
		t.Errorf("Calls() = %v, want %v (reads are not recorded)", got, want)
	}
}

func TestShutdownTakesTheConfiguredDelay(t *testing.T) {
	ctx := context.Background()
	d := newDummy(t, func(c *dummy.Config) { c.ShutdownDelay = time.Hour })
	_ = d.Define(ctx, hypervisor.Spec{ID: "i-a", CPUCores: 1, MemoryMB: 1})
	_ = d.Start(ctx, "i-a")
	if err := d.Shutdown(ctx, "i-a"); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if dom, _ := d.Get(ctx, "i-a"); dom.State != hypervisor.Running {
		t.Errorf("domain is %s right after Shutdown, want still running for the delay", dom.State)
	}
	// A graceful Stop waits for the guest and gives up with its context.
	sctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if err := d.Stop(sctx, "i-a", false); !errs.Is(err, errs.Timeout) {
		t.Errorf("Stop(graceful) of a slow guest = %v, want Timeout", err)
	}
	if err := d.Stop(ctx, "i-a", true); err != nil {
		t.Fatalf("Stop(force) = %v", err)
	}
	if dom, _ := d.Get(ctx, "i-a"); dom.State != hypervisor.Shutoff {
		t.Errorf("domain is %s after a forced stop", dom.State)
	}
}

func TestIgnoredACPIAndRebootCancelsShutdown(t *testing.T) {
	ctx := context.Background()
	d := newDummy(t, func(c *dummy.Config) { c.ShutdownDelay = -1 })
	_ = d.Define(ctx, hypervisor.Spec{ID: "i-a", CPUCores: 1, MemoryMB: 1})
	_ = d.Start(ctx, "i-a")
	_ = d.Shutdown(ctx, "i-a")
	if dom, _ := d.Get(ctx, "i-a"); dom.State != hypervisor.Running {
		t.Errorf("a guest ignoring ACPI is %s", dom.State)
	}

	d = newDummy(t, func(c *dummy.Config) { c.ShutdownDelay = 50 * time.Millisecond })
	_ = d.Define(ctx, hypervisor.Spec{ID: "i-b", CPUCores: 1, MemoryMB: 1})
	_ = d.Start(ctx, "i-b")
	_ = d.Shutdown(ctx, "i-b")
	if err := d.Reboot(ctx, "i-b"); err != nil {
		t.Fatalf("Reboot = %v", err)
	}
	if got := d.Boots("i-b"); got != 2 {
		t.Errorf("Boots = %d after start and reboot, want 2", got)
	}
	// The reset dropped the pending power-down: a second Shutdown is what
	// turns the guest off, and the first one never fires after a restart.
	_ = d.Shutdown(ctx, "i-b")
	testutil.WaitFor(t, 5*time.Second, func() error {
		if dom, _ := d.Get(ctx, "i-b"); dom.State != hypervisor.Shutoff {
			return fmt.Errorf("domain is %s", dom.State)
		}
		return nil
	})
}

func TestKillAndPause(t *testing.T) {
	ctx := context.Background()
	d := newDummy(t, nil)
	if err := d.Kill("i-none"); !errs.Is(err, errs.NotFound) {
		t.Errorf("Kill(absent) = %v, want NotFound", err)
	}
	_ = d.Define(ctx, hypervisor.Spec{ID: "i-a", CPUCores: 1, MemoryMB: 1})
	if err := d.Pause("i-a"); !errs.Is(err, errs.InvalidInstanceState) {
		t.Errorf("Pause(shut off) = %v, want InvalidInstanceState", err)
	}
	_ = d.Start(ctx, "i-a")
	if err := d.Pause("i-a"); err != nil {
		t.Fatalf("Pause = %v", err)
	}
	if err := d.Undefine(ctx, "i-a"); !errs.Is(err, errs.InvalidInstanceState) {
		t.Errorf("Undefine(paused) = %v, want InvalidInstanceState", err)
	}
	if err := d.Start(ctx, "i-a"); err != nil {
		t.Fatalf("Start(paused) = %v", err)
	}
	if dom, _ := d.Get(ctx, "i-a"); dom.State != hypervisor.Running || d.Boots("i-a") != 1 {
		t.Errorf("resumed domain = %+v with %d boots, want running and 1 boot", dom, d.Boots("i-a"))
	}
	if err := d.Kill("i-a"); err != nil {
		t.Fatalf("Kill = %v", err)
	}
	if dom, _ := d.Get(ctx, "i-a"); dom.State != hypervisor.Shutoff {
		t.Errorf("killed domain is %s, want shutoff", dom.State)
	}
}
