package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler"
)

// Placer runs the scheduler jobs: it reads a view from the managers, places
// the instance with the configured algorithms, and submits the plan to the
// leader, planning again on a fresh view when the leader finds the plan
// stale. It keeps no state between jobs besides the manager it last reached,
// so any number of scheduler daemons can run side by side.
type Placer struct {
	cfg       Config
	client    *rpc.Client
	managers  func() []string
	logger    *slog.Logger
	vendor    uint32
	macRanges []scheduler.MacRange

	mu        sync.Mutex
	preferred string // the manager that last answered (usually the leader)

	batch *batcher // nil when BatchSize is 1
}

// NewPlacer builds a Placer. managers lists the managers' RPC addresses
// (called before every round of attempts, so it may follow membership).
func NewPlacer(cfg Config, client *rpc.Client, managers func() []string, logger *slog.Logger) (*Placer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	vendor, _ := cfg.macVendor()
	ranges, _ := cfg.macRanges()
	if logger == nil {
		logger = logging.Discard()
	}
	p := &Placer{cfg: cfg, client: client, managers: managers, logger: logger, vendor: vendor, macRanges: ranges}
	if cfg.BatchSize > 1 {
		p.batch = &batcher{p: p}
	}
	return p, nil
}

// ScheduleInstance is the job scheduler.schedule_instance.
func (p *Placer) ScheduleInstance(ctx context.Context, req proto.ScheduleInstanceRequest) (proto.ScheduleInstanceResponse, error) {
	if p.batch != nil && req.InstanceID != "" {
		host, err := p.batch.schedule(ctx, req.InstanceID)
		return proto.ScheduleInstanceResponse{InstanceID: req.InstanceID, HostNodeID: host}, err
	}
	host, err := p.schedule(ctx, req.InstanceID, false)
	return proto.ScheduleInstanceResponse{InstanceID: req.InstanceID, HostNodeID: host}, err
}

// ScheduleStartInstance is the job scheduler.schedule_start_instance: a
// stopped instance gets a host and new addresses for its vifs.
func (p *Placer) ScheduleStartInstance(ctx context.Context, req proto.ScheduleStartInstanceRequest) (proto.ScheduleStartInstanceResponse, error) {
	host, err := p.schedule(ctx, req.InstanceID, true)
	return proto.ScheduleStartInstanceResponse{InstanceID: req.InstanceID, HostNodeID: host}, err
}

// schedule places one instance and returns its host node id.
func (p *Placer) schedule(ctx context.Context, instanceID string, start bool) (string, error) {
	if instanceID == "" {
		return "", errs.New(errs.InvalidParameter, "instance_id is empty")
	}
	var lastStale error
	for attempt := 1; attempt <= p.cfg.PlanAttempts; attempt++ {
		var w proto.SchedView
		if err := p.call(ctx, proto.VerbGetView, proto.GetViewRequest{InstanceID: instanceID, Start: start}, &w); err != nil {
			return "", err
		}
		switch w.Request.State {
		case proto.InstanceScheduling:
		case proto.InstanceTerminated:
			return "", errs.New(errs.InvalidInstanceState, "instance %s is terminated", instanceID)
		default:
			// Placed already: this job was delivered again after a run whose
			// result was lost.
			p.logger.InfoContext(ctx, "instance already placed", "instance_id", instanceID,
				"state", w.Request.State, "host_node_id", w.Request.HostNodeID)
			return w.Request.HostNodeID, nil
		}
		plan, err := p.place(&w, start, attempt)
		if err != nil {
			return "", p.fail(ctx, instanceID, err)
		}
		var resp proto.SubmitPlanResponse
		err = p.call(ctx, proto.VerbSubmitPlan, plan, &resp)
		switch {
		case err == nil:
			p.logger.InfoContext(ctx, "instance placed", "instance_id", instanceID, "host_node_id", resp.HostNodeID,
				"attempt", attempt, "vifs", resp.VifIDs, "jobs", resp.JobIDs, "already_applied", resp.AlreadyApplied)
			return resp.HostNodeID, nil
		case errs.Is(err, errs.Conflict):
			p.logger.InfoContext(ctx, "plan rejected as stale; planning again", "instance_id", instanceID,
				"attempt", attempt, "error", err)
			lastStale = err
			// Contenders that lost the same race re-plan at the same moment;
			// a little jitter spreads their next submits.
			select {
			case <-ctx.Done():
				return "", ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(replanJitter)))):
			}
			continue
		case errs.Is(err, errs.InvalidInstanceState), errs.Is(err, errs.UnknownInstance), ctx.Err() != nil, rpc.IsRetryable(err):
			// Not ours any more (terminated or placed meanwhile), or the
			// managers are out of reach until the job's deadline: the job
			// fails and the instance is left as it is.
			return "", err
		default:
			return "", p.fail(ctx, instanceID, err)
		}
	}
	return "", p.fail(ctx, instanceID, errs.New(errs.OutOfHostCapacity,
		"no placement held after %d attempts: %v", p.cfg.PlanAttempts, lastStale))
}

// fail reports that the instance cannot be placed (the leader terminates it
// with the reason) and returns the job's error.
func (p *Placer) fail(ctx context.Context, instanceID string, cause error) error {
	reason := cause.Error()
	var se *scheduler.SchedulingError
	if errors.As(cause, &se) {
		reason = se.Kind.String() + ": " + se.Msg
		cause = errs.New(jobKind(se.Kind), "%s", reason)
	}
	p.logger.WarnContext(ctx, "instance cannot be placed", "instance_id", instanceID, "reason", reason)
	if err := p.call(ctx, proto.VerbScheduleFailed, proto.ScheduleFailedRequest{InstanceID: instanceID, Reason: reason}, nil); err != nil {
		return fmt.Errorf("%w (and reporting the failure: %v)", cause, err)
	}
	return cause
}

// jobKind is the error kind a job fails with for a scheduling error: the
// 12.03 kinds that name the cause.
func jobKind(k scheduler.ErrorKind) errs.Kind {
	switch k {
	case scheduler.KindHostNode:
		return errs.OutOfHostCapacity
	case scheduler.KindStorageNode:
		return errs.OutOfDiskSpace
	case scheduler.KindOutOfIPRange:
		return errs.OutOfNetworkCapacity
	case scheduler.KindMacAddress:
		return errs.InvalidMacAddress
	case scheduler.KindIPAddress:
		return errs.InvalidIPAddress
	case scheduler.KindNetwork, scheduler.KindInvalidUUID:
		return errs.UnknownNetwork
	}
	return errs.InvalidParameter
}

// schedulers builds the algorithms of a service type for one job (the MAC
// schedulers' random source is not safe to share between jobs).
func (p *Placer) schedulers(serviceType string, rnd scheduler.Rand) (*scheduler.Schedulers, error) {
	st, ok := p.cfg.ServiceTypes[serviceType]
	if !ok {
		st = p.cfg.ServiceTypes[p.cfg.DefaultServiceType]
	}
	return st.Build(rnd, p.vendor)
}

// replanJitter scales the random pause before planning again after a
// stale plan (up to attempt × replanJitter).
const replanJitter = 5 * time.Millisecond

// maxSpread caps how many free addresses a re-plan may skip.
const maxSpread = 32

// place runs the algorithms on a view and returns the plan to submit.
// attempt counts the plans made for this job so far (1 = first).
func (p *Placer) place(w *proto.SchedView, start bool, attempt int) (proto.SubmitPlanRequest, error) {
	rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	s, err := p.schedulers(w.Request.ServiceType, rnd)
	if err != nil {
		return proto.SubmitPlanRequest{}, err
	}
	v, r, err := scheduler.ViewFromProto(w)
	if err != nil {
		return proto.SubmitPlanRequest{}, errs.Wrap(errs.Internal, err, "decode view")
	}
	v.MacRanges = p.macRanges
	if hasHostParam(&r) {
		// A host named by the request (or chosen by the API) is used as it
		// is, whichever host scheduler the service type configures.
		s.Host = scheduler.SpecifyNode{}
	}
	run := func(v *scheduler.View) (proto.SubmitPlanRequest, error) {
		if start {
			return placeStart(s, v, &r, w.Request.Vifs)
		}
		pl, err := s.PlaceOne(v, &r)
		if err != nil {
			return proto.SubmitPlanRequest{}, err
		}
		return scheduler.PlacementToProto(&pl), nil
	}
	plan, err := p.spread(v, run, attempt, rnd, s.IP)
	if err != nil {
		return plan, err
	}
	plan.Start, plan.ViewIndex = start, w.Index
	return plan, nil
}

// spread runs the placement. A re-plan (attempt > 1) has lost a race, most
// likely for an address: every daemon placing on a network reaches for the
// same next free address, so only one of them wins each round. Then the
// placement is made once to learn its networks, and again with a random
// number of the next free addresses of those networks skipped (up to more
// the more rounds were lost), which spreads the contenders, as the API's
// allocator does for its own retries. Only the Incremental scheduler picks
// "the next" address; other IP schedulers are run once.
func (p *Placer) spread(v *scheduler.View, run func(*scheduler.View) (proto.SubmitPlanRequest, error),
	attempt int, rnd *rand.Rand, ip scheduler.IPScheduler) (proto.SubmitPlanRequest, error) {
	if _, incremental := ip.(scheduler.Incremental); attempt == 1 || !incremental {
		return run(v)
	}
	first, err := run(v.Clone())
	if err != nil {
		return first, err
	}
	width := min(1<<min(attempt-1, 5), maxSpread)
	for _, n := range first.Nics {
		if n.NetworkID != "" && n.IPv4Auto {
			skipFree(v, n.NetworkID, rnd.IntN(width))
		}
		if n.NatNetworkID != "" && n.NatIPv4Auto {
			skipFree(v, n.NatNetworkID, rnd.IntN(width))
		}
	}
	return run(v)
}

// skipFree marks the next n addresses Incremental would hand out on network
// id as taken in v (static leases, so that the Incremental scheduler's
// starting point stays where it was).
func skipFree(v *scheduler.View, id string, n int) {
	for i := range v.Networks {
		nw := &v.Networks[i]
		if nw.ID != id {
			continue
		}
		for range n {
			c, err := scheduler.Incremental{}.ScheduleIP(nw, "")
			if err != nil {
				return
			}
			if nw.Leases == nil {
				nw.Leases = map[scheduler.IPv4]scheduler.Lease{}
			}
			for _, a := range c.Reserved {
				nw.Leases[a] = scheduler.Lease{Kind: scheduler.LeaseReserved}
			}
			nw.Leases[c.Addr] = scheduler.Lease{Kind: scheduler.LeaseStatic}
		}
		return
	}
}

func hasHostParam(r *scheduler.Request) bool {
	for _, k := range [...]string{"host_id", "host_pool_id", "host_node_id"} {
		if s, ok := r.RequestParams[k].(string); ok && s != "" {
			return true
		}
	}
	return false
}

// placeStart is schedule_start_instance's placement: a host, a new address
// for every vif on a network (its MAC and network stay), and the volumes
// (local ones deployed again on the new host).
func placeStart(s *scheduler.Schedulers, v *scheduler.View, r *scheduler.Request, vifs []proto.SchedVif) (proto.SubmitPlanRequest, error) {
	h, err := s.Host.ScheduleHost(v, r)
	if err != nil {
		return proto.SubmitPlanRequest{}, err
	}
	plan := proto.SubmitPlanRequest{InstanceID: r.InstanceID, HostNodeID: h.ID, Nics: []proto.PlannedNic{}, Volumes: []proto.PlannedVolume{}}
	ip := s.IP
	if _, specify := ip.(scheduler.SpecifyIP); specify || ip == nil {
		// A restart asks for no particular address.
		ip = scheduler.Incremental{}
	}
	lease := func(id string) (string, bool, error) {
		for i := range v.Networks {
			if nw := &v.Networks[i]; nw.ID == id {
				c, err := ip.ScheduleIP(nw, "")
				if err != nil {
					return "", false, err
				}
				nw.Record(c)
				return c.Addr.String(), c.Kind == scheduler.LeaseAuto, nil
			}
		}
		return "", false, &scheduler.SchedulingError{Kind: scheduler.KindNetwork, Msg: fmt.Sprintf("Network '%s' doesn't exist.", id)}
	}
	for _, vif := range vifs {
		n := proto.PlannedNic{VifID: vif.ID, Index: vif.DeviceIndex, NetworkID: vif.NetworkID, NatNetworkID: vif.NatNetworkID,
			MacAddr: vif.MacAddr, SecurityGroups: []string{}}
		if vif.NetworkID != "" {
			if n.IPv4Address, n.IPv4Auto, err = lease(vif.NetworkID); err != nil {
				return plan, err
			}
		}
		if vif.NatNetworkID != "" {
			if n.NatIPv4Address, n.NatIPv4Auto, err = lease(vif.NatNetworkID); err != nil {
				return plan, err
			}
		}
		plan.Nics = append(plan.Nics, n)
	}
	for i := range r.Volumes {
		vol := &r.Volumes[i]
		if vol.Local {
			plan.Volumes = append(plan.Volumes, proto.PlannedVolume{VolumeID: vol.ID, Local: true})
			continue
		}
		sn, err := s.PlaceVolume(v, vol)
		if err != nil {
			return plan, err
		}
		plan.Volumes = append(plan.Volumes, proto.PlannedVolume{VolumeID: vol.ID, StorageNodeID: sn.ID})
	}
	return plan, nil
}

// Backoff bounds between rounds of calls when no manager accepted one.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// call sends a scheduler-collector verb to the managers: the one that last
// answered first, then the others, moving on when one is unreachable, timed
// out or not the leader; after a round where none accepted it waits (with
// backoff) and tries again until ctx ends. Other errors are the answer.
// Retrying is safe: get_view only reads, and the leader recognises a
// submit_plan or schedule_failed it has applied already.
func (p *Placer) call(ctx context.Context, verb string, req, resp any) error {
	return p.callEndpoint(ctx, proto.EndpointSchedulerCollector, verb, req, resp, true)
}

// callEndpoint is call for any endpoint of the managers; without retry it
// gives up after one round over the managers.
func (p *Placer) callEndpoint(ctx context.Context, endpoint, verb string, req, resp any, retry bool) error {
	delay := minBackoff
	// lastErr survives the rounds: when the caller gives up mid-call, the
	// failure worth reporting is the last answer, not the cancellation.
	var lastErr error = errs.New(errs.Unavailable, "no manager known yet")
	for {
		for _, addr := range p.order(p.managers()) {
			cctx, cancel := context.WithTimeout(ctx, p.cfg.callTimeout())
			err := p.client.Call(cctx, addr, endpoint, verb, req, resp)
			cancel()
			if err == nil || !rpc.IsRetryable(err) {
				p.mu.Lock()
				p.preferred = addr
				p.mu.Unlock()
				return err
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s/%s: %w (last error: %v)", endpoint, verb, errs.Wrap(errs.Timeout, ctx.Err(), "no manager accepted the call"), lastErr)
			}
			lastErr = err
		}
		if !retry {
			return lastErr
		}
		p.logger.DebugContext(ctx, "no manager accepted the call; retrying", "verb", verb, "error", lastErr, "retry_in", delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s/%s: %w (last error: %v)", endpoint, verb, errs.Wrap(errs.Timeout, ctx.Err(), "no manager accepted the call"), lastErr)
		case <-time.After(delay):
		}
		delay = min(delay*2, maxBackoff)
	}
}

// order puts the preferred manager first.
func (p *Placer) order(addrs []string) []string {
	p.mu.Lock()
	pref := p.preferred
	p.mu.Unlock()
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if a == pref {
			out = append(out, a)
		}
	}
	for _, a := range addrs {
		if a != pref {
			out = append(out, a)
		}
	}
	return out
}
