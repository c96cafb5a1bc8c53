package collector

import (
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

func hostByNodeID(tx *state.Tx, nodeID string) (*proto.HostNode, error) {
	var found *proto.HostNode
	err := state.EachOfIn(tx, state.IdxHostNodesByNodeID, nodeID, false, func(h *proto.HostNode, _ state.Meta) error {
		found = h
		return state.ErrStop
	})
	if err == nil && found == nil {
		err = errs.New(errs.UnknownHostNode, "no host node is bound to %s", nodeID)
	}
	return found, err
}

// InstanceView resolves an instance with what an agent needs to run it: its
// host, image and backup object, vifs with networks, volumes and ssh key.
func InstanceView(tx *state.Tx, id string) (proto.InstanceView, error) {
	var inst proto.Instance
	if _, err := tx.Get(proto.KindInstance, id, &inst); err != nil {
		return proto.InstanceView{}, errs.New(errs.UnknownInstance, "%s", id)
	}
	v := proto.InstanceView{
		ID: inst.ID, Timestamps: inst.Timestamps, AccountID: inst.AccountID, State: inst.State, Status: inst.Status,
		Hostname: inst.Hostname, DisplayName: inst.DisplayName, ServiceType: inst.ServiceType, Arch: inst.Arch,
		Hypervisor: inst.Hypervisor, CPUCores: inst.CPUCores, MemorySize: inst.MemorySize, UserData: inst.UserData,
		BootVolumeID: inst.BootVolumeID, HaEnabled: inst.HaEnabled, TerminatedAt: inst.TerminatedAt,
		Vifs: []proto.VifView{}, Volumes: []proto.VolumeView{},
	}
	if inst.HostNodeID != nil {
		var h proto.HostNode
		if _, err := tx.Get(proto.KindHostNode, *inst.HostNodeID, &h); err == nil {
			v.HostNode = &h
		}
	}
	if inst.MigratingTo != nil {
		var h proto.HostNode
		if _, err := tx.Get(proto.KindHostNode, *inst.MigratingTo, &h); err == nil {
			v.MigrationDest = &h
		}
	}
	if inst.SshKeyPairID != nil {
		var k proto.SshKeyPair
		if _, err := tx.Get(proto.KindSshKeyPair, *inst.SshKeyPairID, &k); err == nil {
			v.SshPublicKey = k.PublicKey
		}
	}
	var img proto.Image
	if _, err := tx.Get(proto.KindImage, inst.ImageID, &img); err == nil {
		iv := &proto.ImageView{Image: img}
		iv.BackupObject = backupObjectView(tx, img.BackupObjectID)
		v.Image = iv
	}
	err := state.EachOfIn(tx, state.IdxVifsByInstance, id, false, func(vif *proto.NetworkVif, _ state.Meta) error {
		if vif.DeletedAt != nil {
			return nil
		}
		v.Vifs = append(v.Vifs, VifView(tx, *vif))
		return nil
	})
	if err != nil {
		return v, err
	}
	err = state.EachOfIn(tx, state.IdxVolumesByInstance, id, false, func(vol *proto.Volume, _ state.Meta) error {
		if vol.DeletedAt != nil {
			return nil
		}
		vv := proto.VolumeView{
			ID: vol.ID, Timestamps: vol.Timestamps, AccountID: vol.AccountID, State: vol.State, Size: vol.Size,
			StoreType: vol.StoreType, InstanceID: vol.InstanceID, GuestDeviceName: vol.GuestDeviceName,
			Device: vol.Device, AttachedAt: vol.AttachedAt, DetachedAt: vol.DetachedAt, DeletedAt: vol.DeletedAt,
		}
		if vol.BackupObjectID != nil {
			vv.BackupObject = backupObjectView(tx, *vol.BackupObjectID)
		}
		v.Volumes = append(v.Volumes, vv)
		return nil
	})
	return v, err
}

// VifView resolves a vif's network and DC network.
func VifView(tx *state.Tx, vif proto.NetworkVif) proto.VifView {
	vv := proto.VifView{
		ID: vif.ID, InstanceID: vif.InstanceID, DeviceIndex: vif.DeviceIndex, MacAddr: vif.MacAddr,
		SecurityGroups: vif.SecurityGroups, IPv4Address: vif.IPv4Address, NatIPv4Address: vif.NatIPv4Address,
	}
	if vif.NetworkID != nil {
		var nw proto.Network
		if _, err := tx.Get(proto.KindNetwork, *vif.NetworkID, &nw); err == nil {
			vv.Network = &nw
			var dcn proto.DcNetwork
			if _, err := tx.Get(proto.KindDcNetwork, nw.DcNetworkID, &dcn); err == nil {
				vv.DcNetwork = &dcn
			}
		}
	}
	return vv
}

func backupObjectView(tx *state.Tx, id string) *proto.BackupObjectView {
	var bo proto.BackupObject
	if _, err := tx.Get(proto.KindBackupObject, id, &bo); err != nil {
		return nil
	}
	out := &proto.BackupObjectView{BackupObject: bo}
	var bs proto.BackupStorage
	if _, err := tx.Get(proto.KindBackupStorage, bo.BackupStorageID, &bs); err == nil {
		out.BackupStorage = &bs
		out.URI = strings.TrimSuffix(bs.BaseURI, "/") + "/" + bo.ObjectKey
	}
	return out
}
