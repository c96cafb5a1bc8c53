package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// PipelineSample is where the instances and the unfinished agent jobs were
// at one moment, read straight from the manager's store: instances by state
// and queued jobs by endpoint base (scheduler, local-store-handle, …).
type PipelineSample struct {
	AtSeconds float64        `json:"at_s"`
	Instances map[string]int `json:"instances"`
	Jobs      map[string]int `json:"jobs"`
	// Stranded counts instances in scheduling without an unfinished
	// scheduler job: the job ended (its deadline passed, most likely) and
	// nothing will place or terminate them.
	Stranded int `json:"stranded"`
}

// PipelineStat is one stage's count over a phase: its time average, its
// maximum and, by Little's law, the mean time an instance (or job) spent in
// it at the phase's end-to-end rate.
type PipelineStat struct {
	Stage  string  `json:"stage"`
	Mean   float64 `json:"mean"`
	Max    int     `json:"max"`
	MeanMs float64 `json:"little_mean_ms"`
}

// pipelineEvery is the sampling period.
const pipelineEvery = time.Second

// pipelineSampler samples a store every pipelineEvery until stopped.
type pipelineSampler struct {
	store *state.Store
	t0    time.Time

	mu       sync.Mutex
	samples  []PipelineSample
	stranded map[string]bool // of the latest sample
	stop     context.CancelFunc
	done     chan struct{}
}

func startPipelineSampler(st *state.Store) *pipelineSampler {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipelineSampler{store: st, t0: time.Now(), stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			p.sample()
			if sleepCtx(ctx, pipelineEvery) != nil {
				return
			}
		}
	}()
	return p
}

// Stop ends sampling and returns the samples.
func (p *pipelineSampler) Stop() []PipelineSample {
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.samples
}

// last is the latest sample, if any.
func (p *pipelineSampler) last() (PipelineSample, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.samples) == 0 {
		return PipelineSample{}, false
	}
	return p.samples[len(p.samples)-1], true
}

func (p *pipelineSampler) sample() {
	if p.store == nil {
		return // the manager runs in another process
	}
	s := PipelineSample{AtSeconds: time.Since(p.t0).Seconds(), Instances: map[string]int{}, Jobs: map[string]int{}}
	stranded := map[string]bool{}
	_ = p.store.View(func(tx *state.Tx) error {
		// Counted from the indexes: a sample every second must not cost
		// the manager a decode of every instance.
		for ep, n := range tx.CountsIn(state.IdxJobQueueByEndpoint) {
			s.Jobs[proto.EndpointBase(ep)] += n
		}
		s.Instances = tx.CountsIn(state.IdxInstancesByState)
		scheduling := map[string]bool{} // instances with a scheduler job queued
		_ = tx.EachIn(state.IdxJobQueueByEndpoint, proto.EndpointScheduler, false, func(id string, _ state.Entry) error {
			var j struct {
				ResourceID string `json:"resource_id"`
			}
			if e, ok := tx.Raw(proto.KindJob, id); ok && json.Unmarshal(e.Value, &j) == nil {
				scheduling[j.ResourceID] = true
			}
			return nil
		})
		return tx.EachIn(state.IdxInstancesByState, proto.InstanceScheduling, false, func(id string, _ state.Entry) error {
			if !scheduling[id] {
				stranded[id] = true
			}
			return nil
		})
	})
	s.Stranded = len(stranded)
	p.mu.Lock()
	p.samples = append(p.samples, s)
	p.stranded = stranded
	p.mu.Unlock()
}

// isStranded reports whether the latest sample found instance id stranded.
func (p *pipelineSampler) isStranded(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stranded[id]
}

// String is a one-line form for progress output.
func (s PipelineSample) String() string {
	var b strings.Builder
	b.WriteString("instances")
	for _, k := range slices.Sorted(maps.Keys(s.Instances)) {
		fmt.Fprintf(&b, " %s=%d", k, s.Instances[k])
	}
	b.WriteString("; queued jobs")
	for _, k := range slices.Sorted(maps.Keys(s.Jobs)) {
		fmt.Fprintf(&b, " %s=%d", k, s.Jobs[k])
	}
	if s.Stranded > 0 {
		fmt.Fprintf(&b, "; %d stranded in scheduling without a job", s.Stranded)
	}
	return b.String()
}

// pipelineStats summarizes the transient stages of samples (instance states
// other than from and to, and every job endpoint) at rate per second.
func pipelineStats(samples []PipelineSample, from, to string, rate float64) []PipelineStat {
	if len(samples) == 0 {
		return nil
	}
	sum := map[string]int{}
	mx := map[string]int{}
	for _, s := range samples {
		for k, n := range s.Instances {
			if k == from || k == to {
				continue
			}
			k = "instances " + k
			sum[k] += n
			mx[k] = max(mx[k], n)
		}
		for k, n := range s.Jobs {
			k = "jobs " + k
			sum[k] += n
			mx[k] = max(mx[k], n)
		}
		if s.Stranded > 0 {
			const k = "instances stranded in scheduling (job ended)"
			sum[k] += s.Stranded
			mx[k] = max(mx[k], s.Stranded)
		}
	}
	var out []PipelineStat
	for _, k := range slices.Sorted(maps.Keys(sum)) {
		mean := float64(sum[k]) / float64(len(samples))
		st := PipelineStat{Stage: k, Mean: mean, Max: mx[k]}
		if rate > 0 {
			st.MeanMs = mean / rate * 1000
		}
		out = append(out, st)
	}
	return out
}

// writePipeline prints the stage statistics of a phase.
func writePipeline(w io.Writer, ph *PlacePhase) {
	if len(ph.Pipeline) == 0 {
		return
	}
	fmt.Fprintf(w, "%s: where instances and agent jobs waited (manager store sampled every %s, %d samples; time in stage = mean count / %.1f per s):\n\n",
		ph.Name, pipelineEvery, len(ph.Samples), ph.PerSec)
	fmt.Fprintln(w, "| Stage | mean count | max count | mean time in stage ms |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, s := range ph.Pipeline {
		fmt.Fprintf(w, "| %s | %.1f | %d | %.0f |\n", s.Stage, s.Mean, s.Max, s.MeanMs)
	}
	fmt.Fprintln(w)
}
