package collector

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Live migration (spec/agents.md §2.4) as the managers see it. The API's
// move sets the instance migrating, reserves its capacity on the
// destination and enqueues migration-handle.<dest>.run_vol_store; the
// destination prepares the incoming VM and submits (submit_job)
// migration-handle.<source>.start_migration; the source sends the VM and
// calls switch_instance_host_node, then reports it running. A failure on
// either side calls abort_migration, and a migration job that the
// dispatcher fails (deadline, refused) aborts in the same txn
// (FailMigration), so an instance never stays migrating.

func (s *Service) registerMigration(srv *rpc.Server) {
	srv.Register(proto.EndpointHvaCollector, proto.VerbSwitchInstanceHostNode, rpc.Func(s.switchInstanceHostNode))
	srv.Register(proto.EndpointHvaCollector, proto.VerbAbortMigration, rpc.Func(s.abortMigration))
}

// switchInstanceHostNode makes the destination the instance's host, moving
// its usage there (both usages guarded). Called again after it succeeded
// (a retried call, a redelivered job) it changes nothing.
func (s *Service) switchInstanceHostNode(ctx context.Context, req proto.SwitchInstanceHostNodeRequest) (proto.SwitchInstanceHostNodeResponse, error) {
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		var inst proto.Instance
		m, err := tx.Get(proto.KindInstance, req.InstanceID, &inst)
		if err != nil {
			return errs.New(errs.UnknownInstance, "%s", req.InstanceID)
		}
		dest, err := hostByNodeID(tx, req.DestNodeID)
		if err != nil {
			return err
		}
		if inst.HostNodeID != nil && *inst.HostNodeID == dest.ID && inst.MigratingTo == nil {
			return nil // switched before
		}
		if inst.State != proto.InstanceMigrating || inst.MigratingTo == nil || *inst.MigratingTo != dest.ID {
			return errs.New(errs.InvalidInstanceState, "instance %s is %s (migrating to %s), not migrating to %s",
				inst.ID, inst.State, deref(inst.MigratingTo), dest.ID)
		}
		if err := scheduling.SwitchHost(tx, b, &inst, dest); err != nil {
			return err
		}
		inst.HostNodeID, inst.MigratingTo, inst.UpdatedAt = &dest.ID, nil, s.d.Now()
		b.Update(proto.KindInstance, inst.ID, m.ModifyIndex, &inst)
		return nil
	})
	return proto.SwitchInstanceHostNodeResponse{}, err
}

func (s *Service) abortMigration(ctx context.Context, req proto.AbortMigrationRequest) (proto.AbortMigrationResponse, error) {
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		if !tx.Exists(proto.KindInstance, req.InstanceID) {
			return errs.New(errs.UnknownInstance, "%s", req.InstanceID)
		}
		return AbortMigration(tx, b, req.InstanceID, req.Reason, s.d.Now())
	})
	return proto.AbortMigrationResponse{}, err
}

// AbortMigration adds to b the end of a failed migration of instanceID: back
// to running on its source with the reason as last_error, the destination's
// reservation released, and hva-handle.<dest>.cleanup enqueued so that the
// destination removes its incoming VM (the destination's instance monitor
// would also remove it, as a domain of an instance placed elsewhere). An
// instance that is not migrating is left alone.
func AbortMigration(tx *state.Tx, b *state.Builder, instanceID, reason string, now time.Time) error {
	var inst proto.Instance
	m, err := tx.Get(proto.KindInstance, instanceID, &inst)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if inst.State != proto.InstanceMigrating || inst.MigratingTo == nil {
		return nil
	}
	var dest proto.HostNode
	_, err = tx.Get(proto.KindHostNode, *inst.MigratingTo, &dest)
	switch {
	case err == nil:
		j, err := jobs.New(now, proto.HvaHandle(dest.NodeID), proto.VerbCleanup, inst.ID,
			proto.HvaCleanupRequest{InstanceID: inst.ID})
		if err != nil {
			return err
		}
		jobs.Enqueue(b, j)
	case !errs.Is(err, errs.NotFound):
		return err
	}
	if err := scheduling.ReleaseReservation(tx, b, &inst); err != nil {
		return err
	}
	inst.LastError = "migration to " + *inst.MigratingTo + " failed: " + reason
	inst.State, inst.MigratingTo, inst.UpdatedAt = proto.InstanceRunning, nil, now
	b.Update(proto.KindInstance, inst.ID, m.ModifyIndex, &inst)
	return nil
}

// FailMigration is the dispatcher's hook for a migration job that ended
// without success (deadline passed, the agent refused it or failed without
// aborting): an instance still migrating goes back to running on its
// source, in the txn that records the job's end.
func FailMigration(tx *state.Tx, b *state.Builder, j proto.Job, reason string, now time.Time) error {
	if proto.EndpointBase(j.QueueName) != proto.EndpointMigrationHandle {
		return nil
	}
	id, _ := j.Params["instance_id"].(string)
	if id == "" {
		return nil
	}
	return AbortMigration(tx, b, id, j.QueueName+"."+j.Verb+" did not succeed: "+reason, now)
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
