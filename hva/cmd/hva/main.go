// Command hva is vdc's hypervisor agent: a serf member with role hva that
// serves the hva-handle.<node> and local-store-handle.<node> job verbs on
// instances over a hypervisor driver, reports to the managers' collector
// endpoints, and runs the instance monitor.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hva:", err)
		os.Exit(1)
	}
}

// run starts the hva and stops it gracefully when ctx ends (a signal).
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := loadConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	sec, err := cfg.Security.Load(proto.RoleHva)
	if err != nil {
		return err
	}
	hv, err := newHypervisor(cfg)
	if err != nil {
		return err
	}

	// The collector client needs the agent's member list and the agent
	// reports finished jobs through the client: build the agent first and
	// let its callback use the client made right after.
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID:        cfg.NodeID,
		Role:          proto.RoleHva,
		SerfAddr:      cfg.SerfAddr,
		AdvertiseHost: cfg.AdvertiseHost,
		RPCAddr:       cfg.RPCAddr,
		Join:          cfg.Join,
		FastGossip:    cfg.FastGossip,
		Token:         cfg.Token,
		Security:      sec,
		Logger:        logger,
		Concurrency:   map[string]int{proto.EndpointLocalStoreHandle: cfg.LocalStoreConcurrency},
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			// Only makes the dispatcher learn the result sooner (it also
			// redelivers to find out), so a short bounded try is enough.
			ctx, cancel := context.WithTimeout(ctx, collector.DefaultAttemptTimeout)
			defer cancel()
			if err := cc.JobFinished(ctx, cfg.NodeID, res); err != nil {
				logger.WarnContext(ctx, "report job result", "job_id", res.JobID, "error", err)
			}
		},
	})
	if err != nil {
		return err
	}
	cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logger})
	h, err := handlers.New(handlers.Config{
		NodeID:              cfg.NodeID,
		Hypervisor:          hv,
		Collector:           cc,
		Events:              a,
		Logger:              logger,
		SoftPoweroffTimeout: ms(cfg.SoftPoweroffTimeoutMS),
		MonitorInterval:     ms(cfg.MonitorIntervalMS),
		ForceTerminateAfter: ms(cfg.ForceTerminateAfterMS),
	})
	if err != nil {
		return err
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		return err
	}
	if c, err := hv.Capacity(ctx); err == nil {
		logger.Info("hva started", "node_id", cfg.NodeID, "hypervisor", cfg.Hypervisor,
			"cpu_cores", c.CPUCores, "memory_mb", c.MemoryMB, "rpc", a.RPCAddr(), "serf", a.SerfAddr())
	}

	monCtx, stopMonitor := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		h.RunMonitor(monCtx)
	}()

	<-ctx.Done()
	logger.Info("shutting down")
	stopMonitor()
	<-monDone
	sctx, cancel := context.WithTimeout(context.Background(), ms(cfg.ShutdownTimeoutMS))
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		// Interrupted jobs are redelivered by the dispatcher; their
		// handlers carry on from the state they left.
		logger.Warn("shutdown", "error", err)
	}
	logger.Info("stopped")
	return nil
}

func newHypervisor(cfg Config) (hypervisor.Hypervisor, error) {
	switch cfg.Hypervisor {
	case hypervisorDummy:
		return dummy.New(dummy.Config{CPUCores: cfg.CPUCores, MemoryMB: cfg.MemoryMB,
			ShutdownDelay: ms(cfg.DummyShutdownDelayMS)})
	}
	return nil, fmt.Errorf("hypervisor %q: want dummy", cfg.Hypervisor)
}
