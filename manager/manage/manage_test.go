package manage

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

const hostDoc = `{"id":"hn-demo1","uuid":"hn-demo1","node_id":"hva.demo1","arch":"x86_64","hypervisor":"dummy","display_name":"demo1","offering_cpu_cores":4,"offering_memory_size":4096,"offering_disk_space_mb":0,"scheduling_enabled":true,"created_at":"2013-05-15T06:21:36Z","updated_at":"2013-05-15T06:21:36Z","status":"online"}`

const dcnDoc = `{"id":"dcn-public","uuid":"dcn-public","name":"public","description":"","created_at":"2013-05-15T06:21:36Z","updated_at":"2013-05-15T06:21:36Z","vlan_lease_id":null,"offering_network_modes":["securitygroup","passthrough"],"allow_new_networks":true}`

func envelopeOf(total int, items ...string) string {
	return `[{"total":` + itoa(total) + `,"start":0,"limit":250,"results":[` + strings.Join(items, ",") + `]}]`
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// want is an expected request: method, path and the form (body for
// POST/PUT, query otherwise).
type want struct {
	method, path string
	form         url.Values
}

func checkCalls(t *testing.T, got []call, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d requests, want %d: %+v", len(got), len(wants), got)
	}
	for i, w := range wants {
		g := got[i]
		if g.Method != w.method || g.Path != w.path {
			t.Errorf("request %d: got %s %s, want %s %s", i, g.Method, g.Path, w.method, w.path)
		}
		form := g.Query
		if g.Method == http.MethodPost || g.Method == http.MethodPut {
			form = g.Form
			if ct := g.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("request %d: Content-Type %q", i, ct)
			}
		}
		if form == nil {
			form = url.Values{}
		}
		wf := w.form
		if wf == nil {
			wf = url.Values{}
		}
		if !reflect.DeepEqual(form, wf) {
			t.Errorf("request %d (%s %s): form\n got %v\nwant %v", i, g.Method, g.Path, form, wf)
		}
		if h := g.Header.Get("X-VDC-Account-UUID"); h != "" {
			t.Errorf("request %d: operator call sent account header %q", i, h)
		}
	}
}

func TestCommandsSendRequests(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		replies map[string][]reply
		want    []want
	}{
		{
			name: "host add",
			args: []string{"host", "add", "hva.demo1", "--uuid", "hn-demo1", "--hypervisor", "dummy", "--display-name", "demo1",
				"--cpu-cores", "4", "--memory-size", "4096", "--disk-space", "10240", "--scheduling-enabled=false"},
			replies: map[string][]reply{"POST " + p + "host_nodes.json": {ok(hostDoc)}},
			want: []want{{"POST", p + "host_nodes.json", url.Values{
				"node_id": {"hva.demo1"}, "uuid": {"hn-demo1"}, "arch": {"x86_64"}, "hypervisor": {"dummy"},
				"display_name": {"demo1"}, "offering_cpu_cores": {"4"}, "offering_memory_size": {"4096"},
				"offering_disk_space_mb": {"10240"}, "scheduling_enabled": {"false"},
			}}},
		},
		{
			name:    "host add sends the original defaults",
			args:    []string{"host", "add", "hva.demo2"},
			replies: map[string][]reply{"POST " + p + "host_nodes.json": {ok(hostDoc)}},
			want: []want{{"POST", p + "host_nodes.json", url.Values{
				"node_id": {"hva.demo2"}, "arch": {"x86_64"}, "hypervisor": {"kvm"},
				"offering_cpu_cores": {"1"}, "offering_memory_size": {"1024"},
			}}},
		},
		{
			name:    "host show",
			args:    []string{"host", "show", "hn-demo1"},
			replies: map[string][]reply{"GET " + p + "host_nodes/hn-demo1.json": {ok(hostDoc)}},
			want:    []want{{"GET", p + "host_nodes/hn-demo1.json", nil}},
		},
		{
			name:    "host del",
			args:    []string{"host", "del", "hn-demo1"},
			replies: map[string][]reply{"DELETE " + p + "host_nodes/hn-demo1.json": {ok(`{"uuid":"hn-demo1"}`)}},
			want:    []want{{"DELETE", p + "host_nodes/hn-demo1.json", nil}},
		},
		{
			name:    "host modify sends only given flags",
			args:    []string{"host", "modify", "hn-demo1", "--scheduling-enabled=false", "--node-id", "hva.demo9"},
			replies: map[string][]reply{"PUT " + p + "host_nodes/hn-demo1.json": {ok(hostDoc)}},
			want: []want{{"PUT", p + "host_nodes/hn-demo1.json", url.Values{
				"scheduling_enabled": {"false"}, "node_id": {"hva.demo9"},
			}}},
		},
		{
			name:    "host list",
			args:    []string{"host", "list", "--param", "hypervisor=dummy"},
			replies: map[string][]reply{"GET " + p + "host_nodes.json": {ok(envelopeOf(1, hostDoc))}},
			want: []want{{"GET", p + "host_nodes.json", url.Values{
				"hypervisor": {"dummy"}, "start": {"0"}, "limit": {"100"},
			}}},
		},
		{
			name: "storage add",
			args: []string{"storage", "add", "sta.demo1", "--uuid", "sn-demo1", "--disk-space", "102400",
				"--ip-address", "192.168.0.2", "--display-name", "st1"},
			replies: map[string][]reply{"POST " + p + "storage_nodes.json": {ok(`{"id":"sn-demo1"}`)}},
			want: []want{{"POST", p + "storage_nodes.json", url.Values{
				"node_id": {"sta.demo1"}, "uuid": {"sn-demo1"}, "storage_type": {"iscsi"},
				"offering_disk_space_mb": {"102400"}, "ip_address": {"192.168.0.2"}, "display_name": {"st1"},
			}}},
		},
		{
			name:    "storage del",
			args:    []string{"storage", "del", "sn-demo1", "sn-demo2"},
			replies: map[string][]reply{"DELETE " + p + "storage_nodes/sn-demo1.json": {ok(`{}`)}, "DELETE " + p + "storage_nodes/sn-demo2.json": {ok(`{}`)}},
			want:    []want{{"DELETE", p + "storage_nodes/sn-demo1.json", nil}, {"DELETE", p + "storage_nodes/sn-demo2.json", nil}},
		},
		{
			name: "dcnetwork add with modes and allow-new-networks",
			args: []string{"dcnetwork", "add", "public", "--uuid", "dcn-public", "--description", "pub",
				"--allow-new-networks", "--mode", "securitygroup,passthrough", "--mode", "l2overlay"},
			replies: map[string][]reply{
				"POST " + p + "dc_networks.json":                              {ok(dcnDoc)},
				"PUT " + p + "dc_networks/dcn-public.json":                    {ok(dcnDoc)},
				"PUT " + p + "dc_networks/dcn-public/offering_modes/add.json": {ok(`["securitygroup","passthrough","l2overlay"]`)},
				"GET " + p + "dc_networks/dcn-public.json":                    {ok(dcnDoc)},
			},
			want: []want{
				{"POST", p + "dc_networks.json", url.Values{"name": {"public"}, "uuid": {"dcn-public"}, "description": {"pub"}}},
				{"PUT", p + "dc_networks/dcn-public.json", url.Values{"allow_new_networks": {"true"}}},
				{"PUT", p + "dc_networks/dcn-public/offering_modes/add.json", url.Values{"mode[]": {"securitygroup", "passthrough", "l2overlay"}}},
				{"GET", p + "dc_networks/dcn-public.json", nil},
			},
		},
		{
			name:    "dcnetwork add plain",
			args:    []string{"dcnetwork", "add", "mgmt"},
			replies: map[string][]reply{"POST " + p + "dc_networks.json": {ok(dcnDoc)}},
			want:    []want{{"POST", p + "dc_networks.json", url.Values{"name": {"mgmt"}}}},
		},
		{
			name:    "dcnetwork add-mode",
			args:    []string{"dcnetwork", "add-mode", "dcn-public", "l2overlay", "passthrough"},
			replies: map[string][]reply{"PUT " + p + "dc_networks/dcn-public/offering_modes/add.json": {ok(`["l2overlay"]`)}},
			want:    []want{{"PUT", p + "dc_networks/dcn-public/offering_modes/add.json", url.Values{"mode[]": {"l2overlay", "passthrough"}}}},
		},
		{
			name:    "dcnetwork del-mode",
			args:    []string{"dcnetwork", "del-mode", "dcn-public", "l2overlay"},
			replies: map[string][]reply{"PUT " + p + "dc_networks/dcn-public/offering_modes/delete.json": {ok(`[]`)}},
			want:    []want{{"PUT", p + "dc_networks/dcn-public/offering_modes/delete.json", url.Values{"mode[]": {"l2overlay"}}}},
		},
		{
			name:    "dcnetwork modify",
			args:    []string{"dcnetwork", "modify", "dcn-public", "--allow-new-networks=false"},
			replies: map[string][]reply{"PUT " + p + "dc_networks/dcn-public.json": {ok(dcnDoc)}},
			want:    []want{{"PUT", p + "dc_networks/dcn-public.json", url.Values{"allow_new_networks": {"false"}}}},
		},
		{
			name: "network add",
			args: []string{"network", "add", "--uuid", "nw-demo1", "--dc-network", "dcn-public", "--ipv4-network", "10.0.2.0",
				"--prefix", "24", "--gw", "10.0.2.1", "--network-mode", "securitygroup", "--domain-name", "vdc.local",
				"--dns", "10.0.2.2", "--dhcp", "10.0.2.2", "--metric", "10", "--display-name", "demo",
				"--description", "demo net", "--editable", "--account-id", "a-shpoolxx", "--dhcp-range", "default"},
			replies: map[string][]reply{"POST " + p + "networks.json": {ok(`{"id":"nw-demo1"}`)}},
			want: []want{{"POST", p + "networks.json", url.Values{
				"uuid": {"nw-demo1"}, "dc_network": {"dcn-public"}, "network": {"10.0.2.0"}, "prefix": {"24"},
				"gw": {"10.0.2.1"}, "network_mode": {"securitygroup"}, "domain_name": {"vdc.local"},
				"service_dns": {"10.0.2.2"}, "service_dhcp": {"10.0.2.2"}, "metric": {"10"},
				"display_name": {"demo"}, "description": {"demo net"}, "editable": {"true"},
				"account_id": {"a-shpoolxx"}, "dhcp_range": {"default"},
			}}},
		},
		{
			name:    "network dhcp add-range",
			args:    []string{"network", "dhcp", "add-range", "nw-demo1", "10.0.2.100", "10.0.2.200"},
			replies: map[string][]reply{"PUT " + p + "networks/nw-demo1/dhcp_ranges/add.json": {ok(`{}`)}},
			want: []want{{"PUT", p + "networks/nw-demo1/dhcp_ranges/add.json", url.Values{
				"range_begin": {"10.0.2.100"}, "range_end": {"10.0.2.200"},
			}}},
		},
		{
			name:    "network dhcp del-range",
			args:    []string{"network", "dhcp", "del-range", "nw-demo1", "10.0.2.150", "10.0.2.160"},
			replies: map[string][]reply{"PUT " + p + "networks/nw-demo1/dhcp_ranges/remove.json": {ok(`{}`)}},
			want: []want{{"PUT", p + "networks/nw-demo1/dhcp_ranges/remove.json", url.Values{
				"range_begin": {"10.0.2.150"}, "range_end": {"10.0.2.160"},
			}}},
		},
		{
			name:    "network dhcp ranges",
			args:    []string{"network", "dhcp", "ranges", "nw-demo1"},
			replies: map[string][]reply{"GET " + p + "networks/nw-demo1/dhcp_ranges.json": {ok(`[["10.0.2.100","10.0.2.200"]]`)}},
			want:    []want{{"GET", p + "networks/nw-demo1/dhcp_ranges.json", nil}},
		},
		{
			name:    "network reserve",
			args:    []string{"network", "reserve", "nw-demo1", "10.0.2.5", "10.0.2.6"},
			replies: map[string][]reply{"PUT " + p + "networks/nw-demo1/dhcp/reserve.json": {ok(`{}`)}},
			want:    []want{{"PUT", p + "networks/nw-demo1/dhcp/reserve.json", url.Values{"ipaddr[]": {"10.0.2.5", "10.0.2.6"}}}},
		},
		{
			name:    "network release",
			args:    []string{"network", "release", "nw-demo1", "10.0.2.5"},
			replies: map[string][]reply{"PUT " + p + "networks/nw-demo1/dhcp/release.json": {ok(`{}`)}},
			want:    []want{{"PUT", p + "networks/nw-demo1/dhcp/release.json", url.Values{"ipaddr[]": {"10.0.2.5"}}}},
		},
		{
			name:    "network del",
			args:    []string{"network", "del", "nw-demo1"},
			replies: map[string][]reply{"DELETE " + p + "networks/nw-demo1.json": {ok(`["nw-demo1"]`)}},
			want:    []want{{"DELETE", p + "networks/nw-demo1.json", nil}},
		},
		{
			name: "backupstorage add",
			args: []string{"backupstorage", "add", "--uuid", "bkst-local", "--storage-type", "local",
				"--base-uri", "file:///var/lib/vdc/images/", "--description", "d", "--display-name", "local", "--node-id", "bksta.demo1"},
			replies: map[string][]reply{"POST " + p + "backup_storages.json": {ok(`{"id":"bkst-local"}`)}},
			want: []want{{"POST", p + "backup_storages.json", url.Values{
				"uuid": {"bkst-local"}, "storage_type": {"local"}, "base_uri": {"file:///var/lib/vdc/images/"},
				"description": {"d"}, "display_name": {"local"}, "node_id": {"bksta.demo1"},
			}}},
		},
		{
			name:    "backupstorage modify answers an id list",
			args:    []string{"backupstorage", "modify", "bkst-local", "--base-uri", "file:///srv/"},
			replies: map[string][]reply{"PUT " + p + "backup_storages/bkst-local.json": {ok(`["bkst-local"]`)}},
			want:    []want{{"PUT", p + "backup_storages/bkst-local.json", url.Values{"base_uri": {"file:///srv/"}}}},
		},
		{
			name: "backupobject add",
			args: []string{"backupobject", "add", "--uuid", "bo-lucid5", "--backup-storage-id", "bkst-local",
				"--object-key", "lucid5.raw", "--size", "1073741824", "--allocation-size", "4096", "--checksum", "abc",
				"--container-format", "raw", "--display-name", "lucid5", "--description", "d", "--state", "available",
				"--service-type", "std", "--account-id", "a-shpoolxx"},
			replies: map[string][]reply{"POST " + p + "backup_objects.json": {ok(`{"id":"bo-lucid5"}`)}},
			want: []want{{"POST", p + "backup_objects.json", url.Values{
				"uuid": {"bo-lucid5"}, "backup_storage_id": {"bkst-local"}, "object_key": {"lucid5.raw"},
				"size": {"1073741824"}, "allocation_size": {"4096"}, "checksum": {"abc"}, "container_format": {"raw"},
				"display_name": {"lucid5"}, "description": {"d"}, "state": {"available"}, "service_type": {"std"},
				"account_id": {"a-shpoolxx"},
			}}},
		},
		{
			name: "image add",
			args: []string{"image", "add", "--uuid", "wmi-lucid5", "--backup-object-id", "bo-lucid5", "--boot-dev-type", "local",
				"--description", "d", "--display-name", "lucid5", "--is-public", "--is-cacheable", "--file-format", "raw",
				"--root-device", "label:root", "--os-type", "linux", "--service-type", "std", "--state", "available",
				"--account-id", "a-shpoolxx", "--features", "virtio,acpi=false"},
			replies: map[string][]reply{"POST " + p + "images.json": {ok(`{"id":"wmi-lucid5"}`)}},
			want: []want{{"POST", p + "images.json", url.Values{
				"uuid": {"wmi-lucid5"}, "backup_object_id": {"bo-lucid5"}, "arch": {"x86_64"}, "boot_dev_type": {"2"},
				"description": {"d"}, "display_name": {"lucid5"}, "is_public": {"true"}, "is_cacheable": {"true"},
				"file_format": {"raw"}, "root_device": {"label:root"}, "os_type": {"linux"}, "service_type": {"std"},
				"state": {"available"}, "account_id": {"a-shpoolxx"}, "features[virtio]": {"true"}, "features[acpi]": {"false"},
			}}},
		},
		{
			name:    "image add volume boot",
			args:    []string{"image", "add", "--backup-object-id", "bo-x", "--boot-dev-type", "volume", "--arch", "x86"},
			replies: map[string][]reply{"POST " + p + "images.json": {ok(`{"id":"wmi-x"}`)}},
			want: []want{{"POST", p + "images.json", url.Values{
				"backup_object_id": {"bo-x"}, "arch": {"x86"}, "boot_dev_type": {"1"},
			}}},
		},
		{
			name:    "image modify",
			args:    []string{"image", "modify", "wmi-x", "--display-name", "new"},
			replies: map[string][]reply{"PUT " + p + "images/wmi-x.json": {ok(`{"id":"wmi-x"}`)}},
			want:    []want{{"PUT", p + "images/wmi-x.json", url.Values{"display_name": {"new"}}}},
		},
		{
			name:    "group add host",
			args:    []string{"group", "add", "host", "shhost", "--uuid", "hng-shhost"},
			replies: map[string][]reply{"POST " + p + "host_node_groups.json": {ok(`{"id":"hng-shhost"}`)}},
			want:    []want{{"POST", p + "host_node_groups.json", url.Values{"name": {"shhost"}, "uuid": {"hng-shhost"}}}},
		},
		{
			name:    "group add storage",
			args:    []string{"group", "add", "storage", "shstor"},
			replies: map[string][]reply{"POST " + p + "storage_node_groups.json": {ok(`{"id":"sng-shstor"}`)}},
			want:    []want{{"POST", p + "storage_node_groups.json", url.Values{"name": {"shstor"}}}},
		},
		{
			name:    "group map host",
			args:    []string{"group", "map", "host", "hng-shhost", "hn-demo1", "hn-demo2"},
			replies: map[string][]reply{"PUT " + p + "host_node_groups/hng-shhost.json": {ok(`{"id":"hng-shhost"}`)}},
			want:    []want{{"PUT", p + "host_node_groups/hng-shhost.json", url.Values{"host_nodes[]": {"hn-demo1", "hn-demo2"}}}},
		},
		{
			name:    "group map network",
			args:    []string{"group", "map", "network", "nwg-shnet", "nw-demo1"},
			replies: map[string][]reply{"PUT " + p + "network_groups/nwg-shnet.json": {ok(`{"id":"nwg-shnet"}`)}},
			want:    []want{{"PUT", p + "network_groups/nwg-shnet.json", url.Values{"networks[]": {"nw-demo1"}}}},
		},
		{
			name: "group map storage --add keeps members",
			args: []string{"group", "map", "storage", "sng-shstor", "--add", "sn-2", "sn-1"},
			replies: map[string][]reply{
				"GET " + p + "storage_node_groups/sng-shstor.json": {ok(`{"id":"sng-shstor","mapped_uuids":["sn-1"]}`)},
				"PUT " + p + "storage_node_groups/sng-shstor.json": {ok(`{"id":"sng-shstor"}`)},
			},
			want: []want{
				{"GET", p + "storage_node_groups/sng-shstor.json", nil},
				{"PUT", p + "storage_node_groups/sng-shstor.json", url.Values{"storage_nodes[]": {"sn-1", "sn-2"}}},
			},
		},
		{
			name:    "group list",
			args:    []string{"group", "list", "network"},
			replies: map[string][]reply{"GET " + p + "network_groups.json": {ok(envelopeOf(0))}},
			want:    []want{{"GET", p + "network_groups.json", url.Values{"start": {"0"}, "limit": {"100"}}}},
		},
		{
			name:    "group show",
			args:    []string{"group", "show", "host", "hng-shhost"},
			replies: map[string][]reply{"GET " + p + "host_node_groups/hng-shhost.json": {ok(`{"id":"hng-shhost"}`)}},
			want:    []want{{"GET", p + "host_node_groups/hng-shhost.json", nil}},
		},
		{
			name:    "group del",
			args:    []string{"group", "del", "storage", "sng-shstor"},
			replies: map[string][]reply{"DELETE " + p + "storage_node_groups/sng-shstor.json": {ok(`["sng-shstor"]`)}},
			want:    []want{{"DELETE", p + "storage_node_groups/sng-shstor.json", nil}},
		},
		{
			name:    "cluster members",
			args:    []string{"cluster", "members"},
			replies: map[string][]reply{"GET /internal/v1/members": {ok(`[]`)}},
			want:    []want{{"GET", "/internal/v1/members", nil}},
		},
		{
			name:    "cluster peers",
			args:    []string{"cluster", "peers"},
			replies: map[string][]reply{"GET /internal/v1/peers": {ok(`[]`)}},
			want:    []want{{"GET", "/internal/v1/peers", nil}},
		},
		{
			name:    "cluster status",
			args:    []string{"cluster", "status"},
			replies: map[string][]reply{"GET /internal/v1/status": {ok(`{}`)}},
			want:    []want{{"GET", "/internal/v1/status", nil}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			for route, rs := range tc.replies {
				f.on(route, rs...)
			}
			f.mustRun(tc.args...)
			checkCalls(t, f.recorded(), tc.want)
		})
	}
}

func TestAccountHeader(t *testing.T) {
	f := newFake(t).on("GET "+p+"host_nodes/hn-demo1.json", ok(hostDoc))
	f.mustRun("--account", "a-shpoolxx", "host", "show", "hn-demo1")
	got := f.recorded()
	if h := got[0].Header.Get("X-VDC-Account-UUID"); h != "a-shpoolxx" {
		t.Fatalf("account header = %q, want a-shpoolxx", h)
	}
}

func TestShowPrintsDocumentInOrder(t *testing.T) {
	f := newFake(t).on("GET "+p+"dc_networks/dcn-public.json", ok(dcnDoc))
	r := f.mustRun("dcnetwork", "show", "dcn-public")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	wantKeys := []string{"id", "uuid", "name", "description", "created_at", "updated_at", "vlan_lease_id",
		"offering_network_modes", "allow_new_networks"}
	if len(lines) != len(wantKeys) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(wantKeys), r.stdout)
	}
	for i, k := range wantKeys {
		if f := strings.Fields(lines[i]); f[0] != k {
			t.Errorf("line %d = %q, want key %s", i, lines[i], k)
		}
	}
	for _, want := range []string{"name                    public", "vlan_lease_id           -",
		"offering_network_modes  securitygroup,passthrough", "allow_new_networks      true"} {
		if !strings.Contains(r.stdout, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestJSONOutputIsRaw(t *testing.T) {
	f := newFake(t).on("GET "+p+"dc_networks/dcn-public.json", ok(dcnDoc))
	r := f.mustRun("-o", "json", "dcnetwork", "show", "dcn-public")
	if r.stdout != dcnDoc+"\n" {
		t.Fatalf("stdout = %q, want the raw document", r.stdout)
	}
}

func TestListTable(t *testing.T) {
	other := strings.NewReplacer(`"hn-demo1"`, `"hn-demo2"`, `"hva.demo1"`, `"hva.demo2"`, `"online"`, `"offline"`,
		`"scheduling_enabled":true`, `"scheduling_enabled":false`).Replace(hostDoc)
	f := newFake(t).on("GET "+p+"host_nodes.json", ok(envelopeOf(2, hostDoc, other)))
	r := f.mustRun("host", "list")
	want := "" +
		"ID        NODE_ID    HYPERVISOR  ARCH    CPU  MEMORY  DISK  SCHEDULING  STATUS   DISPLAY_NAME\n" +
		"hn-demo1  hva.demo1  dummy       x86_64  4    4096    0     true        online   demo1\n" +
		"hn-demo2  hva.demo2  dummy       x86_64  4    4096    0     false       offline  demo1\n"
	if r.stdout != want {
		t.Fatalf("table:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestListPagesThroughEnvelope(t *testing.T) {
	item := func(id string) string { return `{"id":"` + id + `","storage_type":"local","base_uri":"file:///x/"}` }
	f := newFake(t).on("GET "+p+"backup_storages.json",
		ok(`[{"total":3,"start":0,"limit":2,"results":[`+item("bkst-a")+`,`+item("bkst-b")+`]}]`),
		ok(`[{"total":3,"start":2,"limit":2,"results":[`+item("bkst-c")+`]}]`),
	)
	r := f.mustRun("backupstorage", "list", "--page-size", "2")
	checkCalls(t, f.recorded(), []want{
		{"GET", p + "backup_storages.json", url.Values{"start": {"0"}, "limit": {"2"}}},
		{"GET", p + "backup_storages.json", url.Values{"start": {"2"}, "limit": {"2"}}},
	})
	for _, id := range []string{"bkst-a", "bkst-b", "bkst-c"} {
		if !strings.Contains(r.stdout, id+"  ") {
			t.Errorf("table lacks %s:\n%s", id, r.stdout)
		}
	}
	if n := strings.Count(r.stdout, "\n"); n != 4 {
		t.Errorf("table has %d lines, want header + 3:\n%s", n, r.stdout)
	}

	// -o json: one envelope holding every page.
	f = newFake(t).on("GET "+p+"backup_storages.json",
		ok(`[{"total":3,"start":0,"limit":2,"results":[`+item("bkst-a")+`,`+item("bkst-b")+`]}]`),
		ok(`[{"total":3,"start":2,"limit":2,"results":[`+item("bkst-c")+`]}]`),
	)
	r = f.mustRun("-o", "json", "backupstorage", "list", "--page-size", "2")
	want := `[{"total":3,"start":0,"limit":3,"results":[` + item("bkst-a") + `,` + item("bkst-b") + `,` + item("bkst-c") + `]}]` + "\n"
	if r.stdout != want {
		t.Fatalf("json:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestListStopsOnEmptyPage(t *testing.T) {
	// Rows deleted while paging: total says 3 but the second page is empty.
	f := newFake(t).on("GET "+p+"backup_storages.json",
		ok(`[{"total":3,"start":0,"limit":2,"results":[{"id":"bkst-a"},{"id":"bkst-b"}]}]`),
		ok(`[{"total":3,"start":2,"limit":2,"results":[]}]`),
	)
	f.mustRun("backupstorage", "list", "--page-size", "2")
	if n := len(f.recorded()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestAPIErrorExitsOne(t *testing.T) {
	f := newFake(t).on("POST "+p+"host_nodes.json", reply{status: 400,
		body: `{"error":"Dcmgr::Endpoints::DatabaseError","message":"Sequel::ValidationFailed: node_id is already taken","code":"110"}`})
	r := f.run("host", "add", "hva.demo1")
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	if want := "error: Sequel::ValidationFailed: node_id is already taken (code 110, HTTP 400)\n"; r.stderr != want {
		t.Fatalf("stderr = %q, want %q", r.stderr, want)
	}
	if r.stdout != "" {
		t.Fatalf("stdout = %q, want nothing", r.stdout)
	}
}

func TestNotFoundExitsOne(t *testing.T) {
	f := newFake(t).on("GET "+p+"host_nodes/hn-nothere.json", reply{status: 404,
		body: `{"error":"Dcmgr::Endpoints::UnknownUUIDResource","message":"hn-nothere","code":"100"}`})
	r := f.run("host", "show", "hn-nothere")
	if r.code != 1 || r.stderr != "error: hn-nothere (code 100, HTTP 404)\n" {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestNonDocumentErrorExitsOne(t *testing.T) {
	f := newFake(t).on("POST "+p+"host_nodes.json", reply{status: 400, body: "Invalid request body."})
	r := f.run("host", "add", "hva.demo1")
	if r.code != 1 || r.stderr != "error: Invalid request body. (HTTP 400)\n" {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestRetriesWhileNoLeader(t *testing.T) {
	noLeader := reply{status: 503, header: map[string]string{"Retry-After": "1"},
		body: `{"error":"Dcmgr::Endpoints::NoLeader","message":"leadership is changing; retry","code":"503"}`}
	f := newFake(t).on("POST "+p+"host_nodes.json", noLeader, noLeader, ok(hostDoc))
	r := f.mustRun("host", "add", "hva.demo1", "--uuid", "hn-demo1")
	calls := f.recorded()
	if len(calls) != 3 {
		t.Fatalf("%d requests, want 3", len(calls))
	}
	for i, c := range calls {
		if c.Form.Get("uuid") != "hn-demo1" || c.Form.Get("node_id") != "hva.demo1" {
			t.Errorf("attempt %d form %v", i, c.Form)
		}
	}
	if !reflect.DeepEqual(f.sleeps, []time.Duration{time.Second, time.Second}) {
		t.Errorf("sleeps = %v, want two of Retry-After 1s", f.sleeps)
	}
	if !strings.Contains(r.stdout, "hn-demo1") {
		t.Errorf("stdout = %q", r.stdout)
	}
}

func TestRetryGivesUp(t *testing.T) {
	noLeader := reply{status: 503, header: map[string]string{"Retry-After": "1"},
		body: `{"error":"Dcmgr::Endpoints::NoLeader","message":"no leader","code":"503"}`}
	f := newFake(t).on("GET "+p+"host_nodes/hn-demo1.json", noLeader)
	r := f.run("host", "show", "hn-demo1")
	if r.code != 1 || r.stderr != "error: no leader (code 503, HTTP 503)\n" {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
	if n := len(f.recorded()); n != 1+maxRetries {
		t.Fatalf("%d requests, want %d", n, 1+maxRetries)
	}
	want := []time.Duration{time.Second, time.Second, time.Second, 2 * time.Second, 4 * time.Second}
	if !reflect.DeepEqual(f.sleeps, want) {
		t.Fatalf("sleeps = %v, want %v", f.sleeps, want)
	}
}

func TestNoRetryWithoutRetryAfter(t *testing.T) {
	f := newFake(t).on("GET "+p+"host_nodes/hn-demo1.json", reply{status: 503, body: "Service Unavailable"})
	r := f.run("host", "show", "hn-demo1")
	if r.code != 1 || len(f.recorded()) != 1 {
		t.Fatalf("exit %d after %d requests", r.code, len(f.recorded()))
	}
}

func TestIfMissingSkipsExisting(t *testing.T) {
	f := newFake(t).on("GET "+p+"host_nodes/hn-demo1.json", ok(hostDoc))
	r := f.mustRun("--if-missing", "host", "add", "hva.demo1", "--uuid", "demo1")
	if r.stdout != "exists: hn-demo1\n" {
		t.Fatalf("stdout = %q", r.stdout)
	}
	checkCalls(t, f.recorded(), []want{{"GET", p + "host_nodes/hn-demo1.json", nil}})

	// -o json: the existing document on stdout, the note on stderr.
	f = newFake(t).on("GET "+p+"dc_networks/dcn-public.json", ok(dcnDoc))
	r = f.mustRun("-o", "json", "dcnetwork", "add", "public", "--uuid", "dcn-public", "--if-missing", "--mode", "l2overlay")
	if r.stdout != dcnDoc+"\n" || r.stderr != "exists: dcn-public\n" {
		t.Fatalf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	checkCalls(t, f.recorded(), []want{{"GET", p + "dc_networks/dcn-public.json", nil}})
}

func TestIfMissingCreatesMissing(t *testing.T) {
	f := newFake(t).
		on("GET "+p+"host_node_groups/hng-shhost.json", reply{status: 404,
			body: `{"error":"Dcmgr::Endpoints::UnknownUUIDResource","message":"hng-shhost","code":"100"}`}).
		on("POST "+p+"host_node_groups.json", ok(`{"id":"hng-shhost","name":"shhost"}`))
	r := f.mustRun("--if-missing", "group", "add", "host", "shhost", "--uuid", "hng-shhost")
	checkCalls(t, f.recorded(), []want{
		{"GET", p + "host_node_groups/hng-shhost.json", nil},
		{"POST", p + "host_node_groups.json", url.Values{"name": {"shhost"}, "uuid": {"hng-shhost"}}},
	})
	if !strings.HasPrefix(r.stdout, "id    hng-shhost\n") {
		t.Fatalf("stdout = %q", r.stdout)
	}
}

func TestIfMissingOtherErrorFails(t *testing.T) {
	f := newFake(t).on("GET "+p+"images/wmi-x.json", reply{status: 400,
		body: `{"error":"Dcmgr::Endpoints::InvalidParameter","message":"Invalid UUID Syntax: wmi-x!","code":"143"}`})
	r := f.run("--if-missing", "image", "add", "--uuid", "wmi-x")
	if r.code != 1 || !strings.Contains(r.stderr, "(code 143, HTTP 400)") || len(f.recorded()) != 1 {
		t.Fatalf("exit %d stderr %q requests %d", r.code, r.stderr, len(f.recorded()))
	}
}

func TestIfMissingNeedsUUID(t *testing.T) {
	f := newFake(t)
	r := f.run("--if-missing", "host", "add", "hva.demo1")
	if r.code != 1 || !strings.Contains(r.stderr, "--if-missing needs --uuid") || len(f.recorded()) != 0 {
		t.Fatalf("exit %d stderr %q requests %d", r.code, r.stderr, len(f.recorded()))
	}
}

func TestOutputs(t *testing.T) {
	cases := []struct {
		name  string
		route string
		body  string
		args  []string
		want  string
	}{
		{"delete note", "DELETE " + p + "host_nodes/hn-demo1.json", `{"uuid":"hn-demo1"}`,
			[]string{"host", "del", "hn-demo1"}, "deleted: hn-demo1\n"},
		{"delete json", "DELETE " + p + "host_nodes/hn-demo1.json", `{"uuid":"hn-demo1"}`,
			[]string{"-o", "json", "host", "del", "hn-demo1"}, `{"uuid":"hn-demo1"}` + "\n"},
		{"modes", "GET " + p + "dc_networks/dcn-public/offering_modes.json", `["securitygroup","passthrough"]`,
			[]string{"dcnetwork", "modes", "dcn-public"}, "MODE\nsecuritygroup\npassthrough\n"},
		{"dhcp ranges", "GET " + p + "networks/nw-demo1/dhcp_ranges.json", `[["10.0.2.100","10.0.2.200"],["10.0.2.210","10.0.2.220"]]`,
			[]string{"network", "dhcp", "ranges", "nw-demo1"},
			"BEGIN       END\n10.0.2.100  10.0.2.200\n10.0.2.210  10.0.2.220\n"},
		{"add-range note", "PUT " + p + "networks/nw-demo1/dhcp_ranges/add.json", `{}`,
			[]string{"network", "dhcp", "add-range", "nw-demo1", "10.0.2.100", "10.0.2.200"},
			"add-range: nw-demo1 10.0.2.100-10.0.2.200\n"},
		{"reserve note", "PUT " + p + "networks/nw-demo1/dhcp/reserve.json", `{}`,
			[]string{"network", "reserve", "nw-demo1", "10.0.2.5", "10.0.2.6"}, "reserved: nw-demo1 10.0.2.5 10.0.2.6\n"},
		{"modify id list", "PUT " + p + "backup_storages/bkst-a.json", `["bkst-a"]`,
			[]string{"backupstorage", "modify", "bkst-a", "--display-name", "x"}, "modified: bkst-a\n"},
		{"network list", "GET " + p + "networks.json",
			envelopeOf(1, `{"id":"nw-demo1","ipv4_network":"10.0.2.0","prefix":24,"ipv4_gw":"10.0.2.1","network_mode":"securitygroup","dc_network":{"id":"dcn-public","name":"public"},"account_id":"a-shpoolxx","display_name":"demo"}`),
			[]string{"network", "list"},
			"ID        NETWORK      GW        MODE           DC_NETWORK  ACCOUNT     DISPLAY_NAME\n" +
				"nw-demo1  10.0.2.0/24  10.0.2.1  securitygroup  dcn-public  a-shpoolxx  demo\n"},
		{"image list", "GET " + p + "images.json",
			envelopeOf(1, `{"id":"wmi-lucid5","state":"available","arch":"x86_64","boot_dev_type":2,"backup_object_id":"bo-lucid5","is_public":false,"account_id":"a-shpoolxx","display_name":"lucid5"}`),
			[]string{"image", "list"},
			"ID          STATE      ARCH    BOOT   BACKUP_OBJECT  PUBLIC  ACCOUNT     DISPLAY_NAME\n" +
				"wmi-lucid5  available  x86_64  local  bo-lucid5      false   a-shpoolxx  lucid5\n"},
		{"storage list", "GET " + p + "storage_nodes.json",
			envelopeOf(2, `{"id":"sn-1","node_id":"sta.1","storage_type":"iscsi","offering_disk_space_mb":100,"ip_address":"10.0.0.2","status":"online","display_name":""}`,
				`{"id":"sn-2","node_id":"sta.2","storage_type":"nfs","offering_disk_space_mb":100,"mount_point":"/mnt","status":"offline","display_name":"n"}`),
			[]string{"storage", "list"},
			"ID    NODE_ID  TYPE   DISK  ADDRESS   STATUS   DISPLAY_NAME\n" +
				"sn-1  sta.1    iscsi  100   10.0.0.2  online   -\n" +
				"sn-2  sta.2    nfs    100   /mnt      offline  n\n"},
		{"group list", "GET " + p + "host_node_groups.json",
			envelopeOf(1, `{"id":"hng-shhost","name":"shhost","mapped_uuids":["hn-demo1","hn-demo2"],"account_id":"a-00000000"}`),
			[]string{"group", "list", "host"},
			"ID          NAME    MEMBERS            ACCOUNT\nhng-shhost  shhost  hn-demo1,hn-demo2  a-00000000\n"},
		{"cluster members", "GET /internal/v1/members",
			`[{"name":"m1","addr":"10.0.0.1:7946","status":"alive","tags":{"role":"manager","raft":"10.0.0.1:7300"}},` +
				`{"name":"h1","addr":"10.0.0.2:7946","status":"failed","tags":{"role":"hva","node_id":"hva.demo1"}}]`,
			[]string{"cluster", "members"},
			"NAME  ADDR           STATUS  ROLE     NODE_ID\nm1    10.0.0.1:7946  alive   manager  -\nh1    10.0.0.2:7946  failed  hva      hva.demo1\n"},
		{"cluster peers", "GET /internal/v1/peers",
			`[{"id":"m1","address":"10.0.0.1:7300","suffrage":"Voter","leader":true},{"id":"m2","address":"10.0.0.2:7300","suffrage":"Voter","leader":false}]`,
			[]string{"cluster", "peers"},
			"ID  ADDRESS        SUFFRAGE  LEADER\nm1  10.0.0.1:7300  Voter     true\nm2  10.0.0.2:7300  Voter     false\n"},
		{"cluster status", "GET /internal/v1/status", `{"state":"Leader","term":"3","applied_index":"42"}`,
			[]string{"cluster", "status"}, "KEY            VALUE\napplied_index  42\nstate          Leader\nterm           3\n"},
		{"cluster status json", "GET /internal/v1/status", `{"state":"Leader"}`,
			[]string{"cluster", "status", "-o", "json"}, `{"state":"Leader"}` + "\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t).on(tc.route, ok(tc.body))
			r := f.mustRun(tc.args...)
			if r.stdout != tc.want {
				t.Fatalf("stdout:\n%s\nwant:\n%s", r.stdout, tc.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	f := newFake(t)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	f.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-block:
		}
	})
	r := f.run("--timeout", "50ms", "host", "show", "hn-demo1")
	if r.code != 1 || !strings.Contains(r.stderr, "no answer within 50ms") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

func TestUsageErrors(t *testing.T) {
	f := newFake(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"host", "add"}, "error: accepts 1 arg(s), received 0\nRun 'vdc-manage host add --help' for usage.\n"},
		{[]string{"host", "modify", "hn-demo1"}, "error: nothing to modify: give at least one of --arch, --hypervisor, --display-name, --cpu-cores, --memory-size, --disk-space, --scheduling-enabled, --node-id\n"},
		{[]string{"-o", "yaml", "host", "list"}, "error: invalid --output \"yaml\": want table or json\n"},
		{[]string{"--api", "ftp://x", "host", "list"}, "error: invalid --api \"ftp://x\": want http://host:port\n"},
		{[]string{"--account", "shpoolxx", "host", "list"}, "error: invalid --account \"shpoolxx\": account ids look like a-xxxxxxxx\n"},
		{[]string{"group", "list", "volume"}, "error: unknown group kind \"volume\": want host, storage or network\n"},
		{[]string{"image", "add", "--boot-dev-type", "cdrom"}, "error: --boot-dev-type: \"cdrom\": want local or volume\n"},
		{[]string{"host", "list", "--param", "oops"}, "error: invalid --param \"oops\": want key=value\n"},
	}
	for _, tc := range cases {
		r := f.run(tc.args...)
		if r.code != 1 || r.stderr != tc.want {
			t.Errorf("%v: exit %d stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if n := len(f.recorded()); n != 0 {
		t.Fatalf("usage errors sent %d requests", n)
	}
}

func TestAPIFlagWithoutScheme(t *testing.T) {
	f := newFake(t).on("GET "+p+"host_nodes/hn-demo1.json", ok(hostDoc))
	var out strings.Builder
	code := Run(t.Context(), []string{"--api", strings.TrimPrefix(f.srv.URL, "http://") + "/", "host", "show", "hn-demo1"},
		&out, Config{})
	if code != 0 || len(f.recorded()) != 1 {
		t.Fatalf("exit %d, %d requests", code, len(f.recorded()))
	}
}
