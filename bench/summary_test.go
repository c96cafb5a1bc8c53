package bench

import (
	"strings"
	"testing"
)

func TestWriteSummaryJudgesEachGoal(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	zero, n := 0, 100000
	rep := &Report{
		APIGetPerSec: f(30000), APIPostPerSec: f(3000), FailoverP99Ms: f(745), LostAcknowledgedWrites: &zero,
		ScaleInstances: &n, ScaleRSSMB: f(900),
	}
	var b strings.Builder
	rep.WriteSummary(&b)
	out := b.String()
	for _, want := range []string{
		"| API GET show, req/s (64 clients) | 30000 | ≥ 20,000 | yes |",
		"| API POST create, req/s (64 clients) | 3000 | ≥ 4,000 | no |",
		"| leader failover p99, ms (idle cluster) | 745 | ≤ 1,500 | yes |",
		"| lost acknowledged writes (failover) | 0 | 0 | yes |",
		"| manager RSS at the largest scale size, MB | 900 (100000 instances) | ≤ 1,024 at 100,000 instances | yes |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "raft commands") {
		t.Errorf("a figure whose benchmark did not run is in the summary:\n%s", out)
	}
	small := 10000
	rep.ScaleInstances = &small
	b.Reset()
	rep.WriteSummary(&b)
	if !strings.Contains(b.String(), "(10000 instances) | ≤ 1,024 at 100,000 instances | (smaller run) |") {
		t.Errorf("a 10,000-instance RSS is judged against the 100,000 goal:\n%s", b.String())
	}
}
