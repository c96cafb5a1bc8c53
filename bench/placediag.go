package bench

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/manager/cluster"
)

// countingHandler is an slog handler that writes nothing and counts the
// records of a few messages. The scheduler daemon logs one record per plan
// rejected as stale and per round in which no manager accepted a call,
// which is how the benchmark learns them without changing the daemon.
type countingHandler struct {
	c *msgCounts
}

type msgCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// Messages of the scheduler daemon that the benchmark counts.
const (
	msgStalePlan   = "plan rejected as stale; planning again"
	msgNoManager   = "no manager accepted the call; retrying"
	msgPlaced      = "instance placed"
	msgPlaceFailed = "scheduling failed; instance terminated"
)

func newCountingLogger() (*slog.Logger, *msgCounts) {
	c := &msgCounts{n: map[string]int{}}
	return slog.New(countingHandler{c: c}), c
}

func (h countingHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h countingHandler) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case msgStalePlan, msgNoManager, msgPlaced, msgPlaceFailed:
		h.c.mu.Lock()
		h.c.n[r.Message]++
		h.c.mu.Unlock()
	}
	return nil
}

func (h countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingHandler) WithGroup(string) slog.Handler      { return h }

func (c *msgCounts) get(msg string) int {
	if c == nil {
		return 0 // scheduler in another process: not counted
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

// memberWatch samples serf membership every memberWatchEvery: how often
// the manager saw a member that was alive as not alive (suspected members
// stay alive in serf; these were declared failed), and how often the
// scheduler daemon lost sight of the manager the same way. On loopback
// nothing is ever lost, so every such transition is a false failure
// detection: gossip that did not get CPU in time.
type memberWatch struct {
	mu sync.Mutex
	// FailedAtManager counts alive → not alive transitions of agents in
	// the manager's member list; ManagerLostByScheduler those of the
	// manager in the scheduler's list.
	failedAtManager        int
	managerLostByScheduler int
	minAlive               int // fewest agents alive at the manager at once

	stop context.CancelFunc
	done chan struct{}
}

const memberWatchEvery = 100 * time.Millisecond

// watchedMember is a member as the watch sees it.
type watchedMember struct {
	Name, Status, Role string
}

func startMemberWatch(mgr *cluster.Server, sched *agent.Agent, agents int) *memberWatch {
	mgrName := mgr.NodeName()
	members := func() []watchedMember {
		var out []watchedMember
		for _, m := range mgr.Members() {
			out = append(out, watchedMember{Name: m.Name, Status: m.Status, Role: m.Tags[cluster.TagRole]})
		}
		return out
	}
	schedMembers := func() []watchedMember {
		var out []watchedMember
		for _, m := range sched.Members() {
			out = append(out, watchedMember{Name: m.Name, Status: m.Status, Role: m.Role})
		}
		return out
	}
	return watchMembers(members, schedMembers, []string{mgrName}, agents, memberWatchEvery)
}

// watchMembers samples the manager's member list (members) and, when
// schedMembers is not nil, the scheduler's, every period; managers are the
// managers' member names.
func watchMembers(members, schedMembers func() []watchedMember, managers []string, agents int, period time.Duration) *memberWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &memberWatch{stop: cancel, done: make(chan struct{}), minAlive: agents}
	isManager := func(name string) bool { return slices.Contains(managers, name) }
	go func() {
		defer close(w.done)
		alive := map[string]bool{}
		mgrName := managers[0]
		mgrAlive := true
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ms := members()
			if ms == nil {
				continue // not answered this time
			}
			n, failed := 0, 0
			for _, m := range ms {
				if isManager(m.Name) {
					continue
				}
				up := m.Status == "alive"
				if up {
					n++
				} else if was, ok := alive[m.Name]; !ok || was {
					failed++
				}
				alive[m.Name] = up
			}
			lost := 0
			seen := schedMembers == nil
			var sms []watchedMember
			if schedMembers != nil {
				sms = schedMembers()
			}
			for _, m := range sms {
				if m.Name != mgrName {
					continue
				}
				seen = true
				up := m.Status == "alive"
				if !up && mgrAlive {
					lost++
				}
				mgrAlive = up
			}
			if !seen && mgrAlive {
				lost++
				mgrAlive = false
			}
			w.mu.Lock()
			w.failedAtManager += failed
			w.managerLostByScheduler += lost
			w.minAlive = min(w.minAlive, n)
			w.mu.Unlock()
		}
	}()
	return w
}

// counts returns the totals so far.
func (w *memberWatch) counts() (failedAtManager, managerLost, minAlive int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failedAtManager, w.managerLostByScheduler, w.minAlive
}

// resetMin restarts the minimum of alive agents (per phase).
func (w *memberWatch) resetMin(agents int) {
	w.mu.Lock()
	w.minAlive = agents
	w.mu.Unlock()
}

func (w *memberWatch) Stop() {
	w.stop()
	<-w.done
}
