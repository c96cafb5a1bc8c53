package daemon

import (
	"context"
	"errors"
	"math/rand/v2"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler"
)

// EvacuateFrom is the job scheduler.evacuate_from (spec §2.1): every alive
// instance of the host is handed to the leader one by one, HA instances
// with the host the HA scheduler chose for them (capacity respected), the
// others, and HA instances that fit nowhere, to be halted with the reason.
// The leader re-checks each move; a stale choice is placed again on a
// fresh view. Finally the host is enabled for scheduling again unless the
// request keeps it offline. Running it again (a redelivery) finds the
// instances it handled gone from the host and carries on with the rest.
func (p *Placer) EvacuateFrom(ctx context.Context, req proto.EvacuateFromRequest) (proto.EvacuateFromResponse, error) {
	resp := proto.EvacuateFromResponse{Scheduled: []string{}, Failed: []string{}, Halted: []string{}, Reasons: map[string]string{}}
	if req.HostNodeID == "" {
		return resp, errs.New(errs.InvalidParameter, "host_node_id is empty")
	}
	ev, err := p.evacuationView(ctx, req.HostNodeID)
	if err != nil {
		return resp, err
	}
	ids := make([]string, 0, len(ev.w.Instances))
	for _, in := range ev.w.Instances {
		ids = append(ids, in.Request.InstanceID)
	}
	p.logger.InfoContext(ctx, "evacuating host", "host_node_id", req.HostNodeID, "node_id", ev.w.NodeID,
		"fenced", ev.w.Fenced, "instances", ids)
	for _, id := range ids {
		out, tried, reason, err := p.evacuateOne(ctx, &ev, req.HostNodeID, id)
		if err != nil {
			return resp, err
		}
		switch {
		case out == proto.EvacMoved:
			resp.Scheduled = append(resp.Scheduled, id)
		case out == proto.EvacGone:
		case tried || out == proto.EvacLeft:
			resp.Failed = append(resp.Failed, id)
			resp.Reasons[id] = reason
		default:
			resp.Halted = append(resp.Halted, id)
			resp.Reasons[id] = reason
		}
	}
	err = p.call(ctx, proto.VerbFinishEvacuation, proto.FinishEvacuationRequest(req), nil)
	if err != nil {
		return resp, err
	}
	p.logger.InfoContext(ctx, "host evacuated", "host_node_id", req.HostNodeID, "scheduled", resp.Scheduled,
		"failed", resp.Failed, "halted", resp.Halted)
	return resp, nil
}

// evacView is the evacuation view with the placement view built from it
// (hosts charged with the moves made so far).
type evacView struct {
	w proto.GetEvacuationResponse
	v *scheduler.View
}

func (p *Placer) evacuationView(ctx context.Context, hostID string) (evacView, error) {
	var ev evacView
	if err := p.call(ctx, proto.VerbGetEvacuation, proto.GetEvacuationRequest{HostNodeID: hostID}, &ev.w); err != nil {
		return ev, err
	}
	v, _, err := scheduler.ViewFromProto(&proto.SchedView{Index: ev.w.Index, Hosts: ev.w.Hosts, Groups: ev.w.Groups})
	if err != nil {
		return ev, errs.Wrap(errs.Internal, err, "decode evacuation view")
	}
	ev.v = v
	return ev, nil
}

// runsNow are the states in which an HA instance is moved (it runs, or was
// about to); halted ones stay on their host, others belong to a job.
var runsNow = map[string]bool{proto.InstancePending: true, proto.InstanceStarting: true, proto.InstanceRunning: true}

// evacuateOne hands one instance to the leader and returns the outcome,
// whether the instance was to be moved (HA and running), and the reason it
// was not.
func (p *Placer) evacuateOne(ctx context.Context, ev *evacView, hostID, id string) (outcome string, tried bool, reason string, err error) {
	for attempt := 1; ; attempt++ {
		var in *proto.EvacInstance
		for i := range ev.w.Instances {
			if ev.w.Instances[i].Request.InstanceID == id {
				in = &ev.w.Instances[i]
			}
		}
		if in == nil {
			return proto.EvacGone, tried, "", nil // left the host meanwhile
		}
		req := proto.EvacuateInstanceRequest{HostNodeID: hostID, InstanceID: id}
		tried = in.HaEnabled && runsNow[in.Request.State]
		if !in.HaEnabled {
			req.Reason = "ha_enabled is off; its host " + hostID + " is evacuated"
		} else if !tried {
			req.Reason = "it is " + in.Request.State + "; it stays on its host"
		} else if to, err := p.placeEvacuee(ev, in); err != nil {
			req.Reason = "no other host can run it: " + schedReason(err)
		} else {
			req.ToHostNodeID = to
		}
		var resp proto.EvacuateInstanceResponse
		err := p.call(ctx, proto.VerbEvacuateInstance, req, &resp)
		switch {
		case err == nil:
			if resp.Outcome != proto.EvacMoved && req.Reason == "" {
				req.Reason = resp.Message
			}
			return resp.Outcome, tried, req.Reason, nil
		case errs.Is(err, errs.Conflict) && attempt < p.cfg.PlanAttempts:
			p.logger.InfoContext(ctx, "evacuation move rejected as stale; placing again", "instance_id", id,
				"attempt", attempt, "error", err)
			if *ev, err = p.evacuationView(ctx, hostID); err != nil {
				return "", tried, "", err
			}
		case errs.Is(err, errs.Conflict), errs.Is(err, errs.IncompatibleHostNode), errs.Is(err, errs.InvalidParameter):
			// No placement holds: the instance is halted with the cause.
			var retry proto.EvacuateInstanceResponse
			reason := "no placement held: " + err.Error()
			herr := p.call(ctx, proto.VerbEvacuateInstance, proto.EvacuateInstanceRequest{
				HostNodeID: hostID, InstanceID: id, Reason: reason}, &retry)
			return retry.Outcome, tried, reason, herr
		default:
			// Managers out of reach until the job's deadline, or the
			// host gone: the job fails and a redelivery carries on.
			if ctx.Err() == nil && !rpc.IsRetryable(err) {
				p.logger.WarnContext(ctx, "evacuation of an instance failed", "instance_id", id, "error", err)
			}
			return "", tried, "", err
		}
	}
}

// placeEvacuee chooses the new host of an HA instance in the view.
func (p *Placer) placeEvacuee(ev *evacView, in *proto.EvacInstance) (string, error) {
	s, err := p.schedulers(in.Request.ServiceType, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	if err != nil {
		return "", err
	}
	r := scheduler.RequestFromProto(&in.Request)
	h, err := s.PlaceEvacuee(ev.v, &r)
	if err != nil {
		return "", err
	}
	return h.ID, nil
}

// schedReason is a scheduling error as a reason ("HostNodeSchedulingError:
// ..." like the original's exception names).
func schedReason(err error) string {
	var se *scheduler.SchedulingError
	if errors.As(err, &se) {
		return se.Kind.String() + ": " + se.Msg
	}
	return err.Error()
}
