package api

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// TestEveryReadRouteInBothFormats seeds one of everything through the API,
// then reads every GET route as .json and as .yml and checks that the YAML
// (Ruby-style, symbol keys) carries exactly the JSON document.
func TestEveryReadRouteInBothFormats(t *testing.T) {
	e := newEnv(t)
	op := acct("") // operator calls: no account header

	post := func(path string, form url.Values, account *string) map[string]any {
		t.Helper()
		return e.do(req{method: "POST", path: path, form: form, account: account}).ok().obj()
	}
	put := func(path string, form url.Values) {
		t.Helper()
		e.do(req{method: "PUT", path: path, form: form}).ok()
	}
	post("/dc_networks.json", url.Values{"uuid": {"dcn-f1"}, "name": {"pub"}}, op)
	e.do(req{method: "PUT", path: "/dc_networks/dcn-f1.json", form: url.Values{"allow_new_networks": {"true"}}, account: op}).ok()
	e.do(req{method: "PUT", path: "/dc_networks/dcn-f1/offering_modes/add.json", form: url.Values{"mode": {"securitygroup"}}, account: op}).ok()
	post("/networks.json", url.Values{"uuid": {"nw-f1"}, "dc_network": {"dcn-f1"}, "network": {"10.9.0.0"},
		"prefix": {"24"}, "network_mode": {"securitygroup"}, "dhcp_range": {"default"}, "gw": {"10.9.0.1"},
		"service_dhcp": {"10.9.0.2"}, "editable": {"true"}}, nil)
	vif := post("/networks/nw-f1/vifs.json", url.Values{}, nil)["id"].(string)
	post("/host_nodes.json", url.Values{"uuid": {"hn-f1"}, "node_id": {"hva.f1"}, "arch": {"x86_64"},
		"hypervisor": {"kvm"}, "offering_cpu_cores": {"8"}, "offering_memory_size": {"8192"}}, op)
	post("/storage_nodes.json", url.Values{"uuid": {"sn-f1"}, "node_id": {"sta.f1"}, "storage_type": {"iscsi"},
		"offering_disk_space_mb": {"1000"}, "ip_address": {"127.0.0.1"}}, op)
	post("/host_node_groups.json", url.Values{"uuid": {"hng-f1"}, "name": {"g"}}, op)
	e.do(req{method: "PUT", path: "/host_node_groups/hng-f1.json", form: url.Values{"host_nodes[]": {"hn-f1"}}, account: op}).ok()
	post("/storage_node_groups.json", url.Values{"uuid": {"sng-f1"}, "name": {"g"}}, op)
	post("/network_groups.json", url.Values{"uuid": {"nwg-f1"}, "name": {"g"}}, op)
	post("/backup_storages.json", url.Values{"uuid": {"bkst-f1"}, "storage_type": {"local"},
		"base_uri": {"file:///b/"}, "node_id": {"bksta.f1"}}, op)
	post("/backup_objects.json", url.Values{"uuid": {"bo-f1"}, "backup_storage_id": {"bkst-f1"},
		"size": {"1048576"}, "state": {"available"}, "checksum": {"abc"}}, nil)
	post("/images.json", url.Values{"uuid": {"wmi-f1"}, "backup_object_id": {"bo-f1"}, "account_id": {testAccount},
		"features[virtio]": {"true"}}, op)
	job := e.put("/images/wmi-f1/copy_to.json", url.Values{"destination": {"file:///elsewhere"}}).ok().obj()["uuid"].(string)
	sg := post("/security_groups.json", url.Values{"rule": {"tcp:22,22,ip4:0.0.0.0\nicmp:-1,-1,ip4:10.0.0.0/8"},
		"description": {"multi\nline: yes"}}, nil)["id"].(string)
	put("/network_vifs/"+vif+"/add_security_group.json", url.Values{"security_group_id": {sg}})
	ssh := post("/ssh_key_pairs.json", url.Values{"display_name": {"k"}}, nil)["id"].(string)
	for _, res := range []string{"images/wmi-f1", "security_groups/" + sg, "ssh_key_pairs/" + ssh, "backup_objects/bo-f1"} {
		post("/"+res+"/labels/env.json", url.Values{"value": {"prod"}}, nil)
	}
	pool := post("/ip_pools.json", url.Values{"display_name": {"p"}, "dc_networks[]": {"dcn-f1"}}, nil)["id"].(string)
	handle := e.put("/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {"nw-f1"}}).ok().obj()["ip_handle_id"].(string)
	handle2 := e.put("/ip_pools/"+pool+"/acquire.json", url.Values{"network_id": {"nw-f1"}}).ok().obj()["ip_handle_id"].(string)
	post("/network_vifs/"+vif+"/external_ip.json", url.Values{"ip_handle_id": {handle2}}, nil)

	paths := []string{
		"/accounts/" + testAccount, "/accounts/" + testAccount + "/usage",
		"/backup_objects", "/backup_objects/bo-f1", "/backup_objects/bo-f1/labels", "/backup_objects/bo-f1/labels/env",
		"/backup_storages", "/backup_storages/bkst-f1",
		"/dc_networks", "/dc_networks/dcn-f1", "/dc_networks/dcn-f1/offering_modes",
		"/host_nodes", "/host_nodes/hn-f1", "/storage_nodes", "/storage_nodes/sn-f1",
		"/host_node_groups", "/host_node_groups/hng-f1", "/storage_node_groups", "/storage_node_groups/sng-f1",
		"/network_groups", "/network_groups/nwg-f1",
		"/images", "/images/wmi-f1", "/images/wmi-f1/labels", "/images/wmi-f1/labels/env",
		"/ip_pools", "/ip_pools/" + pool, "/ip_pools/" + pool + "/ip_handles", "/ip_handles/" + handle,
		"/jobs", "/jobs/" + job,
		"/networks", "/networks/nw-f1", "/networks/nw-f1/dhcp_ranges", "/networks/nw-f1/routes",
		"/networks/nw-f1/services", "/networks/nw-f1/vifs", "/networks/nw-f1/vifs/" + vif,
		"/network_vifs", "/network_vifs/" + vif, "/network_vifs/" + vif + "/external_ip",
		"/security_groups", "/security_groups/" + sg, "/security_groups/" + sg + "/labels",
		"/ssh_key_pairs", "/ssh_key_pairs/" + ssh, "/ssh_key_pairs/" + ssh + "/labels/env",
		// error documents too
		"/networks/nw-nothere", "/images/bad-id",
	}
	compared := 0
	for _, p := range paths {
		account := acct(testAccount)
		if strings.HasPrefix(p, "/host_node_groups") || strings.HasPrefix(p, "/storage_node_groups") || strings.HasPrefix(p, "/network_groups") {
			account = op // groups created by the operator belong to the system account
		}
		js := e.do(req{method: "GET", path: p + ".json", account: account})
		ym := e.do(req{method: "GET", path: p + ".yml", account: account})
		if js.status != ym.status {
			t.Errorf("%s: status json %d, yml %d", p, js.status, ym.status)
			continue
		}
		if !strings.HasPrefix(string(ym.body), "---") {
			t.Errorf("%s: yaml does not start with ---: %q", p, ym.body)
			continue
		}
		var fromJSON any
		if err := json.Unmarshal(js.body, &fromJSON); err != nil {
			t.Errorf("%s: json: %v", p, err)
			continue
		}
		var fromYAML any
		if err := yaml.Unmarshal(ym.body, &fromYAML); err != nil {
			t.Errorf("%s: yaml: %v\n%s", p, err, ym.body)
			continue
		}
		if a, b := normalize(t, fromJSON, false), normalize(t, fromYAML, true); !reflect.DeepEqual(a, b) {
			t.Errorf("%s: yaml and json differ\njson: %v\nyaml: %v", p, a, b)
			continue
		}
		if js.status == 200 && len(js.body) < 3 {
			t.Errorf("%s: empty document %s", p, js.body)
		}
		compared++
	}
	if compared != len(paths) {
		t.Fatalf("compared %d of %d routes", compared, len(paths))
	}
}

// normalize maps both decodings onto one shape: YAML symbol keys lose their
// colon, numbers become float64, times become RFC 3339 strings in UTC.
func normalize(t *testing.T, v any, fromYAML bool) any {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, val := range x {
			if fromYAML {
				if !strings.HasPrefix(k, ":") {
					t.Errorf("yaml key %q is not a Ruby symbol", k)
				}
				k = strings.TrimPrefix(k, ":")
			}
			out[k] = normalize(t, val, fromYAML)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, val := range x {
			out[i] = normalize(t, val, fromYAML)
		}
		return out
	case int:
		return float64(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case string:
		if ts, err := time.Parse("2006-01-02 15:04:05.999999999 Z", x); err == nil {
			return ts.UTC().Format(time.RFC3339)
		}
		return x
	case nil, bool, float64:
		return x
	}
	return fmt.Sprintf("%T:%v", v, v)
}
