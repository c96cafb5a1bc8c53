package proto

import (
	"encoding/json"
	"errors"
	"time"
)

// JobEnvelope is one job as the manager's dispatcher hands it to an agent:
// which endpoint and verb runs it, the verb's request (one of the *Request
// types of verbs.go, JSON-encoded), and the delivery bookkeeping. Agents
// deduplicate by ID, so the dispatcher may deliver the same envelope any
// number of times (at-least-once delivery, effects once).
//
// (proto.Job is the job record of the 12.03 API; this is the wire form.)
type JobEnvelope struct {
	ID       string          `json:"id"`       // job-xxxxxxxx, stable across deliveries
	Endpoint string          `json:"endpoint"` // "hva-handle.hva.demo1"
	Verb     string          `json:"verb"`     // "run_local_store"
	Args     json.RawMessage `json:"args"`
	// ResourceID is the uuid the job acts on (i-…, vol-…); it is logged with
	// every line the job writes.
	ResourceID string `json:"resource_id,omitempty"`
	// ParentID is the job that submitted this one, if any.
	ParentID string `json:"parent_id,omitempty"`
	// Attempt counts deliveries (1 = first); informational on the agent.
	Attempt int `json:"attempt"`
	// Timeout is how long the job may still run, as the dispatcher counted
	// it when it sent this delivery (0: no deadline; never negative). The
	// agent counts it down on its own monotonic clock from the delivery
	// that hands it the job, so that neither a jump of a clock nor skew
	// between the manager's clock and the agent's moves the job's end.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// Deadline is the job record's deadline: the wall-clock instant the
	// leader that created the job computed (its clock at creation plus the
	// verb's timeout). It is for logs, and for agents older than TimeoutMs,
	// which run the handler with it as their context's deadline; an agent
	// uses TimeoutMs when it is set. Zero means no deadline.
	Deadline time.Time `json:"deadline,omitzero"`
}

// Validate checks the fields an agent needs to run the job.
func (j *JobEnvelope) Validate() error {
	switch {
	case j.ID == "":
		return errors.New("job id is empty")
	case j.Endpoint == "":
		return errors.New("job endpoint is empty")
	case j.Verb == "":
		return errors.New("job verb is empty")
	}
	return nil
}

// JobStatus is where a job is. Only succeeded, failed and cancelled are
// final; queued and running appear in delivery and status replies while the
// job is still with the agent.
type JobStatus string

// Job statuses.
const (
	JobQueued    JobStatus = "queued"  // accepted, waiting for a free slot of its endpoint
	JobRunning   JobStatus = "running" // its handler runs
	JobSucceeded JobStatus = "succeeded"
	JobFailed    JobStatus = "failed"
	JobCancelled JobStatus = "cancelled"
)

// Final reports whether s ends the job.
func (s JobStatus) Final() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// JobResult is the outcome of a job (or, with a non-final status, its
// progress so far). Error is set when Status is failed or cancelled; Result is
// the verb's *Response, JSON-encoded, when it succeeded.
type JobResult struct {
	JobID      string          `json:"job_id"`
	Status     JobStatus       `json:"status"`
	Error      *WireError      `json:"error,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	FinishedAt time.Time       `json:"finished_at,omitzero"`
}

// JobDelivery is the body of a job delivery: POST RPCPath(job.Endpoint,
// job.Verb). The agent starts the job unless it has seen its ID, then waits
// up to WaitMs for the job to end and answers a JobResult: the final one, or
// one with status queued/running when the wait ran out. Redelivering the same
// job is therefore also how the dispatcher polls for its result.
type JobDelivery struct {
	Job    JobEnvelope `json:"job"`
	WaitMs int64       `json:"wait_ms,omitempty"`
}

// Job-control verbs (endpoint JobControl(nodeID)).
const (
	// VerbJobStatus answers the JobResult of a job the agent knows
	// (NotFound if it never saw the id or has forgotten it).
	VerbJobStatus = "status"
	// VerbJobCancel cancels a queued or running job; it ends cancelled
	// unless its handler finishes successfully anyway.
	VerbJobCancel = "cancel"
)

// JobStatusRequest asks for one job's state.
type JobStatusRequest struct {
	JobID string `json:"job_id"`
}

// JobStatusResponse is the job's current result.
type JobStatusResponse = JobResult

// JobCancelRequest cancels one job.
type JobCancelRequest struct {
	JobID string `json:"job_id"`
}

// JobCancelResponse is the job's state after the cancel request.
type JobCancelResponse = JobResult

// VerbInfo describes one job verb: where it runs and how long the dispatcher
// lets it run by default before failing it.
type VerbInfo struct {
	Endpoint string // endpoint base name
	Verb     string
	Timeout  time.Duration
}

// DefaultJobTimeout is isono's job timeout, used for verbs not in JobVerbs().
const DefaultJobTimeout = 24 * time.Hour

// jobVerbs lists every job verb of spec/agents.md §2.1–§2.6 with its default
// timeout (a constant table).
var jobVerbs = []VerbInfo{
	{EndpointScheduler, VerbScheduleInstance, 5 * time.Minute},
	{EndpointScheduler, VerbScheduleStartInstance, 5 * time.Minute},
	{EndpointScheduler, VerbScheduleVolume, 5 * time.Minute},
	{EndpointScheduler, VerbEvacuateFrom, 30 * time.Minute},

	{EndpointHvaHandle, VerbWaitVolumesAvailable, 5 * time.Minute},
	{EndpointHvaHandle, VerbRunLocalStore, 30 * time.Minute},
	{EndpointHvaHandle, VerbRunVolStore, 30 * time.Minute},
	{EndpointHvaHandle, VerbTerminate, 30 * time.Minute},
	{EndpointHvaHandle, VerbCleanup, 30 * time.Minute},
	{EndpointHvaHandle, VerbStop, 30 * time.Minute},
	{EndpointHvaHandle, VerbAttach, 10 * time.Minute},
	{EndpointHvaHandle, VerbDetach, 10 * time.Minute},
	{EndpointHvaHandle, VerbAttachNic, 5 * time.Minute},
	{EndpointHvaHandle, VerbDetachNic, 5 * time.Minute},
	{EndpointHvaHandle, VerbReboot, 5 * time.Minute},
	{EndpointHvaHandle, VerbPoweroff, 10 * time.Minute},
	{EndpointHvaHandle, VerbSoftPoweroff, 10 * time.Minute},
	{EndpointHvaHandle, VerbPoweron, 30 * time.Minute},

	{EndpointLocalStoreHandle, VerbRunLocalStore, 6 * time.Hour},
	{EndpointLocalStoreHandle, VerbDeployVolumeAndAttach, 6 * time.Hour},
	{EndpointLocalStoreHandle, VerbDeleteVolume, 30 * time.Minute},
	{EndpointLocalStoreHandle, VerbBackupVolume, 24 * time.Hour},
	{EndpointLocalStoreHandle, VerbBackupImage, 24 * time.Hour},

	{EndpointMigrationHandle, VerbRunVolStore, 30 * time.Minute},
	{EndpointMigrationHandle, VerbStartMigration, 24 * time.Hour},

	{EndpointWindowsHandle, VerbLaunchWindows, time.Hour},

	{EndpointStaHandle, VerbCreateVolume, 6 * time.Hour},
	{EndpointStaHandle, VerbCreateVolumeAndRunInstance, 6 * time.Hour},
	{EndpointStaHandle, VerbDeleteVolume, 30 * time.Minute},
	{EndpointStaHandle, VerbBackupVolume, 24 * time.Hour},
	{EndpointStaHandle, VerbBackupImage, 24 * time.Hour},
	{EndpointStaHandle, VerbCreateSnapshot, 24 * time.Hour},
	{EndpointStaHandle, VerbDeleteSnapshot, 5 * time.Minute},
}

// JobVerbs returns every job verb an agent serves (spec/agents.md §2.1–§2.6)
// with its default timeout.
func JobVerbs() []VerbInfo { return append([]VerbInfo(nil), jobVerbs...) }

// LookupJobVerb finds the verb of an endpoint (full or base name).
func LookupJobVerb(endpoint, verb string) (VerbInfo, bool) {
	base := EndpointBase(endpoint)
	for _, v := range jobVerbs {
		if v.Endpoint == base && v.Verb == verb {
			return v, true
		}
	}
	return VerbInfo{}, false
}

// JobTimeout is the default timeout of a verb (DefaultJobTimeout if unknown).
func JobTimeout(endpoint, verb string) time.Duration {
	if v, ok := LookupJobVerb(endpoint, verb); ok {
		return v.Timeout
	}
	return DefaultJobTimeout
}
