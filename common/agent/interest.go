package agent

import (
	"path"
	"slices"
	"strings"

	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/proto"
)

// Events go only where someone listens. A serf user event reaches every
// member, and each member decodes every copy gossiped to it (~45 µs of CPU
// per member per event, bench/PLACE.md), so an event per instance that no
// member subscribes to (hva/instance_started has no subscriber in the
// core) costs the whole cluster for nothing. Every member therefore lists
// its subscription patterns in the serf tag proto.TagEvents, and a
// publisher broadcasts an event only when another member's pattern
// matches it; an event only the publisher itself wants is delivered
// locally. A member without the tag (a build from before the tag, a tool)
// is taken to want every event. Events stay best effort: a subscriber
// whose tag has not reached the publisher yet misses events, as one that
// was down does, and reconciles from the managers' state.

// EncodeSubscriptions is the TagEvents value for patterns: sorted, without
// duplicates, separated by spaces ("" for none).
func EncodeSubscriptions(patterns []string) string {
	ps := slices.Clone(patterns)
	slices.Sort(ps)
	return strings.Join(slices.Compact(ps), " ")
}

// Interest is what the other members of a cluster subscribe to.
type Interest struct {
	// all: some member did not say, so every event goes out.
	all      bool
	patterns []string
}

// NewInterest reads the subscriptions of the alive members other than self.
func NewInterest(self string, members []serf.Member) Interest {
	var in Interest
	seen := map[string]bool{}
	for _, m := range members {
		if m.Name == self || m.Status != serf.StatusAlive {
			continue
		}
		v, ok := m.Tags[proto.TagEvents]
		if !ok {
			in.all = true
			continue
		}
		for _, p := range strings.Fields(v) {
			if !seen[p] {
				seen[p] = true
				in.patterns = append(in.patterns, p)
			}
		}
	}
	return in
}

// Wants reports whether another member subscribes to events named name.
func (in Interest) Wants(name string) bool {
	if in.all {
		return true
	}
	return slices.ContainsFunc(in.patterns, func(p string) bool { return matchEvent(p, name) })
}

// matchEvent is the subscription pattern rule (path.Match syntax).
func matchEvent(pattern, name string) bool {
	ok, _ := path.Match(pattern, name)
	return ok
}
