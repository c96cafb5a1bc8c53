package scheduling

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Applier proposes raft commands; *cluster.Server is one.
type Applier interface {
	Apply(ctx context.Context, t state.CommandType, body any) (any, error)
	IsLeader() bool
}

// Config configures a Service.
type Config struct {
	Store   *state.Store
	Applier Applier
	// Now is the leader's clock for timestamps (default: UTC, seconds).
	Now    func() time.Time
	Logger *slog.Logger
}

// Service serves the scheduler-collector RPC endpoint.
type Service struct {
	store  *state.Store
	ap     Applier
	now    func() time.Time
	logger *slog.Logger
}

// New builds a Service.
func New(cfg Config) *Service {
	now := cfg.Now
	if now == nil {
		now = func() time.Time { return time.Now().UTC().Truncate(time.Second) }
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Service{store: cfg.Store, ap: cfg.Applier, now: now, logger: logger.With("component", "scheduling")}
}

// Register serves the scheduler-collector verbs on srv.
func (s *Service) Register(srv *rpc.Server) {
	ep := proto.EndpointSchedulerCollector
	srv.Register(ep, proto.VerbGetView, rpc.Func(s.GetView))
	srv.Register(ep, proto.VerbSubmitPlan, rpc.Func(s.SubmitPlan))
	srv.Register(ep, proto.VerbScheduleFailed, rpc.Func(s.ScheduleFailed))
	srv.Register(ep, proto.VerbGetVolumeView, rpc.Func(s.GetVolumeView))
	srv.Register(ep, proto.VerbSubmitVolumePlan, rpc.Func(s.SubmitVolumePlan))
	srv.Register(ep, proto.VerbScheduleVolumeFailed, rpc.Func(s.ScheduleVolumeFailed))
}

// GetView returns the view an instance is placed in. It is served by the
// leader only: a follower may not have the instance yet, and the leader's
// state is the one the plan is re-checked against, so its view conflicts
// least.
func (s *Service) GetView(_ context.Context, req proto.GetViewRequest) (*proto.SchedView, error) {
	if !s.ap.IsLeader() {
		return nil, errs.New(errs.NoLeader, "this manager is not the leader")
	}
	var w *proto.SchedView
	err := s.store.View(func(tx *state.Tx) error {
		var err error
		if len(req.InstanceIDs) > 0 {
			w, err = snapshotBatch(tx, req.InstanceIDs, req.Start, req.RequestsOnly)
			return err
		}
		w, err = Snapshot(tx, req.InstanceID, req.Start)
		return err
	})
	return w, err
}

// SubmitPlan re-checks a plan against the current state and applies it in
// one raft transaction. A plan that no longer fits (capacity taken, address
// or MAC leased, host offline, …) is errs.Conflict with a message starting
// "stale plan"; the daemon plans again on a fresh view.
func (s *Service) SubmitPlan(ctx context.Context, req proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
	if len(req.Plans) > 0 {
		return s.submitBatch(ctx, req.Plans)
	}
	var resp *proto.SubmitPlanResponse
	err := s.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		var err error
		resp, err = applyPlan(tx, b, &req, s.now())
		return err
	})
	if err != nil {
		return nil, err
	}
	s.logger.Info("plan applied", "instance_id", req.InstanceID, "host_node_id", req.HostNodeID,
		"vifs", len(resp.VifIDs), "jobs", resp.JobIDs, "already_applied", resp.AlreadyApplied)
	return resp, nil
}

// submitBatch re-checks every plan of a batch and applies those that hold
// in one raft transaction (planBatch); each plan gets its own result.
func (s *Service) submitBatch(ctx context.Context, plans []proto.SubmitPlanRequest) (*proto.SubmitPlanResponse, error) {
	var results []proto.PlanResult
	err := s.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		results = make([]proto.PlanResult, len(plans))
		pb := newPlanBatch(tx, b, s.now())
		for i := range plans {
			resp, err := pb.apply(&plans[i])
			if err != nil {
				results[i] = proto.PlanResult{
					SubmitPlanResponse: proto.SubmitPlanResponse{InstanceID: plans[i].InstanceID},
					Error:              rpc.ToWire(err),
				}
				continue
			}
			results[i] = proto.PlanResult{SubmitPlanResponse: *resp}
		}
		pb.finish()
		return nil
	})
	if err != nil {
		return nil, err
	}
	applied := 0
	for _, r := range results {
		if r.Error == nil {
			applied++
		}
	}
	s.logger.Info("plans applied", "plans", len(plans), "applied", applied)
	return &proto.SubmitPlanResponse{Results: results}, nil
}

// ScheduleFailed terminates an instance that cannot be placed, with the
// reason as its last error, releasing whatever it held. It is idempotent:
// an instance already terminated is left as it is.
func (s *Service) ScheduleFailed(ctx context.Context, req proto.ScheduleFailedRequest) (*proto.ScheduleFailedResponse, error) {
	err := s.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		return failInstance(tx, b, req.InstanceID, req.Reason, s.now())
	})
	if err != nil {
		return nil, err
	}
	s.logger.Info("scheduling failed; instance terminated", "instance_id", req.InstanceID, "reason", req.Reason)
	return &proto.ScheduleFailedResponse{}, nil
}

// maxCommitAttempts bounds the optimistic re-runs of one request. Each lost
// race means another write committed; a plan that keeps losing is reported
// as a conflict, which the daemon answers with a fresh view.
const maxCommitAttempts = 8

// commit runs plan against the current state and applies the ops it adds,
// re-running it when a guard fails because of a concurrent write (as
// manager/api's commit does), so that the re-run's own checks give the
// right error.
func (s *Service) commit(ctx context.Context, plan func(tx *state.Tx, b *state.Builder) error) error {
	for range maxCommitAttempts {
		if !s.ap.IsLeader() {
			return errs.New(errs.NoLeader, "this manager is not the leader")
		}
		var b state.Builder
		if err := s.store.View(func(tx *state.Tx) error { return plan(tx, &b) }); err != nil {
			return err
		}
		if b.Len() == 0 {
			return nil
		}
		txn, err := b.Txn()
		if err != nil {
			return err
		}
		_, err = s.ap.Apply(ctx, state.CmdTxn, txn)
		var te *state.TxnError
		if errors.As(err, &te) && te.Reason != state.ReasonInvalid {
			continue
		}
		return err
	}
	return errs.New(errs.Conflict, "stale plan: too many concurrent changes to the same records; plan again")
}

const uuidAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newID returns "<prefix>-" and 8 characters of a-z0-9 (the 12.03 uuid form).
func newID(prefix string) string {
	var raw [16]byte
	out := make([]byte, 0, len(prefix)+9)
	out = append(out, prefix...)
	out = append(out, '-')
	for len(out) < len(prefix)+9 {
		_, _ = rand.Read(raw[:])
		for _, c := range raw {
			// 252 = 7*36: reject the tail so every character is equally likely.
			if c < 252 && len(out) < len(prefix)+9 {
				out = append(out, uuidAlphabet[int(c)%36])
			}
		}
	}
	return string(out)
}
