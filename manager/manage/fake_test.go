package manage

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// call is one request the fake API received.
type call struct {
	Method string
	Path   string
	Query  url.Values
	Form   url.Values // decoded x-www-form-urlencoded body
	Header http.Header
}

// reply is a canned answer.
type reply struct {
	status int
	body   string
	header map[string]string
}

func ok(body string) reply { return reply{status: 200, body: body} }

// fakeAPI records requests and answers from per-route reply queues (the last
// reply of a queue repeats). Unknown routes fail the test.
type fakeAPI struct {
	t       *testing.T
	srv     *httptest.Server
	mu      sync.Mutex
	calls   []call
	replies map[string][]reply
	sleeps  []time.Duration
}

func newFake(t *testing.T) *fakeAPI {
	t.Helper()
	f := &fakeAPI{t: t, replies: map[string][]reply{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// on queues replies for "METHOD /path" (path as sent, with suffix).
func (f *fakeAPI) on(route string, rs ...reply) *fakeAPI {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replies[route] = append(f.replies[route], rs...)
	return f
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := call{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone()}
	if len(body) > 0 {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			f.t.Errorf("%s %s: body is not form-encoded: %q", r.Method, r.URL.Path, body)
		}
		c.Form = form
	}
	key := r.Method + " " + r.URL.Path
	f.mu.Lock()
	f.calls = append(f.calls, c)
	q := f.replies[key]
	var rep reply
	if len(q) > 0 {
		rep = q[0]
		if len(q) > 1 {
			f.replies[key] = q[1:]
		}
	}
	f.mu.Unlock()
	if len(q) == 0 {
		f.t.Errorf("unexpected request %s", key)
		http.Error(w, "no canned reply", http.StatusTeapot)
		return
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

func (f *fakeAPI) recorded() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// result of one CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// run executes vdc-manage against the fake with args.
func (f *fakeAPI) run(args ...string) result {
	f.t.Helper()
	var out, errb bytes.Buffer
	cfg := Config{
		API:    f.srv.URL,
		Stderr: &errb,
		Sleep: func(_ context.Context, d time.Duration) error {
			f.mu.Lock()
			f.sleeps = append(f.sleeps, d)
			f.mu.Unlock()
			return nil
		},
	}
	code := Run(context.Background(), args, &out, cfg)
	return result{stdout: out.String(), stderr: errb.String(), code: code}
}

// mustRun runs and fails the test on a non-zero exit.
func (f *fakeAPI) mustRun(args ...string) result {
	f.t.Helper()
	r := f.run(args...)
	if r.code != 0 {
		f.t.Fatalf("vdc-manage %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

const p = "/api/12.03/"
