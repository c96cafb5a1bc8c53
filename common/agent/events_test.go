package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

// collector records the events a subscription received.
type collector struct {
	mu  sync.Mutex
	evs []proto.Event
}

func (c *collector) add(_ context.Context, ev proto.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, ev)
}

func (c *collector) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, ev := range c.evs {
		out = append(out, ev.Name+fmt.Sprint(ev.Args))
	}
	return out
}

func (c *collector) waitFor(t *testing.T, want ...string) {
	t.Helper()
	testutil.WaitFor(t, waitLong, func() error {
		got := c.names()
		for _, w := range want {
			found := false
			for _, g := range got {
				found = found || g == w
			}
			if !found {
				return fmt.Errorf("events %v lack %s", got, w)
			}
		}
		return nil
	})
}

func TestEventsBetweenAgents(t *testing.T) {
	var vnic, all, own collector
	recv := startAgent(t, testConfig(t, proto.RoleHva, "hva.ev"), func(a *Agent) {
		for pattern, c := range map[string]*collector{"*/vnic_joined": &vnic, "*/*": &all} {
			if _, err := a.Subscribe(pattern, c.add); err != nil {
				t.Fatalf("Subscribe(%q) = %v", pattern, err)
			}
		}
	})
	cfg := testConfig(t, proto.RoleHva, "hva.pub")
	cfg.Join = []string{recv.SerfAddr()}
	pub := startAgent(t, cfg, func(a *Agent) {
		if _, err := a.Subscribe(proto.EventInstanceStarted, own.add); err != nil {
			t.Fatal(err)
		}
	})
	waitMember(t, recv, "hva.pub", "alive")
	waitMember(t, pub, "hva.ev", "alive")

	ctx := context.Background()
	if err := pub.Publish(ctx, proto.Event{Name: proto.EventInstanceStarted, Args: []string{"i-1"}}); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	if err := pub.Publish(ctx, proto.Event{Name: proto.EventVnicJoined("sg-1"), Args: []string{"vif-1"}}); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	all.waitFor(t, "hva/instance_started[i-1]", "sg-1/vnic_joined[vif-1]")
	vnic.waitFor(t, "sg-1/vnic_joined[vif-1]")
	// Both events went through the receiver's loop before "all" saw the
	// second, so the vnic subscription's contents are settled.
	if got := vnic.names(); len(got) != 1 {
		t.Errorf("*/vnic_joined subscription got %v, want only the vnic event", got)
	}
	// The publisher's own subscribers receive its events too.
	own.waitFor(t, "hva/instance_started[i-1]")
}

func TestUnsubscribe(t *testing.T) {
	var before, stays collector
	a := startAgent(t, testConfig(t, proto.RoleSta, "sta.unsub"), nil)
	unsub, err := a.Subscribe("x/*", before.add)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Subscribe("x/*", stays.add); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Publish(ctx, proto.Event{Name: "x/one"}); err != nil {
		t.Fatal(err)
	}
	before.waitFor(t, "x/one[]")
	unsub()
	unsub() // idempotent
	if err := a.Publish(ctx, proto.Event{Name: "x/two"}); err != nil {
		t.Fatal(err)
	}
	stays.waitFor(t, "x/one[]", "x/two[]")
	if got := before.names(); len(got) != 1 {
		t.Errorf("unsubscribed collector got %v", got)
	}
}

func TestEventLimits(t *testing.T) {
	a := startAgent(t, testConfig(t, proto.RoleSta, "sta.big"), nil)
	ctx := context.Background()
	if _, err := a.Subscribe("[", func(context.Context, proto.Event) {}); err == nil {
		t.Error("Subscribe(bad pattern) = nil error")
	}
	if err := a.Publish(ctx, proto.Event{}); !errs.Is(err, errs.InvalidBody) {
		t.Errorf("Publish(no name) = %v, want InvalidBody", err)
	}
	// Exactly MaxEventSize passes serf's own limit; one byte more is refused by us.
	name := "sg-1/vnic_joined"
	arg := strings.Repeat("v", MaxEventSize-len(name)-len(`[""]`))
	if err := a.Publish(ctx, proto.Event{Name: name, Args: []string{arg}}); err != nil {
		t.Errorf("Publish(%d bytes) = %v", MaxEventSize, err)
	}
	if err := a.Publish(ctx, proto.Event{Name: name, Args: []string{arg + "v"}}); !errs.Is(err, errs.TooLarge) {
		t.Errorf("Publish(%d bytes) = %v, want TooLarge", MaxEventSize+1, err)
	}

	ev := proto.Event{Name: "hva.x/vnic_created", Args: []string{"vif-1", "vif-2"}}
	n, p, err := EncodeEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeEvent(n, p)
	if err != nil || fmt.Sprint(back) != fmt.Sprint(ev) {
		t.Errorf("DecodeEvent(EncodeEvent(%v)) = %v, %v", ev, back, err)
	}
	if _, err := DecodeEvent("x", []byte("not json")); !errs.Is(err, errs.InvalidBody) {
		t.Errorf("DecodeEvent(garbage) = %v, want InvalidBody", err)
	}
}

func TestPublishBeforeStart(t *testing.T) {
	a, err := New(testConfig(t, proto.RoleHva, "hva.idle"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Publish(context.Background(), proto.Event{Name: "a/b"}); !errs.Is(err, errs.Unavailable) {
		t.Errorf("Publish before Start = %v, want Unavailable", err)
	}
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of an unstarted agent = %v", err)
	}
	if err := a.Start(); err == nil {
		t.Error("Start after Shutdown = nil error")
	}
}
