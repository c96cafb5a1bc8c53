// Package api serves the dcmgr 12.03 REST API: routes, parameter decoding,
// ownership checks, list envelopes, JSON/YAML rendering, and the one place
// where errors become HTTP responses.
package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Prefix is where the 12.03 app is mounted.
const Prefix = "/api/12.03"

// Backend is what the API needs from the manager's cluster layer.
type Backend interface {
	Store() *state.Store
	Apply(ctx context.Context, t state.CommandType, body any) (any, error)
	IsLeader() bool
	VerifyLeader(ctx context.Context) error
	LeaderAPI() (string, error)
	Members() []cluster.Member
	Peers() ([]cluster.Peer, error)
	Stats() map[string]string
	// Publish sends a fan-out event to the agents (serf user event).
	Publish(ctx context.Context, ev proto.Event) error
}

// Config holds the dcmgr.conf settings the API uses (spec/agents.md §7).
type Config struct {
	// ServiceTypes are the configured service types; `service_type` params
	// must name one of them.
	ServiceTypes []string `json:"service_types"`
	// DefaultServiceType is used when a create names none.
	DefaultServiceType string `json:"default_service_type"`
	// SkipQuotaEvaluation disables X-VDC-Account-Quota checks.
	SkipQuotaEvaluation bool `json:"skip_quota_evaluation"`
	// MaxBodyBytes bounds request bodies (413 beyond).
	MaxBodyBytes int64 `json:"max_body_bytes"`
	// MaxListLimit caps a list's `limit` (the 12.03 API had no cap): a
	// larger limit is served as MaxListLimit, which the envelope reports.
	MaxListLimit int `json:"max_list_limit"`

	// Access (access.go): TrustedFrontends are the addresses or CIDRs whose
	// account header is believed (nil: DefaultTrustedFrontends; an empty
	// list trusts nobody, so that every request needs a token); Tokens are
	// the API tokens; RateLimit bounds requests per account (ratelimit.go).
	TrustedFrontends []string  `json:"trusted_frontends"`
	Tokens           []Token   `json:"tokens"`
	RateLimit        RateLimit `json:"rate_limit"`
	// StaleReadsOnly makes default reads local (no leader round trip); off by
	// default so that a read after an acknowledged write always sees it.
	StaleReadsOnly bool `json:"stale_reads_only"`
	// RecentTerminatedPeriod is how long terminated/deleted resources stay in
	// `alive_with_*` list filters.
	RecentTerminatedPeriod time.Duration `json:"recent_terminated_period"`

	// Instances (dcmgr.conf keys of the same names).
	// StoppedInstanceUsageFactor weighs stopped instances in POST /instances'
	// aggregate capacity check.
	StoppedInstanceUsageFactor float64 `json:"stopped_instance_usage_factor"`
	// DefaultForcePoweroff is poweroff's mode when the request has no `force`.
	DefaultForcePoweroff bool `json:"default_force_poweroff_instance"`
	// PoweronReadinessValidation refuses poweron while a backup of the
	// instance's volumes is still in progress.
	PoweronReadinessValidation bool `json:"enable_instance_poweron_readiness_validation"`
	// BackupStorages maps a service type to the backup storage that instance
	// backups without `backup_storage_id` go to (service_type backup_storage_id).
	BackupStorages map[string]string `json:"backup_storages"`

	// EvacuateWaitMS is how long PUT /host_nodes/:id/evacuate waits for the
	// evacuation to end, to answer its result (0, the default: it answers
	// at once with the job; at most MaxEvacuateWait).
	EvacuateWaitMS int `json:"evacuate_wait_ms"`

	// Volumes: POST /volumes' volume_size bounds in MB (dcmgr.conf keys of
	// the same names).
	CreateVolumeMinSize int64 `json:"create_volume_min_size"`
	CreateVolumeMaxSize int64 `json:"create_volume_max_size"`
	// Now is the wall clock for timestamps and job deadlines (nil: the
	// system clock, UTC, whole seconds). Not a config file key.
	Now func() time.Time `json:"-"`
}

// DefaultConfig mirrors dcmgr.conf's defaults.
func DefaultConfig() Config {
	return Config{
		ServiceTypes:           []string{"std"},
		DefaultServiceType:     "std",
		MaxBodyBytes:           8 << 20,
		MaxListLimit:           1000,
		TrustedFrontends:       DefaultTrustedFrontends(),
		RecentTerminatedPeriod: 900 * time.Second,

		StoppedInstanceUsageFactor: 1.0,
		DefaultForcePoweroff:       true,
		PoweronReadinessValidation: true,

		CreateVolumeMinSize: 10,
		CreateVolumeMaxSize: 3000,
	}
}

// Validate checks what New would otherwise have to drop.
func (c Config) Validate() error {
	if w := time.Duration(c.EvacuateWaitMS) * time.Millisecond; w < 0 || w > MaxEvacuateWait {
		return fmt.Errorf("evacuate_wait_ms %d: must be between 0 and %d", c.EvacuateWaitMS, MaxEvacuateWait.Milliseconds())
	}
	_, err := newAccess(c)
	return err
}

// API is the HTTP handler of the 12.03 API and the manager's internal routes.
type API struct {
	cfg     Config
	b       Backend
	logger  *slog.Logger
	now     func() time.Time
	mux     *http.ServeMux
	proxy   *forwarder
	rules   accessRules
	limiter *limiter
	// hostCache memoizes host reads of instance creates (hostcache.go).
	hostCache hostCache
	// accounts memoizes the account check of every request (request.go).
	accounts accountCache
	// instanceList keeps what GET /instances filters on (list.go).
	instanceList liteCache[instanceListFields]
	// routeTable lists the registered routes, for the tests that walk
	// every route.
	routeTable []registeredRoute
	// onJobEnd: see SetJobEndHook.
	onJobEnd func(tx *state.Tx, b *state.Builder, j proto.Job, reason string, now time.Time) error
}

type registeredRoute struct {
	pattern string // "GET /ssh_key_pairs/{id}"
	h       handlerFunc
}

// SetJobEndHook sets what DELETE /jobs/:id adds to the txn that cancels an
// agent job, so that its resource does not wait forever for it (the
// dispatcher's jobs.Deps.OnFail: an instance still scheduling is
// terminated, one still migrating runs on its source again). Call it
// before serving.
func (a *API) SetJobEndHook(fn func(tx *state.Tx, b *state.Builder, j proto.Job, reason string, now time.Time) error) {
	a.onJobEnd = fn
}

// New builds the API over a backend.
func New(cfg Config, b Backend, logger *slog.Logger) *API {
	d := DefaultConfig()
	if len(cfg.ServiceTypes) == 0 {
		cfg.ServiceTypes = d.ServiceTypes
	}
	if cfg.DefaultServiceType == "" {
		cfg.DefaultServiceType = cfg.ServiceTypes[0]
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = d.MaxBodyBytes
	}
	if cfg.RecentTerminatedPeriod <= 0 {
		cfg.RecentTerminatedPeriod = d.RecentTerminatedPeriod
	}
	if cfg.CreateVolumeMinSize == 0 && cfg.CreateVolumeMaxSize == 0 {
		cfg.CreateVolumeMinSize, cfg.CreateVolumeMaxSize = d.CreateVolumeMinSize, d.CreateVolumeMaxSize
	}
	if cfg.MaxListLimit <= 0 {
		cfg.MaxListLimit = d.MaxListLimit
	}
	cfg.EvacuateWaitMS = min(cfg.EvacuateWaitMS, int(MaxEvacuateWait.Milliseconds()))
	a := &API{
		cfg:    cfg,
		b:      b,
		logger: logger.With("component", "api"),
		now:    cfg.Now,
		mux:    http.NewServeMux(),
	}
	var err error
	if a.rules, err = newAccess(cfg); err != nil {
		// dcmgr validates its config first; a caller that did not gets a
		// manager that trusts no address and knows no token.
		a.logger.Error("api access config; trusting nobody", "error", err)
		a.rules = accessRules{}
	}
	a.limiter = newLimiter(cfg.RateLimit, time.Now)
	if a.now == nil {
		a.now = func() time.Time { return time.Now().UTC().Truncate(time.Second) }
	}
	a.proxy = newForwarder(b, ForwardDialTimeout, ForwardWait)
	a.routes()
	// Unknown routes get an error document too, not net/http's plain text.
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f, _ := r.Context().Value(ctxFormat{}).(string)
		a.writeError(w, f, errs.New(errs.NotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
	return a
}

// access says whether a route reads or writes state.
type access int

const (
	read access = iota
	write
)

// handlerFunc is a route body: it returns the document to render or an error.
type handlerFunc func(ctx context.Context, req *Request) (any, error)

// route registers pattern ("GET /ssh_key_pairs/{id}") relative to Prefix.
func (a *API) route(pattern string, acc access, h handlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	a.mux.Handle(method+" "+Prefix+path, &endpoint{a: a, access: acc, h: h})
	a.routeTable = append(a.routeTable, registeredRoute{pattern: pattern, h: h})
}

func newRequestID() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ServeHTTP is the middleware chain of spec §1.1: request id and log, CORS,
// format suffix, then the route.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := newRequestID()
	w.Header().Set("X-VDC-Request-ID", rid)
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		a.logger.Info("request",
			"request_id", rid,
			"account_id", accountHeader(r.Header),
			"login_id", r.Header.Get("X-VDC-Requester-Token"),
			"method", r.Method,
			"path", r.URL.Path,
			"status", sw.status,
			"ms", time.Since(start).Milliseconds())
	}()

	h := sw.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		h.Set("Access-Control-Allow-Headers", req)
	} else {
		h.Set("Access-Control-Allow-Headers", "*")
	}
	h.Set("Access-Control-Expose-Headers", "X-VDC-Request-ID")
	if r.Method == http.MethodOptions {
		sw.WriteHeader(http.StatusOK)
		return
	}

	internal := strings.HasPrefix(r.URL.Path, "/internal/")
	format := "json"
	if !internal {
		format = stripFormat(r)
	}
	c, err := a.identify(r)
	if err == nil && internal && (c.tenant || (c.account != "" && strings.HasPrefix(r.URL.Path, "/internal/v1/gossip/"))) {
		// The cluster views are for the operator and trusted frontends (also
		// with an account header, as mussel-style tools send); an account
		// token gets none, and the gossip keyring is the operator's alone.
		err = forbidden("Operator routes take no account")
	}
	if err == nil {
		err = checkTenant(c, r)
	}
	if err == nil && !c.viaManager {
		key := c.account
		if key == "" {
			key = "operator@" + c.addr.String()
		}
		if ok, wait := a.limiter.allow(key); !ok {
			sw.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			err = errs.New(errs.RateLimited, "Request rate limit of %s exceeded; retry in %s", key, wait.Round(time.Millisecond))
		}
	}
	if err != nil {
		a.writeError(sw, format, err)
		return
	}
	if hasDotSegment(r.URL.EscapedPath()) {
		// The router would redirect to the cleaned path, which may be
		// another route: a path that walks up is no route at all.
		a.writeError(sw, format, errs.New(errs.NotFound, "no route for %s %s", r.Method, r.URL.Path))
		return
	}
	ctx := context.WithValue(r.Context(), ctxCaller{}, c)
	if internal {
		a.serveInternal(sw, r.WithContext(ctx))
		return
	}
	// One WithContext: each copies the whole request.
	ctx = context.WithValue(ctx, ctxRequestID{}, rid)
	ctx = context.WithValue(ctx, ctxFormat{}, format)
	a.mux.ServeHTTP(sw, r.WithContext(ctx))
}

type ctxRequestID struct{}
type ctxFormat struct{}

// stripFormat removes a trailing `.ext` from the path below the prefix and
// returns the response format it selects (§1.2): yml/yaml → YAML, else JSON.
func stripFormat(r *http.Request) string {
	p := r.URL.Path
	slash := strings.LastIndexByte(p, '/')
	dot := strings.LastIndexByte(p, '.')
	if dot <= slash || !strings.HasPrefix(p, Prefix+"/") {
		return "json"
	}
	ext := p[dot+1:]
	u := *r.URL
	u.Path = p[:dot]
	u.RawPath = ""
	// Keep the escaped form of a path that had escapes: an id holding %2F
	// must stay one path segment (then it is a bad uuid, 400/143), not be
	// split at the slash and have its ".." cleaned away by the router.
	if raw := r.URL.RawPath; raw != "" {
		if rd := strings.LastIndexByte(raw, '.'); rd > strings.LastIndexByte(raw, '/') {
			if dec, err := url.PathUnescape(raw[:rd]); err == nil && dec == u.Path {
				u.RawPath = raw[:rd]
			}
		}
	}
	r.URL = &u
	switch ext {
	case "yml", "yaml":
		return "yml"
	}
	return "json"
}

func hasDotSegment(escaped string) bool {
	for _, seg := range strings.Split(escaped, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.wroteHeader = true
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets the forwarding proxy stream.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// publish sends events after a committed change. Delivery is best effort
// (agents reconcile periodically), so a failure is logged, not returned: the
// change is already acknowledged.
func (a *API) publish(ctx context.Context, evs ...proto.Event) {
	for _, ev := range evs {
		if err := a.b.Publish(ctx, ev); err != nil {
			a.logger.WarnContext(ctx, "publish event", "event", ev.Name, "error", err)
		}
	}
}
