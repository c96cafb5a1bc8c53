package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
)

// MaxEventSize bounds an event's name plus its JSON-encoded args. serf
// refuses user events whose encoded message exceeds its UserEventSizeLimit
// (512 bytes by default, the value every vdc daemon uses); the encoding adds
// about 40 bytes, so 448 leaves room to spare.
const MaxEventSize = 448

// EncodeEvent is how an event travels as a serf user event: the event name
// as the serf event name and the args as a JSON array payload. Events over
// MaxEventSize are errs.TooLarge. The manager publishes with the same
// encoding on its own serf.
func EncodeEvent(ev proto.Event) (name string, payload []byte, err error) {
	if ev.Name == "" {
		return "", nil, errs.New(errs.InvalidBody, "event without a name")
	}
	if len(ev.Args) > 0 {
		if payload, err = json.Marshal(ev.Args); err != nil {
			return "", nil, fmt.Errorf("encode event %s: %w", ev.Name, err)
		}
	}
	if n := len(ev.Name) + len(payload); n > MaxEventSize {
		return "", nil, errs.New(errs.TooLarge, "event %s is %d bytes, over the limit of %d: events carry ids only",
			ev.Name, n, MaxEventSize)
	}
	return ev.Name, payload, nil
}

// DecodeEvent is the reverse of EncodeEvent.
func DecodeEvent(name string, payload []byte) (proto.Event, error) {
	ev := proto.Event{Name: name}
	if len(payload) > 0 {
		if err := json.Unmarshal(payload, &ev.Args); err != nil {
			return proto.Event{}, errs.Wrap(errs.InvalidBody, err, "decode event "+name)
		}
	}
	return ev, nil
}

// Publish sends ev to the members that subscribe to it, this agent's
// subscribers included (interest.go: nothing goes out when nobody else
// listens). Delivery is best effort (receivers reconcile from the
// manager's state).
func (a *Agent) Publish(ctx context.Context, ev proto.Event) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, "publish "+ev.Name)
	}
	name, payload, err := EncodeEvent(ev)
	if err != nil {
		return err
	}
	a.mu.Lock()
	s, closing := a.serf, a.closing
	a.mu.Unlock()
	if s == nil || closing {
		return errs.New(errs.Unavailable, "agent %s is not running; cannot publish %s", a.cfg.NodeID, ev.Name)
	}
	if !a.interest().Wants(ev.Name) {
		// serf would hand the event back to this agent; do that directly.
		a.deliver(ev)
		return nil
	}
	// No coalescing: two events of one name differ in their ids.
	if err := s.UserEvent(name, payload, false); err != nil {
		return fmt.Errorf("publish %s: %w", ev.Name, err)
	}
	return nil
}

// interest is what the other members subscribe to, read again after a
// serf member event (a tag change is one).
func (a *Agent) interest() Interest {
	a.mu.Lock()
	s, v := a.serf, a.membersVersion
	if a.interestOK && a.interestAt == v {
		in := a.interestSet
		a.mu.Unlock()
		return in
	}
	a.mu.Unlock()
	in := NewInterest(a.cfg.NodeID, s.Members())
	a.mu.Lock()
	a.interestSet, a.interestAt, a.interestOK = in, v, true
	a.mu.Unlock()
	return in
}

// subscription delivers matching events to fn on its own goroutine, in the
// order they arrived; a full queue drops events (and logs it).
type subscription struct {
	patterns []string
	fn       func(ctx context.Context, ev proto.Event)
	ch       chan proto.Event
	done     chan struct{}
}

func (s *subscription) stop() { close(s.done) }

// Subscribe calls fn for every received event whose name matches pattern
// (path.Match syntax: "*/vnic_joined" matches "sg-1/vnic_joined", "*" does
// not cross a slash; an exact name matches itself). Calls for one
// subscription are sequential and in arrival order. The returned function
// unsubscribes.
func (a *Agent) Subscribe(pattern string, fn func(ctx context.Context, ev proto.Event)) (func(), error) {
	return a.SubscribeAll([]string{pattern}, fn)
}

// SubscribeAll is Subscribe for the events matching any of patterns, with
// one queue: the other members learn of all of them in one tag update.
func (a *Agent) SubscribeAll(patterns []string, fn func(ctx context.Context, ev proto.Event)) (func(), error) {
	if len(patterns) == 0 {
		return nil, errs.New(errs.InvalidBody, "subscription without a pattern")
	}
	for _, p := range patterns {
		// Patterns travel space-separated in a serf tag.
		if _, err := path.Match(p, ""); err != nil || p == "" || strings.ContainsAny(p, " \t\n") {
			return nil, errs.New(errs.InvalidBody, "bad event pattern %q", p)
		}
	}
	sub := &subscription{
		patterns: slices.Clone(patterns),
		fn:       fn,
		ch:       make(chan proto.Event, a.cfg.EventBuffer),
		done:     make(chan struct{}),
	}
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return nil, errs.New(errs.Unavailable, "agent %s is shutting down", a.cfg.NodeID)
	}
	a.subs[sub] = struct{}{}
	a.wg.Add(1)
	a.mu.Unlock()
	a.advertiseSubscriptions()
	go func() {
		defer a.wg.Done()
		for {
			select {
			case <-sub.done:
				return
			case ev := <-sub.ch:
				a.callSubscriber(sub, ev)
			}
		}
	}()
	return func() {
		a.mu.Lock()
		_, ok := a.subs[sub]
		if ok {
			delete(a.subs, sub)
			sub.stop()
		}
		a.mu.Unlock()
		if ok {
			a.advertiseSubscriptions()
		}
	}, nil
}

// subscriptionTagLocked is the TagEvents value for the current
// subscriptions.
func (a *Agent) subscriptionTagLocked() string {
	var ps []string
	for sub := range a.subs {
		ps = append(ps, sub.patterns...)
	}
	return EncodeSubscriptions(ps)
}

// advertiseSubscriptions updates this member's TagEvents after a change of
// subscriptions (before Start, startSerf sets it).
func (a *Agent) advertiseSubscriptions() {
	a.tagsMu.Lock()
	defer a.tagsMu.Unlock()
	a.mu.Lock()
	s, closing := a.serf, a.closing
	tag := a.subscriptionTagLocked()
	tags := maps.Clone(a.baseTags)
	a.mu.Unlock()
	if s == nil || closing || s.LocalMember().Tags[proto.TagEvents] == tag {
		return
	}
	tags[proto.TagEvents] = tag
	if err := s.SetTags(tags); err != nil {
		a.logger.Warn("advertise event subscriptions", "error", err)
	}
}

func (a *Agent) callSubscriber(sub *subscription, ev proto.Event) {
	defer func() {
		if p := recover(); p != nil {
			a.logger.Error("event subscriber panicked", "patterns", sub.patterns, "event", ev.Name, "panic", p)
		}
	}()
	sub.fn(a.baseCtx, ev)
}

// dispatchEvent hands a received serf user event to matching subscribers.
func (a *Agent) dispatchEvent(ue serf.UserEvent) {
	ev, err := DecodeEvent(ue.Name, ue.Payload)
	if err != nil {
		a.logger.Warn("ignoring undecodable user event", "event", ue.Name, "error", err)
		return
	}
	a.deliver(ev)
}

// deliver queues ev for every subscription it matches.
func (a *Agent) deliver(ev proto.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for sub := range a.subs {
		if !slices.ContainsFunc(sub.patterns, func(p string) bool { return matchEvent(p, ev.Name) }) {
			continue
		}
		select {
		case sub.ch <- ev:
		default:
			a.logger.Warn("event subscriber queue full; dropping event", "patterns", sub.patterns, "event", ev.Name)
		}
	}
}
