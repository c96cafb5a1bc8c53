package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// drainedTransport is raft's network transport whose AppendEntries
// pipelines always have their results read (drainedPipeline) and which
// hands heartbeats to raft's main loop (SetHeartbeatHandler).
//
// It works around a deadlock of hashicorp/raft v1.8.0 that e2e/chaos hit
// (a follower whose raft log could not be written, its disk full, was never
// replicated to again by that leader): the leader's pipeline decoder stops
// reading results at the first failed append, while the sender goes on
// pipelining until it notices; the transport hands results and requests
// over unbuffered (two RPCs in flight by default), so as soon as one more
// result waits, the sender blocks in AppendEntries for good and the
// follower gets nothing more from that leader (its stack showed
// pipelineSend blocked in netPipeline.AppendEntries and decodeResponses
// blocked handing over a result, for minutes). Reading the results on the
// decoder's behalf lets the sender reach its check and fall back to plain
// replication, as raft means it to.
//
// It also records, per follower, when the newest request it acknowledged
// was sent (acks), which VerifyLeader needs.
type drainedTransport struct {
	*raft.NetworkTransport
	acks *peerAcks
}

func newDrainedTransport(t *raft.NetworkTransport) drainedTransport {
	return drainedTransport{NetworkTransport: t, acks: newPeerAcks()}
}

// AppendEntries implements raft.Transport (heartbeats and plain replication).
func (t drainedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	capCommit(req)
	sent := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, req, resp)
	if err == nil {
		t.acks.record(id, sent, req, resp)
	}
	return err
}

// SetHeartbeatHandler implements raft.Transport by not installing raft's
// heartbeat fast path: heartbeats then reach raft's main loop like every
// other RPC.
//
// raft hands the transport its appendEntries handler, which must only run
// on the main loop, and the network transport runs it on the connection's
// goroutine. A newer term's heartbeat arriving as a leader takes a batch of
// writes then moves the term under the leader loop, which has already
// chosen to append: the batch is written in the new term, at the indexes
// where the new leader writes its own entries in that same term. Raft then
// sees no conflict when the new leader replicates, keeps the deposed
// leader's entries and applies them once those indexes commit: a write that
// was answered "leadership lost" takes effect on that manager only, for
// good (found by e2e/chaos: a security group deleted on one manager only,
// by a DELETE it took right after a SIGCONT;
// TestHeartbeatCannotRetermLeaderWrites). The cost is a heartbeat waiting
// behind the main loop's disk writes, well within an election timeout.
func (t drainedTransport) SetHeartbeatHandler(func(raft.RPC)) {}

// AppendEntriesPipeline implements raft.Transport.
func (t drainedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newDrainedPipeline(p, func(f raft.AppendFuture) {
		if f.Error() == nil {
			t.acks.record(id, f.Start(), f.Request(), f.Response())
		}
	}), nil
}

// drainedPipeline reads the results of an AppendPipeline as they come and
// hands them to its consumer in order, queueing those the consumer has not
// taken yet: the transport never waits for the consumer. The requests in
// flight stay bounded by the transport (AppendEntries waits while its
// limit of them have no answer).
type drainedPipeline struct {
	raft.AppendPipeline
	out       chan raft.AppendFuture
	seen      func(raft.AppendFuture) // called with each result before raft sees it
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newDrainedPipeline(p raft.AppendPipeline, seen func(raft.AppendFuture)) *drainedPipeline {
	d := &drainedPipeline{AppendPipeline: p, out: make(chan raft.AppendFuture), seen: seen,
		stop: make(chan struct{}), done: make(chan struct{})}
	go d.pump()
	return d
}

func (d *drainedPipeline) pump() {
	defer close(d.done)
	in := d.AppendPipeline.Consumer()
	var queue []raft.AppendFuture
	for {
		var (
			out  chan raft.AppendFuture
			next raft.AppendFuture
		)
		if len(queue) > 0 {
			out, next = d.out, queue[0]
		}
		select {
		case f := <-in:
			if d.seen != nil {
				d.seen(f)
			}
			queue = append(queue, f)
		case out <- next:
			queue[0] = nil
			queue = queue[1:]
		case <-d.stop:
			return
		}
	}
}

// AppendEntries implements raft.AppendPipeline.
func (d *drainedPipeline) AppendEntries(req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	capCommit(req)
	return d.AppendPipeline.AppendEntries(req, resp)
}

// capCommit lowers the commit index a leader sends to the last index the
// request itself vouches for (prevLogIndex + its entries), as the raft
// paper's follower rule has it. hashicorp/raft v1.8.0's follower takes
// min(leaderCommit, its own last index) instead: a follower holding a
// stale suffix from an older term past the entries of a request (a batch
// resent while it catches up, after others committed further) would mark
// that suffix committed and apply it, and its state would diverge for
// good. Every manager sends through this transport, so capping on the
// sending side fixes the rule cluster-wide; the periodic append (every
// CommitTimeout, prevLogIndex = the leader's last index) still carries the
// full commit index to a follower that is caught up.
func capCommit(req *raft.AppendEntriesRequest) {
	vouched := req.PrevLogEntry
	if n := len(req.Entries); n > 0 {
		vouched = req.Entries[n-1].Index
	}
	req.LeaderCommitIndex = min(req.LeaderCommitIndex, vouched)
}

// Consumer implements raft.AppendPipeline.
func (d *drainedPipeline) Consumer() <-chan raft.AppendFuture { return d.out }

// Close implements raft.AppendPipeline.
func (d *drainedPipeline) Close() error {
	err := d.AppendPipeline.Close()
	d.closeOnce.Do(func() { close(d.stop) })
	<-d.done
	return err
}

// peerAcks holds, per follower, the send time of the newest request it
// accepted in the sender's term.
//
// raft's VerifyLeader counts any successful answer that arrives after the
// check is registered, including one to a heartbeat sent before it: a
// leader cut off just after sending confirms itself once more (found by
// TestVerifyLeaderNeedsQuorum in CI). A read is only linearizable if a
// quorum acknowledged a request sent after the read arrived, which is what
// quorumSince checks.
type peerAcks struct {
	mu   sync.Mutex
	sent map[raft.ServerID]time.Time
}

func newPeerAcks() *peerAcks { return &peerAcks{sent: map[raft.ServerID]time.Time{}} }

func (a *peerAcks) record(id raft.ServerID, sent time.Time, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) {
	if a == nil || req == nil || resp == nil || !resp.Success || resp.Term != req.Term {
		return
	}
	a.mu.Lock()
	if sent.After(a.sent[id]) {
		a.sent[id] = sent
	}
	a.mu.Unlock()
}

// quorumSince reports whether self plus the voters that acknowledged a
// request sent at or after since make a majority of voters.
func (a *peerAcks) quorumSince(self raft.ServerID, voters []raft.ServerID, since time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, id := range voters {
		if id == self || !a.sent[id].Before(since) {
			n++
		}
	}
	return n > len(voters)/2
}
