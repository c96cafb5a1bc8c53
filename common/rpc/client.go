package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
)

// DefaultCallTimeout bounds a call whose context has no deadline (isono's
// RPC timeout).
const DefaultCallTimeout = 180 * time.Second

// ClientConfig configures a Client.
type ClientConfig struct {
	Security Security
	// Timeout bounds calls whose ctx has no deadline; 0 = DefaultCallTimeout.
	Timeout time.Duration
	// DialTimeout bounds connecting; 0 = 5s.
	DialTimeout time.Duration
	// MaxIdleConnsPerHost is the keep-alive pool per peer; 0 = 16.
	MaxIdleConnsPerHost int
}

// Client calls RPC servers, keeping connections to each peer alive between
// calls. It is safe for concurrent use; share one per process.
type Client struct {
	cfg  ClientConfig
	http *http.Client
	tr   *http.Transport
}

// NewClient returns a Client.
func NewClient(cfg ClientConfig) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultCallTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.MaxIdleConnsPerHost <= 0 {
		cfg.MaxIdleConnsPerHost = 16
	}
	tr := &http.Transport{
		Proxy:               nil, // cluster traffic never goes through an HTTP proxy
		DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   false,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{cfg: cfg, tr: tr, http: &http.Client{Transport: tr}}
}

// Close drops idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Call sends req (JSON-encoded; nil sends null) to endpoint/verb on the
// server at addr (host:port) and decodes the response into resp (nil
// discards it). The call ends with ctx (or after the client's default
// timeout when ctx has no deadline). A remote error comes back as
// *errs.Error of the kind the server returned; not reaching the server, or
// losing it mid-call, is errs.Unavailable; running out of time is
// errs.Timeout (wrapping the context error).
func (c *Client) Call(ctx context.Context, addr, endpoint, verb string, req, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return errs.Wrap(errs.Internal, err, fmt.Sprintf("encode %s/%s request", endpoint, verb))
	}
	url := "http://" + addr + proto.RPCPath(endpoint, verb)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return errs.Wrap(errs.Internal, err, "build rpc request")
	}
	hreq.Header.Set("Content-Type", "application/json")
	if c.cfg.Security.Token != "" {
		hreq.Header.Set(proto.HeaderAuthorization, "Bearer "+c.cfg.Security.Token)
	}
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return transportError(ctx, err, addr, endpoint, verb)
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(hresp.Body)
	if err != nil {
		return transportError(ctx, err, addr, endpoint, verb)
	}
	if hresp.StatusCode != http.StatusOK {
		return remoteError(hresp.StatusCode, data)
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(data, resp); err != nil {
		return errs.Wrap(errs.Internal, err, fmt.Sprintf("decode %s/%s response", endpoint, verb))
	}
	return nil
}

func transportError(ctx context.Context, err error, addr, endpoint, verb string) error {
	what := fmt.Sprintf("rpc %s/%s to %s", endpoint, verb, addr)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return errs.Wrap(errs.Timeout, ctxErr, what)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errs.Wrap(errs.Timeout, err, what)
	}
	return errs.Wrap(errs.Unavailable, err, what)
}

// remoteError rehydrates an error response. A body that is not a WireError
// came from something other than a vdc server (a proxy, a wrong port): its
// kind follows the status.
func remoteError(status int, body []byte) error {
	var w proto.WireError
	if err := json.Unmarshal(body, &w); err == nil && w.Code != "" {
		return FromWire(&w)
	}
	kind := errs.Internal
	switch status {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		kind = errs.Unavailable
	case http.StatusUnauthorized:
		kind = errs.Unauthorized
	case http.StatusNotFound:
		kind = errs.NotFound
	}
	snippet := body
	if len(snippet) > 200 {
		snippet = snippet[:200]
	}
	return errs.New(kind, "rpc: HTTP %d: %s", status, bytes.TrimSpace(snippet))
}
