package handlers

import (
	"context"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
)

// locks serialises the work on each volume (and backup object): sta-handle
// runs several jobs at once, and a create, a backup, a delete and the
// re-export of one volume must not interleave.
type locks struct {
	mu sync.Mutex
	m  map[string]*lockEntry
}

type lockEntry struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters
}

func (l *locks) entry(id string) *lockEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[id]
	if e == nil {
		e = &lockEntry{ch: make(chan struct{}, 1)}
		l.m[id] = e
	}
	e.refs++
	return e
}

func (l *locks) release(id string, e *lockEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.m, id)
	}
}

// lock waits for the resource until ctx ends (errs.Timeout) and returns the
// unlock function.
func (l *locks) lock(ctx context.Context, id string) (func(), error) {
	e := l.entry(id)
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; l.release(id, e) }, nil
	case <-ctx.Done():
		l.release(id, e)
		return nil, errs.Wrap(errs.Timeout, ctx.Err(), "wait for another job on "+id)
	}
}
