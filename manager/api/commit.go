package api

import (
	"context"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
)

// renderFn builds a response from the state as committed.
type renderFn func(tx *state.Tx) (any, error)

// commit runs plan through state.Commit; the returned renderFn (may be nil)
// then builds the response from the committed state, so responses show what
// was stored.
func (a *API) commit(ctx context.Context, plan func(tx *state.Tx, b *state.Builder) (renderFn, error)) (any, error) {
	var render renderFn
	// local: the last plan wrote nothing (it refused, or there was nothing
	// to change), so its answer rests on this manager's state alone.
	var local bool
	err := state.Commit(ctx, a.b.Store(), a.b, func(tx *state.Tx, b *state.Builder) error {
		var err error
		render, err = plan(tx, b)
		local = err != nil || b.Len() == 0
		return err
	})
	// A leader deposed while paused or cut off still routes writes here until
	// it hears of the new term, and its state misses what the new leader has
	// committed since: a 404 (or a no-op) read from it would contradict a
	// write already acknowledged (e2e/chaos: a PUT answered 404 for a group
	// created while its leader was SIGSTOPped). Such an answer is given only
	// once a quorum confirms this manager still leads, as reads are.
	if local && !errs.Is(err, errs.NoLeader) {
		if verr := a.b.VerifyLeader(ctx); verr != nil {
			return nil, verr
		}
	}
	if err != nil || render == nil {
		return nil, err
	}
	return a.view(render)
}

// view runs fn in a read transaction and returns its document.
func (a *API) view(fn func(tx *state.Tx) (any, error)) (any, error) {
	var out any
	err := a.b.Store().View(func(tx *state.Tx) error {
		var err error
		out, err = fn(tx)
		return err
	})
	return out, err
}
