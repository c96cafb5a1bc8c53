package api

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

const monitorKeys = "id,uuid,network_vif_id,enabled,title,params,deleted_at,created_at,updated_at"

func ev(name string, args ...string) proto.Event { return proto.Event{Name: name, Args: args} }

// wantEvents asserts the events published since the last check.
func (e *env) wantEvents(want ...proto.Event) {
	e.t.Helper()
	got := e.events.take()
	if len(got) != len(want) {
		e.t.Fatalf("events = %v, want %v", got, want)
	}
	for i := range got {
		if got[i].Name != want[i].Name || !slices.Equal(got[i].Args, want[i].Args) {
			e.t.Fatalf("events = %v, want %v", got, want)
		}
	}
}

func post(path string, kv ...string) req {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return req{method: "POST", path: path, form: f}
}

func TestVifMonitors(t *testing.T) {
	f := newInstEnv(t)
	inst := f.placed(proto.InstanceRunning)
	vif := f.attachVif(inst, f.nw, "10.0.0.50", 0)
	base := "/network_vifs/" + vif + "/monitors"
	f.events.take()

	wantEq(t, "empty list", f.get(base+".json").ok().arr(), []any{})

	// Single create: title + enabled.
	r := f.do(post(base+".json", "title", "ping", "enabled", "true", "params[port]", "22"))
	wantEq(t, "monitor keys", strings.Join(jsonKeys(t, r.ok().body), ","), monitorKeys)
	m1 := r.obj()
	id1 := m1["id"].(string)
	if !strings.HasPrefix(id1, "nwm-") || m1["uuid"] != id1 || m1["network_vif_id"] != vif || m1["enabled"] != true ||
		m1["title"] != "ping" || m1["deleted_at"] != nil {
		t.Fatalf("created monitor = %v", m1)
	}
	wantEq(t, "params", m1["params"], map[string]any{"port": "22"})
	f.wantEvents(ev(proto.EventVifMonitoringCreated, vif, id1), ev(proto.EventInstanceMonitorRefresh, inst))

	// Show, list, the vif document, YAML.
	wantEq(t, "show", f.get(base + "/" + id1 + ".json").ok().obj()["title"], "ping")
	if l := f.get(base + ".json").ok().arr(); len(l) != 1 || l[0].(map[string]any)["id"] != id1 {
		t.Fatalf("list = %v", l)
	}
	vdoc := f.get("/network_vifs/" + vif + ".json").ok().obj()
	if nm := vdoc["network_monitors"].([]any); len(nm) != 1 || nm[0].(map[string]any)["id"] != id1 {
		t.Fatalf("vif network_monitors = %v", vdoc["network_monitors"])
	}
	y := string(f.get(base + "/" + id1 + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+id1+"\n:uuid: "+id1+"\n:network_vif_id: "+vif+"\n:enabled: true\n:title: ping\n:params:\n  :port: '22'\n") {
		t.Fatalf("yaml:\n%s", y)
	}

	// Update.
	up := f.put(base+"/"+id1+".json", url.Values{"title": {"ssh"}, "enabled": {"false"}}).ok().obj()
	if up["title"] != "ssh" || up["enabled"] != false {
		t.Fatalf("updated = %v", up)
	}
	wantEq(t, "params kept", up["params"], map[string]any{"port": "22"})
	f.wantEvents(ev(proto.EventVifMonitoringUpdated, vif, id1), ev(proto.EventInstanceMonitorRefresh, inst))

	// Rejections change nothing and publish nothing.
	f.rejects(400, "143",
		post(base+".json", "title", "only-title"),
		post(base+".json", "enabled", "true"),
		post(base+".json", "title", "t", "enabled", "true", "params", "not-a-hash"),
		post(base+".json", "monitors", "garbage"),
		post(base+".json", "monitors[0][title]", "no-enabled"),
		post(base+".json", "monitors[0][uuid]", "bad"),
		post(base+".json", "monitors[0][uuid]", id1, "monitors[1][uuid]", id1),
		put(base+"/"+id1+".json", "params", "x"),
		req{method: "GET", path: base + "/bad.json"},
		req{method: "GET", path: "/network_vifs/bad/monitors.json"})
	f.rejects(404, "100",
		post(base+".json", "monitors[0][uuid]", "nwm-nothere"),
		req{method: "GET", path: base + "/nwm-nothere.json"},
		put(base+"/nwm-nothere.json", "title", "x"),
		req{method: "DELETE", path: base + "/nwm-nothere.json"},
		req{method: "GET", path: "/network_vifs/vif-nothere/monitors.json"},
		asOther("GET", base+".json", nil),
		asOther("POST", base+".json", url.Values{"title": {"x"}, "enabled": {"true"}}),
		asOther("PUT", base+"/"+id1+".json", url.Values{"title": {"x"}}),
		asOther("DELETE", base+"/"+id1+".json", nil))
	f.wantEvents()

	// Bulk: id1 updated, one created, the one not listed deleted.
	extra := f.do(post(base+".json", "title", "extra", "enabled", "true")).ok().obj()["id"].(string)
	f.events.take()
	bulk := f.do(post(base+".json",
		"monitors[0][uuid]", id1, "monitors[0][title]", "ssh2",
		"monitors[1][title]", "http", "monitors[1][enabled]", "true", "monitors[1][params][port]", "80")).ok()
	wantEq(t, "bulk keys", strings.Join(jsonKeys(t, bulk.body), ","), "deleted,updated,created")
	b := bulk.obj()
	wantEq(t, "deleted", b["deleted"], []any{extra})
	upd, cr := b["updated"].([]any), b["created"].([]any)
	if len(upd) != 1 || upd[0].(map[string]any)["id"] != id1 || upd[0].(map[string]any)["title"] != "ssh2" ||
		len(cr) != 1 || cr[0].(map[string]any)["title"] != "http" {
		t.Fatalf("bulk = %v", b)
	}
	id2 := cr[0].(map[string]any)["id"].(string)
	f.wantEvents(ev(proto.EventVifMonitoringDeleted, vif, extra), ev(proto.EventVifMonitoringUpdated, vif, id1),
		ev(proto.EventVifMonitoringCreated, vif, id2), ev(proto.EventInstanceMonitorRefresh, inst))
	f.rejects(404, "100", req{method: "GET", path: base + "/" + extra + ".json"})

	// Delete one: logical (the record stays, with deleted_at).
	wantEq(t, "delete", f.del(base+"/"+id2+".json").ok().arr(), []any{id2})
	f.wantEvents(ev(proto.EventVifMonitoringDeleted, vif, id2), ev(proto.EventInstanceMonitorRefresh, inst))
	var gone proto.NetworkVifMonitor
	f.record(proto.KindNetworkVifMonitor, id2, &gone)
	if gone.DeletedAt == nil {
		t.Fatal("deleted monitor has no deleted_at")
	}
	f.rejects(404, "100", req{method: "GET", path: base + "/" + id2 + ".json"})

	// Neither title nor monitors: every monitor goes.
	all := f.do(post(base + ".json")).ok().obj()
	wantEq(t, "delete all", all["deleted"], []any{id1})
	wantEq(t, "nothing updated", all["updated"], []any{})
	f.wantEvents(ev(proto.EventVifMonitoringDeleted, vif, id1), ev(proto.EventInstanceMonitorRefresh, inst))
	wantEq(t, "list after", f.get(base+".json").ok().arr(), []any{})

	// A monitor is found only under its own vif.
	other := f.attachVif(inst, f.nw, "10.0.0.51", 1)
	m3 := f.do(post(base+".json", "title", "t", "enabled", "true")).ok().obj()["id"].(string)
	f.rejects(404, "100", req{method: "GET", path: "/network_vifs/" + other + "/monitors/" + m3 + ".json"})

	// A vif without an instance refreshes no instance.
	bare, _ := f.newVif(f.nw)
	f.events.take()
	m4 := f.do(post("/network_vifs/"+bare+"/monitors.json", "title", "t", "enabled", "false")).ok().obj()["id"].(string)
	f.wantEvents(ev(proto.EventVifMonitoringCreated, bare, m4))
}

func TestVifMonitorsGoWithTheVif(t *testing.T) {
	f := newInstEnv(t)
	inst := f.placed(proto.InstanceStopped)
	vif := f.attachVif(inst, f.nw, "10.0.0.60", 0)
	m := f.do(post("/network_vifs/"+vif+"/monitors.json", "title", "t", "enabled", "true")).ok().obj()["id"].(string)
	f.del("/instances/" + inst + ".json").ok()
	if f.exists(proto.KindNetworkVif, vif) || f.exists(proto.KindNetworkVifMonitor, m) {
		t.Fatalf("terminated instance left vif %v, monitor %v", f.exists(proto.KindNetworkVif, vif),
			f.exists(proto.KindNetworkVifMonitor, m))
	}
}

func TestInstanceMonitoringEvents(t *testing.T) {
	f := newInstEnv(t)
	inst := f.placed(proto.InstanceRunning)
	vif := f.attachVif(inst, f.nw, "10.0.0.70", 0, f.sg)
	f.events.take()
	base := "/instances/" + inst + "/monitoring"
	item := f.do(post(base+".json", "title", "cpu", "enabled", "true")).ok().obj()["uuid"].(string)
	f.wantEvents(ev(proto.EventInstanceMonitorRefresh, inst))
	f.put(base+"/"+item+".json", url.Values{"title": {"load"}}).ok()
	f.wantEvents(ev(proto.EventInstanceMonitorRefresh, inst))
	f.del(base + "/" + item + ".json").ok()
	f.wantEvents(ev(proto.EventInstanceMonitorRefresh, inst, item))
	f.rejects(404, "100", req{method: "DELETE", path: base + "/" + item + ".json"})
	f.wantEvents()

	// PUT /instances/:id: a monitoring change refreshes, the same again not.
	f.put("/instances/"+inst+".json", url.Values{"monitoring[enabled]": {"true"}}).ok()
	f.wantEvents(ev(proto.EventInstanceMonitorRefresh, inst))
	f.put("/instances/"+inst+".json", url.Values{"monitoring[enabled]": {"true"}}).ok()
	f.wantEvents()

	// security_groups: the vif leaves f.sg and joins a group whose rules
	// reference f.sg. Creating that group tells f.sg it has a referencer;
	// the vif leaving f.sg tells the groups naming f.sg (their hosts hold
	// f.sg's member addresses).
	ref := f.post("/security_groups.json", url.Values{"rule": {"tcp:80,80," + f.sg}}).ok().obj()["id"].(string)
	f.put("/instances/"+inst+".json", url.Values{"security_groups": {ref}}).ok()
	f.wantEvents(ev(proto.EventReferencerAdded(f.sg), ref),
		ev(proto.EventVnicLeft(f.sg), vif), ev(proto.EventLeftGroup(vif), f.sg), ev(proto.EventReferencerRemoved(ref), f.sg),
		ev(proto.EventVnicJoined(ref), vif), ev(proto.EventJoinedGroup(vif), ref))
}
