package api

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/manager/state"
)

// otherAccount owns resources the test account must not see.
const otherAccount = "a-otherxx1"

// orderedForm is a form request whose pairs keep their order: url.Values
// sorts keys, which would break Rack's key[][name]/key[][value] arrays.
func orderedForm(method, path string, kv ...string) req {
	parts := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, url.QueryEscape(kv[i])+"="+url.QueryEscape(kv[i+1]))
	}
	return req{method: method, path: path, body: strings.Join(parts, "&"),
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}
}

// as returns r with the account header set to account ("" = none).
func as(account string, r req) req {
	r.account = acct(account)
	return r
}

// touchAccount makes the account exist, so that later rejected requests in
// its name do not change state by auto-creating it.
func (e *env) touchAccount(account string) {
	e.t.Helper()
	e.do(req{method: "GET", path: "/security_groups.json", account: acct(account)}).ok()
}

// putRecord writes a record directly through raft, for kinds that have no
// routes yet (instances) or whose routes belong to other issues (vifs).
func (e *env) putRecord(kind, id string, v any) {
	e.t.Helper()
	var b state.Builder
	b.Put(kind, id, v)
	txn, err := b.Txn()
	if err != nil {
		e.t.Fatalf("txn: %v", err)
	}
	if _, err := e.srv.Apply(context.Background(), state.CmdTxn, txn); err != nil {
		e.t.Fatalf("put %s/%s: %v", kind, id, err)
	}
}

// seedStorage registers a backup storage (node "" = no copy node).
func (e *env) seedStorage(id, nodeID string) {
	e.t.Helper()
	e.post("/backup_storages.json", url.Values{
		"uuid": {id}, "storage_type": {"local"}, "base_uri": {"file:///var/lib/vdc/" + id}, "node_id": {nodeID},
	}).ok()
}

// seedBackupObject registers an available backup object of account.
func (e *env) seedBackupObject(account, storage string, extra url.Values) string {
	e.t.Helper()
	form := url.Values{"backup_storage_id": {storage}, "size": {"1048576"}, "state": {"available"}}
	for k, v := range extra {
		form[k] = v
	}
	r := e.do(req{method: "POST", path: "/backup_objects.json", form: form, account: acct(account)}).ok().obj()
	return r["id"].(string)
}

// seedImage registers an image of account (operator call, no header).
func (e *env) seedImage(account, bo string, extra url.Values) string {
	e.t.Helper()
	form := url.Values{"backup_object_id": {bo}, "account_id": {account}}
	for k, v := range extra {
		form[k] = v
	}
	r := e.do(req{method: "POST", path: "/images.json", form: form, account: acct("")}).ok().obj()
	return r["id"].(string)
}

func labelNames(t *testing.T, docs []any) []string {
	t.Helper()
	var out []string
	for _, d := range docs {
		out = append(out, d.(map[string]any)["name"].(string))
	}
	return out
}

func TestLabels(t *testing.T) {
	e := newEnv(t)
	e.touchAccount(otherAccount)
	e.seedStorage("bkst-lbl", "")
	bo := e.seedBackupObject(testAccount, "bkst-lbl", nil)
	img := e.seedImage(testAccount, bo, nil)
	sg := e.post("/security_groups.json", url.Values{"rule": {"tcp:22,22,ip4:0.0.0.0"}}).ok().obj()["id"].(string)
	ssh := e.post("/ssh_key_pairs.json", url.Values{"public_key": {testPublicKey(t)}}).ok().obj()["id"].(string)

	for _, c := range []struct{ base, id, badID string }{
		{"/security_groups", sg, "sg-nothere"},
		{"/ssh_key_pairs", ssh, "ssh-nothere"},
		{"/images", img, "wmi-nothere"},
		{"/backup_objects", bo, "bo-nothere"},
	} {
		base := c.base + "/" + c.id + "/labels"
		t.Logf("labels of %s", c.base)

		if got := e.get(base + ".json").ok().arr(); len(got) != 0 {
			t.Fatalf("%s: initial labels = %v", base, got)
		}

		red := e.put(base+"/color.json", url.Values{"value": {"red"}}).ok().obj()
		if red["resource_uuid"] != c.id || red["name"] != "color" || red["value"] != "red" ||
			red["value_type"] != 1.0 || red["created_at"] == nil || red["updated_at"] == nil {
			t.Fatalf("%s: set color = %v", base, red)
		}
		long := strings.Repeat("x", 256)
		big := e.post(base+"/big.json", url.Values{"value": {long}}).ok().obj()
		if big["value_type"] != 2.0 || big["value"] != long {
			t.Fatalf("%s: blob label = %v", base, big)
		}
		if edge := e.post(base+"/edge.json", url.Values{"value": {long[:255]}}).ok().obj(); edge["value_type"] != 1.0 {
			t.Fatalf("%s: 255-byte label type = %v", base, edge["value_type"])
		}

		if got := e.get(base + "/color.json").ok().obj(); got["value"] != "red" {
			t.Fatalf("%s: show color = %v", base, got)
		}
		if got := labelNames(t, e.get(base+".json?name=co").ok().arr()); len(got) != 1 || got[0] != "color" {
			t.Fatalf("%s: prefix list = %v", base, got)
		}

		many := e.do(orderedForm("POST", base+".json", "name[]", "a", "name[]", "b", "value[]", "1", "value[]", "2")).ok().arr()
		if got := labelNames(t, many); strings.Join(got, ",") != "a,b" {
			t.Fatalf("%s: bulk name[] = %v", base, got)
		}
		many = e.do(orderedForm("PUT", base+".json",
			"label[][name]", "c", "label[][value]", "3", "label[][name]", "a", "label[][value]", "10")).ok().arr()
		if got := labelNames(t, many); strings.Join(got, ",") != "c,a" {
			t.Fatalf("%s: bulk label[] = %v", base, got)
		}
		if v := many[1].(map[string]any)["value"]; v != "10" {
			t.Fatalf("%s: bulk update of a = %v", base, v)
		}

		blue := e.put(base+"/color.json", url.Values{"value": {"blue"}}).ok().obj()
		if blue["value"] != "blue" || blue["created_at"] != red["created_at"] {
			t.Fatalf("%s: update color = %v (was %v)", base, blue, red)
		}

		// The resource document carries the labels in creation order.
		doc := e.get(c.base + "/" + c.id + ".json").ok().obj()
		if got := strings.Join(labelNames(t, doc["labels"].([]any)), ","); got != "color,big,edge,a,b,c" {
			t.Fatalf("%s: document labels = %v", base, got)
		}

		e.rejects(404, "187", req{method: "GET", path: base + "/nope.json"})
		e.rejects(400, "143",
			req{method: "PUT", path: base + "/x.json", form: url.Values{}},
			req{method: "POST", path: base + "/x.json", form: url.Values{"value": {""}}},
			req{method: "POST", path: base + "/" + strings.Repeat("n", 256) + ".json", form: url.Values{"value": {"v"}}},
			req{method: "POST", path: base + ".json", form: url.Values{}},
			orderedForm("POST", base+".json", "name[]", "a", "name[]", "b", "value[]", "1"),
			orderedForm("PUT", base+".json", "name[]", "", "value[]", "1"),
			orderedForm("PUT", base+".json", "label[][name]", "a"),
			orderedForm("PUT", base+".json", "label[][value]", "1"),
			orderedForm("PUT", base+".json", "label", "x"),
		)

		// Other account, unknown id, bad syntax: on every label route.
		for _, id := range []string{c.id, c.badID, "xx-1"} {
			status, code := 404, "100"
			who := otherAccount
			if id != c.id {
				who = testAccount
			}
			if id == "xx-1" {
				status, code = 400, "143"
			}
			b := c.base + "/" + id + "/labels"
			e.rejects(status, code,
				as(who, req{method: "GET", path: b + ".json"}),
				as(who, req{method: "GET", path: b + "/color.json"}),
				as(who, req{method: "POST", path: b + "/color.json", form: url.Values{"value": {"v"}}}),
				as(who, req{method: "PUT", path: b + "/color.json", form: url.Values{"value": {"v"}}}),
				as(who, orderedForm("POST", b+".json", "name[]", "k", "value[]", "v")),
				as(who, orderedForm("PUT", b+".json", "name[]", "k", "value[]", "v")),
				as(who, req{method: "DELETE", path: b + "/color.json"}),
				as(who, req{method: "DELETE", path: b + ".json"}),
			)
		}
		// The operator (no header) sees every account's labels.
		if got := e.do(req{method: "GET", path: base + "/color.json", account: acct("")}).ok().obj(); got["value"] != "blue" {
			t.Fatalf("%s: operator show = %v", base, got)
		}

		r := e.del(base + "/a.json").ok()
		if len(r.body) != 0 {
			t.Fatalf("%s: delete body = %q", base, r.body)
		}
		e.get(base+"/a.json").apiError(404, "187")
		e.unchanged(func() { e.del(base + "/a.json").ok() })

		e.del(base + ".json?name=b").ok()
		if got := strings.Join(labelNames(t, e.get(base+".json").ok().arr()), ","); got != "color,big,edge,c" {
			t.Fatalf("%s: after delete name=b: %v", base, got)
		}
		e.del(base + ".json").ok()
		if got := e.get(base + ".json").ok().arr(); len(got) != 0 {
			t.Fatalf("%s: after clear: %v", base, got)
		}
	}

	// YAML rendering of a label list.
	e.put("/security_groups/"+sg+"/labels/env.json", url.Values{"value": {"prod"}}).ok()
	y := string(e.get("/security_groups/" + sg + "/labels.yml").ok().body)
	if !strings.HasPrefix(y, "---\n- :resource_uuid: "+sg+"\n  :name: env\n  :value_type: 1\n  :value: prod\n") {
		t.Fatalf("yaml labels = %q", y)
	}
}

// TestCreateLabels checks the `labels` parameter of the create routes.
func TestCreateLabels(t *testing.T) {
	e := newEnv(t)
	doc := e.do(orderedForm("POST", "/security_groups.json",
		"labels[][name]", "tier", "labels[][value]", "web", "labels[][name]", "zone", "labels[][value]", "a")).ok().obj()
	if got := strings.Join(labelNames(t, doc["labels"].([]any)), ","); got != "tier,zone" {
		t.Fatalf("labels = %v", got)
	}
	e.rejects(400, "143",
		orderedForm("POST", "/security_groups.json", "labels[][name]", "", "labels[][value]", "x"),
		orderedForm("POST", "/security_groups.json", "labels[][name]", "x", "labels[][value]", ""),
		orderedForm("POST", "/ssh_key_pairs.json", "labels[][name]", "x"),
		orderedForm("POST", "/ssh_key_pairs.json", "labels", "x"),
	)
}
