package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Tests of spec §1 conventions, on backup storages as the sample resource.

func seedStorages(t *testing.T, e *env, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		e.post("/backup_storages.json", url.Values{
			"uuid": {fmt.Sprintf("bkst-s%d", i)}, "storage_type": {"local"},
			"base_uri": {fmt.Sprintf("file:///b/%d", i)}, "display_name": {fmt.Sprintf("n%d", i%3)},
		}).ok()
	}
}

func TestFormatSuffix(t *testing.T) {
	e := newEnv(t)
	seedStorages(t, e, 1)
	for _, tc := range []struct{ path, ctype string }{
		{"/backup_storages/bkst-s0.json", "application/json"},
		{"/backup_storages/bkst-s0.yml", "text/yaml"},
		{"/backup_storages/bkst-s0.yaml", "text/yaml"},
		{"/backup_storages/bkst-s0", "application/json"},
		{"/backup_storages/bkst-s0.xml", "application/json"},
	} {
		r := e.get(tc.path).ok()
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s: content type %q, want %s", tc.path, ct, tc.ctype)
		}
		if tc.ctype == "text/yaml" && !strings.HasPrefix(string(r.body), "---\n:id: bkst-s0\n") {
			t.Errorf("%s: body %q", tc.path, r.body)
		}
	}
	// Query strings come after the suffix, as mussel sends them.
	total, _ := e.get("/backup_storages.yml?storage_type=local").envelopeYAML(t)
	if total != 1 {
		t.Errorf("yml list with query: total %d", total)
	}
}

// envelopeYAML checks the Ruby YAML envelope and returns its total.
func (r *resp) envelopeYAML(t *testing.T) (int, string) {
	t.Helper()
	body := string(r.ok().body)
	if !strings.HasPrefix(body, "---\n- :total: ") {
		t.Fatalf("yaml envelope = %q", body)
	}
	var total int
	fmt.Sscanf(strings.TrimPrefix(body, "---\n- :total: "), "%d", &total)
	for _, k := range []string{"\n  :start: ", "\n  :limit: ", "\n  :results:"} {
		if !strings.Contains(body, k) {
			t.Fatalf("yaml envelope lacks %q: %q", k, body)
		}
	}
	return total, body
}

func TestErrorDocumentYAML(t *testing.T) {
	e := newEnv(t)
	r := e.get("/backup_storages/bkst-nope.yml")
	want := "---\n:error: Dcmgr::Endpoints::UnknownUUIDResource\n:message: bkst-nope\n:code: '100'\n"
	if r.status != 404 || string(r.body) != want {
		t.Fatalf("got %d %q, want 404 %q", r.status, r.body, want)
	}
}

func TestRequestIDAndCORS(t *testing.T) {
	e := newEnv(t)
	ids := map[string]bool{}
	for _, path := range []string{"/backup_storages.json", "/backup_storages/bad.json", "/nonexistent.json"} {
		r := e.get(path)
		id := r.header.Get("X-VDC-Request-ID")
		if len(id) != 40 || ids[id] {
			t.Errorf("%s: request id %q (want 40 hex chars, unique)", path, id)
		}
		ids[id] = true
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header", path)
		}
	}
	r := e.do(req{method: "OPTIONS", path: "/backup_storages.json", header: map[string]string{
		"Origin": "http://ui.example", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "X-VDC-Account-UUID",
	}})
	if r.status != 200 || !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "DELETE") ||
		r.header.Get("Access-Control-Allow-Headers") != "X-VDC-Account-UUID" {
		t.Errorf("preflight = %d %v", r.status, r.header)
	}
}

func TestAccountHeader(t *testing.T) {
	e := newEnv(t)
	exists := func(id string) bool {
		ok := false
		_ = e.srv.Store().View(func(tx *state.Tx) error { ok = tx.Exists(proto.KindAccount, id); return nil })
		return ok
	}
	// Both spellings are read and auto-create the account.
	e.do(req{method: "GET", path: "/backup_storages.json", account: acct("a-under01")}).ok()
	if !exists("a-under01") {
		t.Fatal("underscore header did not create the account")
	}
	e.do(req{method: "GET", path: "/backup_storages.json", account: acct(""),
		header: map[string]string{"X-VDC-Account-UUID": "a-dash0001"}}).ok()
	if !exists("a-dash0001") {
		t.Fatal("dash header did not create the account")
	}
	// A value without the a- prefix is 400/103 and creates nothing.
	e.rejects(400, "103",
		req{method: "GET", path: "/backup_storages.json", account: acct("shpoolxx")},
		req{method: "GET", path: "/backup_storages.json", account: acct("a-BAD!")})

	// A disabled account is refused with 403/104, also right after a request
	// that found it enabled (the account check is memoized per record write).
	e.do(req{method: "GET", path: "/backup_storages.json", account: acct("a-under01")}).ok()
	_, err := e.api.commit(t.Context(), func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		var acc proto.Account
		m, err := tx.Get(proto.KindAccount, "a-under01", &acc)
		if err != nil {
			return nil, err
		}
		acc.Enabled = false
		b.Update(proto.KindAccount, acc.ID, m.ModifyIndex, acc)
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.rejects(403, "104", req{method: "POST", path: "/backup_storages.json", account: acct("a-under01"),
		form: url.Values{"storage_type": {"local"}, "base_uri": {"file:///x"}}})
}

func TestListEnvelopeParams(t *testing.T) {
	e := newEnv(t)
	seedStorages(t, e, 7)

	total, items := e.get("/backup_storages.json").envelope()
	if total != 7 || len(items) != 7 || items[0]["id"] != "bkst-s6" || items[6]["id"] != "bkst-s0" {
		t.Fatalf("default order (newest first): total %d, first %v", total, items[0]["id"])
	}
	total, items = e.get("/backup_storages.json?start=2&limit=3").envelope()
	if total != 7 || len(items) != 3 || items[0]["id"] != "bkst-s4" {
		t.Fatalf("paged: total %d items %d first %v", total, len(items), items[0]["id"])
	}
	env := e.get("/backup_storages.json?limit=0").ok().arr()[0].(map[string]any)
	if env["limit"].(float64) != 250 {
		t.Fatalf("limit 0 becomes %v, want 250", env["limit"])
	}
	_, items = e.get("/backup_storages.json?sort_by=base_uri.asc").envelope()
	if items[0]["base_uri"] != "file:///b/0" || items[6]["base_uri"] != "file:///b/6" {
		t.Fatalf("sort_by asc: first %v", items[0]["base_uri"])
	}
	_, items = e.get("/backup_storages.json?sort_by=base_uri").envelope()
	if items[0]["base_uri"] != "file:///b/0" {
		t.Fatalf("bare sort_by sorts ascending: first %v", items[0]["base_uri"])
	}
	total, _ = e.get("/backup_storages.json?filter=deleted_at.nil").envelope()
	if total != 7 {
		t.Fatalf("filter deleted_at.nil total %d", total)
	}
	total, _ = e.get("/backup_storages.json?filter[]=deleted_at.not_nil").envelope()
	if total != 0 {
		t.Fatalf("filter deleted_at.not_nil total %d", total)
	}
	total, _ = e.get("/backup_storages.json?created_since=2000-01-01T00:00:00Z&created_until=2999-01-01T00:00:00Z").envelope()
	if total != 7 {
		t.Fatalf("created range total %d", total)
	}
	total, _ = e.get("/backup_storages.json?created_until=2000-01-01T00:00:00Z").envelope()
	if total != 0 {
		t.Fatalf("created_until in the past total %d", total)
	}

	for _, q := range []string{"start=-1", "start=x", "limit=1.5", "sort_by=a.b.c", "sort_by=base_uri.up",
		"filter=x.maybe", "created_since=yesterday", "deleted_until=2013-13-01",
		"created_since=2014-01-01T00:00:00Z&created_until=2013-01-01T00:00:00Z"} {
		e.rejects(400, "143", req{method: "GET", path: "/backup_storages.json?" + q})
	}
	for _, q := range []string{"sort_by=nosuch.asc", "filter=nosuch.nil", "terminated_since=2013-01-01T00:00:00Z"} {
		e.rejects(400, "110", req{method: "GET", path: "/backup_storages.json?" + q})
	}
}

func TestBodies(t *testing.T) {
	e := newEnv(t)
	// ActiveResource-style JSON body: the first value is the parameter hash.
	r := e.do(req{method: "POST", path: "/backup_storages.json",
		header: map[string]string{"Content-Type": "application/json"},
		body:   `{"backup_storage": {"uuid": "bkst-json1", "storage_type": "local", "base_uri": "file:///j"}}`})
	if r.ok().obj()["id"] != "bkst-json1" {
		t.Fatalf("json body: %s", r.body)
	}
	r = e.do(req{method: "POST", path: "/backup_storages.yml",
		header: map[string]string{"Content-Type": "text/yaml"},
		body:   "---\n:backup_storage:\n  :uuid: bkst-yaml1\n  :storage_type: local\n  :base_uri: file:///y\n"})
	if !strings.Contains(string(r.ok().body), ":id: bkst-yaml1") {
		t.Fatalf("yaml body: %s", r.body)
	}
	for _, body := range []string{`{"x": `, `[1,2]`, `"just a string"`} {
		e.unchanged(func() {
			r := e.do(req{method: "POST", path: "/backup_storages.json",
				header: map[string]string{"Content-Type": "application/json"}, body: body})
			if r.status != 400 || string(r.body) != "Invalid request body." {
				t.Errorf("body %q: %d %q", body, r.status, r.body)
			}
		})
	}
	// Rack type clashes are 400/143, not a crash.
	e.rejects(400, "143", req{method: "POST", path: "/backup_storages.json",
		body: "a[]=1&a[b]=2", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
}

func TestUnknownRoute(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/nothing.json", "/nothing/at/all.json"} {
		if r := e.get(path); r.status != http.StatusNotFound {
			t.Errorf("%s: status %d", path, r.status)
		}
	}
}
