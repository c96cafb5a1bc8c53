package bench

import (
	"encoding/json"
	"math"
	"slices"
	"time"
)

// Summary is min / median / max of one figure over the repetitions of a row,
// the way limits.md reports every cell.
type Summary struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// MarshalJSON writes NaN (no data) as null, which encoding/json cannot.
func (s Summary) MarshalJSON() ([]byte, error) {
	num := func(v float64) any {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil
		}
		return v
	}
	return json.Marshal(map[string]any{"min": num(s.Min), "median": num(s.Median), "max": num(s.Max)})
}

// Summarize returns min / median / max of xs (median of an even count is the
// mean of the two middle values). An empty xs gives NaNs, which print as "–".
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{Min: math.NaN(), Median: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{Min: s[0], Median: med, Max: s[n-1]}
}

// Percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted:
// the smallest value with at least p % of the values at or below it. For
// fewer than 100 values p99 is therefore the maximum.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ms converts a duration to float milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Rep is one measured window of a load row.
type Rep struct {
	Ops     int     `json:"ops"`
	Errors  int     `json:"errors"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"per_sec"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	// CPU is the cores this process and everything else used during the
	// window; on a shared machine CPU per operation (CPUusPerOp) is the
	// steadier figure.
	CPU        cpuUse  `json:"cpu"`
	CPUusPerOp float64 `json:"cpu_us_per_op"`
}

// newRep computes the figures of a window from its successful latencies
// and the CPU used meanwhile.
func newRep(lat []time.Duration, errors int, window time.Duration, cpu cpuUse) Rep {
	slices.Sort(lat)
	r := Rep{Ops: len(lat), Errors: errors, Seconds: window.Seconds(), CPU: cpu}
	if window > 0 {
		r.Rate = float64(len(lat)) / window.Seconds()
	}
	if len(lat) > 0 {
		r.P50ms = ms(Percentile(lat, 50))
		r.P99ms = ms(Percentile(lat, 99))
		r.CPUusPerOp = cpu.Own * window.Seconds() / float64(len(lat)) * 1e6
	}
	return r
}

// Row is one table row: a workload measured over several windows.
type Row struct {
	Name string  `json:"name"`
	Reps []Rep   `json:"reps"`
	Rate Summary `json:"per_sec"`
	P50  Summary `json:"p50_ms"`
	P99  Summary `json:"p99_ms"`
	// CPUPerOp is the process's CPU µs per successful operation; Own and
	// Other the cores used (medians over the windows).
	CPUPerOp Summary `json:"cpu_us_per_op"`
	Own      float64 `json:"own_cores"`
	Other    float64 `json:"other_cores"`
	Errors   int     `json:"errors"`
}

// newRow summarizes reps.
func newRow(name string, reps []Rep) Row {
	r := Row{Name: name, Reps: reps}
	var rate, p50, p99, cpu, own, other []float64
	for _, x := range reps {
		rate = append(rate, x.Rate)
		r.Errors += x.Errors
		own = append(own, x.CPU.Own)
		other = append(other, x.CPU.Other)
		if x.Ops > 0 {
			p50 = append(p50, x.P50ms)
			p99 = append(p99, x.P99ms)
			cpu = append(cpu, x.CPUusPerOp)
		}
	}
	r.Rate, r.P50, r.P99, r.CPUPerOp = Summarize(rate), Summarize(p50), Summarize(p99), Summarize(cpu)
	r.Own, r.Other = Summarize(own).Median, Summarize(other).Median
	return r
}

// Ops is the number of successful operations over all windows.
func (r Row) Ops() int {
	n := 0
	for _, x := range r.Reps {
		n += x.Ops
	}
	return n
}
