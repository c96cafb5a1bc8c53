package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
)

// Hostile input on every registered route (the routes are walked from the
// API's route table, the parameters each reads from the package's source:
// routeparams_test.go). Each answer must be the spec's: the exact status
// and code where the spec (or the framework in front of every route)
// decides it, and otherwise a 200, or an error document whose status
// matches its code, never an undocumented 5xx; and a request that is
// refused changes nothing.

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send is e.do without following redirects, with the raw query appended
// untouched (so that malformed escapes reach the server).
func (e *env) send(r req, rawQuery string) *resp {
	e.t.Helper()
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	} else if r.body != "" {
		body = strings.NewReader(r.body)
	}
	u := e.ts.URL + Prefix + r.path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	hr, err := http.NewRequest(r.method, u, body)
	if err != nil {
		e.t.Fatalf("new request %s: %v", u, err)
	}
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	account := testAccount
	if r.account != nil {
		account = *r.account
	}
	if account != "" {
		hr.Header["X_VDC_ACCOUNT_UUID"] = []string{account}
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := noRedirect.Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return &resp{t: e.t, status: res.StatusCode, header: res.Header, body: b}
}

// expect is an exact answer: status and code ("" = the plain-text
// "Invalid request body." answer of §1.3).
type expect struct {
	status int
	code   string
}

func (r *resp) is(x expect) bool {
	if r.status != x.status {
		return false
	}
	if x.code == "" {
		return string(r.body) == "Invalid request body."
	}
	var doc map[string]any
	return json.Unmarshal(r.body, &doc) == nil && doc["code"] == x.code &&
		strings.HasPrefix(fmt.Sprint(doc["error"]), "Dcmgr::Endpoints::")
}

// sane checks an answer whose exact code is the route's business: a 200, or
// an error document whose status is its code's, never an undocumented 5xx.
func (r *resp) sane() error {
	if r.status == http.StatusOK {
		return nil
	}
	if r.status == http.StatusBadRequest && string(r.body) == "Invalid request body." {
		return nil
	}
	var doc map[string]any
	if err := json.Unmarshal(r.body, &doc); err != nil {
		return fmt.Errorf("status %d without an error document: %.200s", r.status, r.body)
	}
	code, _ := doc["code"].(string)
	k := errs.KindFromCode(code)
	if k == errs.Internal || code == "900" {
		return fmt.Errorf("internal error (status %d): %.300s", r.status, r.body)
	}
	if want := k.Status(); want != r.status && !(code == "100" && r.status == 404) {
		return fmt.Errorf("status %d with code %s (whose status is %d): %.200s", r.status, code, want, r.body)
	}
	return nil
}

func (e *env) appliedIndex() uint64 { return e.srv.Store().LastIndex() }

// yamlBomb is a billion-laughs document (10^8 expanded nodes).
const yamlBomb = "x:\n a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" +
	" b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
	" d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n" +
	" f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n" +
	" h: [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"

// TestHostileRequestsOnEveryRoute sends, to every route, requests that the
// framework in front of the routes must refuse with the spec's answer
// before any route logic runs, and checks that nothing changed.
func TestHostileRequestsOnEveryRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("walks every route")
	}
	w := newWorld(t)
	w.api.cfg.MaxBodyBytes = 64 << 10
	deep := "a" + strings.Repeat("[a]", 120) + "=1"
	variants := []struct {
		name  string
		r     func(method, path string) req
		query string
		want  expect
	}{
		{"conflicting types in the body", func(m, p string) req {
			return req{method: m, path: p, body: "zz[]=1&zz[k]=2", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}
		}, "", expect{400, "143"}},
		{"conflicting types in the query", func(m, p string) req { return req{method: m, path: p} }, "a=1&a[b]=2", expect{400, "143"}},
		{"malformed %-escape", func(m, p string) req { return req{method: m, path: p} }, "x=%zz", expect{400, "143"}},
		{"key that is not UTF-8", func(m, p string) req { return req{method: m, path: p} }, "%ff%fe=1", expect{400, "143"}},
		{"nesting deeper than Rack allows", func(m, p string) req { return req{method: m, path: p} }, deep, expect{400, "143"}},
		{"JSON that does not parse", func(m, p string) req {
			return req{method: m, path: p, body: `{"x": {"a": `, header: map[string]string{"Content-Type": "application/json"}}
		}, "", expect{400, ""}},
		{"JSON that is not {key: {params}}", func(m, p string) req {
			return req{method: m, path: p, body: `{"x": ["a"]}`, header: map[string]string{"Content-Type": "application/json"}}
		}, "", expect{400, ""}},
		{"YAML that does not parse", func(m, p string) req {
			return req{method: m, path: p, body: "x: [a\n", header: map[string]string{"Content-Type": "text/yaml"}}
		}, "", expect{400, ""}},
		{"YAML alias bomb", func(m, p string) req {
			return req{method: m, path: p, body: yamlBomb, header: map[string]string{"Content-Type": "application/yaml"}}
		}, "", expect{400, ""}},
		{"YAML Ruby object tag", func(m, p string) req {
			return req{method: m, path: p, body: "--- !ruby/object:Gem::Installer\ni: x\n", header: map[string]string{"Content-Type": "text/yaml"}}
		}, "", expect{400, ""}},
		{"malformed multipart", func(m, p string) req {
			return req{method: m, path: p, body: "--b\r\nno headers end", header: map[string]string{"Content-Type": "multipart/form-data; boundary=b"}}
		}, "", expect{400, ""}},
		{"body over the limit", func(m, p string) req {
			return req{method: m, path: p, body: "x=" + strings.Repeat("A", 65<<10), header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}
		}, "", expect{413, "904"}},
		{"account header with a path", func(m, p string) req { return req{method: m, path: p, account: acct("a-../../etc")} }, "", expect{400, "103"}},
		{"account header without prefix", func(m, p string) req { return req{method: m, path: p, account: acct("shpoolxx")} }, "", expect{400, "103"}},
		{"account header with SQL", func(m, p string) req { return req{method: m, path: p, account: acct("a-x' OR '1'='1")} }, "", expect{400, "103"}},
		{"account header in unicode", func(m, p string) req { return req{method: m, path: p, account: acct("a-ünï")} }, "", expect{400, "103"}},
		{"quota header that is not JSON", func(m, p string) req {
			return req{method: m, path: p, header: map[string]string{"X-VDC-Account-Quota": "{instance.count: 1"}}
		}, "", expect{400, "143"}},
	}
	n := 0
	for _, route := range w.routes() {
		method, path := routeMethod(route), w.fill(route, nil)+".json"
		for _, v := range variants {
			before := w.dump()
			r := w.send(v.r(method, path), v.query)
			if !r.is(v.want) {
				t.Errorf("%s, %s: got %d %.200s; want %d %q", route, v.name, r.status, r.body, v.want.status, v.want.code)
			}
			if after := w.dump(); !equalDumps(before, after) {
				t.Fatalf("%s, %s: a refused request changed the state", route, v.name)
			}
			n++
		}
	}
	t.Logf("%d routes × %d hostile requests = %d, each refused as the spec says, nothing changed", len(w.routes()), len(variants), n)
}

func equalDumps(a, b map[string]map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, av := range a {
		bv := b[k]
		if len(av) != len(bv) {
			return false
		}
		for id, x := range av {
			if bv[id] != x {
				return false
			}
		}
	}
	return true
}

// hostilePathValues are ids no route may take for a real one.
var hostilePathValues = []struct{ name, value string }{
	{"SQL", url.PathEscape("x' OR '1'='1'; DROP TABLE instances;--")},
	{"shell", url.PathEscape("$(reboot)`id`|x")},
	{"unicode", url.PathEscape("ünïcödé✓😀\u202e")},
	{"NUL", "x%00y"},
	{"huge", strings.Repeat("9", 4000)},
	{"YAML/JSON", url.PathEscape(`{"$gt":""}`)},
	// An escaped traversal stays one (bad) id: it is not split at the
	// slashes and cleaned into another route.
	{"path traversal", "..%2F..%2F..%2Fetc%2Fpasswd"},
}

// pathExpect is the spec's answer to a hostile value of placeholder ph in
// route (§1.4: a uuid that is not `^<prefix>-\w+` is 400/143), with the
// spec's exceptions.
func pathExpect(route, ph string) expect {
	switch {
	case ph == "{id}" && routeResource(route) == "accounts":
		return expect{400, "110"} // §2.17: wrong prefix → 400/110
	case ph == "{monitor_id}" && routeResource(route) == "instances":
		// §2.1 16–19: monitoring items are labels, not uuids; unknown → 404/100.
		return expect{404, "100"}
	case ph == "{vif_id}" && (strings.HasSuffix(route, "/attach") || strings.HasSuffix(route, "/detach")):
		return expect{500, "146"} // §2.8 14–15: vif must exist, else 500/146
	case ph == "{name}":
		switch routeMethod(route) {
		case "GET":
			return expect{404, "187"} // §2.1 22–29: missing label → 404/187
		case "DELETE":
			return expect{200, ""} // removes nothing; 200, empty body
		}
		return expect{400, "143"} // setting a label needs `value`
	}
	return expect{400, "143"}
}

// TestHostilePathValuesOnEveryRoute puts hostile ids into every path
// placeholder of every route.
func TestHostilePathValuesOnEveryRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("walks every route")
	}
	w := newWorld(t)
	n := 0
	for _, route := range w.routes() {
		for _, ph := range placeholder.FindAllString(route, -1) {
			want := pathExpect(route, ph)
			for _, hv := range hostilePathValues {
				path := w.fill(route, map[string]string{ph: hv.value}) + ".json"
				before := w.dump()
				r := w.send(req{method: routeMethod(route), path: path, form: url.Values{}}, "")
				ok := r.is(want) || (want.status == 200 && r.status == 200 && len(r.body) == 0)
				if !ok {
					t.Errorf("%s, %s %s: got %d %.200s; want %d/%s", route, ph, hv.name, r.status, r.body, want.status, want.code)
				}
				if after := w.dump(); !equalDumps(before, after) {
					t.Fatalf("%s, %s %s: the state changed", route, ph, hv.name)
				}
				n++
			}
		}
	}
	// A literal "/../" walks out of the route: no route (404/100), not a
	// redirect to wherever it leads.
	for _, p := range []string{"/ssh_key_pairs/../host_nodes/hn-w1.json", "/ssh_key_pairs/" + w.ids["ssh_key_pairs"] + "/../../../../etc/passwd",
		"/./host_nodes.json"} {
		for _, m := range []string{"GET", "PUT", "DELETE"} {
			before := w.dump()
			if r := w.send(req{method: m, path: p, form: url.Values{}}, ""); !r.is(expect{404, "100"}) {
				t.Errorf("%s %s: got %d %.200s; want 404/100", m, p, r.status, r.body)
			}
			if !equalDumps(before, w.dump()) {
				t.Fatalf("%s %s changed the state", m, p)
			}
			n++
		}
	}
	t.Logf("%d hostile path values, each answered as the spec says, nothing changed", n)
}

// nTypes is how many of hostileValues (the first) are wrong types.
const nTypes = 2

// hostileValues are the parameter values of the per-parameter walk.
var hostileValues = []struct {
	name string
	set  func(f url.Values, p string) // puts the hostile value of p into f
	text string                       // the string sent, if it is one
}{
	{"array instead of a string", func(f url.Values, p string) { f.Del(p); f.Set(p+"[]", "x") }, ""},
	{"hash instead of a string", func(f url.Values, p string) { f.Del(p); f.Set(p+"[k]", "x") }, ""},
	{"SQL", nil, "' OR '1'='1'; DROP TABLE instances;--"},
	{"shell", nil, "$(reboot)`id`;rm -rf / |"},
	{"path traversal", nil, "../../../../etc/passwd"},
	{"unicode", nil, "ünïcödé ✓ 😀 \u202e\u0000 \U0010FFFF"},
	{"huge number", nil, "99999999999999999999999999999"},
	{"negative", nil, "-1"},
	{"float", nil, "1.5e308"},
	{"empty", nil, ""},
	{"YAML/JSON", nil, "{\"$gt\": \"\"}\n--- !ruby/object:Gem::Installer\n<<: *x"},
	{"huge string", nil, strings.Repeat("A", 20000)},
	{"format verbs", nil, "%s%n%x%p%!"},
}

// baselines are valid requests of routes that need several parameters
// before they look at the one being mutated. Routes not listed start from
// an empty form.
func (w *world) baselines() map[string]url.Values {
	return map[string]url.Values{
		"POST /ssh_key_pairs":   {"display_name": {"k"}},
		"POST /security_groups": {"rule": {"tcp:22,22,ip4:0.0.0.0"}, "display_name": {"g"}},
		"POST /networks": {"dc_network": {"dcn-w1"}, "network": {"10.20.0.0"}, "prefix": {"24"},
			"network_mode": {"securitygroup"}},
		"POST /instances": {"image_id": {"wmi-w1"}, "hypervisor": {"kvm"}, "cpu_cores": {"1"}, "memory_size": {"256"},
			"vifs": {`{"eth0":{"network":"nw-w1"}}`}},
		"POST /backup_storages": {"storage_type": {"local"}, "base_uri": {"file:///x/"}},
		"POST /backup_objects":  {"backup_storage_id": {"bkst-w1"}, "size": {"1024"}},
		"POST /images":          {"backup_object_id": {"bo-w1"}},
		"POST /dc_networks":     {"name": {"d"}},
		"POST /host_nodes": {"node_id": {"hva.h2"}, "arch": {"x86_64"}, "hypervisor": {"kvm"},
			"offering_cpu_cores": {"2"}, "offering_memory_size": {"1024"}},
		"POST /storage_nodes": {"node_id": {"sta.s2"}, "storage_type": {"iscsi"}, "offering_disk_space_mb": {"10"},
			"ip_address": {"127.0.0.1"}},
		"POST /ip_pools":                           {"display_name": {"p"}, "dc_networks[]": {"dcn-w1"}},
		"PUT /ip_pools/{id}/acquire":               {"network_id": {"nw-w1"}},
		"POST /instances/{instance_id}/monitoring": {"title": {"t"}, "enabled": {"true"}},
		"POST /networks/{id}/vifs":                 {},
		"PUT /networks/{id}/dhcp/reserve":          {"ipaddr": {"10.9.0.50"}},
		"PUT /networks/{id}/dhcp_ranges/add":       {"range_begin": {"10.9.0.60"}, "range_end": {"10.9.0.70"}},
	}
}

// routeOrder walks reads first and deletions last, so that what the walk
// itself deletes does not hide the routes after it.
func routeOrder(routes []string) []string {
	rank := map[string]int{"GET": 0, "POST": 1, "PUT": 2, "DELETE": 3}
	out := append([]string(nil), routes...)
	sort.SliceStable(out, func(i, j int) bool { return rank[routeMethod(out[i])] < rank[routeMethod(out[j])] })
	return out
}

// TestHostileParametersOnEveryRoute gives each parameter every route reads
// each hostile value in turn (on top of the route's baseline): wrong types,
// huge values, injection strings, unicode, empty. Every answer is a 200 or
// an error document true to its code, never an undocumented 5xx; a
// refused request applies nothing; a hostile string that is echoed back in
// the document comes back byte for byte (nothing was interpreted).
func TestHostileParametersOnEveryRoute(t *testing.T) {
	if testing.Short() {
		t.Skip("walks every route")
	}
	w := newWorld(t)
	rp := routeParams(t, w.api)
	base := w.baselines()
	// The full matrix (every value on every parameter, ~34k requests, a
	// minute, several under -race) runs with VDC_HOSTILE_FULL=1; by default
	// each parameter gets one wrong type and one of the strings, both
	// rotating with the parameter, so that every value meets about a
	// tenth of all parameters, on every kind of route, in each run.
	full := os.Getenv("VDC_HOSTILE_FULL") == "1"
	requests, refused, accepted := 0, 0, 0
	pair := 0
	for _, route := range routeOrder(w.routes()) {
		method, path := routeMethod(route), w.fill(route, nil)+".json"
		for _, p := range rp[route] {
			pair++
			for i, hv := range hostileValues {
				if !full && i != pair%nTypes && i != nTypes+pair%(len(hostileValues)-nTypes) {
					continue
				}
				form := url.Values{}
				for k, v := range base[route] {
					form[k] = v
				}
				if hv.set != nil {
					hv.set(form, p)
				} else {
					form.Set(p, hv.text)
				}
				idx := w.appliedIndex()
				r := w.send(req{method: method, path: path, form: form}, "")
				requests++
				if err := r.sane(); err != nil {
					t.Errorf("%s, %s = %s: %v", route, p, hv.name, err)
					continue
				}
				if r.status != http.StatusOK || method == "GET" {
					if r.status != http.StatusOK {
						refused++
					}
					if after := w.appliedIndex(); after != idx {
						t.Errorf("%s, %s = %s: answered %d but applied raft entries %d..%d", route, p, hv.name, r.status, idx+1, after)
					}
					continue
				}
				accepted++
				if hv.set == nil && hv.text != "" {
					var doc map[string]any
					// A route may ignore the parameter (PUT /networks/:id takes
					// display_name only), but what it stored is what was sent.
					if json.Unmarshal(r.body, &doc) == nil {
						if got, ok := doc[p].(string); ok && got != "" && got != hv.text && echoedVerbatim[p] {
							t.Errorf("%s, %s = %s: echoed back as %.80q", route, p, hv.name, got)
						}
					}
				}
			}
		}
	}
	// Whatever was accepted left the state readable: every read route of
	// the world still answers sanely.
	for _, route := range w.routes() {
		if routeMethod(route) != "GET" {
			continue
		}
		if err := w.send(req{method: "GET", path: w.fill(route, nil) + ".json"}, "").sane(); err != nil {
			t.Errorf("after the walk, %s: %v", route, err)
		}
	}
	t.Logf("%d requests: %d refused without applying anything, %d accepted", requests, refused, accepted)
}

// echoedVerbatim are the free-text parameters whose document field must
// hold exactly what was sent.
var echoedVerbatim = map[string]bool{
	"display_name": true, "description": true, "title": true, "hostname": false,
}
