package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/filter/filtertest"
	"github.com/vdc-project/vdc/hva/netfilter"
)

// TestNetfilterThroughManager: security groups changed through the API
// reach the kernel of the instances' host and decide real packets between
// two guests (namespaces on the host's bridge standing for VMs on their
// taps) — first through the rules_updated event (the service's period is
// an hour), then, with a service that subscribes to nothing, through its
// periodic pass alone.
func TestNetfilterThroughManager(t *testing.T) {
	vn := &vethNet{guests: map[string]*filtertest.Guest{}}
	c := startNFCluster(t, nfOptions{events: true, interval: time.Hour,
		hostNet: func(c *nfCluster) netfilter.HostNetwork { vn.lab = c.lab; return vn }})
	ctx := context.Background()
	sgA, sgB := c.securityGroup(""), c.securityGroup("")
	var vnics []nfVnic
	for _, sg := range []string{sgA, sgB} {
		id, err := c.createInstance(ctx, sg)
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.running(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		vnics = append(vnics, v)
	}
	a, b := vnics[0], vnics[1]
	ga, gb := vn.guest(a.vif), vn.guest(b.vif)
	if ga == nil || gb == nil {
		t.Fatal("the hva did not plug the vnics")
	}
	ga.AddAddr(a.ip)
	gb.AddAddr(b.ip)
	gb.Serve(7001)
	target := filtertest.Addr(b.ip, 7001)
	reaches := func() error { return ga.Connect(target, "", time.Second) }
	blocked := func() error {
		if ga.Connect(target, "", 700*time.Millisecond) == nil {
			return fmt.Errorf("A reaches B:7001")
		}
		return nil
	}

	// Booting plugged the vnics, which triggered passes: their chains are in.
	testutil.WaitFor(t, 30*time.Second, func() error {
		if err := c.hasChain(ctx, a.vif); err != nil {
			return err
		}
		return c.hasChain(ctx, b.vif)
	})
	if err := blocked(); err != nil {
		t.Fatal(err)
	}

	passes := c.service().Stats().Passes
	if err := c.setRule(ctx, sgB, "tcp:7001,7001,"+sgA); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, reaches)
	if c.service().Stats().Passes == passes {
		t.Fatal("A reaches B, but the service made no pass since the change")
	}

	// No events from here on: the periodic pass alone follows the changes.
	c.startService(false, 300*time.Millisecond)
	if err := c.setRule(ctx, sgB, ""); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, blocked)
	if err := c.setRule(ctx, sgB, "tcp:7001,7001,ip4:"+a.ip); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, reaches)

	// Terminating A removes its tap and then its chains.
	if err := c.call(ctx, false, "DELETE", "/instances/"+a.instance+".json", nil, nil); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 60*time.Second, func() error {
		if vn.guest(a.vif) != nil {
			return errors.New("A's vnic is still plugged")
		}
		if c.hasChain(ctx, a.vif) == nil {
			return errors.New("A's chain is still in")
		}
		return nil
	})
	if err := c.hasChain(ctx, b.vif); err != nil {
		t.Fatalf("B's chain went with A's: %v", err)
	}
}
