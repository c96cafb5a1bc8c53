package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Retention bounds the finished jobs the state keeps. Every instance leaves
// two finished jobs of ~0.5 KB each (their params and results): kept forever
// they were a third of state.db's records (vdcbench scale), and GET /jobs is
// for what happened lately. A finished job goes once it is older than Age
// or once Count newer finished jobs exist, but not within a minute of its
// end; an unfinished job never goes.
type Retention struct {
	// Age is how long a job is kept after it finished (0: no age limit).
	Age time.Duration
	// Count is the most finished jobs kept, the newest (0: no count limit).
	Count int
	// Interval is how often the leader prunes (default 10 s).
	Interval time.Duration
}

// Shipped retention: a day of history, at most 10,000 finished jobs.
const (
	DefaultRetentionAge   = 24 * time.Hour
	DefaultRetentionCount = 10000
)

// minRetention is how long any finished job stays, whatever Count says: at
// hundreds of jobs a second, 10,000 finished jobs are seconds of history,
// and a client that saw a job end must still be able to read its result.
const minRetention = time.Minute

// pruneBatch bounds the deletes of one raft entry (~25 bytes each).
const pruneBatch = 1000

// Pruner is the leader loop that deletes finished jobs past the retention,
// through raft like every other write.
type Pruner struct {
	c      Cluster
	r      Retention
	now    func() time.Time
	logger *slog.Logger
}

// NewPruner builds the loop; now is the wall clock of the records' stamps.
func NewPruner(c Cluster, r Retention, now func() time.Time, logger *slog.Logger) *Pruner {
	if r.Interval <= 0 {
		r.Interval = 10 * time.Second
	}
	return &Pruner{c: c, r: r, now: now, logger: logger}
}

// Run prunes every Interval while this manager leads, until ctx ends.
func (p *Pruner) Run(ctx context.Context) {
	if p.r.Age <= 0 && p.r.Count <= 0 {
		return
	}
	t := time.NewTicker(p.r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !p.c.IsLeader() {
			continue
		}
		if n, err := p.Prune(ctx); err != nil {
			p.logger.Warn("prune finished jobs", "deleted", n, "error", err)
		}
	}
}

// jobStamp is the part of a job record pruning reads.
type jobStamp struct {
	ID         string     `json:"id"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	State      string     `json:"state"`
	FinishedAt *time.Time `json:"finished_at"`
}

// Prune deletes the finished jobs past the retention and returns how many.
func (p *Pruner) Prune(ctx context.Context) (int, error) {
	victims, err := p.expired()
	if err != nil {
		return 0, err
	}
	deleted := 0
	for len(victims) > 0 {
		chunk := victims[:min(pruneBatch, len(victims))]
		victims = victims[len(chunk):]
		n := 0
		err := state.Commit(ctx, p.c.Store(), p.c, func(tx *state.Tx, b *state.Builder) error {
			n = 0
			for _, id := range chunk {
				// Read again: the guard makes a job that changed since (it
				// cannot once finished, but a restore may have) a replan.
				e, ok := tx.Raw(proto.KindJob, id)
				if !ok {
					continue
				}
				var s jobStamp
				if json.Unmarshal(e.Value, &s) != nil || s.State != StateFinished {
					continue
				}
				b.Delete(proto.KindJob, id, e.ModifyIndex)
				n++
			}
			return nil
		})
		if err != nil {
			return deleted, fmt.Errorf("delete %d finished jobs: %w", len(chunk), err)
		}
		deleted += n
	}
	return deleted, nil
}

// expired lists the finished jobs past the retention: beyond the Count
// newest finished (a walk newest first), or finished before Age ago. With no
// count limit the walk goes oldest first and stops at the first job created
// after the cutoff (it cannot have finished before it), so that a long age
// window does not make every prune read every job.
func (p *Pruner) expired() ([]string, error) {
	now := p.now()
	var cutoff time.Time
	if p.r.Age > 0 {
		cutoff = now.Add(-p.r.Age)
	}
	recent := now.Add(-minRetention)
	byCount := p.r.Count > 0
	var out []string
	kept := 0
	err := p.c.Store().View(func(tx *state.Tx) error {
		return tx.Each(proto.KindJob, byCount, func(e state.Entry) error {
			var s jobStamp
			if err := json.Unmarshal(e.Value, &s); err != nil {
				return errs.Wrap(errs.Internal, err, "decode job record")
			}
			if !byCount && s.CreatedAt.After(cutoff) {
				return state.ErrStop
			}
			if s.State != StateFinished {
				return nil
			}
			end := s.UpdatedAt // a record finished without finished_at
			if s.FinishedAt != nil {
				end = *s.FinishedAt
			}
			old := !cutoff.IsZero() && end.Before(cutoff)
			fresh := end.After(recent)
			if !fresh && (old || (byCount && kept >= p.r.Count)) {
				out = append(out, s.ID)
				return nil
			}
			kept++
			return nil
		})
	})
	return out, err
}
