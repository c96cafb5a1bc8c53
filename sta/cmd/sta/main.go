// Command sta is vdc's storage agent: a serf member with role sta that
// serves the sta-handle.<node> job verbs (spec/agents.md §2.6) over a
// backing store (raw, qcow2 or reflink files, LVM) and a storage target
// (tgt), reports to the managers' collector endpoints, and re-exports the
// node's volumes from the managers' state when it starts and periodically.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/jobtable"
	"github.com/vdc-project/vdc/common/logging"
	hvacollector "github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/backing/file"
	"github.com/vdc-project/vdc/sta/backing/lvm"
	"github.com/vdc-project/vdc/sta/backing/memory"
	"github.com/vdc-project/vdc/sta/backup"
	"github.com/vdc-project/vdc/sta/collector"
	"github.com/vdc-project/vdc/sta/command"
	"github.com/vdc-project/vdc/sta/handlers"
	"github.com/vdc-project/vdc/sta/target"
	tmem "github.com/vdc-project/vdc/sta/target/memory"
	"github.com/vdc-project/vdc/sta/target/tgt"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "sta:", err)
		os.Exit(1)
	}
}

// run starts the sta and stops it gracefully when ctx ends (a signal).
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
	if fi, err := os.Stat(cfg.Backing.SnapshotTmpDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("snapshot_tmp_dir %s is not a directory (%v)", cfg.Backing.SnapshotTmpDir, err)
	}
	sec, err := cfg.Security.Load(proto.RoleSta)
	if err != nil {
		return err
	}
	store, err := newStore(ctx, cfg.Backing)
	if err != nil {
		return err
	}
	tg, err := newTarget(ctx, cfg.Target)
	if err != nil {
		return err
	}
	var finished jobtable.Table
	if path := cfg.jobsFile(); path != "" {
		f, err := jobtable.Open(path)
		if err != nil {
			return err
		}
		defer func() {
			if err := f.Close(); err != nil {
				logger.Warn("close the job table", "error", err)
			}
		}()
		finished = f
	}

	// The collector client needs the agent's member list and the agent
	// reports finished jobs through the client: build the agent first and
	// let its callback use the client made right after.
	var coll *collector.Client
	a, err := agent.New(agent.Config{
		NodeID:        cfg.NodeID,
		Role:          proto.RoleSta,
		SerfAddr:      cfg.SerfAddr,
		AdvertiseHost: cfg.AdvertiseHost,
		RPCAddr:       cfg.RPCAddr,
		Join:          cfg.Join,
		FastGossip:    cfg.FastGossip,
		Token:         cfg.Token,
		Security:      sec,
		Logger:        logger,
		Concurrency:   map[string]int{proto.EndpointStaHandle: cfg.Concurrency},
		Finished:      finished,
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			// Only makes the dispatcher learn the result sooner (it also
			// redelivers to find out), so a short bounded try is enough.
			ctx, cancel := context.WithTimeout(ctx, hvacollector.DefaultAttemptTimeout)
			defer cancel()
			if err := coll.JobFinished(ctx, cfg.NodeID, res); err != nil {
				logger.WarnContext(ctx, "report job result", "job_id", res.JobID, "error", err)
			}
		},
	})
	if err != nil {
		return err
	}
	// The managers are found and retried the way the hva does it.
	coll = collector.New(hvacollector.New(hvacollector.Config{Members: a, RPC: a.Client(), Logger: logger}))
	h, err := handlers.New(handlers.Config{
		NodeID:               cfg.NodeID,
		Store:                store,
		Target:               tg,
		Collector:            coll,
		Backups:              &backup.Client{},
		IQNPrefix:            cfg.Target.IQNPrefix,
		PortalIP:             cfg.Target.PortalIP,
		LocalBackupStorageID: cfg.Backing.LocalBackupStorageID,
		LocalBackupPath:      cfg.Backing.LocalBackupPath,
		TmpDir:               cfg.Backing.SnapshotTmpDir,
		Logger:               logger,
	})
	if err != nil {
		return err
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		return err
	}
	attrs := []any{"node_id", cfg.NodeID, "backing", store.Driver(), "target", tg.Driver(),
		"iqn_prefix", cfg.Target.IQNPrefix, "rpc", a.RPCAddr(), "serf", a.SerfAddr()}
	if c, err := store.Capacity(ctx); err == nil {
		attrs = append(attrs, "total_bytes", c.Total, "free_bytes", c.Free)
	}
	logger.Info("sta started", attrs...)

	bgCtx, stopBg := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Go(func() { h.RunReexport(bgCtx, ms(cfg.ReexportIntervalMS)) })

	<-ctx.Done()
	logger.Info("shutting down")
	stopBg()
	bg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), ms(cfg.ShutdownTimeoutMS))
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		// Interrupted jobs are redelivered by the dispatcher; their
		// handlers carry on from the state they left (an interrupted create
		// left nothing half made).
		logger.Warn("shutdown", "error", err)
	}
	logger.Info("stopped")
	return nil
}

func newStore(ctx context.Context, c BackingConfig) (backing.Store, error) {
	switch c.Driver {
	case backingRaw, backingQcow2, backingReflink:
		return file.New(c.Driver, file.Config{Dir: c.ExportPath, QemuImg: c.QemuImgPath})
	case backingLVM:
		return lvm.New(ctx, lvm.Config{VolumeGroup: c.VolumeGroup, ThinPool: c.ThinPool, TmpDir: c.SnapshotTmpDir})
	case backingMemory:
		return memory.New(c.MemoryBytes), nil
	}
	return nil, fmt.Errorf("backing store driver %q: want raw, qcow2, reflink, lvm or memory", c.Driver)
}

func newTarget(ctx context.Context, c TargetConfig) (target.Target, error) {
	switch c.Driver {
	case targetTgt:
		t := tgt.New(tgt.Config{Tgtadm: c.TgtadmPath, Initiators: c.InitiatorAddress, Runner: command.Exec{}})
		if err := t.Ping(ctx); err != nil {
			return nil, fmt.Errorf("tgt target: tgtd does not answer (is it running?): %w", err)
		}
		return t, nil
	case targetMemory:
		return tmem.New(c.InitiatorAddress), nil
	}
	return nil, fmt.Errorf("target driver %q: want tgt or memory", c.Driver)
}
