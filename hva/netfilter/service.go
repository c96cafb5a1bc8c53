// Package netfilter is the hva's security-group service (spec/agents.md §5
// "Netfilter", §3 events): it keeps the host's packet filter equal to what
// the managers' state asks for.
//
// A pass reads the host's whole netfilter data from the managers
// (hva-collector get_netfilter_data), compiles it (hva/filter) and applies
// it in one transaction. Passes run on one goroutine: at start, on every
// relevant event, and periodically. Events are only triggers — whatever
// they say is read again from the managers — so a lost event costs at most
// one period, and a burst of events costs one or two passes.
package netfilter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/proto"
)

// Defaults of Config fields left zero.
const (
	DefaultTable       = "vdc"
	DefaultInterval    = 30 * time.Second
	DefaultRetryMin    = time.Second
	DefaultPassTimeout = 30 * time.Second
)

// Source reads a host's netfilter data from the managers.
type Source interface {
	NetfilterData(ctx context.Context, nodeID string) (*proto.GetNetfilterDataResponse, error)
}

// Caller calls a collector verb on whichever manager accepts
// (*hva/collector.Client).
type Caller interface {
	Call(ctx context.Context, endpoint, verb string, req, resp any) error
}

// CollectorSource is Source over the collector client.
type CollectorSource struct{ C Caller }

// NetfilterData implements Source.
func (s CollectorSource) NetfilterData(ctx context.Context, nodeID string) (*proto.GetNetfilterDataResponse, error) {
	var resp proto.GetNetfilterDataResponse
	if err := s.C.Call(ctx, proto.EndpointHvaCollector, proto.VerbGetNetfilterData,
		proto.GetNetfilterDataRequest{NodeID: nodeID}, &resp); err != nil {
		return nil, err
	}
	return &resp, nil
}

// Subscriber delivers the events matching any of patterns (path.Match
// syntax) to fn (*agent.Agent).
type Subscriber interface {
	SubscribeAll(patterns []string, fn func(ctx context.Context, ev proto.Event)) (func(), error)
}

// Publisher publishes events (*agent.Agent).
type Publisher interface {
	Publish(ctx context.Context, ev proto.Event) error
}

// Config configures the service.
type Config struct {
	NodeID string
	Source Source
	Filter filter.Filter
	// Table names the host's tables (default "vdc").
	Table string
	// Bridges maps a DC network's name to its bridge on this host.
	Bridges map[string]string
	// Events, if set, triggers passes on relevant events; nil leaves the
	// periodic passes only.
	Events Subscriber
	// Publisher, if set, announces the host's vnics appearing and going
	// to their groups' other hosts: <sg>/vnic_joined and <sg>/vnic_left.
	Publisher Publisher
	// Interval is the period of full passes (default 30 s).
	Interval time.Duration
	// RetryMin is the first wait after a failed pass, doubling up to
	// Interval (default 1 s).
	RetryMin time.Duration
	// PassTimeout bounds one pass (default 30 s).
	PassTimeout time.Duration
	Logger      *slog.Logger
}

// Stats describe the passes so far.
type Stats struct {
	Passes   int // successful
	Failures int
	// LastApply is how long the last successful pass's Filter.Apply took,
	// LastPass the whole pass (read, compile, apply).
	LastApply, LastPass time.Duration
	LastAppliedAt       time.Time
	LastError           string // of the last pass; "" if it succeeded
	Vnics, Rules        int    // in the rule set applied last
}

// Service is the netfilter service of one hva.
type Service struct {
	cfg    Config
	logger *slog.Logger
	kick   chan struct{}

	mu       sync.Mutex
	stats    Stats
	interest map[string]bool // ids whose events concern this host; nil: all
	// vnics are the host's vnics with their groups as last read (nil
	// before the first read): new and gone ones are announced.
	vnics map[string][]string
	// last is the rule set applied last; problems what compiling reported.
	last     *filter.Ruleset
	problems string
}

// New checks cfg and returns the service.
func New(cfg Config) (*Service, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("netfilter: node id is empty")
	case cfg.Source == nil || cfg.Filter == nil:
		return nil, errors.New("netfilter: a source and a filter are required")
	case cfg.Interval < 0 || cfg.RetryMin < 0 || cfg.PassTimeout < 0:
		return nil, errors.New("netfilter: intervals and timeouts must not be negative")
	}
	cfg.Table = cmp.Or(cfg.Table, DefaultTable)
	cfg.Interval = cmp.Or(cfg.Interval, DefaultInterval)
	cfg.RetryMin = min(cmp.Or(cfg.RetryMin, DefaultRetryMin), cfg.Interval)
	cfg.PassTimeout = cmp.Or(cfg.PassTimeout, DefaultPassTimeout)
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Service{cfg: cfg, logger: logger.With("component", "netfilter"), kick: make(chan struct{}, 1)}, nil
}

// Trigger asks for a pass soon. Triggers during a pass coalesce into one
// more pass after it.
func (s *Service) Trigger() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Stats returns the pass statistics.
func (s *Service) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Run subscribes to the events, then passes until ctx ends: at once, on
// triggers, every Interval, and sooner after a failure.
func (s *Service) Run(ctx context.Context) error {
	if s.cfg.Events != nil {
		unsub, err := s.cfg.Events.SubscribeAll(s.eventPatterns(), s.onEvent)
		if err != nil {
			return fmt.Errorf("netfilter: subscribe to events: %w", err)
		}
		defer unsub()
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	retry := s.cfg.RetryMin
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
		next := s.cfg.Interval
		if err := s.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.logger.WarnContext(ctx, "netfilter pass failed; retrying", "error", err, "retry_in", retry)
			next, retry = retry, min(2*retry, s.cfg.Interval)
		} else {
			retry = s.cfg.RetryMin
		}
		timer.Reset(next)
	}
}

// eventVerbs are the events that can change a host's rules.
var eventVerbs = map[string]bool{
	proto.EvVnicJoined: true, proto.EvVnicLeft: true, proto.EvJoinedGroup: true, proto.EvLeftGroup: true,
	proto.EvReferencerAdded: true, proto.EvReferencerRemoved: true, proto.EvRulesUpdated: true,
	proto.EvVnicCreated: true, proto.EvVnicDestroyed: true,
}

// eventPatterns are the events that can change this host's rules: the
// group and vnic verbs from anyone, and vnics coming and going on this
// node only. A publisher sends an event only where a subscription matches
// it (common/agent), so naming the verbs instead of "*/*" keeps other
// hosts' <node>/vnic_created and <node>/instance_terminated off the wire.
func (s *Service) eventPatterns() []string {
	var ps []string
	for verb := range eventVerbs {
		if verb == proto.EvVnicCreated || verb == proto.EvVnicDestroyed {
			ps = append(ps, escapePattern(s.cfg.NodeID)+"/"+verb)
		} else {
			ps = append(ps, "*/"+verb)
		}
	}
	slices.Sort(ps)
	return ps
}

// escapePattern quotes path.Match's special characters in a literal.
func escapePattern(lit string) string {
	var b strings.Builder
	for _, r := range lit {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// onEvent triggers a pass when the event names this node, one of its vnics
// or a group its rules use (in the event's name or args). Until a pass
// has read what the host uses, every such event triggers.
func (s *Service) onEvent(_ context.Context, ev proto.Event) {
	id, verb, ok := strings.Cut(ev.Name, "/")
	if !ok || !eventVerbs[verb] {
		return
	}
	if verb == proto.EvVnicCreated || verb == proto.EvVnicDestroyed {
		if id == s.cfg.NodeID {
			s.Trigger()
		}
		return
	}
	s.mu.Lock()
	interest := s.interest
	s.mu.Unlock()
	if interest == nil || interest[id] || slices.ContainsFunc(ev.Args, func(a string) bool { return interest[a] }) {
		s.Trigger()
	}
}

// pass reads, compiles and applies the host's rules.
func (s *Service) pass(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PassTimeout)
	defer cancel()
	start := time.Now()
	data, err := s.cfg.Source.NetfilterData(ctx, s.cfg.NodeID)
	if err != nil {
		s.failed(fmt.Errorf("read netfilter data: %w", err))
		return err
	}
	s.announce(ctx, data)
	rs, problems := filter.Compile(data, filter.Options{Table: s.cfg.Table, Bridges: s.cfg.Bridges})
	s.report(ctx, problems)
	applyStart := time.Now()
	if err := s.cfg.Filter.Apply(ctx, rs); err != nil {
		err = fmt.Errorf("apply rules: %w", err)
		s.failed(err)
		return err
	}
	now := time.Now()
	s.mu.Lock()
	changed := s.last == nil || !reflect.DeepEqual(*s.last, rs)
	s.last = &rs
	s.interest = interestOf(data)
	s.stats.Passes++
	s.stats.LastApply, s.stats.LastPass = now.Sub(applyStart), now.Sub(start)
	s.stats.LastAppliedAt, s.stats.LastError = now, ""
	s.stats.Vnics, s.stats.Rules = len(data.Vnics), rs.RuleCount()
	st := s.stats
	s.mu.Unlock()
	level := slog.LevelDebug
	if changed {
		level = slog.LevelInfo
	}
	s.logger.Log(ctx, level, "netfilter rules applied", "changed", changed, "vnics", st.Vnics, "rules", st.Rules,
		"apply_ms", st.LastApply.Milliseconds(), "pass_ms", st.LastPass.Milliseconds())
	return nil
}

func (s *Service) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Failures++
	s.stats.LastError = err.Error()
}

// report logs what could not be compiled, when it changes.
func (s *Service) report(ctx context.Context, problems []error) {
	text := fmt.Sprint(problems)
	s.mu.Lock()
	same := text == s.problems
	s.problems = text
	s.mu.Unlock()
	if !same {
		for _, p := range problems {
			s.logger.WarnContext(ctx, "netfilter: part of the rules left out", "problem", p)
		}
	}
}

// interestOf is every id whose events may change this host's rules: its
// vnics and every group of the data (theirs and those their rules name).
func interestOf(d *proto.GetNetfilterDataResponse) map[string]bool {
	m := map[string]bool{}
	for _, v := range d.Vnics {
		m[v.ID] = true
		for _, g := range v.SecurityGroups {
			m[g] = true
		}
	}
	for _, g := range d.SecurityGroups {
		m[g.ID] = true
	}
	return m
}

// announce tells the groups of vnics that appeared on or left this host
// since the last read (create/destroy_instance_vnics, spec §2.2): the other
// hosts of those groups, and of groups naming them, then pass. Nothing is
// announced on the first read: the hva does not know what changed while it
// was down, and the other hosts' periodic passes cover it.
func (s *Service) announce(ctx context.Context, d *proto.GetNetfilterDataResponse) {
	now := make(map[string][]string, len(d.Vnics))
	for _, v := range d.Vnics {
		now[v.ID] = v.SecurityGroups
	}
	s.mu.Lock()
	was := s.vnics
	s.vnics = now
	s.mu.Unlock()
	if was == nil || s.cfg.Publisher == nil {
		return
	}
	var evs []proto.Event
	for _, id := range sortedKeys(now) {
		if _, ok := was[id]; !ok {
			for _, sg := range now[id] {
				evs = append(evs, proto.Event{Name: proto.EventVnicJoined(sg), Args: []string{id}})
			}
		}
	}
	for _, id := range sortedKeys(was) {
		if _, ok := now[id]; !ok {
			for _, sg := range was[id] {
				evs = append(evs, proto.Event{Name: proto.EventVnicLeft(sg), Args: []string{id}})
			}
		}
	}
	for _, ev := range evs {
		if err := s.cfg.Publisher.Publish(ctx, ev); err != nil {
			s.logger.WarnContext(ctx, "publish event", "event", ev.Name, "error", err)
		}
	}
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
