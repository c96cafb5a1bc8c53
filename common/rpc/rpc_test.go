package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

type echoReq struct {
	Text string `json:"text"`
	N    int    `json:"n"`
}

type echoResp struct {
	Text string `json:"text"`
	N    int    `json:"n"`
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// startServer serves s on a loopback port and returns its address.
func startServer(t *testing.T, s *Server) (string, *countingListener) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	cl := &countingListener{Listener: l}
	done := make(chan error, 1)
	go func() { done <- s.Serve(cl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v", err)
		}
	})
	return l.Addr().String(), cl
}

func newTestServer(t *testing.T, sec Security) *Server {
	t.Helper()
	s := NewServer(ServerConfig{Security: sec, Logger: logging.NewTest(t)})
	s.Register("test", "echo", Func(func(ctx context.Context, req echoReq) (echoResp, error) {
		return echoResp{Text: req.Text, N: req.N + 1}, nil
	}))
	return s
}

func newTestClient(t *testing.T, cfg ClientConfig) *Client {
	t.Helper()
	c := NewClient(cfg)
	t.Cleanup(c.Close)
	return c
}

func TestRoundTripAndKeepAlive(t *testing.T) {
	addr, l := startServer(t, newTestServer(t, Security{}))
	c := newTestClient(t, ClientConfig{})
	for i := range 20 {
		var resp echoResp
		if err := c.Call(context.Background(), addr, "test", "echo", echoReq{Text: "hi", N: i}, &resp); err != nil {
			t.Fatalf("Call() = %v", err)
		}
		if want := (echoResp{Text: "hi", N: i + 1}); resp != want {
			t.Fatalf("Call() resp = %+v, want %+v", resp, want)
		}
	}
	if got := l.accepted.Load(); got != 1 {
		t.Errorf("20 sequential calls opened %d connections, want 1 (keep-alive)", got)
	}
	// A nil resp discards the body; a raw resp keeps it.
	if err := c.Call(context.Background(), addr, "test", "echo", echoReq{}, nil); err != nil {
		t.Fatalf("Call(nil resp) = %v", err)
	}
	var raw json.RawMessage
	if err := c.Call(context.Background(), addr, "test", "echo", nil, &raw); err != nil {
		t.Fatalf("Call(nil req) = %v", err)
	}
	if got, want := string(raw), `{"text":"","n":1}`; got != want {
		t.Errorf("raw resp = %s, want %s", got, want)
	}
}

func TestErrorKindsCrossTheWire(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		wantKind errs.Kind
		wantMsg  string
	}{
		{"api kind", errs.New(errs.UnknownInstance, "i-abc not found"), errs.UnknownInstance, "i-abc not found"},
		{"api kind without message", &errs.Error{Kind: errs.UnknownVolume}, errs.UnknownVolume, ""},
		{"not found", errs.New(errs.NotFound, "gone"), errs.NotFound, "gone"},
		{"invalid body", errs.New(errs.InvalidBody, "bad"), errs.InvalidBody, "bad"},
		{"conflict", errs.New(errs.Conflict, "lost race"), errs.Conflict, "lost race"},
		{"no leader", errs.New(errs.NoLeader, "election"), errs.NoLeader, "election"},
		{"timeout", errs.New(errs.Timeout, "slow"), errs.Timeout, "slow"},
		{"unavailable", errs.New(errs.Unavailable, "down"), errs.Unavailable, "down"},
		{"wrapped", fmt.Errorf("attach vol-1: %w", errs.New(errs.InvalidVolumeState, "attached")),
			errs.InvalidVolumeState, "attach vol-1: attached"},
		{"plain error", errors.New("disk on fire"), errs.Internal, "disk on fire"},
	}
	s := NewServer(ServerConfig{Logger: logging.NewTest(t)})
	for i, tc := range cases {
		s.Register("err", fmt.Sprint(i), func(context.Context, json.RawMessage) (any, error) { return nil, tc.err })
	}
	addr, _ := startServer(t, s)
	c := newTestClient(t, ClientConfig{})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Call(context.Background(), addr, "err", fmt.Sprint(i), nil, nil)
			var e *errs.Error
			if !errors.As(err, &e) {
				t.Fatalf("Call() = %v (%T), want *errs.Error", err, err)
			}
			if e.Kind != tc.wantKind || e.Msg != tc.wantMsg {
				t.Errorf("Call() = {%s %q}, want {%s %q}", e.Kind.Name(), e.Msg, tc.wantKind.Name(), tc.wantMsg)
			}
			// The HTTP status is the kind's.
			resp, err := http.Post("http://"+addr+proto.RPCPath("err", fmt.Sprint(i)), "application/json", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.wantKind.Status() {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantKind.Status())
			}
			var w proto.WireError
			if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
				t.Fatalf("decode error body: %v", err)
			}
			if w.Code != tc.wantKind.WireCode() {
				t.Errorf("wire code = %q, want %q", w.Code, tc.wantKind.WireCode())
			}
		})
	}
}

func TestUnknownEndpointAndVerb(t *testing.T) {
	addr, _ := startServer(t, newTestServer(t, Security{}))
	c := newTestClient(t, ClientConfig{})
	for _, ev := range [][2]string{{"test", "nope"}, {"nope", "echo"}} {
		err := c.Call(context.Background(), addr, ev[0], ev[1], nil, nil)
		if !errs.Is(err, errs.NotFound) {
			t.Errorf("Call(%s/%s) = %v, want NotFound", ev[0], ev[1], err)
		}
	}
	resp, err := http.Get("http://" + addr + proto.RPCPath("test", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET status = %d, want 404", resp.StatusCode)
	}
}

func TestBadBodies(t *testing.T) {
	s := newTestServer(t, Security{})
	s.cfg.MaxBodyBytes = 64
	addr, _ := startServer(t, s)
	post := func(body string) (int, proto.WireError) {
		t.Helper()
		resp, err := http.Post("http://"+addr+proto.RPCPath("test", "echo"), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var w proto.WireError
		_ = json.NewDecoder(resp.Body).Decode(&w)
		return resp.StatusCode, w
	}
	if status, w := post("{not json"); status != 400 || errs.KindFromCode(w.Code) != errs.InvalidBody {
		t.Errorf("bad JSON: status %d code %q, want 400 InvalidBody", status, w.Code)
	}
	if status, w := post(`{"text": 42}`); status != 400 || errs.KindFromCode(w.Code) != errs.InvalidBody {
		t.Errorf("wrong type: status %d code %q, want 400 InvalidBody", status, w.Code)
	}
	if status, w := post(`{"text":"` + strings.Repeat("x", 100) + `"}`); status != 413 || errs.KindFromCode(w.Code) != errs.TooLarge {
		t.Errorf("too large: status %d code %q, want 413 TooLarge", status, w.Code)
	}
}

func TestHandlerPanicIsInternal(t *testing.T) {
	s := NewServer(ServerConfig{Logger: logging.NewTest(t)})
	s.Register("p", "boom", func(context.Context, json.RawMessage) (any, error) { panic("boom") })
	addr, _ := startServer(t, s)
	err := newTestClient(t, ClientConfig{}).Call(context.Background(), addr, "p", "boom", nil, nil)
	if !errs.Is(err, errs.Internal) || !strings.Contains(err.Error(), "boom") {
		t.Errorf("Call() = %v, want Internal mentioning boom", err)
	}
}

func TestCallTimeout(t *testing.T) {
	s := NewServer(ServerConfig{Logger: logging.NewTest(t)})
	var cancelled atomic.Int64
	s.Register("slow", "wait", func(ctx context.Context, _ json.RawMessage) (any, error) {
		<-ctx.Done()
		cancelled.Add(1)
		return nil, ctx.Err()
	})
	addr, _ := startServer(t, s)

	c := newTestClient(t, ClientConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := c.Call(ctx, addr, "slow", "wait", nil, nil)
	if !errs.Is(err, errs.Timeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Call() = %v, want Timeout wrapping DeadlineExceeded", err)
	}
	if !IsRetryable(err) {
		t.Errorf("IsRetryable(%v) = false", err)
	}
	// The server notices the caller went away and cancels the handler.
	testutil.WaitFor(t, 5*time.Second, func() error {
		if cancelled.Load() != 1 {
			return errors.New("handler not cancelled yet")
		}
		return nil
	})

	// Without a ctx deadline the client's default timeout applies.
	c2 := newTestClient(t, ClientConfig{Timeout: 100 * time.Millisecond})
	if err := c2.Call(context.Background(), addr, "slow", "wait", nil, nil); !errs.Is(err, errs.Timeout) {
		t.Errorf("Call() with default timeout = %v, want Timeout", err)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	err = newTestClient(t, ClientConfig{}).Call(context.Background(), addr, "test", "echo", nil, nil)
	if !errs.Is(err, errs.Unavailable) || !IsRetryable(err) {
		t.Errorf("Call(closed port) = %v, want retryable Unavailable", err)
	}
}

func TestNonVdcPeer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	})}
	go func() { _ = hs.Serve(l) }()
	t.Cleanup(func() { _ = hs.Close() })
	err = newTestClient(t, ClientConfig{}).Call(context.Background(), l.Addr().String(), "a", "b", nil, nil)
	if !errs.Is(err, errs.Unavailable) {
		t.Errorf("Call(proxy 502) = %v, want Unavailable", err)
	}
}

func TestTokenAuth(t *testing.T) {
	addr, _ := startServer(t, newTestServer(t, Security{Token: "s3cret"}))
	raw := func(header string, path string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader("{}"))
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	echo := proto.RPCPath("test", "echo")
	for _, tc := range []struct {
		header string
		path   string
		want   int
	}{
		{"", echo, 401},
		{"Bearer wrong", echo, 401},
		{"s3cret", echo, 401},
		{"Bearer s3cret", echo, 200},
		{"", proto.RPCPath("test", "nope"), 401}, // auth comes before routing
		{"Bearer s3cret", proto.RPCPath("test", "nope"), 404},
	} {
		if got := raw(tc.header, tc.path); got != tc.want {
			t.Errorf("POST %s with Authorization %q = %d, want %d", tc.path, tc.header, got, tc.want)
		}
	}
	for _, tok := range []string{"", "wrong"} {
		err := newTestClient(t, ClientConfig{Security: Security{Token: tok}}).
			Call(context.Background(), addr, "test", "echo", echoReq{}, nil)
		if !errs.Is(err, errs.Unauthorized) {
			t.Errorf("Call(token %q) = %v, want Unauthorized", tok, err)
		}
	}
	var resp echoResp
	err := newTestClient(t, ClientConfig{Security: Security{Token: "s3cret"}}).
		Call(context.Background(), addr, "test", "echo", echoReq{Text: "ok"}, &resp)
	if err != nil || resp.Text != "ok" {
		t.Errorf("Call(right token) = %+v, %v", resp, err)
	}
}

func TestRegisterMisuse(t *testing.T) {
	s := NewServer(ServerConfig{})
	h := func(context.Context, json.RawMessage) (any, error) { return nil, nil }
	s.Register("a", "b", h)
	for _, tc := range []struct{ ep, verb string }{{"a", "b"}, {"", "b"}, {"a/x", "b"}, {"a", ""}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register(%q, %q) did not panic", tc.ep, tc.verb)
				}
			}()
			s.Register(tc.ep, tc.verb, h)
		}()
	}
	s.Unregister("a", "b")
	s.Register("a", "b", h) // free again
}

func TestShutdownClosesUnusedConnections(t *testing.T) {
	s := newTestServer(t, Security{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	served := make(chan error, 1)
	go func() { served <- s.Serve(cl) }()
	// A pooled connection that never carries a request (the http server
	// would only treat it as idle after 5 s).
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if cl.accepted.Load() != 1 {
			return errors.New("not accepted yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve() = %v", err)
	}
}
