package scheduling

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Evacuation (scheduler.evacuate_from, spec/agents.md §2.1; HA, §8): the
// instances of a host are moved to other hosts or halted. StartEvacuation
// enqueues the job (the leader's HA monitor for a failed host, the API's
// PUT /host_nodes/:id/evacuate for an operator); a scheduler daemon runs it
// over the scheduler-collector verbs served here, placing each HA instance
// with the HA scheduler and handing each move to the leader, which
// re-checks it and applies it in one transaction.
//
// An instance never runs on two hosts at once:
//   - on a fenced host (HostFence: the hva fenced itself before the managers
//     gave up on it, or an operator evacuated it while offline) the old
//     domains are down, so a move frees the instance's shared volumes and
//     boots it on its new host in the same transaction;
//   - on a host that is not fenced (an operator evacuating a live host) the
//     old host's cleanup removes the domain first, then records the shared
//     volumes free and submits the boot on the new host.
// Either way a cleanup job for the old host removes what is left there
// (the hva refuses it while the instance is still placed there).

// EvacuationStart describes an evacuation to start.
type EvacuationStart struct {
	// Reason is recorded with the fence and logged.
	Reason string
	// Fence records the host as fenced: its hva is known (or, for an
	// operator, declared) to run no domain; moved instances boot at once.
	Fence bool
	// KeepNodeOffline leaves the host disabled for scheduling afterwards
	// (the HA path: a host that failed needs an operator's look).
	KeepNodeOffline bool
}

// StartEvacuation adds to b the start of host's evacuation: scheduling
// disabled on the host, the scheduler.evacuate_from job, and, with Fence,
// the host's HostFence. An evacuation of the host still running is
// returned instead of a second one (idempotent). hm is the ModifyIndex the
// host was read at.
func StartEvacuation(tx *state.Tx, b *state.Builder, host *proto.HostNode, hm state.Meta, o EvacuationStart, now time.Time) (string, error) {
	jobID, running, err := PendingEvacuation(tx, host.ID)
	if err != nil {
		return "", err
	}
	if !running {
		// A host an operator had disabled stays disabled afterwards.
		keep := o.KeepNodeOffline || !host.SchedulingEnabled
		j, err := jobs.New(now, proto.EndpointScheduler, proto.VerbEvacuateFrom, host.ID,
			proto.EvacuateFromRequest{HostNodeID: host.ID, KeepNodeOffline: keep})
		if err != nil {
			return "", err
		}
		jobs.Enqueue(b, j)
		jobID = j.ID
		if host.SchedulingEnabled {
			h := *host
			h.SchedulingEnabled = false
			h.UpdatedAt = now
			b.Update(proto.KindHostNode, h.ID, hm.ModifyIndex, &h)
		} else {
			b.Check(proto.KindHostNode, host.ID, hm.ModifyIndex)
		}
	}
	if !o.Fence {
		return jobID, nil
	}
	var f proto.HostFence
	fm, err := tx.Get(proto.KindHostFence, host.NodeID, &f)
	switch {
	case errs.Is(err, errs.NotFound):
		b.Create(proto.KindHostFence, host.NodeID, proto.HostFence{
			ID: host.NodeID, HostNodeID: host.ID, Reason: o.Reason, JobID: jobID, CreatedAt: now,
		})
	case err != nil:
		return "", err
	case f.JobID != jobID:
		// Fenced by an earlier evacuation the host never came back from:
		// the fence now waits for this one.
		f.JobID, f.Reason = jobID, o.Reason
		b.Update(proto.KindHostFence, f.ID, fm.ModifyIndex, &f)
	}
	return jobID, nil
}

// PendingEvacuation finds the unfinished evacuate_from job of a host.
func PendingEvacuation(tx *state.Tx, hostID string) (jobID string, ok bool, err error) {
	err = state.EachOfIn(tx, state.IdxJobQueueByEndpoint, proto.EndpointScheduler, false, func(q *proto.JobQueueEntry, _ state.Meta) error {
		var j proto.Job
		if _, err := tx.Get(proto.KindJob, q.ID, &j); err != nil {
			return nil // finished and gone meanwhile
		}
		if j.Verb == proto.VerbEvacuateFrom && j.ResourceID == hostID {
			jobID, ok = j.ID, true
			return state.ErrStop
		}
		return nil
	})
	return jobID, ok, err
}

// FinalizeFunc terminates an instance's records (manager/api owns the
// rules): a shuttingdown instance on a fenced host will not hear from its
// hva again.
type FinalizeFunc func(tx *state.Tx, b *state.Builder, inst *proto.Instance, now time.Time) error

// EvacuationConfig configures an Evacuation.
type EvacuationConfig struct {
	Store    *state.Store
	Applier  Applier
	Finalize FinalizeFunc
	Now      func() time.Time
	Logger   *slog.Logger
}

// Evacuation serves the scheduler-collector verbs of evacuate_from.
type Evacuation struct {
	cfg    EvacuationConfig
	logger *slog.Logger
}

// NewEvacuation builds the service.
func NewEvacuation(cfg EvacuationConfig) *Evacuation {
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Now().UTC().Truncate(time.Second) }
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Evacuation{cfg: cfg, logger: logger.With("component", "evacuation")}
}

// Register serves the verbs on srv.
func (e *Evacuation) Register(srv *rpc.Server) {
	ep := proto.EndpointSchedulerCollector
	srv.Register(ep, proto.VerbGetEvacuation, rpc.Func(e.GetEvacuation))
	srv.Register(ep, proto.VerbEvacuateInstance, rpc.Func(e.EvacuateInstance))
	srv.Register(ep, proto.VerbFinishEvacuation, rpc.Func(e.FinishEvacuation))
}

func (e *Evacuation) leader() error {
	if !e.cfg.Applier.IsLeader() {
		return errs.New(errs.NoLeader, "this manager is not the leader")
	}
	return nil
}

func (e *Evacuation) commit(ctx context.Context, plan func(tx *state.Tx, b *state.Builder) error) error {
	if err := e.leader(); err != nil {
		return err
	}
	return state.Commit(ctx, e.cfg.Store, e.cfg.Applier, plan)
}

func getHost(tx *state.Tx, id string) (*proto.HostNode, state.Meta, error) {
	var h proto.HostNode
	m, err := tx.Get(proto.KindHostNode, id, &h)
	if errs.Is(err, errs.NotFound) {
		return nil, m, errs.New(errs.UnknownHostNode, "Unknown host node: %s", id)
	}
	return &h, m, err
}

// GetEvacuation is scheduler-collector get_evacuation (leader only).
func (e *Evacuation) GetEvacuation(_ context.Context, req proto.GetEvacuationRequest) (*proto.GetEvacuationResponse, error) {
	if err := e.leader(); err != nil {
		return nil, err
	}
	var out *proto.GetEvacuationResponse
	err := e.cfg.Store.View(func(tx *state.Tx) error {
		host, _, err := getHost(tx, req.HostNodeID)
		if err != nil {
			return err
		}
		w := &proto.SchedView{Index: tx.LastIndex(), Groups: []string{}}
		groups := map[string][]string{}
		err = each(tx, proto.KindTag, func(t *proto.Tag, _ state.Meta) error {
			w.Groups = append(w.Groups, t.ID)
			if t.TypeID == proto.TagTypeHostNodeGroup {
				for _, m := range t.MappedUUIDs {
					groups[m] = append(groups[m], t.ID)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := snapshotHosts(tx, w, groups); err != nil {
			return err
		}
		out = &proto.GetEvacuationResponse{
			Index: w.Index, HostNodeID: host.ID, NodeID: host.NodeID,
			Fenced: tx.Exists(proto.KindHostFence, host.NodeID),
			Hosts:  w.Hosts, Groups: w.Groups, Instances: []proto.EvacInstance{},
		}
		return state.EachOfIn(tx, state.IdxInstancesByHost, host.ID, false, func(in *proto.Instance, _ state.Meta) error {
			if !onHost(in, host.ID) {
				return nil
			}
			// The local volumes are deployed again on the new host.
			var local []volEntry
			err := state.EachOfIn(tx, state.IdxVolumesByInstance, in.ID, false, func(v *proto.Volume, m state.Meta) error {
				if v.StoreType == proto.VolumeLocal && volumeAlive(v.State) {
					local = append(local, volEntry{Volume: *v, meta: m})
				}
				return nil
			})
			if err != nil {
				return err
			}
			out.Instances = append(out.Instances, proto.EvacInstance{
				Request: requestOf(in, local, false), HaEnabled: in.HaEnabled,
			})
			return nil
		})
	})
	return out, err
}

// onHost reports whether an alive instance is placed on host hostID.
func onHost(in *proto.Instance, hostID string) bool {
	return in.HostNodeID != nil && *in.HostNodeID == hostID && in.State != proto.InstanceTerminated
}

// EvacuateInstance is scheduler-collector evacuate_instance: it moves one
// instance of the evacuated host to req.ToHostNodeID, re-checking the new
// host (online, enabled, compatible, with room: a stale choice is
// errs.Conflict and the daemon places again), or halts it with req.Reason.
// An instance no longer on the host answers EvacGone, so a retried call
// changes nothing.
func (e *Evacuation) EvacuateInstance(ctx context.Context, req proto.EvacuateInstanceRequest) (*proto.EvacuateInstanceResponse, error) {
	var out *proto.EvacuateInstanceResponse
	err := e.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		var err error
		out, err = e.evacuate(tx, b, &req, e.cfg.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	e.logger.Info("instance evacuated", "host_node_id", req.HostNodeID, "instance_id", req.InstanceID,
		"to", req.ToHostNodeID, "outcome", out.Outcome, "message", out.Message, "jobs", out.JobIDs)
	return out, nil
}

// movable are the states in which an instance is moved to its new host
// (pending and starting ones were about to run there anyway).
var movable = map[string]bool{
	proto.InstancePending: true, proto.InstanceStarting: true, proto.InstanceRunning: true,
}

func (e *Evacuation) evacuate(tx *state.Tx, b *state.Builder, req *proto.EvacuateInstanceRequest, now time.Time) (*proto.EvacuateInstanceResponse, error) {
	src, _, err := getHost(tx, req.HostNodeID)
	if err != nil {
		return nil, err
	}
	var inst proto.Instance
	im, err := tx.Get(proto.KindInstance, req.InstanceID, &inst)
	if errs.Is(err, errs.NotFound) {
		return &proto.EvacuateInstanceResponse{Outcome: proto.EvacGone, Message: "the instance does not exist"}, nil
	}
	if err != nil {
		return nil, err
	}
	if !onHost(&inst, src.ID) {
		if req.ToHostNodeID != "" && inst.HostNodeID != nil && *inst.HostNodeID == req.ToHostNodeID {
			return &proto.EvacuateInstanceResponse{Outcome: proto.EvacMoved, Message: "moved already"}, nil
		}
		return &proto.EvacuateInstanceResponse{Outcome: proto.EvacGone, Message: "the instance is " + inst.State + " elsewhere"}, nil
	}
	ev := evac{tx: tx, b: b, src: src, inst: &inst, im: im, now: now,
		fenced: tx.Exists(proto.KindHostFence, src.NodeID)}
	if req.ToHostNodeID != "" && movable[inst.State] {
		return ev.move(req.ToHostNodeID)
	}
	reason := req.Reason
	if reason == "" {
		reason = "cannot be moved while " + inst.State
	}
	return ev.halt(reason, e.cfg.Finalize)
}

// evac is the evacuation of one instance inside one transaction.
type evac struct {
	tx     *state.Tx
	b      *state.Builder
	src    *proto.HostNode
	inst   *proto.Instance
	im     state.Meta
	now    time.Time
	fenced bool
}

func (ev *evac) job(endpoint, verb string, args any) (proto.Job, error) {
	j, err := jobs.New(ev.now, endpoint, verb, ev.inst.ID, args)
	if err != nil {
		return j, err
	}
	jobs.Enqueue(ev.b, j)
	return j, nil
}

// move places the instance on host toID and boots it there: at once when
// the source is fenced, else after the source's cleanup.
func (ev *evac) move(toID string) (*proto.EvacuateInstanceResponse, error) {
	tx, b, inst := ev.tx, ev.b, ev.inst
	if toID == ev.src.ID {
		return nil, badPlan("instance %s would stay on the evacuated host %s", inst.ID, toID)
	}
	dst, dm, err := getHost(tx, toID)
	if errs.Is(err, errs.UnknownHostNode) {
		return nil, stale("host node %s does not exist", toID)
	}
	if err != nil {
		return nil, err
	}
	if !nodeIsOnline(tx, dst.NodeID) || !dst.SchedulingEnabled {
		return nil, stale("host node %s (%s) is not online or not enabled for scheduling", dst.ID, dst.NodeID)
	}
	if dst.Arch != inst.Arch || dst.Hypervisor != inst.Hypervisor {
		return nil, errs.New(errs.IncompatibleHostNode, "host node %s runs %s %s, the instance needs %s %s",
			dst.ID, dst.Arch, dst.Hypervisor, inst.Arch, inst.Hypervisor)
	}
	b.Check(proto.KindHostNode, dst.ID, dm.ModifyIndex)

	var vols []volEntry
	var disk int64
	err = state.EachOfIn(tx, state.IdxVolumesByInstance, inst.ID, false, func(v *proto.Volume, m state.Meta) error {
		if volumeAlive(v.State) {
			vols = append(vols, volEntry{Volume: *v, meta: m})
			if v.StoreType == proto.VolumeLocal {
				disk += v.Size
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := Reserve(tx, b, dst, inst, disk); err != nil {
		if errs.Is(err, errs.OutOfHostCapacity) {
			// The daemon's view was stale: it places again.
			return nil, stale("%v", err)
		}
		return nil, err
	}
	if err := drop(tx, b, ev.src.ID, inst); err != nil {
		return nil, err
	}

	// Local volumes lived on the old host: they are deployed again from
	// the image on the new one (their data is lost). Shared volumes are
	// freed from the old host: now if it is fenced, else by its cleanup.
	var free []string
	for i := range vols {
		v := &vols[i].Volume
		v.UpdatedAt = ev.now
		switch {
		case v.StoreType == proto.VolumeLocal:
			v.State = proto.VolumePending
			v.StorageNodeID = nil
			v.AttachedAt = nil
			v.Device = &proto.VolumeDevice{MountLabel: "instance"}
		case ev.fenced:
			v.State, v.AttachedAt, v.DetachedAt = proto.VolumeAvailable, nil, &ev.now
		default:
			v.State = proto.VolumeDetaching
			free = append(free, v.ID)
		}
		b.Update(proto.KindVolume, v.ID, vols[i].meta.ModifyIndex, v)
	}

	from := ev.src.ID
	inst.HostNodeID = &dst.ID
	inst.State = proto.InstancePending
	inst.Status = proto.StatusOffline
	inst.LastError = ""
	inst.UpdatedAt = ev.now
	b.Update(proto.KindInstance, inst.ID, ev.im.ModifyIndex, inst)

	bootEP, bootVerb := proto.HvaHandle(dst.NodeID), proto.VerbRunVolStore
	var bootArgs any = proto.HvaRunVolStoreRequest{InstanceID: inst.ID, VolumeID: inst.BootVolumeID}
	if bootIsLocal(tx, inst) {
		bootEP, bootVerb = proto.LocalStoreHandle(dst.NodeID), proto.VerbRunLocalStore
		bootArgs = proto.LocalStoreRunLocalStoreRequest{InstanceID: inst.ID}
	}
	out := &proto.EvacuateInstanceResponse{Outcome: proto.EvacMoved, Message: "moved from " + from + " to " + dst.ID}
	cleanup := proto.HvaCleanupRequest{InstanceID: inst.ID}
	if ev.fenced {
		j, err := ev.job(bootEP, bootVerb, bootArgs)
		if err != nil {
			return nil, err
		}
		out.JobIDs = append(out.JobIDs, j.ID)
	} else {
		raw, err := json.Marshal(bootArgs)
		if err != nil {
			return nil, err
		}
		cleanup.FreeVolumes = free
		cleanup.Then = &proto.FollowUpJob{Endpoint: bootEP, Verb: bootVerb, Args: raw, ResourceID: inst.ID}
		out.Message += " (boots there once " + ev.src.NodeID + " removed the old domain)"
	}
	j, err := ev.job(proto.HvaHandle(ev.src.NodeID), proto.VerbCleanup, cleanup)
	if err != nil {
		return nil, err
	}
	out.JobIDs = append(out.JobIDs, j.ID)
	return out, nil
}

// halt leaves the instance on its host, halted with reason as its last
// error. On a fenced host its domain is down: it is halted at once (and a
// stopping or shutting-down instance ends as its job would have ended it).
// On a live host a poweroff job makes the domain match.
func (ev *evac) halt(reason string, finalize FinalizeFunc) (*proto.EvacuateInstanceResponse, error) {
	inst := ev.inst
	out := &proto.EvacuateInstanceResponse{Outcome: proto.EvacHalted, Message: reason}
	update := func() {
		inst.UpdatedAt = ev.now
		ev.b.Update(proto.KindInstance, inst.ID, ev.im.ModifyIndex, inst)
	}
	switch inst.State {
	case proto.InstanceRunning, proto.InstanceStarting, proto.InstancePending:
		inst.LastError = "evacuation of host " + ev.src.ID + ": " + reason
		if ev.fenced {
			inst.State, inst.Status = proto.InstanceHalted, proto.StatusOffline
			update()
			return out, nil
		}
		inst.State = proto.InstanceHalting
		update()
		j, err := ev.job(proto.HvaHandle(ev.src.NodeID), proto.VerbPoweroff, proto.HvaPoweroffRequest{InstanceID: inst.ID})
		if err != nil {
			return nil, err
		}
		out.JobIDs = []string{j.ID}
		return out, nil
	case proto.InstanceHalted:
		return out, nil
	case proto.InstanceHalting:
		if ev.fenced {
			inst.State, inst.Status = proto.InstanceHalted, proto.StatusOffline
			update()
		}
		return out, nil
	case proto.InstanceStopping:
		if !ev.fenced {
			break
		}
		if err := Release(ev.tx, ev.b, inst); err != nil {
			return nil, err
		}
		inst.State, inst.Status, inst.HostNodeID = proto.InstanceStopped, proto.StatusOffline, nil
		update()
		return &proto.EvacuateInstanceResponse{Outcome: proto.EvacGone, Message: "stopped (its host is fenced)"}, nil
	case proto.InstanceShuttingDown:
		if !ev.fenced || finalize == nil {
			break
		}
		if err := finalize(ev.tx, ev.b, inst, ev.now); err != nil {
			return nil, err
		}
		return &proto.EvacuateInstanceResponse{Outcome: proto.EvacGone, Message: "terminated (its host is fenced)"}, nil
	}
	return &proto.EvacuateInstanceResponse{Outcome: proto.EvacLeft,
		Message: "left " + inst.State + ": the job working on it ends it"}, nil
}

// FinishEvacuation is scheduler-collector finish_evacuation.
func (e *Evacuation) FinishEvacuation(ctx context.Context, req proto.FinishEvacuationRequest) (*proto.FinishEvacuationResponse, error) {
	err := e.commit(ctx, func(tx *state.Tx, b *state.Builder) error {
		host, hm, err := getHost(tx, req.HostNodeID)
		if err != nil || req.KeepNodeOffline || host.SchedulingEnabled {
			return err
		}
		host.SchedulingEnabled = true
		host.UpdatedAt = e.cfg.Now()
		b.Update(proto.KindHostNode, host.ID, hm.ModifyIndex, host)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &proto.FinishEvacuationResponse{}, nil
}

// FailEvacuationCleanup is the dispatcher's hook for a cleanup job that
// ended without success: when it carried the boot of an evacuated
// instance, that boot was never submitted (the old domain may still run),
// so the instance says why it waits.
func FailEvacuationCleanup(tx *state.Tx, b *state.Builder, j proto.Job, reason string, now time.Time) error {
	if j.Verb != proto.VerbCleanup || proto.EndpointBase(j.QueueName) != proto.EndpointHvaHandle {
		return nil
	}
	var req proto.HvaCleanupRequest
	if err := jobs.Args(j, &req); err != nil || req.Then == nil {
		return nil
	}
	var inst proto.Instance
	m, err := tx.Get(proto.KindInstance, req.InstanceID, &inst)
	if err != nil || inst.State != proto.InstancePending {
		return nil
	}
	inst.LastError = "evacuation: the old domain on " + proto.EndpointNode(j.QueueName) +
		" was not removed (" + reason + "); the instance was not started on its new host"
	inst.UpdatedAt = now
	b.Update(proto.KindInstance, inst.ID, m.ModifyIndex, &inst)
	return nil
}
