package health

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

func nodeState(srv *cluster.Server, node string) string {
	var ns proto.NodeState
	_ = srv.Store().View(func(tx *state.Tx) error {
		_, _ = tx.Get(proto.KindNodeState, node, &ns)
		return nil
	})
	return ns.State
}

func TestAgentJoinAndFailureChangeNodeState(t *testing.T) {
	srv := cluster.TestServer(t, nil)
	m := New(srv, func() []jobs.Member { return jobs.Members(srv.Members()) }, logging.NewTest(t), 50*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)

	a, err := agent.New(agent.Config{NodeID: "hva.h1", Role: proto.RoleHva, SerfAddr: "127.0.0.1:0",
		RPCAddr: "127.0.0.1:0", Join: []string{srv.SerfAddr()}, FastGossip: true, Logger: logging.NewTest(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	want := func(st string) {
		t.Helper()
		testutil.WaitFor(t, 20*time.Second, func() error {
			if got := nodeState(srv, "hva.h1"); got != st {
				return fmt.Errorf("node state %q, want %q", got, st)
			}
			return nil
		})
	}
	want(Online)
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = a.Shutdown(sctx) // leaves serf
	want(Offline)
}
