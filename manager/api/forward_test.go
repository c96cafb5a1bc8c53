package api

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

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
