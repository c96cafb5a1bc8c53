package rpc

import (
	"context"
	"net"
	"runtime"
	"testing"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/tlsutil/tlstest"
	"github.com/vdc-project/vdc/proto"
)

// BenchmarkCall is one small RPC over a kept-alive connection, in the three
// security modes: what mutual TLS and the token cost per call. Run:
// go test -run X -bench Call ./common/rpc/
func BenchmarkCall(b *testing.B) {
	b.Logf("machine: %d cores, %s, %s", runtime.NumCPU(), runtime.GOARCH, runtime.Version())
	ca := tlstest.NewCA(b, "bench")
	for _, mode := range []struct {
		name           string
		server, client Security
	}{
		{"plain", Security{}, Security{}},
		{"token", Security{Token: "t", AcceptTokens: []string{"u"}}, Security{Token: "t"}},
		{"mutual-tls", Security{TLS: ca.Identity(b, proto.RoleManager, "m1")}, Security{TLS: ca.Identity(b, proto.RoleHva, "hva.b")}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			s := NewServer(ServerConfig{Security: mode.server, Logger: logging.Discard()})
			s.Register(proto.EndpointHvaCollector, proto.VerbGetInstance, Func(func(ctx context.Context, req echoReq) (echoResp, error) {
				return echoResp{Text: req.Text, N: req.N + 1}, nil
			}))
			addr := benchServe(b, s)
			c := NewClient(ClientConfig{Security: mode.client})
			defer c.Close()
			ctx := context.Background()
			var resp echoResp
			if err := c.Call(ctx, addr, proto.EndpointHvaCollector, proto.VerbGetInstance, echoReq{Text: "x"}, &resp); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.Call(ctx, addr, proto.EndpointHvaCollector, proto.VerbGetInstance, echoReq{Text: "x", N: i}, &resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchServe(b *testing.B, s *Server) string {
	b.Helper()
	l, err := netListen()
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	b.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return l.Addr().String()
}

func netListen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
