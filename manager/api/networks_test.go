package api

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

var macPattern = regexp.MustCompile(`^52:54:00:[0-9a-f]{2}:[0-9a-f]{2}:[0-9a-f]{2}$`)

func TestNetworkCreateAndShow(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{
		"display_name": {"demo"}, "description": {"demo net"}, "domain_name": {"vdc.local"},
		"gw": {"10.0.0.1"}, "dhcp_range": {"default"}, "metric": {"10"}, "editable": {"true"},
		"service_dhcp": {"10.0.0.2"}, "service_dns": {"10.0.0.2"}, "service_gateway": {""},
	})
	id := nw["id"].(string)
	for k, want := range map[string]any{
		"account_id": testAccount, "uuid": id, "ipv4_network": "10.0.0.0", "ipv4_gw": "10.0.0.1",
		"prefix": 24.0, "metric": 10.0, "domain_name": "vdc.local", "nat_network_id": nil, "description": "demo net",
		"network_mode": "securitygroup", "ip_assignment": "asc", "editable": true, "service_type": "std",
		"display_name": "demo", "bandwidth": nil, "dns_server": nil, "metadata_server_port": nil,
	} {
		if got := nw[k]; got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if !strings.HasPrefix(id, "nw-") {
		t.Fatalf("id = %s", id)
	}
	for _, gone := range []string{"dc_network_id", "gateway_network_id", "dhcp_ranges"} {
		if _, ok := nw[gone]; ok {
			t.Errorf("document has %s", gone)
		}
	}
	if bm, ok := nw["bandwidth_mark"].(float64); !ok || bm <= 0 || bm != float64(int64(bm)) {
		t.Errorf("bandwidth_mark = %v", nw["bandwidth_mark"])
	}
	if dc := nw["dc_network"].(map[string]any); dc["id"] != dcn || dc["name"] != "public" {
		t.Errorf("dc_network = %v", dc)
	}
	svcs := nw["network_services"].([]any)
	if len(svcs) != 3 {
		t.Fatalf("services = %v", svcs)
	}
	dhcp, dns, gw := svcs[0].(map[string]any), svcs[1].(map[string]any), svcs[2].(map[string]any)
	if dhcp["name"] != "dhcp" || dhcp["address"] != "10.0.0.2" || dhcp["incoming_port"] != 67.0 || dhcp["outgoing_port"] != 68.0 ||
		dhcp["network_id"] != id || !macPattern.MatchString(dhcp["mac_addr"].(string)) {
		t.Errorf("dhcp = %v", dhcp)
	}
	if dns["name"] != "dns" || dns["incoming_port"] != 53.0 || dns["outgoing_port"] != nil || dns["network_vif_id"] != dhcp["network_vif_id"] {
		t.Errorf("dns = %v (shares the dhcp vif)", dns)
	}
	if gw["name"] != "gateway" || gw["address"] != "10.0.0.1" || gw["incoming_port"] != nil || gw["network_vif_id"] == dhcp["network_vif_id"] {
		t.Errorf("gateway = %v", gw)
	}
	// Two service vifs: two leases and two MAC claims.
	wantEq(t, "leases", e.count(proto.KindIPLease), 2)
	wantEq(t, "vifs", e.count(proto.KindNetworkVif), 2)

	y := string(e.get("/networks/" + id + ".yml").ok().body)
	wantY := "---\n:id: " + id + "\n:account_id: a-shpoolxx\n:uuid: " + id + "\n:ipv4_network: 10.0.0.0\n:ipv4_gw: 10.0.0.1\n:prefix: 24\n:metric: 10\n"
	if !strings.HasPrefix(y, wantY) || !strings.Contains(y, "\n:dc_network:\n  :id: "+dcn+"\n") ||
		!strings.Contains(y, "\n:network_services:\n- :name: dhcp\n") || !strings.Contains(y, "\n:bandwidth_mark: ") {
		t.Fatalf("yaml = %s", y)
	}
	shown := e.get("/networks/" + id + ".json").ok().obj()
	wantEq(t, "show", shown["bandwidth_mark"], nw["bandwidth_mark"])

	// dhcp_range=default: first..last usable address; bare array answers.
	wantEq(t, "ranges", e.get("/networks/"+id+"/dhcp_ranges.json").ok().arr(), []any{[]any{"10.0.0.1", "10.0.0.254"}})
	if y := string(e.get("/networks/" + id + "/dhcp_ranges.yml").ok().body); y != "---\n- - 10.0.0.1\n  - 10.0.0.254\n" {
		t.Fatalf("ranges yaml = %q", y)
	}
	// The gateway and the service address are skipped.
	_, ip := e.newVif(id)
	wantEq(t, "first vif", ip, "10.0.0.3")

	// A caller-chosen uuid; a service address with last octet 0 inside a
	// /16 is a host address (upstream refused it).
	n2 := e.network(dcn, url.Values{"uuid": {"nw-demo2"}, "network": {"172.16.0.0"}, "prefix": {"16"}, "service_dhcp": {"172.16.1.0"}})
	wantEq(t, "chosen", n2["id"], "nw-demo2")
	wantEq(t, "svc", n2["network_services"].([]any)[0].(map[string]any)["address"], "172.16.1.0")
	wantEq(t, "no ranges", e.get("/networks/nw-demo2/dhcp_ranges.json").ok().arr(), []any{})
}

func TestNetworkCreateErrors(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	closed := e.post("/dc_networks.json", url.Values{"name": {"closed"}}).ok().obj()["id"].(string)
	e.put("/dc_networks/"+closed+"/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}).ok()
	ptOnly := e.post("/dc_networks.json", url.Values{"name": {"ptonly"}}).ok().obj()["id"].(string)
	e.put("/dc_networks/"+ptOnly+".json", url.Values{"allow_new_networks": {"true"}}).ok()
	e.network(dcn, url.Values{"uuid": {"nw-taken"}})

	post := func(over url.Values) req {
		f := url.Values{"dc_network": {dcn}, "network": {"10.0.0.0"}, "prefix": {"24"}, "network_mode": {"securitygroup"}}
		for k, v := range over {
			f[k] = v
		}
		return req{method: "POST", path: "/networks.json", form: f}
	}
	e.rejects(400, "110",
		req{method: "POST", path: "/networks.json", form: url.Values{"network": {"10.0.0.0"}, "network_mode": {"securitygroup"}}},
		post(url.Values{"dc_network": {"public"}}),
		post(url.Values{"dc_network": {"nw-12345678"}}),
		post(url.Values{"network": {"10.0.0"}}),
		post(url.Values{"network": {""}}),
		post(url.Values{"network": {"10.0.0.5"}}),
		post(url.Values{"prefix": {"0"}}),
		post(url.Values{"prefix": {"32"}}),
		post(url.Values{"prefix": {"x"}}),
		post(url.Values{"gw": {"10.0.1.1"}}),
		post(url.Values{"gw": {"10.0.0.0"}}),
		post(url.Values{"metric": {"ten"}}),
		post(url.Values{"ip_assignment": {"random"}}),
		post(url.Values{"uuid": {"nw-taken"}}),
		post(url.Values{"uuid": {"nw-BAD"}}),
	)
	e.rejects(404, "163", post(url.Values{"dc_network": {"dcn-nothere"}}))
	e.rejects(400, "165",
		post(url.Values{"dc_network": {closed}}),
		post(url.Values{"dc_network": {ptOnly}}),
		post(url.Values{"network_mode": {""}}),
		post(url.Values{"network_mode": {"vlan"}}),
	)
	e.rejects(500, "170",
		post(url.Values{"service_dhcp": {"10.0.1.5"}}),
		post(url.Values{"service_dns": {"10.0.0.255"}}),
		post(url.Values{"service_gateway": {"gw"}}),
	)
	e.rejects(400, "143", post(url.Values{"service_type": {"bogus"}}))
}

func TestNetworkList(t *testing.T) {
	e := newEnv(t)
	dcA, dcB := e.dcNetwork("dca"), e.dcNetwork("dcb")
	n1 := e.network(dcA, url.Values{"display_name": {"one"}, "service_dhcp": {""}})["id"]
	n2 := e.network(dcB, url.Values{"display_name": {"two"}})["id"]
	other := e.do(asOther("POST", "/networks.json", url.Values{"dc_network": {dcA}, "network": {"10.9.0.0"}, "network_mode": {"passthrough"}})).ok().obj()["id"]

	ids := func(path string, account *string) []any {
		r := e.do(req{method: "GET", path: path, account: account})
		_, items := r.envelope()
		out := []any{}
		for _, it := range items {
			out = append(out, it["id"])
		}
		return out
	}
	wantEq(t, "mine, newest first", ids("/networks.json", nil), []any{n2, n1})
	wantEq(t, "other account", ids("/networks.json", acct(otherAccount)), []any{other})
	wantEq(t, "operator", ids("/networks.json", acct("")), []any{other, n2, n1})
	wantEq(t, "operator account_id", ids("/networks.json?account_id="+otherAccount, acct("")), []any{other})
	wantEq(t, "has_service", ids("/networks.json?has_service=dhcp", nil), []any{n1})
	wantEq(t, "has_service none", ids("/networks.json?has_service=dns", nil), []any{})
	wantEq(t, "dc_network", ids("/networks.json?dc_network="+dcB, nil), []any{n2})
	wantEq(t, "display_name", ids("/networks.json?display_name=one", nil), []any{n1})
	wantEq(t, "service_type", ids("/networks.json?service_type=std", nil), []any{n2, n1})
	wantEq(t, "paging", ids("/networks.json?limit=1&start=1", nil), []any{n1})
	wantEq(t, "sort", ids("/networks.json?sort_by=display_name.asc", nil), []any{n1, n2})
	e.rejects(400, "143", req{method: "GET", path: "/networks.json?service_type=bogus"}, req{method: "GET", path: "/networks.json?start=x"})

	y := string(e.get("/networks.yml?display_name=one").ok().body)
	if !strings.HasPrefix(y, "---\n- :total: 1\n  :start: 0\n  :limit: 250\n  :results:\n  - :id: "+n1.(string)+"\n") {
		t.Fatalf("list yaml = %q", y)
	}
}

func TestNetworkUpdateAndDelete(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{"dhcp_range": {"default"}, "service_dhcp": {""}, "editable": {"true"}})["id"].(string)
	keep := e.network(dcn, url.Values{"network": {"10.1.0.0"}, "dhcp_range": {"default"}})["id"].(string)
	keepVif, _ := e.newVif(keep)
	before := e.get("/networks/" + keep + ".json").ok().obj()

	u := e.put("/networks/"+nw+".json", url.Values{"display_name": {"renamed"}, "prefix": {"8"}}).ok().obj()
	if u["display_name"] != "renamed" || u["prefix"] != 24.0 {
		t.Fatalf("updated = %v", u)
	}
	e.rejects(404, "100",
		asOther("GET", "/networks/"+nw+".json", nil),
		asOther("PUT", "/networks/"+nw+".json", url.Values{"display_name": {"x"}}),
		asOther("DELETE", "/networks/"+nw+".json", nil),
		req{method: "GET", path: "/networks/nw-nothere.json"},
	)
	e.rejects(400, "143", req{method: "GET", path: "/networks/vif-12345678.json"}, req{method: "DELETE", path: "/networks/nw.json"})

	// Things hanging off the network: a bare vif, a reservation, a service,
	// another network's NAT reference, a NAT route from a handle.
	vif, _ := e.newVif(nw)
	e.put("/networks/"+nw+"/dhcp/reserve.json", url.Values{"ipaddr": {"10.0.0.100"}}).ok()
	_, err := e.api.commit(context.Background(), func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		var k proto.Network
		m, err := tx.Get(proto.KindNetwork, keep, &k)
		if err != nil {
			return nil, err
		}
		k.NatNetworkID = &nw
		b.Update(proto.KindNetwork, keep, m.ModifyIndex, &k)
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	wantEq(t, "nat ref", e.get("/networks/" + keep + ".json").ok().obj()["nat_network_id"], nw)
	pool := e.post("/ip_pools.json", url.Values{"dc_networks[]": {dcn}}).ok().obj()["id"].(string)
	h := e.put("/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {keep}}).ok().obj()["ip_handle_id"].(string)
	e.post("/network_vifs/"+vif+"/external_ip.json", url.Values{"ip_handle_id": {h}}).ok()

	// An instance's vif on the network blocks deletion (upstream deleted anyway).
	instVif := "vif-instvif1"
	inst := "i-instance"
	e.commitRecords(proto.KindNetworkVif, instVif, proto.NetworkVif{ID: instVif, AccountID: testAccount, NetworkID: &nw, InstanceID: &inst, SecurityGroups: []string{}})
	e.rejects(400, "143", req{method: "DELETE", path: "/networks/" + nw + ".json"})
	e.rejects(400, "143", req{method: "DELETE", path: "/networks/" + nw + "/vifs/" + instVif + ".json"})
	_, err = e.api.commit(context.Background(), func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		b.Delete(proto.KindNetworkVif, instVif, 0)
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// So does an IP handle taken from it.
	h2 := e.put("/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {nw}}).ok().obj()["ip_handle_id"].(string)
	e.rejects(400, "143", req{method: "DELETE", path: "/networks/" + nw + ".json"})
	e.put("/ip_pools/"+pool+"/release.json", url.Values{"ip_handle_id": {h2}}).ok()

	wantEq(t, "delete", e.del("/networks/"+nw+".json").ok().arr(), []any{nw})
	e.get("/networks/"+nw+".json").apiError(404, "100")
	e.get("/network_vifs/"+vif+".json").apiError(404, "100")

	// Everything of the network is gone; the other network is intact but
	// for its NAT reference, and the handle is free again.
	for _, l := range records[proto.IPLease](e, proto.KindIPLease) {
		if l.NetworkID == nw {
			t.Errorf("lease left: %+v", l)
		}
	}
	wantEq(t, "vifs", e.count(proto.KindNetworkVif), 1)
	wantEq(t, "services", e.count(proto.KindNetworkService), 0)
	wantEq(t, "routes", e.count(proto.KindNetworkRoute), 0)
	macs := 0
	for _, c := range records[proto.UniqueName](e, proto.KindUniqueName) {
		if strings.HasPrefix(c.ID, macClaimScope) {
			macs++
		}
	}
	wantEq(t, "mac claims", macs, 1)
	after := e.get("/networks/" + keep + ".json").ok().obj()
	wantEq(t, "nat cleared", after["nat_network_id"], nil)
	wantEq(t, "keep vif", e.get("/network_vifs/" + keepVif + ".json").ok().obj()["network_id"], keep)
	wantEq(t, "keep ranges", after["ipv4_network"], before["ipv4_network"])
	wantEq(t, "handle free", e.get("/ip_handles/" + h + ".json").ok().obj()["network_vif"], nil)
}

func TestDhcpRanges(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{"editable": {"true"}})["id"].(string)
	fixed := e.network(dcn, url.Values{"network": {"10.1.0.0"}})["id"].(string)
	path := "/networks/" + nw + "/dhcp_ranges"
	change := func(op, b, en string) {
		t.Helper()
		r := e.put(path+"/"+op+".json", url.Values{"range_begin": {b}, "range_end": {en}}).ok().obj()
		if len(r) != 0 {
			t.Fatalf("%s answered %v, want {}", op, r)
		}
	}
	ranges := func() any { return e.get(path + ".json").ok().arr() }

	change("add", "10.0.0.10", "10.0.0.20")
	change("add", "10.0.0.21", "10.0.0.30") // adjacent: merged
	change("add", "10.0.0.50", "10.0.0.60")
	change("add", "10.0.0.55", "10.0.0.65") // overlapping: merged
	wantEq(t, "after add", ranges(), []any{[]any{"10.0.0.10", "10.0.0.30"}, []any{"10.0.0.50", "10.0.0.65"}})
	change("remove", "10.0.0.15", "10.0.0.18") // split
	change("remove", "10.0.0.60", "10.0.0.99") // trim
	wantEq(t, "after remove", ranges(), []any{[]any{"10.0.0.10", "10.0.0.14"}, []any{"10.0.0.19", "10.0.0.30"}, []any{"10.0.0.50", "10.0.0.59"}})
	if y := string(e.get(path + ".yml").ok().body); y != "---\n- - 10.0.0.10\n  - 10.0.0.14\n- - 10.0.0.19\n  - 10.0.0.30\n- - 10.0.0.50\n  - 10.0.0.59\n" {
		t.Fatalf("yaml = %q", y)
	}
	if y := string(e.put(path+"/add.yml", url.Values{"range_begin": {"10.0.0.1"}, "range_end": {"10.0.0.1"}}).ok().body); y != "--- {}\n" {
		t.Fatalf("add yaml = %q", y)
	}
	change("remove", "10.0.0.0", "10.0.0.255")
	wantEq(t, "all removed", ranges(), []any{})

	e.rejects(400, "164",
		req{method: "PUT", path: "/networks/" + fixed + "/dhcp_ranges/add.json", form: url.Values{"range_begin": {"10.1.0.1"}, "range_end": {"10.1.0.9"}}},
		req{method: "PUT", path: "/networks/" + fixed + "/dhcp_ranges/remove.json", form: url.Values{"range_begin": {"10.1.0.1"}, "range_end": {"10.1.0.9"}}},
	)
	for _, op := range []string{"add", "remove"} {
		e.rejects(400, "143",
			req{method: "PUT", path: path + "/" + op + ".json", form: url.Values{"range_end": {"10.0.0.9"}}},
			req{method: "PUT", path: path + "/" + op + ".json", form: url.Values{"range_begin": {"10.0.0.1"}, "range_end": {"x"}}},
			req{method: "PUT", path: path + "/" + op + ".json", form: url.Values{"range_begin": {"10.0.1.1"}, "range_end": {"10.0.1.9"}}},
			req{method: "PUT", path: path + "/" + op + ".json", form: url.Values{"range_begin": {"10.0.0.9"}, "range_end": {"10.0.0.1"}}},
		)
	}
	e.rejects(404, "100", asOther("GET", path+".json", nil), asOther("PUT", path+"/add.json", url.Values{"range_begin": {"10.0.0.1"}, "range_end": {"10.0.0.2"}}))
}

func TestDhcpReserveRelease(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{})["id"].(string)
	e.put("/networks/"+nw+"/dhcp_ranges/add.json", url.Values{"range_begin": {"10.0.0.1"}, "range_end": {"10.0.0.9"}}).apiError(400, "164")
	// Ranges on a non-editable network come from dhcp_range=default only.
	nw = e.network(dcn, url.Values{"network": {"10.0.0.0"}, "prefix": {"28"}, "dhcp_range": {"default"}})["id"].(string)
	path := "/networks/" + nw + "/dhcp/"

	if r := e.put(path+"reserve.json", url.Values{"ipaddr": {"10.0.0.1"}}).ok().obj(); len(r) != 0 {
		t.Fatalf("reserve = %v", r)
	}
	e.put(path+"reserve.json", url.Values{"ipaddr[]": {"10.0.0.2", "10.0.0.4", "10.0.0.2"}}).ok()
	vif, ip := e.newVif(nw)
	wantEq(t, "skips reserved", ip, "10.0.0.3")
	var reserved int
	for _, l := range records[proto.IPLease](e, proto.KindIPLease) {
		if l.Type == proto.LeaseReserved {
			reserved++
		}
	}
	wantEq(t, "reserved leases", reserved, 3)

	e.rejects(400, "177",
		req{method: "PUT", path: path + "reserve.json", form: url.Values{"ipaddr": {"10.0.0.1"}}},
		req{method: "PUT", path: path + "reserve.json", form: url.Values{"ipaddr[]": {"10.0.0.9", "10.0.0.3"}}},
	)
	e.rejects(400, "178",
		req{method: "PUT", path: path + "reserve.json", form: url.Values{"ipaddr": {"10.0.0.16"}}},
		req{method: "PUT", path: path + "release.json", form: url.Values{"ipaddr": {"192.168.0.1"}}},
	)
	e.rejects(400, "176",
		req{method: "PUT", path: path + "reserve.json", form: url.Values{"ipaddr": {"10.0.0.300"}}},
		req{method: "PUT", path: path + "release.json", form: url.Values{"ipaddr": {"x"}}},
	)
	e.rejects(400, "143",
		req{method: "PUT", path: path + "reserve.json", form: url.Values{}},
		req{method: "PUT", path: path + "release.json", form: url.Values{}},
	)
	e.rejects(404, "100", asOther("PUT", path+"reserve.json", url.Values{"ipaddr": {"10.0.0.7"}}))

	// Release removes reservations only: the vif keeps its address.
	e.put(path+"release.json", url.Values{"ipaddr[]": {"10.0.0.1", "10.0.0.3", "10.0.0.8"}}).ok()
	wantEq(t, "vif kept", e.get("/network_vifs/" + vif + ".json").ok().obj()["ipv4_address"], "10.0.0.3")
	e.put(path+"reserve.json", url.Values{"ipaddr": {"10.0.0.1"}}).ok()
}

// TestIPAllocationOrder replays the Incremental scheduler's spec cases
// (agents.md §4.4) on 192.168.0.0/24.
func TestIPAllocationOrder(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	n := 0
	netWith := func(extra url.Values, ranges ...[2]string) string {
		t.Helper()
		n++
		f := url.Values{"network": {"192.168.0.0"}, "editable": {"true"}, "uuid": {"nw-order" + string(rune('a'+n))}}
		for k, v := range extra {
			f[k] = v
		}
		id := e.network(dcn, f)["id"].(string)
		for _, r := range ranges {
			e.put("/networks/"+id+"/dhcp_ranges/add.json", url.Values{"range_begin": {r[0]}, "range_end": {r[1]}}).ok()
		}
		return id
	}
	alloc := func(nw string, k int) ([]string, []string) {
		t.Helper()
		var ids, ips []string
		for range k {
			id, ip := e.newVif(nw)
			ids, ips = append(ids, id), append(ips, strings.TrimPrefix(ip, "192.168.0."))
		}
		return ids, ips
	}
	release := func(nw string, ids []string, ips []string, which ...string) {
		t.Helper()
		for _, w := range which {
			for i, ip := range ips {
				if ip == w {
					e.del("/networks/" + nw + "/vifs/" + ids[i] + ".json").ok()
				}
			}
		}
	}

	// No DHCP range: out of capacity.
	nw := netWith(nil)
	e.rejects(400, "130", req{method: "POST", path: "/networks/" + nw + "/vifs.json", form: url.Values{}})

	// Default range: .1 first.
	nw = netWith(url.Values{"dhcp_range": {"default"}})
	_, ips := alloc(nw, 1)
	wantEq(t, "default", ips, []string{"1"})

	// Ranges .3–.5 and .10–.12, three assigned: next is .10.
	nw = netWith(nil, [2]string{"192.168.0.3", "192.168.0.5"}, [2]string{"192.168.0.10", "192.168.0.12"})
	_, ips = alloc(nw, 4)
	wantEq(t, "two ranges", ips, []string{"3", "4", "5", "10"})

	// Gateway inside the range is skipped.
	nw = netWith(url.Values{"gw": {"192.168.0.1"}}, [2]string{"192.168.0.1", "192.168.0.5"})
	_, ips = alloc(nw, 1)
	wantEq(t, "gw .1", ips, []string{"2"})
	nw = netWith(url.Values{"gw": {"192.168.0.3"}}, [2]string{"192.168.0.1", "192.168.0.5"})
	_, ips = alloc(nw, 3)
	wantEq(t, "gw .3", ips, []string{"1", "2", "4"})

	// Wraparound: continue after the newest lease, lowest free first.
	nw = netWith(nil, [2]string{"192.168.0.1", "192.168.0.5"}, [2]string{"192.168.0.11", "192.168.0.15"})
	ids, ips := alloc(nw, 10)
	release(nw, ids, ips, "12", "3", "5")
	_, ips = alloc(nw, 3)
	wantEq(t, "wraparound", ips, []string{"3", "5", "12"})
	e.rejects(400, "130", req{method: "POST", path: "/networks/" + nw + "/vifs.json", form: url.Values{}})

	// Replaced range.
	nw = netWith(nil, [2]string{"192.168.0.10", "192.168.0.15"})
	alloc(nw, 3)
	e.put("/networks/"+nw+"/dhcp_ranges/remove.json", url.Values{"range_begin": {"192.168.0.10"}, "range_end": {"192.168.0.15"}}).ok()
	e.put("/networks/"+nw+"/dhcp_ranges/add.json", url.Values{"range_begin": {"192.168.0.4"}, "range_end": {"192.168.0.6"}}).ok()
	_, ips = alloc(nw, 1)
	wantEq(t, "replaced", ips, []string{"4"})

	// A released address is not reused at once.
	nw = netWith(nil, [2]string{"192.168.0.1", "192.168.0.15"})
	ids, ips = alloc(nw, 5)
	release(nw, ids, ips, "3")
	_, ips = alloc(nw, 1)
	wantEq(t, "no immediate reuse", ips, []string{"6"})

	// ip_assignment=desc walks downwards and wraps to the top.
	nw = netWith(url.Values{"ip_assignment": {"desc"}}, [2]string{"192.168.0.1", "192.168.0.5"})
	ids, ips = alloc(nw, 3)
	wantEq(t, "desc", ips, []string{"5", "4", "3"})
	release(nw, ids, ips, "5")
	_, ips = alloc(nw, 3)
	wantEq(t, "desc wrap", ips, []string{"2", "1", "5"})
}

func TestNetworkVifsOfNetwork(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{"dhcp_range": {"default"}})["id"].(string)
	nw2 := e.network(dcn, url.Values{"network": {"10.1.0.0"}, "dhcp_range": {"default"}})["id"].(string)
	base := "/networks/" + nw + "/vifs"

	v := e.post(base+".json", nil).ok().obj()
	id := v["id"].(string)
	if !strings.HasPrefix(id, "vif-") || v["uuid"] != id || v["ipv4_address"] != "10.0.0.1" || v["nat_ipv4_address"] != nil ||
		v["network_id"] != nw || v["instance_id"] != nil || !macPattern.MatchString(v["mac_addr"].(string)) {
		t.Fatalf("vif = %v", v)
	}
	wantEq(t, "groups", v["security_groups"], []any{})
	wantEq(t, "monitors", v["network_monitors"], []any{})
	wantEq(t, "leases", v["ip_leases"], []any{map[string]any{"ipv4": "10.0.0.1", "network_id": nw, "ip_handle": nil}})
	y := string(e.get(base + "/" + id + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+id+"\n:uuid: "+id+"\n:ipv4_address: 10.0.0.1\n:nat_ipv4_address:\n:network_id: "+nw+"\n:instance_id:\n:security_groups: []\n:mac_addr: 52:54:00:") ||
		!strings.HasSuffix(y, "\n:network_monitors: []\n:ip_leases:\n- :ipv4: 10.0.0.1\n  :network_id: "+nw+"\n  :ip_handle:\n") {
		t.Fatalf("vif yaml = %q", y)
	}
	id2, _ := e.newVif(nw)
	other, _ := e.newVif(nw2)

	total, items := e.get(base + ".json").envelope()
	if total != 2 || items[0]["id"] != id2 || items[1]["id"] != id {
		t.Fatalf("vifs = %d %v", total, items)
	}
	wantEq(t, "show", e.get(base + "/" + id + ".json").ok().obj()["mac_addr"], v["mac_addr"])

	e.rejects(404, "144",
		req{method: "GET", path: base + "/" + other + ".json"},
		req{method: "DELETE", path: base + "/" + other + ".json"},
	)
	e.rejects(404, "100",
		req{method: "GET", path: base + "/vif-nothere.json"},
		asOther("GET", base+".json", nil),
		asOther("POST", base+".json", url.Values{}),
		asOther("GET", "/network_vifs/"+id+".json", nil),
	)
	e.rejects(400, "143", req{method: "GET", path: base + "/sg-12345678.json"})

	otherNet := e.do(asOther("POST", "/networks.json", url.Values{"dc_network": {dcn}, "network": {"10.9.0.0"}, "network_mode": {"securitygroup"}, "dhcp_range": {"default"}})).ok().obj()["id"].(string)

	// Detach: the lease goes, the MAC stays; attach elsewhere.
	d := e.put(base+"/"+id+"/detach.json", nil).ok().obj()
	if d["network_id"] != nil || d["ipv4_address"] != nil || d["mac_addr"] != v["mac_addr"] {
		t.Fatalf("detached = %v", d)
	}
	wantEq(t, "detached leases", d["ip_leases"], []any{})
	e.rejects(500, "147",
		req{method: "PUT", path: base + "/" + id + "/detach.json", form: url.Values{}},
		req{method: "PUT", path: base + "/" + other + "/detach.json", form: url.Values{}},
	)
	e.rejects(500, "146",
		req{method: "PUT", path: base + "/vif-nothere/attach.json", form: url.Values{}},
		req{method: "PUT", path: base + "/bogus/attach.json", form: url.Values{}},
		req{method: "PUT", path: base + "/vif-nothere/detach.json", form: url.Values{}},
		asOther("PUT", "/networks/"+otherNet+"/vifs/"+id+"/attach.json", url.Values{}),
	)
	e.rejects(500, "145", req{method: "PUT", path: base + "/" + other + "/attach.json", form: url.Values{}})
	a := e.put("/networks/"+nw2+"/vifs/"+id+"/attach.json", nil).ok().obj()
	if a["network_id"] != nw2 || a["ipv4_address"] != "10.1.0.2" {
		t.Fatalf("attached = %v", a)
	}
	e.rejects(500, "145", req{method: "PUT", path: "/networks/" + nw + "/vifs/" + id + "/attach.json", form: url.Values{}})
	// A full network refuses an attach.
	full := e.network(dcn, url.Values{"network": {"10.2.0.0"}})["id"].(string)
	e.put("/networks/"+nw2+"/vifs/"+id+"/detach.json", nil).ok()
	e.rejects(400, "130", req{method: "PUT", path: "/networks/" + full + "/vifs/" + id + "/attach.json", form: url.Values{}})

	// Delete: vif, lease and MAC claim go.
	leases := e.count(proto.KindIPLease)
	claims := e.count(proto.KindUniqueName)
	if r := e.del(base + "/" + id2 + ".json").ok().obj(); len(r) != 0 {
		t.Fatalf("delete = %v", r)
	}
	wantEq(t, "leases", e.count(proto.KindIPLease), leases-1)
	wantEq(t, "claims", e.count(proto.KindUniqueName), claims-1)
	e.get(base+"/"+id2+".json").apiError(404, "100")
}

func TestNetworkServices(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	fixed := e.network(dcn, url.Values{"network": {"10.1.0.0"}, "service_dhcp": {""}})
	fixedVif := fixed["network_services"].([]any)[0].(map[string]any)["network_vif_id"].(string)
	nw := e.network(dcn, url.Values{"editable": {"true"}, "dhcp_range": {"default"}, "service_dhcp": {"10.0.0.2"}})["id"].(string)
	base := "/networks/" + nw + "/services"

	e.rejects(400, "164",
		req{method: "POST", path: "/networks/" + fixed["id"].(string) + "/services.json", form: url.Values{"name": {"ntp"}}},
		req{method: "DELETE", path: "/networks/" + fixed["id"].(string) + "/services.json?name=dhcp&vif_id=" + fixedVif},
	)
	total, items := e.get(base + ".json").envelope()
	if total != 1 || items[0]["name"] != "dhcp" || items[0]["address"] != "10.0.0.2" {
		t.Fatalf("services = %d %v", total, items)
	}
	dhcpVif := items[0]["network_vif_id"].(string)

	// On an existing service address: shares the vif.
	s := e.post(base+".json", url.Values{"name": {"ntp"}, "ipv4": {"10.0.0.2"}, "incoming_port": {"123"}}).ok().obj()
	if s["network_vif_id"] != dhcpVif || s["incoming_port"] != 123.0 || s["outgoing_port"] != nil || s["address"] != "10.0.0.2" {
		t.Fatalf("ntp = %v", s)
	}
	// On a new address: a new service vif.
	s = e.post(base+".json", url.Values{"name": {"dns"}, "ipv4": {"10.0.0.9"}, "incoming_port": {"53"}}).ok().obj()
	dnsVif := s["network_vif_id"].(string)
	if dnsVif == dhcpVif || s["address"] != "10.0.0.9" {
		t.Fatalf("dns = %v", s)
	}
	// Without an address: the next dynamic one.
	s = e.post(base+".json", url.Values{"name": {"metadata"}}).ok().obj()
	wantEq(t, "dynamic", s["address"], "10.0.0.1")
	bare, bareIP := e.newVif(nw)

	e.rejects(400, "177", req{method: "POST", path: base + ".json", form: url.Values{"name": {"x"}, "ipv4": {bareIP}}})
	e.rejects(400, "178", req{method: "POST", path: base + ".json", form: url.Values{"name": {"x"}, "ipv4": {"10.0.1.1"}}})
	e.rejects(400, "176", req{method: "POST", path: base + ".json", form: url.Values{"name": {"x"}, "ipv4": {"10.0.0"}}})
	e.rejects(400, "110",
		req{method: "POST", path: base + ".json", form: url.Values{"ipv4": {"10.0.0.50"}}},
		req{method: "POST", path: base + ".json", form: url.Values{"name": {"x"}, "incoming_port": {"70000"}}},
		req{method: "POST", path: base + ".json", form: url.Values{"name": {"x"}, "outgoing_port": {"p"}}},
		req{method: "POST", path: base + ".json", form: url.Values{"name": {"ntp"}, "ipv4": {"10.0.0.2"}}},
	)
	e.rejects(404, "172",
		req{method: "DELETE", path: base + ".json?name=ntp&vif_id=" + dnsVif},
		req{method: "DELETE", path: base + ".json?name=nothere&vif_id=" + dhcpVif},
		req{method: "DELETE", path: base + ".json?name=ntp&vif_id=" + bare},
	)
	e.rejects(404, "100", asOther("GET", base+".json", nil), asOther("POST", base+".json", url.Values{"name": {"x"}}))

	total, _ = e.get(base + ".json").envelope()
	wantEq(t, "services", total, 4)
	wantEq(t, "network doc services", len(e.get("/networks/" + nw + ".json").ok().obj()["network_services"].([]any)), 4)

	// Deleting one of two services keeps the shared vif; the last one takes it.
	if r := e.del(base + ".json?name=ntp&vif_id=" + dhcpVif).ok().obj(); len(r) != 0 {
		t.Fatalf("delete = %v", r)
	}
	e.get("/network_vifs/" + dhcpVif + ".json").ok()
	e.del(base + ".json?name=dns&vif_id=" + dnsVif).ok()
	e.get("/network_vifs/"+dnsVif+".json").apiError(404, "100")
	for _, l := range records[proto.IPLease](e, proto.KindIPLease) {
		if l.IPv4 == "10.0.0.9" {
			t.Fatalf("lease of the removed service vif left: %+v", l)
		}
	}
	total, _ = e.get(base + ".json").envelope()
	wantEq(t, "services", total, 2)
	// Deleting a service vif takes its services along.
	e.del("/networks/" + nw + "/vifs/" + dhcpVif + ".json").ok()
	total, items = e.get(base + ".json").envelope()
	if total != 1 || items[0]["name"] != "metadata" {
		t.Fatalf("services = %v", items)
	}
}

func TestNetworkRoutes(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	inner := e.network(dcn, url.Values{"dhcp_range": {"default"}})["id"].(string)
	outer := e.network(dcn, url.Values{"network": {"192.0.2.0"}, "dhcp_range": {"default"}})["id"].(string)
	total, _ := e.get("/networks/" + inner + "/routes.json").envelope()
	wantEq(t, "no routes", total, 0)

	vif, _ := e.newVif(inner)
	pool := e.post("/ip_pools.json", url.Values{"dc_networks[]": {dcn}}).ok().obj()["id"].(string)
	h := e.put("/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {outer}}).ok().obj()["ip_handle_id"].(string)
	e.post("/network_vifs/"+vif+"/external_ip.json", url.Values{"ip_handle_id": {h}}).ok()

	for _, nw := range []string{inner, outer} {
		total, items := e.get("/networks/" + nw + "/routes.json").envelope()
		if total != 1 {
			t.Fatalf("%s routes = %d", nw, total)
		}
		r := items[0]
		wantEq(t, "type", r["route_type"], "external-ip")
		wantEq(t, "outer", r["outer"], map[string]any{"network_id": outer, "network_vif_id": nil, "ipv4": "192.0.2.1"})
		wantEq(t, "inner", r["inner"], map[string]any{"network_id": inner, "network_vif_id": vif, "ipv4": "10.0.0.1"})
	}
	total, _ = e.get("/networks/" + inner + "/routes.json?route_type=external-ip").envelope()
	wantEq(t, "filtered", total, 1)
	total, _ = e.get("/networks/" + inner + "/routes.json?route_type=nat").envelope()
	wantEq(t, "filtered out", total, 0)
	e.rejects(404, "100", asOther("GET", "/networks/"+inner+"/routes.json", nil))
}
