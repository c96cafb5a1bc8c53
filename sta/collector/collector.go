// Package collector is the sta's client of the managers' collector
// endpoints (spec/agents.md §2.0; the wire contract is in
// proto/collector.go): sta-collector for volumes, backup objects and
// images, hva-collector for the instance a boot volume belongs to,
// job-collector for follow-up jobs and results.
package collector

import (
	"context"
	"encoding/json"

	"github.com/vdc-project/vdc/proto"
)

// Caller reaches a manager that accepts the call: hva/collector.Client,
// which tries the managers it learns from serf in turn and backs off while
// none accepts (no leader, unreachable). Every call below is idempotent,
// so such retries are safe.
type Caller interface {
	Call(ctx context.Context, endpoint, verb string, req, resp any) error
}

// Client calls the collector verbs the sta uses.
type Client struct {
	c Caller
}

// New returns a Client over c.
func New(c Caller) *Client { return &Client{c: c} }

// GetVolume reads a volume (errs.UnknownVolume if there is none).
func (c *Client) GetVolume(ctx context.Context, id string) (*proto.VolumeView, error) {
	var v proto.GetVolumeResponse
	if err := c.c.Call(ctx, proto.EndpointStaCollector, proto.VerbGetVolume, proto.GetVolumeRequest{VolumeID: id}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// UpdateVolume changes a volume.
func (c *Client) UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error {
	return c.c.Call(ctx, proto.EndpointStaCollector, proto.VerbUpdateVolume, req, nil)
}

// AvailableVolumes lists the volumes of the storage node nodeID that must
// be exported.
func (c *Client) AvailableVolumes(ctx context.Context, nodeID string) ([]proto.VolumeView, error) {
	var resp proto.GetAvailableVolumesResponse
	if err := c.c.Call(ctx, proto.EndpointStaCollector, proto.VerbGetAvailableVolumes,
		proto.GetAvailableVolumesRequest{NodeID: nodeID}, &resp); err != nil {
		return nil, err
	}
	return resp.Volumes, nil
}

// GetBackupObject reads a backup object (errs.UnknownBackupObject if none).
func (c *Client) GetBackupObject(ctx context.Context, id string) (*proto.BackupObjectView, error) {
	var v proto.GetBackupObjectResponse
	if err := c.c.Call(ctx, proto.EndpointStaCollector, proto.VerbGetBackupObject, proto.GetBackupObjectRequest{BackupObjectID: id}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// UpdateBackupObject changes a backup object.
func (c *Client) UpdateBackupObject(ctx context.Context, req proto.UpdateBackupObjectRequest) error {
	return c.c.Call(ctx, proto.EndpointStaCollector, proto.VerbUpdateBackupObject, req, nil)
}

// GetImage reads an image (errs.UnknownImage if none).
func (c *Client) GetImage(ctx context.Context, id string) (*proto.ImageView, error) {
	var v proto.GetImageResponse
	if err := c.c.Call(ctx, proto.EndpointStaCollector, proto.VerbGetImage, proto.GetImageRequest{ImageID: id}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// UpdateImage changes an image (sta-collector update_image).
func (c *Client) UpdateImage(ctx context.Context, req proto.UpdateImageRequest) error {
	return c.c.Call(ctx, proto.EndpointStaCollector, proto.VerbUpdateImage, req, nil)
}

// PostProcessBackupImage makes the image available if all its backup
// objects are, and says whether it is.
func (c *Client) PostProcessBackupImage(ctx context.Context, imageID string) (bool, error) {
	var resp proto.PostProcessBackupImageResponse
	if err := c.c.Call(ctx, proto.EndpointStaCollector, proto.VerbPostProcessBackupImage,
		proto.PostProcessBackupImageRequest{ImageID: imageID}, &resp); err != nil {
		return false, err
	}
	return resp.Available, nil
}

// GetInstance reads an instance (hva-collector get_instance).
func (c *Client) GetInstance(ctx context.Context, id string) (*proto.InstanceView, error) {
	var v proto.GetInstanceResponse
	if err := c.c.Call(ctx, proto.EndpointHvaCollector, proto.VerbGetInstance, proto.GetInstanceRequest{InstanceID: id}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// UpdateInstance changes an instance (state terminated finalizes it).
func (c *Client) UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error {
	return c.c.Call(ctx, proto.EndpointHvaCollector, proto.VerbUpdateInstance, req, nil)
}

// SubmitJob asks the leader for a follow-up job, deduplicated by
// (parent, key), and returns its id.
func (c *Client) SubmitJob(ctx context.Context, parentID, key, endpoint, verb, resourceID string, args any) (string, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return "", err
	}
	var resp proto.SubmitJobResponse
	err = c.c.Call(ctx, proto.EndpointJobCollector, proto.VerbSubmitJob, proto.SubmitJobRequest{
		ParentID: parentID, Key: key, Endpoint: endpoint, Verb: verb, Args: raw, ResourceID: resourceID,
	}, &resp)
	return resp.JobID, err
}

// JobFinished reports a job's final result.
func (c *Client) JobFinished(ctx context.Context, nodeID string, res proto.JobResult) error {
	return c.c.Call(ctx, proto.EndpointJobCollector, proto.VerbJobFinished, proto.JobFinishedRequest{NodeID: nodeID, Result: res}, nil)
}
