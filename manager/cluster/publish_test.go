package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

// The manager publishes API events (security groups) only when an agent
// subscribes to them (common/agent/interest.go).
func TestPublishOnlyToSubscribers(t *testing.T) {
	s := TestServer(t, nil)
	a, err := agent.New(agent.Config{
		NodeID: "hva.pub1", Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0",
		Join: []string{s.SerfAddr()}, FastGossip: true, Logger: logging.NewTest(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []string
	)
	if _, err := a.Subscribe("*/vnic_joined", func(_ context.Context, ev proto.Event) {
		mu.Lock()
		got = append(got, ev.Name)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	testutil.WaitFor(t, 10*time.Second, func() error {
		for _, m := range s.Members() {
			if m.Name == "hva.pub1" && m.Status == "alive" {
				return nil
			}
		}
		return fmt.Errorf("manager does not see the agent: %+v", s.Members())
	})

	ctx := context.Background()
	clock := s.serf.Stats()["event_time"]
	if err := s.Publish(ctx, proto.Event{Name: proto.EventInstanceScheduled, Args: []string{"i-1"}}); err != nil {
		t.Fatal(err)
	}
	if now := s.serf.Stats()["event_time"]; now != clock {
		t.Errorf("serf event clock %s -> %s: an event no member subscribes to went out", clock, now)
	}
	if err := s.Publish(ctx, proto.Event{Name: proto.EventVnicJoined("sg-1"), Args: []string{"vif-1"}}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Contains(got, "sg-1/vnic_joined") {
			return fmt.Errorf("agent got %v", got)
		}
		return nil
	})
}
