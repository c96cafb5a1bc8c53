package api

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/proto"
)

func TestIPPools(t *testing.T) {
	e := newEnv(t)
	dcA := e.dcNetwork("dca")
	e.dcNetwork("dcb")
	dcC := e.dcNetwork("dcc")
	onA := e.network(dcA, url.Values{"network": {"192.0.2.0"}, "prefix": {"30"}, "dhcp_range": {"default"}})["id"].(string)
	onC := e.network(dcC, url.Values{"network": {"198.51.100.0"}, "dhcp_range": {"default"}})["id"].(string)

	p := e.post("/ip_pools.json", url.Values{"display_name": {"external"}, "dc_networks[]": {dcA, "dcb", "nosuchname", "dca"}}).ok().obj()
	id := p["id"].(string)
	if !strings.HasPrefix(id, "ipp-") || p["display_name"] != "external" {
		t.Fatalf("pool = %v", p)
	}
	dcns := p["dc_networks"].([]any)
	if len(dcns) != 2 || dcns[0].(map[string]any)["id"] != dcA || dcns[1].(map[string]any)["name"] != "dcb" {
		t.Fatalf("dc_networks = %v", dcns)
	}
	y := string(e.get("/ip_pools/" + id + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+id+"\n:display_name: external\n:created_at: ") || !strings.Contains(y, "\n:dc_networks:\n- :id: "+dcA+"\n") {
		t.Fatalf("yaml = %q", y)
	}
	empty := e.post("/ip_pools.json", nil).ok().obj()
	wantEq(t, "empty pool", empty["dc_networks"], []any{})
	e.do(asOther("POST", "/ip_pools.json", url.Values{"dc_networks[]": {dcA}})).ok()

	total, items := e.get("/ip_pools.json").envelope()
	if total != 2 || items[1]["id"] != id {
		t.Fatalf("list = %d %v", total, items)
	}
	total, _ = e.do(req{method: "GET", path: "/ip_pools.json", account: acct("")}).envelope()
	wantEq(t, "operator", total, 3)

	e.rejects(400, "143",
		req{method: "POST", path: "/ip_pools.json", form: url.Values{"dc_networks": {dcA}}},
		req{method: "POST", path: "/ip_pools.json", form: url.Values{"dc_networks[x]": {dcA}}},
		req{method: "POST", path: "/ip_pools.json", form: url.Values{"display_name[]": {"a"}}},
		req{method: "GET", path: "/ip_pools/ip-12345678.json"},
	)
	e.rejects(404, "100",
		req{method: "POST", path: "/ip_pools.json", form: url.Values{"dc_networks[]": {"dcn-nothere"}}},
		req{method: "GET", path: "/ip_pools/ipp-nothere.json"},
		asOther("GET", "/ip_pools/"+id+".json", nil),
		asOther("PUT", "/ip_pools/"+id+"/acquire.json", url.Values{"network_id": {onA}}),
		asOther("DELETE", "/ip_pools/"+id+".json", nil),
		asOther("GET", "/ip_pools/"+id+"/ip_handles.json", nil),
	)

	// Acquire: a /30 has two addresses.
	acq := "/ip_pools/" + id + "/acquire.json"
	a1 := e.put(acq, url.Values{"network_id": {onA}}).ok().obj()
	if !strings.HasPrefix(a1["ip_handle_id"].(string), "ip-") || a1["dc_network_id"] != dcA || a1["network_id"] != onA || a1["ipv4"] != "192.0.2.1" {
		t.Fatalf("acquired = %v", a1)
	}
	if y := string(e.put(acq[:len(acq)-5]+".yml", url.Values{"network_id": {onA}}).ok().body); !strings.HasPrefix(y, "---\n:ip_handle_id: ip-") || !strings.HasSuffix(y, "\n:ipv4: 192.0.2.2\n") {
		t.Fatalf("acquire yaml = %q", y)
	}
	e.rejects(400, "130", req{method: "PUT", path: acq, form: url.Values{"network_id": {onA}}})
	e.rejects(404, "129",
		req{method: "PUT", path: acq, form: url.Values{}},
		req{method: "PUT", path: acq, form: url.Values{"network_id": {"nw-nothere"}}},
		req{method: "PUT", path: acq, form: url.Values{"network_id": {"bogus"}}},
	)
	e.rejects(404, "190", req{method: "PUT", path: acq, form: url.Values{"network_id": {onC}}})

	total, items = e.get("/ip_pools/" + id + "/ip_handles.json").envelope()
	if total != 2 || items[1]["id"] != a1["ip_handle_id"] || items[1]["ipv4"] != "192.0.2.1" || items[1]["network"] != onA {
		t.Fatalf("handles = %d %v", total, items)
	}
	// The handle's address shows as a lease of type handle.
	var handleLeases int
	for _, l := range records[proto.IPLease](e, proto.KindIPLease) {
		if l.Type == proto.LeaseHandle {
			handleLeases++
		}
	}
	wantEq(t, "handle leases", handleLeases, 2)

	// Release.
	rel := "/ip_pools/" + id + "/release.json"
	otherPool := e.post("/ip_pools.json", url.Values{"dc_networks[]": {dcC}}).ok().obj()["id"].(string)
	oh := e.put("/ip_pools/"+otherPool+"/acquire.json", url.Values{"network_id": {onC}}).ok().obj()["ip_handle_id"].(string)
	e.rejects(404, "183",
		req{method: "PUT", path: rel, form: url.Values{}},
		req{method: "PUT", path: rel, form: url.Values{"ip_handle_id": {"ip-nothere"}}},
		req{method: "PUT", path: rel, form: url.Values{"ip_handle_id": {oh}}},
	)
	if r := e.put(rel, url.Values{"ip_handle_id": {a1["ip_handle_id"].(string)}}).ok().obj(); len(r) != 0 {
		t.Fatalf("release = %v", r)
	}
	e.get("/ip_handles/"+a1["ip_handle_id"].(string)+".json").apiError(404, "100")
	// The address is free again: the next acquire takes it.
	wantEq(t, "reacquired", e.put(acq, url.Values{"network_id": {onA}}).ok().obj()["ipv4"], "192.0.2.1")

	// Deleting a pool releases its handles.
	wantEq(t, "delete", e.del("/ip_pools/"+id+".json").ok().arr(), []any{id})
	e.get("/ip_pools/"+id+".json").apiError(404, "100")
	for _, l := range records[proto.IPLease](e, proto.KindIPLease) {
		if l.NetworkID == onA {
			t.Fatalf("lease left: %+v", l)
		}
	}
	wantEq(t, "handles", e.count(proto.KindIPHandle), 1)
}

func TestIPHandles(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{"dhcp_range": {"default"}})["id"].(string)
	pool := e.post("/ip_pools.json", url.Values{"dc_networks[]": {dcn}}).ok().obj()["id"].(string)
	h := e.put("/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {nw}}).ok().obj()["ip_handle_id"].(string)

	d := e.get("/ip_handles/" + h + ".json").ok().obj()
	if d["id"] != h || d["network"] != nw || d["network_vif"] != nil || d["ipv4"] != "10.0.0.1" || d["display_name"] != "" || d["expires_at"] != nil {
		t.Fatalf("handle = %v", d)
	}
	y := string(e.get("/ip_handles/" + h + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+h+"\n:network: "+nw+"\n:network_vif:\n:ipv4: 10.0.0.1\n") || !strings.HasSuffix(y, "\n:expires_at:\n") {
		t.Fatalf("yaml = %q", y)
	}
	exp := "/ip_handles/" + h + "/expire_at.json"
	e.rejects(400, "143",
		req{method: "PUT", path: exp, form: url.Values{}},
		req{method: "PUT", path: exp, form: url.Values{"time_to": {"0"}}},
		req{method: "PUT", path: exp, form: url.Values{"time_to": {"31536001"}}},
		req{method: "PUT", path: exp, form: url.Values{"time_to": {"1h"}}},
		req{method: "GET", path: "/ip_handles/ipp-12345678.json"},
	)
	e.rejects(404, "100",
		req{method: "GET", path: "/ip_handles/ip-nothere.json"},
		asOther("GET", "/ip_handles/"+h+".json", nil),
		asOther("PUT", exp, url.Values{"time_to": {"60"}}),
	)
	d = e.put(exp, url.Values{"time_to": {"3600"}}).ok().obj()
	upd, err1 := time.Parse(time.RFC3339, d["updated_at"].(string))
	at, err2 := time.Parse(time.RFC3339, d["expires_at"].(string))
	if err1 != nil || err2 != nil || at.Sub(upd) != time.Hour {
		t.Fatalf("expire_at = %v", d)
	}
	e.put(exp, url.Values{"time_to": {"31536000"}}).ok()
}
