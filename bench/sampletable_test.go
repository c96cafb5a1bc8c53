package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleRow is one line of a real-guest benchmark's table: a figure taken
// from every sample. key names its metric (derived from name when empty).
type sampleRow[S any] struct {
	name, key string
	f         func(S) time.Duration
}

// printSampleTable prints the machine, the caption and p50 (min, max) of
// each row over samples, and reports each p50 as a benchmark metric. It
// prints with fmt: b.Log output of a benchmark is cut after a few lines.
func printSampleTable[S any](b *testing.B, machine Machine, caption string, samples []S, rows []sampleRow[S], footer string) {
	var out strings.Builder
	machine.WriteTable(&out)
	fmt.Fprintf(&out, "%s\n\n", caption)
	fmt.Fprintln(&out, "| figure | p50 | min | max |")
	fmt.Fprintln(&out, "|---|---|---|---|")
	keyOf := strings.NewReplacer(" ", "-", "/", "", "→", "to", "(", "", ")", "", "=", "", "−", "minus", "+", "plus")
	for _, row := range rows {
		v := make([]time.Duration, len(samples))
		for i, s := range samples {
			v[i] = row.f(s)
		}
		slices.Sort(v)
		mid, lo, hi := v[len(v)/2], v[0], v[len(v)-1]
		fmt.Fprintf(&out, "| %s | %s | %s | %s |\n", row.name, fmtMS(mid), fmtMS(lo), fmtMS(hi))
		key := row.key
		if key == "" {
			key = keyOf.Replace(strings.TrimSpace(row.name))
		}
		b.ReportMetric(float64(mid.Microseconds())/1000, "p50-ms-"+key)
	}
	out.WriteString(footer)
	fmt.Print(out.String())
}

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000) }
