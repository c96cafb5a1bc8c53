package api

import (
	"context"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// world is one of every resource, made through the API by account A
// (testAccount) and the operator, so that every registered route has real
// ids to address. The hostile-input and isolation tests walk it.
type world struct {
	*env
	// ids are the path values by resource (first path segment) for {id},
	// and by parameter name for the other placeholders.
	ids map[string]string
}

const worldOther = "a-othrwld1" // account B

func (e *env) worldPut(kind, id string, v any) {
	e.t.Helper()
	if _, err := e.api.commit(context.Background(), func(_ *state.Tx, b *state.Builder) (renderFn, error) {
		b.Put(kind, id, v)
		return nil, nil
	}); err != nil {
		e.t.Fatalf("put %s/%s: %v", kind, id, err)
	}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	e := newEnv(t)
	op := acct("")
	call := func(method, path string, form url.Values, account *string) map[string]any {
		t.Helper()
		r := e.do(req{method: method, path: path, form: form, account: account}).ok()
		if len(r.body) == 0 {
			return nil
		}
		if m, ok := r.json().(map[string]any); ok {
			return m
		}
		return nil
	}
	a := acct(testAccount)
	// Both accounts exist before anything is measured.
	call("GET", "/ssh_key_pairs.json", nil, acct(worldOther))
	call("POST", "/dc_networks.json", url.Values{"uuid": {"dcn-w1"}, "name": {"pub"}}, op)
	call("PUT", "/dc_networks/dcn-w1.json", url.Values{"allow_new_networks": {"true"}}, op)
	call("PUT", "/dc_networks/dcn-w1/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}, op)
	call("POST", "/networks.json", url.Values{"uuid": {"nw-w1"}, "dc_network": {"dcn-w1"}, "network": {"10.9.0.0"},
		"prefix": {"24"}, "network_mode": {"securitygroup"}, "dhcp_range": {"default"}, "gw": {"10.9.0.1"},
		"service_dhcp": {"10.9.0.2"}, "editable": {"true"}}, a)
	vif := call("POST", "/networks/nw-w1/vifs.json", url.Values{}, a)["id"].(string)
	call("POST", "/host_nodes.json", url.Values{"uuid": {"hn-w1"}, "node_id": {"hva.w1"}, "arch": {"x86_64"},
		"hypervisor": {"kvm"}, "offering_cpu_cores": {"8"}, "offering_memory_size": {"8192"}}, op)
	e.worldPut(proto.KindNodeState, "hva.w1", proto.NodeState{NodeID: "hva.w1", State: "online"})
	call("POST", "/storage_nodes.json", url.Values{"uuid": {"sn-w1"}, "node_id": {"sta.w1"}, "storage_type": {"iscsi"},
		"offering_disk_space_mb": {"1000"}, "ip_address": {"127.0.0.1"}}, op)
	call("POST", "/host_node_groups.json", url.Values{"uuid": {"hng-w1"}, "name": {"g"}}, op)
	call("POST", "/storage_node_groups.json", url.Values{"uuid": {"sng-w1"}, "name": {"g"}}, op)
	call("POST", "/network_groups.json", url.Values{"uuid": {"nwg-w1"}, "name": {"g"}}, op)
	call("POST", "/backup_storages.json", url.Values{"uuid": {"bkst-w1"}, "storage_type": {"local"},
		"base_uri": {"file:///b/"}, "node_id": {"bksta.w1"}}, op)
	call("POST", "/backup_objects.json", url.Values{"uuid": {"bo-w1"}, "backup_storage_id": {"bkst-w1"},
		"size": {"1048576"}, "state": {"available"}, "checksum": {"abc"}}, a)
	call("POST", "/images.json", url.Values{"uuid": {"wmi-w1"}, "backup_object_id": {"bo-w1"}, "account_id": {testAccount},
		"arch": {"x86_64"}, "state": {"available"}}, op)
	sg := call("POST", "/security_groups.json", url.Values{"rule": {"tcp:22,22,ip4:0.0.0.0"}}, a)["id"].(string)
	ssh := call("POST", "/ssh_key_pairs.json", url.Values{"display_name": {"k"}}, a)["id"].(string)
	inst := call("POST", "/instances.json", url.Values{"image_id": {"wmi-w1"}, "hypervisor": {"kvm"},
		"cpu_cores": {"1"}, "memory_size": {"512"}, "vifs": {`{"eth0":{"network":"nw-w1"}}`}}, a)["id"].(string)
	mon := call("POST", "/instances/"+inst+"/monitoring.json", url.Values{"title": {"ping"}, "enabled": {"true"}}, a)
	for _, res := range []string{"images/wmi-w1", "security_groups/" + sg, "ssh_key_pairs/" + ssh, "backup_objects/bo-w1", "instances/" + inst} {
		call("POST", "/"+res+"/labels/env.json", url.Values{"value": {"prod"}}, a)
	}
	pool := call("POST", "/ip_pools.json", url.Values{"display_name": {"p"}, "dc_networks[]": {"dcn-w1"}}, a)["id"].(string)
	handle := call("PUT", "/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {"nw-w1"}}, a)["ip_handle_id"].(string)
	var job string
	if err := e.srv.Store().View(func(tx *state.Tx) error {
		return tx.Each(proto.KindJob, false, func(en state.Entry) error {
			var j proto.Job
			if err := decodeInto(en, &j); err != nil {
				return err
			}
			job = j.ID
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	// A shared data volume and a snapshot of it, put directly: made through
	// the API they would wait for a storage agent.
	sn := "sn-w1"
	e.worldPut(proto.KindVolume, "vol-w1", &proto.Volume{ID: "vol-w1", AccountID: testAccount,
		State: proto.VolumeAvailable, Size: 10 << 20, StoreType: proto.VolumeShared, StorageNodeID: &sn, ServiceType: "std"})
	e.worldPut(proto.KindVolumeSnapshot, "snap-w1", &proto.VolumeSnapshot{ID: "snap-w1", AccountID: testAccount,
		OriginVolumeID: "vol-w1", StorageNodeID: &sn, BackupObjectID: "bo-w1", Size: 10 << 20, ServiceType: "std"})
	monID, _ := mon["uuid"].(string)
	w := &world{env: e, ids: map[string]string{
		"accounts": testAccount, "backup_objects": "bo-w1", "backup_storages": "bkst-w1", "dc_networks": "dcn-w1",
		"host_node_groups": "hng-w1", "host_nodes": "hn-w1", "images": "wmi-w1", "instances": inst,
		"ip_handles": handle, "ip_pools": pool, "jobs": job, "network_groups": "nwg-w1", "networks": "nw-w1",
		"security_groups": sg, "ssh_key_pairs": ssh, "storage_node_groups": "sng-w1", "storage_nodes": "sn-w1",
		"volumes": "vol-w1", "volume_snapshots": "snap-w1",
		"{vif_id}": vif, "{instance_id}": inst, "{monitor_id}": monID, "{vol_id}": "vol-w1", "{name}": "env",
	}}
	if job == "" || monID == "" {
		t.Fatalf("world lacks a job (%q) or a monitoring item (%v)", job, mon)
	}
	return w
}

var placeholder = regexp.MustCompile(`\{[a-z_]+\}`)

// fill replaces a route's placeholders with the world's ids; sub, when not
// nil, overrides the value of one placeholder.
func (w *world) fill(pattern string, sub map[string]string) string {
	_, path, _ := strings.Cut(pattern, " ")
	res := strings.Split(strings.TrimPrefix(path, "/"), "/")[0]
	return placeholder.ReplaceAllStringFunc(path, func(ph string) string {
		if v, ok := sub[ph]; ok {
			return v
		}
		if v := w.value(res, ph); v != "" {
			return v
		}
		// A new route (or resource) needs its record in newWorld.
		w.t.Fatalf("the world has no value for %s of %s: add one to newWorld", ph, pattern)
		return ""
	})
}

// value is the world's id for placeholder ph of a route on resource res.
func (w *world) value(res, ph string) string {
	if ph == "{id}" {
		return w.ids[res]
	}
	if v, ok := w.ids[res+"/"+ph]; ok {
		return v
	}
	return w.ids[ph]
}

// routes are the registered routes, sorted.
func (w *world) routes() []string {
	var out []string
	for _, r := range w.api.routeTable {
		out = append(out, r.pattern)
	}
	sort.Strings(out)
	return out
}

func routeResource(pattern string) string {
	_, path, _ := strings.Cut(pattern, " ")
	return strings.Split(strings.TrimPrefix(path, "/"), "/")[0]
}

func routeMethod(pattern string) string {
	m, _, _ := strings.Cut(pattern, " ")
	return m
}
