package libvirt

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

func TestDomainXML(t *testing.T) {
	cfg := Config{NodeID: "hva.x", ConsoleDir: "/var/log/vdc", VirtType: "qemu"}
	spec := hypervisor.Spec{ID: "i-abc", CPUCores: 2, MemoryMB: 256,
		Disks: []hypervisor.Disk{
			{VolumeID: "vol-boot", Path: "/d/i-abc/vol-boot.qcow2", Format: "qcow2", Boot: true},
			{VolumeID: "metadata", Path: "/d/i-abc/metadata.img", ReadOnly: true},
			{VolumeID: "vol-san", IQN: "iqn.2010-09.jp.wakame:vol-san", LUN: 1, StorageIP: "192.0.2.7"},
			{VolumeID: "vol-q", IQN: "iqn.2010-09.jp.wakame:vol-q", StorageIP: "192.0.2.7", Format: "qcow2", Target: "vdf"},
			{VolumeID: "vol-taken", Path: "/d/x.raw", Target: "vdf"},
		},
		NICs: []hypervisor.NIC{{VifID: "vif-a", MAC: "525400ABCDEF"}, {VifID: "vif-b", MAC: "525400000001", DeviceIndex: 1}},
	}
	x, err := domainXML(cfg, spec, "")
	if err != nil {
		t.Fatal(err)
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(x); err != nil {
		t.Fatalf("unmarshal %s: %v", x, err)
	}
	if dom.Type != "qemu" || dom.Name != "i-abc" || dom.VCPU.Value != 2 || dom.Memory.Value != 256 || dom.Memory.Unit != "MiB" {
		t.Errorf("domain = type %s name %s vcpu %+v memory %+v", dom.Type, dom.Name, dom.VCPU, dom.Memory)
	}
	if dom.Features == nil || dom.Features.ACPI == nil {
		t.Errorf("no ACPI feature")
	}
	if m, err := parseMetadata(strings.ReplaceAll(dom.Metadata.XML, ` xmlns="`+MetadataURI+`"`, "")); err != nil || m.NodeID != "hva.x" {
		t.Errorf("metadata %q = %+v, %v", dom.Metadata.XML, m, err)
	}
	if !strings.Contains(dom.Metadata.XML, MetadataURI) {
		t.Errorf("metadata %q lacks the vdc namespace", dom.Metadata.XML)
	}
	d := dom.Devices.Disks
	if len(d) != 5 {
		t.Fatalf("disks = %d", len(d))
	}
	if d[0].Target.Dev != "vda" || d[0].Driver.Type != "qcow2" || d[0].Source.File.File != "/d/i-abc/vol-boot.qcow2" ||
		d[0].Boot == nil || d[0].Boot.Order != 1 || d[0].Serial != "vol-boot" || d[0].ReadOnly != nil {
		t.Errorf("boot disk = %+v", d[0])
	}
	if d[1].Target.Dev != "vdb" || d[1].Driver.Type != "raw" || d[1].ReadOnly == nil || d[1].Boot != nil {
		t.Errorf("metadata disk = %+v", d[1])
	}
	if n := d[2].Source.Network; d[2].Target.Dev != "vdc" || n == nil || n.Protocol != "iscsi" ||
		n.Name != "iqn.2010-09.jp.wakame:vol-san/1" || len(n.Hosts) != 1 || n.Hosts[0].Name != "192.0.2.7" || n.Hosts[0].Port != "3260" {
		t.Errorf("iSCSI disk = %+v source %+v", d[2], d[2].Source.Network)
	}
	if d[2].Driver.Type != "raw" || d[2].Driver.Cache != "none" {
		t.Errorf("iSCSI disk driver = %+v", d[2].Driver)
	}
	// A qcow2 LUN is opened as qcow2, and keeps the name it asks for.
	if n := d[3].Source.Network; d[3].Target.Dev != "vdf" || d[3].Driver.Type != "qcow2" || n == nil || n.Name != "iqn.2010-09.jp.wakame:vol-q/1" {
		t.Errorf("qcow2 iSCSI disk = %+v driver %+v", d[3].Target, d[3].Driver)
	}
	// A name another disk has is not given twice: the next free one.
	if d[4].Target.Dev != "vdd" {
		t.Errorf("disk asking for a taken name got %s, want vdd", d[4].Target.Dev)
	}
	ifs := dom.Devices.Interfaces
	if len(ifs) != 2 || ifs[0].MAC.Address != "52:54:00:ab:cd:ef" || ifs[0].Target.Dev != "vif-a" || ifs[0].Target.Managed != "no" ||
		ifs[0].Source.Ethernet == nil || ifs[0].Model.Type != "virtio" || ifs[1].MAC.Address != "52:54:00:00:00:01" {
		t.Errorf("interfaces = %+v", ifs)
	}
	if s := dom.Devices.Serials; len(s) != 1 || s[0].Log == nil || s[0].Log.File != "/var/log/vdc/i-abc.log" || s[0].Log.Append != "on" {
		t.Errorf("serial = %+v", s)
	}
	if x2, _ := domainXML(cfg, spec, "8d984c82-c94d-4823-8f26-72d7a3ad55f7"); !strings.Contains(x2, "<uuid>8d984c82-c94d-4823-8f26-72d7a3ad55f7</uuid>") {
		t.Errorf("a redefinition does not keep the uuid")
	}
}

func TestDomainXMLRejects(t *testing.T) {
	cfg := Config{NodeID: "hva.x", VirtType: "qemu"}
	for name, spec := range map[string]hypervisor.Spec{
		"disk without source": {Disks: []hypervisor.Disk{{VolumeID: "v"}}},
		"path and iqn":        {Disks: []hypervisor.Disk{{VolumeID: "v", Path: "/p", IQN: "iqn"}}},
		"iqn without portal":  {Disks: []hypervisor.Disk{{VolumeID: "v", IQN: "iqn"}}},
		"bad format":          {Disks: []hypervisor.Disk{{VolumeID: "v", Path: "/p", Format: "vmdk"}}},
		"bad iSCSI format":    {Disks: []hypervisor.Disk{{VolumeID: "v", IQN: "iqn", StorageIP: "192.0.2.7", Format: "vmdk"}}},
		"disk without id":     {Disks: []hypervisor.Disk{{Path: "/p"}}},
		"bad mac":             {NICs: []hypervisor.NIC{{VifID: "vif-a", MAC: "52540"}}},
		"nic without vif":     {NICs: []hypervisor.NIC{{MAC: "525400000001"}}},
	} {
		spec.ID, spec.CPUCores, spec.MemoryMB = "i-x", 1, 64
		if _, err := domainXML(cfg, spec, ""); !errs.Is(err, errs.InvalidParameter) {
			t.Errorf("%s: domainXML = %v, want InvalidParameter", name, err)
		}
	}
}

func TestNewRejects(t *testing.T) {
	for _, cfg := range []Config{{}, {NodeID: "hva.x", VirtType: "xen"}} {
		if _, err := New(cfg); !errs.Is(err, errs.InvalidParameter) {
			t.Errorf("New(%+v) = %v, want InvalidParameter", cfg, err)
		}
	}
}
