package network_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/network"
	"github.com/vdc-project/vdc/hva/network/networktest"
)

func TestTapMAC(t *testing.T) {
	for in, want := range map[string]string{
		"525400aabbcc":      "fe:54:00:aa:bb:cc",
		"52:54:00:AA:BB:CC": "fe:54:00:aa:bb:cc",
	} {
		got, err := network.TapMAC(in)
		if err != nil || got.String() != want {
			t.Errorf("TapMAC(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "5254", "zz5400aabbcc", "525400aabbccdd"} {
		if _, err := network.TapMAC(bad); !errs.Is(err, errs.InvalidMacAddress) {
			t.Errorf("TapMAC(%q) = %v, want InvalidMacAddress", bad, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	links := networktest.NewFake()
	for name, nets := range map[string]map[string]network.DCNetwork{
		"empty bridge":  {"a": {}},
		"long bridge":   {"a": {Bridge: strings.Repeat("b", 16)}},
		"shared bridge": {"a": {Bridge: "nfbr0"}, "b": {Bridge: "nfbr0"}},
		"uplink=bridge": {"a": {Bridge: "nfbr0", Interface: "nfbr0"}},
		"mtu":           {"a": {Bridge: "nfbr0", MTU: 10}},
	} {
		if _, err := network.New(network.Config{Networks: nets, Links: links}); err == nil {
			t.Errorf("%s: New accepted %+v", name, nets)
		}
	}
	if _, err := network.New(network.Config{}); err == nil {
		t.Error("New accepted a config without links")
	}
}

// TestPlugReportsFailures: a failing kernel call fails Plug with what was
// being done, and a later Plug finishes the work.
func TestPlugReportsFailures(t *testing.T) {
	ctx := context.Background()
	links := networktest.NewFake()
	n, err := network.New(network.Config{Networks: map[string]network.DCNetwork{"public": {Bridge: "nfbr0"}}, Links: links})
	if err != nil {
		t.Fatal(err)
	}
	nics := []hypervisor.NIC{{VifID: "vif-00000001", MAC: "525400000001", DcNetwork: "public"}}
	links.InjectError("SetMaster", errors.New("boom"))
	if err := n.Plug(ctx, nics); err == nil || !strings.Contains(err.Error(), "enslave to nfbr0") {
		t.Fatalf("Plug = %v, want the enslave failure", err)
	}
	if err := n.Plug(ctx, nics); err != nil {
		t.Fatalf("Plug after the failure: %v", err)
	}
	if l, _ := links.Get(ctx, "vif-00000001"); l.Master != "nfbr0" || !l.Up {
		t.Errorf("tap = %+v, want up on nfbr0", l)
	}
	links.InjectError("Delete", errors.New("busy"))
	if err := n.Unplug(ctx, []string{"vif-00000001"}); err == nil {
		t.Fatal("Unplug hid the delete failure")
	}
}

// TestConcurrentPlugsShareBridge: boots plugging into one new bridge at
// once create it once.
func TestConcurrentPlugsShareBridge(t *testing.T) {
	ctx := context.Background()
	links := networktest.NewFake()
	n, err := network.New(network.Config{Networks: map[string]network.DCNetwork{"public": {Bridge: "nfbr0"}}, Links: links})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- n.Plug(ctx, []hypervisor.NIC{{VifID: fmt.Sprintf("vif-0000000%d", i), MAC: fmt.Sprintf("52540000000%d", i), DcNetwork: "public"}})
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Errorf("Plug: %v", err)
		}
	}
	all, _ := links.List(ctx)
	if len(all) != 9 {
		t.Errorf("%d links, want the bridge and 8 taps", len(all))
	}
}

// TestReconcileFromWaitsForManagers: the wanted list is retried until the
// managers answer, then stale taps go.
func TestReconcileFromWaitsForManagers(t *testing.T) {
	ctx := context.Background()
	links := networktest.NewFake()
	for _, name := range []string{"vif-00000001", "vif-00000002"} {
		if err := links.AddTap(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	n, err := network.New(network.Config{Links: links})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	removed, err := n.ReconcileFrom(ctx, func(context.Context) ([]string, error) {
		calls++
		if calls < 3 {
			return nil, errors.New("no manager")
		}
		return []string{"vif-00000001"}, nil
	}, time.Millisecond)
	if err != nil || calls != 3 || len(removed) != 1 || removed[0] != "vif-00000002" {
		t.Fatalf("ReconcileFrom = %v, %v after %d calls", removed, err, calls)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.ReconcileFrom(cctx, func(context.Context) ([]string, error) { return nil, errors.New("no") }, time.Millisecond); err == nil {
		t.Fatal("ReconcileFrom returned nil after its context ended")
	}
}
