package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Load describes a closed-loop load: Workers goroutines each call Op in a
// loop; after Warmup, Reps windows of Window each are measured back to back.
type Load struct {
	Workers int
	Warmup  time.Duration
	Window  time.Duration
	Reps    int
	// Op performs one operation; seq counts the worker's calls from 0.
	Op func(ctx context.Context, worker, seq int) error
}

// maxOpsPerWorker bounds a worker's loop by count as well as by time.
const maxOpsPerWorker = 50_000_000

// stopGrace bounds how long Run waits for workers after the last window.
const stopGrace = 20 * time.Second

// errorPause keeps a worker whose operation fails from spinning on the CPUs
// the measured system needs.
const errorPause = time.Millisecond

// Run drives the load and returns one Rep per window. An operation is counted
// in the window in which it completed (completions per second, the latency of
// each completed call), as in limits.md. Failed calls are counted as errors
// and left out of rates and latencies.
func (l Load) Run(ctx context.Context) ([]Rep, error) {
	if l.Workers < 1 || l.Reps < 1 || l.Window <= 0 {
		return nil, fmt.Errorf("load: need workers, reps and a window (got %d, %d, %s)", l.Workers, l.Reps, l.Window)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// phase is -1 during warm-up and after the last window, else the window.
	var phase atomic.Int64
	phase.Store(-1)
	// Each worker records into its own log; they are merged after the run.
	type workerLog struct {
		lat  [][]time.Duration
		errs []int
	}
	logs := make([]workerLog, l.Workers)
	var wg sync.WaitGroup
	for w := range l.Workers {
		logs[w] = workerLog{lat: make([][]time.Duration, l.Reps), errs: make([]int, l.Reps)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lg := &logs[w]
			for seq := 0; seq < maxOpsPerWorker && ctx.Err() == nil; seq++ {
				start := time.Now()
				err := l.Op(ctx, w, seq)
				d := time.Since(start)
				ph := phase.Load()
				if ctx.Err() != nil {
					return
				}
				if ph >= 0 {
					if err != nil {
						lg.errs[ph]++
					} else {
						lg.lat[ph] = append(lg.lat[ph], d)
					}
				}
				if err != nil {
					time.Sleep(errorPause)
				}
			}
		}()
	}

	windows := make([]time.Duration, l.Reps)
	cpus := make([]cpuUse, l.Reps)
	werr := sleepCtx(ctx, l.Warmup)
	for r := 0; r < l.Reps && werr == nil; r++ {
		start := time.Now()
		c0 := sampleCPU()
		phase.Store(int64(r))
		werr = sleepCtx(ctx, l.Window)
		windows[r] = time.Since(start)
		cpus[r], _ = cpuSince(c0)
	}
	// Workers read phase after each call; -1 stops recording before cancel.
	phase.Store(-1)
	cancel()
	if !waitTimeout(&wg, stopGrace) {
		return nil, fmt.Errorf("load: workers did not stop within %s after the last window", stopGrace)
	}
	if werr != nil {
		return nil, werr
	}
	reps := make([]Rep, l.Reps)
	for r := range l.Reps {
		var lat []time.Duration
		errs := 0
		for w := range logs {
			lat = append(lat, logs[w].lat[r]...)
			errs += logs[w].errs[r]
		}
		reps[r] = newRep(lat, errs, windows[r], cpus[r])
	}
	return reps, nil
}

// sleepCtx sleeps d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitTimeout waits for wg at most d and reports whether it finished.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
