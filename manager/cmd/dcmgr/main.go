// Command dcmgr is the vdc manager: the 12.03 REST API, a raft voter holding
// the state in bbolt, and a serf member.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
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

	ln, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api listen: %w", err)
	}
	apiAdv := ln.Addr().String()
	if host, port, _ := net.SplitHostPort(apiAdv); net.ParseIP(host).IsUnspecified() {
		apiAdv = net.JoinHostPort(advertiseHost(cfg), port)
	}

	srv, err := cluster.New(cfg.clusterConfig(apiAdv), logger)
	if err != nil {
		ln.Close()
		return err
	}
	h := api.New(cfg.API, srv, logger)
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	logger.Info("dcmgr started", "node", cfg.NodeName, "api", ln.Addr().String(),
		"serf", srv.SerfAddr(), "raft", srv.RaftAddr(), "data_dir", cfg.DataDir)

	errCh := make(chan error, 1)
	go func() { errCh <- hs.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case s := <-sig:
		logger.Info("shutting down", "signal", s.String())
	case err := <-errCh:
		if !errors.Is(err, http.ErrServerClosed) {
			logger.Error("api server failed", "error", err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(ctx)
	if cfg.LeaveOnTerm {
		if err := srv.Leave(ctx); err != nil {
			logger.Warn("leave", "error", err)
		}
	}
	srv.Shutdown()
	logger.Info("stopped")
	return nil
}

func advertiseHost(cfg Config) string {
	if cfg.AdvertiseHost != "" {
		return cfg.AdvertiseHost
	}
	return cluster.DefaultAdvertiseHost()
}
