// Package agenttest has what agent tests share: a stand-in manager that
// agents find and call the way they find and call a dcmgr.
package agenttest

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
)

// Manager stands in for a dcmgr on loopback: a serf member with role
// manager whose rpc tag points at an rpc server serving a fake collector's
// verbs, which is how agents find and call the managers.
type Manager struct {
	// RPCAddr is where the collector verbs are served.
	RPCAddr string
	serf    *serf.Serf
}

// Registrar registers RPC verbs (a fake collector).
type Registrar interface {
	Register(s *rpc.Server)
}

// StartManager serves f as a manager until the test ends. token, if set, is
// required from callers.
func StartManager(t testing.TB, f Registrar, token string) *Manager {
	t.Helper()
	logger := logging.NewTest(t)
	s := rpc.NewServer(rpc.ServerConfig{Logger: logger, Security: rpc.Security{Token: token}})
	f.Register(s)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = s.Serve(l) }()

	sc := serf.DefaultConfig()
	sc.NodeName = "dcmgr.fake"
	sc.MemberlistConfig = memberlist.DefaultLocalConfig()
	agent.FastGossip(sc)
	sc.MemberlistConfig.BindAddr = "127.0.0.1"
	sc.MemberlistConfig.BindPort = 0
	sc.MemberlistConfig.Logger = logging.StdLog(logger, "memberlist")
	sc.Logger = logging.StdLog(logger, "serf")
	sc.Tags = map[string]string{proto.TagRole: proto.RoleManager, proto.TagNodeID: "dcmgr.fake", proto.TagRPC: l.Addr().String()}
	sf, err := serf.Create(sc)
	if err != nil {
		l.Close()
		t.Fatalf("start serf: %v", err)
	}
	t.Cleanup(func() {
		_ = sf.Shutdown()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return &Manager{RPCAddr: l.Addr().String(), serf: sf}
}

// SerfAddr is the address agents join.
func (m *Manager) SerfAddr() string {
	lm := m.serf.LocalMember()
	return net.JoinHostPort(lm.Addr.String(), strconv.Itoa(int(lm.Port)))
}

// Join makes the manager join a member at serfAddr.
func (m *Manager) Join(serfAddr string) error {
	_, err := m.serf.Join([]string{serfAddr}, true)
	return err
}
