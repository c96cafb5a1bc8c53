package libvirt

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	lv "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// Hot-plug of volumes (hypervisor.DiskAttacher): disks are attached and
// detached with virDomainAttachDeviceFlags / virDomainDetachDeviceFlags on
// the live domain and its persistent definition. An iSCSI disk is a
// network disk opened by QEMU's own initiator, so the host needs no
// initiator of its own (spec §6 logs the kernel initiator in first).

var _ hypervisor.DiskAttacher = (*Driver)(nil)

// domainDisks reads the disks of the live domain (when live) and of its
// definition.
func domainDisks(l *lv.Libvirt, ref domainRef, live bool) (liveDisks, cfgDisks []libvirtxml.DomainDisk, err error) {
	read := func(flags lv.DomainXMLFlags) ([]libvirtxml.DomainDisk, error) {
		x, err := l.DomainGetXMLDesc(ref.dom, flags)
		if err != nil {
			return nil, libvirtErr(err, "read the definition of domain "+ref.dom.Name)
		}
		var doc libvirtxml.Domain
		if err := doc.Unmarshal(x); err != nil {
			return nil, errs.Wrap(errs.Internal, err, "parse the definition of domain "+ref.dom.Name)
		}
		if doc.Devices == nil {
			return nil, nil
		}
		return doc.Devices.Disks, nil
	}
	if cfgDisks, err = read(lv.DomainXMLInactive); err != nil {
		return nil, nil, err
	}
	if live {
		if liveDisks, err = read(0); err != nil {
			return nil, nil, err
		}
	}
	return liveDisks, cfgDisks, nil
}

// diskOf finds the disk whose serial is volumeID.
func diskOf(disks []libvirtxml.DomainDisk, volumeID string) *libvirtxml.DomainDisk {
	for i := range disks {
		if disks[i].Serial == volumeID {
			return &disks[i]
		}
	}
	return nil
}

func targetOf(d *libvirtxml.DomainDisk) string {
	if d.Target == nil {
		return ""
	}
	return d.Target.Dev
}

func modifyFlags(live, config bool) uint32 {
	var f lv.DomainDeviceModifyFlags
	if live {
		f |= lv.DomainDeviceModifyLive
	}
	if config {
		f |= lv.DomainDeviceModifyConfig
	}
	return uint32(f)
}

// AttachDisk implements hypervisor.DiskAttacher.
func (d *Driver) AttachDisk(ctx context.Context, id string, disk hypervisor.Disk) (string, error) {
	if _, err := diskXML("vda", disk); err != nil {
		return "", errs.Wrap(errs.InvalidParameter, err, "attach a disk to domain "+id)
	}
	var target string
	err := d.do(ctx, "attach disk "+disk.VolumeID+" to domain "+id, func(l *lv.Libvirt) error {
		ref, _, err := d.lookup(l, id)
		if err != nil {
			return err
		}
		st, err := d.state(l, ref)
		if err != nil {
			return err
		}
		alive := st.Alive()
		liveDisks, cfgDisks, err := domainDisks(l, ref, alive)
		if err != nil {
			return err
		}
		inLive, inCfg := diskOf(liveDisks, disk.VolumeID), diskOf(cfgDisks, disk.VolumeID)
		var toLive, toCfg bool
		switch {
		case inLive != nil:
			// Attached already (a repeated call); its definition may lack it
			// if the first call was cut short.
			target, toCfg = targetOf(inLive), inCfg == nil
		case inCfg != nil:
			target, toLive = targetOf(inCfg), alive
		default:
			used := map[string]bool{}
			for _, x := range slices.Concat(liveDisks, cfgDisks) {
				used[targetOf(&x)] = true
			}
			target, toLive, toCfg = hypervisor.FreeTarget(disk.Target, used), alive, true
		}
		if !toLive && !toCfg {
			return nil
		}
		dd, err := diskXML(target, disk)
		if err != nil {
			return errs.Wrap(errs.InvalidParameter, err, "attach a disk to domain "+id)
		}
		x, err := dd.Marshal()
		if err != nil {
			return errs.Wrap(errs.Internal, err, "marshal disk "+disk.VolumeID)
		}
		if err := l.DomainAttachDeviceFlags(ref.dom, x, modifyFlags(toLive, toCfg)); err != nil {
			return libvirtErr(err, "attach disk "+disk.VolumeID+" to domain "+id+" as "+target)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	d.cfg.Logger.Info("disk attached", "domain", id, "volume_id", disk.VolumeID, "target", target)
	return target, nil
}

// DetachDisk implements hypervisor.DiskAttacher. The definition loses the
// disk at once; the live domain loses it when its guest has released the
// hot-unplugged device (an ACPI eject): the request is repeated every
// RepressInterval (a guest still booting misses it) until the disk is gone
// or DetachTimeout passes (errs.Timeout, the disk still plugged).
func (d *Driver) DetachDisk(ctx context.Context, id, volumeID string) error {
	what := "detach disk " + volumeID + " from domain " + id
	dctx, cancel := context.WithTimeout(ctx, d.cfg.DetachTimeout)
	defer cancel()
	var lastPress time.Time
	var pressErr error
	for {
		gone, pressed := false, false
		err := d.do(dctx, what, func(l *lv.Libvirt) error {
			ref, _, err := d.lookup(l, id)
			if errs.Is(err, errs.NotFound) {
				gone = true // no domain, no disks
				return nil
			}
			if err != nil {
				return err
			}
			st, err := d.state(l, ref)
			if err != nil {
				return err
			}
			liveDisks, cfgDisks, err := domainDisks(l, ref, st.Alive())
			if err != nil {
				return err
			}
			if c := diskOf(cfgDisks, volumeID); c != nil {
				x, err := c.Marshal()
				if err != nil {
					return errs.Wrap(errs.Internal, err, "marshal disk "+volumeID)
				}
				if err := l.DomainDetachDeviceFlags(ref.dom, x, modifyFlags(false, true)); err != nil {
					return libvirtErr(err, what+" (definition)")
				}
			}
			live := diskOf(liveDisks, volumeID)
			if live == nil {
				gone = true
				return nil
			}
			if time.Since(lastPress) < d.cfg.RepressInterval {
				return nil
			}
			lastPress, pressed = time.Now(), true
			x, err := live.Marshal()
			if err != nil {
				return errs.Wrap(errs.Internal, err, "marshal disk "+volumeID)
			}
			// libvirt waits a few seconds for the guest and then returns with
			// the removal still pending; a repeated request for a removal in
			// progress may be refused. Either way the next poll tells.
			pressErr = l.DomainDetachDeviceFlags(ref.dom, x, modifyFlags(true, false))
			if pressErr != nil {
				d.cfg.Logger.Info("detach request not taken; polling", "domain", id, "volume_id", volumeID, "error", pressErr)
			}
			return nil
		})
		switch {
		case gone:
			d.cfg.Logger.Info("disk detached", "domain", id, "volume_id", volumeID)
			return nil
		case err != nil && dctx.Err() == nil:
			return err
		case err == nil && pressed && pressErr == nil:
			// libvirt returns once the guest released the disk or after
			// its own wait: look again at once.
			continue
		case err == nil:
			t := time.NewTimer(d.cfg.PollInterval)
			select {
			case <-t.C:
				continue
			case <-dctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			return errs.Wrap(errs.Timeout, ctx.Err(), what)
		}
		return &errs.Error{Kind: errs.Timeout, Err: errors.Join(dctx.Err(), pressErr), Msg: what +
			": the guest did not release the disk within " + d.cfg.DetachTimeout.String()}
	}
}

// Disks implements hypervisor.DiskAttacher.
func (d *Driver) Disks(ctx context.Context, id string) ([]hypervisor.AttachedDisk, error) {
	var out []hypervisor.AttachedDisk
	err := d.do(ctx, "list the disks of domain "+id, func(l *lv.Libvirt) error {
		out = nil
		ref, _, err := d.lookup(l, id)
		if err != nil {
			return err
		}
		st, err := d.state(l, ref)
		if err != nil {
			return err
		}
		liveDisks, cfgDisks, err := domainDisks(l, ref, st.Alive())
		if err != nil {
			return err
		}
		disks := cfgDisks
		if st.Alive() {
			disks = liveDisks
		}
		for i := range disks {
			out = append(out, hypervisor.AttachedDisk{VolumeID: disks[i].Serial, Target: targetOf(&disks[i])})
		}
		return nil
	})
	slices.SortFunc(out, func(a, b hypervisor.AttachedDisk) int {
		return cmp.Or(cmp.Compare(len(a.Target), len(b.Target)), cmp.Compare(a.Target, b.Target))
	})
	return out, err
}
