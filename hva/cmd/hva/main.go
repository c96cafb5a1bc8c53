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
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/jobtable"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/hva/hypervisor/libvirt"
	"github.com/vdc-project/vdc/hva/localstore"
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
	// The managers accept heartbeats only for the node id the certificate
	// names: a mismatch would leave this host unprotected by HA.
	if id := sec.RPC.TLS; id != nil && id.Name != cfg.NodeID {
		return fmt.Errorf("tls: certificate %s is for %q, this hva is %q", cfg.Security.TLSCertFile, id.Name, cfg.NodeID)
	}
	hv, ls, closeHV, err := newHypervisor(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer closeHV()
	finished, err := openJobTable(cfg, ls != nil)
	if err != nil {
		return err
	}
	defer closeJobTable(finished, logger)

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
		// The managers read how long to wait before evacuating this host.
		Tags:     map[string]string{proto.TagFenceMs: strconv.Itoa(cfg.FenceAfterMS)},
		Finished: finished,
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
	hn, err := newHostNet(cfg, a, cc, logger)
	if err != nil {
		return err
	}
	defer hn.close() // after the agent's shutdown: jobs unplug taps until then
	h, err := handlers.New(handlers.Config{
		NodeID:              cfg.NodeID,
		Hypervisor:          hv,
		Collector:           cc,
		Events:              a,
		Network:             hn.network(a),
		LocalStore:          ls,
		Logger:              logger,
		SoftPoweroffTimeout: ms(cfg.SoftPoweroffTimeoutMS),
		MonitorInterval:     ms(cfg.MonitorIntervalMS),
		ForceTerminateAfter: ms(cfg.ForceTerminateAfterMS),
		Fence:               handlers.FenceConfig{Heartbeat: cc, After: ms(cfg.FenceAfterMS), Interval: ms(cfg.HeartbeatMS)},
	})
	if err != nil {
		return err
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		return err
	}
	if c, err := hv.Capacity(ctx); err == nil {
		logger.Info("hva started", "node_id", cfg.NodeID, "hypervisor", driverName(hv),
			"cpu_cores", c.CPUCores, "memory_mb", c.MemoryMB, "rpc", a.RPCAddr(), "serf", a.SerfAddr())
	}

	monCtx, stopMonitor := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	fenceDone := make(chan struct{})
	go func() {
		defer close(monDone)
		h.RunMonitor(monCtx)
	}()
	go func() {
		defer close(fenceDone)
		h.RunFence(monCtx)
	}()
	hn.start(monCtx)

	<-ctx.Done()
	logger.Info("shutting down")
	stopMonitor()
	<-monDone
	<-fenceDone
	hn.wait()
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

// newHypervisor makes the configured driver and, with libvirt, the local
// store of instance files (the dummy keeps none). "auto" takes libvirt when
// its socket answers and says which it took.
func newHypervisor(ctx context.Context, cfg Config, logger *slog.Logger) (hypervisor.Hypervisor, handlers.LocalStore, func(), error) {
	nop := func() {}
	useLibvirt := cfg.Hypervisor == hypervisorLibvirt
	var lvd *libvirt.Driver
	if cfg.Hypervisor != hypervisorDummy {
		var err error
		lvd, err = libvirt.New(libvirt.Config{NodeID: cfg.NodeID, Socket: cfg.LibvirtSocket, VirtType: cfg.VirtType,
			ConsoleDir: cfg.ConsoleDir, Logger: logger})
		if err != nil {
			return nil, nil, nop, err
		}
		// The first connection after libvirtd starts probes QEMU (seconds).
		pctx, cancel := context.WithTimeout(ctx, autoProbeTimeout)
		perr := lvd.Ping(pctx)
		cancel()
		switch {
		case perr == nil:
			useLibvirt = true
		case cfg.Hypervisor == hypervisorAuto:
			logger.Warn("libvirtd does not answer; using the dummy hypervisor", "socket", cfg.LibvirtSocket, "error", perr)
			_ = lvd.Close()
		default:
			// Explicit libvirt: start anyway, the driver connects once
			// libvirtd is up.
			logger.Warn("libvirtd does not answer yet", "socket", cfg.LibvirtSocket, "error", perr)
		}
	}
	if !useLibvirt {
		logger.Info("hypervisor: dummy", "cpu_cores", cfg.CPUCores, "memory_mb", cfg.MemoryMB)
		d, err := dummy.New(dummy.Config{CPUCores: cfg.CPUCores, MemoryMB: cfg.MemoryMB,
			ShutdownDelay: ms(cfg.DummyShutdownDelayMS)})
		return d, nil, nop, err
	}
	ls, err := localstore.New(localstore.Config{DataDir: cfg.DataDir, Logger: logger})
	if err != nil {
		_ = lvd.Close()
		return nil, nil, nop, err
	}
	logger.Info("hypervisor: libvirt", "socket", cfg.LibvirtSocket, "virt_type", cfg.VirtType,
		"data_dir", cfg.DataDir, "console_dir", cfg.ConsoleDir)
	return lvd, ls, func() { _ = lvd.Close() }, nil
}

// openJobTable opens the finished-job table: the configured file, else
// <data_dir>/_jobs.db when the hypervisor is libvirt (the data dir is then
// this host's), else none (nil: results in memory only).
func openJobTable(cfg Config, libvirt bool) (jobtable.Table, error) {
	path := cfg.JobsFile
	if path == "" && libvirt {
		path = filepath.Join(cfg.DataDir, "_jobs.db")
	}
	if path == "" {
		return nil, nil
	}
	f, err := jobtable.Open(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func closeJobTable(t jobtable.Table, logger *slog.Logger) {
	if t == nil {
		return
	}
	if err := t.Close(); err != nil {
		logger.Warn("close the job table", "error", err)
	}
}

// autoProbeTimeout bounds the start-up check that libvirtd answers.
const autoProbeTimeout = 30 * time.Second

func driverName(hv hypervisor.Hypervisor) string {
	if _, ok := hv.(*libvirt.Driver); ok {
		return hypervisorLibvirt
	}
	return hypervisorDummy
}
