package state

import (
	"context"
	"errors"

	"github.com/vdc-project/vdc/common/errs"
)

// Applier proposes commands through raft (the manager's cluster layer).
type Applier interface {
	Apply(ctx context.Context, t CommandType, body any) (any, error)
}

// MaxCommitAttempts bounds the optimistic retries of one Commit.
const MaxCommitAttempts = 8

// Commit runs a read-decide-write cycle with optimistic concurrency: plan
// reads the state, validates, and adds ops (guarded by the ModifyIndex of what
// it read) to b. The txn goes through raft; if another write got there first,
// a guard fails in Apply and plan runs again on the new state, where its own
// checks then return the right error. Every writer of the manager (API
// routes, collector RPCs, leader loops) goes through here.
func Commit(ctx context.Context, s *Store, ap Applier, plan func(tx *Tx, b *Builder) error) error {
	for attempt := 0; attempt < MaxCommitAttempts; attempt++ {
		var b Builder
		if err := s.View(func(tx *Tx) error { return plan(tx, &b) }); err != nil {
			return err
		}
		if b.Len() == 0 {
			return nil
		}
		txn, err := b.Txn()
		if err != nil {
			return err
		}
		_, err = ap.Apply(ctx, CmdTxn, txn)
		var te *TxnError
		if errors.As(err, &te) && te.Reason != ReasonInvalid {
			continue
		}
		return err
	}
	return errs.New(errs.Conflict, "too many concurrent changes to the same resources; retry")
}

// Leader is an Applier that can confirm its leadership with a quorum.
type Leader interface {
	Applier
	VerifyLeader(ctx context.Context) error
}

// CommitConfirmed is Commit for answers that leave the manager (API
// responses, collector replies to agents). A leader deposed while paused or
// cut off still takes writes until it hears of the new term, and its state
// misses what the new leader has committed since: a refusal or a no-op
// decided on it (404, a bad state transition, "nothing to do") could
// contradict a write already acknowledged (e2e/chaos: a PUT answered 404
// for a group created while its leader was SIGSTOPped). Such an answer is
// given only once a quorum confirms this manager still leads, as reads are.
func CommitConfirmed(ctx context.Context, s *Store, l Leader, plan func(tx *Tx, b *Builder) error) error {
	// local: the last plan wrote nothing, so its outcome rests on this
	// manager's state alone.
	var local bool
	err := Commit(ctx, s, l, func(tx *Tx, b *Builder) error {
		err := plan(tx, b)
		local = err != nil || b.Len() == 0
		return err
	})
	if local && !errs.Is(err, errs.NoLeader) {
		if verr := l.VerifyLeader(ctx); verr != nil {
			return verr
		}
	}
	return err
}
