package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/tlsutil"
	"github.com/vdc-project/vdc/proto"
)

// DefaultMaxBodyBytes bounds a request body unless ServerConfig says otherwise.
const DefaultMaxBodyBytes = 8 << 20

// ServerConfig configures a Server.
type ServerConfig struct {
	Security Security
	Logger   *slog.Logger
	// MaxBodyBytes bounds request bodies (errs.TooLarge beyond); 0 = DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Callers are the roles that may call an endpoint under mutual TLS;
	// nil = proto.CallerRoles. An endpoint with no roles refuses everyone.
	Callers func(endpoint string) []string
}

// Server routes POST /rpc/v1/<endpoint>/<verb> to registered Handlers. It is
// an http.Handler; Serve runs it on a listener.
type Server struct {
	cfg       ServerConfig
	logger    *slog.Logger
	tokenSums [][sha256.Size]byte

	mu       sync.RWMutex
	handlers map[string]map[string]Handler // endpoint -> verb -> handler

	http *http.Server

	connMu   sync.Mutex
	newConns map[net.Conn]struct{} // accepted, no request read yet
}

// NewServer returns a Server with no handlers.
func NewServer(cfg ServerConfig) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		logger:   logger.With("component", "rpc"),
		handlers: map[string]map[string]Handler{},
		newConns: map[net.Conn]struct{}{},
	}
	for _, tok := range cfg.Security.tokens() {
		s.tokenSums = append(s.tokenSums, sha256.Sum256([]byte(tok)))
	}
	if s.cfg.Callers == nil {
		s.cfg.Callers = proto.CallerRoles
	}
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		ConnState:         s.trackConn,
	}
	return s
}

// trackConn remembers connections that have not sent a request yet: the
// http server's Shutdown waits 5 s before it treats those as idle, which
// would hold every agent shutdown up when a client pooled a spare connection.
func (s *Server) trackConn(c net.Conn, st http.ConnState) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if st == http.StateNew {
		s.newConns[c] = struct{}{}
	} else {
		delete(s.newConns, c)
	}
}

func (s *Server) closeNewConns() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c := range s.newConns {
		_ = c.Close()
		delete(s.newConns, c)
	}
}

// Register serves endpoint/verb with h. Registering a pair twice, or a name
// with a slash or none at all, is a programming error and panics.
func (s *Server) Register(endpoint, verb string, h Handler) {
	if endpoint == "" || verb == "" || strings.Contains(endpoint, "/") || strings.Contains(verb, "/") {
		panic(fmt.Sprintf("rpc: bad endpoint/verb %q/%q", endpoint, verb))
	}
	if h == nil {
		panic("rpc: nil handler for " + endpoint + "/" + verb)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	verbs := s.handlers[endpoint]
	if verbs == nil {
		verbs = map[string]Handler{}
		s.handlers[endpoint] = verbs
	}
	if _, dup := verbs[verb]; dup {
		panic("rpc: duplicate handler for " + endpoint + "/" + verb)
	}
	verbs[verb] = h
}

// Unregister stops serving endpoint/verb.
func (s *Server) Unregister(endpoint, verb string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.handlers[endpoint], verb)
	if len(s.handlers[endpoint]) == 0 {
		delete(s.handlers, endpoint)
	}
}

func (s *Server) lookup(endpoint, verb string) (Handler, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	verbs, ok := s.handlers[endpoint]
	if !ok {
		return nil, errs.New(errs.NotFound, "unknown rpc endpoint %q", endpoint)
	}
	h, ok := verbs[verb]
	if !ok {
		return nil, errs.New(errs.NotFound, "unknown verb %q of rpc endpoint %q", verb, endpoint)
	}
	return h, nil
}

// authenticate checks the caller's token (constant time, against every
// accepted token so that the time does not tell which one matched).
func (s *Server) authenticate(r *http.Request) error {
	if len(s.tokenSums) == 0 {
		return nil
	}
	got, ok := strings.CutPrefix(r.Header.Get(proto.HeaderAuthorization), "Bearer ")
	sum := sha256.Sum256([]byte(got))
	match := 0
	for i := range s.tokenSums {
		match |= subtle.ConstantTimeCompare(sum[:], s.tokenSums[i][:])
	}
	if !ok || match != 1 {
		return errs.New(errs.Unauthorized, "missing or wrong rpc token")
	}
	return nil
}

// authorize checks, under mutual TLS, that the caller's role may call
// endpoint (the handshake already proved the certificate is the cluster's).
func (s *Server) authorize(r *http.Request, endpoint string) (tlsutil.Peer, error) {
	if s.cfg.Security.TLS == nil {
		return tlsutil.Peer{}, nil
	}
	p, err := tlsutil.PeerOf(r.TLS)
	if err != nil {
		return p, errs.Wrap(errs.Unauthorized, err, "rpc caller")
	}
	if !slices.Contains(s.cfg.Callers(endpoint), p.Role) {
		return p, errs.New(errs.Unauthorized, "%s %q may not call %s", p.Role, p.Name, endpoint)
	}
	return p, nil
}

type peerKey struct{}

// PeerFrom is the verified caller of an RPC handler's ctx (ok=false without
// mutual TLS).
func PeerFrom(ctx context.Context) (tlsutil.Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(tlsutil.Peer)
	return p, ok
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.authenticate(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, proto.RPCPathPrefix)
	endpoint, verb, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 || strings.Contains(verb, "/") {
		s.writeError(w, r, errs.New(errs.NotFound, "no rpc route %s", r.URL.Path))
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.writeError(w, r, errs.New(errs.NotFound, "rpc wants POST, got %s", r.Method))
		return
	}
	peer, err := s.authorize(r, endpoint)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h, err := s.lookup(endpoint, verb)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			s.writeError(w, r, errs.New(errs.TooLarge, "rpc body over %d bytes", s.cfg.MaxBodyBytes))
			return
		}
		s.writeError(w, r, errs.Wrap(errs.InvalidBody, err, "read rpc body"))
		return
	}
	if len(body) == 0 {
		body = []byte("null")
	}
	if !json.Valid(body) {
		s.writeError(w, r, errs.New(errs.InvalidBody, "rpc body is not JSON"))
		return
	}
	ctx := r.Context()
	if s.cfg.Security.TLS != nil {
		ctx = context.WithValue(ctx, peerKey{}, peer)
	}
	resp, err := s.call(ctx, h, endpoint, verb, body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := json.Marshal(resp)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("encode %s/%s response: %w", endpoint, verb, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// call runs h, turning a panic into an internal error.
func (s *Server) call(ctx context.Context, h Handler, endpoint, verb string, body []byte) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("rpc handler panicked", "endpoint", endpoint, "verb", verb,
				"panic", p, "stack", string(debug.Stack()))
			resp, err = nil, errs.New(errs.Internal, "%s/%s panicked: %v", endpoint, verb, p)
		}
	}()
	return h(ctx, body)
}

// writeError is the one place an RPC error becomes a response.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	kind := errs.KindOf(err)
	if kind == errs.Internal {
		s.logger.Error("rpc internal error", "path", r.URL.Path, "error", err)
	}
	out, _ := json.Marshal(ToWire(err))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(kind.Status())
	_, _ = w.Write(out)
}

// Serve accepts connections on l until Shutdown. It returns nil after
// Shutdown (also when Shutdown came first). Under mutual TLS the listener
// is wrapped: a client without a certificate of the cluster CA fails the
// handshake and never reaches a handler.
func (s *Server) Serve(l net.Listener) error {
	if id := s.cfg.Security.TLS; id != nil {
		l = tls.NewListener(l, id.ServerConfig())
	}
	if err := s.http.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("rpc serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for in-flight calls until
// ctx is done; then it closes what is left.
// Connections that never sent a request are closed at once.
func (s *Server) Shutdown(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.http.Shutdown(ctx) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				_ = s.http.Close()
				return errs.Wrap(errs.Timeout, err, "rpc calls still running at shutdown")
			}
			return nil
		case <-tick.C:
			s.closeNewConns()
		}
	}
}
