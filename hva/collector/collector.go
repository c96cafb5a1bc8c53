// Package collector is the hva's client of the managers' collector endpoints
// (spec/agents.md §2.0; proto/collector.go): hva-collector for the instance
// documents and their state changes, job-collector for job results.
//
// Every manager serves them on its rpc address (serf tag "rpc" of members
// with role "manager"); a follower that cannot apply a write answers
// errs.NoLeader. The client therefore tries the managers it knows in turn,
// starting with the last one that accepted, and backs off between rounds
// while none accepts (unreachable, shutting down, timing out, no leader),
// until the caller's context ends.
package collector

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
)

// Defaults of Config fields left zero.
const (
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 5 * time.Second
	DefaultAttemptTimeout = 30 * time.Second
)

// Members is where the client learns the managers: the agent's serf view.
type Members interface {
	Members() []agent.Member
}

// Config configures a Client.
type Config struct {
	Members Members
	RPC     *rpc.Client
	Logger  *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between two rounds over the
	// managers (doubling from min to max).
	MinBackoff, MaxBackoff time.Duration
	// AttemptTimeout bounds one call to one manager, so that a hung manager
	// does not hold the caller while another could answer.
	AttemptTimeout time.Duration
}

// Client calls the collector endpoints of whichever manager accepts. It is
// safe for concurrent use.
type Client struct {
	cfg    Config
	logger *slog.Logger

	mu        sync.Mutex
	preferred string // rpc address of the manager that accepted last
}

// New returns a Client.
func New(cfg Config) *Client {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(DefaultMaxBackoff, cfg.MinBackoff)
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Client{cfg: cfg, logger: logger.With("component", "collector")}
}

// managers lists the rpc addresses of alive managers, the preferred one first.
func (c *Client) managers() []string {
	c.mu.Lock()
	pref := c.preferred
	c.mu.Unlock()
	var out []string
	for _, m := range c.cfg.Members.Members() {
		if m.Role != proto.RoleManager || m.RPC == "" || m.Status != "alive" {
			continue
		}
		if m.RPC == pref {
			out = append([]string{m.RPC}, out...)
		} else {
			out = append(out, m.RPC)
		}
	}
	return out
}

// Call sends req to endpoint/verb on a manager and decodes the answer into
// resp. Errors that say "another manager, or later" (rpc.IsRetryable: the
// manager is unreachable, shutting down, timed out or has no leader) move on
// to the next manager and, after a round where none accepted, to a new round
// after a backoff. Any other error is the answer and is returned as is. When
// ctx ends first the error is errs.Timeout, carrying the last failure.
//
// A retried call may reach the leader twice; every collector verb the hva
// uses is idempotent (set fields, finalize, report a result).
func (c *Client) Call(ctx context.Context, endpoint, verb string, req, resp any) error {
	backoff := c.cfg.MinBackoff
	var lastErr error
	attempts := 0
	for {
		addrs := c.managers()
		if len(addrs) == 0 {
			lastErr = errs.New(errs.Unavailable, "no alive manager with an rpc address among the serf members")
		}
		for _, addr := range addrs {
			if ctx.Err() != nil {
				break
			}
			attempts++
			actx, cancel := context.WithTimeout(ctx, c.cfg.AttemptTimeout)
			err := c.cfg.RPC.Call(actx, addr, endpoint, verb, req, resp)
			cancel()
			if err == nil {
				c.mu.Lock()
				c.preferred = addr
				c.mu.Unlock()
				return nil
			}
			if !rpc.IsRetryable(err) {
				return err
			}
			if ctx.Err() != nil && lastErr != nil {
				// The attempt failed because the caller gave up; the
				// failure worth reporting is the one before.
				break
			}
			lastErr = err
			c.logger.DebugContext(ctx, "manager did not accept; trying the next",
				"endpoint", endpoint, "verb", verb, "manager", addr, "error", err)
		}
		if ctx.Err() != nil {
			return &errs.Error{Kind: errs.Timeout, Err: lastErr, Msg: fmt.Sprintf(
				"rpc %s/%s: no manager accepted before the context ended (%d attempts)", endpoint, verb, attempts)}
		}
		c.logger.InfoContext(ctx, "no manager accepted; retrying",
			"endpoint", endpoint, "verb", verb, "managers", len(addrs), "error", lastErr, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
	}
}

// GetInstance reads an instance (errs.UnknownInstance if there is none).
func (c *Client) GetInstance(ctx context.Context, id string) (*proto.InstanceView, error) {
	var v proto.GetInstanceResponse
	if err := c.Call(ctx, proto.EndpointHvaCollector, proto.VerbGetInstance, proto.GetInstanceRequest{InstanceID: id}, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// UpdateInstance changes an instance; state terminated makes the manager
// finalize it.
func (c *Client) UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error {
	return c.Call(ctx, proto.EndpointHvaCollector, proto.VerbUpdateInstance, req, nil)
}

// UpdateVolume records a volume change (sta-collector update_volume).
func (c *Client) UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error {
	return c.Call(ctx, proto.EndpointStaCollector, proto.VerbUpdateVolume, req, nil)
}

// FinalizeInstance terminates an instance's records (idempotent).
func (c *Client) FinalizeInstance(ctx context.Context, id string) error {
	return c.Call(ctx, proto.EndpointHvaCollector, proto.VerbFinalizeInstance, proto.FinalizeInstanceRequest{InstanceID: id}, nil)
}

// InstanceMonitorData lists the instances of node the manager has in state
// running, halting or shuttingdown.
func (c *Client) InstanceMonitorData(ctx context.Context, nodeID string) ([]proto.InstanceMonitorEntry, error) {
	var resp proto.GetInstanceMonitorDataResponse
	if err := c.Call(ctx, proto.EndpointHvaCollector, proto.VerbGetInstanceMonitorData,
		proto.GetInstanceMonitorDataRequest{NodeID: nodeID}, &resp); err != nil {
		return nil, err
	}
	return resp.Instances, nil
}

// JobFinished reports a job's final result.
func (c *Client) JobFinished(ctx context.Context, nodeID string, res proto.JobResult) error {
	return c.Call(ctx, proto.EndpointJobCollector, proto.VerbJobFinished, proto.JobFinishedRequest{NodeID: nodeID, Result: res}, nil)
}

// SwitchInstanceHostNode moves a migrating instance's record to the
// destination node once its VM runs there (idempotent).
func (c *Client) SwitchInstanceHostNode(ctx context.Context, id, destNodeID string) error {
	return c.Call(ctx, proto.EndpointHvaCollector, proto.VerbSwitchInstanceHostNode,
		proto.SwitchInstanceHostNodeRequest{InstanceID: id, DestNodeID: destNodeID}, nil)
}

// AbortMigration puts a migrating instance back to running on its source
// (idempotent).
func (c *Client) AbortMigration(ctx context.Context, id, reason string) error {
	return c.Call(ctx, proto.EndpointHvaCollector, proto.VerbAbortMigration,
		proto.AbortMigrationRequest{InstanceID: id, Reason: reason}, nil)
}

// SubmitJob enqueues a follow-up job of the running job req.ParentID; the
// same (parent, key) always gets the same job, so a retried call or a re-run
// parent does not submit twice.
func (c *Client) SubmitJob(ctx context.Context, req proto.SubmitJobRequest) (string, error) {
	var resp proto.SubmitJobResponse
	if err := c.Call(ctx, proto.EndpointJobCollector, proto.VerbSubmitJob, req, &resp); err != nil {
		return "", err
	}
	return resp.JobID, nil
}
