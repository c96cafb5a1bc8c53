package handlers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
)

// Self-fencing (HA; proto/ha.go has the protocol). The hva sends the
// managers a heartbeat every FenceConfig.Interval; only the raft leader
// answers it, after confirming its leadership. Contact is the send time of
// the last answered heartbeat. When it is older than FenceConfig.After the
// hva fences itself: it hard-stops every domain (their definitions and
// files stay, for the reconciliation) and starts none until it is in
// contact again. The managers wait longer than that (ha_reschedule_after)
// before they restart its instances elsewhere, so by then nothing of them
// runs here. A heartbeat answer saying Fenced (the managers evacuated the
// host) fences the hva as well, whatever its own timer says.
//
// Back in contact and no longer fenced by the managers, the hva reconciles
// before it starts anything: domains of instances that moved away, ended or
// are unknown are removed; instances the managers still have running here
// are started again; the rest are left to their jobs and the monitor.
//
// While fenced no job starts a domain: the verbs that read an instance
// wait (before reading it) until the fence is lifted, and a domain start
// checks, under the fence lock, that the host has not been fenced since
// the instance was read, so a job that read its instance before a fence
// reads it again afterwards (it may have moved meanwhile).

// DefaultFenceAfter is hva fence_after_ms's default.
const DefaultFenceAfter = 30 * time.Second

// Heartbeater is the managers' heartbeat verb (hva/collector.Client).
type Heartbeater interface {
	Heartbeat(ctx context.Context, req proto.HeartbeatRequest) (proto.HeartbeatResponse, error)
}

// FenceConfig configures the heartbeat and self-fencing.
type FenceConfig struct {
	// Heartbeat reaches the managers; nil turns heartbeats and fencing off.
	Heartbeat Heartbeater
	// After is how long without an answered heartbeat the hva fences
	// itself; 0 disables that (a fence by the managers still applies).
	After time.Duration
	// Interval between heartbeats; default After/6 within [100ms, 5s]
	// (5 s when After is 0).
	Interval time.Duration
	// Now is the clock of contact ages (nil = time.Now, monotonic).
	Now func() time.Time
}

func (c *FenceConfig) setDefaults() error {
	if c.After < 0 || c.Interval < 0 {
		return errors.New("handlers: fence timeout and heartbeat interval must not be negative")
	}
	if c.Heartbeat == nil {
		c.After = 0
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
		if c.After > 0 {
			c.Interval = min(max(c.After/6, 100*time.Millisecond), 5*time.Second)
		}
	}
	if c.After > 0 && c.Interval >= c.After {
		return fmt.Errorf("handlers: heartbeat interval %s must be shorter than the fence timeout %s", c.Interval, c.After)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// fencedError refuses a domain start on a fenced host.
type fencedError struct{ reason string }

func (e *fencedError) Error() string {
	return "this host is fenced (" + e.reason + "): it starts no domain until it is back in contact with the managers"
}

func isFenced(err error) bool {
	var fe *fencedError
	return errors.As(err, &fe)
}

// fencer is the fence state of one hva.
type fencer struct {
	cfg FenceConfig

	// mu is held for writing while the host becomes fenced and for
	// reading around a domain start, so no start overlaps a fence.
	mu          sync.RWMutex
	fenced      bool
	epoch       uint64 // fences so far
	reason      string
	fencedAt    time.Time
	domainsDown bool          // every domain was stopped after the fence
	changed     chan struct{} // closed and replaced on every change

	// cmu guards the contact fields.
	cmu       sync.Mutex
	lastOK    time.Time // send time of the last answered heartbeat
	told      bool      // the last answer said the managers fenced us
	toldWhy   string
	configErr string
	// readEpochs is the epoch an instance's job read it at (startDomain
	// refuses when the host was fenced since).
	readEpochs map[string]uint64
}

// newFencer starts with contact as old as allows startGrace more before
// the fence: an hva starting afresh does not know when its predecessor last
// reached the managers (they may have been counting for a while), and
// domains that survived the restart must not outlive a host that cannot
// reach them.
func newFencer(cfg FenceConfig) *fencer {
	lastOK := cfg.Now()
	if cfg.After > 0 {
		lastOK = lastOK.Add(-cfg.After + min(cfg.After, startGrace*cfg.Interval))
	}
	return &fencer{cfg: cfg, changed: make(chan struct{}), lastOK: lastOK, readEpochs: map[string]uint64{}}
}

// startGrace is how many heartbeat periods a starting hva has to reach the
// managers before it fences itself.
const startGrace = 2

// signalLocked wakes waiters; f.mu is held for writing.
func (f *fencer) signalLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// contactAge is how long ago the last answered heartbeat was sent.
func (f *fencer) contactAge() time.Duration {
	f.cmu.Lock()
	defer f.cmu.Unlock()
	return f.cfg.Now().Sub(f.lastOK)
}

// stale reports whether contact is older than the fence timeout.
func (f *fencer) stale() bool {
	return f.cfg.After > 0 && f.contactAge() > f.cfg.After
}

// wait blocks until the host is not fenced and either at least minEpoch
// fences have happened or contact is fresh (a start refused for stale
// contact waits for the fence that follows, or for a heartbeat that makes
// it unnecessary); it returns the current epoch.
func (f *fencer) wait(ctx context.Context, minEpoch uint64) (uint64, error) {
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		f.mu.RLock()
		fenced, e, ch := f.fenced, f.epoch, f.changed
		f.mu.RUnlock()
		if !fenced && (e >= minEpoch || !f.stale()) {
			return e, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-ch:
		case <-t.C:
		}
	}
}

// enter admits a domain start of an instance read at epoch e: the host is
// not fenced, was not fenced since, and is in contact. The caller starts
// the domain and then calls release.
func (f *fencer) enter(e uint64) (release func(), err error) {
	f.mu.RLock()
	switch {
	case f.fenced:
		err = &fencedError{f.reason}
	case f.epoch != e:
		err = &fencedError{"fenced since the instance was read"}
	case f.stale():
		err = &fencedError{fmt.Sprintf("no manager answered a heartbeat for %s", f.contactAge().Round(time.Millisecond))}
	}
	if err != nil {
		f.mu.RUnlock()
		return nil, err
	}
	return f.mu.RUnlock, nil
}

// state reports the fence state and its epoch.
func (f *fencer) state() (fenced bool, epoch uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.fenced, f.epoch
}

func (f *fencer) setReadEpoch(id string, e uint64) {
	f.cmu.Lock()
	f.readEpochs[id] = e
	f.cmu.Unlock()
}

func (f *fencer) clearReadEpoch(id string) {
	f.cmu.Lock()
	delete(f.readEpochs, id)
	f.cmu.Unlock()
}

// readEpoch is the epoch id's job read it at (the current one when no job
// recorded it).
func (f *fencer) readEpoch(id string) uint64 {
	f.cmu.Lock()
	e, ok := f.readEpochs[id]
	f.cmu.Unlock()
	if !ok {
		_, e = f.state()
	}
	return e
}

// Fenced reports whether the host is fenced and why.
func (h *Handlers) Fenced() (bool, string) {
	f := h.fence
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.fenced, f.reason
}

// RunFence sends heartbeats and keeps the fence state until ctx ends. It
// does nothing without FenceConfig.Heartbeat.
func (h *Handlers) RunFence(ctx context.Context) {
	fc := h.fence.cfg
	if fc.Heartbeat == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(fc.Interval)
		defer t.Stop()
		for {
			h.HeartbeatOnce(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	// Checks run more often than heartbeats so that the fence follows the
	// timeout closely, whatever a heartbeat call is waiting for.
	check := fc.Interval
	if fc.After > 0 {
		check = min(check, max(fc.After/10, 10*time.Millisecond))
	}
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			h.fenceWG.Wait()
			return
		case <-t.C:
		}
		h.FenceCheck(ctx)
	}
}

// HeartbeatOnce sends one heartbeat (bounded by the heartbeat interval)
// and records the answer.
func (h *Handlers) HeartbeatOnce(ctx context.Context) {
	f := h.fence
	if f.cfg.Heartbeat == nil {
		return
	}
	sent := f.cfg.Now()
	cctx, cancel := context.WithTimeout(ctx, f.cfg.Interval)
	resp, err := f.cfg.Heartbeat.Heartbeat(cctx, proto.HeartbeatRequest{
		NodeID: h.cfg.NodeID, FenceAfterMs: f.cfg.After.Milliseconds(),
	})
	cancel()
	if err != nil {
		h.logger.DebugContext(ctx, "heartbeat not answered", "error", err, "contact_age", f.contactAge().String())
		return
	}
	f.cmu.Lock()
	if sent.After(f.lastOK) {
		f.lastOK = sent
	}
	f.told, f.toldWhy = resp.Fenced, resp.Reason
	logConfig := resp.ConfigError != f.configErr
	f.configErr = resp.ConfigError
	f.cmu.Unlock()
	if logConfig && resp.ConfigError != "" {
		h.logger.ErrorContext(ctx, "the managers will not evacuate this host on their own", "problem", resp.ConfigError)
	}
	if resp.Fenced {
		// At once, not at the next check: the managers lift the fence
		// once they have said so, and a later answer must not find the
		// host unfenced with its domains still up.
		h.fenceHost(ctx, "the managers fenced this host: "+resp.Reason)
	}
}

// FenceCheck moves the fence state on: it fences the host when contact is
// older than the fence timeout or the managers say so, retries stopping
// domains that did not stop, and lifts the fence (after reconciling) once
// the host is back in contact and the managers no longer fence it.
func (h *Handlers) FenceCheck(ctx context.Context) {
	f := h.fence
	f.cmu.Lock()
	lastOK, told, toldWhy := f.lastOK, f.told, f.toldWhy
	f.cmu.Unlock()
	age := f.cfg.Now().Sub(lastOK)
	f.mu.RLock()
	fenced, fencedAt, down := f.fenced, f.fencedAt, f.domainsDown
	f.mu.RUnlock()
	switch {
	case !fenced && told:
		h.fenceHost(ctx, "the managers fenced this host: "+toldWhy)
	case !fenced && f.cfg.After > 0 && age > f.cfg.After:
		h.fenceHost(ctx, fmt.Sprintf("no manager answered a heartbeat for %s (fence_after %s)",
			age.Round(time.Millisecond), f.cfg.After))
	case !fenced:
	case !down:
		h.stopDomains(ctx)
	case !told && lastOK.After(fencedAt) && (f.cfg.After == 0 || age <= f.cfg.After):
		if err := h.unfence(ctx); err != nil {
			h.logger.WarnContext(ctx, "back in contact, but the reconciliation failed; staying fenced", "error", err)
		}
	}
}

// fenceHost fences the host and stops its domains.
func (h *Handlers) fenceHost(ctx context.Context, reason string) {
	f := h.fence
	f.mu.Lock()
	if f.fenced {
		f.mu.Unlock()
		return
	}
	f.fenced, f.reason, f.fencedAt, f.domainsDown = true, reason, f.cfg.Now(), false
	f.epoch++
	f.signalLocked()
	f.mu.Unlock()
	h.logger.ErrorContext(ctx, "FENCING THIS HOST: stopping every domain; none starts until the managers are reachable again",
		"node_id", h.cfg.NodeID, "reason", reason)
	h.stopDomains(ctx)
}

// stopDomains hard-stops every running domain, keeping its definition and
// files; domainsDown records whether all are down.
func (h *Handlers) stopDomains(ctx context.Context) {
	doms, err := h.hv.List(ctx)
	if err != nil {
		h.logger.ErrorContext(ctx, "fenced, but the domains cannot be listed; retrying", "error", err)
		return
	}
	var failed []error
	for _, d := range doms {
		if !d.State.Alive() {
			continue
		}
		if err := h.hv.Stop(ctx, d.ID, true); err != nil && !errs.Is(err, errs.NotFound) {
			failed = append(failed, annotate(err, "stop domain "+d.ID))
			continue
		}
		h.logger.ErrorContext(ctx, "fenced: domain stopped", "instance_id", d.ID)
	}
	if len(failed) > 0 {
		h.logger.ErrorContext(ctx, "fenced, but domains did not stop; retrying", "error", errors.Join(failed...))
		return
	}
	f := h.fence
	f.mu.Lock()
	if f.fenced {
		f.domainsDown = true
	}
	f.mu.Unlock()
}

// unfence reconciles the domains with the managers' view and lifts the
// fence; instances the managers still have running here start again, in
// the background so that fence checks go on meanwhile.
func (h *Handlers) unfence(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, reconcileTimeout)
	restart, err := h.reconcileFenced(rctx)
	cancel()
	if err != nil {
		return err
	}
	f := h.fence
	f.mu.Lock()
	f.fenced, f.reason = false, ""
	f.signalLocked()
	f.mu.Unlock()
	h.logger.WarnContext(ctx, "fence lifted: back in contact with the managers", "node_id", h.cfg.NodeID,
		"restarting", restart)
	if len(restart) == 0 {
		return nil
	}
	h.fenceWG.Add(1)
	go func() {
		defer h.fenceWG.Done()
		for _, id := range restart {
			if err := h.restartFenced(ctx, id); err != nil {
				h.logger.WarnContext(ctx, "restart an instance stopped by the fence", "instance_id", id, "error", err)
			}
		}
	}()
	return nil
}

// reconcileTimeout bounds one reconciliation after a fence.
const reconcileTimeout = time.Minute

// reconcileFenced removes the domains the managers no longer place here
// and lists the instances they still have running here. A domain whose
// instance a job holds is left to that job (a job that read its instance
// before the fence reads it again before it starts anything).
func (h *Handlers) reconcileFenced(ctx context.Context) (restart []string, err error) {
	doms, err := h.hv.List(ctx)
	if err != nil {
		return nil, annotate(err, "list domains")
	}
	for _, d := range doms {
		unlock, ok := h.locks.TryLock(d.ID)
		if !ok {
			continue
		}
		r, err := h.reconcileDomain(ctx, d.ID)
		unlock()
		if err != nil {
			return nil, err
		}
		if r {
			restart = append(restart, d.ID)
		}
	}
	return restart, nil
}

func (h *Handlers) reconcileDomain(ctx context.Context, id string) (restart bool, err error) {
	v, err := h.coll.GetInstance(ctx, id)
	var why string
	switch {
	case errs.Is(err, errs.UnknownInstance):
		h.logger.WarnContext(ctx, "after the fence: removing the domain of an instance the managers do not know", "instance_id", id)
		return false, h.teardown(ctx, id)
	case err != nil:
		return false, annotate(err, "get instance "+id)
	case v.State == proto.InstanceMigrating && v.MigrationDest != nil && v.MigrationDest.NodeID == h.cfg.NodeID:
		return false, nil
	case v.State == proto.InstanceStopped:
		h.logger.WarnContext(ctx, "after the fence: removing the domain of a stopped instance", "instance_id", id)
		return false, h.teardown(ctx, id)
	case v.State == proto.InstanceTerminated:
		why = "it is terminated"
	case v.HostNode != nil && v.HostNode.NodeID != h.cfg.NodeID:
		why = "it moved to " + v.HostNode.NodeID
	case v.HostNode == nil:
		return false, nil
	default:
		st, err := h.domainState(ctx, id)
		if err != nil {
			return false, err
		}
		return v.State == proto.InstanceRunning && !st.Alive(), nil
	}
	h.logger.WarnContext(ctx, "after the fence: removing a domain that must not run here", "instance_id", id, "reason", why)
	return false, h.remove(ctx, v, true)
}

// restartFenced starts again the domain of an instance the managers still
// have running here (the fence stopped it; nobody moved it). It does not
// wait for a new fence to be lifted: the fence check runs that.
func (h *Handlers) restartFenced(ctx context.Context, id string) error {
	unlock, err := h.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	_, e := h.fence.state()
	v, err := h.coll.GetInstance(ctx, id)
	if err != nil {
		return annotate(err, "get instance "+id)
	}
	st, err := h.domainState(ctx, id)
	if err != nil || v.State != proto.InstanceRunning || v.HostNode == nil || v.HostNode.NodeID != h.cfg.NodeID || st.Alive() {
		return err
	}
	h.fence.setReadEpoch(id, e)
	defer h.fence.clearReadEpoch(id)
	h.logger.WarnContext(ctx, "after the fence: starting again an instance the managers still run here", "instance_id", id)
	return h.startDomain(ctx, v, false)
}
