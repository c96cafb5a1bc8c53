package netfilter

import (
	"context"
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/filter/filtertest"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

const node = "hva.nf1"

// fakeSource serves netfilter data that tests change; gate, when set,
// holds every read until it is closed.
type fakeSource struct {
	mu    sync.Mutex
	data  *proto.GetNetfilterDataResponse
	fail  int // the next reads that fail
	reads int
	gate  chan struct{}
}

func (f *fakeSource) NetfilterData(ctx context.Context, nodeID string) (*proto.GetNetfilterDataResponse, error) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if nodeID != node {
		return nil, fmt.Errorf("asked for %s", nodeID)
	}
	if f.fail > 0 {
		f.fail--
		return nil, errors.New("no manager answers")
	}
	// A copy, as the wire gives.
	d := *f.data
	d.Vnics = slices.Clone(d.Vnics)
	d.SecurityGroups = slices.Clone(d.SecurityGroups)
	return &d, nil
}

func (f *fakeSource) set(change func(d *proto.GetNetfilterDataResponse)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f.data)
}

// fakeEvents hands the events matching the subscription's patterns to the
// subscriber synchronously, as the agent would (minus serf).
type fakeEvents struct {
	mu       sync.Mutex
	patterns []string
	fn       func(ctx context.Context, ev proto.Event)
}

func (f *fakeEvents) SubscribeAll(patterns []string, fn func(ctx context.Context, ev proto.Event)) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	f.patterns, f.fn = patterns, fn
	return func() {
		f.mu.Lock()
		f.fn = nil
		f.mu.Unlock()
	}, nil
}

func (f *fakeEvents) deliver(ev proto.Event) {
	f.mu.Lock()
	fn, patterns := f.fn, f.patterns
	f.mu.Unlock()
	if fn != nil && slices.ContainsFunc(patterns, func(p string) bool { ok, _ := path.Match(p, ev.Name); return ok }) {
		fn(context.Background(), ev)
	}
}

func (f *fakeEvents) subscribed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fn != nil
}

type fakePublisher struct {
	mu  sync.Mutex
	evs []string
}

func (p *fakePublisher) Publish(_ context.Context, ev proto.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evs = append(p.evs, fmt.Sprintf("%s %v", ev.Name, ev.Args))
	return nil
}

func (p *fakePublisher) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.evs
	p.evs = nil
	return out
}

var bridges = map[string]string{"public": "nfbr0"}

type harness struct {
	svc    *Service
	src    *fakeSource
	rec    *filtertest.Recorder
	events *fakeEvents
	pub    *fakePublisher
	stop   func()
}

func start(t *testing.T, mod func(c *Config)) *harness {
	t.Helper()
	h := &harness{src: &fakeSource{data: filtertest.SampleData()}, rec: filtertest.NewRecorder(),
		events: &fakeEvents{}, pub: &fakePublisher{}}
	cfg := Config{NodeID: node, Source: h.src, Filter: h.rec, Table: "nftest", Bridges: bridges,
		Events: h.events, Publisher: h.pub, Interval: time.Hour, RetryMin: 5 * time.Millisecond, Logger: logging.NewTest(t)}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	return h
}

// waitApplied waits until the last rule set applied is what the source's
// data compiles to now.
func (h *harness) waitApplied(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, func() error {
		h.src.mu.Lock()
		want, _ := filter.Compile(h.src.data, filter.Options{Table: "nftest", Bridges: bridges})
		h.src.mu.Unlock()
		got, n := h.rec.Last()
		if n == 0 || !reflect.DeepEqual(got, want.Sorted()) {
			return fmt.Errorf("%d rule sets applied, the last is not the current data's", n)
		}
		// The pass records its figures right after the apply.
		if p := h.svc.Stats().Passes; p < n {
			return fmt.Errorf("%d passes recorded for %d applies", p, n)
		}
		return nil
	})
}

func addRule(text string) func(d *proto.GetNetfilterDataResponse) {
	return func(d *proto.GetNetfilterDataResponse) {
		d.SecurityGroups = slices.Clone(d.SecurityGroups)
		d.SecurityGroups[0].Rule += "\n" + text
	}
}

// TestPeriodicPassRepairs: with no events at all, each period re-reads and
// applies the current state.
func TestPeriodicPassRepairs(t *testing.T) {
	h := start(t, func(c *Config) { c.Events, c.Interval = nil, 20*time.Millisecond })
	h.waitApplied(t)
	h.src.set(addRule("tcp:443,443,ip4:0.0.0.0"))
	h.waitApplied(t)
	if st := h.svc.Stats(); st.Passes < 2 || st.Vnics != 3 || st.Rules == 0 || st.LastError != "" {
		t.Errorf("stats = %+v", st)
	}
}

// TestEventTriggersPass: a relevant event brings the change in at once
// (the period is an hour).
func TestEventTriggersPass(t *testing.T) {
	h := start(t, nil)
	h.waitApplied(t)
	h.src.set(addRule("tcp:443,443,ip4:0.0.0.0"))
	h.events.deliver(proto.Event{Name: proto.EventRulesUpdated("sg-web")})
	h.waitApplied(t)
}

// TestRelevance: which events trigger a pass.
func TestRelevance(t *testing.T) {
	h := start(t, nil)
	testutil.WaitFor(t, 5*time.Second, func() error {
		if !h.events.subscribed() || h.svc.Stats().Passes == 0 {
			return errors.New("not subscribed and passed yet")
		}
		return nil
	})
	triggers := func(ev proto.Event) bool {
		// With the loop idle, a trigger stays in the kick channel only
		// until the loop takes it; hold the loop off by reading it here.
		select {
		case <-h.svc.kick:
			t.Fatal("a pass was pending before the event")
		default:
		}
		h.svc.onEvent(context.Background(), ev)
		select {
		case <-h.svc.kick:
			return true
		default:
			return false
		}
	}
	h.stop() // the loop must not consume triggers while we look at them
	for ev, want := range map[string]bool{
		"sg-web/rules_updated":                true,  // a group of a local vnic
		"sg-admin/vnic_joined vif-x":          true,  // a group named by a local group's rules
		"vif-web00001/joined_group sg-new":    true,  // a local vnic
		"sg-new/referencer_added sg-web":      true,  // names a local group
		"sg-unrelated/rules_updated":          false, // nobody here uses it
		"sg-unrelated/vnic_joined vif-x":      false,
		"vif-elsewhere/joined_group sg-other": false,
		node + "/vnic_created vif-x":          true,
		"hva.other/vnic_created vif-x":        false,
		"sg-web/instance_started":             false, // not a netfilter event
		"hva/security_group_updated sg-web":   false, // legacy: rules_updated covers it
	} {
		name, arg, _ := cut(ev)
		e := proto.Event{Name: name}
		if arg != "" {
			e.Args = []string{arg}
		}
		if got := triggers(e); got != want {
			t.Errorf("event %q triggers = %v, want %v", ev, got, want)
		}
	}
	// Before anything was read every netfilter event triggers.
	h.svc.mu.Lock()
	h.svc.interest = nil
	h.svc.mu.Unlock()
	if !triggers(proto.Event{Name: "sg-unrelated/rules_updated"}) {
		t.Error("an event before the first read did not trigger")
	}
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// TestBurstCoalesces: events arriving during a pass make one more pass,
// not one each.
func TestBurstCoalesces(t *testing.T) {
	h := start(t, nil)
	h.waitApplied(t)
	gate := make(chan struct{})
	h.src.mu.Lock()
	h.src.gate = gate
	reads := h.src.reads
	h.src.mu.Unlock()
	h.svc.Trigger()
	for range 50 {
		h.events.deliver(proto.Event{Name: proto.EventRulesUpdated("sg-web")})
	}
	close(gate)
	testutil.WaitFor(t, 5*time.Second, func() error {
		h.src.mu.Lock()
		n := h.src.reads - reads
		h.src.mu.Unlock()
		if n < 2 || len(h.svc.kick) != 0 {
			return fmt.Errorf("%d reads since the burst, %d pending", n, len(h.svc.kick))
		}
		return nil
	})
	h.src.mu.Lock()
	n := h.src.reads - reads
	h.src.mu.Unlock()
	if n != 2 {
		t.Errorf("%d reads for a burst of 51 triggers, want 2 (the pass under way and one after)", n)
	}
}

// TestFailedPassRetries: a failed read is retried soon, not a period later.
func TestFailedPassRetries(t *testing.T) {
	h := &fakeSource{data: filtertest.SampleData(), fail: 3}
	s := start(t, func(c *Config) { c.Source = h })
	s.src = h
	s.waitApplied(t)
	if st := s.svc.Stats(); st.Failures != 3 || st.Passes != 1 || st.LastError != "" {
		t.Errorf("stats = %+v, want 3 failures then a pass", st)
	}
}

// TestAnnouncesVnics: vnics appearing and going are announced to their
// groups (not on the first read).
func TestAnnouncesVnics(t *testing.T) {
	h := start(t, nil)
	h.waitApplied(t)
	if evs := h.pub.take(); len(evs) != 0 {
		t.Errorf("first pass announced %v", evs)
	}
	h.src.set(func(d *proto.GetNetfilterDataResponse) {
		d.Vnics = append(slices.Clone(d.Vnics), proto.VifView{ID: "vif-new00001", MacAddr: "525400000099",
			SecurityGroups: []string{"sg-web", "sg-admin"}, DcNetwork: &proto.DcNetwork{Name: "public"}})
	})
	h.svc.Trigger()
	h.waitApplied(t)
	if got, want := h.pub.take(), []string{"sg-web/vnic_joined [vif-new00001]", "sg-admin/vnic_joined [vif-new00001]"}; !slices.Equal(got, want) {
		t.Errorf("announced %v, want %v", got, want)
	}
	h.src.set(func(d *proto.GetNetfilterDataResponse) { d.Vnics = d.Vnics[:1] })
	h.svc.Trigger()
	h.waitApplied(t)
	want := []string{"sg-admin/vnic_left [vif-adm00001]", "sg-web/vnic_left [vif-new00001]",
		"sg-admin/vnic_left [vif-new00001]", "sg-web/vnic_left [vif-noip0001]"}
	if got := h.pub.take(); !slices.Equal(got, want) {
		t.Errorf("announced %v, want %v", got, want)
	}
}

// TestFilterFailureRetried: a refused apply is a failed pass, retried.
func TestFilterFailureRetried(t *testing.T) {
	rec := filtertest.NewRecorder()
	rec.InjectError("Apply", errors.New("netlink: no buffer space"))
	h := start(t, func(c *Config) { c.Filter = rec })
	h.rec = rec
	h.waitApplied(t)
	if st := h.svc.Stats(); st.Failures != 1 {
		t.Errorf("stats = %+v, want one failure", st)
	}
}

type fakeNet struct {
	err     error
	plugged []string
}

func (f *fakeNet) Plug(_ context.Context, nics []hypervisor.NIC) error {
	for _, n := range nics {
		f.plugged = append(f.plugged, n.VifID)
	}
	return f.err
}

func (f *fakeNet) Unplug(_ context.Context, ids []string) error { return f.err }

// TestVnicsAnnounces: the host network wrapper publishes vnic_created and
// vnic_destroyed and pokes the service.
func TestVnicsAnnounces(t *testing.T) {
	inner, pub := &fakeNet{}, &fakePublisher{}
	changed := 0
	v := &Vnics{Inner: inner, NodeID: node, Publisher: pub, Changed: func() { changed++ }}
	ctx := context.Background()
	if err := v.Plug(ctx, []hypervisor.NIC{{VifID: "vif-1"}, {VifID: "vif-2"}}); err != nil {
		t.Fatal(err)
	}
	if got, want := pub.take(), []string{node + "/vnic_created [vif-1]", node + "/vnic_created [vif-2]"}; !slices.Equal(got, want) || changed != 1 {
		t.Errorf("plug: %v, changed %d; want %v", got, changed, want)
	}
	inner.err = errors.New("boom")
	if err := v.Plug(ctx, []hypervisor.NIC{{VifID: "vif-3"}}); err == nil {
		t.Fatal("Plug hid the error")
	}
	if got := pub.take(); len(got) != 0 {
		t.Errorf("a failed plug announced %v", got)
	}
	if err := v.Unplug(ctx, []string{"vif-1"}); err == nil {
		t.Fatal("Unplug hid the error")
	}
	if got, want := pub.take(), []string{node + "/vnic_destroyed [vif-1]"}; !slices.Equal(got, want) {
		t.Errorf("unplug: %v, want %v", got, want)
	}
}

func TestLocalVifs(t *testing.T) {
	ids, err := LocalVifs(&fakeSource{data: filtertest.SampleData()}, node)(context.Background())
	if want := []string{"vif-web00001", "vif-adm00001", "vif-noip0001"}; err != nil || !slices.Equal(ids, want) {
		t.Errorf("LocalVifs = %v, %v; want %v", ids, err, want)
	}
}
