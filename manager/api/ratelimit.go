package api

import (
	"math"
	"sync"
	"time"
)

// RateLimit bounds the request rate per account (api.rate_limit): a token
// bucket of Burst requests refilled at RequestsPerSecond. Operator calls
// (no account) are counted per client address. Each manager counts the
// requests that reach it (a request a follower forwards is counted there
// only), so a client spreading its requests over N managers gets N times
// the rate. RequestsPerSecond 0 turns the limit off (the default).
type RateLimit struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	// Burst is how many requests may come at once; 0 = one second's worth
	// (at least 1).
	Burst int `json:"burst"`
}

// sweepEvery is how often idle buckets are dropped, so that the map holds
// only recently active callers.
const sweepEvery = time.Minute

// limiter is a set of token buckets by key.
type limiter struct {
	rate, burst float64
	now         func() time.Time

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns nil when the limit is off.
func newLimiter(c RateLimit, now func() time.Time) *limiter {
	if c.RequestsPerSecond <= 0 {
		return nil
	}
	burst := float64(c.Burst)
	if burst <= 0 {
		burst = math.Max(1, math.Ceil(c.RequestsPerSecond))
	}
	return &limiter{rate: c.RequestsPerSecond, burst: burst, now: now, buckets: map[string]*bucket{}, lastSweep: now()}
}

// allow takes a token from key's bucket. When there is none it returns
// false and how long until the next one.
func (l *limiter) allow(key string) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return false, wait
}

// sweep drops buckets that have refilled completely: a fresh bucket would
// be the same.
func (l *limiter) sweep(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
	l.lastSweep = now
}
