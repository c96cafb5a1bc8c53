package cluster

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestHeartbeatCannotRetermLeaderWrites: a leader that gets a newer term's
// heartbeat while it takes a batch of writes must not write any of them in
// that newer term. raft's network transport answers heartbeats on its own
// goroutine (a fast path) with the handler raft means for its main loop
// only; the heartbeat switches the term under the leader loop, which has
// already chosen to append and then stamps the entries with the new term.
// Such an entry has the index and term of the new leader's own entry there,
// so the follower keeps it (raft sees no conflict) and, once the new leader
// commits that index, applies it in place of the leader's: found by
// e2e/chaos, a group deleted on one manager only (a write it took right
// after a SIGCONT, answered 503).
//
// A single-voter leader takes bursts of writes while a stranger claims the
// next term by heartbeats; the leader must never hold a command of a term
// it did not lead in.
func TestHeartbeatCannotRetermLeaderWrites(t *testing.T) {
	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 8, 10*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = "l"
	conf.HeartbeatTimeout = 50 * time.Millisecond
	conf.ElectionTimeout = 50 * time.Millisecond
	conf.LeaderLeaseTimeout = 50 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.BatchApplyCh = true
	conf.LogOutput = io.Discard
	logs := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	servers := raft.Configuration{Servers: []raft.Server{{ID: "l", Address: trans.LocalAddr()}}}
	if err := raft.BootstrapCluster(conf, logs, logs, snaps, trans, servers); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(conf, &raft.MockFSM{}, logs, logs, snaps, newDrainedTransport(trans))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Shutdown().Error() })

	stranger, err := raft.NewTCPTransport("127.0.0.1:0", nil, 8, 10*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Close() })

	// Terms the stranger claimed: the leader never led in them.
	claimed := map[uint64]bool{}
	const rounds = 40
	for round := 0; round < rounds; round++ {
		deadline := time.Now().Add(10 * time.Second)
		for r.State() != raft.Leader {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the node did not lead again", round)
			}
			time.Sleep(5 * time.Millisecond)
		}
		term := r.CurrentTerm() + 1
		claimed[term] = true
		var wg sync.WaitGroup
		for i := 0; i < 128; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = r.Apply([]byte(fmt.Sprintf("r%d-%d", round, i)), time.Second).Error()
			}()
		}
		// A heartbeat only: no previous entry, no entries, no commit index.
		req := &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("s"), Addr: []byte(stranger.LocalAddr())},
			Term:      term,
		}
		var resp raft.AppendEntriesResponse
		if err := stranger.AppendEntries("l", trans.LocalAddr(), req, &resp); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		wg.Wait()
	}

	last, err := logs.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	first, err := logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := logs.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if l.Type == raft.LogCommand && claimed[l.Term] {
			if bad < 5 {
				t.Errorf("entry %d (%q) has term %d, which only the stranger claimed", l.Index, l.Data, l.Term)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d commands written in a term their writer did not lead", bad)
	}
}
