package cluster

import (
	"sync"

	"github.com/hashicorp/raft"
)

// drainedTransport is raft's network transport whose AppendEntries
// pipelines always have their results read (drainedPipeline).
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
type drainedTransport struct {
	*raft.NetworkTransport
}

// AppendEntriesPipeline implements raft.Transport.
func (t drainedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newDrainedPipeline(p), nil
}

// drainedPipeline reads the results of an AppendPipeline as they come and
// hands them to its consumer in order, queueing those the consumer has not
// taken yet: the transport never waits for the consumer. The requests in
// flight stay bounded by the transport (AppendEntries waits while its
// limit of them have no answer).
type drainedPipeline struct {
	raft.AppendPipeline
	out       chan raft.AppendFuture
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newDrainedPipeline(p raft.AppendPipeline) *drainedPipeline {
	d := &drainedPipeline{AppendPipeline: p, out: make(chan raft.AppendFuture),
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
			queue = append(queue, f)
		case out <- next:
			queue[0] = nil
			queue = queue[1:]
		case <-d.stop:
			return
		}
	}
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
