package handlers

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

// Shared volumes on this hva (spec/agents.md §2.2): attach and detach hot-plug
// an iSCSI volume into a running domain, wait_volumes_available and
// run_vol_store boot an instance from its shared volumes (SAN boot). An
// iSCSI volume is a network disk that QEMU's own initiator opens, so there
// is no host-side login (the source's attach_volume_to_host) to do or undo.
//
// Volume states go to the managers through sta-collector update_volume,
// as the volumes API expects them:
//
//	attach:  available → attaching → attached (guest_device_name, attached_at);
//	         on failure available again and unlinked from the instance.
//	detach:  attached → detaching → available, unlinked (detached_at); on
//	         failure the job fails and the volume stays detaching (spec).
//	boot:    each shared volume available → attaching → attached once the
//	         domain runs.

// diskAttacher is the hypervisor's hot-plug, if it has one.
func (h *Handlers) diskAttacher() (hypervisor.DiskAttacher, error) {
	if a, ok := h.hv.(hypervisor.DiskAttacher); ok {
		return a, nil
	}
	return nil, errs.New(errs.OperationNotPermitted, "the hypervisor driver of %s (%T) cannot hot-plug volumes", h.cfg.NodeID, h.hv)
}

// volumeOf finds a volume linked to the instance.
func volumeOf(v *proto.InstanceView, id string) *proto.VolumeView {
	for i := range v.Volumes {
		if v.Volumes[i].ID == id {
			return &v.Volumes[i]
		}
	}
	return nil
}

// isShared tells an iSCSI volume from a local one.
func isShared(vol *proto.VolumeView) bool { return vol.StoreType != proto.VolumeLocal }

// diskOfVolume is the disk of a volume: its iSCSI target (shared) or its
// file (local, filled in by the local store), with the name it was plugged
// as before.
func diskOfVolume(vol *proto.VolumeView) hypervisor.Disk {
	d := hypervisor.Disk{VolumeID: vol.ID, Target: vol.GuestDeviceName}
	if dev := vol.Device; dev != nil {
		d.Format = dev.Format
		if isShared(vol) && dev.IQN != "" {
			// dev.Path is the backing file on the storage node: not ours.
			d.IQN, d.LUN, d.StorageIP = dev.IQN, dev.LUN, dev.StorageIP
		} else {
			d.Path = dev.Path
		}
	}
	return d
}

// inDomain reports whether a volume belongs in the instance's domain
// definition: not while it is being deleted.
func inDomain(vol *proto.VolumeView) bool {
	switch vol.State {
	case proto.VolumeDeleting, proto.VolumeDeleted, proto.VolumeFailed:
		return false
	}
	return true
}

// updateVolume sends update_volume with a state, and more.
func (h *Handlers) updateVolume(ctx context.Context, volID, state string, mod func(*proto.UpdateVolumeRequest)) error {
	req := proto.UpdateVolumeRequest{VolumeID: volID, State: &state}
	if mod != nil {
		mod(&req)
	}
	if err := h.coll.UpdateVolume(ctx, req); err != nil {
		return annotate(err, "update volume "+volID+" to "+state)
	}
	return nil
}

// publishVolume sends a volume event with [instance, volume] (best effort).
func (h *Handlers) publishVolume(ctx context.Context, name, instID, volID string) {
	if err := h.cfg.Events.Publish(ctx, proto.Event{Name: name, Args: []string{instID, volID}}); err != nil {
		h.logger.WarnContext(ctx, "publish event", "event", name, "instance_id", instID, "volume_id", volID, "error", err)
	}
}

// ---- attach, detach ----

// attach hot-plugs a volume the API linked to a running instance (PUT
// /volumes/:id/attach): available → attaching → attached with the guest
// device name. A halted instance's domain gets the disk in its definition
// only (the API links those itself; this covers an instance halted after
// the job was queued). A redelivery finds the disk plugged already and
// finishes the report.
func (h *Handlers) attach(ctx context.Context, req proto.HvaAttachRequest) (proto.HvaAttachResponse, error) {
	if req.VolumeID == "" {
		return proto.HvaAttachResponse{}, errs.New(errs.UndefinedVolumeID, "job without a volume id")
	}
	return proto.HvaAttachResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		vol := volumeOf(v, req.VolumeID)
		switch {
		case vol == nil:
			return errs.New(errs.InvalidVolumeState, "volume %s is not linked to instance %s (detached meanwhile)", req.VolumeID, v.ID)
		case vol.ID == v.BootVolumeID || !isShared(vol):
			return errs.New(errs.AttachVolumeFailure, "volume %s is the boot volume or local to %s; only shared volumes are attached", vol.ID, v.ID)
		}
		switch vol.State {
		case proto.VolumeAttached:
			h.logger.InfoContext(ctx, "volume already attached", "instance_id", v.ID, "volume_id", vol.ID)
			return nil
		case proto.VolumeAvailable:
			if err := h.updateVolume(ctx, vol.ID, proto.VolumeAttaching, nil); err != nil {
				return err
			}
		case proto.VolumeAttaching:
			// A redelivery: carry on.
		default:
			return errs.New(errs.InvalidVolumeState, "volume %s is %s; attach wants it available", vol.ID, vol.State)
		}
		target, err := h.plug(ctx, v, vol)
		if err != nil {
			if ctx.Err() != nil || isFenced(err) {
				// Interrupted: the volume stays attaching and a redelivery
				// carries on. Fenced: withInstance reads the instance again
				// once the fence is lifted and the job carries on (or fails,
				// if the instance moved meanwhile).
				return err
			}
			return h.failAttach(ctx, v, vol, err)
		}
		if err := h.updateVolume(ctx, vol.ID, proto.VolumeAttached, func(r *proto.UpdateVolumeRequest) {
			r.GuestDeviceName = &target
		}); err != nil {
			return err
		}
		h.publishVolume(ctx, proto.EventVolumeAttached, v.ID, vol.ID)
		return nil
	})
}

// plug checks that the volume can be hot-plugged into the instance and
// does it, returning the guest device name. A fenced host refuses, as it
// refuses a domain start (fencedError, also when it was fenced after the
// job read v): its instance may be booting elsewhere with this volume.
func (h *Handlers) plug(ctx context.Context, v *proto.InstanceView, vol *proto.VolumeView) (string, error) {
	at, err := h.diskAttacher()
	if err != nil {
		return "", err
	}
	switch {
	case v.State != proto.InstanceRunning && v.State != proto.InstanceHalted:
		return "", wrongState(v, "attach", proto.InstanceRunning, proto.InstanceHalted)
	case vol.Device == nil || vol.Device.IQN == "":
		return "", errs.New(errs.InvalidVolumeState, "volume %s has no iSCSI target yet", vol.ID)
	}
	// Under the fence lock: a fence either waits for the attach (and then
	// stops the domain) or refuses it.
	release, err := h.fence.enter(h.fence.readEpoch(v.ID))
	if err != nil {
		return "", err
	}
	defer release()
	target, err := at.AttachDisk(ctx, v.ID, diskOfVolume(vol))
	if err != nil {
		return "", annotate(err, "attach volume "+vol.ID+" to domain "+v.ID)
	}
	return target, nil
}

// failAttach is attach's fail block: whatever got plugged is unplugged, the
// volume is available again and no longer linked to the instance, event
// hva/volume_available; the job fails with the cause.
func (h *Handlers) failAttach(ctx context.Context, v *proto.InstanceView, vol *proto.VolumeView, cause error) error {
	h.logger.WarnContext(ctx, "attach failed; the volume is available again", "instance_id", v.ID, "volume_id", vol.ID, "error", cause)
	if at, err := h.diskAttacher(); err == nil {
		// A disk half attached (live but not defined) must not stay
		// plugged while the volume can go to another instance.
		if err := at.DetachDisk(ctx, v.ID, vol.ID); err != nil {
			return errors.Join(cause, annotate(err, "unplug the half attached volume "+vol.ID+"; it stays attaching"))
		}
	}
	if err := h.updateVolume(ctx, vol.ID, proto.VolumeAvailable, func(r *proto.UpdateVolumeRequest) {
		r.DetachInstance = true
	}); err != nil {
		return errors.Join(cause, err)
	}
	h.publishVolume(ctx, proto.EventVolumeAvailable, v.ID, vol.ID)
	return &errs.Error{Kind: errs.KindOf(cause), Err: cause,
		Msg: "attach volume " + vol.ID + " to " + v.ID + " failed; the volume is available"}
}

// detach unplugs a volume (PUT /volumes/:id/detach): attached → detaching
// → (the guest released it) → available, unlinked. When the disk cannot be
// unplugged the job fails and the volume stays detaching (spec); a new
// detach job carries on. A volume no longer linked to the instance was
// detached before (a redelivery).
func (h *Handlers) detach(ctx context.Context, req proto.HvaDetachRequest) (proto.HvaDetachResponse, error) {
	if req.VolumeID == "" {
		return proto.HvaDetachResponse{}, errs.New(errs.UndefinedVolumeID, "job without a volume id")
	}
	return proto.HvaDetachResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		vol := volumeOf(v, req.VolumeID)
		if vol == nil {
			h.logger.InfoContext(ctx, "volume not linked to the instance; detached already", "instance_id", v.ID, "volume_id", req.VolumeID)
			return nil
		}
		if vol.ID == v.BootVolumeID || !isShared(vol) {
			return errs.New(errs.DetachVolumeFailure, "volume %s is the boot volume or local to %s; it cannot be detached", vol.ID, v.ID)
		}
		switch vol.State {
		case proto.VolumeAttached:
			if err := h.updateVolume(ctx, vol.ID, proto.VolumeDetaching, nil); err != nil {
				return err
			}
		case proto.VolumeDetaching:
			// A redelivery, or a new detach after a failed one: carry on.
		case proto.VolumeAvailable, proto.VolumeAttaching:
			// Linked but not (fully) attached: the attach failed or was cut
			// short; make sure nothing is plugged, then unlink.
		default:
			return errs.New(errs.InvalidVolumeState, "volume %s is %s; detach wants it attached", vol.ID, vol.State)
		}
		at, err := h.diskAttacher()
		if err != nil {
			return err
		}
		if err := at.DetachDisk(ctx, v.ID, vol.ID); err != nil {
			return annotate(err, "detach volume "+vol.ID+" from domain "+v.ID+"; it stays "+proto.VolumeDetaching)
		}
		if err := h.updateVolume(ctx, vol.ID, proto.VolumeAvailable, func(r *proto.UpdateVolumeRequest) {
			r.DetachInstance = true
		}); err != nil {
			return err
		}
		h.publishVolume(ctx, proto.EventVolumeDetached, v.ID, vol.ID)
		return nil
	})
}

// ---- SAN boot: wait_volumes_available, run_vol_store ----

// volumesReady reports whether every shared volume of the instance is on
// its storage node and exported (available, or further along after an
// earlier boot); local volumes are made by the local store at boot.
func volumesReady(v *proto.InstanceView) bool {
	for i := range v.Volumes {
		vol := &v.Volumes[i]
		if !isShared(vol) || !inDomain(vol) {
			continue
		}
		switch vol.State {
		case proto.VolumeAvailable, proto.VolumeAttaching, proto.VolumeAttached:
		default:
			return false
		}
	}
	return true
}

// bootIsLocal tells a local boot from a SAN boot by the boot volume's store
// type (the source compared against a misspelt class name and always chose
// run_vol_store, spec §9), falling back to the image's boot_dev_type.
func bootIsLocal(v *proto.InstanceView) bool {
	if vol := volumeOf(v, v.BootVolumeID); vol != nil {
		return !isShared(vol)
	}
	return v.Image == nil || v.Image.BootDevType != 1
}

// waitVolumesAvailable is what each sta-handle create_volume_and_run_instance
// submits once its volume is made: when all the instance's volumes are
// ready it submits the boot (hva-handle run_vol_store, or run_local_store
// for a local boot volume) to this node; when the instance was terminated
// or lost a volume it finalizes it; else it waits for the next volume's
// job (the last one boots). The boot is submitted once per job.
func (h *Handlers) waitVolumesAvailable(ctx context.Context, req proto.HvaWaitVolumesAvailableRequest) (proto.HvaWaitVolumesAvailableResponse, error) {
	var resp proto.HvaWaitVolumesAvailableResponse
	return resp, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		lost := volumeOf(v, v.BootVolumeID) == nil && v.BootVolumeID != ""
		for i := range v.Volumes {
			lost = lost || !inDomain(&v.Volumes[i])
		}
		switch {
		case v.State == proto.InstanceTerminated || lost:
			h.logger.InfoContext(ctx, "instance terminated or lost a volume before it booted; finalizing it",
				"instance_id", v.ID, "state", v.State)
			if err := h.coll.FinalizeInstance(ctx, v.ID); err != nil {
				return annotate(err, "finalize instance "+v.ID)
			}
			return nil
		case v.State != proto.InstancePending:
			h.logger.InfoContext(ctx, "instance is past pending; its boot was submitted before", "instance_id", v.ID, "state", v.State)
			return nil
		case !volumesReady(v):
			h.logger.InfoContext(ctx, "waiting for the instance's other volumes", "instance_id", v.ID)
			return nil
		}
		job, ok := agent.JobFromContext(ctx)
		if !ok {
			return errs.New(errs.Internal, "wait_volumes_available of %s runs outside a job", v.ID)
		}
		verb, args := proto.VerbRunVolStore, any(proto.HvaRunVolStoreRequest{InstanceID: v.ID, VolumeID: v.BootVolumeID})
		if bootIsLocal(v) {
			verb, args = proto.VerbRunLocalStore, proto.HvaRunLocalStoreRequest{InstanceID: v.ID}
		}
		b, err := json.Marshal(args)
		if err != nil {
			return errs.Wrap(errs.Internal, err, "encode "+verb)
		}
		jobID, err := h.coll.SubmitJob(ctx, proto.SubmitJobRequest{ParentID: job.ID, Key: verb,
			Endpoint: proto.HvaHandle(h.cfg.NodeID), Verb: verb, Args: b, ResourceID: v.ID})
		if err != nil {
			return annotate(err, "submit "+verb+" of "+v.ID)
		}
		h.logger.InfoContext(ctx, "volumes available; boot submitted", "instance_id", v.ID, "verb", verb, "job_id", jobID)
		resp.Submitted = true
		return nil
	})
}

// runVolStore boots an instance from its shared volumes (SAN boot, or a
// start of a stopped SAN-booted instance): pending → starting, its shared
// volumes attaching, the domain defined with the iSCSI LUNs as disks and
// started → running/online, the volumes attached with their guest device
// names. Volumes not all available yet: nothing happens (the last volume's
// wait_volumes_available submits the boot again). A failed boot terminates
// the instance, as run_local_store's.
func (h *Handlers) runVolStore(ctx context.Context, req proto.HvaRunVolStoreRequest) (proto.HvaRunVolStoreResponse, error) {
	return proto.HvaRunVolStoreResponse{}, h.withInstance(ctx, req.InstanceID, func(v *proto.InstanceView) error {
		if v.State == proto.InstancePending && !volumesReady(v) {
			h.logger.InfoContext(ctx, "run_vol_store: not every volume is available yet; nothing to do", "instance_id", v.ID)
			return nil
		}
		return h.bootLocked(ctx, v, "run_vol_store", &volumeBoot{h: h})
	})
}

// volumeBoot moves the shared volumes of a booting instance through
// attaching to attached.
type volumeBoot struct{ h *Handlers }

// starting marks the available shared volumes attaching.
func (b *volumeBoot) starting(ctx context.Context, v *proto.InstanceView) error {
	for i := range v.Volumes {
		vol := &v.Volumes[i]
		if isShared(vol) && vol.State == proto.VolumeAvailable {
			if err := b.h.updateVolume(ctx, vol.ID, proto.VolumeAttaching, nil); err != nil {
				return err
			}
			b.h.publishVolume(ctx, proto.EventVolumeAttaching, v.ID, vol.ID)
		}
	}
	return nil
}

// running marks the shared volumes attached, with the names the domain
// gave them.
func (b *volumeBoot) running(ctx context.Context, v *proto.InstanceView) error {
	names := map[string]string{}
	if at, err := b.h.diskAttacher(); err == nil {
		disks, err := at.Disks(ctx, v.ID)
		if err != nil {
			return annotate(err, "list the disks of domain "+v.ID)
		}
		for _, d := range disks {
			names[d.VolumeID] = d.Target
		}
	}
	for i := range v.Volumes {
		vol := &v.Volumes[i]
		if !isShared(vol) || !inDomain(vol) {
			continue
		}
		name, known := names[vol.ID]
		if err := b.h.updateVolume(ctx, vol.ID, proto.VolumeAttached, func(r *proto.UpdateVolumeRequest) {
			if known {
				r.GuestDeviceName = &name
			}
		}); err != nil {
			return err
		}
		if vol.State != proto.VolumeAttached {
			b.h.publishVolume(ctx, proto.EventVolumeAttached, v.ID, vol.ID)
		}
	}
	return nil
}

// recordDeviceNames records the guest device name of every attached shared
// volume whose recorded name is not the one the domain gave it.
func (h *Handlers) recordDeviceNames(ctx context.Context, v *proto.InstanceView) error {
	at, err := h.diskAttacher()
	if err != nil {
		return nil // no names to learn
	}
	disks, err := at.Disks(ctx, v.ID)
	if err != nil {
		return annotate(err, "list the disks of domain "+v.ID)
	}
	for _, d := range disks {
		vol := volumeOf(v, d.VolumeID)
		if vol == nil || !isShared(vol) || vol.State != proto.VolumeAttached || vol.GuestDeviceName == d.Target {
			continue
		}
		name := d.Target
		if err := h.coll.UpdateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: vol.ID, GuestDeviceName: &name}); err != nil {
			return annotate(err, "record the device name of volume "+vol.ID)
		}
	}
	return nil
}
