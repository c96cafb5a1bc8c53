// Package agent is the runtime of vdc's node daemons (scheduler, hva, sta):
// an RPC server for the job verbs and calls they serve, serf membership with
// the tags the manager looks for, job execution with deduplication by job id
// and per-endpoint concurrency limits, and fan-out events as serf user
// events (DESIGN.md "Messaging", "Node agents"; spec/agents.md §1).
//
// Use: New, register handlers (HandleJob, Handle, Subscribe), Start,
// and Shutdown when done. Handlers are registered before Start so that no job
// arrives while its verb is still unknown.
package agent

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/jobtable"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/proto"
)

// Defaults of Config fields left zero.
const (
	DefaultDedupSize = 4096
	// DefaultDedupRetention is longer than any job verb's timeout
	// (proto.JobVerbs), after which the manager no longer redelivers a job.
	DefaultDedupRetention  = 48 * time.Hour
	DefaultEventBuffer     = 256
	DefaultMaxDeliveryWait = time.Minute
	DefaultCatchUp         = time.Second
	// maxCatchUps bounds the exchanges of catchUp (a minute of a cluster
	// growing at the default interval); catchUpQuiet is its longest wait,
	// in CatchUps.
	maxCatchUps  = 60
	catchUpQuiet = 16
)

// Config configures an agent.
type Config struct {
	// NodeID is the agent's identity (spec §1.1), e.g. "hva.demo1"; it is the
	// serf node name, the node_id tag and the suffix of its endpoints.
	NodeID string
	// Role is proto.RoleHva, RoleSta or RoleScheduler.
	Role string
	// SerfAddr is the gossip bind address (host:port; port 0 picks one).
	SerfAddr string
	// AdvertiseHost is the host others reach this agent at when a bind
	// address is unspecified (0.0.0.0); default: first non-loopback IPv4.
	AdvertiseHost string
	// RPCAddr is the RPC bind address (host:port; port 0 picks one).
	RPCAddr string
	// Join lists serf addresses of members to join; retried until one answers.
	Join []string
	// CatchUp is how long after the join, and then between, the agent
	// exchanges full state with a Join member again while its member count
	// grows (see catchUp). Zero is DefaultCatchUp; negative turns it off.
	CatchUp time.Duration
	// FastGossip tightens serf timers for loopback clusters (tests, quick start).
	FastGossip bool
	// SerfTune, when set, adjusts the serf configuration last (the
	// benchmark's simulated datacenter runs hundreds of agents in one
	// process with CrowdGossip).
	SerfTune func(*serf.Config)
	// Token is the shared RPC token, required from callers and sent to peers.
	// Security.RPC.Token, when set, takes its place.
	Token string
	// Security is the cluster security the daemon's config file set up:
	// RPC token(s), mutual TLS, gossip keyring (common/security).
	Security security.Settings
	Logger   *slog.Logger
	// Tags are extra serf tags (the hva's fence timeout); they cannot
	// replace role, node_id or rpc.
	Tags map[string]string

	// Concurrency is the number of jobs an endpoint runs at once, keyed by
	// full endpoint ("local-store-handle.hva.demo1") or base name
	// ("local-store-handle"); endpoints not listed run one job at a time.
	Concurrency map[string]int
	// DedupSize is how many finished jobs' results are remembered for
	// redeliveries (least recently used are forgotten first).
	DedupSize int
	// DedupRetention is how long a finished job's result is remembered
	// at most.
	DedupRetention time.Duration
	// Finished, when set, keeps the finished jobs' results across restarts
	// (common/jobtable, a file in the agent's data dir): New loads what an
	// earlier run stored, so a job finished before a restart and delivered
	// again is answered with its result instead of run twice. Without it
	// the results are in memory only. The caller opens and closes it.
	Finished jobtable.Table
	// EventBuffer is each subscription's queue; events beyond it are dropped.
	EventBuffer int
	// MaxDeliveryWait caps JobDelivery.WaitMs.
	MaxDeliveryWait time.Duration
	// OnJobFinished, if set, is called once with the final result of each
	// job no delivery was waiting for when it finished (the daemon reports
	// it to job-collector job_finished; a waiting delivery answers with it).
	OnJobFinished func(ctx context.Context, res proto.JobResult)
}

// Validate checks the config.
func (c *Config) Validate() error {
	if c.NodeID == "" || strings.ContainsAny(c.NodeID, "/ \t\n") {
		return fmt.Errorf("agent node id %q: want a non-empty id without slashes or spaces", c.NodeID)
	}
	switch c.Role {
	case proto.RoleHva, proto.RoleSta, proto.RoleScheduler:
	default:
		return fmt.Errorf("agent role %q: want hva, sta or scheduler", c.Role)
	}
	if _, _, err := net.SplitHostPort(c.SerfAddr); err != nil {
		return fmt.Errorf("agent serf address %q: %w", c.SerfAddr, err)
	}
	if _, _, err := net.SplitHostPort(c.RPCAddr); err != nil {
		return fmt.Errorf("agent rpc address %q: %w", c.RPCAddr, err)
	}
	for k := range c.Tags {
		if k == proto.TagRole || k == proto.TagNodeID || k == proto.TagRPC {
			return fmt.Errorf("agent tag %q is set by the agent itself", k)
		}
	}
	for ep, n := range c.Concurrency {
		if n < 1 {
			return fmt.Errorf("agent concurrency of %s is %d: want at least 1", ep, n)
		}
	}
	if c.DedupSize < 0 || c.DedupRetention < 0 || c.EventBuffer < 0 || c.MaxDeliveryWait < 0 {
		return errors.New("agent dedup size and retention, event buffer and max delivery wait must not be negative")
	}
	return nil
}

// Agent is one node daemon's messaging runtime.
type Agent struct {
	cfg    Config
	logger *slog.Logger
	server *rpc.Server
	client *rpc.Client

	// baseCtx is the parent of job and subscriber contexts; abort cancels it
	// when a shutdown runs out of time.
	baseCtx context.Context
	abort   context.CancelFunc
	// stopCh is closed when shutdown has finished waiting for jobs; it
	// releases deliveries still waiting for a result.
	stopCh chan struct{}
	wg     sync.WaitGroup // serve, serf loop, join, subscribers
	jobsWG sync.WaitGroup // running job handlers

	shutdownOnce sync.Once
	shutdownErr  error

	mu       sync.Mutex
	started  bool
	closing  bool
	aborted  bool
	listener net.Listener
	rpcAddr  string
	serf     *serf.Serf
	handlers map[string]map[string]JobHandler
	lanes    map[string]*lane
	jobs     map[string]*jobEntry
	finished *list.List // final entries, most recently used first
	settled  int        // jobs made final (for pruning by age)
	recorded atomic.Int64
	subs     map[*subscription]struct{}
	// members caches Members() until the next serf member event.
	members        []Member
	membersVersion uint64
	membersAt      uint64 // the version members was built at
	// interestSet caches interest() until the next serf member event.
	interestSet Interest
	interestAt  uint64
	interestOK  bool
	// baseTags are the serf tags but TagEvents; tagsMu orders tag updates.
	baseTags map[string]string
	tagsMu   sync.Mutex
}

// New validates cfg and builds an agent. Nothing listens until Start.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DedupSize == 0 {
		cfg.DedupSize = DefaultDedupSize
	}
	if cfg.DedupRetention == 0 {
		cfg.DedupRetention = DefaultDedupRetention
	}
	if cfg.EventBuffer == 0 {
		cfg.EventBuffer = DefaultEventBuffer
	}
	if cfg.MaxDeliveryWait == 0 {
		cfg.MaxDeliveryWait = DefaultMaxDeliveryWait
	}
	if cfg.CatchUp == 0 {
		cfg.CatchUp = DefaultCatchUp
	}
	base := cfg.Logger
	if base == nil {
		base = logging.Discard()
	}
	logger := slog.New(ctxHandler{base.Handler()}).With("node_id", cfg.NodeID)
	sec := cfg.Security.RPC
	if sec.Token == "" {
		sec.Token = cfg.Token
	}
	ctx, abort := context.WithCancel(context.Background())
	a := &Agent{
		cfg:      cfg,
		logger:   logger,
		server:   rpc.NewServer(rpc.ServerConfig{Security: sec, Logger: logger}),
		client:   rpc.NewClient(rpc.ClientConfig{Security: sec}),
		baseCtx:  ctx,
		abort:    abort,
		stopCh:   make(chan struct{}),
		handlers: map[string]map[string]JobHandler{},
		lanes:    map[string]*lane{},
		jobs:     map[string]*jobEntry{},
		finished: list.New(),
		subs:     map[*subscription]struct{}{},
	}
	if cfg.Finished != nil {
		if err := a.loadFinished(); err != nil {
			abort()
			return nil, fmt.Errorf("agent %s: %w", cfg.NodeID, err)
		}
	}
	ctl := proto.JobControl(cfg.NodeID)
	a.server.Register(ctl, proto.VerbJobStatus, rpc.Func(func(ctx context.Context, req proto.JobStatusRequest) (proto.JobResult, error) {
		return a.Status(req.JobID)
	}))
	a.server.Register(ctl, proto.VerbJobCancel, rpc.Func(func(ctx context.Context, req proto.JobCancelRequest) (proto.JobResult, error) {
		return a.Cancel(req.JobID)
	}))
	return a, nil
}

// Start listens for RPC, starts serf with the role, node_id and rpc tags, and
// joins cfg.Join in the background, retrying until a member answers
// (managers may start after their agents).
func (a *Agent) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started || a.closing {
		return errors.New("agent: Start called twice or after Shutdown")
	}
	l, err := net.Listen("tcp", a.cfg.RPCAddr)
	if err != nil {
		return fmt.Errorf("rpc listen %s: %w", a.cfg.RPCAddr, err)
	}
	rpcAddr, err := Advertise(l.Addr().String(), a.cfg.AdvertiseHost)
	if err != nil {
		l.Close()
		return fmt.Errorf("rpc advertise address: %w", err)
	}
	s, events, err := a.startSerf(rpcAddr)
	if err != nil {
		l.Close()
		return err
	}
	a.started, a.listener, a.rpcAddr, a.serf = true, l, rpcAddr, s
	a.wg.Add(2)
	go func() {
		defer a.wg.Done()
		if err := a.server.Serve(l); err != nil {
			a.logger.Error("rpc server stopped", "error", err)
		}
	}()
	go a.serfLoop(events)
	if len(a.cfg.Join) > 0 {
		a.wg.Add(1)
		go a.retryJoin(a.cfg.Join)
	}
	a.logger.Info("agent started", "role", a.cfg.Role, "rpc", rpcAddr, "serf", a.serfAddrLocked())
	return nil
}

func (a *Agent) startSerf(rpcAddr string) (*serf.Serf, chan serf.Event, error) {
	host, portStr, _ := net.SplitHostPort(a.cfg.SerfAddr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, fmt.Errorf("serf port %q: %w", portStr, err)
	}
	sc := serf.DefaultConfig()
	sc.NodeName = a.cfg.NodeID
	if a.cfg.FastGossip {
		sc.MemberlistConfig = memberlist.DefaultLocalConfig()
		FastGossip(sc)
	} else {
		sc.MemberlistConfig = memberlist.DefaultLANConfig()
	}
	if a.cfg.SerfTune != nil {
		a.cfg.SerfTune(sc)
	}
	sc.MemberlistConfig.BindAddr = host
	sc.MemberlistConfig.BindPort = port
	sc.MemberlistConfig.AdvertisePort = port // memberlist sets it when port is 0
	if adv, err := Advertise(a.cfg.SerfAddr, a.cfg.AdvertiseHost); err == nil {
		if advHost, _, err := net.SplitHostPort(adv); err == nil {
			sc.MemberlistConfig.AdvertiseAddr = advHost
		}
	}
	sc.MemberlistConfig.Logger = logging.StdLog(a.logger, "memberlist")
	sc.Logger = logging.StdLog(a.logger, "serf")
	a.cfg.Security.ConfigureSerf(sc)
	a.baseTags = map[string]string{
		proto.TagRole:   a.cfg.Role,
		proto.TagNodeID: a.cfg.NodeID,
		proto.TagRPC:    rpcAddr,
	}
	// The managers read the agent's own tags too (an hva's fence timeout).
	for k, v := range a.cfg.Tags {
		a.baseTags[k] = v
	}
	sc.Tags = maps.Clone(a.baseTags)
	sc.Tags[proto.TagEvents] = a.subscriptionTagLocked()
	var tr *packetTransport
	if a.cfg.FastGossip {
		// Loopback clusters run many members per process: packets get
		// buffers of their own size (transport.go).
		if tr, err = newPacketTransport(host, port); err != nil {
			return nil, nil, err
		}
		sc.MemberlistConfig.Transport = tr
	}
	events := make(chan serf.Event, 256)
	sc.EventCh = events
	s, err := serf.Create(sc)
	if err != nil {
		if tr != nil {
			tr.Shutdown()
		}
		return nil, nil, fmt.Errorf("start serf: %w", err)
	}
	return s, events, nil
}

// FastGossip tightens serf timers for loopback clusters (the same values as
// the manager's): failures are seen in about a second.
func FastGossip(sc *serf.Config) {
	m := sc.MemberlistConfig
	m.ProbeInterval = 200 * time.Millisecond
	m.ProbeTimeout = 100 * time.Millisecond
	m.GossipInterval = 50 * time.Millisecond
	m.SuspicionMult = 2
	m.PushPullInterval = 2 * time.Second
	m.TCPTimeout = 2 * time.Second
	// Loopback has no bandwidth to save: compressing every gossip packet
	// (an LZW writer per packet) was an eighth of the CPU of 50 agents in
	// one process.
	m.EnableCompression = false
	sc.ReconnectInterval = time.Second
	sc.ReconnectTimeout = time.Minute
	sc.TombstoneTimeout = time.Minute
	sc.ReapInterval = 5 * time.Second
	sc.LeavePropagateDelay = 100 * time.Millisecond
}

// CrowdGossip sets serf timers for a crowd of members sharing one machine
// (the benchmark's simulated datacenter: hundreds of agents in one process
// on loopback). FastGossip's timers cost a full state exchange every 2 s
// per member, and its 100 ms probe timeout declares live agents failed as
// soon as the CPU is saturated (and every false suspicion is broadcast and
// refuted, which costs more CPU: a storm). Here a member probes every 10 s
// with a 3 s timeout: at 500 members probing every 3 s, a start of all of
// them on 2 shared cores gave up to 280,000 accepted suspect messages and
// up to twice the alive messages of the joins (refutations), still going
// on after every member knew every other; every 10 s, none (bench/SCALE.md).
// The suspicion lasts SuspicionMult × log10(members) probe intervals (60 s
// at 500 members), it exchanges full state every 10 s (scaled up with the
// cluster's size by memberlist), gossips pending broadcasts to 4 members
// every 100 ms (nothing is sent when none are pending), and nothing is
// compressed. Every member handles every broadcast (user events included)
// RetransmitMult × log10(members) times, so it is kept low (the agents'
// catch-up, not gossip, makes joins known). A failed member is noticed in
// about a minute.
func CrowdGossip(sc *serf.Config) {
	m := sc.MemberlistConfig
	m.ProbeInterval = 10 * time.Second
	m.ProbeTimeout = 3 * time.Second
	m.GossipInterval = 100 * time.Millisecond
	m.GossipNodes = 4
	m.RetransmitMult = 2
	m.SuspicionMult = 2
	m.SuspicionMaxTimeoutMult = 4
	m.PushPullInterval = 10 * time.Second
	m.TCPTimeout = 5 * time.Second
	m.EnableCompression = false
	sc.ReconnectInterval = 5 * time.Second
	sc.ReapInterval = 15 * time.Second
	// Recent user events travel in every full state exchange; events are
	// best effort (receivers reconcile), so fewer are kept.
	sc.EventBuffer = 128
	sc.QueueDepthWarning = 4096
}

// retryJoin joins addrs, retrying with backoff until one member answers,
// then catches up.
func (a *Agent) retryJoin(addrs []string) {
	defer a.wg.Done()
	delay := 100 * time.Millisecond
	for {
		n, err := a.serf.Join(addrs, true)
		if err == nil || n > 0 {
			a.logger.Info("joined cluster", "contacted", n)
			a.catchUp(addrs)
			return
		}
		a.logger.Warn("join failed; retrying", "addrs", addrs, "error", err, "retry_in", delay)
		if !a.sleep(delay) {
			return
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

// catchUp exchanges full state with the join members again, one at a time
// in turn: cfg.CatchUp after the join, then again after cfg.CatchUp while
// the agent's member count grows (by the exchanges or by gossip), the
// wait doubling after each exchange that found no more members than the
// one before; it stops when the wait would exceed 16 × cfg.CatchUp (after
// about 30 quiet seconds at the default) or after maxCatchUps exchanges.
//
// A join is one state exchange with each member joined, so the agent
// starts out knowing what they knew at that instant. Agents that join
// after it (a datacenter starting at once) reach it only by gossip: each
// alive message travels in packets of about ten, every member
// retransmitting it RetransmitMult × log10(members) times (12 in the LAN
// profile at 500 members: a member needs 36 s to send its share of 500
// joins, 3 packets every 200 ms), and one it misses waits for memberlist's
// periodic exchange with a random member (PushPullInterval scaled up with
// the cluster: 30 s × 5 at 500 members). The managers learn every joiner
// first hand, so an exchange with one of them after the joins is what the
// agent lacks. In a running datacenter nothing is learned: five
// exchanges per agent start, none afterwards. memberlist's Join is the
// exchange without serf's join intent (a broadcast every member would
// retransmit) and without ignoring events (serf's ignoreOld would also
// drop events still in flight).
func (a *Agent) catchUp(addrs []string) {
	if a.cfg.CatchUp < 0 {
		return
	}
	ml := a.serf.Memberlist()
	targets := slices.Clone(addrs)
	wait, last := a.cfg.CatchUp, ml.NumMembers()
	for i := range maxCatchUps {
		if !a.sleep(wait) {
			return
		}
		k := i % len(targets)
		if n, err := ml.Join([]string{targets[k]}); err != nil && n == 0 {
			// A join member that is down is not tried again (each try
			// may cost a connect timeout), unless it is the last one.
			a.logger.Debug("catch-up state exchange failed", "addr", targets[k], "error", err)
			if len(targets) > 1 {
				targets = slices.Delete(targets, k, k+1)
			}
			continue
		}
		// Growth by gossip counts too: the cluster is still filling, and
		// the join members learn the joiners before gossip tells us.
		now := ml.NumMembers()
		if now > last {
			wait, last = a.cfg.CatchUp, now
			continue
		}
		if wait *= 2; wait > catchUpQuiet*a.cfg.CatchUp {
			return
		}
	}
}

// sleep waits d, or returns false when the agent stops first.
func (a *Agent) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.baseCtx.Done():
		return false
	case <-a.stopCh:
		return false
	case <-t.C:
		return true
	}
}

// serfLoop hands user events to subscribers until shutdown.
func (a *Agent) serfLoop(events <-chan serf.Event) {
	defer a.wg.Done()
	for {
		select {
		case <-a.stopCh:
			return
		case ev := <-events:
			switch e := ev.(type) {
			case serf.UserEvent:
				a.dispatchEvent(e)
			case serf.MemberEvent:
				a.mu.Lock()
				a.membersVersion++
				a.mu.Unlock()
				for _, m := range e.Members {
					a.logger.Debug("serf member event", "event", e.Type.String(), "member", m.Name)
				}
			}
		}
	}
}

// Shutdown stops the agent gracefully: new jobs are refused (errs.Unavailable)
// and queued ones are dropped (the dispatcher redelivers them later); running
// jobs may finish until ctx is done, after which their contexts are
// cancelled; then the agent leaves serf and stops its RPC server. It returns
// errs.Timeout if jobs had to be interrupted. Calling it again returns the
// first call's result.
func (a *Agent) Shutdown(ctx context.Context) error {
	a.shutdownOnce.Do(func() { a.shutdownErr = a.shutdown(ctx, true) })
	return a.shutdownErr
}

// Kill stops the agent the way a crash or a cut cable would, for fault
// injection: running jobs are cancelled at once, serf stops without
// leaving (the other members see the agent fail, not leave) and the RPC
// server closes.
func (a *Agent) Kill() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.shutdownOnce.Do(func() { a.shutdownErr = a.shutdown(ctx, false) })
}

func (a *Agent) shutdown(ctx context.Context, leave bool) error {
	a.mu.Lock()
	a.closing = true
	dropped := 0
	for _, ln := range a.lanes {
		for _, e := range ln.queue {
			a.dropLocked(e)
			dropped++
		}
		ln.queue = nil
	}
	a.mu.Unlock()
	a.logger.Info("agent shutting down", "dropped_queued_jobs", dropped)

	var result error
	idle := make(chan struct{})
	go func() { a.jobsWG.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-ctx.Done():
		a.mu.Lock()
		a.aborted = true
		n := 0
		for _, e := range a.jobs {
			if e.status == proto.JobRunning {
				n++
			}
		}
		a.mu.Unlock()
		a.abort()
		result = errs.New(errs.Timeout, "shutdown interrupted %d running jobs", n)
	}
	close(a.stopCh)

	a.mu.Lock()
	s, started := a.serf, a.started
	subs := a.subs
	a.subs = map[*subscription]struct{}{}
	a.mu.Unlock()
	for sub := range subs {
		sub.stop()
	}
	if started {
		if !leave {
			// Cut the RPC server first (ctx is done: no waiting for
			// calls): a killed agent answers nothing.
			_ = a.server.Shutdown(ctx)
		} else if err := s.Leave(); err != nil {
			a.logger.Warn("serf leave", "error", err)
		}
		if err := s.Shutdown(); err != nil {
			a.logger.Warn("serf shutdown", "error", err)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := a.server.Shutdown(sctx); err != nil {
			a.logger.Warn("rpc shutdown", "error", err)
		}
		cancel()
	}
	a.abort()
	a.wg.Wait()
	a.client.Close()
	a.logger.Info("agent stopped")
	return result
}

// Handle serves a plain (non-job) RPC verb on this agent.
func (a *Agent) Handle(endpoint, verb string, h rpc.Handler) {
	a.server.Register(endpoint, verb, h)
}

// Client is the agent's RPC client (it sends the cluster token).
func (a *Agent) Client() *rpc.Client { return a.client }

// Logger is the agent's logger. Records logged with a job's context (the
// ctx a JobHandler gets) carry job_id and resource_id.
func (a *Agent) Logger() *slog.Logger { return a.logger }

// NodeID is the agent's node id.
func (a *Agent) NodeID() string { return a.cfg.NodeID }

// Role is the agent's role.
func (a *Agent) Role() string { return a.cfg.Role }

// RPCAddr is the advertised RPC address ("" before Start).
func (a *Agent) RPCAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rpcAddr
}

// SerfAddr is the address other members join through ("" before Start).
func (a *Agent) SerfAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serfAddrLocked()
}

func (a *Agent) serfAddrLocked() string {
	if a.serf == nil {
		return ""
	}
	m := a.serf.LocalMember()
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}

// Member is a serf member as the agent sees it.
type Member struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"` // serf address
	Status string            `json:"status"`
	Role   string            `json:"role"`
	NodeID string            `json:"node_id"`
	RPC    string            `json:"rpc"`
	Tags   map[string]string `json:"tags"`
}

// Members lists the serf members this agent knows, sorted by name.
//
// The list is shared between callers (read it, do not change it) and
// rebuilt after a serf member event: the collector client looks the
// managers up for every call.
func (a *Agent) Members() []Member {
	a.mu.Lock()
	s := a.serf
	if a.members != nil && a.membersAt == a.membersVersion {
		out := a.members
		a.mu.Unlock()
		return out
	}
	v := a.membersVersion
	a.mu.Unlock()
	if s == nil {
		return nil
	}
	out := make([]Member, 0)
	for _, m := range s.Members() {
		out = append(out, Member{
			Name:   m.Name,
			Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
			Status: m.Status.String(),
			Role:   m.Tags[proto.TagRole],
			NodeID: m.Tags[proto.TagNodeID],
			RPC:    m.Tags[proto.TagRPC],
			Tags:   m.Tags,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	a.mu.Lock()
	a.members, a.membersAt = out, v
	a.mu.Unlock()
	return out
}

// NumAlive is the number of members alive in this agent's serf (itself
// included), without building Members' list.
func (a *Agent) NumAlive() int {
	a.mu.Lock()
	s := a.serf
	a.mu.Unlock()
	if s == nil {
		return 0
	}
	n := 0
	for _, m := range s.Members() {
		if m.Status == serf.StatusAlive {
			n++
		}
	}
	return n
}

// Advertise is bind with an unspecified host replaced by host (or the first
// non-loopback IPv4 address of this machine): the address others are told.
func Advertise(bind, host string) (string, error) {
	h, p, err := net.SplitHostPort(bind)
	if err != nil {
		return "", err
	}
	ip := net.ParseIP(h)
	if h != "" && (ip == nil || !ip.IsUnspecified()) {
		return bind, nil
	}
	if host == "" {
		host = DefaultAdvertiseHost()
	}
	return net.JoinHostPort(host, p), nil
}

// DefaultAdvertiseHost is the first non-loopback IPv4 address of this host,
// or 127.0.0.1 when it has none.
func DefaultAdvertiseHost() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}
