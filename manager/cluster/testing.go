package cluster

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/logging"
)

var (
	testNodeSeq atomic.Int64
	// portsMu/portsGiven: FreePort never hands out the same port twice in one
	// test binary, since a just-closed port is often what the kernel offers next.
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// TestConfig is a loopback manager with short timeouts in a temp dir.
func TestConfig(t testing.TB) Config {
	t.Helper()
	c := DefaultConfig()
	c.NodeName = fmt.Sprintf("m%d", testNodeSeq.Add(1))
	c.DataDir = t.TempDir()
	c.SerfAddr = "127.0.0.1:" + FreePort(t)
	c.RaftAddr = "127.0.0.1:" + FreePort(t)
	c.APIAddr = "127.0.0.1:0"
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 100 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.ReconcileInterval = 200 * time.Millisecond
	c.ApplyTimeout = 5 * time.Second
	c.FastGossip = true
	return c
}

// TestServer starts a manager for a test and stops it at cleanup. With
// BootstrapExpect 1 (the default) it waits until the manager leads.
func TestServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	var (
		c   Config
		s   *Server
		err error
	)
	// FreePort's ports were free a moment ago; a test binary of another
	// package (go test runs them side by side) may take one before New binds
	// it. Fresh ports then, a few times.
	for attempt := 0; ; attempt++ {
		c = TestConfig(t)
		if mod != nil {
			mod(&c)
		}
		s, err = New(c, logging.NewTest(t))
		// memberlist reports a bind failure as text (%v), raft as an error.
		inUse := err != nil && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use"))
		if !inUse || attempt == 4 {
			break
		}
	}
	if err != nil {
		t.Fatalf("start test manager: %v", err)
	}
	t.Cleanup(s.Shutdown)
	if c.BootstrapExpect == 1 {
		WaitForLeader(t, s)
	}
	return s
}

// WaitForLeader waits until one of servers leads and returns it.
func WaitForLeader(t testing.TB, servers ...*Server) *Server {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range servers {
			if s.IsLeader() {
				return s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no leader among %d managers", len(servers))
	return nil
}

// FreePort returns a port that was free a moment ago. serf needs a known
// port before it starts (memberlist binds TCP and UDP to the same one).
func FreePort(t testing.TB) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		portsMu.Lock()
		given := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if given {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u.Close()
		return fmt.Sprint(port)
	}
	t.Fatalf("no free tcp+udp port")
	return ""
}
