package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vdc-project/vdc/manager/state"
)

// RaftOptions configure the `raft` benchmark.
type RaftOptions struct {
	Managers []int         // cluster sizes, e.g. 1 and 3
	Writers  []int         // concurrent writers per row
	Warmup   time.Duration // load before the first window
	Window   time.Duration // one measured window
	Reps     int           // windows per row
	// Timeouts are the managers' raft timeouts.
	Timeouts RaftTimeouts
}

// DefaultRaftOptions is the full run.
func DefaultRaftOptions() RaftOptions {
	return RaftOptions{
		Managers: []int{1, 3},
		Writers:  []int{1, 16, 256},
		Warmup:   500 * time.Millisecond,
		Window:   3 * time.Second,
		Reps:     3,
	}
}

// ShortRaftOptions is the smoke run of `--short`.
func ShortRaftOptions() RaftOptions {
	o := DefaultRaftOptions()
	o.Warmup = 100 * time.Millisecond
	o.Window = 200 * time.Millisecond
	o.Reps = 1
	return o
}

// RaftRow is one cluster size × writer count.
type RaftRow struct {
	Managers int `json:"managers"`
	Writers  int `json:"writers"`
	// Elections is how much the raft term rose while the row ran: 0 when
	// the load caused no election.
	Elections uint64 `json:"elections"`
	Row
}

// RaftResult is the `raft` benchmark's table.
type RaftResult struct {
	Options RaftOptions `json:"-"`
	Rows    []RaftRow   `json:"rows"`
}

// Find returns the row for managers × writers.
func (r *RaftResult) Find(managers, writers int) (RaftRow, bool) {
	for _, x := range r.Rows {
		if x.Managers == managers && x.Writers == writers {
			return x, true
		}
	}
	return RaftRow{}, false
}

// benchKind is the record kind the raft benchmark writes; no API serves it.
const benchKind = "bench_records"

// recordBytes is the JSON size of one benchmark record.
const recordBytes = 256

type benchRecord struct {
	ID      string `json:"id"`
	Payload string `json:"payload"`
}

// newRecord returns a record with id whose JSON encoding is recordBytes long
// (ids of one length give records of one length).
func newRecord(id string) benchRecord {
	r := benchRecord{ID: id}
	b, _ := json.Marshal(r)
	if pad := recordBytes - len(b); pad > 0 {
		r.Payload = strings.Repeat("x", pad)
	}
	return r
}

// Raft measures commands/s and commit latency of srv.Apply(CmdTxn) on the
// leader: each writer loops creating one ~256-byte record with a unique id.
// Every row gets a fresh cluster.
func (r *Runner) Raft(ctx context.Context, o RaftOptions) (*RaftResult, error) {
	res := &RaftResult{Options: o}
	for _, n := range o.Managers {
		for _, w := range o.Writers {
			row, err := r.raftRow(ctx, n, w, o)
			if err != nil {
				return res, fmt.Errorf("raft %d managers, %d writers: %w", n, w, err)
			}
			res.Rows = append(res.Rows, row)
		}
	}
	return res, nil
}

func (r *Runner) raftRow(ctx context.Context, n, writers int, o RaftOptions) (RaftRow, error) {
	r.progress("raft: %d manager(s), %d writer(s): forming cluster", n, writers)
	c, err := StartCluster(ctx, r.Dir, n, false, o.Timeouts.apply)
	if err != nil {
		return RaftRow{}, err
	}
	defer c.Close()
	leader := c.Leader()
	if leader == nil {
		return RaftRow{}, fmt.Errorf("leader lost right after forming")
	}
	load := Load{
		Workers: writers, Warmup: o.Warmup, Window: o.Window, Reps: o.Reps,
		Op: func(ctx context.Context, w, seq int) error {
			var b state.Builder
			id := fmt.Sprintf("w%03d-%09d", w, seq)
			b.Create(benchKind, id, newRecord(id))
			txn, err := b.Txn()
			if err != nil {
				return err
			}
			_, err = leader.Srv.Apply(ctx, state.CmdTxn, txn)
			return err
		},
	}
	r.progress("raft: %d manager(s), %d writer(s): measuring %d × %s", n, writers, o.Reps, o.Window)
	term0 := c.Terms()
	reps, err := load.Run(ctx)
	if err != nil {
		return RaftRow{}, err
	}
	name := fmt.Sprintf("%d manager(s), %d writer(s)", n, writers)
	return RaftRow{Managers: n, Writers: writers, Elections: c.Terms() - term0, Row: newRow(name, reps)}, nil
}

// WriteTable prints the result in the style of limits.md.
func (res *RaftResult) WriteTable(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "## raft: srv.Apply(CmdTxn) creating one %d-byte record, on the leader\n\n", recordBytes)
	fmt.Fprintf(w, "Fresh cluster per row (raft %s; FastGossip, loopback); %s warm-up, then %d × %s.\n",
		o.Timeouts, o.Warmup, o.Reps, o.Window)
	fmt.Fprintf(w, "Cells are min / median / max over the windows; p50/p99 over all commands of a window.\n\n")
	fmt.Fprintln(w, "| Managers, writers | commands/s min / med / max | p50 ms | p99 ms | errors | elections | CPU per command (cores own / other) | ref. med (limits.md) | ratio |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, row := range res.Rows {
		ref, refName := raftReference(row.Managers, row.Writers)
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %d | %s | %s | %s |\n",
			row.Name, fmtRate(row.Rate), fmtMs(row.P50), fmtMs(row.P99), row.Errors, row.Elections, cpuCell(row.Row),
			refCell(ref, refName), ratioCell(row.Rate.Median, ref))
	}
	fmt.Fprintln(w)
}
