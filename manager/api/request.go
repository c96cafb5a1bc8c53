package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Request is what a route body sees.
type Request struct {
	HTTP   *http.Request
	Params params.Params
	// Account is the caller's account id from the account header; "" means
	// no header: an operator call with no account scoping (§1.4).
	Account string
	// Quota is the parsed X-VDC-Account-Quota header (nil when absent).
	Quota map[string]float64
	// Format is "json" or "yml".
	Format string
	// Stale is true for `?stale=true` reads served from local state.
	Stale bool
	// maxLimit caps list `limit`s (Config.MaxListLimit; 0 = no cap).
	maxLimit int
}

// ID returns the path value name (e.g. "id").
func (r *Request) ID(name string) string { return r.HTTP.PathValue(name) }

// Owner is the account new resources belong to: the caller, else an
// `account_id` parameter (operator registrations), else the system account.
func (r *Request) Owner() string {
	if r.Account != "" {
		return r.Account
	}
	if v := r.Params.Str("account_id"); v != "" {
		return v
	}
	return proto.SystemAccount
}

type endpoint struct {
	a      *API
	access access
	h      handlerFunc
}

const headerForwarded = "X-Vdc-Forwarded-By"

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a := e.a
	format, _ := r.Context().Value(ctxFormat{}).(string)
	fail := func(err error) { a.writeError(w, format, err) }

	stale := r.URL.Query().Get("stale") == "true" || a.cfg.StaleReadsOnly
	local := e.access == read && stale
	if !local && !a.b.IsLeader() {
		a.forward(w, r, format)
		return
	}

	body, err := readBody(r, a.cfg.MaxBodyBytes)
	if err != nil {
		fail(err)
		return
	}
	p, err := params.FromRequest(r, a.cfg.MaxBodyBytes)
	if err != nil {
		fail(mapParamsError(err))
		return
	}
	req := &Request{HTTP: r, Params: p, Format: format, Stale: local, maxLimit: a.cfg.MaxListLimit}
	if err := a.resolveAccount(r.Context(), req); err != nil {
		if errs.Is(err, errs.NoLeader) && local {
			// An unknown account must be created, which only the leader can do.
			r.Body = io.NopCloser(bytes.NewReader(body))
			a.forward(w, r, format)
			return
		}
		fail(err)
		return
	}
	if e.access == read && !local {
		if err := a.b.VerifyLeader(r.Context()); err != nil {
			fail(err)
			return
		}
	}
	out, err := e.h(r.Context(), req)
	if err != nil {
		fail(err)
		return
	}
	a.render(w, format, http.StatusOK, out)
}

func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		// Most reads: nothing to keep, and io.ReadAll would allocate anyway.
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	r.Body.Close()
	if err != nil {
		return nil, errs.Wrap(errs.InvalidBody, err, "Invalid request body.")
	}
	if int64(len(b)) > max {
		return nil, errs.New(errs.TooLarge, "request body is larger than %d bytes", max)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	// Keep a copy for forwarding and re-parsing.
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return b, nil
}

func mapParamsError(err error) error {
	var ce *params.ConflictError
	switch {
	case errors.As(err, &ce):
		return errs.Wrap(errs.InvalidParameter, err, ce.Key)
	case errors.Is(err, params.ErrInvalidBody):
		return errs.New(errs.InvalidBody, "Invalid request body.")
	case errs.KindOf(err) != errs.Internal:
		return err
	}
	var tl *params.TooLargeError
	if errors.As(err, &tl) {
		return errs.Wrap(errs.TooLarge, err, "request body too large")
	}
	return errs.Wrap(errs.InvalidParameter, err, "invalid parameters")
}

// accountHeader finds the account header in either spelling: any header whose
// name upper-cased with '-' as '_' is X_VDC_ACCOUNT_UUID (§1.4).
func accountHeader(h http.Header) string {
	if v := h.Get("X-Vdc-Account-Uuid"); v != "" {
		return v
	}
	for k, vs := range h {
		if len(vs) > 0 && strings.EqualFold(strings.ReplaceAll(k, "-", "_"), "X_VDC_ACCOUNT_UUID") {
			return vs[0]
		}
	}
	return ""
}

// resolveAccount applies §1.4 to the account the request acts as (the
// header of a trusted frontend, or the API token's account: access.go):
// auto-create unknown accounts, refuse disabled ones, force the
// `account_id` parameter to the caller, parse quotas.
func (a *API) resolveAccount(ctx context.Context, req *Request) error {
	c, ok := callerFrom(ctx)
	if !ok {
		return forbidden("request without a caller")
	}
	id := c.account
	if id == "" {
		return nil
	}
	if !strings.HasPrefix(id, proto.PrefixAccount+"-") || !validUUIDPart(id[2:]) {
		return errs.New(errs.InvalidRequestCredentials, "Invalid account uuid: %s", id)
	}
	var usable bool
	err := a.b.Store().View(func(tx *state.Tx) error {
		e, ok := tx.Raw(proto.KindAccount, id)
		if !ok {
			return errs.New(errs.NotFound, "%s %s not found", proto.KindAccount, id)
		}
		var err error
		usable, err = a.accounts.usable(id, e)
		return err
	})
	switch {
	case errs.Is(err, errs.NotFound):
		if !a.b.IsLeader() {
			return errs.New(errs.NoLeader, "account must be created on the leader")
		}
		if err := a.createAccount(ctx, id); err != nil {
			return err
		}
		usable = true
	case err != nil:
		return err
	}
	if !usable {
		return errs.New(errs.DisabledAccount, "Account %s is disabled", id)
	}
	req.Account = id
	req.Params["account_id"] = id
	if q := req.HTTP.Header.Get("X-Vdc-Account-Quota"); q != "" {
		if err := json.Unmarshal([]byte(q), &req.Quota); err != nil {
			return errs.New(errs.InvalidParameter, "X-VDC-Account-Quota: %v", err)
		}
	}
	return nil
}

func (a *API) createAccount(ctx context.Context, id string) error {
	_, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		if tx.Exists(proto.KindAccount, id) {
			return nil, nil
		}
		now := a.now()
		b.Create(proto.KindAccount, id, proto.Account{
			ID: id, Timestamps: proto.Timestamps{CreatedAt: now, UpdatedAt: now}, Enabled: true,
		})
		return nil, nil
	})
	return err
}

// accountCache remembers whether each account may act (enabled, not
// deleted) as of the record's ModifyIndex: every request checks its
// account, and decoding the record each time was a fifth of a show's CPU.
// An entry is used only when the request's own transaction shows the same
// ModifyIndex (a raft index: the same write), so it is never stale.
type accountCache struct {
	mu sync.Mutex
	m  map[string]accountState
}

type accountState struct {
	mod    uint64
	usable bool
}

// maxCachedAccounts bounds the cache; past it, it starts over.
const maxCachedAccounts = 10_000

// usable reports whether the account record e of id may act.
func (c *accountCache) usable(id string, e state.Entry) (bool, error) {
	c.mu.Lock()
	st, ok := c.m[id]
	c.mu.Unlock()
	if ok && st.mod == e.ModifyIndex {
		return st.usable, nil
	}
	var acc proto.Account
	if err := json.Unmarshal(e.Value, &acc); err != nil {
		return false, fmt.Errorf("decode %s %s: %w", proto.KindAccount, id, err)
	}
	st = accountState{mod: e.ModifyIndex, usable: acc.Enabled && acc.DeletedAt == nil}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedAccounts {
		c.m = map[string]accountState{}
	}
	c.m[id] = st
	c.mu.Unlock()
	return st.usable, nil
}
