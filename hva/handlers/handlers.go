// Package handlers is the hva's work: the job verbs of hva-handle.<node> and
// local-store-handle.<node> that act on instances (spec/agents.md §2.2,
// §2.3), run by common/agent, and the instance monitor that reconciles the
// hypervisor's domains with the managers' view (§5, §8).
//
// A handler reads the instance from the managers when it runs (never from
// the job's arguments), checks the domain's actual state, and moves both to
// the verb's goal. Jobs are delivered at least once and an agent restart
// forgets which jobs it ran, so every handler is idempotent: run again on
// the state it left, it finishes the work or finds it done. One instance is
// worked on by one job (or monitor check) at a time.
package handlers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/keylock"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

// Defaults of Config fields left zero.
const (
	// DefaultSoftPoweroffTimeout is how long soft_poweroff waits for the
	// guest to act on the ACPI power-down before it pulls the plug.
	DefaultSoftPoweroffTimeout = 2 * time.Minute
	// DefaultMonitorInterval is the instance monitor's period (spec §5: 5 s).
	DefaultMonitorInterval = 5 * time.Second
	// DefaultForceTerminateAfter is hva.conf
	// wait_sec_until_force_terminate_from_shuttingdown (900 s).
	DefaultForceTerminateAfter = 15 * time.Minute
)

// Collector is what the handlers need of the managers (hva/collector.Client
// implements it; hva/collector/collectortest.Fake stands in for tests).
type Collector interface {
	GetInstance(ctx context.Context, id string) (*proto.InstanceView, error)
	UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error
	InstanceMonitorData(ctx context.Context, nodeID string) ([]proto.InstanceMonitorEntry, error)
	UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error
	FinalizeInstance(ctx context.Context, id string) error
	// Live migration (migration.go).
	SwitchInstanceHostNode(ctx context.Context, id, destNodeID string) error
	AbortMigration(ctx context.Context, id, reason string) error
	SubmitJob(ctx context.Context, req proto.SubmitJobRequest) (string, error)
}

// LocalStore keeps an instance's files on this host: its local volumes (the
// boot volume deployed from its image) and its metadata drive
// (hva/localstore). nil in Config: the instance has no files here (the
// dummy hypervisor).
type LocalStore interface {
	// Prepare makes the instance's local volumes and metadata drive ready
	// and fills their paths into spec.Disks (boot disk first). firstBoot is
	// false when a halted instance is powered on again (its volumes exist).
	// Idempotent.
	Prepare(ctx context.Context, v *proto.InstanceView, spec *hypervisor.Spec, firstBoot bool) error
	// Remove deletes what Prepare made for the instance; absent files are
	// removed already.
	Remove(ctx context.Context, instanceID string) error
}

// HostNetwork plugs vnics into the host's networks (hva/network): a tap per
// vnic on its DC network's bridge. nil in Config: no host networking.
type HostNetwork interface {
	// Plug makes each NIC's tap exist, up, on its DC network's bridge, and
	// fills in what the domain needs (NIC.Bridge). Idempotent.
	Plug(ctx context.Context, nics []hypervisor.NIC) error
	// Unplug removes the taps of these vifs; absent taps are removed already.
	Unplug(ctx context.Context, vifIDs []string) error
}

// Publisher publishes fan-out events (*agent.Agent).
type Publisher interface {
	Publish(ctx context.Context, ev proto.Event) error
}

// Registrar is where job verbs are registered (*agent.Agent).
type Registrar interface {
	HandleJob(endpoint, verb string, h agent.JobHandler)
}

// Config configures the handlers.
type Config struct {
	// NodeID is the hva's node id (hva.demo1); it names the endpoints.
	NodeID     string
	Hypervisor hypervisor.Hypervisor
	Collector  Collector
	Events     Publisher
	// LocalStore and Network are optional (see their types).
	LocalStore LocalStore
	Network    HostNetwork
	Logger     *slog.Logger
	// SoftPoweroffTimeout: see DefaultSoftPoweroffTimeout.
	SoftPoweroffTimeout time.Duration
	// MonitorInterval: see DefaultMonitorInterval.
	MonitorInterval time.Duration
	// MonitorPassTimeout bounds one monitor pass; default 6 intervals.
	MonitorPassTimeout time.Duration
	// ForceTerminateAfter: see DefaultForceTerminateAfter.
	ForceTerminateAfter time.Duration
	// Now is the clock of the monitor's shuttingdown timeout (nil = time.Now).
	Now func() time.Time
	// Fence configures heartbeats and self-fencing (fence.go); its zero
	// value turns them off.
	Fence FenceConfig
}

// Handlers serves the instance verbs of one hva node.
type Handlers struct {
	cfg    Config
	hv     hypervisor.Hypervisor
	coll   Collector
	logger *slog.Logger
	locks  *keylock.Map

	// monMu serialises monitor passes; suspects are the domains the last
	// pass found orphaned.
	monMu    sync.Mutex
	suspects map[string]bool
	monEpoch uint64 // fence epoch at the start of the pass

	fence   *fencer
	fenceWG sync.WaitGroup // restarts after a fence
}

// New checks cfg and returns the handlers.
func New(cfg Config) (*Handlers, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("handlers: node id is empty")
	case cfg.Hypervisor == nil || cfg.Collector == nil || cfg.Events == nil:
		return nil, errors.New("handlers: hypervisor, collector and event publisher are required")
	case cfg.SoftPoweroffTimeout < 0 || cfg.MonitorInterval < 0 || cfg.ForceTerminateAfter < 0 || cfg.MonitorPassTimeout < 0:
		return nil, errors.New("handlers: timeouts and intervals must not be negative")
	}
	cfg.SoftPoweroffTimeout = cmp.Or(cfg.SoftPoweroffTimeout, DefaultSoftPoweroffTimeout)
	cfg.MonitorInterval = cmp.Or(cfg.MonitorInterval, DefaultMonitorInterval)
	cfg.MonitorPassTimeout = cmp.Or(cfg.MonitorPassTimeout, 6*cfg.MonitorInterval)
	cfg.ForceTerminateAfter = cmp.Or(cfg.ForceTerminateAfter, DefaultForceTerminateAfter)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Fence.setDefaults(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Handlers{
		cfg: cfg, hv: cfg.Hypervisor, coll: cfg.Collector,
		logger: logger.With("component", "hva"),
		locks:  keylock.New(),
		fence:  newFencer(cfg.Fence),
	}, nil
}

// Verb is one job verb the handlers serve.
type Verb struct {
	Endpoint string // full endpoint ("hva-handle.hva.demo1")
	Verb     string
	handler  agent.JobHandler
}

// Verbs lists the verbs Register registers.
func (h *Handlers) Verbs() []Verb {
	hva := proto.HvaHandle(h.cfg.NodeID)
	ls := proto.LocalStoreHandle(h.cfg.NodeID)
	mig := proto.MigrationHandle(h.cfg.NodeID)
	return []Verb{
		{ls, proto.VerbRunLocalStore, agent.JobFunc(h.localStoreRunLocalStore)},
		{ls, proto.VerbDeleteVolume, agent.JobFunc(h.localStoreDeleteVolume)},
		{hva, proto.VerbRunLocalStore, agent.JobFunc(h.hvaRunLocalStore)},
		{hva, proto.VerbRunVolStore, agent.JobFunc(h.runVolStore)},
		{hva, proto.VerbTerminate, agent.JobFunc(h.terminate)},
		{hva, proto.VerbCleanup, agent.JobFunc(h.cleanup)},
		{hva, proto.VerbStop, agent.JobFunc(h.stop)},
		{hva, proto.VerbReboot, agent.JobFunc(h.reboot)},
		{hva, proto.VerbPoweroff, agent.JobFunc(h.poweroff)},
		{hva, proto.VerbSoftPoweroff, agent.JobFunc(h.softPoweroff)},
		{hva, proto.VerbPoweron, agent.JobFunc(h.poweron)},
		{hva, proto.VerbWaitVolumesAvailable, agent.JobFunc(h.waitVolumesAvailable)},
		{hva, proto.VerbAttach, agent.JobFunc(h.attach)},
		{hva, proto.VerbDetach, agent.JobFunc(h.detach)},
		{hva, proto.VerbAttachNic, agent.JobFunc(h.attachNic)},
		{hva, proto.VerbDetachNic, agent.JobFunc(h.detachNic)},
		{mig, proto.VerbRunVolStore, agent.JobFunc(h.migrationRunVolStore)},
		{mig, proto.VerbStartMigration, agent.JobFunc(h.startMigration)},
	}
}

// Register registers every verb on r (before the agent starts).
func (h *Handlers) Register(r Registrar) {
	for _, v := range h.Verbs() {
		r.HandleJob(v.Endpoint, v.Verb, v.handler)
	}
}

// ---- helpers shared by the verbs and the monitor ----

// update sends update_instance with the given state and status ("" = unchanged).
func (h *Handlers) update(ctx context.Context, id, state, status string) error {
	return h.transition(ctx, id, "", state, status)
}

// transition sends update_instance moving the instance from state from
// (what the handler read and acted on) to state to, with status ("" =
// unchanged). The managers refuse it when the instance left from
// meanwhile (proto.UpdateInstanceRequest.ExpectState), so a report based on
// a stale read fails the job instead of overwriting a newer state.
func (h *Handlers) transition(ctx context.Context, id, from, state, status string) error {
	req := proto.UpdateInstanceRequest{InstanceID: id}
	if state != "" {
		req.State = &state
		if from != "" && from != state {
			req.ExpectState = &from
		}
	}
	if status != "" {
		req.Status = &status
	}
	if err := h.coll.UpdateInstance(ctx, req); err != nil {
		return annotate(err, "update instance "+id+" to "+cmp.Or(state, status))
	}
	return nil
}

// publish sends events about an instance; delivery is best effort
// (subscribers reconcile from the managers), so failures are only logged.
func (h *Handlers) publish(ctx context.Context, id string, names ...string) {
	for _, name := range names {
		if err := h.cfg.Events.Publish(ctx, proto.Event{Name: name, Args: []string{id}}); err != nil {
			h.logger.WarnContext(ctx, "publish event", "event", name, "instance_id", id, "error", err)
		}
	}
}

// publishTerminated announces that an instance's VM is gone from this node.
func (h *Handlers) publishTerminated(ctx context.Context, id string) {
	h.publish(ctx, id, proto.EventInstanceTerminated, proto.EventNodeInstanceTerminated(h.cfg.NodeID))
}

// domainState is the domain's state, or "" when it is not defined.
func (h *Handlers) domainState(ctx context.Context, id string) (hypervisor.State, error) {
	d, err := h.hv.Get(ctx, id)
	if errs.Is(err, errs.NotFound) {
		return "", nil
	}
	if err != nil {
		return "", annotate(err, "get domain "+id)
	}
	return d.State, nil
}

// startDomain makes the instance's domain run: its files and taps ready,
// defined (again, with the current spec, unless it is alive) and started.
// firstBoot is false for poweron. A fenced host refuses (fencedError), also
// when it was fenced after the job read v (fence.go).
func (h *Handlers) startDomain(ctx context.Context, v *proto.InstanceView, firstBoot bool) error {
	epoch := h.fence.readEpoch(v.ID)
	release, err := h.fence.enter(epoch)
	if err != nil {
		return err
	}
	release()
	st, err := h.domainState(ctx, v.ID)
	if err != nil {
		return err
	}
	var spec hypervisor.Spec
	if !st.Alive() {
		spec = specOf(v)
		if ls := h.cfg.LocalStore; ls != nil {
			if err := ls.Prepare(ctx, v, &spec, firstBoot); err != nil {
				return annotate(err, "prepare the local store of "+v.ID)
			}
		}
		if nw := h.cfg.Network; nw != nil {
			if err := nw.Plug(ctx, spec.NICs); err != nil {
				return annotate(err, "plug the vnics of "+v.ID)
			}
		}
	}
	// The define and start happen under the fence lock, so a fence either
	// waits for them (and then stops the domain) or refuses them.
	if release, err = h.fence.enter(epoch); err != nil {
		return err
	}
	defer release()
	if !st.Alive() {
		if err := h.hv.Define(ctx, spec); err != nil {
			return annotate(err, "define domain "+v.ID)
		}
	}
	if err := h.hv.Start(ctx, v.ID); err != nil {
		return annotate(err, "start domain "+v.ID)
	}
	return nil
}

// powerOff pulls the plug of the domain, which stays defined. An absent
// domain is off already.
func (h *Handlers) powerOff(ctx context.Context, id string) error {
	if err := h.hv.Stop(ctx, id, true); err != nil && !errs.Is(err, errs.NotFound) {
		return annotate(err, "stop domain "+id)
	}
	return nil
}

// teardown removes the domain: stopped hard, then undefined. An absent
// domain is removed already.
func (h *Handlers) teardown(ctx context.Context, id string) error {
	if err := h.powerOff(ctx, id); err != nil {
		return err
	}
	if err := h.hv.Undefine(ctx, id); err != nil {
		return annotate(err, "undefine domain "+id)
	}
	return nil
}

// remove removes the instance's domain and then its host-side parts.
func (h *Handlers) remove(ctx context.Context, v *proto.InstanceView, files bool) error {
	if err := h.teardown(ctx, v.ID); err != nil {
		return err
	}
	return h.release(ctx, v, files)
}

// release removes the host-side parts of an instance whose domain is gone:
// taps, and with files also its local volumes and metadata drive (stop
// keeps them for the next start).
func (h *Handlers) release(ctx context.Context, v *proto.InstanceView, files bool) error {
	var errList []error
	if nw := h.cfg.Network; nw != nil && len(v.Vifs) > 0 {
		ids := make([]string, 0, len(v.Vifs))
		for _, vif := range v.Vifs {
			ids = append(ids, vif.ID)
		}
		if err := nw.Unplug(ctx, ids); err != nil {
			errList = append(errList, annotate(err, "unplug the vnics of "+v.ID))
		}
	}
	if ls := h.cfg.LocalStore; ls != nil && files {
		if err := ls.Remove(ctx, v.ID); err != nil {
			errList = append(errList, annotate(err, "remove the local store of "+v.ID))
		}
	}
	return errors.Join(errList...)
}

// specOf is the domain spec of an instance: its size, its volumes (boot
// volume first) and its vifs in device order.
func specOf(v *proto.InstanceView) hypervisor.Spec {
	spec := hypervisor.Spec{ID: v.ID, CPUCores: v.CPUCores, MemoryMB: v.MemorySize}
	for i := range v.Volumes {
		vol := &v.Volumes[i]
		if !inDomain(vol) || isShared(vol) && (vol.Device == nil || vol.Device.IQN == "") {
			// Being deleted, or a shared volume not made yet: no disk.
			continue
		}
		d := diskOfVolume(vol)
		d.Boot = vol.ID == v.BootVolumeID
		spec.Disks = append(spec.Disks, d)
	}
	slices.SortStableFunc(spec.Disks, func(a, b hypervisor.Disk) int {
		switch {
		case a.Boot == b.Boot:
			return 0
		case a.Boot:
			return -1
		}
		return 1
	})
	for _, vif := range v.Vifs {
		n := hypervisor.NIC{VifID: vif.ID, MAC: vif.MacAddr, DeviceIndex: vif.DeviceIndex}
		if vif.DcNetwork != nil {
			n.DcNetwork = vif.DcNetwork.Name
		}
		spec.NICs = append(spec.NICs, n)
	}
	slices.SortStableFunc(spec.NICs, func(a, b hypervisor.NIC) int { return cmp.Compare(a.DeviceIndex, b.DeviceIndex) })
	return spec
}

// annotate adds what was being done to err, keeping its kind (so a job's
// error still says UnknownInstance, OutOfHostCapacity, Timeout …).
func annotate(err error, what string) error {
	return &errs.Error{Kind: errs.KindOf(err), Msg: what, Err: err}
}
