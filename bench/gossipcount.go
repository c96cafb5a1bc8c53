package bench

import (
	"strings"
	"sync"

	metrics "github.com/hashicorp/go-metrics"
)

// gossipCounter is a go-metrics sink counting what memberlist reports of
// its work in an hvasim process: state changes accepted (msg.alive,
// msg.suspect, msg.dead: a refuted suspicion costs a suspect and a new
// alive message every member handles), stream connections accepted
// (tcp.accept: full state exchanges served) and state exchanges started
// (pushPullNode: joins, catch-ups and periodic ones).
type gossipCounter struct {
	mu sync.Mutex
	n  map[string]float64
}

// gossipCounted are the keys kept, without the "memberlist." prefix.
var gossipCounted = []string{"msg.alive", "msg.suspect", "msg.dead", "tcp.accept", "pushPullNode", "degraded.probe"}

// countGossip makes go-metrics (memberlist's) count into a new counter:
// the library's sink is process-wide, and hvasim is a process of its own.
func countGossip() (*gossipCounter, error) {
	c := &gossipCounter{n: map[string]float64{}}
	cfg := metrics.DefaultConfig("")
	cfg.EnableHostname, cfg.EnableRuntimeMetrics, cfg.EnableServiceLabel, cfg.EnableTypePrefix = false, false, false, false
	if _, err := metrics.NewGlobal(cfg, c); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *gossipCounter) add(key []string, v float32) {
	k := strings.Join(key, ".")
	k, ok := strings.CutPrefix(k, "memberlist.")
	if !ok {
		return
	}
	for _, want := range gossipCounted {
		if k == want {
			c.mu.Lock()
			c.n[k] += float64(v)
			c.mu.Unlock()
			return
		}
	}
}

// counts returns a copy of the counts so far.
func (c *gossipCounter) counts() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]float64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

func (c *gossipCounter) SetGauge([]string, float32)                            {}
func (c *gossipCounter) SetGaugeWithLabels([]string, float32, []metrics.Label) {}
func (c *gossipCounter) EmitKey([]string, float32)                             {}
func (c *gossipCounter) IncrCounter(key []string, v float32)                   { c.add(key, v) }
func (c *gossipCounter) IncrCounterWithLabels(key []string, v float32, _ []metrics.Label) {
	c.add(key, v)
}

// AddSample counts the samples (a timed operation each).
func (c *gossipCounter) AddSample(key []string, _ float32) { c.add(key, 1) }
func (c *gossipCounter) AddSampleWithLabels(key []string, _ float32, _ []metrics.Label) {
	c.add(key, 1)
}
