// Package filtertest has the in-memory Filter (a recorder of the rule sets
// applied) and the conformance suite it and the nftables Filter pass.
package filtertest

import (
	"context"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/filter"
)

// Recorder is a Filter that keeps tables in memory and records every rule
// set applied. It checks rule sets as the kernel would (filter.Ruleset
// Validate) and, like a transaction, applies all of one or nothing.
type Recorder struct {
	mu      sync.Mutex
	tables  map[tableKey]filter.Table
	applied []filter.Ruleset
	faults  map[string]error
	changed chan struct{}
}

type tableKey struct {
	family filter.Family
	name   string
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{tables: map[tableKey]filter.Table{}, faults: map[string]error{}, changed: make(chan struct{})}
}

// InjectError makes the next call of op ("Apply", "Installed", "Remove")
// fail with err.
func (r *Recorder) InjectError(op string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults[op] = err
}

func (r *Recorder) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, op)
	}
	if err, ok := r.faults[op]; ok {
		delete(r.faults, op)
		return err
	}
	return nil
}

// Apply implements filter.Filter.
func (r *Recorder) Apply(ctx context.Context, rs filter.Ruleset) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.begin(ctx, "Apply"); err != nil {
		return err
	}
	if err := rs.Validate(); err != nil {
		return errs.Wrap(errs.InvalidParameter, err, "invalid rule set")
	}
	rs = rs.Sorted()
	for _, t := range rs.Tables {
		r.tables[tableKey{t.Family, t.Name}] = t
	}
	r.applied = append(r.applied, rs)
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// Installed implements filter.Filter.
func (r *Recorder) Installed(ctx context.Context, name string) (filter.Ruleset, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.begin(ctx, "Installed"); err != nil {
		return filter.Ruleset{}, err
	}
	var rs filter.Ruleset
	for k, t := range r.tables {
		if k.name == name {
			rs.Tables = append(rs.Tables, t)
		}
	}
	return rs.Sorted(), nil
}

// Remove implements filter.Filter.
func (r *Recorder) Remove(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.begin(ctx, "Remove"); err != nil {
		return err
	}
	for k := range r.tables {
		if k.name == name {
			delete(r.tables, k)
		}
	}
	return nil
}

// Applied returns the rule sets applied so far, oldest first.
func (r *Recorder) Applied() []filter.Ruleset {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]filter.Ruleset(nil), r.applied...)
}

// Last is the last rule set applied (zero if none) and how many there were.
func (r *Recorder) Last() (filter.Ruleset, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.applied) == 0 {
		return filter.Ruleset{}, 0
	}
	return r.applied[len(r.applied)-1], len(r.applied)
}

// Changed is closed at the next Apply.
func (r *Recorder) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}
