package bench

import (
	"fmt"
	"math"
)

// Reference medians from /work/shared/notes/limits.md (2 vCPU dev VM). The
// manager runs raft with a BatchingFSM, MaxAppendEntries 512 and BatchApplyCh,
// so the matching rows are taken where limits.md has them; for 1 writer it
// only measured MaxAppendEntries 64 without BatchApplyCh, which makes no
// difference at that concurrency.
const (
	refRaft1x1        = 1488  // §3 1 node, 1 applier, BatchingFSM, MAE 64
	refRaft1x16       = 7471  // §3 1 node, 16 appliers, BatchingFSM, MAE 512, BatchApplyCh
	refRaft1x256      = 67408 // §3 1 node, 256 appliers, BatchingFSM, MAE 512, BatchApplyCh
	refRaft3x1        = 555   // §4 3 nodes, 1 applier, BatchingFSM, MAE 64
	refRaft3x16       = 2665  // §4 3 nodes, 16 appliers, BatchingFSM, MAE 512, BatchApplyCh
	refRaft3x256      = 15994 // §4 3 nodes, 256 appliers, BatchingFSM, MAE 512, BatchApplyCh
	refAPIGet         = 39440 // §5 GET bbolt View 1 KiB JSON, 64 keep-alive clients
	refAPIPost        = 12053 // §5 POST → raft.Apply, 1 node, BatchingFSM, 64 clients
	refFailover1s     = 1768  // §4 failover median ms, raft timeouts 1000/1000/500 ms
	refFailover1sMax  = 2678
	refFailover200    = 361 // §4 failover median ms, timeouts 200/200/100 ms
	refFailover200Max = 673
)

// raftReference is the limits.md median for a raft row, or 0.
func raftReference(managers, writers int) (float64, string) {
	switch {
	case managers == 1 && writers == 1:
		return refRaft1x1, "§3"
	case managers == 1 && writers == 16:
		return refRaft1x16, "§3"
	case managers == 1 && writers == 256:
		return refRaft1x256, "§3"
	case managers == 3 && writers == 1:
		return refRaft3x1, "§4"
	case managers == 3 && writers == 16:
		return refRaft3x16, "§4"
	case managers == 3 && writers == 256:
		return refRaft3x256, "§4"
	}
	return 0, ""
}

func refCell(ref float64, name string) string {
	if ref == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f (%s)", ref, name)
}

// ratioCell is measured / reference, e.g. "0.42×".
func ratioCell(v, ref float64) string {
	if ref == 0 || math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", v/ref)
}

func fmtRate(s Summary) string {
	return fmt.Sprintf("%s / %s / %s", fmtNum(s.Min, 0), fmtNum(s.Median, 0), fmtNum(s.Max, 0))
}

func fmtMs(s Summary) string {
	return fmt.Sprintf("%s / %s / %s", fmtNum(s.Min, 2), fmtNum(s.Median, 2), fmtNum(s.Max, 2))
}

func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// cpuCell is a row's median CPU µs per operation and the cores it and the
// rest of the machine used, e.g. "52 µs (1.10 / 0.40)".
func cpuCell(r Row) string {
	return fmt.Sprintf("%s µs (%.2f / %.2f)", fmtNum(r.CPUPerOp.Median, 0), r.Own, r.Other)
}
