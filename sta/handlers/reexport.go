package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/sta/target"
)

// ReexportResult says what a re-export did.
type ReexportResult struct {
	// Listed is false when the managers could not be asked (nothing done).
	Listed bool
	// Exported counts the volumes served (already or again).
	Exported int
	// Missing lists volumes the managers have on this node whose data is
	// not in the backing store.
	Missing []string
	// Orphans lists targets under this node's IQN prefix that no volume
	// the managers list needs. They are left alone: a create or delete job
	// may be working on them.
	Orphans []string
}

// Reexport makes every volume the managers list for this node (available,
// attaching, attached, detaching) served by the target again: tgtd keeps
// no configuration across its restarts, and a volume exported before a
// crash must stay reachable after it. It is idempotent. Errors of single
// volumes are joined; the others are still exported.
func (h *Handlers) Reexport(ctx context.Context) (ReexportResult, error) {
	var res ReexportResult
	vols, err := h.coll.AvailableVolumes(ctx, h.cfg.NodeID)
	if err != nil {
		return res, annotate(err, "list the volumes of "+h.cfg.NodeID)
	}
	res.Listed = true
	// One listing of the targets: most volumes are served already, and
	// asking tgtd per volume would read every target once per volume.
	exports, err := h.tg.List(ctx, "")
	if err != nil {
		return res, annotate(err, "list targets")
	}
	served := map[string]target.Export{}
	for _, e := range exports {
		served[e.IQN] = e
	}
	want := map[string]bool{}
	var errList []error
	for _, v := range vols {
		iqn := h.iqn(v.ID)
		if v.Device != nil && v.Device.IQN != "" {
			iqn = v.Device.IQN // the name the hypervisors know
		}
		want[iqn] = true
		missing, err := h.reexportOne(ctx, v.ID, iqn, served[iqn])
		switch {
		case missing:
			res.Missing = append(res.Missing, v.ID)
			errList = append(errList, errs.New(errs.NotFound, "volume %s is %s on this node, but its data is not in the %s store",
				v.ID, v.State, h.store.Driver()))
		case err != nil:
			errList = append(errList, err)
		default:
			res.Exported++
		}
	}
	for _, e := range exports {
		if target.HasPrefix(e.IQN, h.cfg.IQNPrefix) && !want[e.IQN] {
			res.Orphans = append(res.Orphans, e.IQN)
		}
	}
	return res, errors.Join(errList...)
}

// reexportOne exports a volume unless cur (its target as listed) serves it
// already.
func (h *Handlers) reexportOne(ctx context.Context, id, iqn string, cur target.Export) (missing bool, err error) {
	unlock, err := h.locks.Lock(ctx, id)
	if err != nil {
		return false, err
	}
	defer unlock()
	bv, err := h.store.Get(ctx, id)
	if errs.Is(err, errs.NotFound) {
		return true, nil
	}
	if err != nil {
		return false, annotate(err, "look for volume "+id)
	}
	if cur.Path == bv.Path && cur.LUN == target.LUN && len(cur.Initiators) > 0 {
		return false, nil
	}
	if _, err := h.tg.Export(ctx, iqn, bv.Path); err != nil {
		return false, annotate(err, "re-export volume "+id)
	}
	return false, nil
}

// RunReexport re-exports at once, then again every interval (0: only
// once) until ctx ends, logging what it did. While the managers cannot be
// asked (the sta may start before them) it retries sooner, with backoff.
func (h *Handlers) RunReexport(ctx context.Context, interval time.Duration) {
	backoff := 500 * time.Millisecond
	for {
		res, err := h.Reexport(ctx)
		if !res.Listed {
			if ctx.Err() != nil {
				return
			}
			h.logger.InfoContext(ctx, "re-export: the managers did not answer; retrying", "error", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = 500 * time.Millisecond
		if err != nil {
			h.logger.ErrorContext(ctx, "re-export", "exported", res.Exported, "missing", res.Missing, "error", err)
		} else {
			h.logger.InfoContext(ctx, "re-export", "exported", res.Exported)
		}
		if len(res.Orphans) > 0 {
			h.logger.WarnContext(ctx, "targets no volume of this node needs", "iqns", res.Orphans)
		}
		if interval <= 0 || !sleep(ctx, interval) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
