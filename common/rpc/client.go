package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/tlsutil"
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
	// Servers are the roles a server of an endpoint may have under mutual
	// TLS; nil = proto.ServingRoles. An endpoint with no roles is not called.
	Servers func(endpoint string) []string
}

// Client calls RPC servers, keeping connections to each peer alive between
// calls. It is safe for concurrent use; share one per process.
type Client struct {
	cfg ClientConfig
	tr  *http.Transport // plain HTTP

	mu     sync.Mutex
	tlsTrs map[string]*http.Transport // by the server roles they accept
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
	if cfg.Servers == nil {
		cfg.Servers = proto.ServingRoles
	}
	c := &Client{cfg: cfg, tlsTrs: map[string]*http.Transport{}}
	c.tr = c.newTransport()
	return c
}

func (c *Client) newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil, // cluster traffic never goes through an HTTP proxy
		DialContext:         (&net.Dialer{Timeout: c.cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:   false,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: c.cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: c.cfg.DialTimeout,
	}
}

// transport is the plain transport, or under mutual TLS the one whose
// handshake accepts only the roles that serve endpoint. Pooled connections
// are per transport, so a connection verified for one role never carries a
// call meant for another.
func (c *Client) transport(endpoint string) (*http.Transport, string, error) {
	id := c.cfg.Security.TLS
	if id == nil {
		return c.tr, "http://", nil
	}
	roles := c.cfg.Servers(endpoint)
	if len(roles) == 0 {
		return nil, "", errs.New(errs.Unauthorized, "no server role is allowed to serve rpc endpoint %s", endpoint)
	}
	key := strings.Join(roles, ",")
	c.mu.Lock()
	defer c.mu.Unlock()
	tr := c.tlsTrs[key]
	if tr == nil {
		tr = c.newTransport()
		tr.TLSClientConfig = id.ClientConfig(roles...)
		c.tlsTrs[key] = tr
	}
	return tr, "https://", nil
}

// Close drops idle connections.
func (c *Client) Close() {
	c.tr.CloseIdleConnections()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tr := range c.tlsTrs {
		tr.CloseIdleConnections()
	}
}

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
	tr, scheme, err := c.transport(endpoint)
	if err != nil {
		return err
	}
	url := scheme + addr + proto.RPCPath(endpoint, verb)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return errs.Wrap(errs.Internal, err, "build rpc request")
	}
	hreq.Header.Set("Content-Type", "application/json")
	if c.cfg.Security.Token != "" {
		hreq.Header.Set(proto.HeaderAuthorization, "Bearer "+c.cfg.Security.Token)
	}
	hresp, err := (&http.Client{Transport: tr}).Do(hreq)
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
	// A certificate refused by either side will be refused again: not a
	// peer that is merely down.
	var verr *tls.CertificateVerificationError
	var rerr *tlsutil.RoleError
	var oerr *net.OpError
	if errors.As(err, &verr) || errors.As(err, &rerr) || (errors.As(err, &oerr) && oerr.Op == "remote error") {
		return errs.Wrap(errs.Unauthorized, err, what)
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
	if status == http.StatusBadRequest && bytes.Contains(body, []byte("HTTPS server")) {
		// Go's TLS listener answering plain HTTP: the peer runs mutual TLS
		// and this daemon has no TLS files (or the other way round).
		return errs.New(errs.Unauthorized, "rpc: the peer requires TLS; configure tls_ca_file, tls_cert_file and tls_key_file")
	}
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
