package api

import (
	"context"
	"net/netip"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Storage nodes (spec §2.5). Operator resources: no account scoping.
func (a *API) registerStorageNodes() {
	a.route("GET /storage_nodes", read, a.listStorageNodes)
	a.route("GET /storage_nodes/{id}", read, a.showStorageNode)
	a.route("POST /storage_nodes", write, a.createStorageNode)
	a.route("PUT /storage_nodes/{id}", write, a.updateStorageNode)
	a.route("DELETE /storage_nodes/{id}", write, a.deleteStorageNode)
}

// Storage types; each selects a subtype with one extra column.
const (
	storageISCSI = "iscsi"
	storageNFS   = "nfs"
)

// storageNodeColumns are the columns POST mass-assigns; ip_address belongs
// to iSCSI nodes and mount_point to NFS nodes only.
var storageNodeColumns = []string{
	"uuid", "node_id", "offering_disk_space_mb", "storage_type", "display_name", "ip_address", "mount_point",
}

func storageNodeDoc(tx *state.Tx, v *proto.StorageNode, _ state.Meta) (*format.Map, error) {
	status, err := nodeStatus(tx, v.NodeID)
	if err != nil {
		return nil, err
	}
	d := format.NewMap(10).
		Set("id", v.ID).
		Set("uuid", v.ID).
		Set("node_id", v.NodeID).
		Set("offering_disk_space_mb", v.OfferingDiskSpaceMB).
		Set("storage_type", v.StorageType).
		Set("display_name", v.DisplayName).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt)
	switch v.StorageType {
	case storageISCSI:
		d.Set("ip_address", v.IPAddress)
	case storageNFS:
		d.Set("mount_point", v.MountPoint)
	}
	return d.Set("status", status), nil
}

func (a *API) listStorageNodes(_ context.Context, req *Request) (any, error) {
	p := req.Params
	return list(a, req, proto.KindStorageNode, func(v *proto.StorageNode) bool {
		if n, ok := p.StrOK("node_id"); ok && v.NodeID != n {
			return false
		}
		return true
	}, storageNodeDoc)
}

func (a *API) showStorageNode(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getPub[proto.StorageNode](tx, proto.KindStorageNode, proto.PrefixStorageNode, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return storageNodeDoc(tx, v, m)
	})
}

// storageNodeFields validates and assigns the columns present in params. A
// change of storage_type drops the column of the former subtype.
func storageNodeFields(p params.Params, v *proto.StorageNode) error {
	for _, key := range storageNodeColumns {
		s, ok, err := columnValue(p, key)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		switch key {
		case "node_id":
			v.NodeID = s
		case "offering_disk_space_mb":
			if v.OfferingDiskSpaceMB, err = parseCount(key, s); err != nil {
				return err
			}
		case "storage_type":
			if s != v.StorageType {
				v.IPAddress, v.MountPoint = "", ""
			}
			v.StorageType = s
		case "display_name":
			v.DisplayName = s
		case "ip_address":
			v.IPAddress = s
		case "mount_point":
			v.MountPoint = s
		}
	}
	if !strings.HasPrefix(v.NodeID, "sta-") && !strings.HasPrefix(v.NodeID, "sta.") {
		return invalidColumn("node_id is invalid ID: %q", v.NodeID)
	}
	switch v.StorageType {
	case storageISCSI:
		if p.Has("mount_point") {
			return errs.New(errs.InvalidParameter, "unknown parameter for iscsi storage nodes: mount_point")
		}
		if v.IPAddress != "" {
			if ip, err := netip.ParseAddr(v.IPAddress); err != nil || !ip.Is4() {
				return invalidColumn("ip_address is not an IPv4 address: %q", v.IPAddress)
			}
		}
	case storageNFS:
		if p.Has("ip_address") {
			return errs.New(errs.InvalidParameter, "unknown parameter for nfs storage nodes: ip_address")
		}
	default:
		return invalidColumn("storage_type unknown storage type: %q", v.StorageType)
	}
	return nil
}

func (a *API) createStorageNode(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	if err := checkColumns(p, storageNodeColumns); err != nil {
		return nil, err
	}
	id, err := createID(p, proto.PrefixStorageNode)
	if err != nil {
		return nil, err
	}
	v := proto.StorageNode{ID: id}
	if err := storageNodeFields(p, &v); err != nil {
		return nil, err
	}
	if err := requireColumns(p, "offering_disk_space_mb"); err != nil {
		return nil, err
	}
	now := a.now()
	v.CreatedAt, v.UpdatedAt = now, now
	return a.createNode(ctx, proto.KindStorageNode, id, claimStorageNodeID, v.NodeID, v,
		func(tx *state.Tx) (any, error) { return storageNodeDoc(tx, &v, state.Meta{}) })
}

func (a *API) updateStorageNode(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	if err := checkColumns(p, storageNodeColumns, []string{"id"}); err != nil {
		return nil, err
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getPub[proto.StorageNode](tx, proto.KindStorageNode, proto.PrefixStorageNode, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if err := keepUUID(p, proto.PrefixStorageNode, v.ID); err != nil {
			return nil, err
		}
		old := v.NodeID
		if err := storageNodeFields(p, v); err != nil {
			return nil, err
		}
		if err := moveNodeClaim(tx, b, claimStorageNodeID, old, v.NodeID, v.ID); err != nil {
			return nil, err
		}
		v.UpdatedAt = a.now()
		b.Update(proto.KindStorageNode, v.ID, m.ModifyIndex, v)
		return func(tx *state.Tx) (any, error) { return storageNodeDoc(tx, v, state.Meta{}) }, nil
	})
}

func (a *API) deleteStorageNode(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getPub[proto.StorageNode](tx, proto.KindStorageNode, proto.PrefixStorageNode, req.ID("id"))
		if err != nil {
			return nil, err
		}
		// The response is the document as it was, status included.
		doc, err := storageNodeDoc(tx, v, m)
		if err != nil {
			return nil, err
		}
		if err := dropFromGroups(tx, b, proto.TagTypeStorageNodeGroup, v.ID); err != nil {
			return nil, err
		}
		b.Delete(proto.KindStorageNode, v.ID, m.ModifyIndex)
		b.DeleteIfExists(proto.KindUniqueName, claimStorageNodeID+v.NodeID)
		return func(*state.Tx) (any, error) { return doc, nil }, nil
	})
}
