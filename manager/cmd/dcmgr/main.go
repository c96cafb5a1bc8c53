// Command dcmgr is the vdc manager: the 12.03 REST API, a raft voter holding
// the state in bbolt, and a serf member.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/server"
	"github.com/vdc-project/vdc/proto"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dcmgr:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	cfg, err := loadConfig(args, stderr)
	if err != nil {
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}

	sec, err := cfg.Security.Load(proto.RoleManager)
	if err != nil {
		return err
	}
	clockCtx, stopClock := context.WithCancel(context.Background())
	defer stopClock()
	var clock func() time.Time
	if path := os.Getenv(ClockOffsetEnv); path != "" {
		c, err := newOffsetClock(clockCtx, path, 100*time.Millisecond)
		if err != nil {
			return err
		}
		clock = c.Now
		logger.Warn("wall clock offset by a test file", "file", path)
	}

	apiL, rpcL, err := server.Listen(cfg.APIAddr, cfg.RPCAddr)
	if err != nil {
		return err
	}
	m, err := server.Start(server.Config{
		Cluster: cfg.clusterConfig(), API: cfg.API, RPCToken: cfg.RPCToken, Security: sec,
		APIListener: apiL, RPCListener: rpcL, AdvertiseHost: cfg.AdvertiseHost, Clock: clock,
		HA: cfg.haConfig(), JobRetention: cfg.jobRetention(),
	}, logger)
	if err != nil {
		apiL.Close()
		rpcL.Close()
		return err
	}
	logger.Info("dcmgr started", "node", cfg.NodeName, "rpc_tls", sec.RPC.TLS != nil, "gossip_encrypted", sec.Keyring != nil, "api", apiL.Addr().String(), "rpc", rpcL.Addr().String(),
		"serf", m.Cluster.SerfAddr(), "raft", m.Cluster.RaftAddr(), "data_dir", cfg.DataDir)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	s := <-sig
	logger.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cfg.LeaveOnTerm {
		if err := m.Cluster.Leave(ctx); err != nil {
			logger.Warn("leave", "error", err)
		}
	}
	m.Shutdown(ctx)
	logger.Info("stopped")
	return nil
}
