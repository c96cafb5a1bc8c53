package api

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
)

// deposed is a leader that a newer term has replaced without its knowing
// yet: it still routes writes to itself, but a quorum no longer confirms it.
type deposed struct {
	Backend
}

func (deposed) VerifyLeader(context.Context) error {
	return errs.New(errs.NoLeader, "a newer term has a leader")
}

// TestDeposedLeaderDoesNotAnswerFromItsState: a write that a deposed leader
// would refuse (or find nothing to do for) from its own, possibly stale,
// state gets 503 to retry, not a 404 that contradicts a create the new
// leader already acknowledged (found by e2e/chaos: a PUT answered 404 for a
// group created while its leader was SIGSTOPped).
func TestDeposedLeaderDoesNotAnswerFromItsState(t *testing.T) {
	e := newEnv(t)
	put := func() *resp { return e.put("/security_groups/sg-absent00.json", url.Values{"description": {"x"}}) }
	del := func() *resp { return e.del("/security_groups/sg-absent00.json") }
	want := func(what string, r *resp, status int) {
		t.Helper()
		if r.status != status {
			t.Errorf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
		}
	}
	want("PUT on the leader", put(), http.StatusNotFound)
	want("DELETE on the leader", del(), http.StatusNotFound)

	e.api.b = deposed{Backend: e.api.b}
	want("PUT on a deposed leader", put(), http.StatusServiceUnavailable)
	want("DELETE on a deposed leader", del(), http.StatusServiceUnavailable)
}
