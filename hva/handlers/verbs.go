package handlers

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
)

// withInstance locks the instance, reads it from the managers and runs fn.
// On a fenced host it waits for the fence to be lifted first; fn refused a
// domain start because the host was fenced meanwhile runs again, on a
// fresh read, once the fence is lifted (fence.go).
func (h *Handlers) withInstance(ctx context.Context, id string, fn func(v *proto.InstanceView) error) error {
	return h.readInstance(ctx, id, true, fn)
}

func (h *Handlers) readInstance(ctx context.Context, id string, here bool, fn func(v *proto.InstanceView) error) error {
	if id == "" {
		return errs.New(errs.UndefinedInstanceID, "job without an instance id")
	}
	var minEpoch uint64
	for {
		epoch, err := h.fence.wait(ctx, minEpoch)
		if err != nil {
			return err
		}
		err = h.lockedRead(ctx, id, here, epoch, fn)
		if !isFenced(err) || ctx.Err() != nil {
			return err
		}
		h.logger.WarnContext(ctx, "the host was fenced while the job ran; it goes on once the fence is lifted",
			"instance_id", id, "error", err)
		minEpoch = epoch + 1
	}
}

func (h *Handlers) lockedRead(ctx context.Context, id string, here bool, epoch uint64, fn func(v *proto.InstanceView) error) error {
	unlock, err := h.locks.Lock(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	v, err := h.coll.GetInstance(ctx, id)
	if err != nil {
		return annotate(err, "get instance "+id)
	}
	if here && v.HostNode != nil && v.HostNode.NodeID != "" && v.HostNode.NodeID != h.cfg.NodeID {
		return errs.New(errs.IncompatibleHostNode, "instance %s is placed on %s, not on this node %s",
			id, v.HostNode.NodeID, h.cfg.NodeID)
	}
	h.fence.setReadEpoch(id, epoch)
	defer h.fence.clearReadEpoch(id)
	return fn(v)
}

func wrongState(v *proto.InstanceView, verb string, want ...string) error {
	return errs.New(errs.InvalidInstanceState, "instance %s is %s; %s wants it %s",
		v.ID, v.State, verb, strings.Join(want, " or "))
}

// ---- boot: local-store-handle / hva-handle run_local_store, run_vol_store ----

// localStoreRunLocalStore is the job the scheduler's plan enqueues. The
// source splits a local boot in two jobs (deploy the volumes here, then
// hva-handle run_local_store boots); with nothing to deploy yet both phases
// run in this one job, from pending. State "initializing" of the source is
// not used: starting covers the whole boot.
func (h *Handlers) localStoreRunLocalStore(ctx context.Context, req proto.LocalStoreRunLocalStoreRequest) (proto.LocalStoreRunLocalStoreResponse, error) {
	return proto.LocalStoreRunLocalStoreResponse{}, h.boot(ctx, req.InstanceID, "run_local_store")
}

// hvaRunLocalStore is the second phase of a local boot (spec §2.2); it boots
// the same way, so a job submitted by a later local-store phase works.
func (h *Handlers) hvaRunLocalStore(ctx context.Context, req proto.HvaRunLocalStoreRequest) (proto.HvaRunLocalStoreResponse, error) {
	return proto.HvaRunLocalStoreResponse{}, h.boot(ctx, req.InstanceID, "run_local_store")
}

// boot: pending → starting → (define, start) → running/online, event
// hva/instance_started. A failed boot removes the domain and terminates the
// instance (the manager finalizes it, releasing what it held); the job fails
// with the cause.
func (h *Handlers) boot(ctx context.Context, id, verb string) error {
	return h.withInstance(ctx, id, func(v *proto.InstanceView) error {
		return h.bootLocked(ctx, v, verb, nil)
	})
}

// bootHooks are what a boot does besides the instance's own states (the
// shared volumes of run_vol_store). Both are idempotent: a redelivered job
// runs them again.
type bootHooks interface {
	// starting runs once the instance is starting, before the domain starts.
	starting(ctx context.Context, v *proto.InstanceView) error
	// running runs once the instance is running.
	running(ctx context.Context, v *proto.InstanceView) error
}

// bootLocked is boot of an instance read and locked by the caller.
func (h *Handlers) bootLocked(ctx context.Context, v *proto.InstanceView, verb string, hooks bootHooks) error {
	id := v.ID
	switch v.State {
	case proto.InstanceRunning:
		h.logger.InfoContext(ctx, "instance already running", "instance_id", id)
		if hooks != nil {
			// The reports after the boot may have been cut short.
			return hooks.running(ctx, v)
		}
		return nil
	case proto.InstancePending:
		if err := h.transition(ctx, id, proto.InstancePending, proto.InstanceStarting, ""); err != nil {
			return err
		}
	case proto.InstanceStarting:
		// A redelivery: carry on where the first run stopped.
	default:
		return wrongState(v, verb, proto.InstancePending, proto.InstanceStarting)
	}
	if hooks != nil {
		if err := hooks.starting(ctx, v); err != nil {
			return err
		}
	}
	if err := h.startDomain(ctx, v, true); err != nil {
		if ctx.Err() != nil || isFenced(err) {
			// Interrupted (shutdown, deadline, cancel): the instance stays
			// starting and a redelivery carries on. Fenced: the job
			// carries on once the fence is lifted.
			return err
		}
		return h.failBoot(ctx, v, err)
	}
	if err := h.transition(ctx, id, proto.InstanceStarting, proto.InstanceRunning, proto.StatusOnline); err != nil {
		return err
	}
	h.publish(ctx, id, proto.EventInstanceStarted)
	if hooks != nil {
		return hooks.running(ctx, v)
	}
	return nil
}

func (h *Handlers) failBoot(ctx context.Context, v *proto.InstanceView, cause error) error {
	h.logger.WarnContext(ctx, "boot failed; terminating the instance", "instance_id", v.ID, "error", cause)
	if err := errors.Join(h.teardown(ctx, v.ID), h.release(ctx, v, true)); err != nil {
		h.logger.WarnContext(ctx, "remove the domain of a failed boot", "instance_id", v.ID, "error", err)
	}
	if err := h.update(ctx, v.ID, proto.InstanceTerminated, ""); err != nil {
		return &errs.Error{Kind: errs.KindOf(cause), Err: cause, Msg: fmt.Sprintf(
			"boot instance %s failed, and marking it terminated failed too (%v)", v.ID, err)}
	}
	h.publishTerminated(ctx, v.ID)
	return &errs.Error{Kind: errs.KindOf(cause), Err: cause,
		Msg: "boot instance " + v.ID + " failed; the instance was terminated"}
}

// ---- terminate, stop, cleanup ----

// terminate: running|halted (any state with force) → shuttingdown → domain
// removed → terminated (the manager finalizes), events
// hva/instance_terminated and <node>/instance_terminated. As in the source,
// the instance is terminated even when the domain could not be removed
// (a user's delete must complete); the job then fails saying so, and the
// monitor removes the leftover domain later.
func (h *Handlers) terminate(ctx context.Context, req proto.HvaTerminateRequest) (proto.HvaTerminateResponse, error) {
	return proto.HvaTerminateResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		id := v.ID
		switch v.State {
		case proto.InstanceTerminated:
			// Done before (a redelivery): only make sure nothing is left.
			return h.remove(ctx, v, true)
		case proto.InstanceShuttingDown:
			// A redelivery: carry on.
		case proto.InstanceRunning, proto.InstanceHalted:
			if err := h.transition(ctx, id, v.State, proto.InstanceShuttingDown, ""); err != nil {
				return err
			}
		default:
			if !req.Force {
				return wrongState(v, "terminate", proto.InstanceRunning, proto.InstanceHalted)
			}
			if err := h.transition(ctx, id, v.State, proto.InstanceShuttingDown, ""); err != nil {
				return err
			}
		}
		return h.finishTerminate(ctx, v)
	})
}

// finishTerminate removes the domain of an instance in shuttingdown and
// marks it terminated.
func (h *Handlers) finishTerminate(ctx context.Context, v *proto.InstanceView) error {
	id := v.ID
	tdErr := h.remove(ctx, v, true)
	if tdErr != nil && ctx.Err() != nil {
		return tdErr
	}
	if err := h.update(ctx, id, proto.InstanceTerminated, ""); err != nil {
		return err
	}
	h.publishTerminated(ctx, id)
	if tdErr != nil {
		return annotate(tdErr, "instance "+id+" was terminated, but its domain is left on the host")
	}
	return nil
}

// stop: running → stopping → domain removed → stopped/offline with the host
// released, events hva/instance_terminated and <node>/instance_terminated.
// The source also marks every volume of the instance deleted (spec §9); a
// stopped instance keeps its volumes here.
func (h *Handlers) stop(ctx context.Context, req proto.HvaStopRequest) (proto.HvaStopResponse, error) {
	return proto.HvaStopResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		id := v.ID
		switch v.State {
		case proto.InstanceStopped:
			return h.remove(ctx, v, false)
		case proto.InstanceStopping:
		case proto.InstanceRunning:
			if err := h.transition(ctx, id, proto.InstanceRunning, proto.InstanceStopping, ""); err != nil {
				return err
			}
		default:
			return wrongState(v, "stop", proto.InstanceRunning)
		}
		tdErr := h.remove(ctx, v, false)
		if tdErr != nil && ctx.Err() != nil {
			return tdErr
		}
		st, status, from := proto.InstanceStopped, proto.StatusOffline, proto.InstanceStopping
		if err := h.coll.UpdateInstance(ctx, proto.UpdateInstanceRequest{
			InstanceID: id, State: &st, ExpectState: &from, Status: &status, ClearHostNode: true,
		}); err != nil {
			return annotate(err, "update instance "+id+" to stopped")
		}
		h.publishTerminated(ctx, id)
		if tdErr != nil {
			return annotate(tdErr, "instance "+id+" was stopped, but its domain is left on the host")
		}
		return nil
	})
}

// cleanup (HA): remove what is left here of an instance that was moved to
// another host, without touching its records; events
// hva/instance_terminated and <node>/instance_terminated. It refuses when
// the managers still place the instance on this node, where it would kill
// the instance's only VM.
func (h *Handlers) cleanup(ctx context.Context, req proto.HvaCleanupRequest) (proto.HvaCleanupResponse, error) {
	id := req.InstanceID
	if id == "" {
		return proto.HvaCleanupResponse{}, errs.New(errs.UndefinedInstanceID, "job without an instance id")
	}
	unlock, err := h.locks.Lock(ctx, id)
	if err != nil {
		return proto.HvaCleanupResponse{}, err
	}
	defer unlock()
	v, err := h.coll.GetInstance(ctx, id)
	switch {
	case errs.Is(err, errs.UnknownInstance):
		// Nothing to protect.
	case err != nil:
		return proto.HvaCleanupResponse{}, annotate(err, "get instance "+id)
	case v.State != proto.InstanceTerminated && v.HostNode != nil && v.HostNode.NodeID == h.cfg.NodeID:
		return proto.HvaCleanupResponse{}, errs.New(errs.InvalidInstanceState,
			"instance %s is %s on this node; cleanup only removes what is left after it moved", id, v.State)
	case v.State == proto.InstanceMigrating && v.MigrationDest != nil && v.MigrationDest.NodeID == h.cfg.NodeID:
		// The cleanup of a failed migration to this node, overtaken by a
		// new migration here that now owns the domain.
		h.logger.InfoContext(ctx, "cleanup: the instance migrates to this node again; keeping its domain", "instance_id", id)
		return proto.HvaCleanupResponse{}, nil
	}
	if v == nil || err != nil {
		v = &proto.InstanceView{ID: id}
	}
	if err := h.remove(ctx, v, true); err != nil {
		return proto.HvaCleanupResponse{}, err
	}
	h.publishTerminated(ctx, id)
	return proto.HvaCleanupResponse{}, h.afterEvacuationCleanup(ctx, v, req)
}

// ---- reboot, poweroff, soft_poweroff, poweron ----

// reboot resets a running instance's domain; no state changes.
func (h *Handlers) reboot(ctx context.Context, req proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
	return proto.HvaRebootResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		if v.State != proto.InstanceRunning {
			return wrongState(v, "reboot", proto.InstanceRunning)
		}
		if err := h.hv.Reboot(ctx, v.ID); err != nil {
			return annotate(err, "reboot domain "+v.ID)
		}
		return nil
	})
}

// poweroff: halting (set by the API; running is accepted too) → domain
// powered off, still defined → halted/offline, event hva/instance_turnedoff.
// On failure the instance stays halting (spec).
func (h *Handlers) poweroff(ctx context.Context, req proto.HvaPoweroffRequest) (proto.HvaPoweroffResponse, error) {
	return proto.HvaPoweroffResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		return h.halt(ctx, v, "poweroff", func() error { return h.powerOff(ctx, v.ID) })
	})
}

// softPoweroff is poweroff by ACPI: the guest gets SoftPoweroffTimeout to
// power itself off, then the plug is pulled. Unlike the source (which left
// halting → halted to the instance monitor) the job ends with the instance
// halted.
func (h *Handlers) softPoweroff(ctx context.Context, req proto.HvaSoftPoweroffRequest) (proto.HvaSoftPoweroffResponse, error) {
	return proto.HvaSoftPoweroffResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		return h.halt(ctx, v, "soft_poweroff", func() error {
			sctx, cancel := context.WithTimeout(ctx, h.cfg.SoftPoweroffTimeout)
			err := h.hv.Stop(sctx, v.ID, false)
			cancel()
			switch {
			case err == nil || errs.Is(err, errs.NotFound):
				return nil
			case ctx.Err() != nil:
				return err
			}
			h.logger.WarnContext(ctx, "guest did not power off; forcing it", "instance_id", v.ID,
				"timeout", h.cfg.SoftPoweroffTimeout.String(), "error", err)
			return h.powerOff(ctx, v.ID)
		})
	})
}

func (h *Handlers) halt(ctx context.Context, v *proto.InstanceView, verb string, off func() error) error {
	id := v.ID
	switch v.State {
	case proto.InstanceHalted:
		return h.powerOff(ctx, id)
	case proto.InstanceHalting:
	case proto.InstanceRunning:
		if err := h.transition(ctx, id, proto.InstanceRunning, proto.InstanceHalting, ""); err != nil {
			return err
		}
	default:
		return wrongState(v, verb, proto.InstanceHalting, proto.InstanceRunning)
	}
	if err := off(); err != nil {
		return err
	}
	if err := h.transition(ctx, id, proto.InstanceHalting, proto.InstanceHalted, proto.StatusOffline); err != nil {
		return err
	}
	h.publish(ctx, id, proto.EventInstanceTurnedOff)
	return nil
}

// poweron: halted (or starting, set by the API) → starting → domain started
// (defined again if the host lost it) → running/online, event
// hva/instance_turnedon. On failure: halted/offline and
// hva/instance_turnedoff (spec), and the job fails.
func (h *Handlers) poweron(ctx context.Context, req proto.HvaPoweronRequest) (proto.HvaPoweronResponse, error) {
	return proto.HvaPoweronResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		id := v.ID
		switch v.State {
		case proto.InstanceRunning:
			h.logger.InfoContext(ctx, "instance already running", "instance_id", id)
			return nil
		case proto.InstanceHalted:
			if err := h.transition(ctx, id, proto.InstanceHalted, proto.InstanceStarting, ""); err != nil {
				return err
			}
		case proto.InstanceStarting:
		default:
			return wrongState(v, "poweron", proto.InstanceHalted)
		}
		if err := h.startDomain(ctx, v, false); err != nil {
			if ctx.Err() != nil || isFenced(err) {
				return err
			}
			if uerr := h.transition(ctx, id, proto.InstanceStarting, proto.InstanceHalted, proto.StatusOffline); uerr != nil {
				return &errs.Error{Kind: errs.KindOf(err), Err: err, Msg: fmt.Sprintf(
					"power on instance %s failed, and marking it halted failed too (%v)", id, uerr)}
			}
			h.publish(ctx, id, proto.EventInstanceTurnedOff)
			return &errs.Error{Kind: errs.KindOf(err), Err: err, Msg: "power on instance " + id + " failed; it is halted"}
		}
		if err := h.transition(ctx, id, proto.InstanceStarting, proto.InstanceRunning, proto.StatusOnline); err != nil {
			return err
		}
		h.publish(ctx, id, proto.EventInstanceTurnedOn)
		// Volumes attached while the instance was halted (the API links
		// those itself) got their names from this definition.
		return h.recordDeviceNames(ctx, v)
	})
}

// ---- attach_nic, detach_nic ----

// attachNic would bring the vif's tap up on its DC network's bridge; that is
// the host-network driver's work, and the dummy hypervisor has no taps.
func (h *Handlers) attachNic(ctx context.Context, req proto.HvaAttachNicRequest) (proto.HvaAttachNicResponse, error) {
	h.logger.InfoContext(ctx, "attach_nic: no host network driver; nothing to do",
		"vif_id", req.VifID, "dc_network", req.DcNetwork)
	return proto.HvaAttachNicResponse{}, nil
}

// detachNic is attachNic's reverse; a no-op for the same reason.
func (h *Handlers) detachNic(ctx context.Context, req proto.HvaDetachNicRequest) (proto.HvaDetachNicResponse, error) {
	h.logger.InfoContext(ctx, "detach_nic: no host network driver; nothing to do",
		"vif_id", req.VifID, "dc_network", req.DcNetwork)
	return proto.HvaDetachNicResponse{}, nil
}

// localStoreDeleteVolume deletes a local volume of a terminated instance
// (finalize submits it). The dummy and the current local store keep no
// per-volume file apart from the domain's, which terminate removed, so what
// is left is to record the volume deleted; recording it twice is harmless.
func (h *Handlers) localStoreDeleteVolume(ctx context.Context, req proto.LocalStoreDeleteVolumeRequest) (proto.LocalStoreDeleteVolumeResponse, error) {
	if req.VolumeID == "" {
		return proto.LocalStoreDeleteVolumeResponse{}, errs.New(errs.UndefinedVolumeID, "job without a volume id")
	}
	deleted := proto.VolumeDeleted
	if err := h.coll.UpdateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: req.VolumeID, State: &deleted, DetachInstance: true}); err != nil {
		return proto.LocalStoreDeleteVolumeResponse{}, annotate(err, "update volume "+req.VolumeID)
	}
	return proto.LocalStoreDeleteVolumeResponse{}, nil
}
