// Package daemon is the scheduler daemon (spec/agents.md §2.1, §4): an agent
// with role "scheduler" that runs the scheduler jobs the managers'
// dispatcher delivers. It places instances with package scheduler on views
// it reads from the managers over RPC (endpoint scheduler-collector) and
// submits the plans to the raft leader, which re-checks and applies them.
// It never imports the manager: everything goes over RPC.
package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/proto"
)

// reportTimeout bounds reporting a job's result.
const reportTimeout = 5 * time.Second

// Daemon is a scheduler daemon: the agent runtime plus the Placer.
type Daemon struct {
	agent  *agent.Agent
	placer *Placer
	logger *slog.Logger
}

// New builds a daemon; nothing listens until Start.
func New(cfg Config, logger *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = logging.Discard()
	}
	sec, err := cfg.Security.Load(proto.RoleScheduler)
	if err != nil {
		return nil, err
	}
	d := &Daemon{logger: logger}
	tune := cfg.SerfTune
	if cfg.CrowdGossip && tune == nil {
		tune = agent.CrowdGossip
	}
	a, err := agent.New(agent.Config{
		NodeID:        cfg.NodeID,
		Role:          proto.RoleScheduler,
		SerfAddr:      cfg.SerfAddr,
		AdvertiseHost: cfg.AdvertiseHost,
		RPCAddr:       cfg.RPCAddr,
		Join:          cfg.Join,
		FastGossip:    cfg.FastGossip,
		SerfTune:      tune,
		Token:         cfg.Token,
		Security:      sec,
		Logger:        logger,
		Concurrency:   map[string]int{proto.EndpointScheduler: cfg.Concurrency},
		OnJobFinished: d.reportJob,
		// No job table (agent.Config.Finished): the scheduler has no data
		// dir, and a placement job run again after a restart is harmless:
		// the leader re-checks every plan against the state (an instance
		// no longer in scheduling refuses it).
	})
	if err != nil {
		return nil, err
	}
	d.agent = a
	managers := d.serfManagers
	if len(cfg.Managers) > 0 {
		static := append([]string(nil), cfg.Managers...)
		managers = func() []string { return static }
	}
	if d.placer, err = NewPlacer(cfg, a.Client(), managers, a.Logger()); err != nil {
		return nil, err
	}
	a.HandleJob(proto.EndpointScheduler, proto.VerbScheduleInstance, agent.JobFunc(d.placer.ScheduleInstance))
	a.HandleJob(proto.EndpointScheduler, proto.VerbScheduleStartInstance, agent.JobFunc(d.placer.ScheduleStartInstance))
	a.HandleJob(proto.EndpointScheduler, proto.VerbScheduleVolume, agent.JobFunc(d.placer.ScheduleVolume))
	a.HandleJob(proto.EndpointScheduler, proto.VerbEvacuateFrom, agent.JobFunc(d.placer.EvacuateFrom))
	return d, nil
}

// Start starts the agent (RPC server, serf join).
func (d *Daemon) Start() error { return d.agent.Start() }

// Shutdown stops the agent, letting running jobs finish until ctx ends.
func (d *Daemon) Shutdown(ctx context.Context) error { return d.agent.Shutdown(ctx) }

// Agent is the daemon's agent runtime.
func (d *Daemon) Agent() *agent.Agent { return d.agent }

// Placer is the daemon's job logic.
func (d *Daemon) Placer() *Placer { return d.placer }

// serfManagers lists the RPC addresses of the live managers in serf.
func (d *Daemon) serfManagers() []string {
	var out []string
	for _, m := range d.agent.Members() {
		if m.Role == proto.RoleManager && m.RPC != "" && m.Status == "alive" {
			out = append(out, m.RPC)
		}
	}
	return out
}

// reportJob tells the managers a job's result at once (job-collector
// job_finished). It is best effort: the dispatcher also learns the result
// by delivering the job again, so one round over the managers with a short
// timeout is enough (the agent's shutdown waits for this call).
func (d *Daemon) reportJob(ctx context.Context, res proto.JobResult) {
	ctx, cancel := context.WithTimeout(ctx, min(d.placer.cfg.callTimeout(), reportTimeout))
	defer cancel()
	req := proto.JobFinishedRequest{NodeID: d.agent.NodeID(), Result: res}
	if err := d.placer.callEndpoint(ctx, proto.EndpointJobCollector, proto.VerbJobFinished, req, nil, false); err != nil {
		d.logger.DebugContext(ctx, "job result not reported; the dispatcher will ask again", "job_id", res.JobID, "error", err)
	}
}
