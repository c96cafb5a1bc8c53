// Package memory is an in-memory storage target for tests. It numbers its
// targets like tgtd, refuses absolute paths that do not exist (as tgtd
// does) and takes other paths (the memory backing store's) as they are. It
// passes the conformance suite of target/targettest.
package memory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/sta/target"
)

// Target is the in-memory target.
type Target struct {
	initiators []string

	mu      sync.Mutex
	exports map[string]target.Export
	nextTID int
	fail    map[string]error
}

// New returns an empty target allowing initiators (nil = ALL).
func New(initiators []string) *Target {
	if len(initiators) == 0 {
		initiators = []string{"ALL"}
	}
	return &Target{initiators: initiators, exports: map[string]target.Export{}, nextTID: 1, fail: map[string]error{}}
}

// Fail makes every later call of op ("export", "unexport") fail with err;
// nil clears it.
func (t *Target) Fail(op string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		delete(t.fail, op)
		return
	}
	t.fail[op] = err
}

// Driver implements target.Target.
func (t *Target) Driver() string { return "memory" }

// Export implements target.Target.
func (t *Target) Export(ctx context.Context, iqn, path string) (target.Export, error) {
	if err := target.CheckIQN(iqn); err != nil {
		return target.Export{}, err
	}
	if err := ctx.Err(); err != nil {
		return target.Export{}, errs.Wrap(errs.Timeout, err, "export "+iqn)
	}
	if path == "" {
		return target.Export{}, errs.New(errs.InvalidParameter, "export %s: no path", iqn)
	}
	if filepath.IsAbs(path) {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return target.Export{}, errs.Wrap(errs.NotFound, err, "export "+iqn)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["export"]; err != nil {
		return target.Export{}, err
	}
	if e, ok := t.exports[iqn]; ok {
		if e.Path != path {
			return target.Export{}, errs.New(errs.Conflict, "%s exports %s, not %s", iqn, e.Path, path)
		}
		return e, nil
	}
	e := target.Export{IQN: iqn, TID: t.nextTID, LUN: target.LUN, Path: path, Initiators: slices.Clone(t.initiators)}
	t.nextTID++
	t.exports[iqn] = e
	return e, nil
}

// Unexport implements target.Target.
func (t *Target) Unexport(ctx context.Context, iqn string) error {
	if err := target.CheckIQN(iqn); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fail["unexport"]; err != nil {
		return err
	}
	delete(t.exports, iqn)
	return nil
}

// List implements target.Target.
func (t *Target) List(ctx context.Context, prefix string) ([]target.Export, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []target.Export{}
	for iqn, e := range t.exports {
		if target.HasPrefix(iqn, prefix) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b target.Export) int { return strings.Compare(a.IQN, b.IQN) })
	return out, nil
}
