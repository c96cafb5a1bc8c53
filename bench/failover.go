package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vdc-project/vdc/manager/state"
)

// FailoverOptions configure the `failover` benchmark.
type FailoverOptions struct {
	Trials   int           // fresh cluster per trial
	Writers  int           // client goroutines POSTing through the API
	Before   time.Duration // load before the leader is killed
	After    time.Duration // load kept up after the first write acknowledged post-kill
	Resource string        // as APIOptions.Resource
	// Timeouts are the managers' raft timeouts.
	Timeouts RaftTimeouts
}

// DefaultFailoverOptions is the full run.
func DefaultFailoverOptions() FailoverOptions {
	return FailoverOptions{Trials: 5, Writers: 16, Before: 2 * time.Second, After: 500 * time.Millisecond, Resource: ResourceAuto}
}

// ShortFailoverOptions is the smoke run of `--short`.
func ShortFailoverOptions() FailoverOptions {
	o := DefaultFailoverOptions()
	o.Trials = 2
	o.Before = 500 * time.Millisecond
	o.After = 200 * time.Millisecond
	return o
}

// FailoverTrial is one kill of a leader under write load.
type FailoverTrial struct {
	Killed string `json:"killed"`
	// FailoverMs is from just before Shutdown() of the leader to the first
	// acknowledgement of a write that was sent after that moment.
	FailoverMs float64 `json:"failover_ms"`
	// LeaderVisibleMs is until a survivor reports IsLeader (polled every 2 ms).
	LeaderVisibleMs float64 `json:"new_leader_visible_ms"`
	ShutdownMs      float64 `json:"shutdown_call_ms"`
	AckedBeforeKill int     `json:"acked_before_kill"`
	// ElectionsBeforeKill is how much the raft term rose under the load
	// before the kill: elections nobody asked for.
	ElectionsBeforeKill uint64 `json:"elections_before_kill"`
	Acked               int    `json:"acked_writes"`
	FailedRequests      int    `json:"failed_requests"`
	// Lost counts acknowledged writes missing from at least one survivor
	// after the survivors had lostWait of quiet to catch up.
	Lost int `json:"lost_acknowledged_writes"`
}

// FailoverResult is the `failover` benchmark's table.
type FailoverResult struct {
	Options  FailoverOptions `json:"-"`
	Resource string          `json:"resource"`
	Trials   []FailoverTrial `json:"trials"`
	// FailoverMs is min / median / max of the trials' FailoverMs.
	FailoverMs Summary `json:"failover_ms"`
	// P99Ms is the nearest-rank p99 of the trials: the maximum for < 100 trials.
	P99Ms float64 `json:"failover_p99_ms"`
	Lost  int     `json:"lost_acknowledged_writes"`
}

// failoverTimeout bounds the wait for the first write acknowledged after the kill.
const failoverTimeout = 30 * time.Second

// lostWait is how long survivors get to apply every acknowledged write
// before a missing one counts as lost.
const lostWait = 10 * time.Second

// retryPause is a failed writer's pause before its next attempt; the 503's
// Retry-After: 1 is ignored so the measurement sees the first moment writes
// succeed again.
const retryPause = 5 * time.Millisecond

// Failover kills the leader of a 3-manager cluster under write load through
// the API and measures how long writes fail and whether any acknowledged
// write was lost.
func (r *Runner) Failover(ctx context.Context, o FailoverOptions) (*FailoverResult, error) {
	out := &FailoverResult{Options: o}
	var times []float64
	for i := range o.Trials {
		r.progress("failover: trial %d of %d: forming 3 managers", i+1, o.Trials)
		tr, resName, err := r.failoverTrial(ctx, o)
		if err != nil {
			return out, fmt.Errorf("failover trial %d: %w", i+1, err)
		}
		out.Resource = resName
		out.Trials = append(out.Trials, tr)
		out.Lost += tr.Lost
		times = append(times, tr.FailoverMs)
		r.progress("failover: trial %d: %.0f ms, %d acknowledged, %d lost", i+1, tr.FailoverMs, tr.Acked, tr.Lost)
	}
	out.FailoverMs = Summarize(times)
	durs := make([]time.Duration, len(times))
	for i, t := range times {
		durs[i] = time.Duration(t * float64(time.Millisecond))
	}
	slices.Sort(durs)
	out.P99Ms = ms(Percentile(durs, 99))
	return out, nil
}

type ackedWrite struct {
	id         string
	sent, done time.Time
}

func (r *Runner) failoverTrial(ctx context.Context, o FailoverOptions) (FailoverTrial, string, error) {
	var tr FailoverTrial
	c, err := StartCluster(ctx, r.Dir, 3, true, o.Timeouts.apply)
	if err != nil {
		return tr, "", err
	}
	defer c.Close()
	client := newHTTPClient(o.Writers)
	defer client.CloseIdleConnections()
	res, err := resolveResource(ctx, client, apiBase(c.Leader().URL), o.Resource)
	if err != nil {
		return tr, "", err
	}

	term0 := c.Terms()
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var (
		killNano  atomic.Int64 // 0 until the kill
		firstMu   sync.Mutex
		firstAck  time.Time // earliest ack of a write sent after the kill
		firstOnce sync.Once
		firstCh   = make(chan struct{})
		acks      = make([][]ackedWrite, o.Writers)
		failed    = make([]int, o.Writers)
		wg        sync.WaitGroup
	)
	bases := make([]string, len(c.Managers))
	for i, m := range c.Managers {
		bases[i] = apiBase(m.URL)
	}
	for w := range o.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; seq < maxOpsPerWorker && loadCtx.Err() == nil; seq++ {
				// Rotate over all managers like a client with the full list:
				// followers forward, a dead one refuses the connection.
				base := bases[(w+seq)%len(bases)]
				sent := time.Now()
				id, err := res.create(loadCtx, client, base, w*maxOpsPerWorker+seq)
				done := time.Now()
				if err != nil {
					if loadCtx.Err() != nil {
						return
					}
					failed[w]++
					time.Sleep(retryPause)
					continue
				}
				acks[w] = append(acks[w], ackedWrite{id: id, sent: sent, done: done})
				if kn := killNano.Load(); kn != 0 && sent.UnixNano() >= kn {
					firstMu.Lock()
					if firstAck.IsZero() || done.Before(firstAck) {
						firstAck = done
					}
					firstMu.Unlock()
					firstOnce.Do(func() { close(firstCh) })
				}
			}
		}()
	}
	stopWriters := func() error {
		stopLoad()
		if !waitTimeout(&wg, stopGrace) {
			return fmt.Errorf("writers did not stop within %s", stopGrace)
		}
		return nil
	}

	if err := sleepCtx(ctx, o.Before); err != nil {
		_ = stopWriters()
		return tr, "", err
	}
	leader := c.Leader()
	if leader == nil {
		_ = stopWriters()
		return tr, "", errors.New("no leader at the moment of the kill")
	}
	tr.Killed = leader.Srv.NodeName()
	tr.ElectionsBeforeKill = c.Terms() - term0

	// Watch for a survivor that leads, from the kill on.
	visibleCh := make(chan time.Duration, 1)
	killAt := time.Now()
	go func() {
		for time.Since(killAt) < failoverTimeout && loadCtx.Err() == nil {
			for _, m := range c.Managers {
				if m != leader && m.Srv.IsLeader() {
					visibleCh <- time.Since(killAt)
					return
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		visibleCh <- -1
	}()
	killNano.Store(killAt.UnixNano())
	c.Kill(leader)
	tr.ShutdownMs = ms(time.Since(killAt))

	timer := time.NewTimer(failoverTimeout)
	select {
	case <-firstCh:
	case <-timer.C:
	case <-ctx.Done():
	}
	timer.Stop()
	_ = sleepCtx(ctx, o.After)
	if err := stopWriters(); err != nil {
		return tr, "", err
	}
	tr.LeaderVisibleMs = ms(<-visibleCh)
	firstMu.Lock()
	if firstAck.IsZero() {
		firstMu.Unlock()
		return tr, "", fmt.Errorf("no write succeeded within %s of killing the leader", failoverTimeout)
	}
	tr.FailoverMs = ms(firstAck.Sub(killAt))
	firstMu.Unlock()

	var all []ackedWrite
	for w := range acks {
		all = append(all, acks[w]...)
		tr.FailedRequests += failed[w]
	}
	tr.Acked = len(all)
	for _, a := range all {
		if a.done.Before(killAt) {
			tr.AckedBeforeKill++
		}
	}
	if tr.AckedBeforeKill == 0 {
		return tr, "", errors.New("no write was acknowledged before the kill; the load did not run")
	}
	var survivors []*state.Store
	for _, m := range c.Managers {
		if !m.Dead {
			survivors = append(survivors, m.Srv.Store())
		}
	}
	tr.Lost = countLost(ctx, survivors, res.kind, all)
	return tr, res.name, nil
}

// countLost waits up to lostWait for every acknowledged write to be in every
// survivor's store and returns how many are still missing from at least one.
func countLost(ctx context.Context, stores []*state.Store, kind string, acked []ackedWrite) int {
	deadline := time.Now().Add(lostWait)
	for {
		missing := 0
		for _, a := range acked {
			for _, s := range stores {
				var ok bool
				_ = s.View(func(tx *state.Tx) error { ok = tx.Exists(kind, a.id); return nil })
				if !ok {
					missing++
					break
				}
			}
		}
		if missing == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return missing
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WriteTable prints the result in the style of limits.md.
func (res *FailoverResult) WriteTable(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "## failover: 3 managers, leader killed under API write load (resource %s)\n\n", res.Resource)
	fmt.Fprintf(w, "Each trial: fresh cluster (raft %s; FastGossip);\n", o.Timeouts)
	fmt.Fprintf(w, "%d writers POST through the API rotating over all 3 managers (followers forward); after %s the leader gets\n", o.Writers, o.Before)
	fmt.Fprintf(w, "srv.Shutdown() + its HTTP server closed (no leave). failover = kill → first ack of a write sent after the kill.\n")
	fmt.Fprintf(w, "lost = acknowledged writes missing from a survivor's store after %s of quiet.\n\n", lostWait)
	fmt.Fprintln(w, "| Trial | killed | failover ms | new leader visible ms | Shutdown() ms | acked (before kill) | failed requests | lost acked writes | elections before the kill |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for i, t := range res.Trials {
		fmt.Fprintf(w, "| %d | %s | %.0f | %.0f | %.0f | %d (%d) | %d | %d | %d |\n",
			i+1, t.Killed, t.FailoverMs, t.LeaderVisibleMs, t.ShutdownMs, t.Acked, t.AckedBeforeKill, t.FailedRequests, t.Lost, t.ElectionsBeforeKill)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Trials | failover ms min / med / max | p99 ms | lost acked writes | ref. limits.md §4 (med / max ms) |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	fmt.Fprintf(w, "| %d | %s / %s / %s | %.0f (nearest rank; = max for < 100 trials) | %d | 1000 ms timeouts %d / %d; 200 ms timeouts %d / %d |\n\n",
		len(res.Trials), fmtNum(res.FailoverMs.Min, 0), fmtNum(res.FailoverMs.Median, 0), fmtNum(res.FailoverMs.Max, 0),
		res.P99Ms, res.Lost, refFailover1s, refFailover1sMax, refFailover200, refFailover200Max)
}
