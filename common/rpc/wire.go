// Package rpc is vdc's agent RPC: JSON over HTTP/1.1 keep-alive,
// POST /rpc/v1/<endpoint>/<verb> (DESIGN.md "Messaging"). A Server routes
// requests to Handlers registered per endpoint and verb; a Client calls them.
// Errors cross the wire as proto.WireError {code, message} with the HTTP
// status of their kind, and come back as *errs.Error of the same Kind.
package rpc

import (
	"context"
	"encoding/json"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/tlsutil"
	"github.com/vdc-project/vdc/proto"
)

// Handler serves one endpoint verb: it gets the raw JSON request body and
// returns a value to encode as the response, or an error.
type Handler func(ctx context.Context, req json.RawMessage) (any, error)

// Func adapts a typed function to a Handler: the body is decoded into Req
// (an undecodable body is errs.InvalidBody) and the Resp is encoded.
func Func[Req, Resp any](fn func(ctx context.Context, req Req) (Resp, error)) Handler {
	return func(ctx context.Context, raw json.RawMessage) (any, error) {
		var req Req
		if err := Decode(raw, &req); err != nil {
			return nil, err
		}
		return fn(ctx, req)
	}
}

// Decode decodes a request body into v; a body that does not fit v is
// errs.InvalidBody.
func Decode(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errs.Wrap(errs.InvalidBody, err, "decode request")
	}
	return nil
}

// Security is how peers authenticate each other; the same value configures
// a Server and the Clients that call it.
//
// Two mechanisms, which may be combined:
//   - a shared token: clients send Token as "Authorization: Bearer <token>";
//     servers accept Token and every AcceptTokens entry, so a token is
//     rotated without downtime by first accepting the next one everywhere,
//     then sending it, then dropping the old one (README "Cluster security");
//   - mutual TLS with the cluster CA (TLS): both ends present certificates,
//     and each checks the other's role against proto.ServingRoles /
//     proto.CallerRoles of the endpoint.
type Security struct {
	// Token, when not empty, is what this daemon sends, and is accepted.
	Token string
	// AcceptTokens are accepted from callers besides Token. A server with
	// neither Token nor AcceptTokens checks no token.
	AcceptTokens []string
	// TLS, when set, is this daemon's certificate and the cluster CA.
	TLS *tlsutil.Identity
}

// tokens lists every token a server accepts.
func (s Security) tokens() []string {
	var out []string
	if s.Token != "" {
		out = append(out, s.Token)
	}
	for _, t := range s.AcceptTokens {
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

// ToWire is how err crosses the wire: the code of its kind and its message.
// An *errs.Error without message or cause keeps an empty message, so that it
// renders as its class name on the other side too.
func ToWire(err error) *proto.WireError {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if e, ok := err.(*errs.Error); ok && e.Msg == "" && e.Err == nil {
		msg = ""
	}
	return &proto.WireError{Code: errs.KindOf(err).WireCode(), Message: msg}
}

// FromWire rehydrates an error that crossed the wire.
func FromWire(w *proto.WireError) error {
	if w == nil {
		return nil
	}
	return &errs.Error{Kind: errs.KindFromCode(w.Code), Msg: w.Message}
}

// IsRetryable reports whether err means "try again later": the peer was
// unreachable or shutting down, the call timed out, or there was no leader.
// A retried call may run twice, so only idempotent or deduplicated calls
// (jobs) should be retried blindly.
func IsRetryable(err error) bool {
	switch errs.KindOf(err) {
	case errs.Unavailable, errs.Timeout, errs.NoLeader:
		return true
	}
	return false
}
