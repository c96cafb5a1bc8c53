package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// seed stores a record directly, as agents and other routes would.
func (e *env) seed(kind, id string, v any) {
	e.t.Helper()
	_, err := e.api.commit(context.Background(), func(_ *state.Tx, b *state.Builder) (renderFn, error) {
		b.Put(kind, id, v)
		return nil, nil
	})
	if err != nil {
		e.t.Fatalf("seed %s/%s: %v", kind, id, err)
	}
}

// remove deletes a record directly, as another resource's route would.
func (e *env) remove(kind, id string) {
	e.t.Helper()
	_, err := e.api.commit(context.Background(), func(_ *state.Tx, b *state.Builder) (renderFn, error) {
		b.Delete(kind, id, 0)
		return nil, nil
	})
	if err != nil {
		e.t.Fatalf("remove %s/%s: %v", kind, id, err)
	}
}

// exists reports whether kind/id is stored.
func (e *env) exists(kind, id string) bool {
	e.t.Helper()
	var ok bool
	if err := e.srv.Store().View(func(tx *state.Tx) error {
		ok = tx.Exists(kind, id)
		return nil
	}); err != nil {
		e.t.Fatalf("view: %v", err)
	}
	return ok
}

// record decodes kind/id from the state.
func (e *env) record(kind, id string, v any) {
	e.t.Helper()
	if err := e.srv.Store().View(func(tx *state.Tx) error {
		_, err := tx.Get(kind, id, v)
		return err
	}); err != nil {
		e.t.Fatalf("get %s/%s: %v", kind, id, err)
	}
}

// jsonKeys returns the top-level keys of a JSON object in document order.
func jsonKeys(t *testing.T, body []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", body)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
	}
	return keys
}

func wantKeys(t *testing.T, body []byte, want ...string) {
	t.Helper()
	if got := jsonKeys(t, body); !reflect.DeepEqual(got, want) {
		t.Fatalf("keys = %v\nwant   %v", got, want)
	}
}

var hostNodeKeys = []string{
	"id", "uuid", "node_id", "arch", "hypervisor", "display_name", "offering_cpu_cores", "offering_memory_size",
	"offering_disk_space_mb", "scheduling_enabled", "created_at", "updated_at", "status",
}

func hostNodeForm(kv ...string) url.Values {
	f := url.Values{
		"node_id": {"hva.demo1"}, "arch": {"x86_64"}, "hypervisor": {"kvm"},
		"offering_cpu_cores": {"8"}, "offering_memory_size": {"16384"},
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

func TestHostNodesCRUD(t *testing.T) {
	e := newEnv(t)

	r := e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo1", "display_name", "demo host")).ok()
	wantKeys(t, r.body, hostNodeKeys...)
	hn := r.obj()
	want := map[string]any{
		"id": "hn-demo1", "uuid": "hn-demo1", "node_id": "hva.demo1", "arch": "x86_64", "hypervisor": "kvm",
		"display_name": "demo host", "offering_cpu_cores": 8.0, "offering_memory_size": 16384.0,
		"offering_disk_space_mb": 0.0, "scheduling_enabled": true, "status": "offline",
	}
	for k, v := range want {
		if hn[k] != v {
			t.Fatalf("%s = %v, want %v (doc %v)", k, hn[k], v, hn)
		}
	}
	var claim proto.UniqueName
	e.record(proto.KindUniqueName, "host_node_node_id/hva.demo1", &claim)
	if claim.Owner != "hn-demo1" {
		t.Fatalf("claim = %+v", claim)
	}

	// Status follows the agent's node record.
	e.seed(proto.KindNodeState, "hva.demo1", proto.NodeState{NodeID: "hva.demo1", State: "online"})
	r = e.get("/host_nodes/hn-demo1.json").ok()
	wantKeys(t, r.body, hostNodeKeys...)
	if got := r.obj()["status"]; got != "online" {
		t.Fatalf("status = %v, want online", got)
	}
	e.seed(proto.KindNodeState, "hva.demo1", proto.NodeState{NodeID: "hva.demo1", State: "offline"})
	if got := e.get("/host_nodes/hn-demo1.json").ok().obj()["status"]; got != "offline" {
		t.Fatalf("status = %v, want offline", got)
	}

	// YAML: Ruby symbol keys, id first.
	y := string(e.get("/host_nodes/hn-demo1.yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: hn-demo1\n:uuid: hn-demo1\n:node_id: hva.demo1\n:arch: x86_64\n:hypervisor: kvm\n") ||
		!strings.Contains(y, "\n:scheduling_enabled: true\n") || !strings.HasSuffix(y, "\n:status: offline\n") {
		t.Fatalf("yaml show = %q", y)
	}

	// Host nodes are not account resources: another account sees them.
	other := acct("a-otheracc")
	if got := e.do(req{method: "GET", path: "/host_nodes/hn-demo1.json", account: other}).ok().obj()["id"]; got != "hn-demo1" {
		t.Fatalf("other account show = %v", got)
	}

	// Booleans accept 1/0; `id` is ignored on update.
	r = e.put("/host_nodes/hn-demo1.json", url.Values{
		"display_name": {"renamed"}, "scheduling_enabled": {"0"}, "offering_disk_space_mb": {"1000"},
		"id": {"hn-zzzz"}, "uuid": {"demo1"},
	}).ok()
	wantKeys(t, r.body, hostNodeKeys...)
	hn = r.obj()
	if hn["display_name"] != "renamed" || hn["scheduling_enabled"] != false || hn["offering_disk_space_mb"] != 1000.0 || hn["id"] != "hn-demo1" {
		t.Fatalf("updated = %v", hn)
	}
	if got := e.get("/host_nodes/hn-demo1.json").ok().obj()["scheduling_enabled"]; got != false {
		t.Fatalf("scheduling_enabled = %v", got)
	}

	// Moving the node id moves the claim: the old id is free again.
	if got := e.put("/host_nodes/hn-demo1.json", url.Values{"node_id": {"hva-moved"}}).ok().obj()["node_id"]; got != "hva-moved" {
		t.Fatalf("node_id = %v", got)
	}
	if e.exists(proto.KindUniqueName, "host_node_node_id/hva.demo1") || !e.exists(proto.KindUniqueName, "host_node_node_id/hva-moved") {
		t.Fatalf("claim not moved")
	}
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo2", "node_id", "hva.demo1", "scheduling_enabled", "false")).ok()
	if e.get("/host_nodes/hn-demo2.json").ok().obj()["scheduling_enabled"] != false {
		t.Fatalf("scheduling_enabled=false not stored")
	}

	// DELETE answers an object and releases the claim.
	r = e.del("/host_nodes/hn-demo1.json").ok()
	if m := r.obj(); len(m) != 1 || m["uuid"] != "hn-demo1" {
		t.Fatalf("delete = %s", r.body)
	}
	if y := string(e.del("/host_nodes/hn-demo2.yml").ok().body); y != "---\n:uuid: hn-demo2\n" {
		t.Fatalf("yaml delete = %q", y)
	}
	if e.exists(proto.KindUniqueName, "host_node_node_id/hva-moved") || e.exists(proto.KindUniqueName, "host_node_node_id/hva.demo1") {
		t.Fatalf("claims not released")
	}
	e.get("/host_nodes/hn-demo1.json").apiError(404, "100")
	e.post("/host_nodes.json", hostNodeForm("node_id", "hva-moved")).ok()

	// A generated uuid has the canonical form.
	id := e.post("/host_nodes.json", hostNodeForm("node_id", "hva.gen")).ok().obj()["id"].(string)
	if len(id) != len("hn-")+8 || !strings.HasPrefix(id, "hn-") {
		t.Fatalf("generated id = %q", id)
	}
}

func TestHostNodesList(t *testing.T) {
	e := newEnv(t)
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-aaa1", "node_id", "hva.a1", "display_name", "one")).ok()
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-aab2", "node_id", "hva.a2", "arch", "x86", "hypervisor", "lxc",
		"offering_cpu_cores", "2", "offering_memory_size", "512")).ok()
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-bbb3", "node_id", "hva.b3", "scheduling_enabled", "false")).ok()
	e.seed(proto.KindNodeState, "hva.a1", proto.NodeState{NodeID: "hva.a1", State: "online"})
	e.seed(proto.KindNodeState, "hva.b3", proto.NodeState{NodeID: "hva.b3", State: "online"})

	ids := func(q string) []string {
		t.Helper()
		total, items := e.get("/host_nodes.json" + q).envelope()
		var out []string
		for _, it := range items {
			out = append(out, it["id"].(string))
		}
		if total != len(out) {
			t.Fatalf("%s: total %d, results %d", q, total, len(out))
		}
		return out
	}
	for q, want := range map[string][]string{
		"":                                    {"hn-bbb3", "hn-aab2", "hn-aaa1"},
		"?id=hn-aa":                           {"hn-aab2", "hn-aaa1"},
		"?id=aab":                             {"hn-aab2"},
		"?node_id=hva.b3":                     {"hn-bbb3"},
		"?display_name=one":                   {"hn-aaa1"},
		"?arch=x86":                           {"hn-aab2"},
		"?hypervisor=kvm":                     {"hn-bbb3", "hn-aaa1"},
		"?cpu_cores=2":                        {"hn-aab2"},
		"?memory_size=16384":                  {"hn-bbb3", "hn-aaa1"},
		"?status=online":                      {"hn-aaa1"}, // hn-bbb3 is online but closed for scheduling
		"?status=offline":                     {"hn-aab2"},
		"?status=whatever":                    {"hn-bbb3", "hn-aab2", "hn-aaa1"},
		"?sort_by=node_id.asc":                {"hn-aaa1", "hn-aab2", "hn-bbb3"},
		"?created_since=2000-01-01T00:00:00Z": {"hn-bbb3", "hn-aab2", "hn-aaa1"},
		"?created_until=2000-01-01T00:00:00Z": nil,
	} {
		if got := ids(q); !reflect.DeepEqual(got, want) {
			t.Fatalf("list %q = %v, want %v", q, got, want)
		}
	}
	total, items := e.get("/host_nodes.json?hypervisor=kvm&start=1&limit=1").envelope()
	if total != 2 || len(items) != 1 || items[0]["id"] != "hn-aaa1" || items[0]["status"] != "online" {
		t.Fatalf("paged = %d %v", total, items)
	}

	y := string(e.get("/host_nodes.yml?node_id=hva.a1").ok().body)
	if !strings.HasPrefix(y, "---\n- :total: 1\n  :start: 0\n  :limit: 250\n  :results:\n  - :id: hn-aaa1\n    :uuid: hn-aaa1\n    :node_id: hva.a1\n") ||
		!strings.HasSuffix(y, "    :status: online\n") {
		t.Fatalf("yaml list = %q", y)
	}

	e.rejects(400, "143",
		req{method: "GET", path: "/host_nodes.json?cpu_cores=many"},
		req{method: "GET", path: "/host_nodes.json?memory_size=1.5"},
		req{method: "GET", path: "/host_nodes.json?start=x"},
		req{method: "GET", path: "/host_nodes.json?created_since=yesterday"},
	)
}

func TestHostNodesErrors(t *testing.T) {
	e := newEnv(t)
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo1")).ok()

	// Unknown parameter names are named in a 400/143; account_id and stale
	// are framework parameters.
	m := e.post("/host_nodes.json", hostNodeForm("node_id", "hva.x", "colour", "blue")).apiError(400, "143")
	if !strings.Contains(m["message"].(string), "colour") {
		t.Fatalf("message = %v", m["message"])
	}
	e.do(req{method: "POST", path: "/host_nodes.json?stale=true", form: hostNodeForm("node_id", "hva.acc", "account_id", "a-whatever")}).ok()

	post := func(kv ...string) req {
		return req{method: "POST", path: "/host_nodes.json", form: hostNodeForm(kv...)}
	}
	put := func(kv ...string) req {
		f := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return req{method: "PUT", path: "/host_nodes/hn-demo1.json", form: f}
	}
	e.rejects(400, "143",
		post("node_id", "hva.x", "colour", "blue"),
		post("node_id", "hva.x", "id", "hn-x"),
		post("node_id", "hva.x", "created_at", "2020-01-01T00:00:00Z"),
		req{method: "POST", path: "/host_nodes.json", form: hostNodeForm("node_id", "<unset>", "node_id[]", "hva.x")},
		put("colour", "blue"),
		put("uuid", "hn-other"),
		req{method: "GET", path: "/host_nodes/sn-demo1.json"},
		req{method: "PUT", path: "/host_nodes/xx.json", form: url.Values{}},
		req{method: "DELETE", path: "/host_nodes/hn-.json"},
	)
	e.rejects(400, "110",
		post("node_id", "hva.demo1"),                   // duplicate node_id
		post("uuid", "hn-demo1", "node_id", "hva.new"), // duplicate uuid
		post("uuid", "hn-BAD!", "node_id", "hva.new"),
		post("uuid", "hn-toolongid", "node_id", "hva.new"),
		post("node_id", "sta.demo1"),
		post("node_id", "hvax"),
		post("node_id", "<unset>"),
		post("node_id", "hva.new", "arch", "arm64"),
		post("node_id", "hva.new", "arch", "<unset>"),
		post("node_id", "hva.new", "hypervisor", "vmware"),
		post("node_id", "hva.new", "hypervisor", "<unset>"),
		post("node_id", "hva.new", "offering_cpu_cores", "-1"),
		post("node_id", "hva.new", "offering_cpu_cores", "two"),
		post("node_id", "hva.new", "offering_cpu_cores", "<unset>"),
		post("node_id", "hva.new", "offering_memory_size", "<unset>"),
		post("node_id", "hva.new", "offering_memory_size", "1.5"),
		post("node_id", "hva.new", "offering_disk_space_mb", "-5"),
		post("node_id", "hva.new", "scheduling_enabled", "yes"),
		put("node_id", "hva.demo1x", "arch", "sparc"),
		put("node_id", "bad"),
		put("scheduling_enabled", "on"),
		put("offering_memory_size", "-1"),
	)
	// node_id taken by another node.
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo2", "node_id", "hva.demo2")).ok()
	e.rejects(400, "110", put("node_id", "hva.demo2"))
	e.rejects(404, "100",
		req{method: "GET", path: "/host_nodes/hn-nothere.json"},
		req{method: "PUT", path: "/host_nodes/hn-nothere.json", form: url.Values{"display_name": {"x"}}},
		req{method: "DELETE", path: "/host_nodes/hn-nothere.json"},
	)
	// PUT /host_nodes/:id/evacuate: host_evacuate_test.go.
}

// TestHostNodesConcurrentNodeID registers one node id from many clients at
// once: the claim makes exactly one win, the rest get the duplicate error.
func TestHostNodesConcurrentNodeID(t *testing.T) {
	e := newEnv(t)
	e.get("/host_nodes.json").ok() // create the caller's account first

	const n = 8
	type result struct {
		status int
		body   []byte
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			form := hostNodeForm("node_id", "hva.race", "display_name", "racer")
			hr, err := http.NewRequest("POST", e.ts.URL+Prefix+"/host_nodes.json", strings.NewReader(form.Encode()))
			if err != nil {
				results[i].err = err
				return
			}
			hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			hr.Header["X_VDC_ACCOUNT_UUID"] = []string{testAccount}
			<-start
			res, err := http.DefaultClient.Do(hr)
			if err != nil {
				results[i].err = err
				return
			}
			defer res.Body.Close()
			var buf bytes.Buffer
			_, err = buf.ReadFrom(res.Body)
			results[i] = result{status: res.StatusCode, body: buf.Bytes(), err: err}
		}(i)
	}
	close(start)
	wg.Wait()

	wins := 0
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("request: %v", r.err)
		}
		switch r.status {
		case http.StatusOK:
			wins++
		case http.StatusBadRequest:
			var doc map[string]any
			if err := json.Unmarshal(r.body, &doc); err != nil || doc["code"] != "110" {
				t.Fatalf("loser body = %s", r.body)
			}
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	}
	if wins != 1 {
		t.Fatalf("%d registrations won, want 1", wins)
	}
	total, _ := e.get("/host_nodes.json?node_id=hva.race").envelope()
	if total != 1 {
		t.Fatalf("%d host nodes with node_id hva.race, want 1", total)
	}
}
