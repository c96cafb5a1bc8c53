package collector

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// sta-collector (spec/agents.md §2.0): what storage agents (and the hva's
// local store) read and report while they run volume and backup jobs. Reads
// and writes run on the leader, as for hva-collector.

// Backup object and image states the collector moves between (spec §3.3).
const (
	boPending   = "pending"
	boCreating  = "creating"
	boAvailable = "available"
	boDeleted   = "deleted"
	boPurged    = "purged"

	imageCreating  = "creating"
	imageAvailable = "available"
	imageDeleted   = "deleted"
)

func (s *Service) registerSta(srv *rpc.Server) {
	ep := proto.EndpointStaCollector
	srv.Register(ep, proto.VerbGetVolume, rpc.Func(s.getVolume))
	srv.Register(ep, proto.VerbGetAvailableVolumes, rpc.Func(s.getAvailableVolumes))
	srv.Register(ep, proto.VerbGetBackupObject, rpc.Func(s.getBackupObject))
	srv.Register(ep, proto.VerbGetImage, rpc.Func(s.getImage))
	srv.Register(ep, proto.VerbUpdateVolume, rpc.Func(s.updateVolume))
	srv.Register(ep, proto.VerbUpdateBackupObject, rpc.Func(s.updateBackupObject))
	srv.Register(ep, proto.VerbPostProcessBackupImage, rpc.Func(s.postProcessBackupImage))
	srv.Register(ep, proto.VerbUpdateImage, rpc.Func(s.updateImage))
	srv.Register(proto.EndpointJobCollector, proto.VerbSubmitJob, rpc.Func(s.submitJob))
}

// VolumeView resolves a volume with what an agent needs: its device (with
// the storage node's portal address), the storage node, and the backup
// object it is made from.
func VolumeView(tx *state.Tx, vol *proto.Volume) proto.VolumeView {
	vv := proto.VolumeView{
		ID: vol.ID, Timestamps: vol.Timestamps, AccountID: vol.AccountID, State: vol.State, Size: vol.Size,
		StoreType: vol.StoreType, InstanceID: vol.InstanceID, GuestDeviceName: vol.GuestDeviceName,
		Device: vol.Device, AttachedAt: vol.AttachedAt, DetachedAt: vol.DetachedAt, DeletedAt: vol.DeletedAt,
	}
	if vol.BackupObjectID != nil {
		vv.BackupObject = backupObjectView(tx, *vol.BackupObjectID)
	}
	if vol.StorageNodeID != nil {
		var sn proto.StorageNode
		if _, err := tx.Get(proto.KindStorageNode, *vol.StorageNodeID, &sn); err == nil {
			vv.StorageNode = &sn
			d := proto.VolumeDevice{}
			if vol.Device != nil {
				d = *vol.Device
			}
			if d.StorageNodeID == "" {
				d.StorageNodeID = sn.ID
			}
			if d.StorageIP == "" {
				d.StorageIP = sn.IPAddress
			}
			vv.Device = &d
		}
	}
	return vv
}

func (s *Service) getVolume(ctx context.Context, req proto.GetVolumeRequest) (proto.VolumeView, error) {
	var out proto.VolumeView
	err := s.read(ctx, func(tx *state.Tx) error {
		var vol proto.Volume
		if _, err := tx.Get(proto.KindVolume, req.VolumeID, &vol); err != nil {
			return errs.New(errs.UnknownVolume, "%s", req.VolumeID)
		}
		out = VolumeView(tx, &vol)
		return nil
	})
	return out, err
}

// exportedStates are the states of a volume whose data exists on its
// storage node and is exported (spec §2.0 get_available_volumes).
var exportedStates = []string{proto.VolumeAvailable, proto.VolumeAttaching, proto.VolumeAttached, proto.VolumeDetaching}

// getAvailableVolumes lists the volumes a storage agent must export (it
// re-exports them when it starts): the shared volumes placed on its storage
// node in an exported state, in creation order. A node id no storage node
// is bound to has none.
func (s *Service) getAvailableVolumes(ctx context.Context, req proto.GetAvailableVolumesRequest) (proto.GetAvailableVolumesResponse, error) {
	out := proto.GetAvailableVolumesResponse{Volumes: []proto.VolumeView{}}
	err := s.read(ctx, func(tx *state.Tx) error {
		var sn *proto.StorageNode
		err := tx.Each(proto.KindStorageNode, false, func(e state.Entry) error {
			var v proto.StorageNode
			if err := json.Unmarshal(e.Value, &v); err != nil {
				return err
			}
			if v.NodeID == req.NodeID {
				sn = &v
				return state.ErrStop
			}
			return nil
		})
		if err != nil || sn == nil {
			return err
		}
		return tx.Each(proto.KindVolume, false, func(e state.Entry) error {
			var vol proto.Volume
			if err := json.Unmarshal(e.Value, &vol); err != nil {
				return err
			}
			if vol.StoreType == proto.VolumeLocal || vol.StorageNodeID == nil || *vol.StorageNodeID != sn.ID ||
				!slices.Contains(exportedStates, vol.State) {
				return nil
			}
			out.Volumes = append(out.Volumes, VolumeView(tx, &vol))
			return nil
		})
	})
	return out, err
}

func (s *Service) getBackupObject(ctx context.Context, req proto.GetBackupObjectRequest) (proto.BackupObjectView, error) {
	var out proto.BackupObjectView
	err := s.read(ctx, func(tx *state.Tx) error {
		v := backupObjectView(tx, req.BackupObjectID)
		if v == nil {
			return errs.New(errs.UnknownBackupObject, "%s", req.BackupObjectID)
		}
		out = *v
		return nil
	})
	return out, err
}

func (s *Service) getImage(ctx context.Context, req proto.GetImageRequest) (proto.ImageView, error) {
	var out proto.ImageView
	err := s.read(ctx, func(tx *state.Tx) error {
		var img proto.Image
		if _, err := tx.Get(proto.KindImage, req.ImageID, &img); err != nil {
			return errs.New(errs.UnknownImage, "%s", req.ImageID)
		}
		out = proto.ImageView{Image: img, BackupObject: backupObjectView(tx, img.BackupObjectID)}
		return nil
	})
	return out, err
}

// volumeStateRefused says why an agent may not move a volume from one state
// to another ("" when it may). Only moves that would undo work are refused,
// so that a late or redelivered report cannot revive a volume or move it
// backwards: nothing leaves deleted; a volume being deleted only ends
// deleted (or failed); creating is only reached from pending; the states
// the API and scheduler own are never reported by agents.
func volumeStateRefused(from, to string) bool {
	if from == to {
		return false
	}
	switch {
	case from == proto.VolumeDeleted:
		return true
	case from == proto.VolumeDeleting:
		return to != proto.VolumeDeleted && to != proto.VolumeFailed
	case to == proto.VolumeCreating:
		return from != proto.VolumePending
	case to == proto.VolumeScheduling, to == proto.VolumePending, to == proto.VolumeInitialized:
		return true
	}
	return false
}

// updateVolume records what a storage agent or an hva did to a volume.
// Timestamps are stamped here from the transition (attached_at, detached_at,
// deleted_at). A volume reaching deleted gives its space back to its storage
// node. A reported device is merged with the stored one (the node and its
// portal stay when the agent leaves them out).
func (s *Service) updateVolume(ctx context.Context, req proto.UpdateVolumeRequest) (proto.UpdateVolumeResponse, error) {
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		var vol proto.Volume
		m, err := tx.Get(proto.KindVolume, req.VolumeID, &vol)
		if err != nil {
			return errs.New(errs.UnknownVolume, "%s", req.VolumeID)
		}
		if vol.State == proto.VolumeDeleted && (req.State == nil || *req.State == proto.VolumeDeleted) {
			return nil // a redelivered delete: done already
		}
		now := s.d.Now()
		if req.State != nil && *req.State != vol.State {
			if volumeStateRefused(vol.State, *req.State) {
				return errs.New(errs.InvalidVolumeState, "%s: %s -> %s is not a valid transition", vol.ID, vol.State, *req.State)
			}
			vol.State = *req.State
			switch vol.State {
			case proto.VolumeDeleted:
				vol.DeletedAt = &now
				if vol.StoreType != proto.VolumeLocal {
					if err := scheduling.ReleaseVolume(tx, b, &vol); err != nil {
						return err
					}
				}
			case proto.VolumeAttached:
				vol.AttachedAt = &now
			}
		} else if vol.State == proto.VolumeDeleted {
			return errs.New(errs.InvalidVolumeState, "%s is deleted", vol.ID)
		}
		if req.DetachInstance && vol.InstanceID != nil {
			vol.InstanceID, vol.DetachedAt, vol.KeepOnTerminate = nil, &now, false
		}
		if req.Device != nil {
			vol.Device = mergeDevice(tx, &vol, req.Device)
		}
		if req.GuestDeviceName != nil {
			vol.GuestDeviceName = *req.GuestDeviceName
		}
		vol.UpdatedAt = now
		b.Update(proto.KindVolume, vol.ID, m.ModifyIndex, vol)
		return nil
	})
	return proto.UpdateVolumeResponse{}, err
}

// mergeDevice is the reported device with the storage node and portal
// filled in from the stored device or the volume's storage node.
func mergeDevice(tx *state.Tx, vol *proto.Volume, d *proto.VolumeDevice) *proto.VolumeDevice {
	out := *d
	if old := vol.Device; old != nil {
		if out.StorageNodeID == "" {
			out.StorageNodeID = old.StorageNodeID
		}
		if out.StorageIP == "" {
			out.StorageIP = old.StorageIP
		}
	}
	if vol.StoreType != proto.VolumeLocal && vol.StorageNodeID != nil && (out.StorageNodeID == "" || out.StorageIP == "") {
		var sn proto.StorageNode
		if _, err := tx.Get(proto.KindStorageNode, *vol.StorageNodeID, &sn); err == nil {
			if out.StorageNodeID == "" {
				out.StorageNodeID = sn.ID
			}
			if out.StorageIP == "" {
				out.StorageIP = sn.IPAddress
			}
		}
	}
	return &out
}

// boStateAllowed lists the states an agent may move a backup object to,
// from which states: pending → creating → available, deleted (the fail
// path) from anything alive, purged once its bytes are removed. Nothing
// leaves deleted (but for purged) or purged.
var boStateAllowed = map[string][]string{
	boCreating:  {boPending, boCreating},
	boAvailable: {boPending, boCreating, boAvailable},
	boDeleted:   {boPending, boCreating, boAvailable, boDeleted},
	boPurged:    {boAvailable, boDeleted, boPurged}, // delete_snapshot removes the stored bytes
}

// updateBackupObject records a backup's progress and outcome. Reaching
// available sets progress to 100 (as the model did); deleted stamps
// deleted_at. An image being made from the object is settled in the same
// txn: available once all its objects are, deleted as soon as one failed.
func (s *Service) updateBackupObject(ctx context.Context, req proto.UpdateBackupObjectRequest) (proto.UpdateBackupObjectResponse, error) {
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		var bo proto.BackupObject
		m, err := tx.Get(proto.KindBackupObject, req.BackupObjectID, &bo)
		if err != nil {
			return errs.New(errs.UnknownBackupObject, "%s", req.BackupObjectID)
		}
		if bo.State == boDeleted || bo.State == boPurged {
			switch {
			case req.State != nil && (*req.State == bo.State || *req.State == boDeleted):
				return nil // a repeated fail report
			case req.State == nil || *req.State != boPurged:
				return errs.New(errs.InvalidBackupObjectState, "%s is %s", bo.ID, bo.State)
			}
		}
		now := s.d.Now()
		changed := false
		if req.State != nil && *req.State != bo.State {
			from, ok := boStateAllowed[*req.State]
			if !ok || !slices.Contains(from, bo.State) {
				return errs.New(errs.InvalidBackupObjectState, "%s: %s -> %s is not a valid transition", bo.ID, bo.State, *req.State)
			}
			bo.State, changed = *req.State, true
			if bo.State == boDeleted {
				bo.DeletedAt = &now
			}
		}
		if req.Checksum != nil {
			bo.Checksum = *req.Checksum
		}
		if req.AllocationSize != nil {
			bo.AllocationSize = req.AllocationSize
		}
		if req.ObjectKey != nil && *req.ObjectKey != "" {
			bo.ObjectKey = *req.ObjectKey
		}
		if req.Progress != nil {
			bo.Progress = min(max(*req.Progress, 0), 100)
		}
		if bo.State == boAvailable {
			bo.Progress = 100
		}
		bo.UpdatedAt = now
		b.Update(proto.KindBackupObject, bo.ID, m.ModifyIndex, bo)
		if changed && (bo.State == boAvailable || bo.State == boDeleted || bo.State == boPurged) {
			return settleImages(tx, b, &bo, now)
		}
		return nil
	})
	return proto.UpdateBackupObjectResponse{}, err
}

// postProcessBackupImage finishes an image made by backup_image. The source
// marked it available whatever its backup objects' outcome; here it follows
// them: available when every object of the image (the boot one and those of
// its extra volumes) is available, deleted when one was deleted (the backup
// failed), and left creating while some are still being written (their
// update_backup_object settles it then). An image no longer creating is left
// as it is.
func (s *Service) postProcessBackupImage(ctx context.Context, req proto.PostProcessBackupImageRequest) (proto.PostProcessBackupImageResponse, error) {
	var out proto.PostProcessBackupImageResponse
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		var img proto.Image
		m, err := tx.Get(proto.KindImage, req.ImageID, &img)
		if err != nil {
			return errs.New(errs.UnknownImage, "%s", req.ImageID)
		}
		err = settleImage(tx, b, &img, m, nil, s.d.Now())
		out.Available = img.State == imageAvailable
		return err
	})
	return out, err
}

// imageStateAllowed lists the states an agent may move an image to, from
// which states (spec §3.3): a backup finishing makes it available, a
// failed one deletes it. Nothing leaves deleted.
var imageStateAllowed = map[string][]string{
	imageCreating:  {"init", "pending", imageCreating},
	imageAvailable: {"pending", imageCreating, imageAvailable},
	imageDeleted:   {"init", "pending", imageCreating, imageAvailable, imageDeleted},
}

// updateImage is update_image (the source's sta called it on sta-collector,
// where it did not exist; the hva's local store calls it on hva-collector):
// state deleted deletes the image (deleted_at stamped); a repeated report
// is a no-op.
func (s *Service) updateImage(ctx context.Context, req proto.UpdateImageRequest) (proto.UpdateImageResponse, error) {
	err := s.write(ctx, func(tx *state.Tx, b *state.Builder) error {
		var img proto.Image
		m, err := tx.Get(proto.KindImage, req.ImageID, &img)
		if err != nil {
			return errs.New(errs.UnknownImage, "%s", req.ImageID)
		}
		if req.State == nil || *req.State == img.State {
			return nil
		}
		from, ok := imageStateAllowed[*req.State]
		if !ok || !slices.Contains(from, img.State) {
			return errs.New(errs.InvalidParameter, "image %s: %s -> %s is not a valid transition", img.ID, img.State, *req.State)
		}
		now := s.d.Now()
		img.State, img.UpdatedAt = *req.State, now
		if img.State == imageDeleted {
			img.DeletedAt = &now
		}
		b.Update(proto.KindImage, img.ID, m.ModifyIndex, &img)
		return nil
	})
	return proto.UpdateImageResponse{}, err
}

// settleImages settles every image in creating that is made from bo (as its
// boot object or an extra volume's), with bo as it is being written.
func settleImages(tx *state.Tx, b *state.Builder, bo *proto.BackupObject, now time.Time) error {
	return tx.Each(proto.KindImage, false, func(e state.Entry) error {
		var img proto.Image
		if err := json.Unmarshal(e.Value, &img); err != nil {
			return err
		}
		if img.State != imageCreating || !imageUses(&img, bo.ID) {
			return nil
		}
		return settleImage(tx, b, &img, e.Meta, bo, now)
	})
}

func imageUses(img *proto.Image, boID string) bool {
	if img.BackupObjectID == boID {
		return true
	}
	for _, v := range img.Volumes {
		if v.BackupObjectID == boID {
			return true
		}
	}
	return false
}

// settleImage moves an image in creating to available or deleted by its
// backup objects' states; pending is one of them as updated in this txn.
func settleImage(tx *state.Tx, b *state.Builder, img *proto.Image, m state.Meta, pending *proto.BackupObject, now time.Time) error {
	if img.State != imageCreating {
		return nil
	}
	ids := []string{img.BackupObjectID}
	for _, v := range img.Volumes {
		ids = append(ids, v.BackupObjectID)
	}
	all := true
	for _, id := range ids {
		var st string
		if pending != nil && pending.ID == id {
			st = pending.State
		} else {
			var bo proto.BackupObject
			if _, err := tx.Get(proto.KindBackupObject, id, &bo); err != nil {
				if !errs.Is(err, errs.NotFound) {
					return err
				}
				st = boPurged
			} else {
				st = bo.State
			}
		}
		switch st {
		case boAvailable:
		case boDeleted, boPurged:
			img.State, img.DeletedAt, img.UpdatedAt = imageDeleted, &now, now
			b.Update(proto.KindImage, img.ID, m.ModifyIndex, img)
			return nil
		default:
			all = false
		}
	}
	if all {
		img.State, img.UpdatedAt = imageAvailable, now
		b.Update(proto.KindImage, img.ID, m.ModifyIndex, img)
	}
	return nil
}
