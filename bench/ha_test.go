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
	res, err := HAFailover(ctx, t.TempDir(), HAOptions{Trials: 1, FenceAfter: 500 * time.Millisecond,
		RescheduleAfter: 1500 * time.Millisecond, FenceMargin: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.DeathToRunningMs) != 1 {
		t.Fatalf("trials = %v", res.DeathToRunningMs)
	}
}
