package bench

import (
	"fmt"
	"io"
)

// goalRow is one of issue 6's goals against the report's figure.
type goalRow struct {
	figure string
	value  *float64
	format string // of the measured value
	goal   string
	// met says whether v reaches the goal.
	met func(v float64) bool
}

func atLeast(x float64) func(float64) bool { return func(v float64) bool { return v >= x } }
func atMost(x float64) func(float64) bool  { return func(v float64) bool { return v >= 0 && v <= x } }

// WriteSummary prints the headline figures against issue 6's goals, the
// table the README quotes. Figures whose benchmark did not run are left out.
func (rep *Report) WriteSummary(w io.Writer) {
	intf := func(p *int) *float64 {
		if p == nil {
			return nil
		}
		v := float64(*p)
		return &v
	}
	rows := []goalRow{
		{"placements, dc (3 managers, 500 hvas), inst/s", rep.PlacementsPerSec, "%.0f", "≥ 2,000", atLeast(2000)},
		{"create → running p99, dc, ms", rep.CreateToRunningP99Ms, "%.0f", "≤ 2,000", atMost(2000)},
		{"placements, place (1 manager, 50 hvas in-process), inst/s", rep.PlacePlacementsPerSec, "%.0f", "(≥ 2,000)", atLeast(2000)},
		{"API GET show, req/s (64 clients)", rep.APIGetPerSec, "%.0f", "≥ 20,000", atLeast(20000)},
		{"API POST create, req/s (64 clients)", rep.APIPostPerSec, "%.0f", "≥ 4,000", atLeast(4000)},
		{"raft commands/s, 3 managers", rep.RaftCommandsPerSec, "%.0f", "≥ 10,000", atLeast(10000)},
		{"leader failover p99, ms (idle cluster)", rep.FailoverP99Ms, "%.0f", "≤ 1,500", atMost(1500)},
		{"lost acknowledged writes (failover)", intf(rep.LostAcknowledgedWrites), "%.0f", "0", atMost(0)},
		{"leader failover p99 under the create load (dcfailover), ms", rep.DCFailoverP99Ms, "%.0f", "≤ 1,500", atMost(1500)},
		{"lost acknowledged creates (dcfailover)", intf(rep.DCLostAckedCreates), "%.0f", "0", atMost(0)},
		{"jobs left unfinished after recovery (dcfailover)", intf(rep.DCUnfinishedJobs), "%.0f", "0", atMost(0)},
		{"500 agents: the leader sees all alive, s", rep.ManagerSeesAllSeconds, "%.1f", "≤ 5", atMost(5)},
		{"500 agents: every agent sees all alive, s", rep.SerfConverge500Seconds, "%.1f", "≤ 5", atMost(5)},
		{"manager RSS at the largest scale size, MB", rep.ScaleRSSMB, "%.0f", "≤ 1,024 at 100,000 instances", atMost(1024)},
	}
	fmt.Fprintln(w, "## Summary: issue 6's goals")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Figure | measured | goal | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, r := range rows {
		if r.value == nil {
			continue
		}
		met := "no"
		if r.met(*r.value) {
			met = "yes"
		}
		if r.value == rep.ScaleRSSMB && (rep.ScaleInstances == nil || *rep.ScaleInstances < 100000) {
			met = "(smaller run)"
		}
		v := fmt.Sprintf(r.format, *r.value)
		if r.value == rep.ScaleRSSMB && rep.ScaleInstances != nil {
			v += fmt.Sprintf(" (%d instances)", *rep.ScaleInstances)
		}
		if r.value == rep.PlacementsPerSec && rep.DC != nil {
			v += fmt.Sprintf(" (%d instances)", rep.DC.Options.Instances)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", r.figure, v, r.goal, met)
	}
	fmt.Fprintln(w)
}
