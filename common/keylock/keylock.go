// Package keylock serialises work per key (an instance, a volume): agents
// run several jobs at once, and two jobs (or a job and a monitor pass) on
// one resource must not interleave their reads and writes of it.
package keylock

import (
	"context"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
)

// Map holds one lock per key; keys nobody holds or waits for take no room.
// The zero value is not usable: call New.
type Map struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters
}

// New returns an empty lock map.
func New() *Map { return &Map{m: map[string]*entry{}} }

func (l *Map) entry(key string) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	return e
}

func (l *Map) release(key string, e *entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, key)
	}
}

// Lock waits for key until ctx ends (errs.Timeout) and returns the unlock
// function.
func (l *Map) Lock(ctx context.Context, key string) (func(), error) {
	e := l.entry(key)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.release(key, e) }, nil
	case <-ctx.Done():
		l.release(key, e)
		return nil, errs.Wrap(errs.Timeout, ctx.Err(), "wait for another job on "+key)
	}
}

// TryLock locks key if nobody holds it.
func (l *Map) TryLock(key string) (func(), bool) {
	e := l.entry(key)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.release(key, e) }, true
	default:
		l.release(key, e)
		return nil, false
	}
}
