// Package collectortest has an in-memory stand-in for the managers'
// collector endpoints: the instances an hva would read and write through
// hva-collector, and the job results it reports to job-collector. Tests use
// it directly (it has the methods of hva/collector.Client) or serve it over
// RPC with Register, where it stands in for a manager.
package collectortest

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/agent/agenttest"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
)

// Fake is the in-memory collector. It is safe for concurrent use.
type Fake struct {
	mu               sync.Mutex
	now              func() time.Time
	instances        map[string]*proto.InstanceView
	updates          []proto.UpdateInstanceRequest
	volumeUpdates    []proto.UpdateVolumeRequest
	results          []proto.JobFinishedRequest
	submitted        []proto.SubmitJobRequest
	aborts           []proto.AbortMigrationRequest
	agenttest.Faults // InjectError
	changed          chan struct{}
}

// New returns an empty Fake; now stamps updated_at (nil = time.Now).
func New(now func() time.Time) *Fake {
	if now == nil {
		now = time.Now
	}
	return &Fake{now: now, instances: map[string]*proto.InstanceView{}, changed: make(chan struct{})}
}

// Put stores (a copy of) an instance, replacing one with the same id.
func (f *Fake) Put(v proto.InstanceView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v.Volumes = slices.Clone(v.Volumes)
	f.instances[v.ID] = &v
	f.notifyLocked()
}

// Instance returns a copy of an instance.
func (f *Fake) Instance(id string) (proto.InstanceView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.instances[id]
	if !ok {
		return proto.InstanceView{}, false
	}
	c := *v
	c.Volumes = slices.Clone(v.Volumes)
	return c, true
}

// Updates returns the update_instance calls received for id ("" = all), in order.
func (f *Fake) Updates(id string) []proto.UpdateInstanceRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []proto.UpdateInstanceRequest
	for _, u := range f.updates {
		if id == "" || u.InstanceID == id {
			out = append(out, u)
		}
	}
	return out
}

// States returns the states id was moved to, in order (updates that left
// the state alone are skipped).
func (f *Fake) States(id string) []string {
	var out []string
	for _, u := range f.Updates(id) {
		if u.State != nil {
			out = append(out, *u.State)
		}
	}
	return out
}

// JobResults returns the job_finished reports received.
func (f *Fake) JobResults() []proto.JobFinishedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.results)
}

// Changed returns a channel closed at the next change (an update, a Put or
// a job result), for tests that wait on the fake.
func (f *Fake) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *Fake) begin(ctx context.Context, verb string) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, verb)
	}
	return f.Injected(verb)
}

// GetInstance implements hva-collector get_instance.
func (f *Fake) GetInstance(ctx context.Context, id string) (*proto.InstanceView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbGetInstance); err != nil {
		return nil, err
	}
	v, ok := f.instances[id]
	if !ok {
		return nil, errs.New(errs.UnknownInstance, "UnknownInstanceID %s", id)
	}
	// The caller's copy must not change under it when volumes are updated.
	c := *v
	c.Volumes = slices.Clone(v.Volumes)
	return &c, nil
}

// UpdateInstance implements hva-collector update_instance: nil fields stay;
// state terminated finalizes (status offline, terminated_at stamped) the
// way the manager does.
func (f *Fake) UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbUpdateInstance); err != nil {
		return err
	}
	v, ok := f.instances[req.InstanceID]
	if !ok {
		return errs.New(errs.UnknownInstance, "UnknownInstanceID %s", req.InstanceID)
	}
	if req.State != nil && req.ExpectState != nil && v.State != *req.ExpectState && v.State != *req.State &&
		*req.State != proto.InstanceTerminated {
		return errs.New(errs.InvalidInstanceState, "%s: stale report: expected %s -> %s, but the instance is %s",
			v.ID, *req.ExpectState, *req.State, v.State)
	}
	f.updates = append(f.updates, req)
	now := f.now().UTC()
	if req.State != nil {
		v.State = *req.State
	}
	if req.Status != nil {
		v.Status = *req.Status
	}
	if req.ClearHostNode {
		v.HostNode = nil
	}
	if v.State == proto.InstanceTerminated && v.TerminatedAt == nil {
		v.Status = proto.StatusOffline
		v.TerminatedAt = &now
	}
	v.UpdatedAt = now
	f.notifyLocked()
	return nil
}

// UpdateVolume implements sta-collector update_volume: it records the
// request and applies it to the instance the volume is linked to (state,
// guest device name, volume_device; detach_instance unlinks it, so the
// instance no longer lists it).
func (f *Fake) UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbUpdateVolume); err != nil {
		return err
	}
	f.volumeUpdates = append(f.volumeUpdates, req)
	for _, inst := range f.instances {
		for i := range inst.Volumes {
			vol := &inst.Volumes[i]
			if vol.ID != req.VolumeID {
				continue
			}
			if req.State != nil {
				vol.State = *req.State
			}
			if req.GuestDeviceName != nil {
				vol.GuestDeviceName = *req.GuestDeviceName
			}
			if req.Device != nil {
				d := *req.Device
				vol.Device = &d
			}
			if req.DetachInstance {
				inst.Volumes = slices.Delete(slices.Clone(inst.Volumes), i, i+1)
			}
			break
		}
	}
	f.notifyLocked()
	return nil
}

// VolumeStates returns the states volume id was moved to, in order.
func (f *Fake) VolumeStates(id string) []string {
	var out []string
	for _, u := range f.VolumeUpdates() {
		if u.VolumeID == id && u.State != nil {
			out = append(out, *u.State)
		}
	}
	return out
}

// VolumeUpdates returns the update_volume requests received so far.
func (f *Fake) VolumeUpdates() []proto.UpdateVolumeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.UpdateVolumeRequest(nil), f.volumeUpdates...)
}

// FinalizeInstance implements hva-collector finalize_instance.
func (f *Fake) FinalizeInstance(ctx context.Context, id string) error {
	st := proto.InstanceTerminated
	return f.UpdateInstance(ctx, proto.UpdateInstanceRequest{InstanceID: id, State: &st})
}

// InstanceMonitorData implements hva-collector get_instance_monitor_data:
// the node's instances in state running, halting or shuttingdown.
func (f *Fake) InstanceMonitorData(ctx context.Context, nodeID string) ([]proto.InstanceMonitorEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbGetInstanceMonitorData); err != nil {
		return nil, err
	}
	var out []proto.InstanceMonitorEntry
	for _, v := range f.instances {
		if v.HostNode == nil || v.HostNode.NodeID != nodeID {
			continue
		}
		switch v.State {
		case proto.InstanceRunning, proto.InstanceHalting, proto.InstanceShuttingDown:
			out = append(out, proto.InstanceMonitorEntry{InstanceID: v.ID, Hypervisor: v.Hypervisor,
				State: v.State, Status: v.Status, CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt})
		}
	}
	slices.SortFunc(out, func(a, b proto.InstanceMonitorEntry) int { return cmp.Compare(a.InstanceID, b.InstanceID) })
	return out, nil
}

// JobFinished implements job-collector job_finished.
func (f *Fake) JobFinished(ctx context.Context, nodeID string, res proto.JobResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbJobFinished); err != nil {
		return err
	}
	f.results = append(f.results, proto.JobFinishedRequest{NodeID: nodeID, Result: res})
	f.notifyLocked()
	return nil
}

// SwitchInstanceHostNode implements hva-collector switch_instance_host_node:
// a migrating instance's host becomes its migration destination.
func (f *Fake) SwitchInstanceHostNode(ctx context.Context, id, destNodeID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbSwitchInstanceHostNode); err != nil {
		return err
	}
	v, ok := f.instances[id]
	if !ok {
		return errs.New(errs.UnknownInstance, "UnknownInstanceID %s", id)
	}
	if v.HostNode != nil && v.HostNode.NodeID == destNodeID && v.MigrationDest == nil {
		return nil
	}
	if v.State != proto.InstanceMigrating || v.MigrationDest == nil || v.MigrationDest.NodeID != destNodeID {
		return errs.New(errs.InvalidInstanceState, "instance %s is %s, not migrating to %s", id, v.State, destNodeID)
	}
	v.HostNode, v.MigrationDest = v.MigrationDest, nil
	v.UpdatedAt = f.now().UTC()
	f.notifyLocked()
	return nil
}

// AbortMigration implements hva-collector abort_migration: a migrating
// instance is running on its source again.
func (f *Fake) AbortMigration(ctx context.Context, id, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbAbortMigration); err != nil {
		return err
	}
	v, ok := f.instances[id]
	if !ok {
		return errs.New(errs.UnknownInstance, "UnknownInstanceID %s", id)
	}
	f.aborts = append(f.aborts, proto.AbortMigrationRequest{InstanceID: id, Reason: reason})
	if v.State == proto.InstanceMigrating {
		v.State, v.MigrationDest = proto.InstanceRunning, nil
		v.UpdatedAt = f.now().UTC()
	}
	f.notifyLocked()
	return nil
}

// Aborts returns the abort_migration calls received.
func (f *Fake) Aborts() []proto.AbortMigrationRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.aborts)
}

// SubmitJob implements job-collector submit_job: the request is recorded
// (once per parent and key) and named "job-sub<n>".
func (f *Fake) SubmitJob(ctx context.Context, req proto.SubmitJobRequest) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbSubmitJob); err != nil {
		return "", err
	}
	for i, s := range f.submitted {
		if s.ParentID == req.ParentID && s.Key == req.Key {
			return "job-sub" + strconv.Itoa(i+1), nil
		}
	}
	f.submitted = append(f.submitted, req)
	f.notifyLocked()
	return "job-sub" + strconv.Itoa(len(f.submitted)), nil
}

// Submitted returns the jobs submitted, in order.
func (f *Fake) Submitted() []proto.SubmitJobRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.submitted)
}

// Register serves the fake's verbs on s, as a manager would.
func (f *Fake) Register(s *rpc.Server) {
	s.Register(proto.EndpointHvaCollector, proto.VerbGetInstance, rpc.Func(
		func(ctx context.Context, req proto.GetInstanceRequest) (*proto.InstanceView, error) {
			return f.GetInstance(ctx, req.InstanceID)
		}))
	s.Register(proto.EndpointHvaCollector, proto.VerbUpdateInstance, rpc.Func(
		func(ctx context.Context, req proto.UpdateInstanceRequest) (proto.UpdateInstanceResponse, error) {
			return proto.UpdateInstanceResponse{}, f.UpdateInstance(ctx, req)
		}))
	s.Register(proto.EndpointHvaCollector, proto.VerbFinalizeInstance, rpc.Func(
		func(ctx context.Context, req proto.FinalizeInstanceRequest) (proto.FinalizeInstanceResponse, error) {
			return proto.FinalizeInstanceResponse{}, f.FinalizeInstance(ctx, req.InstanceID)
		}))
	s.Register(proto.EndpointHvaCollector, proto.VerbGetInstanceMonitorData, rpc.Func(
		func(ctx context.Context, req proto.GetInstanceMonitorDataRequest) (proto.GetInstanceMonitorDataResponse, error) {
			list, err := f.InstanceMonitorData(ctx, req.NodeID)
			return proto.GetInstanceMonitorDataResponse{Instances: list}, err
		}))
	s.Register(proto.EndpointStaCollector, proto.VerbUpdateVolume, rpc.Func(
		func(ctx context.Context, req proto.UpdateVolumeRequest) (proto.UpdateVolumeResponse, error) {
			return proto.UpdateVolumeResponse{}, f.UpdateVolume(ctx, req)
		}))
	s.Register(proto.EndpointHvaCollector, proto.VerbSwitchInstanceHostNode, rpc.Func(
		func(ctx context.Context, req proto.SwitchInstanceHostNodeRequest) (proto.SwitchInstanceHostNodeResponse, error) {
			return proto.SwitchInstanceHostNodeResponse{}, f.SwitchInstanceHostNode(ctx, req.InstanceID, req.DestNodeID)
		}))
	s.Register(proto.EndpointHvaCollector, proto.VerbAbortMigration, rpc.Func(
		func(ctx context.Context, req proto.AbortMigrationRequest) (proto.AbortMigrationResponse, error) {
			return proto.AbortMigrationResponse{}, f.AbortMigration(ctx, req.InstanceID, req.Reason)
		}))
	s.Register(proto.EndpointJobCollector, proto.VerbSubmitJob, rpc.Func(
		func(ctx context.Context, req proto.SubmitJobRequest) (proto.SubmitJobResponse, error) {
			id, err := f.SubmitJob(ctx, req)
			return proto.SubmitJobResponse{JobID: id}, err
		}))
	s.Register(proto.EndpointJobCollector, proto.VerbJobFinished, rpc.Func(
		func(ctx context.Context, req proto.JobFinishedRequest) (proto.JobFinishedResponse, error) {
			return proto.JobFinishedResponse{}, f.JobFinished(ctx, req.NodeID, req.Result)
		}))
}
