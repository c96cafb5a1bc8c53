package agent

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

func TestInterest(t *testing.T) {
	member := func(name string, status serf.MemberStatus, tags map[string]string) serf.Member {
		return serf.Member{Name: name, Status: status, Tags: tags}
	}
	ev := func(p string) map[string]string { return map[string]string{proto.TagEvents: p} }
	for _, tc := range []struct {
		name    string
		members []serf.Member
		want    map[string]bool
	}{
		{"nobody subscribes", []serf.Member{
			member("self", serf.StatusAlive, ev("hva/instance_started")), // its own subscriptions are local
			member("m1", serf.StatusAlive, ev("")),
		}, map[string]bool{"hva/instance_started": false, "sg-1/vnic_joined": false}},
		{"patterns of the others", []serf.Member{
			member("h1", serf.StatusAlive, ev("*/vnic_joined h1/vnic_created")),
			member("h2", serf.StatusAlive, ev("*/rules_updated")),
		}, map[string]bool{
			"sg-1/vnic_joined": true, "sg-1/rules_updated": true, "h1/vnic_created": true,
			"h2/vnic_created": false, "h1/instance_terminated": false, "hva/instance_started": false,
		}},
		{"a member that does not say gets everything", []serf.Member{
			member("m1", serf.StatusAlive, ev("")),
			member("tool", serf.StatusAlive, map[string]string{proto.TagRole: "x"}),
		}, map[string]bool{"hva/instance_started": true}},
		{"members not alive are not asked", []serf.Member{
			member("gone", serf.StatusFailed, map[string]string{}),
			member("left", serf.StatusLeft, ev("*/*")),
		}, map[string]bool{"sg-1/vnic_joined": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := NewInterest("self", tc.members)
			for name, want := range tc.want {
				if got := in.Wants(name); got != want {
					t.Errorf("Wants(%q) = %v, want %v", name, got, want)
				}
			}
		})
	}
	if got := EncodeSubscriptions([]string{"b/*", "a/x", "b/*"}); got != "a/x b/*" {
		t.Errorf("EncodeSubscriptions = %q", got)
	}
}

// eventClock is the serf Lamport clock of user events a sent or saw: it
// moves with every event that goes out.
func eventClock(a *Agent) string {
	a.mu.Lock()
	s := a.serf
	a.mu.Unlock()
	return s.Stats()["event_time"]
}

func TestEventsOnlyWhereSubscribed(t *testing.T) {
	var vnic, own collector
	recv := startAgent(t, testConfig(t, proto.RoleHva, "hva.want"), func(a *Agent) {
		if _, err := a.Subscribe("*/vnic_joined", vnic.add); err != nil {
			t.Fatal(err)
		}
	})
	cfg := testConfig(t, proto.RoleHva, "hva.say")
	cfg.Join = []string{recv.SerfAddr()}
	pub := startAgent(t, cfg, func(a *Agent) {
		if _, err := a.Subscribe("hva.say/vnic_created", own.add); err != nil {
			t.Fatal(err)
		}
	})
	waitMember(t, recv, "hva.say", "alive")
	if m := waitMember(t, pub, "hva.want", "alive"); m.Tags[proto.TagEvents] != "*/vnic_joined" {
		t.Fatalf("subscriber's tags = %v", m.Tags)
	}
	ctx := context.Background()
	clock := eventClock(pub)

	// Nobody subscribes to hva/instance_started; only the publisher itself
	// to its own vnic_created: neither goes out.
	for _, ev := range []proto.Event{
		{Name: proto.EventInstanceStarted, Args: []string{"i-1"}},
		{Name: proto.EventVnicCreated("hva.say"), Args: []string{"vif-1"}},
	} {
		if err := pub.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	own.waitFor(t, "hva.say/vnic_created[vif-1]")
	if got := eventClock(pub); got != clock {
		t.Errorf("serf event clock %s -> %s: an event nobody else wants went out", clock, got)
	}
	// A subscribed event goes out, once.
	if err := pub.Publish(ctx, proto.Event{Name: proto.EventVnicJoined("sg-1"), Args: []string{"vif-1"}}); err != nil {
		t.Fatal(err)
	}
	vnic.waitFor(t, "sg-1/vnic_joined[vif-1]")
	if got := vnic.names(); len(got) != 1 {
		t.Errorf("subscriber got %v", got)
	}

	// A subscription made after Start reaches the publisher through the
	// tags; unsubscribing takes it back.
	var late collector
	unsub, err := recv.Subscribe("hva/instance_*", late.add)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, waitLong, func() error {
		if !pub.interest().Wants(proto.EventInstanceStarted) {
			return fmt.Errorf("publisher does not know of the new subscription: %v", pub.Members())
		}
		return nil
	})
	if err := pub.Publish(ctx, proto.Event{Name: proto.EventInstanceStarted, Args: []string{"i-2"}}); err != nil {
		t.Fatal(err)
	}
	late.waitFor(t, "hva/instance_started[i-2]")
	unsub()
	testutil.WaitFor(t, waitLong, func() error {
		if pub.interest().Wants(proto.EventInstanceStarted) {
			return fmt.Errorf("publisher still sends hva/instance_started: %v", pub.Members())
		}
		return nil
	})
}
