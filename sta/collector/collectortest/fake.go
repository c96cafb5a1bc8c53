// Package collectortest has an in-memory stand-in for the managers'
// collector endpoints as the sta uses them: volumes, backup objects,
// images and instances with the rules of the wire contract
// (proto/collector.go: deleted is final, deleting moves only to deleted,
// available backup objects have progress 100, post-processing waits for
// every backup object of an image), follow-up jobs deduplicated by
// (parent, key), and job results. Tests use it directly (it has the
// methods of sta/collector.Client) or serve it over RPC (Register,
// StartManager) where it stands in for a manager.
package collectortest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vdc-project/vdc/common/agent/agenttest"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
)

// Job is a follow-up job submitted through submit_job.
type Job struct {
	ID string
	proto.SubmitJobRequest
}

// Fake is the in-memory collector. It is safe for concurrent use.
type Fake struct {
	mu               sync.Mutex
	volumes          map[string]*proto.VolumeView
	bos              map[string]*proto.BackupObjectView
	images           map[string]*proto.ImageView
	instances        map[string]*proto.InstanceView
	volUpd           []proto.UpdateVolumeRequest
	boUpd            []proto.UpdateBackupObjectRequest
	imgUpd           []proto.UpdateImageRequest
	instUpd          []proto.UpdateInstanceRequest
	jobs             []Job
	results          []proto.JobFinishedRequest
	agenttest.Faults // InjectError
	hooks            map[string]func()
}

// New returns an empty Fake.
func New() *Fake {
	return &Fake{
		volumes: map[string]*proto.VolumeView{}, bos: map[string]*proto.BackupObjectView{},
		images: map[string]*proto.ImageView{}, instances: map[string]*proto.InstanceView{},
		hooks: map[string]func(){},
	}
}

// PutVolume stores (a copy of) a volume. Its backup object, if any, is
// resolved from the stored ones on every read.
func (f *Fake) PutVolume(v proto.VolumeView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.volumes[v.ID] = &v
}

// PutBackupObject stores a backup object.
func (f *Fake) PutBackupObject(bo proto.BackupObjectView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bos[bo.ID] = &bo
}

// PutImage stores an image.
func (f *Fake) PutImage(img proto.ImageView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[img.ID] = &img
}

// PutInstance stores an instance.
func (f *Fake) PutInstance(v proto.InstanceView) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances[v.ID] = &v
}

// Volume returns a copy of a volume.
func (f *Fake) Volume(id string) (proto.VolumeView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.volumes[id]
	if !ok {
		return proto.VolumeView{}, false
	}
	return f.resolveLocked(v), true
}

// BackupObject returns a copy of a backup object.
func (f *Fake) BackupObject(id string) (proto.BackupObjectView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	bo, ok := f.bos[id]
	if !ok {
		return proto.BackupObjectView{}, false
	}
	return *bo, true
}

// Image returns a copy of an image.
func (f *Fake) Image(id string) (proto.ImageView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, ok := f.images[id]
	if !ok {
		return proto.ImageView{}, false
	}
	return *img, true
}

// Instance returns a copy of an instance.
func (f *Fake) Instance(id string) (proto.InstanceView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.instances[id]
	if !ok {
		return proto.InstanceView{}, false
	}
	return *v, true
}

// VolumeStates returns the states volume id was moved to, in order.
func (f *Fake) VolumeStates(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, u := range f.volUpd {
		if u.VolumeID == id && u.State != nil {
			out = append(out, *u.State)
		}
	}
	return out
}

// BackupObjectStates returns the states backup object id was moved to.
func (f *Fake) BackupObjectStates(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, u := range f.boUpd {
		if u.BackupObjectID == id && u.State != nil {
			out = append(out, *u.State)
		}
	}
	return out
}

// BackupObjectUpdates returns the update_backup_object calls for id.
func (f *Fake) BackupObjectUpdates(id string) []proto.UpdateBackupObjectRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []proto.UpdateBackupObjectRequest
	for _, u := range f.boUpd {
		if u.BackupObjectID == id {
			out = append(out, u)
		}
	}
	return out
}

// ImageStates returns the states image id was moved to.
func (f *Fake) ImageStates(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, u := range f.imgUpd {
		if u.ImageID == id && u.State != nil {
			out = append(out, *u.State)
		}
	}
	return out
}

// InstanceStates returns the states instance id was moved to.
func (f *Fake) InstanceStates(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, u := range f.instUpd {
		if u.InstanceID == id && u.State != nil {
			out = append(out, *u.State)
		}
	}
	return out
}

// Jobs returns the follow-up jobs submitted (one per parent and key).
func (f *Fake) Jobs() []Job {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.jobs)
}

// JobResults returns the job_finished reports received.
func (f *Fake) JobResults() []proto.JobFinishedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.results)
}

// Before runs fn (without the fake's lock) before each later call of
// verb is served, e.g. to delete a volume while a create runs; nil clears it.
func (f *Fake) Before(verb string, fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fn == nil {
		delete(f.hooks, verb)
		return
	}
	f.hooks[verb] = fn
}

// begin runs the hook of verb, then takes the lock; it returns the
// injected error, if any. The caller unlocks.
func (f *Fake) begin(ctx context.Context, verb string) error {
	f.mu.Lock()
	hook := f.hooks[verb]
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, verb)
	}
	return f.Injected(verb)
}

func (f *Fake) resolveLocked(v *proto.VolumeView) proto.VolumeView {
	c := *v
	if c.Device != nil {
		d := *c.Device
		c.Device = &d
	}
	if c.BackupObject != nil {
		if bo, ok := f.bos[c.BackupObject.ID]; ok {
			b := *bo
			c.BackupObject = &b
		}
	}
	return c
}

// GetVolume implements sta-collector get_volume.
func (f *Fake) GetVolume(ctx context.Context, id string) (*proto.VolumeView, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbGetVolume); err != nil {
		return nil, err
	}
	v, ok := f.volumes[id]
	if !ok {
		return nil, errs.New(errs.UnknownVolume, "%s", id)
	}
	c := f.resolveLocked(v)
	return &c, nil
}

// UpdateVolume implements sta-collector update_volume with the contract's
// rules: deleted is final, deleting moves only to deleted.
func (f *Fake) UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbUpdateVolume); err != nil {
		return err
	}
	v, ok := f.volumes[req.VolumeID]
	if !ok {
		return errs.New(errs.UnknownVolume, "%s", req.VolumeID)
	}
	if req.State != nil && *req.State != v.State {
		switch v.State {
		case proto.VolumeDeleted:
			return errs.New(errs.InvalidVolumeState, "%s is deleted", v.ID)
		case proto.VolumeDeleting:
			if *req.State != proto.VolumeDeleted {
				return errs.New(errs.InvalidVolumeState, "%s is deleting: only deleted may follow", v.ID)
			}
		}
	} else if v.State == proto.VolumeDeleted && (req.Device != nil || req.DetachInstance) {
		return errs.New(errs.InvalidVolumeState, "%s is deleted", v.ID)
	}
	f.volUpd = append(f.volUpd, req)
	if req.State != nil {
		v.State = *req.State
	}
	if req.Device != nil {
		d := *req.Device
		v.Device = &d
	}
	if req.DetachInstance {
		v.InstanceID = nil
	}
	return nil
}

// AvailableVolumes implements sta-collector get_available_volumes.
func (f *Fake) AvailableVolumes(ctx context.Context, nodeID string) ([]proto.VolumeView, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbGetAvailableVolumes); err != nil {
		return nil, err
	}
	out := []proto.VolumeView{}
	for _, v := range f.volumes {
		if v.StorageNode == nil || v.StorageNode.NodeID != nodeID {
			continue
		}
		switch v.State {
		case proto.VolumeAvailable, proto.VolumeAttaching, proto.VolumeAttached, proto.VolumeDetaching:
			out = append(out, f.resolveLocked(v))
		}
	}
	slices.SortFunc(out, func(a, b proto.VolumeView) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// GetBackupObject implements sta-collector get_backup_object.
func (f *Fake) GetBackupObject(ctx context.Context, id string) (*proto.BackupObjectView, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbGetBackupObject); err != nil {
		return nil, err
	}
	bo, ok := f.bos[id]
	if !ok {
		return nil, errs.New(errs.UnknownBackupObject, "%s", id)
	}
	c := *bo
	return &c, nil
}

// UpdateBackupObject implements sta-collector update_backup_object:
// deleted moves only to purged, purged is final, available sets progress 100.
func (f *Fake) UpdateBackupObject(ctx context.Context, req proto.UpdateBackupObjectRequest) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbUpdateBackupObject); err != nil {
		return err
	}
	bo, ok := f.bos[req.BackupObjectID]
	if !ok {
		return errs.New(errs.UnknownBackupObject, "%s", req.BackupObjectID)
	}
	switch bo.State {
	case proto.BackupObjectPurged:
		if req.State == nil || *req.State != proto.BackupObjectPurged {
			return errs.New(errs.InvalidBackupObjectState, "%s is purged", bo.ID)
		}
	case proto.BackupObjectDeleted:
		if req.State == nil || (*req.State != proto.BackupObjectDeleted && *req.State != proto.BackupObjectPurged) {
			return errs.New(errs.InvalidBackupObjectState, "%s is deleted", bo.ID)
		}
	}
	f.boUpd = append(f.boUpd, req)
	if req.State != nil {
		bo.State = *req.State
		if bo.State == proto.BackupObjectAvailable {
			bo.Progress = 100
		}
	}
	if req.Checksum != nil {
		bo.Checksum = *req.Checksum
	}
	if req.AllocationSize != nil {
		n := *req.AllocationSize
		bo.AllocationSize = &n
	}
	if req.Progress != nil && bo.State != proto.BackupObjectAvailable {
		bo.Progress = *req.Progress
	}
	if req.ObjectKey != nil {
		bo.ObjectKey = *req.ObjectKey
	}
	return nil
}

// GetImage implements sta-collector get_image.
func (f *Fake) GetImage(ctx context.Context, id string) (*proto.ImageView, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbGetImage); err != nil {
		return nil, err
	}
	img, ok := f.images[id]
	if !ok {
		return nil, errs.New(errs.UnknownImage, "%s", id)
	}
	c := *img
	return &c, nil
}

// UpdateImage implements sta-collector update_image.
func (f *Fake) UpdateImage(ctx context.Context, req proto.UpdateImageRequest) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbUpdateImage); err != nil {
		return err
	}
	img, ok := f.images[req.ImageID]
	if !ok {
		return errs.New(errs.UnknownImage, "%s", req.ImageID)
	}
	f.imgUpd = append(f.imgUpd, req)
	if req.State != nil {
		img.State = *req.State
	}
	return nil
}

// PostProcessBackupImage implements sta-collector post_process_backup_image.
func (f *Fake) PostProcessBackupImage(ctx context.Context, id string) (bool, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbPostProcessBackupImage); err != nil {
		return false, err
	}
	img, ok := f.images[id]
	if !ok {
		return false, errs.New(errs.UnknownImage, "%s", id)
	}
	ids := []string{img.BackupObjectID}
	for _, v := range img.Volumes {
		ids = append(ids, v.BackupObjectID)
	}
	for _, b := range ids {
		if bo, ok := f.bos[b]; !ok || bo.State != proto.BackupObjectAvailable {
			return false, nil
		}
	}
	img.State = "available"
	return true, nil
}

// GetInstance implements hva-collector get_instance.
func (f *Fake) GetInstance(ctx context.Context, id string) (*proto.InstanceView, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbGetInstance); err != nil {
		return nil, err
	}
	v, ok := f.instances[id]
	if !ok {
		return nil, errs.New(errs.UnknownInstance, "UnknownInstanceID %s", id)
	}
	c := *v
	return &c, nil
}

// UpdateInstance implements hva-collector update_instance.
func (f *Fake) UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbUpdateInstance); err != nil {
		return err
	}
	v, ok := f.instances[req.InstanceID]
	if !ok {
		return errs.New(errs.UnknownInstance, "UnknownInstanceID %s", req.InstanceID)
	}
	f.instUpd = append(f.instUpd, req)
	if req.State != nil {
		v.State = *req.State
	}
	return nil
}

// SubmitJob implements job-collector submit_job, deduplicated by (parent, key).
func (f *Fake) SubmitJob(ctx context.Context, parentID, key, endpoint, verb, resourceID string, args any) (string, error) {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbSubmitJob); err != nil {
		return "", err
	}
	for _, j := range f.jobs {
		if j.ParentID == parentID && j.Key == key {
			return j.ID, nil
		}
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return "", err
	}
	j := Job{ID: fmt.Sprintf("job-%08d", len(f.jobs)+1), SubmitJobRequest: proto.SubmitJobRequest{
		ParentID: parentID, Key: key, Endpoint: endpoint, Verb: verb, Args: raw, ResourceID: resourceID}}
	f.jobs = append(f.jobs, j)
	return j.ID, nil
}

// JobFinished implements job-collector job_finished.
func (f *Fake) JobFinished(ctx context.Context, nodeID string, res proto.JobResult) error {
	defer f.mu.Unlock()
	if err := f.begin(ctx, proto.VerbJobFinished); err != nil {
		return err
	}
	f.results = append(f.results, proto.JobFinishedRequest{NodeID: nodeID, Result: res})
	return nil
}

// Register serves the fake's verbs on s as a manager would.
func (f *Fake) Register(s *rpc.Server) {
	sc, hc, jc := proto.EndpointStaCollector, proto.EndpointHvaCollector, proto.EndpointJobCollector
	s.Register(sc, proto.VerbGetVolume, rpc.Func(func(ctx context.Context, r proto.GetVolumeRequest) (*proto.VolumeView, error) {
		return f.GetVolume(ctx, r.VolumeID)
	}))
	s.Register(sc, proto.VerbUpdateVolume, rpc.Func(func(ctx context.Context, r proto.UpdateVolumeRequest) (proto.UpdateVolumeResponse, error) {
		return proto.UpdateVolumeResponse{}, f.UpdateVolume(ctx, r)
	}))
	s.Register(sc, proto.VerbGetAvailableVolumes, rpc.Func(func(ctx context.Context, r proto.GetAvailableVolumesRequest) (proto.GetAvailableVolumesResponse, error) {
		v, err := f.AvailableVolumes(ctx, r.NodeID)
		return proto.GetAvailableVolumesResponse{Volumes: v}, err
	}))
	s.Register(sc, proto.VerbGetBackupObject, rpc.Func(func(ctx context.Context, r proto.GetBackupObjectRequest) (*proto.BackupObjectView, error) {
		return f.GetBackupObject(ctx, r.BackupObjectID)
	}))
	s.Register(sc, proto.VerbUpdateBackupObject, rpc.Func(func(ctx context.Context, r proto.UpdateBackupObjectRequest) (proto.UpdateBackupObjectResponse, error) {
		return proto.UpdateBackupObjectResponse{}, f.UpdateBackupObject(ctx, r)
	}))
	s.Register(sc, proto.VerbGetImage, rpc.Func(func(ctx context.Context, r proto.GetImageRequest) (*proto.ImageView, error) {
		return f.GetImage(ctx, r.ImageID)
	}))
	s.Register(sc, proto.VerbUpdateImage, rpc.Func(func(ctx context.Context, r proto.UpdateImageRequest) (proto.UpdateImageResponse, error) {
		return proto.UpdateImageResponse{}, f.UpdateImage(ctx, r)
	}))
	s.Register(sc, proto.VerbPostProcessBackupImage, rpc.Func(func(ctx context.Context, r proto.PostProcessBackupImageRequest) (proto.PostProcessBackupImageResponse, error) {
		ok, err := f.PostProcessBackupImage(ctx, r.ImageID)
		return proto.PostProcessBackupImageResponse{Available: ok}, err
	}))
	s.Register(hc, proto.VerbGetInstance, rpc.Func(func(ctx context.Context, r proto.GetInstanceRequest) (*proto.InstanceView, error) {
		return f.GetInstance(ctx, r.InstanceID)
	}))
	s.Register(hc, proto.VerbUpdateInstance, rpc.Func(func(ctx context.Context, r proto.UpdateInstanceRequest) (proto.UpdateInstanceResponse, error) {
		return proto.UpdateInstanceResponse{}, f.UpdateInstance(ctx, r)
	}))
	s.Register(jc, proto.VerbSubmitJob, rpc.Func(func(ctx context.Context, r proto.SubmitJobRequest) (proto.SubmitJobResponse, error) {
		id, err := f.SubmitJob(ctx, r.ParentID, r.Key, r.Endpoint, r.Verb, r.ResourceID, r.Args)
		return proto.SubmitJobResponse{JobID: id}, err
	}))
	s.Register(jc, proto.VerbJobFinished, rpc.Func(func(ctx context.Context, r proto.JobFinishedRequest) (proto.JobFinishedResponse, error) {
		return proto.JobFinishedResponse{}, f.JobFinished(ctx, r.NodeID, r.Result)
	}))
}
