package cluster

import (
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vdc-project/vdc/common/testutil"
)

// The wrapper keeps what raft looks for on its transport (pre-vote RPCs,
// Close).
var (
	_ raft.WithPreVote = drainedTransport{}
	_ raft.WithClose   = drainedTransport{}
)

// TestPipelineSenderNotBlockedByIdleConsumer: a leader keeps pipelining
// appends to a follower that refuses them while nobody reads the results
// past the first (what raft's pipelineDecode does after a failed append).
// On raft's own transport the sender blocks for good after the second
// (found by e2e/chaos: a follower whose disk had been full was never
// replicated to again); with the results drained, every append goes out.
func TestPipelineSenderNotBlockedByIdleConsumer(t *testing.T) {
	follower, leaderNet := transportPair(t, func(*raft.AppendEntriesRequest) bool { return false })
	p, err := newDrainedTransport(leaderNet).AppendEntriesPipeline("f", follower.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}

	const total = 64
	var sent atomic.Int64
	go func() {
		for range total {
			req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("l"), Addr: []byte(leaderNet.LocalAddr())},
				Term: 1, PrevLogEntry: 10, PrevLogTerm: 1}
			if _, err := p.AppendEntries(req, new(raft.AppendEntriesResponse)); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	if f := <-p.Consumer(); f.Response().Success {
		t.Fatal("the follower accepted an append")
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		if n := sent.Load(); n < total {
			return fmt.Errorf("%d of %d appends sent", n, total)
		}
		return nil
	})
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("closing the pipeline hangs")
	}
}

func TestPeerAcksCountOnlyRequestsSentSince(t *testing.T) {
	acks := newPeerAcks()
	voters := []raft.ServerID{"a", "b", "c"}
	before := time.Now()
	since := before.Add(time.Millisecond)
	after := since.Add(time.Millisecond)
	req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{}, Term: 3}

	// An answer to a request sent before the read arrived does not confirm it.
	acks.record("b", before, req, &raft.AppendEntriesResponse{Term: 3, Success: true})
	if acks.quorumSince("a", voters, since) {
		t.Fatal("an acknowledgement of an older request confirmed leadership")
	}
	// Neither does a refusal, nor an answer from a newer term.
	acks.record("b", after, req, &raft.AppendEntriesResponse{Term: 3, Success: false})
	acks.record("c", after, req, &raft.AppendEntriesResponse{Term: 4, Success: true})
	if acks.quorumSince("a", voters, since) {
		t.Fatal("a refused or newer-term answer confirmed leadership")
	}
	acks.record("c", after, req, &raft.AppendEntriesResponse{Term: 3, Success: true})
	if !acks.quorumSince("a", voters, since) {
		t.Fatal("self and one fresh acknowledgement of three voters are a quorum")
	}
	// An older answer arriving late does not move a peer's time back.
	acks.record("c", before, req, &raft.AppendEntriesResponse{Term: 3, Success: true})
	if !acks.quorumSince("a", voters, since) {
		t.Fatal("a late older acknowledgement undid a newer one")
	}
	if !acks.quorumSince("a", []raft.ServerID{"a"}, since) {
		t.Fatal("a single voter is its own quorum")
	}
}

// TestAppendsCarryOnlyTheCommitIndexTheyVouchFor: what a follower receives,
// plain and pipelined, never has a commit index past the request's own last
// entry (or its prevLogIndex when it has none), so hashicorp/raft's
// follower cannot mark a stale suffix of its log committed (see capCommit).
func TestAppendsCarryOnlyTheCommitIndexTheyVouchFor(t *testing.T) {
	got := make(chan uint64, 16)
	follower, leaderNet := transportPair(t, func(req *raft.AppendEntriesRequest) bool {
		got <- req.LeaderCommitIndex
		return true
	})
	tr := newDrainedTransport(leaderNet)
	p, err := tr.AppendEntriesPipeline("f", follower.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })

	req := func(prev uint64, entries []uint64, commit uint64) *raft.AppendEntriesRequest {
		r := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("l"), Addr: []byte(leaderNet.LocalAddr())},
			Term: 1, PrevLogEntry: prev, PrevLogTerm: 1, LeaderCommitIndex: commit}
		for _, i := range entries {
			r.Entries = append(r.Entries, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand})
		}
		return r
	}
	for _, c := range []struct {
		name      string
		req       *raft.AppendEntriesRequest
		pipelined bool
		want      uint64
	}{
		{"entries short of the commit index", req(4, []uint64{5, 6}, 7), false, 6},
		{"pipelined, entries short of it", req(4, []uint64{5, 6}, 7), true, 6},
		{"no entries, prev behind it", req(5, nil, 7), false, 5},
		{"entries past the commit index", req(6, []uint64{7, 8}, 7), true, 7},
		{"caught up, no entries", req(9, nil, 9), false, 9},
	} {
		if c.pipelined {
			if _, err := p.AppendEntries(c.req, &raft.AppendEntriesResponse{}); err != nil {
				t.Fatal(err)
			}
		} else if err := tr.AppendEntries("f", follower.LocalAddr(), c.req, &raft.AppendEntriesResponse{}); err != nil {
			t.Fatal(err)
		}
		select {
		case v := <-got:
			if v != c.want {
				t.Errorf("%s: follower received commit index %d, want %d", c.name, v, c.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the follower received nothing", c.name)
		}
	}
}

// transportPair starts a follower's raft transport whose appends answer
// Success = accept(req) in term 1, and a leader's transport to send them.
func transportPair(t *testing.T, accept func(*raft.AppendEntriesRequest) bool) (follower, leader *raft.NetworkTransport) {
	t.Helper()
	newNet := func() *raft.NetworkTransport {
		n, err := raft.NewTCPTransport("127.0.0.1:0", nil, 2, 10*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	follower = newNet()
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case rpc := <-follower.Consumer():
				ok := accept(rpc.Command.(*raft.AppendEntriesRequest))
				rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: ok}, nil)
			case <-stop:
				return
			}
		}
	}()
	return follower, newNet()
}
