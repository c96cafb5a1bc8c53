package api

import (
	"context"
	"errors"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
)

// renderFn builds a response from the state as committed.
type renderFn func(tx *state.Tx) (any, error)

// maxCommitAttempts bounds optimistic retries of one request.
const maxCommitAttempts = 8

// commit runs a read-decide-write cycle with optimistic concurrency: plan
// reads the state, validates, and adds ops (guarded by the ModifyIndex of what
// it read) to b. The txn goes through raft; if another write got there first,
// any precondition fails in Apply and plan runs again on the new state, where
// its own checks produce the right API error. The returned renderFn (may be
// nil) runs on the committed state so responses show what was stored.
func (a *API) commit(ctx context.Context, plan func(tx *state.Tx, b *state.Builder) (renderFn, error)) (any, error) {
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		var (
			b      state.Builder
			render renderFn
		)
		err := a.b.Store().View(func(tx *state.Tx) error {
			var err error
			render, err = plan(tx, &b)
			return err
		})
		if err != nil {
			return nil, err
		}
		if b.Len() > 0 {
			txn, err := b.Txn()
			if err != nil {
				return nil, err
			}
			_, err = a.b.Apply(ctx, state.CmdTxn, txn)
			var te *state.TxnError
			if errors.As(err, &te) && te.Reason != state.ReasonInvalid {
				continue
			}
			if err != nil {
				return nil, err
			}
		}
		if render == nil {
			return nil, nil
		}
		var out any
		err = a.b.Store().View(func(tx *state.Tx) error {
			var err error
			out, err = render(tx)
			return err
		})
		return out, err
	}
	return nil, errs.New(errs.Conflict, "too many concurrent changes to the same resources; retry")
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
