// Package server assembles a manager: the raft/serf cluster node, the 12.03
// API, the agent RPC endpoints (collector, scheduler plans) and the leader
// loops (job dispatcher, node health). dcmgr runs one; tests run several.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/collector"
	"github.com/vdc-project/vdc/manager/health"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Config is a manager's configuration. The listeners are opened by the
// caller so that it controls the ports (0 in tests).
type Config struct {
	Cluster  cluster.Config
	API      api.Config
	RPCToken string
	// Security is the manager's cluster security (common/security): RPC
	// token(s) and mutual TLS for the collector endpoints and job delivery,
	// TLS for raft, the gossip keyring. Its token, when set, replaces RPCToken.
	Security    security.Settings
	APIListener net.Listener
	RPCListener net.Listener
	// AdvertiseHost replaces an unspecified listener host in the addresses
	// other nodes are told.
	AdvertiseHost string
	// HealthInterval is how often the leader reconciles node states.
	HealthInterval time.Duration
	// HA configures the evacuation of failed hosts (the zero value answers
	// hva heartbeats but evacuates nothing on its own).
	HA health.HAConfig
	// JobRetention bounds the finished jobs kept (the zero value keeps them
	// all; dcmgr ships jobs.DefaultRetentionAge and DefaultRetentionCount).
	JobRetention jobs.Retention
	// Clock is the wall clock behind timestamps and job deadlines (nil:
	// time.Now). dcmgr offsets it for clock-jump tests; raft and serf
	// time with the monotonic clock, which a wall-clock jump does not move.
	Clock func() time.Time
}

// Manager is a running manager.
type Manager struct {
	Cluster *cluster.Server
	API     *api.API

	rpc    *rpc.Server
	http   *http.Server
	client *rpc.Client
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start brings a manager up. On error everything started is stopped.
func Start(cfg Config, logger *slog.Logger) (*Manager, error) {
	if cfg.APIListener == nil || cfg.RPCListener == nil {
		return nil, errors.New("server: API and RPC listeners are required")
	}
	if err := cfg.HA.Validate(); err != nil {
		return nil, err
	}
	cfg.Cluster.APIAddr = Advertised(cfg.APIListener, cfg.AdvertiseHost)
	cfg.Cluster.RPCAddr = Advertised(cfg.RPCListener, cfg.AdvertiseHost)
	sec := cfg.Security.RPC
	if sec.Token == "" {
		sec.Token = cfg.RPCToken
	}
	cfg.Cluster.Security = cfg.Security
	srv, err := cluster.New(cfg.Cluster, logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{Cluster: srv, cancel: cancel}
	clock := cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	now := func() time.Time { return clock().UTC().Truncate(time.Second) }
	cfg.API.Now = now

	m.rpc = rpc.NewServer(rpc.ServerConfig{Security: sec, Logger: logger.With("component", "rpc")})
	members := cachedMembers(srv)
	m.client = rpc.NewClient(rpc.ClientConfig{Security: sec})
	// Heartbeat ages stay on the monotonic clock (HA's default Now): a
	// wall-clock jump must not make a live host look dead.
	cfg.HA.StampNow = now
	ha, err := health.NewHA(srv, members, cfg.HA, logger)
	if err != nil {
		cancel()
		srv.Shutdown()
		return nil, err
	}
	ha.Register(m.rpc)
	// A job that ends without success (failed or timed out by the
	// dispatcher, cancelled through the API) takes its resource out of the
	// state that waited for it, in the same txn.
	onFail := func(tx *state.Tx, b *state.Builder, j proto.Job, reason string, now time.Time) error {
		if err := scheduling.FailUnplaced(tx, b, j, reason, now); err != nil {
			return err
		}
		if err := scheduling.FailEvacuationCleanup(tx, b, j, reason, now); err != nil {
			return err
		}
		return collector.FailMigration(tx, b, j, reason, now)
	}
	dispatcher := jobs.NewDispatcher(jobs.Deps{
		Cluster: srv, Members: members, Client: m.client, Logger: logger.With("component", "dispatcher"),
		OnFail: onFail, Now: now,
	})
	collector.New(collector.Deps{
		Cluster: srv, Finalize: api.FinalizeInstance, Logger: logger.With("component", "collector"), Now: now,
		Delivering: dispatcher.Delivering,
	}).Register(m.rpc)
	scheduling.New(scheduling.Config{Store: srv.Store(), Applier: srv, Logger: logger, Now: now}).Register(m.rpc)
	scheduling.NewEvacuation(scheduling.EvacuationConfig{Store: srv.Store(), Applier: srv,
		Finalize: api.FinalizeInstance, Now: now, Logger: logger}).Register(m.rpc)
	srv.FSM().OnApply(func(uint64) { dispatcher.Wake() })
	monitor := health.New(srv, members, logger.With("component", "health"), cfg.HealthInterval)
	pruner := jobs.NewPruner(srv, cfg.JobRetention, now, logger.With("component", "job-retention"))

	m.API = api.New(cfg.API, srv, logger)
	m.API.SetJobEndHook(onFail)
	m.http = &http.Server{Handler: m.API, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}

	m.wg.Add(6)
	go func() { defer m.wg.Done(); dispatcher.Run(ctx) }()
	go func() { defer m.wg.Done(); pruner.Run(ctx) }()
	go func() { defer m.wg.Done(); ha.Run(ctx) }()
	go func() { defer m.wg.Done(); monitor.Run(ctx) }()
	go func() { defer m.wg.Done(); _ = m.rpc.Serve(cfg.RPCListener) }()
	go func() {
		defer m.wg.Done()
		if err := m.http.Serve(cfg.APIListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("api server", "error", err)
		}
	}()
	return m, nil
}

// Shutdown stops the API and RPC servers and the leader loops, then the
// cluster node (without leaving).
func (m *Manager) Shutdown(ctx context.Context) {
	m.once.Do(func() {
		_ = m.http.Shutdown(ctx)
		_ = m.rpc.Shutdown(ctx)
		m.cancel()
		m.wg.Wait()
		m.client.Close()
		m.Cluster.Shutdown()
	})
}

// Advertised is the address other nodes use to reach listener l.
func Advertised(l net.Listener, host string) string {
	addr := l.Addr().String()
	if a, err := agent.Advertise(addr, host); err == nil {
		return a
	}
	return addr
}

// Listen opens the API and RPC listeners of cfg.
func Listen(apiAddr, rpcAddr string) (apiL, rpcL net.Listener, err error) {
	if apiL, err = net.Listen("tcp", apiAddr); err != nil {
		return nil, nil, fmt.Errorf("api listen: %w", err)
	}
	if rpcL, err = net.Listen("tcp", rpcAddr); err != nil {
		apiL.Close()
		return nil, nil, fmt.Errorf("rpc listen: %w", err)
	}
	return apiL, rpcL, nil
}

// cachedMembers converts the cluster's member list for the dispatcher and
// the health loop once per membership change (the dispatcher routes every
// job delivery through it).
func cachedMembers(srv *cluster.Server) func() []jobs.Member {
	var (
		mu   sync.Mutex
		ver  uint64
		list []jobs.Member
	)
	return func() []jobs.Member {
		v := srv.MembersVersion()
		mu.Lock()
		defer mu.Unlock()
		if list == nil || v != ver {
			list, ver = jobs.Members(srv.Members()), v
		}
		return list
	}
}
