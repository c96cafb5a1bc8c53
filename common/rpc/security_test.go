package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/tlsutil"
	"github.com/vdc-project/vdc/common/tlsutil/tlstest"
	"github.com/vdc-project/vdc/proto"
)

func TestTokenRotationAcceptsBothTokensDuringTheWindow(t *testing.T) {
	// Step 2 of the procedure: servers send the new token and still accept
	// the old one, so daemons not restarted yet keep working.
	addr, _ := startServer(t, newTestServer(t, Security{Token: "next", AcceptTokens: []string{"current"}}))
	for _, tok := range []string{"current", "next"} {
		var resp echoResp
		if err := newTestClient(t, ClientConfig{Security: Security{Token: tok}}).
			Call(context.Background(), addr, "test", "echo", echoReq{Text: tok}, &resp); err != nil || resp.Text != tok {
			t.Errorf("token %q: Call() = %+v, %v; want accepted", tok, resp, err)
		}
	}
	for _, tok := range []string{"", "old", "nexT", "curren", "current,next"} {
		err := newTestClient(t, ClientConfig{Security: Security{Token: tok}}).
			Call(context.Background(), addr, "test", "echo", echoReq{}, nil)
		if !errs.Is(err, errs.Unauthorized) {
			t.Errorf("token %q: Call() = %v, want Unauthorized", tok, err)
		}
	}
}

// tlsServer serves the hva-collector's get_instance (callers: hva) and
// counts the calls that reached the handler, recording the caller.
func tlsServer(t *testing.T, id *tlsutil.Identity) (addr string, calls *atomic.Int64, callers chan tlsutil.Peer) {
	t.Helper()
	calls = new(atomic.Int64)
	callers = make(chan tlsutil.Peer, 16)
	s := NewServer(ServerConfig{Security: Security{TLS: id}, Logger: logging.NewTest(t)})
	s.Register(proto.EndpointHvaCollector, proto.VerbGetInstance, Func(func(ctx context.Context, req echoReq) (echoResp, error) {
		calls.Add(1)
		p, _ := PeerFrom(ctx)
		callers <- p
		return echoResp{Text: req.Text}, nil
	}))
	addr, _ = startServer(t, s)
	return addr, calls, callers
}

func TestMutualTLSAcceptsTheRightRole(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	addr, calls, callers := tlsServer(t, ca.Identity(t, proto.RoleManager, "m1"))
	c := newTestClient(t, ClientConfig{Security: Security{TLS: ca.Identity(t, proto.RoleHva, "hva.demo1")}})
	for i := 0; i < 3; i++ {
		var resp echoResp
		if err := c.Call(context.Background(), addr, proto.EndpointHvaCollector, proto.VerbGetInstance, echoReq{Text: "hi"}, &resp); err != nil || resp.Text != "hi" {
			t.Fatalf("Call() = %+v, %v", resp, err)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("handler ran %d times, want 3", calls.Load())
	}
	if p := <-callers; p.Role != proto.RoleHva || p.Name != "hva.demo1" {
		t.Errorf("PeerFrom = %+v, want hva hva.demo1", p)
	}
}

func TestMutualTLSRefusesCallers(t *testing.T) {
	ca, other := tlstest.NewCA(t, "cluster"), tlstest.NewCA(t, "elsewhere")
	addr, calls, _ := tlsServer(t, ca.Identity(t, proto.RoleManager, "m1"))
	call := func(sec Security) error {
		return newTestClient(t, ClientConfig{Security: sec, DialTimeout: 5 * time.Second}).
			Call(context.Background(), addr, proto.EndpointHvaCollector, proto.VerbGetInstance, echoReq{}, nil)
	}
	cases := []struct {
		name string
		sec  Security
	}{
		{"a certificate of another CA", Security{TLS: other.Identity(t, proto.RoleHva, "hva.demo1")}},
		{"the wrong role (scheduler calling hva-collector)", Security{TLS: ca.Identity(t, proto.RoleScheduler, "scheduler.s1")}},
		{"the wrong role (manager calling hva-collector)", Security{TLS: ca.Identity(t, proto.RoleManager, "m2")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := call(tc.sec); !errs.Is(err, errs.Unauthorized) {
				t.Errorf("Call() = %v, want Unauthorized", err)
			}
		})
	}
	t.Run("plain HTTP, no certificate at all", func(t *testing.T) {
		if err := call(Security{}); !errs.Is(err, errs.Unauthorized) || !strings.Contains(err.Error(), "requires TLS") {
			t.Errorf("Call() without TLS = %v, want Unauthorized naming TLS", err)
		}
	})
	t.Run("TLS without a client certificate", func(t *testing.T) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.CertPEM)
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13},
		}}
		resp, err := hc.Post("https://"+addr+proto.RPCPath(proto.EndpointHvaCollector, proto.VerbGetInstance),
			"application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("call without a client certificate answered %d", resp.StatusCode)
		}
	})
	t.Run("an endpoint with no access rule", func(t *testing.T) {
		err := newTestClient(t, ClientConfig{Security: Security{TLS: ca.Identity(t, proto.RoleHva, "h")}}).
			Call(context.Background(), addr, "made-up", "verb", nil, nil)
		if !errs.Is(err, errs.Unauthorized) {
			t.Errorf("Call() = %v, want Unauthorized", err)
		}
	})
	if n := calls.Load(); n != 0 {
		t.Errorf("a refused caller reached the handler %d times", n)
	}
}

func TestMutualTLSClientRefusesServerOfWrongRole(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	// An hva answering where a manager's collector is expected (a stolen
	// address): the client refuses it before sending the request.
	addr, calls, _ := tlsServer(t, ca.Identity(t, proto.RoleHva, "hva.evil"))
	err := newTestClient(t, ClientConfig{Security: Security{TLS: ca.Identity(t, proto.RoleHva, "hva.demo1")}}).
		Call(context.Background(), addr, proto.EndpointHvaCollector, proto.VerbGetInstance, echoReq{}, nil)
	if !errs.Is(err, errs.Unauthorized) || !strings.Contains(err.Error(), "role hva") {
		t.Errorf("Call() = %v, want Unauthorized naming the server's role", err)
	}
	if calls.Load() != 0 {
		t.Error("the request reached a server of the wrong role")
	}
}

func TestMutualTLSAndTokenTogether(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	s := NewServer(ServerConfig{Security: Security{TLS: ca.Identity(t, proto.RoleManager, "m1"), Token: "tok"}, Logger: logging.NewTest(t)})
	s.Register(proto.EndpointJobCollector, proto.VerbJobFinished, Func(func(ctx context.Context, req echoReq) (echoResp, error) {
		return echoResp{}, nil
	}))
	addr, _ := startServer(t, s)
	id := ca.Identity(t, proto.RoleSta, "sta.demo1")
	if err := newTestClient(t, ClientConfig{Security: Security{TLS: id, Token: "tok"}}).
		Call(context.Background(), addr, proto.EndpointJobCollector, proto.VerbJobFinished, nil, nil); err != nil {
		t.Fatalf("certificate and token: %v", err)
	}
	if err := newTestClient(t, ClientConfig{Security: Security{TLS: id}}).
		Call(context.Background(), addr, proto.EndpointJobCollector, proto.VerbJobFinished, nil, nil); !errs.Is(err, errs.Unauthorized) {
		t.Fatalf("certificate without the token: %v, want Unauthorized", err)
	}
}
