package api

import (
	"net/url"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

func storageNodeForm(kv ...string) url.Values {
	f := url.Values{
		"node_id": {"sta.demo1"}, "storage_type": {"iscsi"}, "offering_disk_space_mb": {"102400"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<unset>" {
			f.Del(kv[i])
		} else {
			f.Set(kv[i], kv[i+1])
		}
	}
	return f
}

var storageNodeBaseKeys = []string{
	"id", "uuid", "node_id", "offering_disk_space_mb", "storage_type", "display_name", "created_at", "updated_at",
}

func TestStorageNodesCRUD(t *testing.T) {
	e := newEnv(t)

	r := e.post("/storage_nodes.json", storageNodeForm("uuid", "sn-demo1", "ip_address", "192.168.0.10", "display_name", "san")).ok()
	wantKeys(t, r.body, append(storageNodeBaseKeys, "ip_address", "status")...)
	sn := r.obj()
	for k, v := range map[string]any{
		"id": "sn-demo1", "uuid": "sn-demo1", "node_id": "sta.demo1", "offering_disk_space_mb": 102400.0,
		"storage_type": "iscsi", "display_name": "san", "ip_address": "192.168.0.10", "status": "offline",
	} {
		if sn[k] != v {
			t.Fatalf("%s = %v, want %v", k, sn[k], v)
		}
	}
	if !e.exists(proto.KindUniqueName, "storage_node_node_id/sta.demo1") {
		t.Fatalf("node_id not claimed")
	}

	r = e.post("/storage_nodes.json", storageNodeForm("uuid", "sn-demo2", "node_id", "sta-nfs", "storage_type", "nfs",
		"mount_point", "/export/vdc")).ok()
	wantKeys(t, r.body, append(storageNodeBaseKeys, "mount_point", "status")...)
	if got := r.obj()["mount_point"]; got != "/export/vdc" {
		t.Fatalf("mount_point = %v", got)
	}

	e.seed(proto.KindNodeState, "sta.demo1", proto.NodeState{NodeID: "sta.demo1", State: "online"})
	r = e.get("/storage_nodes/sn-demo1.json").ok()
	wantKeys(t, r.body, append(storageNodeBaseKeys, "ip_address", "status")...)
	if got := r.obj()["status"]; got != "online" {
		t.Fatalf("status = %v", got)
	}
	y := string(e.get("/storage_nodes/sn-demo1.yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: sn-demo1\n:uuid: sn-demo1\n:node_id: sta.demo1\n") ||
		!strings.HasSuffix(y, ":ip_address: 192.168.0.10\n:status: online\n") {
		t.Fatalf("yaml show = %q", y)
	}

	total, items := e.get("/storage_nodes.json").envelope()
	if total != 2 || items[0]["id"] != "sn-demo2" || items[1]["id"] != "sn-demo1" {
		t.Fatalf("list = %d %v", total, items)
	}
	total, items = e.get("/storage_nodes.json?node_id=sta-nfs").envelope()
	if total != 1 || items[0]["id"] != "sn-demo2" {
		t.Fatalf("node_id filter = %d %v", total, items)
	}
	if total, _ = e.get("/storage_nodes.json?created_until=2000-01-01T00:00:00Z").envelope(); total != 0 {
		t.Fatalf("created_until filter total = %d", total)
	}
	if y := string(e.get("/storage_nodes.yml?node_id=sta-nfs").ok().body); !strings.HasPrefix(y, "---\n- :total: 1\n  :start: 0\n  :limit: 250\n  :results:\n  - :id: sn-demo2\n") {
		t.Fatalf("yaml list = %q", y)
	}

	// Update; switching the storage type drops the old subtype column.
	sn = e.put("/storage_nodes/sn-demo1.json", url.Values{"display_name": {"renamed"}, "ip_address": {"10.0.0.2"}}).ok().obj()
	if sn["display_name"] != "renamed" || sn["ip_address"] != "10.0.0.2" {
		t.Fatalf("updated = %v", sn)
	}
	r = e.put("/storage_nodes/sn-demo1.json", url.Values{"storage_type": {"nfs"}, "mount_point": {"/mnt/x"}}).ok()
	wantKeys(t, r.body, append(storageNodeBaseKeys, "mount_point", "status")...)
	var rec proto.StorageNode
	e.record(proto.KindStorageNode, "sn-demo1", &rec)
	if rec.IPAddress != "" || rec.MountPoint != "/mnt/x" || rec.StorageType != "nfs" {
		t.Fatalf("record = %+v", rec)
	}
	if got := e.put("/storage_nodes/sn-demo1.json", url.Values{"node_id": {"sta.moved"}}).ok().obj()["node_id"]; got != "sta.moved" {
		t.Fatalf("node_id = %v", got)
	}
	if e.exists(proto.KindUniqueName, "storage_node_node_id/sta.demo1") || !e.exists(proto.KindUniqueName, "storage_node_node_id/sta.moved") {
		t.Fatalf("claim not moved")
	}

	// DELETE answers the deleted document and releases the claim.
	r = e.del("/storage_nodes/sn-demo1.json").ok()
	wantKeys(t, r.body, append(storageNodeBaseKeys, "mount_point", "status")...)
	if d := r.obj(); d["id"] != "sn-demo1" || d["node_id"] != "sta.moved" {
		t.Fatalf("delete = %v", d)
	}
	if e.exists(proto.KindUniqueName, "storage_node_node_id/sta.moved") || e.exists(proto.KindStorageNode, "sn-demo1") {
		t.Fatalf("not deleted")
	}
	e.get("/storage_nodes/sn-demo1.json").apiError(404, "100")
	e.post("/storage_nodes.json", storageNodeForm("node_id", "sta.moved")).ok()
	if y := string(e.del("/storage_nodes/sn-demo2.yml").ok().body); !strings.HasPrefix(y, "---\n:id: sn-demo2\n") {
		t.Fatalf("yaml delete = %q", y)
	}
}

func TestStorageNodesErrors(t *testing.T) {
	e := newEnv(t)
	e.post("/storage_nodes.json", storageNodeForm("uuid", "sn-demo1")).ok()
	e.post("/storage_nodes.json", storageNodeForm("uuid", "sn-demo2", "node_id", "sta.nfs", "storage_type", "nfs")).ok()

	post := func(kv ...string) req {
		return req{method: "POST", path: "/storage_nodes.json", form: storageNodeForm(kv...)}
	}
	put := func(id string, kv ...string) req {
		f := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return req{method: "PUT", path: "/storage_nodes/" + id + ".json", form: f}
	}
	m := e.post("/storage_nodes.json", storageNodeForm("node_id", "sta.x", "size", "1")).apiError(400, "143")
	if !strings.Contains(m["message"].(string), "size") {
		t.Fatalf("message = %v", m["message"])
	}
	e.rejects(400, "143",
		post("node_id", "sta.x", "size", "1"),
		post("node_id", "sta.x", "mount_point", "/x"), // iscsi has no mount_point
		post("node_id", "sta.x", "storage_type", "nfs", "ip_address", "10.0.0.1"),
		put("sn-demo1", "mount_point", "/x"),
		put("sn-demo2", "ip_address", "10.0.0.1"),
		put("sn-demo1", "uuid", "sn-other"),
		put("sn-demo1", "bogus", "1"),
		req{method: "GET", path: "/storage_nodes/hn-demo1.json"},
		req{method: "DELETE", path: "/storage_nodes/demo1.json"},
	)
	e.rejects(400, "110",
		post("node_id", "sta.demo1"),
		post("uuid", "sn-demo1", "node_id", "sta.new"),
		post("node_id", "hva.demo1"),
		post("node_id", "<unset>"),
		post("node_id", "sta.new", "storage_type", "zfs"),
		post("node_id", "sta.new", "storage_type", "<unset>"),
		post("node_id", "sta.new", "offering_disk_space_mb", "<unset>"),
		post("node_id", "sta.new", "offering_disk_space_mb", "-1"),
		post("node_id", "sta.new", "ip_address", "not-an-ip"),
		put("sn-demo1", "node_id", "sta.nfs"),
		put("sn-demo1", "node_id", "hva.1"),
		put("sn-demo1", "storage_type", "lvm"),
	)
	e.rejects(404, "100",
		req{method: "GET", path: "/storage_nodes/sn-nothere.json"},
		put("sn-nothere", "display_name", "x"),
		req{method: "DELETE", path: "/storage_nodes/sn-nothere.json"},
	)
}
