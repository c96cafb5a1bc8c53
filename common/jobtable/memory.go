package jobtable

import (
	"errors"
	"sync"
	"time"
)

// Memory is a Table in memory (tests: it outlives the agents that use it,
// as a file outlives a restart).
type Memory struct {
	mu     sync.Mutex
	recs   map[string]Record
	closed bool
}

// NewMemory returns an empty table.
func NewMemory() *Memory { return &Memory{recs: map[string]Record{}} }

var errClosed = errors.New("job table is closed")

// Put implements Table.
func (m *Memory) Put(rec Record) error {
	if err := check(rec); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	m.recs[rec.Result.JobID] = rec
	return nil
}

// Load implements Table.
func (m *Memory) Load() ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	out := make([]Record, 0, len(m.recs))
	for _, r := range m.recs {
		out = append(out, r)
	}
	sortOldestFirst(out)
	return out, nil
}

// Prune implements Table.
func (m *Memory) Prune(cutoff time.Time, keep int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, errClosed
	}
	recs := make([]Record, 0, len(m.recs))
	for _, r := range m.recs {
		recs = append(recs, r)
	}
	gone := pruned(recs, cutoff, keep)
	for _, id := range gone {
		delete(m.recs, id)
	}
	return len(gone), nil
}

// Close implements Table.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
