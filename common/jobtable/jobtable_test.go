package jobtable

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vdc-project/vdc/proto"
)

// tables are the implementations the conformance cases run over.
var tables = map[string]func(t *testing.T) Table{
	"File": func(t *testing.T) Table {
		f, err := Open(filepath.Join(t.TempDir(), "jobs.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = f.Close() })
		return f
	},
	"Memory": func(t *testing.T) Table { return NewMemory() },
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func rec(id string, age time.Duration) Record {
	return Record{Endpoint: "hva-handle.hva.t", Verb: proto.VerbReboot, StoredAt: t0.Add(-age),
		Result: proto.JobResult{JobID: id, Status: proto.JobSucceeded, Result: json.RawMessage(`{"n":1}`),
			StartedAt: t0.Add(-age - time.Second), FinishedAt: t0.Add(-age)}}
}

func ids(t *testing.T, tb Table) []string {
	t.Helper()
	recs, err := tb.Load()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Result.JobID)
	}
	return out
}

func TestConformance(t *testing.T) {
	for name, open := range tables {
		t.Run(name, func(t *testing.T) {
			t.Run("PutLoadOldestFirst", func(t *testing.T) {
				tb := open(t)
				for _, r := range []Record{rec("job-b", time.Minute), rec("job-a", time.Hour), rec("job-c", 0)} {
					if err := tb.Put(r); err != nil {
						t.Fatal(err)
					}
				}
				recs, err := tb.Load()
				if err != nil {
					t.Fatal(err)
				}
				if got := []string{recs[0].Result.JobID, recs[1].Result.JobID, recs[2].Result.JobID}; !slices.Equal(got, []string{"job-a", "job-b", "job-c"}) || len(recs) != 3 {
					t.Fatalf("Load order = %v", got)
				}
				want := rec("job-a", time.Hour)
				got := recs[0]
				if got.Endpoint != want.Endpoint || got.Verb != want.Verb || !got.StoredAt.Equal(want.StoredAt) ||
					got.Result.Status != want.Result.Status || string(got.Result.Result) != string(want.Result.Result) ||
					!got.Result.FinishedAt.Equal(want.Result.FinishedAt) {
					t.Fatalf("record = %+v, want %+v", got, want)
				}
			})
			t.Run("PutReplaces", func(t *testing.T) {
				tb := open(t)
				_ = tb.Put(rec("job-a", time.Hour))
				r := rec("job-a", 0)
				r.Result.Status = proto.JobFailed
				if err := tb.Put(r); err != nil {
					t.Fatal(err)
				}
				recs, _ := tb.Load()
				if len(recs) != 1 || recs[0].Result.Status != proto.JobFailed {
					t.Fatalf("records = %+v", recs)
				}
			})
			t.Run("PutWithoutID", func(t *testing.T) {
				if err := open(t).Put(Record{}); err == nil {
					t.Fatal("a record without a job id was stored")
				}
			})
			t.Run("PruneByAgeThenCount", func(t *testing.T) {
				tb := open(t)
				for i, age := range []time.Duration{5 * time.Hour, 4 * time.Hour, 3 * time.Hour, 2 * time.Hour, time.Hour} {
					_ = tb.Put(rec("job-"+string(rune('a'+i)), age))
				}
				// Older than 3h30m: job-a (5h), job-b (4h); then keep 2 of
				// the 3 left: job-c goes too.
				n, err := tb.Prune(t0.Add(-210*time.Minute), 2)
				if err != nil || n != 3 {
					t.Fatalf("Prune = %d, %v; want 3", n, err)
				}
				if got := ids(t, tb); !slices.Equal(got, []string{"job-d", "job-e"}) {
					t.Fatalf("after prune: %v", got)
				}
				if n, err := tb.Prune(time.Time{}, 10); n != 0 || err != nil {
					t.Fatalf("Prune of nothing = %d, %v", n, err)
				}
			})
		})
	}
}

// TestFileSurvivesReopen: what a File stores is there after it is closed
// and opened again (the agent's restart), and a second opener of a file in
// use fails instead of waiting for ever.
func TestFileSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.db")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Put(rec("job-kept", time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err == nil {
		t.Fatal("a second Open of a table in use succeeded")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := ids(t, f); !slices.Equal(got, []string{"job-kept"}) {
		t.Fatalf("after reopen: %v", got)
	}
}
