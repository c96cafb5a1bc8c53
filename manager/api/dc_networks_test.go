package api

import (
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

func TestDcNetworks(t *testing.T) {
	e := newEnv(t)

	d := e.post("/dc_networks.json", url.Values{"name": {"public"}, "description": {"uplink"}}).ok().obj()
	id := d["id"].(string)
	if !strings.HasPrefix(id, "dcn-") || d["uuid"] != id || d["name"] != "public" || d["description"] != "uplink" ||
		d["allow_new_networks"] != false || d["vlan_lease_id"] != nil {
		t.Fatalf("created = %v", d)
	}
	wantEq(t, "default modes", d["offering_network_modes"], []any{"passthrough"})

	y := string(e.get("/dc_networks/" + id + ".yml").ok().body)
	want := "---\n:id: " + id + "\n:uuid: " + id + "\n:name: public\n:description: uplink\n:created_at: "
	if !strings.HasPrefix(y, want) || !strings.Contains(y, "\n:vlan_lease_id:\n:offering_network_modes:\n- passthrough\n:allow_new_networks: false\n") {
		t.Fatalf("yaml = %q", y)
	}

	// Caller-chosen uuid.
	e.post("/dc_networks.json", url.Values{"name": {"mgmt"}, "uuid": {"dcn-mgmt"}}).ok()

	total, items := e.get("/dc_networks.json?name=public").envelope()
	if total != 1 || items[0]["id"] != id {
		t.Fatalf("list by name = %d %v", total, items)
	}
	total, _ = e.get("/dc_networks.json").envelope()
	wantEq(t, "total", total, 2)

	e.rejects(400, "110",
		req{method: "POST", path: "/dc_networks.json", form: url.Values{"name": {"public"}}},
		req{method: "POST", path: "/dc_networks.json", form: url.Values{"name": {"bad name"}}},
		req{method: "POST", path: "/dc_networks.json", form: url.Values{"description": {"no name"}}},
		req{method: "POST", path: "/dc_networks.json", form: url.Values{"name": {"x"}, "uuid": {"dcn-mgmt"}}},
		req{method: "PUT", path: "/dc_networks/" + id + ".json", form: url.Values{"name": {"mgmt"}}},
		req{method: "PUT", path: "/dc_networks/" + id + ".json", form: url.Values{"name": {"a-b"}}},
		req{method: "PUT", path: "/dc_networks/" + id + ".json", form: url.Values{"allow_new_networks": {"maybe"}}},
		req{method: "PUT", path: "/dc_networks/" + id + ".json", form: url.Values{"offering_network_modes": {"vlan"}}},
		req{method: "PUT", path: "/dc_networks/" + id + "/offering_modes/add.json", form: url.Values{"mode": {"passthrough,bogus"}}},
		req{method: "PUT", path: "/dc_networks/" + id + "/offering_modes/delete.json", form: url.Values{"mode": {"bogus"}}},
	)
	e.rejects(400, "143",
		req{method: "GET", path: "/dc_networks/nw-12345678.json"},
		req{method: "PUT", path: "/dc_networks/" + id + "/offering_modes/add.json", form: url.Values{}},
	)
	e.rejects(404, "100",
		req{method: "GET", path: "/dc_networks/dcn-nothere.json"},
		req{method: "PUT", path: "/dc_networks/dcn-nothere.json", form: url.Values{"description": {"x"}}},
		req{method: "DELETE", path: "/dc_networks/dcn-nothere.json"},
		req{method: "GET", path: "/dc_networks/dcn-nothere/offering_modes.json"},
	)

	// Rename frees the old name; other columns update when present.
	u := e.put("/dc_networks/"+id+".json", url.Values{"name": {"public2"}, "allow_new_networks": {"true"}}).ok().obj()
	if u["name"] != "public2" || u["allow_new_networks"] != true || u["description"] != "uplink" {
		t.Fatalf("updated = %v", u)
	}
	e.post("/dc_networks.json", url.Values{"name": {"public"}}).ok()
	e.put("/dc_networks/"+id+".json", url.Values{"offering_network_modes": {"passthrough,l2overlay"}}).ok()

	// Offering modes: bare arrays, de-duplicated add, delete.
	wantEq(t, "modes", e.get("/dc_networks/"+id+"/offering_modes.json").ok().arr(), []any{"passthrough", "l2overlay"})
	got := e.put("/dc_networks/"+id+"/offering_modes/add.json", url.Values{"mode[]": {"securitygroup", "passthrough"}}).ok().arr()
	wantEq(t, "add", got, []any{"passthrough", "l2overlay", "securitygroup"})
	got = e.put("/dc_networks/"+id+"/offering_modes/delete.json", url.Values{"mode": {"passthrough"}}).ok().arr()
	wantEq(t, "delete", got, []any{"l2overlay", "securitygroup"})
	if y := string(e.get("/dc_networks/" + id + "/offering_modes.yml").ok().body); y != "---\n- l2overlay\n- securitygroup\n" {
		t.Fatalf("modes yaml = %q", y)
	}

	// A DC network with networks on it is not deleted.
	nw := e.post("/networks.json", url.Values{"dc_network": {id}, "network": {"10.1.0.0"}, "network_mode": {"securitygroup"}}).ok().obj()["id"].(string)
	e.rejects(400, "143", req{method: "DELETE", path: "/dc_networks/" + id + ".json"})
	e.del("/networks/" + nw + ".json").ok()

	wantEq(t, "delete", e.del("/dc_networks/"+id+".json").ok().arr(), []any{id})
	e.get("/dc_networks/"+id+".json").apiError(404, "100")
	// Its name is free again.
	e.post("/dc_networks.json", url.Values{"name": {"public2"}}).ok()
}

// TestDcNetworkNameRace: concurrent creates of one name, exactly one wins.
func TestDcNetworkNameRace(t *testing.T) {
	e := newEnv(t)
	e.get("/dc_networks.json").ok() // create the account first
	const n = 8
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = e.do(req{method: "POST", path: "/dc_networks.json", form: url.Values{"name": {"same"}}}).status
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == 200 {
			ok++
		} else if s != 400 {
			t.Fatalf("status %d", s)
		}
	}
	if ok != 1 || e.count(proto.KindDcNetwork) != 1 || e.count(proto.KindUniqueName) != 1 {
		t.Fatalf("ok=%d dcns=%d claims=%d", ok, e.count(proto.KindDcNetwork), e.count(proto.KindUniqueName))
	}
}
