package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/state"
)

type item struct {
	ID string `json:"id"`
}

// threeManagers starts a 3-manager cluster formed with BootstrapExpect 3.
func threeManagers(t *testing.T, mod func(*Config)) []*Server {
	t.Helper()
	var servers []*Server
	var first string
	for i := 0; i < 3; i++ {
		s := TestServer(t, func(c *Config) {
			c.BootstrapExpect = 3
			if first != "" {
				c.Join = []string{first}
			}
			if mod != nil {
				mod(c)
			}
		})
		if first == "" {
			first = s.SerfAddr()
		}
		servers = append(servers, s)
	}
	WaitForLeader(t, servers...)
	testutil.WaitFor(t, 10*time.Second, func() error {
		peers, err := leaderOf(servers).Peers()
		if err != nil || len(peers) != 3 {
			return fmt.Errorf("peers = %v, %v", peers, err)
		}
		return nil
	})
	return servers
}

func leaderOf(servers []*Server) *Server {
	for _, s := range servers {
		if s != nil && s.IsLeader() {
			return s
		}
	}
	return nil
}

func put(ctx context.Context, s *Server, id string) error {
	b := new(state.Builder).Create("items", id, item{ID: id})
	txn, _ := b.Txn()
	_, err := s.Apply(ctx, state.CmdTxn, txn)
	return err
}

// putRetry writes id through whichever manager leads, retrying across
// elections (a leader change mid-write is a normal outcome on a busy box).
func putRetry(t *testing.T, servers []*Server, id string) {
	t.Helper()
	testutil.WaitFor(t, 15*time.Second, func() error {
		l := leaderOf(servers)
		if l == nil {
			return fmt.Errorf("no leader")
		}
		err := put(context.Background(), l, id)
		var te *state.TxnError
		if errors.As(err, &te) && te.Reason == state.ReasonExists {
			return nil // an earlier attempt with an unknown outcome did land
		}
		return err
	})
}

func has(s *Server, id string) bool {
	ok := false
	_ = s.Store().View(func(tx *state.Tx) error { ok = tx.Exists("items", id); return nil })
	return ok
}

func TestThreeManagersFailoverLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	servers := threeManagers(t, nil)
	leader := leaderOf(servers)
	for _, s := range servers {
		if s != leader {
			if err := put(context.Background(), s, "x"); !errs.Is(err, errs.NoLeader) {
				t.Fatalf("apply on follower = %v, want NoLeader", err)
			}
		}
	}

	// Writers keep writing to whoever leads while the leader is killed.
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, n)
				mu.Lock()
				l := leaderOf(servers)
				mu.Unlock()
				if l == nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := put(ctx, l, id)
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	old := leaderOf(servers)
	for i, s := range servers {
		if s == old {
			servers[i] = nil
		}
	}
	mu.Unlock()
	old.Shutdown()

	rest := []*Server{}
	for _, s := range servers {
		if s != nil {
			rest = append(rest, s)
		}
	}
	newLeader := WaitForLeader(t, rest...)
	// The new leader accepts writes.
	testutil.WaitFor(t, 10*time.Second, func() error { return put(context.Background(), newLeader, "after-failover") })
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	for _, s := range rest {
		testutil.WaitFor(t, 10*time.Second, func() error {
			for _, id := range acked {
				if !has(s, id) {
					return fmt.Errorf("%s lacks acknowledged write %s", s.NodeName(), id)
				}
			}
			return nil
		})
	}
	t.Logf("%d acknowledged writes, all present on both survivors", len(acked))
}

func TestRestartedManagerCatchesUpFromSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	servers := threeManagers(t, func(c *Config) {
		c.SnapshotThreshold = 64
		c.TrailingLogs = 16
	})
	leader := leaderOf(servers)
	var follower *Server
	for _, s := range servers {
		if s != leader {
			follower = s
			break
		}
	}
	cfg := follower.cfg
	followerApplied := follower.Store().LastIndex()
	follower.Shutdown()

	live := []*Server{}
	for _, s := range servers {
		if s != follower {
			live = append(live, s)
		}
	}
	for i := 0; i < 300; i++ {
		putRetry(t, live, fmt.Sprintf("k%d", i))
	}
	for _, s := range live {
		if err := s.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	// More writes after the snapshot, so the log suffix matters too.
	for i := 300; i < 320; i++ {
		putRetry(t, live, fmt.Sprintf("k%d", i))
	}
	// The entries the follower missed are gone from every log: only a
	// snapshot can bring it up to date.
	for _, s := range live {
		first, err := s.logStore.FirstIndex()
		if err != nil || first <= followerApplied+1 {
			t.Fatalf("%s log still starts at %d (follower applied %d): no snapshot needed", s.NodeName(), first, followerApplied)
		}
	}

	restarted, err := New(cfg, logging.NewTest(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restarted.Shutdown)
	testutil.WaitFor(t, 15*time.Second, func() error {
		for i := 0; i < 320; i++ {
			if !has(restarted, fmt.Sprintf("k%d", i)) {
				return fmt.Errorf("restarted manager lacks k%d (applied %d)", i, restarted.Store().LastIndex())
			}
		}
		return nil
	})
}

func TestLeftManagerRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	servers := threeManagers(t, nil)
	leader := leaderOf(servers)
	var leaving *Server
	for _, s := range servers {
		if s != leader {
			leaving = s
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leaving.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	peers, _ := leader.Peers()
	if len(peers) != 2 {
		t.Fatalf("after leave peers = %v", peers)
	}
	cfg := leaving.cfg
	leaving.Shutdown()
	putRetry(t, servers, "while-away")

	cfg.Join = []string{leader.SerfAddr()}
	back, err := New(cfg, logging.NewTest(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.Shutdown)
	testutil.WaitFor(t, 15*time.Second, func() error {
		peers, err := leaderOf(servers).Peers()
		if err != nil || len(peers) != 3 {
			return fmt.Errorf("peers = %v %v", peers, err)
		}
		if !has(back, "while-away") {
			return fmt.Errorf("rejoined manager lacks the write made while it was away")
		}
		return nil
	})
}

func TestVerifyLeaderNeedsQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	servers := threeManagers(t, nil)
	leader := leaderOf(servers)
	var wg sync.WaitGroup
	errCh := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errCh <- leader.VerifyLeader(context.Background())
		}()
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		if err != nil {
			t.Fatalf("verify on a healthy leader: %v", err)
		}
	}
	for _, s := range servers {
		if s != leader {
			if err := s.VerifyLeader(context.Background()); !errs.Is(err, errs.NoLeader) {
				t.Fatalf("verify on a follower = %v, want NoLeader", err)
			}
		}
	}
	// A leader cut off from both followers must not confirm itself: it would
	// otherwise serve reads that a new majority has already overtaken.
	for _, s := range servers {
		if s != leader {
			s.Shutdown()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.VerifyLeader(ctx); err == nil {
		t.Fatal("a leader without a quorum confirmed its leadership")
	}
}
