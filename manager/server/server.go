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
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/collector"
	"github.com/vdc-project/vdc/manager/health"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/scheduling"
)

// Config is a manager's configuration. The listeners are opened by the
// caller so that it controls the ports (0 in tests).
type Config struct {
	Cluster     cluster.Config
	API         api.Config
	RPCToken    string
	APIListener net.Listener
	RPCListener net.Listener
	// AdvertiseHost replaces an unspecified listener host in the addresses
	// other nodes are told.
	AdvertiseHost string
	// HealthInterval is how often the leader reconciles node states.
	HealthInterval time.Duration
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
	cfg.Cluster.APIAddr = Advertised(cfg.APIListener, cfg.AdvertiseHost)
	cfg.Cluster.RPCAddr = Advertised(cfg.RPCListener, cfg.AdvertiseHost)
	srv, err := cluster.New(cfg.Cluster, logger)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{Cluster: srv, cancel: cancel}

	security := rpc.Security{Token: cfg.RPCToken}
	m.rpc = rpc.NewServer(rpc.ServerConfig{Security: security, Logger: logger.With("component", "rpc")})
	members := cachedMembers(srv)
	m.client = rpc.NewClient(rpc.ClientConfig{Security: security})
	dispatcher := jobs.NewDispatcher(jobs.Deps{
		Cluster: srv, Members: members, Client: m.client, Logger: logger.With("component", "dispatcher"),
		OnFail: scheduling.FailUnplaced,
	})
	collector.New(collector.Deps{
		Cluster: srv, Finalize: api.FinalizeInstance, Logger: logger.With("component", "collector"),
		Delivering: dispatcher.Delivering,
	}).Register(m.rpc)
	scheduling.New(scheduling.Config{Store: srv.Store(), Applier: srv, Logger: logger}).Register(m.rpc)
	srv.FSM().OnApply(func(uint64) { dispatcher.Wake() })
	monitor := health.New(srv, members, logger.With("component", "health"), cfg.HealthInterval)

	m.API = api.New(cfg.API, srv, logger)
	m.http = &http.Server{Handler: m.API, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}

	m.wg.Add(4)
	go func() { defer m.wg.Done(); dispatcher.Run(ctx) }()
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
