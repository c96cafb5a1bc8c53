package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/cluster"
)

// node is one manager of an in-process cluster with its own API server.
type node struct {
	srv *cluster.Server
	ts  *httptest.Server
	env *env
}

func threeNodeAPI(t *testing.T) []*node {
	t.Helper()
	var nodes []*node
	var first string
	for i := 0; i < 3; i++ {
		srv := cluster.TestServer(t, func(c *cluster.Config) {
			c.BootstrapExpect = 3
			if first != "" {
				c.Join = []string{first}
			}
		})
		if first == "" {
			first = srv.SerfAddr()
		}
		a := New(DefaultConfig(), srv, logging.NewTest(t))
		ts := httptest.NewServer(a)
		t.Cleanup(ts.Close)
		srv.SetAPIAddr(strings.TrimPrefix(ts.URL, "http://"))
		nodes = append(nodes, &node{srv: srv, ts: ts, env: &env{t: t, srv: srv, api: a, ts: ts}})
	}
	servers := []*cluster.Server{nodes[0].srv, nodes[1].srv, nodes[2].srv}
	cluster.WaitForLeader(t, servers...)
	testutil.WaitFor(t, 10*time.Second, func() error {
		for _, n := range nodes {
			if _, err := n.srv.LeaderAPI(); err != nil {
				return err
			}
		}
		return nil
	})
	return nodes
}

func TestFollowerForwardsWritesAndReads(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	nodes := threeNodeAPI(t)
	var follower, leader *node
	for _, n := range nodes {
		if n.srv.IsLeader() {
			leader = n
		} else if follower == nil {
			follower = n
		}
	}
	// A write sent to a follower lands.
	r := follower.env.post("/backup_storages.json", url.Values{
		"uuid": {"bkst-fwd1"}, "storage_type": {"local"}, "base_uri": {"file:///f"}}).ok()
	if id := r.header.Get("X-VDC-Request-ID"); len(id) != 40 || len(r.header.Values("X-VDC-Request-ID")) != 1 {
		t.Fatalf("forwarded response request ids = %v", r.header.Values("X-VDC-Request-ID"))
	}
	leader.env.get("/backup_storages/bkst-fwd1.json").ok()
	// A default read on a follower is answered by the leader, so it sees the
	// write at once; a stale read is local and sees it once replicated.
	follower.env.get("/backup_storages/bkst-fwd1.yml").ok()
	testutil.WaitFor(t, 5*time.Second, func() error {
		if r := follower.env.get("/backup_storages/bkst-fwd1.json?stale=true"); r.status != 200 {
			return fmt.Errorf("stale read status %d", r.status)
		}
		return nil
	})
	// The account header auto-creates the account through the leader even
	// when the request arrives at a follower as a stale read.
	follower.env.do(req{method: "GET", path: "/backup_storages.json?stale=true", account: acct("a-newcomer")}).ok()
}

func TestNoLeaderAnswers503(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	nodes := threeNodeAPI(t)
	var survivor *node
	for _, n := range nodes {
		if survivor == nil && !n.srv.IsLeader() {
			survivor = n
			continue
		}
		n.srv.Shutdown()
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		r := survivor.env.post("/backup_storages.json", url.Values{"storage_type": {"local"}, "base_uri": {"file:///x"}})
		if r.status != http.StatusServiceUnavailable {
			return fmt.Errorf("status %d: %s", r.status, r.body)
		}
		if r.header.Get("Retry-After") == "" {
			return fmt.Errorf("no Retry-After")
		}
		m := r.obj()
		if m["error"] != "Dcmgr::Endpoints::NoLeader" || m["message"] == "" {
			return fmt.Errorf("error document %v", m)
		}
		return nil
	})
}

// follower is a manager that does not lead and forwards to leader.
type follower struct {
	Backend
	mu     sync.Mutex
	leader string
}

func (f *follower) IsLeader() bool { return false }

func (f *follower) LeaderAPI() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leader == "" {
		return "", errs.New(errs.NoLeader, "no cluster leader is known")
	}
	return f.leader, nil
}

func (f *follower) setLeader(addr string) {
	f.mu.Lock()
	f.leader = addr
	f.mu.Unlock()
}

// blackholeAddr is a loopback address whose connections never complete: a
// listener (backlog 0) whose accept queue is full and never drained, so
// the kernel drops every further SYN, as a partitioned host's does.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return addr // the queue is full: this SYN was dropped
		}
		if err != nil {
			t.Fatalf("fill the accept queue of %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		if i == 8 {
			t.Fatalf("the accept queue of %s does not fill", addr)
		}
	}
}

// TestForwardToUnreachableLeaderAnswers503: a follower whose leader cannot
// be reached (connections blackholed), does not answer, or stops being the
// leader while a forwarded request waits, answers that request promptly
// with 503 NoLeader and Retry-After, which the client retries; before, the
// request hung until the kernel gave up on the connection (minutes) or the
// proxy's 60 s header timeout.
func TestForwardToUnreachableLeaderAnswers503(t *testing.T) {
	srv := cluster.TestServer(t, nil)
	fb := &follower{Backend: srv}
	a := New(DefaultConfig(), fb, logging.NewTest(t))
	ts := httptest.NewServer(a)
	t.Cleanup(ts.Close)
	// The client gives up long after the bounds configured below, long
	// before the old behaviour would have answered.
	client := &http.Client{Timeout: 30 * time.Second}
	post := func(t *testing.T) (int, http.Header, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", ts.URL+Prefix+"/security_groups.json",
			strings.NewReader(url.Values{"display_name": {"fwd"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-VDC-Account-UUID", testAccount)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("forwarded request: %v", err)
		}
		defer res.Body.Close()
		var doc map[string]any
		_ = json.NewDecoder(res.Body).Decode(&doc)
		return res.StatusCode, res.Header, doc
	}
	want503 := func(t *testing.T, status int, h http.Header, doc map[string]any, why string) {
		t.Helper()
		if status != http.StatusServiceUnavailable || h.Get("Retry-After") == "" ||
			doc["error"] != "Dcmgr::Endpoints::NoLeader" || !strings.Contains(fmt.Sprint(doc["message"]), why) {
			t.Fatalf("status %d, Retry-After %q, document %v; want 503 NoLeader saying %q", status, h.Get("Retry-After"), doc, why)
		}
	}

	t.Run("connections blackholed", func(t *testing.T) {
		a.proxy = newForwarder(fb, 300*time.Millisecond, 10*time.Minute)
		fb.setLeader(blackholeAddr(t))
		status, h, doc := post(t)
		want503(t, status, h, doc, "could not be reached within 300ms")
	})
	t.Run("leader never answers", func(t *testing.T) {
		// The connection is made (the kernel's backlog) but nothing reads
		// the request: a frozen leader.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		a.proxy = newForwarder(fb, 300*time.Millisecond, time.Second)
		fb.setLeader(l.Addr().String())
		status, h, doc := post(t)
		want503(t, status, h, doc, "did not answer within 1s")
	})
	t.Run("leadership changes while waiting", func(t *testing.T) {
		// The leader reads the request and never answers; then this
		// manager learns that leadership moved.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 1)
			if _, err := c.Read(buf); err == nil {
				fb.setLeader("")
			}
			_, _ = io.Copy(io.Discard, c)
		}()
		a.proxy = newForwarder(fb, 300*time.Millisecond, 10*time.Minute)
		fb.setLeader(l.Addr().String())
		status, h, doc := post(t)
		want503(t, status, h, doc, "leadership changed")
	})
}
