package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// testAccount is the account most tests call as (mussel's demo account).
const testAccount = "a-shpoolxx"

// env is an API over a real single-manager cluster (raft, bbolt, serf on
// loopback) served by httptest.
type env struct {
	t   *testing.T
	srv *cluster.Server
	api *API
	ts  *httptest.Server
	// events records what the API publishes.
	events *eventRecorder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := cluster.TestServer(t, nil)
	rec := &eventRecorder{Backend: srv}
	a := New(DefaultConfig(), rec, logging.NewTest(t))
	ts := httptest.NewServer(a)
	t.Cleanup(ts.Close)
	srv.SetAPIAddr(strings.TrimPrefix(ts.URL, "http://"))
	return &env{t: t, srv: srv, api: a, ts: ts, events: rec}
}

// eventRecorder is the cluster backend, recording the events published.
type eventRecorder struct {
	Backend
	mu   sync.Mutex
	list []proto.Event
}

func (r *eventRecorder) Publish(ctx context.Context, ev proto.Event) error {
	r.mu.Lock()
	r.list = append(r.list, ev)
	r.mu.Unlock()
	return r.Backend.Publish(ctx, ev)
}

// take returns the events published since the last take.
func (r *eventRecorder) take() []proto.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.list
	r.list = nil
	return out
}

type resp struct {
	t      *testing.T
	status int
	header http.Header
	body   []byte
}

// req is one request: method, path below /api/12.03 (with suffix), form
// values, and the account header (testAccount unless overridden; "" = none).
type req struct {
	method  string
	path    string
	form    url.Values
	account *string
	header  map[string]string
	body    string // raw body (with header Content-Type) instead of form
}

func acct(s string) *string { return &s }

func (e *env) do(r req) *resp {
	e.t.Helper()
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	} else if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, e.ts.URL+Prefix+r.path, body)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if r.form != nil {
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	account := testAccount
	if r.account != nil {
		account = *r.account
	}
	if account != "" {
		// mussel's underscore spelling.
		hr.Header["X_VDC_ACCOUNT_UUID"] = []string{account}
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	return &resp{t: e.t, status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) get(path string) *resp { return e.do(req{method: "GET", path: path}) }
func (e *env) post(path string, form url.Values) *resp {
	if form == nil {
		form = url.Values{}
	}
	return e.do(req{method: "POST", path: path, form: form})
}
func (e *env) put(path string, form url.Values) *resp {
	if form == nil {
		form = url.Values{}
	}
	return e.do(req{method: "PUT", path: path, form: form})
}
func (e *env) del(path string) *resp { return e.do(req{method: "DELETE", path: path}) }

// ok asserts status 200 and returns r.
func (r *resp) ok() *resp {
	r.t.Helper()
	if r.status != http.StatusOK {
		r.t.Fatalf("status = %d, want 200; body: %s", r.status, r.body)
	}
	return r
}

// apiError asserts an error document with status and code.
func (r *resp) apiError(status int, code string) map[string]any {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("status = %d, want %d; body: %s", r.status, status, r.body)
	}
	m := r.obj()
	if m["code"] != code {
		r.t.Fatalf("code = %v, want %s; body: %s", m["code"], code, r.body)
	}
	if name, _ := m["error"].(string); !strings.HasPrefix(name, "Dcmgr::Endpoints::") {
		r.t.Fatalf("error = %q, want Dcmgr::Endpoints::<Name>", name)
	}
	return m
}

func (r *resp) json() any {
	r.t.Helper()
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		r.t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

func (r *resp) obj() map[string]any {
	r.t.Helper()
	m, ok := r.json().(map[string]any)
	if !ok {
		r.t.Fatalf("body is not an object: %s", r.body)
	}
	return m
}

func (r *resp) arr() []any {
	r.t.Helper()
	a, ok := r.json().([]any)
	if !ok {
		r.t.Fatalf("body is not an array: %s", r.body)
	}
	return a
}

// envelope decodes a list answer and returns total and results.
func (r *resp) envelope() (total int, results []map[string]any) {
	r.t.Helper()
	a := r.ok().arr()
	if len(a) != 1 {
		r.t.Fatalf("envelope has %d elements, want 1: %s", len(a), r.body)
	}
	env := a[0].(map[string]any)
	for _, k := range []string{"total", "start", "limit", "results"} {
		if _, ok := env[k]; !ok {
			r.t.Fatalf("envelope lacks %q: %s", k, r.body)
		}
	}
	for _, it := range env["results"].([]any) {
		results = append(results, it.(map[string]any))
	}
	return int(env["total"].(float64)), results
}

// dump returns every bucket of the state for before/after comparisons.
func (e *env) dump() map[string]map[string]string {
	e.t.Helper()
	var out map[string]map[string]string
	if err := e.srv.Store().View(func(tx *state.Tx) error {
		out = tx.Buckets()
		return nil
	}); err != nil {
		e.t.Fatalf("dump state: %v", err)
	}
	delete(out, "meta") // the applied index moves with every raft entry
	return out
}

// unchanged runs fn and fails if any bucket changed.
func (e *env) unchanged(fn func()) {
	e.t.Helper()
	before := e.dump()
	fn()
	if after := e.dump(); !reflect.DeepEqual(before, after) {
		e.t.Fatalf("state changed by a rejected request")
	}
}

// badRequests checks that every request in rs is answered with status/code
// and changes nothing.
func (e *env) rejects(status int, code string, rs ...req) {
	e.t.Helper()
	for _, r := range rs {
		e.unchanged(func() {
			e.do(r).apiError(status, code)
		})
	}
}
