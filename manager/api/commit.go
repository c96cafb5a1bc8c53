package api

import (
	"context"

	"github.com/vdc-project/vdc/manager/state"
)

// renderFn builds a response from the state as committed.
type renderFn func(tx *state.Tx) (any, error)

// commit runs plan through state.Commit; the returned renderFn (may be nil)
// then builds the response from the committed state, so responses show what
// was stored.
func (a *API) commit(ctx context.Context, plan func(tx *state.Tx, b *state.Builder) (renderFn, error)) (any, error) {
	var render renderFn
	err := state.CommitConfirmed(ctx, a.b.Store(), a.b, func(tx *state.Tx, b *state.Builder) error {
		var err error
		render, err = plan(tx, b)
		return err
	})
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
