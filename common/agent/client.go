package agent

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
)

// DeliverJob is the dispatcher's side of a job delivery: it sends job to the
// agent at addr (its rpc tag) and waits up to wait for the result. A reply
// with a non-final status means the job is still with the agent; delivering
// the same job again later returns its result without running it twice.
// ctx must outlast wait. Errors are those of rpc.Client.Call and
// Agent.Deliver (rpc.IsRetryable tells which ones to retry).
func DeliverJob(ctx context.Context, c *rpc.Client, addr string, job proto.JobEnvelope, wait time.Duration) (proto.JobResult, error) {
	var res proto.JobResult
	err := c.Call(ctx, addr, job.Endpoint, job.Verb, proto.JobDelivery{Job: job, WaitMs: wait.Milliseconds()}, &res)
	return res, err
}

// JobStatus asks the agent nodeID at addr for a job's state.
func JobStatus(ctx context.Context, c *rpc.Client, addr, nodeID, jobID string) (proto.JobResult, error) {
	var res proto.JobResult
	err := c.Call(ctx, addr, proto.JobControl(nodeID), proto.VerbJobStatus, proto.JobStatusRequest{JobID: jobID}, &res)
	return res, err
}

// CancelJob asks the agent nodeID at addr to cancel a job.
func CancelJob(ctx context.Context, c *rpc.Client, addr, nodeID, jobID string) (proto.JobResult, error) {
	var res proto.JobResult
	err := c.Call(ctx, addr, proto.JobControl(nodeID), proto.VerbJobCancel, proto.JobCancelRequest{JobID: jobID}, &res)
	return res, err
}
