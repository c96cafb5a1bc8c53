package api

import (
	"net/url"
	"strings"
	"testing"
)

// Account isolation (spec §1.4: another account's record is "not found",
// 404/100; lists are bound to the caller). Account B walks every route
// against account A's world.

// ownedResources are the resources (first path segment) whose records
// belong to an account. The others — host and storage nodes, DC networks,
// backup storages, node and network groups — are the operator's
// infrastructure, public by the spec (find_by_public_uuid), which mussel
// drives with its account header.
var ownedResources = map[string]bool{
	"backup_objects": true, "images": true, "instances": true, "ip_handles": true, "ip_pools": true,
	"networks": true, "network_vifs": true, "security_groups": true, "ssh_key_pairs": true, "jobs": true,
	"accounts": true,
}

// privateIDs are A's ids that B must never see.
func (w *world) privateIDs() []string {
	var out []string
	for _, k := range []string{"backup_objects", "images", "instances", "ip_handles", "ip_pools", "networks",
		"security_groups", "ssh_key_pairs", "jobs", "{vif_id}", "{monitor_id}"} {
		out = append(out, w.ids[k])
	}
	return out
}

// isolationForm gives routes that check their parameters before the
// record what they need, so that the ownership check is what answers.
func isolationForm(route string) url.Values {
	switch {
	case strings.HasSuffix(route, "/labels/{name}") && (routeMethod(route) == "POST" || routeMethod(route) == "PUT"):
		return url.Values{"value": {"x"}}
	case strings.HasSuffix(route, "/labels") && (routeMethod(route) == "POST" || routeMethod(route) == "PUT"):
		return url.Values{"name[]": {"x"}, "value[]": {"y"}}
	case route == "POST /instances/{instance_id}/monitoring":
		return url.Values{"title": {"t"}, "enabled": {"true"}}
	}
	return url.Values{}
}

func TestAccountIsolationOnEveryRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("walks every route")
	}
	w := newWorld(t)
	b := acct(worldOther)
	private := w.privateIDs()
	members, lists := 0, 0
	for _, route := range routeOrder(w.routes()) {
		res := routeResource(route)
		hasID := strings.Contains(route, "{")
		if hasID && ownedResources[res] {
			// B addresses A's record: not found, and nothing changes.
			idx := w.appliedIndex()
			r := w.send(req{method: routeMethod(route), path: w.fill(route, nil) + ".json", form: isolationForm(route), account: b}, "")
			if !r.is(expect{404, "100"}) {
				t.Errorf("%s as another account: got %d %.200s; want 404/100", route, r.status, r.body)
			}
			if w.appliedIndex() != idx {
				t.Errorf("%s as another account changed the state", route)
			}
			members++
			continue
		}
		if routeMethod(route) != "GET" {
			continue
		}
		// Any read B may make (lists, and the public records) shows none of
		// A's ids — also when B asks for A's records by filter.
		for _, q := range []string{"", "account_id=" + testAccount, "id=" + w.ids["instances"][:4]} {
			r := w.send(req{method: "GET", path: w.fill(route, nil) + ".json", account: b}, q)
			if r.status != 200 {
				continue // a filter the route refuses
			}
			for _, id := range private {
				if strings.Contains(string(r.body), id) {
					t.Errorf("GET %s?%s as another account shows %s: %.300s", w.fill(route, nil), q, id, r.body)
				}
			}
			lists++
		}
	}
	if members < 80 || lists < 60 {
		t.Errorf("walked %d member routes and %d reads: the world lacks routes", members, lists)
	}
	t.Logf("%d member routes answered 404/100 to another account, %d reads showed none of its ids", members, lists)
}

// TestAccountIsolationOfReferences: B names A's records as parameters of
// B's own requests. Each is refused as if A's record did not exist, and
// nothing changes.
func TestAccountIsolationOfReferences(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	w := newWorld(t)
	b := acct(worldOther)
	as := func(method, path string, form url.Values) map[string]any {
		t.Helper()
		return w.do(req{method: method, path: path, form: form, account: b}).ok().obj()
	}
	bNet := as("POST", "/networks.json", url.Values{"dc_network": {"dcn-w1"}, "network": {"10.30.0.0"}, "prefix": {"24"},
		"network_mode": {"securitygroup"}, "dhcp_range": {"default"}})["id"].(string)
	bVif := as("POST", "/networks/"+bNet+"/vifs.json", url.Values{})["id"].(string)
	bPool := as("POST", "/ip_pools.json", url.Values{"display_name": {"b"}, "dc_networks[]": {"dcn-w1"}})["id"].(string)
	bSG := as("POST", "/security_groups.json", url.Values{})["id"].(string)
	inst := func(kv ...string) url.Values {
		f := url.Values{"image_id": {"wmi-w1"}, "hypervisor": {"kvm"}, "cpu_cores": {"1"}, "memory_size": {"256"},
			"vifs": {`{"eth0":{"network":"` + bNet + `"}}`}}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	// B's own image, so that the instance requests below fail only on the
	// reference they test.
	w.do(req{method: "POST", path: "/backup_objects.json", account: acct(""), form: url.Values{"uuid": {"bo-b1"},
		"backup_storage_id": {"bkst-w1"}, "size": {"1048576"}, "state": {"available"}, "account_id": {worldOther}}}).ok()
	w.do(req{method: "POST", path: "/images.json", account: acct(""), form: url.Values{"uuid": {"wmi-b1"},
		"backup_object_id": {"bo-b1"}, "account_id": {worldOther}, "arch": {"x86_64"}, "state": {"available"}}}).ok()
	own := func(kv ...string) url.Values { f := inst(kv...); f.Set("image_id", "wmi-b1"); return f }
	bInst := as("POST", "/instances.json", own())["id"].(string)

	cases := []struct {
		name string
		r    req
		want expect
	}{
		{"instance from A's private image", req{method: "POST", path: "/instances.json", form: inst()}, expect{400, "137"}},
		{"instance on A's network", req{method: "POST", path: "/instances.json",
			form: own("vifs", `{"eth0":{"network":"nw-w1"}}`)}, expect{404, "129"}},
		{"instance NATed through A's network", req{method: "POST", path: "/instances.json",
			form: own("vifs", `{"eth0":{"network":"`+bNet+`","nat_network":"nw-w1"}}`)}, expect{404, "129"}},
		{"B's instance given A's key pair", req{method: "PUT", path: "/instances/" + bInst + ".json",
			form: url.Values{"ssh_key_id": {w.ids["ssh_key_pairs"]}}}, expect{404, "121"}},
		{"instance in A's security group", req{method: "POST", path: "/instances.json",
			form: own("vifs", `{"eth0":{"network":"`+bNet+`","security_groups":"`+w.ids["security_groups"]+`"}}`)}, expect{404, "100"}},
		{"instance with A's key pair", req{method: "POST", path: "/instances.json",
			form: own("ssh_key_id", w.ids["ssh_key_pairs"])}, expect{404, "121"}},
		{"B's vif into A's group", req{method: "PUT", path: "/network_vifs/" + bVif + "/add_security_group.json",
			form: url.Values{"security_group_id": {w.ids["security_groups"]}}}, expect{404, "100"}},
		{"B's rule referencing A's group", req{method: "PUT", path: "/security_groups/" + bSG + ".json",
			form: url.Values{"rule": {"tcp:22,22," + w.ids["security_groups"]}}}, expect{400, "142"}},
		{"A's IP handle on B's vif", req{method: "POST", path: "/network_vifs/" + bVif + "/external_ip.json",
			form: url.Values{"ip_handle_id": {w.ids["ip_handles"]}}}, expect{404, "100"}},
		{"B's pool acquiring on A's network", req{method: "PUT", path: "/ip_pools/" + bPool + "/acquire.json",
			form: url.Values{"network_id": {"nw-w1"}}}, expect{404, "129"}},
		{"B's pool releasing A's handle", req{method: "PUT", path: "/ip_pools/" + bPool + "/release.json",
			form: url.Values{"ip_handle_id": {w.ids["ip_handles"]}}}, expect{404, "183"}},
		{"image from A's backup object", req{method: "POST", path: "/images.json",
			form: url.Values{"backup_object_id": {"bo-w1"}}}, expect{403, "105"}},
	}
	for _, c := range cases {
		c.r.account = b
		idx := w.appliedIndex()
		r := w.send(c.r, "")
		if !r.is(c.want) {
			t.Errorf("%s: got %d %.300s; want %d/%s", c.name, r.status, r.body, c.want.status, c.want.code)
		}
		if w.appliedIndex() != idx {
			t.Errorf("%s: the state changed", c.name)
		}
	}
}
