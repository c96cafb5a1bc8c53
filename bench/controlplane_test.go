package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/server"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// startControlPlane starts, for a real-guest benchmark, one manager with its
// data in dir and a scheduler daemon named schedNodeID, both stopped when
// the benchmark ends; it returns the manager, its API address and the serf
// address agents join.
func startControlPlane(ctx context.Context, b *testing.B, dir, schedNodeID string) (*server.Manager, string, []string) {
	b.Helper()
	mgr, apiAddr, err := startPlaceManager(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		mgr.Shutdown(sctx)
	})
	if err := waitUntil(ctx, formTimeout, func() error {
		if !mgr.Cluster.IsLeader() {
			return fmt.Errorf("the manager does not lead yet")
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	join := []string{mgr.Cluster.SerfAddr()}
	scfg := daemon.DefaultConfig()
	scfg.NodeID, scfg.SerfAddr, scfg.RPCAddr, scfg.Join, scfg.FastGossip = schedNodeID, "127.0.0.1:0", "127.0.0.1:0", join, true
	sched, err := daemon.New(scfg, logging.Discard())
	if err == nil {
		err = sched.Start()
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		_ = sched.Shutdown(sctx)
	})
	return mgr, apiAddr, join
}
