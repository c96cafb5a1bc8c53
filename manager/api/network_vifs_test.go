package api

import (
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

func TestNetworkVifList(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{"dhcp_range": {"default"}})["id"].(string)
	v1, _ := e.newVif(nw)
	v2, _ := e.newVif(nw)
	otherNet := e.do(asOther("POST", "/networks.json", url.Values{"dc_network": {dcn}, "network": {"10.9.0.0"}, "network_mode": {"passthrough"}, "dhcp_range": {"default"}})).ok().obj()["id"].(string)
	ov := e.do(asOther("POST", "/networks/"+otherNet+"/vifs.json", url.Values{})).ok().obj()["id"]

	total, items := e.get("/network_vifs.json").envelope()
	if total != 2 || items[0]["id"] != v2 || items[1]["id"] != v1 {
		t.Fatalf("mine = %d %v", total, items)
	}
	total, _ = e.do(req{method: "GET", path: "/network_vifs.json", account: acct("")}).envelope()
	wantEq(t, "operator", total, 3)
	_, items = e.do(req{method: "GET", path: "/network_vifs.json?account_id=" + otherAccount, account: acct("")}).envelope()
	if len(items) != 1 || items[0]["id"] != ov {
		t.Fatalf("operator filtered = %v", items)
	}
	_, items = e.get("/network_vifs.json?filter=instance_id.nil&limit=1").envelope()
	wantEq(t, "paged", len(items), 1)

	d := e.get("/network_vifs/" + v1 + ".json").ok().obj()
	wantEq(t, "show", d["ipv4_address"], "10.0.0.1")
	y := string(e.get("/network_vifs/" + v1 + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+v1+"\n:uuid: "+v1+"\n:ipv4_address: 10.0.0.1\n") {
		t.Fatalf("yaml = %q", y)
	}
	e.rejects(404, "100", req{method: "GET", path: "/network_vifs/vif-nothere.json"}, asOther("GET", "/network_vifs/"+v1+".json", nil))
	e.rejects(400, "143", req{method: "GET", path: "/network_vifs/nw-12345678.json"})
}

func TestNetworkVifSecurityGroups(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{"dhcp_range": {"default"}})["id"].(string)
	vif, _ := e.newVif(nw)
	e.securityGroup("sg-mine0001", testAccount)
	e.securityGroup("sg-mine0002", testAccount)
	e.securityGroup("sg-other001", otherAccount)
	add := "/network_vifs/" + vif + "/add_security_group.json"
	remove := "/network_vifs/" + vif + "/remove_security_group.json"

	d := e.put(add, url.Values{"security_group_id": {"sg-mine0001"}}).ok().obj()
	wantEq(t, "added", d["security_groups"], []any{"sg-mine0001"})
	d = e.put(add, url.Values{"security_group_id": {"sg-mine0002"}}).ok().obj()
	wantEq(t, "added 2", d["security_groups"], []any{"sg-mine0001", "sg-mine0002"})
	if y := string(e.get("/network_vifs/" + vif + ".yml").ok().body); !strings.Contains(y, "\n:security_groups:\n- sg-mine0001\n- sg-mine0002\n") {
		t.Fatalf("yaml = %q", y)
	}

	e.rejects(400, "135", req{method: "PUT", path: add, form: url.Values{"security_group_id": {"sg-mine0001"}}})
	e.rejects(404, "100",
		req{method: "PUT", path: add, form: url.Values{"security_group_id": {"sg-other001"}}},
		req{method: "PUT", path: add, form: url.Values{"security_group_id": {"sg-nothere"}}},
		// The operator may name any group, but it must be the vif's account's.
		req{method: "PUT", path: add, form: url.Values{"security_group_id": {"sg-other001"}}, account: acct("")},
		asOther("PUT", add, url.Values{"security_group_id": {"sg-other001"}}),
		asOther("PUT", remove, url.Values{"security_group_id": {"sg-mine0001"}}),
	)
	e.rejects(400, "143",
		req{method: "PUT", path: add, form: url.Values{}},
		req{method: "PUT", path: add, form: url.Values{"security_group_id": {"nw-12345678"}}},
	)
	e.rejects(404, "133",
		req{method: "PUT", path: remove, form: url.Values{"security_group_id": {"sg-other001"}}},
		req{method: "PUT", path: remove, form: url.Values{}},
	)

	d = e.put(remove, url.Values{"security_group_id": {"sg-mine0001"}}).ok().obj()
	wantEq(t, "removed", d["security_groups"], []any{"sg-mine0002"})
	e.rejects(404, "133", req{method: "PUT", path: remove, form: url.Values{"security_group_id": {"sg-mine0001"}}})
	// Operator calls work on any vif with a group of the vif's account.
	d = e.do(req{method: "PUT", path: add, form: url.Values{"security_group_id": {"sg-mine0001"}}, account: acct("")}).ok().obj()
	wantEq(t, "operator add", d["security_groups"], []any{"sg-mine0002", "sg-mine0001"})
}

func TestExternalIP(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	inner := e.network(dcn, url.Values{"dhcp_range": {"default"}})["id"].(string)
	// The external network is the operator's (the system account's), so
	// that both accounts' pools acquire on it (ownership.go).
	outer := e.do(req{method: "POST", path: "/networks.json", account: acct(""), form: url.Values{"dc_network": {dcn},
		"network": {"192.0.2.0"}, "prefix": {"24"}, "network_mode": {"securitygroup"}, "dhcp_range": {"default"}}}).ok().obj()["id"].(string)
	vif, _ := e.newVif(inner)
	vif2, _ := e.newVif(inner)
	pool := e.post("/ip_pools.json", url.Values{"dc_networks[]": {dcn}}).ok().obj()["id"].(string)
	h := e.put("/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {outer}}).ok().obj()["ip_handle_id"].(string)
	otherPool := e.do(asOther("POST", "/ip_pools.json", url.Values{"dc_networks[]": {dcn}})).ok().obj()["id"].(string)
	oh := e.do(asOther("PUT", "/ip_pools/"+otherPool+"/acquire.json", url.Values{"network_id": {outer}})).ok().obj()["ip_handle_id"].(string)
	path := "/network_vifs/" + vif + "/external_ip.json"

	wantEq(t, "none", e.get(path).ok().arr(), []any{})
	e.rejects(400, "143",
		req{method: "POST", path: path, form: url.Values{}},
		req{method: "POST", path: path, form: url.Values{"ip_handle_id": {"ipp-12345678"}}},
		req{method: "POST", path: path, form: url.Values{"ip_handle_id": {h}, "ip_handle_filter": {"network vif"}}},
		req{method: "POST", path: path, form: url.Values{"ip_handle_id": {h}, "ip_handle_filter": {"network_vif.null"}}},
		req{method: "DELETE", path: path},
	)
	e.rejects(404, "100",
		req{method: "POST", path: path, form: url.Values{"ip_handle_id": {"ip-nothere"}}},
		req{method: "POST", path: path, form: url.Values{"ip_handle_id": {oh}}},
		req{method: "POST", path: path, form: url.Values{"ip_handle_id": {h}, "ip_handle_filter": {"network_vif.not_nil"}}},
		asOther("POST", path, url.Values{"ip_handle_id": {oh}}),
		asOther("GET", path, nil),
	)
	e.rejects(400, "110", req{method: "POST", path: path, form: url.Values{"ip_handle_id": {h}, "ip_handle_filter": {"bogus.nil"}}})

	got := e.post(path, url.Values{"ip_handle_id": {h}, "ip_handle_filter[]": {"network_vif.nil", "expires_at.nil"}}).ok().obj()
	want := map[string]any{"network_id": outer, "vif_id": vif, "ip_handle_id": h, "ipv4": "192.0.2.1"}
	wantEq(t, "added", got, want)
	wantEq(t, "listed", e.get(path).ok().arr(), []any{want})
	if y := string(e.get("/network_vifs/" + vif + "/external_ip.yml").ok().body); y != "---\n- :network_id: "+outer+"\n  :vif_id: "+vif+"\n  :ip_handle_id: "+h+"\n  :ipv4: 192.0.2.1\n" {
		t.Fatalf("yaml = %q", y)
	}
	wantEq(t, "handle in use", e.get("/ip_handles/" + h + ".json").ok().obj()["network_vif"], vif)

	// The handle carries one route; it cannot be released or given a TTL.
	e.rejects(400, "143",
		req{method: "POST", path: "/network_vifs/" + vif2 + "/external_ip.json", form: url.Values{"ip_handle_id": {h}}},
		req{method: "PUT", path: "/ip_handles/" + h + "/expire_at.json", form: url.Values{"time_to": {"60"}}},
	)
	e.rejects(404, "185", req{method: "PUT", path: "/ip_pools/" + pool + "/release.json", form: url.Values{"ip_handle_id": {h}}})
	e.rejects(404, "185", req{method: "DELETE", path: "/ip_pools/" + pool + ".json"})

	// A vif on no network has nothing to route to.
	e.put("/networks/"+inner+"/vifs/"+vif2+"/detach.json", nil).ok()
	h2 := e.put("/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {outer}}).ok().obj()["ip_handle_id"].(string)
	e.rejects(500, "147", req{method: "POST", path: "/network_vifs/" + vif2 + "/external_ip.json", form: url.Values{"ip_handle_id": {h2}}})

	wantEq(t, "delete other", e.del(path+"?ip_handle_id="+h2).ok().arr(), []any{})
	wantEq(t, "deleted", e.del(path+"?ip_handle_id="+h).ok().arr(), []any{want})
	wantEq(t, "gone", e.get(path).ok().arr(), []any{})
	wantEq(t, "handle free", e.get("/ip_handles/" + h + ".json").ok().obj()["network_vif"], nil)
	wantEq(t, "routes", e.count(proto.KindNetworkRoute), 0)

	// Deleting the vif drops its routes and frees the handle.
	e.post(path, url.Values{"ip_handle_id": {h}}).ok()
	e.del("/networks/" + inner + "/vifs/" + vif + ".json").ok()
	wantEq(t, "routes after vif delete", e.count(proto.KindNetworkRoute), 0)
	wantEq(t, "handle free again", e.get("/ip_handles/" + h + ".json").ok().obj()["network_vif"], nil)
	e.put("/ip_pools/"+pool+"/release.json", url.Values{"ip_handle_id": {h}}).ok()
}

// TestNetworkVifRace: 16 concurrent vif creates on a range of 8 addresses.
// Every success has its own address and MAC, the rest are 400/130, and no
// lease or MAC claim is left without its vif.
func TestNetworkVifRace(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{"network": {"10.0.0.0"}, "prefix": {"28"}, "editable": {"true"}})["id"].(string)
	e.put("/networks/"+nw+"/dhcp_ranges/add.json", url.Values{"range_begin": {"10.0.0.3"}, "range_end": {"10.0.0.10"}}).ok()
	claimsBefore := e.count(proto.KindUniqueName)

	const n = 16
	type result struct {
		status    int
		code      any
		ip, mac   string
		id        string
		bodyError string
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.do(req{method: "POST", path: "/networks/" + nw + "/vifs.json", form: url.Values{}})
			res := result{status: r.status}
			m := r.obj()
			if r.status == 200 {
				res.ip, _ = m["ipv4_address"].(string)
				res.mac, _ = m["mac_addr"].(string)
				res.id, _ = m["id"].(string)
			} else {
				res.code = m["code"]
				res.bodyError = string(r.body)
			}
			results[i] = res
		}()
	}
	wg.Wait()

	ips, macs := map[string]bool{}, map[string]bool{}
	ok := 0
	for _, r := range results {
		switch {
		case r.status == 200:
			ok++
			if ips[r.ip] || macs[r.mac] {
				t.Fatalf("duplicate ip %s or mac %s", r.ip, r.mac)
			}
			ips[r.ip], macs[r.mac] = true, true
		case r.status != 400 || r.code != "130":
			t.Fatalf("unexpected answer %d: %s", r.status, r.bodyError)
		}
	}
	if ok != 8 {
		t.Fatalf("%d vifs created, want 8 (the range size)", ok)
	}
	for ip := range ips {
		v, _ := parseIPv4(ip)
		lo, _ := parseIPv4("10.0.0.3")
		hi, _ := parseIPv4("10.0.0.10")
		if v < lo || v > hi {
			t.Fatalf("address %s outside the range", ip)
		}
	}
	// Nothing leaked: one lease and one MAC claim per vif, each its own.
	vifs := records[proto.NetworkVif](e, proto.KindNetworkVif)
	leases := records[proto.IPLease](e, proto.KindIPLease)
	if len(vifs) != ok || len(leases) != ok || e.count(proto.KindUniqueName)-claimsBefore != ok {
		t.Fatalf("vifs %d, leases %d, new claims %d; want %d each", len(vifs), len(leases), e.count(proto.KindUniqueName)-claimsBefore, ok)
	}
	for _, l := range leases {
		if l.NetworkVifID == nil || !ips[l.IPv4] {
			t.Fatalf("stray lease %+v", l)
		}
	}
	for _, v := range vifs {
		if !macs[macColon(v.MacAddr)] || !ips[*v.IPv4Address] {
			t.Fatalf("stray vif %+v", v)
		}
	}
}
