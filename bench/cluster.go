package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
)

// formTimeout bounds how long a cluster may take to elect a leader and
// agree on it.
const formTimeout = 30 * time.Second

// Manager is one manager of a benchmark cluster: a cluster.Server and,
// when asked for, its API on a real loopback HTTP listener.
type Manager struct {
	Srv  *cluster.Server
	HTTP *http.Server // nil without API
	URL  string       // http://127.0.0.1:port, "" without API
	Dead bool         // killed by Kill
}

// Cluster is n managers in this process, each with its own data dir.
type Cluster struct {
	Managers []*Manager
	dir      string
}

// StartCluster starts n managers under a fresh directory in root, with the
// shipped timeouts of cluster.DefaultConfig() except addresses, directories
// and FastGossip, and waits until they agree on a leader. n == 1 bootstraps
// alone; n > 1 forms with BootstrapExpect n, the others joining the first.
// mods adjust every manager's config last (the failover benchmark's raft
// timeouts).
func StartCluster(ctx context.Context, root string, n int, withAPI bool, mods ...func(*cluster.Config)) (*Cluster, error) {
	dir, err := os.MkdirTemp(root, fmt.Sprintf("c%d-", n))
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	var join []string
	for i := range n {
		m, err := startManager(dir, i, n, join, withAPI, mods)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start manager %d of %d: %w", i+1, n, err)
		}
		c.Managers = append(c.Managers, m)
		if i == 0 {
			join = []string{m.Srv.SerfAddr()}
		}
	}
	if err := c.waitFormed(ctx, withAPI); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// startPortAttempts retries a start whose "free" port was taken meanwhile
// (other test processes share the machine).
const startPortAttempts = 3

func startManager(dir string, i, n int, join []string, withAPI bool, mods []func(*cluster.Config)) (*Manager, error) {
	var lastErr error
	for range startPortAttempts {
		m, err := tryStartManager(dir, i, n, join, withAPI, mods)
		if err == nil {
			return m, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryStartManager(dir string, i, n int, join []string, withAPI bool, mods []func(*cluster.Config)) (*Manager, error) {
	cfg := cluster.DefaultConfig()
	// The directory name is random, so node names never repeat within a run.
	cfg.NodeName = filepath.Base(dir) + "-m" + strconv.Itoa(i+1)
	cfg.DataDir = filepath.Join(dir, "m"+strconv.Itoa(i+1))
	cfg.BootstrapExpect = n
	cfg.Join = join
	cfg.FastGossip = true
	serfPort, err := freePort()
	if err != nil {
		return nil, err
	}
	raftPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg.SerfAddr = "127.0.0.1:" + serfPort
	cfg.RaftAddr = "127.0.0.1:" + raftPort
	cfg.APIAddr = "127.0.0.1:0"

	// The listener comes first so the API address is in the serf tags from
	// the start and followers can forward to this manager at once.
	var ln net.Listener
	if withAPI {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		cfg.APIAddr = ln.Addr().String()
	}
	for _, mod := range mods {
		mod(&cfg)
	}
	logger := logging.Discard()
	srv, err := cluster.New(cfg, logger)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return nil, err
	}
	m := &Manager{Srv: srv}
	if withAPI {
		m.HTTP = &http.Server{
			Handler:           api.New(api.DefaultConfig(), srv, logger),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          log.New(io.Discard, "", 0),
		}
		m.URL = "http://" + cfg.APIAddr
		go func() { _ = m.HTTP.Serve(ln) }()
	}
	return m, nil
}

// waitFormed waits until one manager leads, every manager knows it, the
// leader has all managers as raft peers and (with API) every follower can
// name the leader's API address for forwarding.
func (c *Cluster) waitFormed(ctx context.Context, withAPI bool) error {
	deadline := time.Now().Add(formTimeout)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		last = c.formed(withAPI)
		if last == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("cluster of %d not formed within %s: %w", len(c.Managers), formTimeout, last)
}

func (c *Cluster) formed(withAPI bool) error {
	l := c.Leader()
	if l == nil {
		return errors.New("no leader yet")
	}
	peers, err := l.Srv.Peers()
	if err != nil {
		return err
	}
	if len(peers) != len(c.Managers) {
		return fmt.Errorf("leader has %d raft peers, want %d", len(peers), len(c.Managers))
	}
	for _, m := range c.Managers {
		if m.Srv.Stats()["leader"] != l.Srv.NodeName() {
			return fmt.Errorf("%s does not know the leader yet", m.Srv.NodeName())
		}
		if withAPI {
			if addr, err := m.Srv.LeaderAPI(); err != nil || "http://"+addr != l.URL {
				return fmt.Errorf("%s cannot name the leader's API yet (%q, %v)", m.Srv.NodeName(), addr, err)
			}
		}
	}
	return nil
}

// Leader is the live manager that leads with a committed barrier, or nil.
func (c *Cluster) Leader() *Manager {
	for _, m := range c.Managers {
		if !m.Dead && m.Srv.IsLeader() {
			return m
		}
	}
	return nil
}

// Kill stops m without leaving: raft and serf shut down, then the HTTP
// listener and its connections close, as when the process dies.
func (c *Cluster) Kill(m *Manager) {
	m.Dead = true
	m.Srv.Shutdown()
	if m.HTTP != nil {
		_ = m.HTTP.Close()
	}
}

// Close stops every manager and removes the cluster's directory.
func (c *Cluster) Close() {
	for _, m := range c.Managers {
		if m.HTTP != nil {
			_ = m.HTTP.Close()
		}
		m.Srv.Shutdown()
	}
	_ = os.RemoveAll(c.dir)
}

// freePort returns a port that was free for TCP and UDP a moment ago; serf
// needs its port before it starts (memberlist binds both on the same one).
func freePort() (string, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		u.Close()
		return strconv.Itoa(port), nil
	}
	return "", errors.New("no free tcp+udp port on 127.0.0.1")
}

// RaftTimeouts are raft timeouts for a benchmark cluster; zero fields take
// cluster.DefaultConfig's (the shipped defaults).
type RaftTimeouts struct {
	Heartbeat, Election, LeaderLease time.Duration
}

// resolved returns the timeouts with the defaults filled in.
func (t RaftTimeouts) resolved() RaftTimeouts {
	d := cluster.DefaultConfig()
	if t.Heartbeat <= 0 {
		t.Heartbeat = d.HeartbeatTimeout
	}
	if t.Election <= 0 {
		t.Election = d.ElectionTimeout
	}
	if t.LeaderLease <= 0 {
		t.LeaderLease = d.LeaderLeaseTimeout
	}
	return t
}

func (t RaftTimeouts) apply(c *cluster.Config) {
	r := t.resolved()
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = r.Heartbeat, r.Election, r.LeaderLease
}

func (t RaftTimeouts) String() string {
	r := t.resolved()
	return fmt.Sprintf("heartbeat %s, election %s, leader lease %s", r.Heartbeat, r.Election, r.LeaderLease)
}

// Terms is the highest raft term any live manager has seen: each election
// raises it by at least one.
func (c *Cluster) Terms() uint64 {
	var top uint64
	for _, m := range c.Managers {
		if m.Dead {
			continue
		}
		if t, err := strconv.ParseUint(m.Srv.Stats()["term"], 10, 64); err == nil && t > top {
			top = t
		}
	}
	return top
}
