package filter_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/filter/filtertest"
	"github.com/vdc-project/vdc/hva/network"
)

var nsSeq atomic.Int64

// testNS makes a network namespace of the test's own, removed at cleanup.
func testNS(t testing.TB, what string) (netns.NsHandle, string) {
	t.Helper()
	name := fmt.Sprintf("nf-%s%d-%d", what, nsSeq.Add(1), testutil.FreePort(t))
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
	return ns, name
}

// TestNFTConformance runs the suite against the kernel, each subtest in a
// namespace of its own.
func TestNFTConformance(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	filtertest.Run(t, func(t *testing.T) filter.Filter {
		ns, _ := testNS(t, "ft")
		return filter.NewNFT(int(ns))
	})
}
