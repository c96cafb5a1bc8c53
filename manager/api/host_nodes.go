package api

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Host nodes (spec §2.4). Operator resources: no account scoping.
// PUT /host_nodes/:id/evacuate is in host_evacuate.go.
func (a *API) registerHostNodes() {
	a.route("GET /host_nodes", read, a.listHostNodes)
	a.route("GET /host_nodes/{id}", read, a.showHostNode)
	a.route("POST /host_nodes", write, a.createHostNode)
	a.route("PUT /host_nodes/{id}", write, a.updateHostNode)
	a.route("DELETE /host_nodes/{id}", write, a.deleteHostNode)
}

// Node states (spec §3.4).
const (
	nodeOnline  = "online"
	nodeOffline = "offline"
)

// Unique-name scopes of node ids: a node id binds one agent to one row.
const (
	claimHostNodeID    = "host_node_node_id/"
	claimStorageNodeID = "storage_node_node_id/"
)

// hostNodeColumns are the columns POST mass-assigns (spec §2.4 item 3).
var hostNodeColumns = []string{
	"uuid", "node_id", "arch", "hypervisor", "display_name", "offering_cpu_cores",
	"offering_memory_size", "offering_disk_space_mb", "scheduling_enabled",
}

// hostNodeArchs and hostNodeHypervisors are the accepted values.
var (
	hostNodeArchs       = []string{"x86", "x86_64"}
	hostNodeHypervisors = []string{"dummy", "kvm", "qemu", "lxc", "esxi", "openvz", "xen"}
)

// frameworkParams reach every route but are not columns: account_id is forced
// to the caller by the account header (§1.4), stale selects local reads.
var frameworkParams = []string{"account_id", "stale"}

// checkColumns answers 400/143 naming the first parameter (in name order) that
// is neither a column nor a framework parameter. Mass assignment of an
// unknown name crashed upstream (500); naming it is what a client can act on.
func checkColumns(p params.Params, columns ...[]string) error {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	columns = append(columns, frameworkParams)
next:
	for _, k := range keys {
		for _, set := range columns {
			for _, c := range set {
				if c == k {
					continue next
				}
			}
		}
		return errs.New(errs.InvalidParameter, "unknown parameter: %s", k)
	}
	return nil
}

// columnValue returns a column parameter as text. A nil value (a bare `key` in
// a query) is empty; an array or hash cannot be a column value (400/143).
func columnValue(p params.Params, key string) (string, bool, error) {
	v, ok := p[key]
	if !ok || v == nil {
		return "", ok, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", true, errs.New(errs.InvalidParameter, "%s must be a single value", key)
	}
	return s, true, nil
}

// invalidColumn is a model validation failure (400/110, §1.10).
func invalidColumn(format string, args ...any) error {
	return errs.New(errs.DatabaseError, "Sequel::ValidationFailed: "+format, args...)
}

// parseCount parses a non-negative integer column.
func parseCount(key, s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, invalidColumn("%s must be a non-negative integer, got %q", key, s)
	}
	return n, nil
}

// parseFlag parses a boolean column the way the database typecast did for
// form values: "true"/"1" and "false"/"0".
func parseFlag(key, s string) (bool, error) {
	switch s {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, invalidColumn("%s must be true or false, got %q", key, s)
}

// nodeStatus is online when the agent's node record says so, else offline
// (no record = offline).
func nodeStatus(tx *state.Tx, nodeID string) (string, error) {
	var ns proto.NodeState
	_, err := tx.Get(proto.KindNodeState, nodeID, &ns)
	switch {
	case errs.Is(err, errs.NotFound):
		return nodeOffline, nil
	case err != nil:
		return "", err
	case ns.State == nodeOnline:
		return nodeOnline, nil
	}
	return nodeOffline, nil
}

// uuidPrefixFilter is the `id` list filter: a prefix of the uuid, with or
// without the resource prefix (§1.8).
func uuidPrefixFilter(prefix, v string) string {
	return prefix + "-" + strings.TrimPrefix(v, prefix+"-")
}

// listWith is list with a match that can read the state (status filters look
// at node records) in the same read transaction as the listing.
func listWith[T any](a *API, req *Request, kind string, match func(tx *state.Tx, v *T) (bool, error), doc docFn[T]) (any, error) {
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	return a.view(func(tx *state.Tx) (any, error) {
		var matchErr error
		out, err := listTx(tx, o, kind, func(v *T) bool {
			ok, err := match(tx, v)
			if err != nil && matchErr == nil {
				matchErr = err
			}
			return ok && err == nil
		}, doc)
		if matchErr != nil {
			return nil, matchErr
		}
		return out, err
	})
}

func hostNodeDoc(tx *state.Tx, v *proto.HostNode, _ state.Meta) (*format.Map, error) {
	status, err := nodeStatus(tx, v.NodeID)
	if err != nil {
		return nil, err
	}
	return format.NewMap(13).
		Set("id", v.ID).
		Set("uuid", v.ID).
		Set("node_id", v.NodeID).
		Set("arch", v.Arch).
		Set("hypervisor", v.Hypervisor).
		Set("display_name", v.DisplayName).
		Set("offering_cpu_cores", v.OfferingCPUCores).
		Set("offering_memory_size", v.OfferingMemorySize).
		Set("offering_disk_space_mb", v.OfferingDiskSpaceMB).
		Set("scheduling_enabled", v.SchedulingEnabled).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("status", status), nil
}

func (a *API) listHostNodes(_ context.Context, req *Request) (any, error) {
	p := req.Params
	var cpu, mem *int64
	for _, f := range []struct {
		key string
		dst **int64
	}{{"cpu_cores", &cpu}, {"memory_size", &mem}} {
		n, ok, err := p.Int(f.key)
		if err != nil {
			return nil, errs.New(errs.InvalidParameter, "%s", f.key)
		}
		if ok {
			*f.dst = &n
		}
	}
	status := p.Str("status")
	return listWith(a, req, proto.KindHostNode, func(tx *state.Tx, v *proto.HostNode) (bool, error) {
		if id, ok := p.StrOK("id"); ok && !strings.HasPrefix(v.ID, uuidPrefixFilter(proto.PrefixHostNode, id)) {
			return false, nil
		}
		for _, f := range [...]struct{ key, val string }{
			{"node_id", v.NodeID}, {"display_name", v.DisplayName}, {"arch", v.Arch}, {"hypervisor", v.Hypervisor},
		} {
			if want, ok := p.StrOK(f.key); ok && f.val != want {
				return false, nil
			}
		}
		if (cpu != nil && v.OfferingCPUCores != *cpu) || (mem != nil && v.OfferingMemorySize != *mem) {
			return false, nil
		}
		// online = agent online and open for scheduling; offline = agent not
		// online. Other values are ignored, as upstream.
		if status == nodeOnline || status == nodeOffline {
			s, err := nodeStatus(tx, v.NodeID)
			if err != nil {
				return false, err
			}
			if status == nodeOnline {
				return s == nodeOnline && v.SchedulingEnabled, nil
			}
			return s == nodeOffline, nil
		}
		return true, nil
	}, hostNodeDoc)
}

func (a *API) showHostNode(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getPub[proto.HostNode](tx, proto.KindHostNode, proto.PrefixHostNode, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return hostNodeDoc(tx, v, m)
	})
}

// hostNodeFields validates and assigns the columns present in params.
func hostNodeFields(p params.Params, v *proto.HostNode) error {
	for _, key := range hostNodeColumns {
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
		case "arch":
			v.Arch = s
		case "hypervisor":
			v.Hypervisor = s
		case "display_name":
			v.DisplayName = s
		case "offering_cpu_cores":
			v.OfferingCPUCores, err = parseCount(key, s)
		case "offering_memory_size":
			v.OfferingMemorySize, err = parseCount(key, s)
		case "offering_disk_space_mb":
			v.OfferingDiskSpaceMB, err = parseCount(key, s)
		case "scheduling_enabled":
			v.SchedulingEnabled, err = parseFlag(key, s)
		}
		if err != nil {
			return err
		}
	}
	return validateHostNode(v)
}

// validateHostNode is the model validation (400/110).
func validateHostNode(v *proto.HostNode) error {
	if !strings.HasPrefix(v.NodeID, "hva-") && !strings.HasPrefix(v.NodeID, "hva.") {
		return invalidColumn("node_id is invalid ID: %q", v.NodeID)
	}
	if !slices.Contains(hostNodeArchs, v.Arch) {
		return invalidColumn("arch unknown architecture type: %q", v.Arch)
	}
	if !slices.Contains(hostNodeHypervisors, v.Hypervisor) {
		return invalidColumn("hypervisor unknown hypervisor type: %q", v.Hypervisor)
	}
	return nil
}

// requireColumns fails with 400/110 for the first NOT NULL column without a
// default that params lack.
func requireColumns(p params.Params, keys ...string) error {
	for _, k := range keys {
		if !p.Has(k) {
			return invalidColumn("%s is not present", k)
		}
	}
	return nil
}

// claimNodeID adds the ops that bind nodeID to owner, race-free: a concurrent
// registration of the same node id fails the create and re-plans into the
// duplicate error.
func claimNodeID(tx *state.Tx, b *state.Builder, scope, nodeID, owner string) error {
	var c proto.UniqueName
	if _, err := tx.Get(proto.KindUniqueName, scope+nodeID, &c); err == nil {
		return invalidColumn("node_id %s is already associated to %s", nodeID, c.Owner)
	} else if !errs.Is(err, errs.NotFound) {
		return err
	}
	b.Create(proto.KindUniqueName, scope+nodeID, proto.UniqueName{ID: scope + nodeID, Owner: owner})
	return nil
}

// createNode is the txn of a node's POST: a unique uuid and node_id, then
// the record.
func (a *API) createNode(ctx context.Context, kind, id, scope, nodeID string, v any, render renderFn) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		if tx.Exists(kind, id) {
			return nil, errs.New(errs.DatabaseError, "Sequel::UniqueConstraintViolation: duplicate uuid %s", id)
		}
		if err := claimNodeID(tx, b, scope, nodeID, id); err != nil {
			return nil, err
		}
		b.Create(kind, id, v)
		return render, nil
	})
}

// moveNodeClaim follows a node_id change of node owner.
func moveNodeClaim(tx *state.Tx, b *state.Builder, scope, old, nodeID, owner string) error {
	if nodeID == old {
		return nil
	}
	if err := claimNodeID(tx, b, scope, nodeID, owner); err != nil {
		return err
	}
	b.DeleteIfExists(proto.KindUniqueName, scope+old)
	return nil
}

// keepUUID refuses a PUT that would change the uuid: other records refer to
// nodes by it. Upstream would have rewritten the column.
func keepUUID(p params.Params, prefix, id string) error {
	u, ok, err := columnValue(p, "uuid")
	if err != nil || !ok {
		return err
	}
	if c, err := chosenUUID(prefix, u); err != nil || c != id {
		return errs.New(errs.InvalidParameter, "uuid cannot be changed")
	}
	return nil
}

func (a *API) createHostNode(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	if err := checkColumns(p, hostNodeColumns); err != nil {
		return nil, err
	}
	id, err := createID(p, proto.PrefixHostNode)
	if err != nil {
		return nil, err
	}
	v := proto.HostNode{ID: id, SchedulingEnabled: true}
	if err := hostNodeFields(p, &v); err != nil {
		return nil, err
	}
	if err := requireColumns(p, "offering_cpu_cores", "offering_memory_size"); err != nil {
		return nil, err
	}
	now := a.now()
	v.CreatedAt, v.UpdatedAt = now, now
	return a.createNode(ctx, proto.KindHostNode, id, claimHostNodeID, v.NodeID, v,
		func(tx *state.Tx) (any, error) { return hostNodeDoc(tx, &v, state.Meta{}) })
}

func (a *API) updateHostNode(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	// `id` is the path; upstream skipped an `id` parameter on update.
	if err := checkColumns(p, hostNodeColumns, []string{"id"}); err != nil {
		return nil, err
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getPub[proto.HostNode](tx, proto.KindHostNode, proto.PrefixHostNode, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if err := keepUUID(p, proto.PrefixHostNode, v.ID); err != nil {
			return nil, err
		}
		old := v.NodeID
		if err := hostNodeFields(p, v); err != nil {
			return nil, err
		}
		if err := moveNodeClaim(tx, b, claimHostNodeID, old, v.NodeID, v.ID); err != nil {
			return nil, err
		}
		v.UpdatedAt = a.now()
		b.Update(proto.KindHostNode, v.ID, m.ModifyIndex, v)
		return func(tx *state.Tx) (any, error) { return hostNodeDoc(tx, v, state.Meta{}) }, nil
	})
}

func (a *API) deleteHostNode(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getPub[proto.HostNode](tx, proto.KindHostNode, proto.PrefixHostNode, req.ID("id"))
		if err != nil {
			return nil, err
		}
		if err := dropFromGroups(tx, b, proto.TagTypeHostNodeGroup, v.ID); err != nil {
			return nil, err
		}
		b.Delete(proto.KindHostNode, v.ID, m.ModifyIndex)
		b.DeleteIfExists(proto.KindUniqueName, claimHostNodeID+v.NodeID)
		return func(*state.Tx) (any, error) { return format.NewMap(1).Set("uuid", v.ID), nil }, nil
	})
}
