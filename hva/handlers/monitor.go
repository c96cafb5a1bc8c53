package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

// RunMonitor runs the instance monitor every MonitorInterval until ctx ends.
// A pass that fails (no manager reachable, the hypervisor erring) is logged
// and the next one tries again.
func (h *Handlers) RunMonitor(ctx context.Context) {
	t := time.NewTicker(h.cfg.MonitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, h.cfg.MonitorPassTimeout)
		err := h.MonitorOnce(pctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			h.logger.WarnContext(ctx, "instance monitor pass failed", "error", err)
		}
	}
}

// MonitorOnce compares the managers' view of this node's instances (those
// running, halting or shuttingdown) with the hypervisor's domains and
// repairs the differences (spec §5 "Instance monitor", §8):
//
//   - running, domain gone or shut off (the VM died) → halted/offline, event
//     hva/fault_instance;
//   - running with status not online while the domain runs → status online;
//   - halting, domain not running (the guest powered itself off, or a
//     poweroff job was lost) → halted/offline, event hva/instance_turnedoff;
//   - shuttingdown for longer than ForceTerminateAfter (a terminate job that
//     never finished) → the domain removed and the instance terminated
//     (the source forced this at once, ignoring its own wait setting);
//   - a domain whose instance the managers have terminated, stopped, placed
//     elsewhere (and is not migrating here) or never heard of → removed
//     (what a failed teardown or a failed migration left),
//     once two passes in a row found it so: a manager answering from a
//     replica a moment behind must not get a fresh VM killed.
//
// An instance a job is working on is skipped (the job owns it); every
// repair re-reads the instance and the domain under the instance's lock
// first, so a state that changed since the listing is not overwritten.
func (h *Handlers) MonitorOnce(ctx context.Context) error {
	h.monMu.Lock()
	defer h.monMu.Unlock()
	// A fenced host's domains are down on purpose: the fence's
	// reconciliation, not the monitor, decides what becomes of them.
	fenced, epoch := h.fence.state()
	if fenced {
		return nil
	}
	h.monEpoch = epoch
	entries, err := h.coll.InstanceMonitorData(ctx, h.cfg.NodeID)
	if err != nil {
		return annotate(err, "get instance monitor data")
	}
	doms, err := h.hv.List(ctx)
	if err != nil {
		return annotate(err, "list domains")
	}
	byID := make(map[string]hypervisor.Domain, len(doms))
	for _, d := range doms {
		byID[d.ID] = d
	}
	var errList []error
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		seen[e.InstanceID] = true
		d, ok := byID[e.InstanceID]
		alive := ok && d.State.Alive()
		if !h.needsRepair(e.State, e.Status, alive, e.UpdatedAt) {
			continue
		}
		if err := h.repair(ctx, e.InstanceID); err != nil {
			errList = append(errList, err)
		}
	}
	suspects := map[string]bool{}
	for _, d := range doms {
		if seen[d.ID] {
			continue
		}
		suspect, err := h.checkOrphan(ctx, d.ID, h.suspects[d.ID])
		if err != nil {
			errList = append(errList, err)
		}
		if suspect {
			suspects[d.ID] = true
		}
	}
	h.suspects = suspects
	return errors.Join(errList...)
}

// needsRepair tells from the listing alone whether an instance needs a
// closer look.
func (h *Handlers) needsRepair(state, status string, alive bool, updatedAt time.Time) bool {
	switch state {
	case proto.InstanceRunning:
		return !alive || status != proto.StatusOnline
	case proto.InstanceHalting:
		return !alive
	case proto.InstanceShuttingDown:
		return h.cfg.Now().Sub(updatedAt) >= h.cfg.ForceTerminateAfter
	}
	return false
}

// repair re-checks one instance under its lock and repairs it.
func (h *Handlers) repair(ctx context.Context, id string) error {
	unlock, ok := h.locks.TryLock(id)
	if !ok {
		return nil
	}
	defer unlock()
	v, err := h.coll.GetInstance(ctx, id)
	if errs.Is(err, errs.UnknownInstance) {
		return nil
	}
	if err != nil {
		return annotate(err, "get instance "+id)
	}
	if v.HostNode != nil && v.HostNode.NodeID != h.cfg.NodeID {
		return nil
	}
	st, err := h.domainState(ctx, id)
	if err != nil {
		return err
	}
	if !h.needsRepair(v.State, v.Status, st.Alive(), v.UpdatedAt) {
		return nil
	}
	if fenced, e := h.fence.state(); fenced || e != h.monEpoch {
		return nil // fenced during the pass: the domain died of the fence
	}
	domain := string(st)
	if domain == "" {
		domain = "not defined"
	}
	switch v.State {
	case proto.InstanceRunning:
		if st.Alive() {
			h.logger.InfoContext(ctx, "instance runs again; marking it online", "instance_id", id, "status", v.Status)
			return h.update(ctx, id, "", proto.StatusOnline)
		}
		h.logger.WarnContext(ctx, "instance's domain died; marking it halted", "instance_id", id, "domain", domain)
		if err := h.transition(ctx, id, proto.InstanceRunning, proto.InstanceHalted, proto.StatusOffline); err != nil {
			return err
		}
		h.publish(ctx, id, proto.EventFaultInstance)
	case proto.InstanceHalting:
		h.logger.InfoContext(ctx, "halting instance's domain is off; marking it halted", "instance_id", id, "domain", domain)
		if err := h.transition(ctx, id, proto.InstanceHalting, proto.InstanceHalted, proto.StatusOffline); err != nil {
			return err
		}
		h.publish(ctx, id, proto.EventInstanceTurnedOff)
	case proto.InstanceShuttingDown:
		h.logger.WarnContext(ctx, "instance stuck shutting down; terminating it", "instance_id", id,
			"since", v.UpdatedAt, "domain", domain)
		return h.finishTerminate(ctx, v)
	}
	return nil
}

// checkOrphan finds out whether the managers place a domain's instance on
// this node (any more); domains of halted, starting or pending instances are
// this node's and stay. An orphan is removed when confirm says the previous
// pass found it orphaned too; otherwise it is reported as a suspect.
func (h *Handlers) checkOrphan(ctx context.Context, id string, confirm bool) (suspect bool, err error) {
	unlock, ok := h.locks.TryLock(id)
	if !ok {
		return false, nil
	}
	defer unlock()
	v, err := h.coll.GetInstance(ctx, id)
	var why string
	switch {
	case errs.Is(err, errs.UnknownInstance):
		why = "the managers do not know the instance"
	case err != nil:
		return false, annotate(err, "get instance "+id)
	case v.State == proto.InstanceTerminated || v.State == proto.InstanceStopped:
		why = "the instance is " + v.State
	case v.State == proto.InstanceMigrating && v.MigrationDest != nil && v.MigrationDest.NodeID == h.cfg.NodeID:
		return false, nil // it is coming here: the domain waits for its migration
	case v.HostNode != nil && v.HostNode.NodeID != h.cfg.NodeID:
		why = "the instance is placed on " + v.HostNode.NodeID
	default:
		return false, nil
	}
	if !confirm {
		h.logger.InfoContext(ctx, "domain looks left behind; removing it if the next pass agrees",
			"instance_id", id, "reason", why)
		return true, nil
	}
	h.logger.WarnContext(ctx, "removing a domain left behind", "instance_id", id, "reason", why)
	if v == nil || v.State == proto.InstanceStopped {
		// Unknown: nothing but the domain to go by. Stopped: its files
		// stay for the next start.
		return false, h.teardown(ctx, id)
	}
	return false, h.remove(ctx, v, true)
}
