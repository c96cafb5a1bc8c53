package libvirt

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"path/filepath"
	"strconv"

	"libvirt.org/go/libvirtxml"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// MetadataURI is the namespace of the metadata element that marks a domain
// as made by a vdc hva, with the hva's node id.
const MetadataURI = "https://vdc-project.github.io/xmlns/hva/1"

// metadata is the domain's vdc metadata element.
type metadata struct {
	XMLName xml.Name `xml:"https://vdc-project.github.io/xmlns/hva/1 instance"`
	NodeID  string   `xml:"node"`
}

// parseMetadata reads the element as libvirt returns it: without its
// namespace (the query named it).
func parseMetadata(s string) (metadata, error) {
	var m struct {
		XMLName xml.Name `xml:"instance"`
		NodeID  string   `xml:"node"`
	}
	err := xml.Unmarshal([]byte(s), &m)
	return metadata{NodeID: m.NodeID}, err
}

// domainXML builds the domain definition of spec (libvirt domain XML).
// uuid is the domain's current uuid when it is redefined ("" = new).
func domainXML(cfg Config, spec hypervisor.Spec, uuid string) (string, error) {
	meta, err := xml.Marshal(metadata{NodeID: cfg.NodeID})
	if err != nil {
		return "", fmt.Errorf("marshal the metadata of %s: %w", spec.ID, err)
	}
	dom := &libvirtxml.Domain{
		Type:     cfg.VirtType,
		Name:     spec.ID,
		UUID:     uuid,
		Metadata: &libvirtxml.DomainMetadata{XML: string(meta)},
		Memory:   &libvirtxml.DomainMemory{Value: uint(spec.MemoryMB), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(spec.CPUCores)},
		OS:       &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Type: "hvm"}},
		// ACPI: the guest sees the power button (soft poweroff) and no
		// "RSDP not found" noise on the console.
		Features:   &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}, APIC: &libvirtxml.DomainFeatureAPIC{}},
		OnPoweroff: "destroy",
		OnReboot:   "restart",
		OnCrash:    "destroy",
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if cfg.VirtType == "kvm" {
		dom.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	}
	targets := hypervisor.Targets(spec.Disks)
	for i, d := range spec.Disks {
		disk, err := diskXML(targets[i], d)
		if err != nil {
			return "", errs.Wrap(errs.InvalidParameter, err, "domain "+spec.ID)
		}
		dom.Devices.Disks = append(dom.Devices.Disks, disk)
	}
	for _, n := range spec.NICs {
		mac, err := hypervisor.FormatMAC(n.MAC)
		if err != nil {
			return "", errs.Wrap(errs.InvalidParameter, err, "domain "+spec.ID+" vif "+n.VifID)
		}
		if n.VifID == "" {
			return "", errs.New(errs.InvalidParameter, "domain %s: a NIC without a vif id", spec.ID)
		}
		dom.Devices.Interfaces = append(dom.Devices.Interfaces, libvirtxml.DomainInterface{
			MAC:    &libvirtxml.DomainInterfaceMAC{Address: mac},
			Source: &libvirtxml.DomainInterfaceSource{Ethernet: &libvirtxml.DomainInterfaceSourceEthernet{}},
			// The host network made the tap (named after the vif) and put
			// it on its bridge; libvirt only opens it.
			Target: &libvirtxml.DomainInterfaceTarget{Dev: n.VifID, Managed: "no"},
			Model:  &libvirtxml.DomainInterfaceModel{Type: "virtio"},
		})
	}
	port := uint(0)
	serial := libvirtxml.DomainSerial{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainSerialTarget{Port: &port},
	}
	if cfg.ConsoleDir != "" {
		serial.Log = &libvirtxml.DomainChardevLog{File: ConsoleLog(cfg.ConsoleDir, spec.ID), Append: "on"}
	}
	dom.Devices.Serials = []libvirtxml.DomainSerial{serial}
	dom.Devices.Consoles = []libvirtxml.DomainConsole{{
		Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
		Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port},
	}}
	dom.Devices.MemBalloon = &libvirtxml.DomainMemBalloon{Model: "none"}
	out, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal domain %s: %w", spec.ID, err)
	}
	return out, nil
}

// ConsoleLog is where the serial console of domain id is logged.
func ConsoleLog(dir, id string) string { return filepath.Join(dir, id+".log") }

// diskXML is a disk of a domain plugged as target (vda, vdb, …); the boot
// disk boots first.
func diskXML(target string, d hypervisor.Disk) (libvirtxml.DomainDisk, error) {
	disk := libvirtxml.DomainDisk{
		Device: "disk",
		Target: &libvirtxml.DomainDiskTarget{Dev: target, Bus: "virtio"},
		Serial: d.VolumeID,
	}
	if d.Boot {
		disk.Boot = &libvirtxml.DomainDeviceBoot{Order: 1}
	}
	if d.ReadOnly {
		disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
	}
	if err := d.Validate(); err != nil {
		return disk, err
	}
	format := cmp.Or(d.Format, hypervisor.FormatRaw)
	switch {
	case d.Path != "":
		disk.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format}
		disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Path}}
	default:
		lun := d.LUN
		if lun == 0 {
			lun = 1
		}
		// QEMU's own initiator (libiscsi) opens the LUN: no kernel
		// initiator on the host. A LUN holding a qcow2 image is opened as
		// one.
		disk.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format, Cache: "none"}
		disk.Source = &libvirtxml.DomainDiskSource{Network: &libvirtxml.DomainDiskSourceNetwork{
			Protocol: "iscsi",
			Name:     d.IQN + "/" + strconv.Itoa(lun),
			Hosts:    []libvirtxml.DomainDiskSourceHost{{Name: d.StorageIP, Port: strconv.Itoa(hypervisor.DefaultISCSIPort)}},
		}}
	}
	return disk, nil
}
