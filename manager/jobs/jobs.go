// Package jobs makes agent jobs durable: a job record (and its queue entry)
// is written in the same raft transaction as the state change that needs it,
// and the leader's Dispatcher delivers it until it ends.
package jobs

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Job record states and finish statuses (spec §2.14).
const (
	StatePending  = "pending"
	StateRunning  = "running"
	StateFinished = "finished"

	FinishSuccess = "success"
	FinishFail    = "fail"
	FinishCancel  = "cancel"
)

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// NewID returns a job id: "job-" and 8 characters of a-z0-9.
func NewID() string {
	var raw [16]byte
	out := []byte("job-")
	for len(out) < 12 {
		_, _ = rand.Read(raw[:])
		for _, c := range raw {
			if c < 252 && len(out) < 12 {
				out = append(out, idAlphabet[int(c)%36])
			}
		}
	}
	return string(out)
}

// New builds an agent job for endpoint.verb with args (one of the verb's
// *Request types). now is the leader's clock; the deadline comes from the
// verb's timeout.
func New(now time.Time, endpoint, verb, resourceID string, args any) (proto.Job, error) {
	params := map[string]any{}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return proto.Job{}, fmt.Errorf("encode job args: %w", err)
		}
		if err := json.Unmarshal(raw, &params); err != nil {
			return proto.Job{}, fmt.Errorf("job args must be an object: %w", err)
		}
	}
	deadline := now.Add(proto.JobTimeout(endpoint, verb))
	return proto.Job{
		ID:         NewID(),
		Timestamps: proto.Timestamps{CreatedAt: now, UpdatedAt: now},
		QueueName:  endpoint,
		Verb:       verb,
		Params:     params,
		ResourceID: resourceID,
		State:      StatePending,
		Deadline:   &deadline,
	}, nil
}

// Enqueue adds the job and its queue entry to the transaction.
func Enqueue(b *state.Builder, j proto.Job) {
	b.Create(proto.KindJob, j.ID, j)
	b.Create(proto.KindJobQueue, j.ID, proto.JobQueueEntry{ID: j.ID, Endpoint: j.QueueName, ResourceID: j.ResourceID})
}

// Finish ends the job (read at modifyIndex) with status and message, and
// removes its queue entry, in the same transaction.
func Finish(b *state.Builder, j proto.Job, modifyIndex uint64, now time.Time, status, message string, result map[string]any) {
	j.State = StateFinished
	j.FinishStatus = &status
	j.FinishedAt = &now
	j.UpdatedAt = now
	if message != "" {
		j.FinishMessage = map[string]any{"message": message}
	}
	j.Result = result
	b.Update(proto.KindJob, j.ID, modifyIndex, j)
	b.DeleteIfExists(proto.KindJobQueue, j.ID)
}

// Args decodes the job's params into v (the verb's request type).
func Args(j proto.Job, v any) error {
	raw, err := json.Marshal(j.Params)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}
