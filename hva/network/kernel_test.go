package network_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/network"
	"github.com/vdc-project/vdc/hva/network/networktest"
)

var nsSeq atomic.Int64

// testNS makes a network namespace of the test's own, removed at cleanup.
func testNS(t *testing.T) netns.NsHandle {
	t.Helper()
	name := fmt.Sprintf("nf-lk%d-%d", nsSeq.Add(1), testutil.FreePort(t))
	ns, err := network.NewNamedNS(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := network.DeleteNamedNS(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ns
}

// TestKernelConformance runs the suite over netlink in a namespace per
// subtest: real bridges, persistent taps and a veth as uplink.
func TestKernelConformance(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	handles := map[network.Links]netns.NsHandle{}
	networktest.Run(t, networktest.Harness{
		New: func(t *testing.T) network.Links {
			ns := testNS(t)
			k, err := network.NewKernel(ns)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(k.Close)
			handles[k] = ns
			return k
		},
		AddDevice: func(t *testing.T, l network.Links, name string) {
			h, err := netlink.NewHandleAt(handles[l])
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			// This kernel has no dummy links; a veth pair stands for the NIC.
			if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
				t.Fatalf("add veth %s: %v", name, err)
			}
		},
	})
}
