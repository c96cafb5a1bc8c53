package api

import (
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

var groupKeys = []string{
	"id", "account_id", "uuid", "type_id", "name", "attributes", "created_at", "updated_at", "mapped_uuids",
}

func members(t *testing.T, doc map[string]any) []string {
	t.Helper()
	var out []string
	for _, v := range doc["mapped_uuids"].([]any) {
		out = append(out, v.(string))
	}
	return out
}

func TestGroups(t *testing.T) {
	e := newEnv(t)
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo1")).ok()
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo2", "node_id", "hva.demo2")).ok()
	e.post("/storage_nodes.json", storageNodeForm("uuid", "sn-demo1")).ok()
	e.seed(proto.KindNetwork, "nw-demo1", proto.Network{ID: "nw-demo1", AccountID: testAccount})

	cases := []struct {
		path, prefix string
		typeID       float64
		param        string
		member       string
	}{
		{"/host_node_groups", "hng", 11, "host_nodes", "hn-demo1"},
		{"/storage_node_groups", "sng", 12, "storage_nodes", "sn-demo1"},
		{"/network_groups", "nwg", 10, "networks", "nw-demo1"},
	}
	for _, c := range cases {
		t.Run(c.prefix, func(t *testing.T) {
			r := e.post(c.path+".json", url.Values{"name": {"shared"}, "attributes": {"a=1"}}).ok()
			wantKeys(t, r.body, groupKeys...)
			g := r.obj()
			id := g["id"].(string)
			if !strings.HasPrefix(id, c.prefix+"-") || g["uuid"] != id || g["account_id"] != testAccount ||
				g["type_id"] != c.typeID || g["name"] != "shared" || g["attributes"] != "a=1" || len(members(t, g)) != 0 {
				t.Fatalf("created = %v", g)
			}

			// Membership: a string, then an array replaces, "" clears.
			g = e.put(c.path+"/"+id+".json", url.Values{c.param: {c.member}}).ok().obj()
			if got := members(t, g); !reflect.DeepEqual(got, []string{c.member}) {
				t.Fatalf("members = %v", got)
			}
			g = e.put(c.path+"/"+id+".json", url.Values{c.param + "[]": {c.member, c.member, ""}}).ok().obj()
			if got := members(t, g); !reflect.DeepEqual(got, []string{c.member}) {
				t.Fatalf("members = %v", got)
			}
			// The original rejected every name; here it renames.
			r = e.put(c.path+"/"+id+".json", url.Values{"name": {"renamed"}}).ok()
			wantKeys(t, r.body, groupKeys...)
			if g = r.obj(); g["name"] != "renamed" || len(members(t, g)) != 1 {
				t.Fatalf("renamed = %v", g)
			}

			r = e.get(c.path + "/" + id + ".json").ok()
			wantKeys(t, r.body, groupKeys...)
			if got := members(t, r.obj()); !reflect.DeepEqual(got, []string{c.member}) {
				t.Fatalf("show members = %v", got)
			}
			y := string(e.get(c.path + "/" + id + ".yml").ok().body)
			if !strings.HasPrefix(y, "---\n:id: "+id+"\n:account_id: "+testAccount+"\n:uuid: "+id+"\n") ||
				!strings.HasSuffix(y, ":mapped_uuids:\n- "+c.member+"\n") {
				t.Fatalf("yaml show = %q", y)
			}

			total, items := e.get(c.path + ".json?name=renamed").envelope()
			if total != 1 || items[0]["id"] != id {
				t.Fatalf("list = %d %v", total, items)
			}
			if total, _ = e.get(c.path + ".json?name=nope").envelope(); total != 0 {
				t.Fatalf("name filter total = %d", total)
			}
			if total, _ = e.get(c.path + ".json?service_type=std").envelope(); total != 1 {
				t.Fatalf("service_type filter total = %d", total)
			}

			g = e.put(c.path+"/"+id+".json", url.Values{c.param: {""}}).ok().obj()
			if len(members(t, g)) != 0 {
				t.Fatalf("not cleared: %v", g)
			}

			e.rejects(404, "100",
				req{method: "PUT", path: c.path + "/" + id + ".json", form: url.Values{c.param: {c.prefix + "-nothere"}}},
				req{method: "PUT", path: c.path + "/" + id + ".json", form: url.Values{c.param + "[]": {c.member, "xx-bad"}}},
				req{method: "GET", path: c.path + "/" + c.prefix + "-nothere.json"},
				req{method: "PUT", path: c.path + "/" + c.prefix + "-nothere.json", form: url.Values{"name": {"x"}}},
				req{method: "DELETE", path: c.path + "/" + c.prefix + "-nothere.json"},
			)
			e.rejects(400, "118",
				req{method: "POST", path: c.path + ".json", form: url.Values{"attributes": {"x"}}},
				req{method: "POST", path: c.path + ".json", form: url.Values{"name": {""}}},
				req{method: "PUT", path: c.path + "/" + id + ".json", form: url.Values{"name": {""}}},
			)
			e.rejects(400, "143",
				req{method: "GET", path: c.path + "/tag-" + id[len(c.prefix)+1:] + ".json"},
				req{method: "GET", path: c.path + ".json?service_type=bogus"},
				req{method: "POST", path: c.path + ".json", form: url.Values{"name": {"x"}, "service_type": {"bogus"}}},
				req{method: "PUT", path: c.path + "/" + id + ".json", form: url.Values{c.param + "[x]": {c.member}}},
			)

			del := e.del(c.path + "/" + id + ".json").ok().arr()
			if len(del) != 1 || del[0] != id {
				t.Fatalf("delete = %v", del)
			}
			e.get(c.path+"/"+id+".json").apiError(404, "100")
		})
	}

	// Groups of one kind are not visible through another kind's routes.
	hng := e.post("/host_node_groups.json", url.Values{"name": {"h"}, "uuid": {"shhost"}}).ok().obj()
	if hng["id"] != "hng-shhost" {
		t.Fatalf("chosen uuid = %v", hng["id"])
	}
	e.rejects(400, "110", req{method: "POST", path: "/host_node_groups.json", form: url.Values{"name": {"h"}, "uuid": {"hng-shhost"}}})
	e.get("/network_groups/hng-shhost.json").apiError(400, "143")
	if total, _ := e.get("/network_groups.json").envelope(); total != 0 {
		t.Fatalf("network groups total = %d", total)
	}
	e.post("/storage_node_groups.json", url.Values{"name": {"other-account"}}).ok()
	// The account filter is the caller (header) or the parameter (operator).
	if total, _ := e.do(req{method: "GET", path: "/storage_node_groups.json", account: acct("a-someone")}).envelope(); total != 0 {
		t.Fatalf("other account sees %d storage node groups", total)
	}
	if total, _ := e.do(req{method: "GET", path: "/storage_node_groups.json", account: acct("")}).envelope(); total != 1 {
		t.Fatalf("operator sees %d storage node groups", total)
	}
	if total, _ := e.do(req{method: "GET", path: "/storage_node_groups.json?account_id=a-someone", account: acct("")}).envelope(); total != 0 {
		t.Fatalf("operator account filter sees %d", total)
	}

	// Deleting a host node drops it from its groups.
	e.put("/host_node_groups/hng-shhost.json", url.Values{"host_nodes[]": {"hn-demo1", "hn-demo2"}}).ok()
	e.del("/host_nodes/hn-demo1.json").ok()
	var tag proto.Tag
	e.record(proto.KindTag, "hng-shhost", &tag)
	if !reflect.DeepEqual(tag.MappedUUIDs, []string{"hn-demo2"}) {
		t.Fatalf("stored members = %v", tag.MappedUUIDs)
	}
	// A member removed behind the API's back is not shown.
	e.put("/network_groups/"+e.post("/network_groups.json", url.Values{"name": {"n"}, "uuid": {"shnet"}}).ok().obj()["id"].(string)+".json",
		url.Values{"networks": {"nw-demo1"}}).ok()
	e.remove(proto.KindNetwork, "nw-demo1")
	if got := members(t, e.get("/network_groups/nwg-shnet.json").ok().obj()); len(got) != 0 {
		t.Fatalf("dangling members shown: %v", got)
	}
}
