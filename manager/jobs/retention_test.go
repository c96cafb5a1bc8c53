package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

var retentionNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// seedJobs writes jobs in one txn, in the order given (creation order).
// A job with ago < 0 is unfinished (pending), else finished ago before now.
func seedJobs(t *testing.T, srv *cluster.Server, ids []string, ago []time.Duration) {
	t.Helper()
	err := state.Commit(context.Background(), srv.Store(), srv, func(tx *state.Tx, b *state.Builder) error {
		for i, id := range ids {
			j, err := New(retentionNow.Add(-48*time.Hour), proto.EndpointScheduler, proto.VerbEvacuateFrom, "hn-x", nil)
			if err != nil {
				return err
			}
			j.ID = id
			if ago[i] >= 0 {
				// As Finish leaves it: finished, out of the queue.
				end := retentionNow.Add(-ago[i])
				status := FinishSuccess
				j.State, j.FinishStatus, j.FinishedAt = StateFinished, &status, &end
				b.Create(proto.KindJob, j.ID, j)
				continue
			}
			Enqueue(b, j)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seed jobs: %v", err)
	}
}

// remaining is the ids of the jobs stored, in creation order.
func remaining(t *testing.T, s *state.Store) []string {
	t.Helper()
	var out []string
	err := s.View(func(tx *state.Tx) error {
		return state.EachOf(tx, proto.KindJob, false, func(j *proto.Job, _ state.Meta) error {
			out = append(out, j.ID)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPruneDeletesFinishedJobsPastAgeOrCountNeverUnfinished(t *testing.T) {
	srv := cluster.TestServer(t, nil)
	// Creation order: an unfinished job older than everything, finished jobs
	// of various ages, and an unfinished one at the end.
	ids := []string{"job-unfin001", "job-old00001", "job-keep0001", "job-keep0002", "job-old00002", "job-keep0003", "job-keep0004", "job-unfin002"}
	ago := []time.Duration{-1, 3 * time.Hour, 10 * time.Minute, 20 * time.Minute, 2 * time.Hour, 5 * time.Minute, time.Minute, -1}
	seedJobs(t, srv, ids, ago)

	p := NewPruner(srv, Retention{Age: time.Hour, Count: 3}, func() time.Time { return retentionNow }, logging.NewTest(t))
	n, err := p.Prune(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Past the hour: old1, old2. Of the rest, the 3 newest by creation order
	// stay (keep2, keep3, keep4); keep1 is the fourth newest finished.
	want := []string{"job-unfin001", "job-keep0002", "job-keep0003", "job-keep0004", "job-unfin002"}
	if got := remaining(t, srv.Store()); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("jobs after prune = %v, want %v", got, want)
	}
	if n != 3 {
		t.Fatalf("Prune deleted %d, want 3", n)
	}
	// Nothing more to do.
	if n, err := p.Prune(context.Background()); err != nil || n != 0 {
		t.Fatalf("second Prune = %d, %v; want 0, nil", n, err)
	}
	// The unfinished jobs keep their queue entries.
	_ = srv.Store().View(func(tx *state.Tx) error {
		for _, id := range []string{"job-unfin001", "job-unfin002"} {
			if !tx.Exists(proto.KindJobQueue, id) {
				t.Errorf("queue entry of %s is gone", id)
			}
		}
		return nil
	})
}

func TestPruneAgeOnlyAndCountOnly(t *testing.T) {
	ids := []string{"job-a0000001", "job-a0000002", "job-a0000003"}
	ago := []time.Duration{25 * time.Hour, 23 * time.Hour, time.Minute}
	for _, tc := range []struct {
		name string
		r    Retention
		want []string
	}{
		{"age", Retention{Age: 24 * time.Hour}, ids[1:]},
		{"count", Retention{Count: 1}, ids[2:]},
		{"none", Retention{}, ids},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := cluster.TestServer(t, nil)
			seedJobs(t, srv, ids, ago)
			p := NewPruner(srv, tc.r, func() time.Time { return retentionNow }, logging.NewTest(t))
			if _, err := p.Prune(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := remaining(t, srv.Store()); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("jobs after prune = %v, want %v", got, tc.want)
			}
		})
	}
}

// More victims than one raft entry holds go in several; the deletes are
// raft writes, so a restarted manager (state.db replayed or kept) has them.
func TestPrunerLoopBatchesAndSurvivesRestart(t *testing.T) {
	cfg := cluster.TestConfig(t)
	srv := cluster.TestServer(t, func(c *cluster.Config) { *c = cfg })
	const total, keep = pruneBatch + 150, 20
	ids := make([]string, total)
	ago := make([]time.Duration, total)
	for i := range ids {
		ids[i] = fmt.Sprintf("job-%08d", i)
		ago[i] = time.Duration(total-i) * time.Minute
	}
	seedJobs(t, srv, ids, ago)
	before := srv.Store().LastIndex()

	p := NewPruner(srv, Retention{Count: keep, Interval: 20 * time.Millisecond}, func() time.Time { return retentionNow }, logging.NewTest(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	testutil.WaitFor(t, 10*time.Second, func() error {
		if n := len(remaining(t, srv.Store())); n != keep {
			return fmt.Errorf("%d jobs stored, want %d", n, keep)
		}
		return nil
	})
	cancel()
	<-done
	if got := srv.Store().LastIndex(); got < before+2 {
		t.Fatalf("applied index %d after pruning from %d: want at least two raft entries", got, before)
	}
	want := fmt.Sprint(ids[total-keep:])
	if got := fmt.Sprint(remaining(t, srv.Store())); got != want {
		t.Fatalf("kept %v, want the newest %v", got, want)
	}

	srv.Shutdown()
	again := cluster.TestServer(t, func(c *cluster.Config) { *c = cfg })
	if got := fmt.Sprint(remaining(t, again.Store())); got != want {
		t.Fatalf("after restart kept %v, want %v", got, want)
	}
}

// Within a minute of its end a job stays whatever the count says, so that
// a client that saw it finish can still read it on a busy manager.
func TestPruneKeepsJobsFinishedWithinAMinute(t *testing.T) {
	srv := cluster.TestServer(t, nil)
	ids := []string{"job-b0000001", "job-b0000002", "job-b0000003", "job-b0000004"}
	seedJobs(t, srv, ids, []time.Duration{2 * time.Minute, 50 * time.Second, 30 * time.Second, 10 * time.Second})
	p := NewPruner(srv, Retention{Count: 1}, func() time.Time { return retentionNow }, logging.NewTest(t))
	if n, err := p.Prune(context.Background()); err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1, nil", n, err)
	}
	if got, want := fmt.Sprint(remaining(t, srv.Store())), fmt.Sprint(ids[1:]); got != want {
		t.Fatalf("jobs after prune = %v, want %v", got, want)
	}
}
