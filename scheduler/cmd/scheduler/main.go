// Command scheduler is the vdc scheduler daemon: a serf member with role
// "scheduler" that runs the scheduler jobs (schedule_instance,
// schedule_start_instance) the managers deliver, placing instances on views
// read from the managers and submitting the plans to the raft leader.
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
	"github.com/vdc-project/vdc/scheduler/daemon"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scheduler:", err)
		os.Exit(1)
	}
}

// shutdownGrace is how long running jobs may finish after a signal.
const shutdownGrace = 30 * time.Second

func run(args []string, stderr io.Writer) error {
	cfg, err := loadConfig(args, stderr)
	if err != nil {
		return err
	}
	logger, err := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	d, err := daemon.New(cfg, logger)
	if err != nil {
		return err
	}
	if err := d.Start(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	s := <-sig
	logger.Info("shutting down", "signal", s.String())
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	return d.Shutdown(ctx)
}
