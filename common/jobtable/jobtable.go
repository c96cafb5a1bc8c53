// Package jobtable keeps the final results of the jobs an agent ran, so
// that an agent restarted while the manager still redelivers a job it
// finished answers with the recorded result instead of running the job
// again (DESIGN.md "Messaging": agents deduplicate by job id). File keeps
// the table in a bbolt file in the agent's data dir; Memory is the fake for
// tests. Both pass the same conformance suite.
package jobtable

import (
	"time"

	"github.com/vdc-project/vdc/proto"
)

// Record is one finished job.
type Record struct {
	// Endpoint and Verb are what the job was delivered as (a redelivery of
	// its id as another verb is refused).
	Endpoint string `json:"endpoint"`
	Verb     string `json:"verb"`
	// Result is the final result (its JobID is the key).
	Result proto.JobResult `json:"result"`
	// StoredAt is when the record was written (the agent's wall clock): the
	// retention window counts from it.
	StoredAt time.Time `json:"stored_at"`
}

// Table stores finished jobs by job id. Implementations are safe for
// concurrent use.
type Table interface {
	// Put records rec, replacing the record of the same job id.
	Put(rec Record) error
	// Load returns every record, oldest StoredAt first.
	Load() ([]Record, error)
	// Prune deletes the records stored before cutoff and then, of the
	// rest, all but the keep newest; it returns how many it deleted.
	Prune(cutoff time.Time, keep int) (int, error)
	// Close releases the table; it is not used afterwards.
	Close() error
}
