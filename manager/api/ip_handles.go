package api

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// IP handles (spec §2.11): addresses acquired from IP pools. Expiry is only
// recorded here; releasing expired handles is a later issue.

// maxHandleTTL is the longest expire_at time_to, one year in seconds.
const maxHandleTTL = 31536000

func (a *API) registerIPHandles() {
	a.route("GET /ip_handles/{id}", read, a.showIPHandle)
	a.route("PUT /ip_handles/{id}/expire_at", write, a.expireIPHandle)
}

func ipHandleDoc(_ *state.Tx, h *proto.IPHandle, _ state.Meta) (*format.Map, error) {
	return format.NewMap(8).
		Set("id", h.ID).
		Set("network", strOrNil(h.NetworkID)).
		Set("network_vif", strOrNil(h.NetworkVifID)).
		Set("ipv4", h.IPv4).
		Set("display_name", h.DisplayName).
		Set("created_at", h.CreatedAt).
		Set("updated_at", h.UpdatedAt).
		Set("expires_at", h.ExpiresAt), nil
}

// handlePoolOwned requires the handle's pool to exist and belong to the
// caller (404/100 otherwise).
func handlePoolOwned(tx *state.Tx, req *Request, h *proto.IPHandle) error {
	var pool proto.IPPool
	_, err := tx.Get(proto.KindIPPool, h.IPPoolID, &pool)
	if errs.Is(err, errs.NotFound) || (err == nil && req.Account != "" && pool.AccountID != req.Account) {
		return errs.New(errs.UnknownUUIDResource, "%s", h.ID)
	}
	return err
}

func getIPHandle(tx *state.Tx, req *Request) (*proto.IPHandle, state.Meta, error) {
	h, m, err := getOwned[proto.IPHandle](tx, req, proto.KindIPHandle, proto.PrefixIPHandle, req.ID("id"))
	if err != nil {
		return nil, m, err
	}
	return h, m, handlePoolOwned(tx, req, h)
}

func (a *API) showIPHandle(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		h, m, err := getIPHandle(tx, req)
		if err != nil {
			return nil, err
		}
		return ipHandleDoc(tx, h, m)
	})
}

func (a *API) expireIPHandle(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		h, m, err := getIPHandle(tx, req)
		if err != nil {
			return nil, err
		}
		if h.NetworkVifID != nil {
			return nil, errs.New(errs.InvalidParameter, "id")
		}
		n, set, err := req.Params.Int("time_to")
		if err != nil || !set || n < 1 || n > maxHandleTTL {
			return nil, errs.New(errs.InvalidParameter, "time_to")
		}
		now := a.now()
		exp := now.Add(time.Duration(n) * time.Second)
		h.ExpiresAt, h.UpdatedAt = &exp, now
		b.Update(proto.KindIPHandle, h.ID, m.ModifyIndex, h)
		return func(tx *state.Tx) (any, error) { return ipHandleDoc(tx, h, m) }, nil
	})
}
