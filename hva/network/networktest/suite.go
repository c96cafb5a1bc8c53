package networktest

import (
	"context"
	"net"
	"slices"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/network"
)

// Harness gives the suite fresh links for each subtest.
type Harness struct {
	// New returns the links of an empty namespace (the fake, or netlink in
	// a namespace of the test's own).
	New func(t *testing.T) network.Links
	// AddDevice adds a link that is neither a bridge nor a tap (a dummy or
	// veth in the kernel), standing for an uplink NIC.
	AddDevice func(t *testing.T, l network.Links, name string)
}

// Run runs the conformance suite: the Links contract, then Network (Plug,
// Unplug, Reconcile) over those links. Names start with nf (the test
// prefix of this area) and vif-.
func Run(t *testing.T, h Harness) {
	cases := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"LinksAbsent", testAbsent},
		{"LinksBridgeAndTap", testBridgeAndTap},
		{"PlugCreatesBridgeAndTap", testPlug},
		{"PlugIdempotentAndCorrects", testPlugIdempotent},
		{"PlugEnslavesUplink", testUplink},
		{"PlugErrors", testPlugErrors},
		{"UnplugIdempotent", testUnplug},
		{"Reconcile", testReconcile},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, h) })
	}
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func get(t *testing.T, l network.Links, name string) network.Link {
	t.Helper()
	lk, err := l.Get(context.Background(), name)
	if err != nil {
		t.Fatalf("Get(%s): %v", name, err)
	}
	return lk
}

func wantKind(t *testing.T, err error, k errs.Kind, what string) {
	t.Helper()
	if !errs.Is(err, k) {
		t.Fatalf("%s = %v, want kind %s", what, err, k.Name())
	}
}

func testAbsent(t *testing.T, h Harness) {
	ctx := context.Background()
	l := h.New(t)
	_, err := l.Get(ctx, "vif-absent01")
	wantKind(t, err, errs.NotFound, "Get of an absent link")
	wantKind(t, l.Delete(ctx, "vif-absent01"), errs.NotFound, "Delete of an absent link")
	wantKind(t, l.SetUp(ctx, "vif-absent01"), errs.NotFound, "SetUp of an absent link")
}

func testBridgeAndTap(t *testing.T, h Harness) {
	ctx := context.Background()
	l := h.New(t)
	must(t, l.AddBridge(ctx, "nfbr0", 0), "AddBridge")
	wantKind(t, l.AddBridge(ctx, "nfbr0", 0), errs.Conflict, "AddBridge of a taken name")
	br := get(t, l, "nfbr0")
	if br.Kind != network.KindBridge || br.Up {
		t.Fatalf("new bridge = %+v, want kind bridge, down", br)
	}
	must(t, l.AddTap(ctx, "vif-tap00001"), "AddTap")
	wantKind(t, l.AddTap(ctx, "vif-tap00001"), errs.Conflict, "AddTap of a taken name")
	tap := get(t, l, "vif-tap00001")
	if tap.Kind != network.KindTap || tap.Up || tap.Master != "" {
		t.Fatalf("new tap = %+v, want kind tap, down, no master", tap)
	}
	mac := net.HardwareAddr{0xfe, 0x54, 0, 0x12, 0x34, 0x56}
	must(t, l.SetMAC(ctx, "vif-tap00001", mac), "SetMAC")
	must(t, l.SetMTU(ctx, "vif-tap00001", 1400), "SetMTU")
	must(t, l.SetMaster(ctx, "vif-tap00001", "nfbr0"), "SetMaster")
	must(t, l.SetUp(ctx, "vif-tap00001"), "SetUp")
	tap = get(t, l, "vif-tap00001")
	if !slices.Equal(tap.MAC, mac) || tap.MTU != 1400 || tap.Master != "nfbr0" || !tap.Up {
		t.Fatalf("tap = %+v, want mac %s, mtu 1400, master nfbr0, up", tap, mac)
	}
	all, err := l.List(ctx)
	must(t, err, "List")
	var names []string
	for _, x := range all {
		names = append(names, x.Name)
	}
	for _, n := range []string{"nfbr0", "vif-tap00001"} {
		if !slices.Contains(names, n) {
			t.Errorf("List = %v, missing %s", names, n)
		}
	}
	must(t, l.Delete(ctx, "vif-tap00001"), "Delete tap")
	_, err = l.Get(ctx, "vif-tap00001")
	wantKind(t, err, errs.NotFound, "Get of a deleted tap")
	must(t, l.Delete(ctx, "nfbr0"), "Delete bridge")
}

func newNetwork(t *testing.T, l network.Links, nets map[string]network.DCNetwork) *network.Network {
	t.Helper()
	n, err := network.New(network.Config{Networks: nets, Links: l})
	if err != nil {
		t.Fatalf("network.New: %v", err)
	}
	return n
}

func testPlug(t *testing.T, h Harness) {
	ctx := context.Background()
	l := h.New(t)
	n := newNetwork(t, l, map[string]network.DCNetwork{"public": {Bridge: "nfbr1", MTU: 1400}})
	nics := []hypervisor.NIC{
		{VifID: "vif-aaaa0001", MAC: "525400aabb01", DcNetwork: "public"},
		{VifID: "vif-aaaa0002", MAC: "52:54:00:aa:bb:02", DeviceIndex: 1},
	}
	must(t, n.Plug(ctx, nics), "Plug")
	if nics[0].Bridge != "nfbr1" || nics[0].MTU != 1400 {
		t.Errorf("NIC 0 = %+v, want bridge nfbr1, mtu 1400 filled in", nics[0])
	}
	if nics[1].Bridge != "" || nics[1].MTU != 0 {
		t.Errorf("NIC 1 (no dc network) = %+v, want no bridge", nics[1])
	}
	br := get(t, l, "nfbr1")
	if br.Kind != network.KindBridge || !br.Up {
		t.Errorf("bridge = %+v, want an up bridge", br)
	}
	tap := get(t, l, "vif-aaaa0001")
	want := net.HardwareAddr{0xfe, 0x54, 0, 0xaa, 0xbb, 0x01}
	if tap.Kind != network.KindTap || tap.Master != "nfbr1" || !slices.Equal(tap.MAC, want) || tap.MTU != 1400 || !tap.Up {
		t.Errorf("tap = %+v, want an up tap on nfbr1 with mac %s and mtu 1400", tap, want)
	}
	tap2 := get(t, l, "vif-aaaa0002")
	if tap2.Kind != network.KindTap || tap2.Master != "" || !tap2.Up ||
		!slices.Equal(tap2.MAC, net.HardwareAddr{0xfe, 0x54, 0, 0xaa, 0xbb, 0x02}) {
		t.Errorf("tap without network = %+v, want an up tap on no bridge", tap2)
	}
}

func testPlugIdempotent(t *testing.T, h Harness) {
	ctx := context.Background()
	l := h.New(t)
	n := newNetwork(t, l, map[string]network.DCNetwork{"public": {Bridge: "nfbr2"}})
	nic := []hypervisor.NIC{{VifID: "vif-bbbb0001", MAC: "525400bbbb01", DcNetwork: "public"}}
	must(t, n.Plug(ctx, nic), "Plug")
	must(t, n.Plug(ctx, nic), "Plug again")
	// Drift: someone changed the tap's MAC; the next Plug corrects it.
	must(t, l.SetMAC(ctx, "vif-bbbb0001", net.HardwareAddr{0x02, 1, 2, 3, 4, 5}), "SetMAC")
	must(t, n.Plug(ctx, nic), "Plug after drift")
	tap := get(t, l, "vif-bbbb0001")
	if want := (net.HardwareAddr{0xfe, 0x54, 0, 0xbb, 0xbb, 0x01}); !slices.Equal(tap.MAC, want) || tap.Master != "nfbr2" {
		t.Errorf("tap = %+v, want mac %s on nfbr2", tap, want)
	}
	all, err := l.List(ctx)
	must(t, err, "List")
	count := 0
	for _, x := range all {
		if x.Name == "vif-bbbb0001" || x.Name == "nfbr2" {
			count++
		}
	}
	if count != 2 {
		t.Errorf("List has %d of the bridge and tap, want 2 (one each)", count)
	}
}

func testUplink(t *testing.T, h Harness) {
	ctx := context.Background()
	l := h.New(t)
	h.AddDevice(t, l, "nfup0")
	n := newNetwork(t, l, map[string]network.DCNetwork{
		"public":  {Bridge: "nfbr3", Interface: "nfup0"},
		"missing": {Bridge: "nfbr4", Interface: "nfnoup0"},
	})
	must(t, n.Plug(ctx, []hypervisor.NIC{{VifID: "vif-cccc0001", MAC: "525400cccc01", DcNetwork: "public"}}), "Plug")
	up := get(t, l, "nfup0")
	if up.Master != "nfbr3" || !up.Up {
		t.Errorf("uplink = %+v, want up on nfbr3", up)
	}
	err := n.Plug(ctx, []hypervisor.NIC{{VifID: "vif-cccc0002", MAC: "525400cccc02", DcNetwork: "missing"}})
	wantKind(t, err, errs.NotFound, "Plug on a bridge whose uplink is absent")
}

func testPlugErrors(t *testing.T, h Harness) {
	ctx := context.Background()
	l := h.New(t)
	n := newNetwork(t, l, map[string]network.DCNetwork{"public": {Bridge: "nfbr5"}})
	err := n.Plug(ctx, []hypervisor.NIC{{VifID: "vif-dddd0001", MAC: "525400dddd01", DcNetwork: "private"}})
	wantKind(t, err, errs.UnknownDcNetwork, "Plug on an unconfigured dc network")
	err = n.Plug(ctx, []hypervisor.NIC{{VifID: "vif-dddd0002", MAC: "nonsense", DcNetwork: "public"}})
	wantKind(t, err, errs.InvalidMacAddress, "Plug with a bad mac")
	err = n.Plug(ctx, []hypervisor.NIC{{VifID: "eth0", MAC: "525400dddd03", DcNetwork: "public"}})
	wantKind(t, err, errs.InvalidParameter, "Plug of a vif id that cannot name a tap")
	// A link of the vif's name that is not a tap is someone else's.
	h.AddDevice(t, l, "vif-dddd0004")
	err = n.Plug(ctx, []hypervisor.NIC{{VifID: "vif-dddd0004", MAC: "525400dddd04", DcNetwork: "public"}})
	wantKind(t, err, errs.Conflict, "Plug over a link that is not a tap")
	must(t, n.Unplug(ctx, []string{"vif-dddd0004"}), "Unplug of a link that is not a tap")
	if lk := get(t, l, "vif-dddd0004"); lk.Kind == network.KindTap {
		t.Fatalf("device became a tap: %+v", lk)
	}
}

func testUnplug(t *testing.T, h Harness) {
	ctx := context.Background()
	l := h.New(t)
	n := newNetwork(t, l, map[string]network.DCNetwork{"public": {Bridge: "nfbr6"}})
	must(t, n.Plug(ctx, []hypervisor.NIC{{VifID: "vif-eeee0001", MAC: "525400eeee01", DcNetwork: "public"}}), "Plug")
	must(t, n.Unplug(ctx, []string{"vif-eeee0001", "vif-eeee0002"}), "Unplug")
	_, err := l.Get(ctx, "vif-eeee0001")
	wantKind(t, err, errs.NotFound, "Get of an unplugged tap")
	must(t, n.Unplug(ctx, []string{"vif-eeee0001"}), "Unplug again")
	if br := get(t, l, "nfbr6"); br.Kind != network.KindBridge {
		t.Errorf("bridge = %+v after unplug, want it kept", br)
	}
}

func testReconcile(t *testing.T, h Harness) {
	ctx := context.Background()
	l := h.New(t)
	// Left by an earlier run of the hva: one tap still owned, one stale,
	// and links that are not vnic taps.
	must(t, l.AddTap(ctx, "vif-ffff0001"), "AddTap kept")
	must(t, l.AddTap(ctx, "vif-ffff0002"), "AddTap stale")
	must(t, l.AddTap(ctx, "nftap0"), "AddTap not a vnic")
	h.AddDevice(t, l, "vif-ffff0003")
	n := newNetwork(t, l, map[string]network.DCNetwork{"public": {Bridge: "nfbr7"}})
	// Plugged after the wanted list was read: kept too.
	must(t, n.Plug(ctx, []hypervisor.NIC{{VifID: "vif-ffff0004", MAC: "525400ffff04", DcNetwork: "public"}}), "Plug")
	removed, err := n.Reconcile(ctx, []string{"vif-ffff0001"})
	must(t, err, "Reconcile")
	if !slices.Equal(removed, []string{"vif-ffff0002"}) {
		t.Errorf("Reconcile removed %v, want [vif-ffff0002]", removed)
	}
	for _, name := range []string{"vif-ffff0001", "nftap0", "vif-ffff0003", "vif-ffff0004", "nfbr7"} {
		get(t, l, name)
	}
	_, err = l.Get(ctx, "vif-ffff0002")
	wantKind(t, err, errs.NotFound, "Get of the stale tap")
	removed, err = n.Reconcile(ctx, []string{"vif-ffff0001"})
	must(t, err, "Reconcile again")
	if len(removed) != 0 {
		t.Errorf("second Reconcile removed %v, want nothing", removed)
	}
}
