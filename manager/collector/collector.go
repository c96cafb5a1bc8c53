// Package collector serves the RPC endpoints agents call back while they run
// jobs (spec/agents.md §2.0): hva-collector and job-collector. Only the
// leader answers, reads included (followers answer NoLeader and the agent
// tries the next manager): writes go through raft, and a read must see every
// write the leader made before delivering the job that reads it — a
// follower may not have applied the plan that enqueued a run_local_store
// yet, and would show the instance still scheduling.
package collector

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// FinalizeFunc releases everything a terminated instance held (vifs, leases,
// host usage, volumes) and marks it terminated, in b. The API package owns
// the rules; the collector calls them when an hva reports terminated.
type FinalizeFunc func(tx *state.Tx, b *state.Builder, inst *proto.Instance, now time.Time) error

// Cluster is the manager's cluster layer as the collector needs it.
type Cluster interface {
	jobs.Cluster
	VerifyLeader(ctx context.Context) error
}

// Deps wires the collector.
type Deps struct {
	Cluster  Cluster
	Finalize FinalizeFunc
	Logger   *slog.Logger
	Now      func() time.Time
	// Delivering, when set, reports that the dispatcher is waiting for the
	// answer of a delivery of the job, which will carry its result
	// (jobs.Dispatcher.Delivering): job_finished then writes nothing.
	Delivering func(jobID string) bool
}

// Service implements the collector endpoints.
type Service struct {
	d Deps
}

// New builds the service.
func New(d Deps) *Service {
	if d.Now == nil {
		d.Now = func() time.Time { return time.Now().UTC().Truncate(time.Second) }
	}
	return &Service{d: d}
}

// Register adds the endpoints to an RPC server.
func (s *Service) Register(srv *rpc.Server) {
	srv.Register(proto.EndpointHvaCollector, proto.VerbGetInstance, rpc.Func(s.getInstance))
	srv.Register(proto.EndpointHvaCollector, proto.VerbUpdateInstance, rpc.Func(s.updateInstance))
	srv.Register(proto.EndpointHvaCollector, proto.VerbFinalizeInstance, rpc.Func(s.finalizeInstance))
	srv.Register(proto.EndpointHvaCollector, proto.VerbGetInstanceMonitorData, rpc.Func(s.monitorData))
	s.registerSta(srv) // sta.go
	srv.Register(proto.EndpointHvaCollector, proto.VerbGetNetfilterData, rpc.Func(s.netfilterData))
	srv.Register(proto.EndpointJobCollector, proto.VerbJobFinished, rpc.Func(s.jobFinished))
	srv.Register(proto.EndpointJobCollector, proto.VerbJobProgress, rpc.Func(s.jobProgress))
	s.registerMigration(srv)
}

func (s *Service) write(ctx context.Context, plan func(tx *state.Tx, b *state.Builder) error) error {
	if !s.d.Cluster.IsLeader() {
		return errs.New(errs.NoLeader, "this manager is not the leader")
	}
	return state.CommitConfirmed(ctx, s.d.Cluster.Store(), s.d.Cluster, plan)
}

// read runs fn on the leader's state (see the package comment), once a
// quorum confirms this manager leads: an agent acts on what it reads (an
// hva's monitor on an instance it is told is unknown or terminated), so a
// deposed leader must not answer from its stale state.
func (s *Service) read(ctx context.Context, fn func(tx *state.Tx) error) error {
	if !s.d.Cluster.IsLeader() {
		return errs.New(errs.NoLeader, "this manager is not the leader")
	}
	if err := s.d.Cluster.VerifyLeader(ctx); err != nil {
		return err
	}
	return s.d.Cluster.Store().View(fn)
}

func (s *Service) getInstance(ctx context.Context, req proto.GetInstanceRequest) (proto.InstanceView, error) {
	var out proto.InstanceView
	err := s.read(ctx, func(tx *state.Tx) error {
		v, err := InstanceView(tx, req.InstanceID)
		out = v
		return err
	})
	return out, err
}

// instanceTransitions are the states an agent may report, from which states
// (spec §3.1 "then" column). Anything else is refused, so a late or
// duplicated report cannot move an instance backwards (a redelivered
// run_local_store must not revive a terminated instance).
var instanceTransitions = map[string][]string{
	proto.InstanceStarting:     {proto.InstancePending, proto.InstanceHalted, proto.InstanceStarting, proto.InstanceStopped},
	proto.InstanceRunning:      {proto.InstancePending, proto.InstanceStarting, proto.InstanceRunning, proto.InstanceHalting, proto.InstanceHalted, proto.InstanceMigrating},
	proto.InstanceHalting:      {proto.InstanceRunning, proto.InstanceHalting},
	proto.InstanceHalted:       {proto.InstanceRunning, proto.InstanceHalting, proto.InstanceHalted, proto.InstanceStarting},
	proto.InstanceStopping:     {proto.InstanceRunning, proto.InstanceStopping},
	proto.InstanceStopped:      {proto.InstanceRunning, proto.InstanceStopping, proto.InstanceStopped},
	proto.InstanceShuttingDown: {proto.InstancePending, proto.InstanceStarting, proto.InstanceRunning, proto.InstanceHalting, proto.InstanceHalted, proto.InstanceStopping, proto.InstanceShuttingDown},
	proto.InstanceTerminated:   nil, // from anywhere: finalize is idempotent
}

func (s *Service) updateInstance(ctx context.Context, req proto.UpdateInstanceRequest) (proto.UpdateInstanceResponse, error) {
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		var inst proto.Instance
		m, err := tx.Get(proto.KindInstance, req.InstanceID, &inst)
		if err != nil {
			return errs.New(errs.UnknownInstance, "%s", req.InstanceID)
		}
		now := s.d.Now()
		if req.State != nil && *req.State == proto.InstanceTerminated {
			if inst.State == proto.InstanceTerminated {
				return nil
			}
			return s.d.Finalize(tx, b, &inst, now)
		}
		if inst.State == proto.InstanceTerminated {
			return errs.New(errs.InvalidInstanceState, "%s is terminated", inst.ID)
		}
		if req.State != nil && req.ExpectState != nil && inst.State != *req.ExpectState && inst.State != *req.State {
			return errs.New(errs.InvalidInstanceState, "%s: stale report: expected %s -> %s, but the instance is %s",
				inst.ID, *req.ExpectState, *req.State, inst.State)
		}
		if req.State != nil && *req.State != inst.State {
			from, ok := instanceTransitions[*req.State]
			if !ok || !contains(from, inst.State) {
				return errs.New(errs.InvalidInstanceState, "%s: %s -> %s is not a valid transition", inst.ID, inst.State, *req.State)
			}
			inst.State = *req.State
		}
		if req.Status != nil {
			inst.Status = *req.Status
		}
		if req.ClearHostNode && inst.HostNodeID != nil {
			// A stopped instance gives its host's capacity back (spec §3.1).
			if err := scheduling.Release(tx, b, &inst); err != nil {
				return err
			}
			inst.HostNodeID = nil
		}
		if req.EncryptedPassword != nil {
			inst.EncryptedPassword = req.EncryptedPassword
		}
		inst.UpdatedAt = now
		b.Update(proto.KindInstance, inst.ID, m.ModifyIndex, inst)
		return nil
	})
	return proto.UpdateInstanceResponse{}, err
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (s *Service) finalizeInstance(ctx context.Context, req proto.FinalizeInstanceRequest) (proto.FinalizeInstanceResponse, error) {
	st := proto.InstanceTerminated
	_, err := s.updateInstance(ctx, proto.UpdateInstanceRequest{InstanceID: req.InstanceID, State: &st})
	return proto.FinalizeInstanceResponse{}, err
}

// monitorData lists the instances the host's monitor compares with its
// hypervisor: those placed on the node in running, halting or shuttingdown.
func (s *Service) monitorData(ctx context.Context, req proto.GetInstanceMonitorDataRequest) (proto.GetInstanceMonitorDataResponse, error) {
	out := proto.GetInstanceMonitorDataResponse{Instances: []proto.InstanceMonitorEntry{}}
	err := s.read(ctx, func(tx *state.Tx) error {
		host, err := hostByNodeID(tx, req.NodeID)
		if err != nil {
			return err
		}
		// Only the fields the monitor compares are decoded: a monitor reads
		// every instance of its host every few seconds.
		return state.EachOfIn(tx, state.IdxInstancesByHost, host.ID, false, func(inst *monitorFields, _ state.Meta) error {
			switch inst.State {
			case proto.InstanceRunning, proto.InstanceHalting, proto.InstanceShuttingDown:
				out.Instances = append(out.Instances, proto.InstanceMonitorEntry{
					InstanceID: inst.ID, Hypervisor: inst.Hypervisor, State: inst.State, Status: inst.Status,
					CreatedAt: inst.CreatedAt, UpdatedAt: inst.UpdatedAt,
				})
			}
			return nil
		})
	})
	return out, err
}

// monitorFields are the fields of an instance the monitor data carries.
type monitorFields struct {
	ID         string `json:"id"`
	Hypervisor string `json:"hypervisor"`
	State      string `json:"state"`
	Status     string `json:"status"`
	proto.Timestamps
}

func (s *Service) jobFinished(ctx context.Context, req proto.JobFinishedRequest) (proto.JobFinishedResponse, error) {
	if !req.Result.Status.Final() {
		return proto.JobFinishedResponse{}, errs.New(errs.InvalidParameter, "job %s is not final (%s)", req.Result.JobID, req.Result.Status)
	}
	status := jobs.FinishSuccess
	switch req.Result.Status {
	case proto.JobFailed:
		status = jobs.FinishFail
	case proto.JobCancelled:
		status = jobs.FinishCancel
	}
	msg := ""
	if req.Result.Error != nil {
		msg = req.Result.Error.Message
	}
	if s.d.Delivering != nil && s.d.Delivering(req.Result.JobID) {
		if !s.d.Cluster.IsLeader() {
			return proto.JobFinishedResponse{}, errs.New(errs.NoLeader, "this manager is not the leader")
		}
		return proto.JobFinishedResponse{}, nil
	}
	var result map[string]any
	if len(req.Result.Result) > 0 {
		_ = json.Unmarshal(req.Result.Result, &result)
	}
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		return jobs.FinishRun(tx, b, req.Result.JobID, s.d.Now(), status, msg, result,
			jobs.Worker{NodeID: req.NodeID, StartedAt: req.Result.StartedAt})
	})
	return proto.JobFinishedResponse{}, err
}

// jobProgress is accepted and logged; progress is not stored (it would be a
// raft write per report for a figure nobody reads yet).
func (s *Service) jobProgress(_ context.Context, req proto.JobProgressRequest) (proto.JobProgressResponse, error) {
	s.d.Logger.Debug("job progress", "job_id", req.JobID, "node_id", req.NodeID, "progress", req.Progress)
	return proto.JobProgressResponse{}, nil
}
