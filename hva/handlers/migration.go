package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

// Live migration, migration-handle.<node> (spec/agents.md §2.4). The API's
// move leaves the instance migrating, placed on its source, with the
// destination in MigrationDest, and enqueues run_vol_store on the
// destination:
//
//  1. run_vol_store (destination): prepare the instance's local volumes and
//     taps, start the incoming domain (hypervisor.Migrator.Incoming) and
//     submit start_migration to the source with where it listens.
//  2. start_migration (source): send the domain (MigrateOut), then
//     switch_instance_host_node, report running, and remove what is left of
//     the instance here (domain, taps, local files).
//
// A failure before the VM went over ends in abort_migration: the instance
// runs on its source again, and the managers have the destination clean up
// (hva-handle cleanup). Both verbs are idempotent under redelivery: each
// reads where the migration stands and carries on from there.

// startMigrationKey names the start_migration a run_vol_store submits
// (submit_job dedups by parent job and key).
const startMigrationKey = "start_migration"

// withAnyInstance locks the instance and reads it, wherever it is placed
// (a migration involves two nodes).
func (h *Handlers) withAnyInstance(ctx context.Context, id string, fn func(v *proto.InstanceView) error) error {
	return h.readInstance(ctx, id, false, fn)
}

func onNode(hn *proto.HostNode, node string) bool { return hn != nil && hn.NodeID == node }

// migrator is the hypervisor's live migration, if it has one.
func (h *Handlers) migrator() (hypervisor.Migrator, error) {
	if m, ok := h.hv.(hypervisor.Migrator); ok {
		return m, nil
	}
	return nil, errs.New(errs.OperationNotPermitted, "the hypervisor driver of %s (%T) cannot live-migrate", h.cfg.NodeID, h.hv)
}

// migrationRunVolStore is step 1, on the destination.
func (h *Handlers) migrationRunVolStore(ctx context.Context, req proto.MigrationRunVolStoreRequest) (proto.MigrationRunVolStoreResponse, error) {
	return proto.MigrationRunVolStoreResponse{}, h.withAnyInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		switch {
		case v.State == proto.InstanceRunning && onNode(v.HostNode, h.cfg.NodeID):
			h.logger.InfoContext(ctx, "instance already migrated here", "instance_id", v.ID)
			return nil
		case v.State != proto.InstanceMigrating:
			return wrongState(v, "run_vol_store (migration)", proto.InstanceMigrating)
		case !onNode(v.MigrationDest, h.cfg.NodeID):
			return errs.New(errs.IncompatibleHostNode, "instance %s does not migrate to this node %s", v.ID, h.cfg.NodeID)
		case v.HostNode == nil:
			return errs.New(errs.InvalidInstanceState, "migrating instance %s has no source host", v.ID)
		}
		job, ok := agent.JobFromContext(ctx)
		if !ok {
			return errs.New(errs.Internal, "run_vol_store (migration) of %s runs outside a job", v.ID)
		}
		mig, err := h.migrator()
		if err != nil {
			return h.failIncoming(ctx, v, err)
		}
		target, err := h.prepareIncoming(ctx, v, mig)
		if err == nil {
			var args []byte
			args, err = json.Marshal(proto.MigrationStartMigrationRequest{InstanceID: v.ID, DestNodeID: h.cfg.NodeID,
				Params: proto.MigrationParams{ListenIP: target.Host, Port: target.Port}})
			if err == nil {
				_, err = h.coll.SubmitJob(ctx, proto.SubmitJobRequest{ParentID: job.ID, Key: startMigrationKey,
					Endpoint: proto.MigrationHandle(v.HostNode.NodeID), Verb: proto.VerbStartMigration,
					Args: args, ResourceID: v.ID})
				err = annotateIf(err, "submit start_migration of "+v.ID+" to "+v.HostNode.NodeID)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				// Interrupted: a redelivery carries on, and a job that ends
				// here is aborted by the managers (it failed).
				return err
			}
			return h.failIncoming(ctx, v, err)
		}
		h.logger.InfoContext(ctx, "incoming domain waits for the migration", "instance_id", v.ID,
			"source", v.HostNode.NodeID, "target", target.Addr())
		return nil
	})
}

// prepareIncoming makes the instance's files and taps here and starts its
// incoming domain. The local store makes the volumes as for a first boot:
// the migration stream overwrites their contents.
func (h *Handlers) prepareIncoming(ctx context.Context, v *proto.InstanceView, mig hypervisor.Migrator) (hypervisor.MigrationTarget, error) {
	spec := specOf(v)
	if ls := h.cfg.LocalStore; ls != nil {
		if err := ls.Prepare(ctx, v, &spec, true); err != nil {
			return hypervisor.MigrationTarget{}, annotate(err, "prepare the local store of "+v.ID)
		}
	}
	if nw := h.cfg.Network; nw != nil {
		if err := nw.Plug(ctx, spec.NICs); err != nil {
			return hypervisor.MigrationTarget{}, annotate(err, "plug the vnics of "+v.ID)
		}
	}
	// An incoming domain starts like any other: not on a fenced host.
	release, err := h.fence.enter(h.fence.readEpoch(v.ID))
	if err != nil {
		return hypervisor.MigrationTarget{}, err
	}
	target, err := mig.Incoming(ctx, spec)
	release()
	if err != nil {
		return target, annotate(err, "start the incoming domain of "+v.ID)
	}
	return target, nil
}

// failIncoming removes what the destination prepared and aborts the
// migration: the instance keeps running on its source.
func (h *Handlers) failIncoming(ctx context.Context, v *proto.InstanceView, cause error) error {
	h.logger.WarnContext(ctx, "incoming migration failed; aborting it", "instance_id", v.ID, "error", cause)
	if err := errors.Join(h.teardown(ctx, v.ID), h.release(ctx, v, true)); err != nil {
		h.logger.WarnContext(ctx, "remove the incoming domain of a failed migration", "instance_id", v.ID, "error", err)
	}
	return h.abort(ctx, v.ID, cause)
}

// abort reports the migration failed and returns the job's error.
func (h *Handlers) abort(ctx context.Context, id string, cause error) error {
	if err := h.coll.AbortMigration(ctx, id, cause.Error()); err != nil {
		return &errs.Error{Kind: errs.KindOf(cause), Err: cause, Msg: fmt.Sprintf(
			"migrate instance %s failed, and aborting the migration failed too (%v)", id, err)}
	}
	return &errs.Error{Kind: errs.KindOf(cause), Err: cause,
		Msg: "migrate instance " + id + " failed; it runs on its source host"}
}

// startMigration is step 2, on the source.
func (h *Handlers) startMigration(ctx context.Context, req proto.MigrationStartMigrationRequest) (proto.MigrationStartMigrationResponse, error) {
	return proto.MigrationStartMigrationResponse{}, h.withAnyInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		id := v.ID
		switch {
		case v.State == proto.InstanceMigrating && onNode(v.HostNode, h.cfg.NodeID):
			if !onNode(v.MigrationDest, req.DestNodeID) {
				return errs.New(errs.InvalidInstanceState, "instance %s no longer migrates to %s", id, req.DestNodeID)
			}
			if err := h.migrateOut(ctx, v, req); err != nil {
				return err
			}
			if err := h.coll.SwitchInstanceHostNode(ctx, id, req.DestNodeID); err != nil {
				return annotate(err, "switch instance "+id+" to "+req.DestNodeID)
			}
		case v.State == proto.InstanceMigrating && onNode(v.HostNode, req.DestNodeID):
			// Switched before (a redelivery): report it running.
		case v.State == proto.InstanceRunning && onNode(v.HostNode, req.DestNodeID):
			// Done before: only make sure nothing is left here.
			return annotateIf(h.remove(ctx, v, true), "remove what is left of migrated instance "+id)
		default:
			return wrongState(v, "start_migration", proto.InstanceMigrating)
		}
		if err := h.transition(ctx, id, proto.InstanceMigrating, proto.InstanceRunning, proto.StatusOnline); err != nil {
			return err
		}
		if err := h.remove(ctx, v, true); err != nil {
			return annotate(err, "instance "+id+" runs on "+req.DestNodeID+", but its domain is left on this host")
		}
		return nil
	})
}

// migrateOut sends the instance's domain to the destination. When that
// fails while the domain still runs here, the migration is aborted. A
// domain found shut off is taken as sent: the first run of this job
// migrated it (MigrateOut leaves it shut off) and stopped before the
// switch.
func (h *Handlers) migrateOut(ctx context.Context, v *proto.InstanceView, req proto.MigrationStartMigrationRequest) error {
	st, err := h.domainState(ctx, v.ID)
	if err != nil {
		return err
	}
	switch st {
	case hypervisor.Shutoff:
		h.logger.InfoContext(ctx, "domain is shut off here: it went over before; switching", "instance_id", v.ID)
		return nil
	case "":
		return h.abort(ctx, v.ID, errs.New(errs.InvalidInstanceState, "domain %s is not on the source host %s", v.ID, h.cfg.NodeID))
	}
	mig, err := h.migrator()
	if err != nil {
		return h.abort(ctx, v.ID, err)
	}
	target := hypervisor.MigrationTarget{Host: req.Params.ListenIP, Port: req.Params.Port}
	if err := mig.MigrateOut(ctx, v.ID, target); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return h.abort(ctx, v.ID, annotate(err, "send domain "+v.ID+" to "+req.DestNodeID))
	}
	h.logger.InfoContext(ctx, "domain migrated", "instance_id", v.ID, "destination", req.DestNodeID)
	return nil
}

func annotateIf(err error, what string) error {
	if err == nil {
		return nil
	}
	return annotate(err, what)
}
