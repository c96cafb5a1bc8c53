package bench

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkHAFailover measures host death → HA instance running elsewhere
// with FastHAOptions (3 trials per iteration; run with -benchtime 1x) and
// prints the machine and the table:
//
//	go test ./bench -run '^$' -bench HAFailover -benchtime 1x
func BenchmarkHAFailover(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	m := Probe(ctx)
	var res *HAResult
	for b.Loop() {
		var err error
		if res, err = HAFailover(ctx, b.TempDir(), FastHAOptions()); err != nil {
			b.Fatal(err)
		}
	}
	m.Finish()
	m.WriteTable(os.Stdout)
	res.WriteTable(os.Stdout)
	b.ReportMetric(res.Summary.Median, "death_to_running_ms")
}

// TestHAFailoverShort runs one trial with tiny timeouts so the harness
// cannot rot; it asserts only that the instance came back.
func TestHAFailoverShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Seconds, not the benchmark's 8/12 s, yet not much shorter: under CI's
	// race-detector load a 0.5 s fence and 1.5 s reschedule once let the
	// surviving host's own heartbeat gap count as a failure, and the
	// evacuated instance had nowhere left to run.
	res, err := HAFailover(ctx, t.TempDir(), HAOptions{Trials: 1, FenceAfter: 2 * time.Second,
		RescheduleAfter: 6 * time.Second, FenceMargin: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DeathToRunningMs) != 1 {
		t.Fatalf("trials = %v", res.DeathToRunningMs)
	}
}
