package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
)

// Repeated end-to-end runs. A placement run starts a whole cluster, so a
// figure's spread comes from repeating the run: the report keeps the run
// with the median create rate (its tables and pipeline) and the min /
// median / max of each figure over the runs.

// RunFigures are one run's figures.
type RunFigures struct {
	CreatePerSec    float64 `json:"create_per_sec"`
	CreateP50ms     float64 `json:"create_to_running_p50_ms"`
	CreateP99ms     float64 `json:"create_to_running_p99_ms"`
	TerminatePerSec float64 `json:"terminate_per_sec"`
	TerminateP99ms  float64 `json:"delete_to_terminated_p99_ms"`
}

// RepSummary is the spread of the figures over repeated runs.
type RepSummary struct {
	Runs            []RunFigures `json:"runs"`
	CreatePerSec    Summary      `json:"create_per_sec"`
	CreateP50ms     Summary      `json:"create_to_running_p50_ms"`
	CreateP99ms     Summary      `json:"create_to_running_p99_ms"`
	TerminatePerSec Summary      `json:"terminate_per_sec"`
	TerminateP99ms  Summary      `json:"delete_to_terminated_p99_ms"`
}

func figuresOf(create, terminate *PlacePhase) RunFigures {
	var f RunFigures
	if create != nil {
		f.CreatePerSec, f.CreateP50ms, f.CreateP99ms = create.PerSec, create.ToP50ms, create.ToP99ms
	}
	if terminate != nil {
		f.TerminatePerSec, f.TerminateP99ms = terminate.PerSec, terminate.ToP99ms
	}
	return f
}

func summarizeRuns(runs []RunFigures) *RepSummary {
	col := func(get func(RunFigures) float64) Summary {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = get(r)
		}
		return Summarize(xs)
	}
	return &RepSummary{
		Runs:            runs,
		CreatePerSec:    col(func(r RunFigures) float64 { return r.CreatePerSec }),
		CreateP50ms:     col(func(r RunFigures) float64 { return r.CreateP50ms }),
		CreateP99ms:     col(func(r RunFigures) float64 { return r.CreateP99ms }),
		TerminatePerSec: col(func(r RunFigures) float64 { return r.TerminatePerSec }),
		TerminateP99ms:  col(func(r RunFigures) float64 { return r.TerminateP99ms }),
	}
}

// medianRun returns the index of the run with the median create rate.
func medianRun(runs []RunFigures) int {
	idx := make([]int, len(runs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case runs[a].CreatePerSec < runs[b].CreatePerSec:
			return -1
		case runs[a].CreatePerSec > runs[b].CreatePerSec:
			return 1
		}
		return 0
	})
	return idx[(len(idx)-1)/2]
}

// placeReps runs Place reps times (at least once).
func (r *Runner) placeReps(ctx context.Context, o PlaceOptions, reps int) (*PlaceResult, error) {
	var results []*PlaceResult
	var runs []RunFigures
	for i := range max(reps, 1) {
		if reps > 1 {
			r.progress("place: run %d of %d", i+1, reps)
		}
		res, err := r.Place(ctx, o)
		if err != nil {
			return res, err
		}
		results = append(results, res)
		runs = append(runs, figuresOf(res.Create, res.Terminate))
	}
	out := results[medianRun(runs)]
	out.Reps = summarizeRuns(runs)
	return out, nil
}

// dcReps runs DC reps times (at least once).
func (r *Runner) dcReps(ctx context.Context, o DCOptions, reps int) (*DCResult, error) {
	var results []*DCResult
	var runs []RunFigures
	for i := range max(reps, 1) {
		if reps > 1 {
			r.progress("dc: run %d of %d", i+1, reps)
		}
		res, err := r.DC(ctx, o)
		if err != nil {
			return res, err
		}
		results = append(results, res)
		runs = append(runs, figuresOf(res.Create, res.Terminate))
	}
	out := results[medianRun(runs)]
	out.Reps = summarizeRuns(runs)
	return out, nil
}

// writeReps prints the spread over repeated runs (nothing for one run).
func writeReps(w io.Writer, s *RepSummary) {
	if s == nil || len(s.Runs) < 2 {
		return
	}
	f := func(x Summary) string { return fmt.Sprintf("%.1f / %.1f / %.1f", x.Min, x.Median, x.Max) }
	fmt.Fprintf(w, "Over %d runs (min / median / max; the tables above are the median run's): create %s inst/s, → running p50 %s ms, p99 %s ms; terminate %s inst/s, → terminated p99 %s ms.\n\n",
		len(s.Runs), f(s.CreatePerSec), f(s.CreateP50ms), f(s.CreateP99ms), f(s.TerminatePerSec), f(s.TerminateP99ms))
}
