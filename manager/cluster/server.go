package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/hashicorp/serf/serf"
	"go.etcd.io/bbolt"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Serf tag names shared by every vdc daemon (DESIGN.md "Processes").
const (
	TagRole         = "role"
	TagNodeID       = "node_id"
	TagRaft         = "raft"
	TagAPI          = "api"
	TagRPC          = "rpc"
	TagExpect       = "expect"
	TagBootstrapped = "bootstrapped"

	RoleManager = "manager"
)

// Server is one manager's raft node, state machine and serf member.
type Server struct {
	cfg    Config
	logger *slog.Logger

	store     *state.Store
	fsm       *state.FSM
	logStore  *raftboltdb.BoltStore
	snapshots *raft.FileSnapshotStore
	trans     *raft.NetworkTransport
	transport drainedTransport // trans as raft uses it (acks for VerifyLeader)
	raft      *raft.Raft
	serf      *serf.Serf

	raftAddr string // advertised
	// members caches Members() until the next serf member event: the
	// dispatcher routes every job delivery through it.
	membersMu      sync.Mutex
	members        []Member
	membersVersion uint64
	membersAt      uint64 // the version members was built at
	// interestSet caches interest() until the next member event.
	interestSet agent.Interest
	interestAt  uint64
	interestOK  bool

	tagsMu sync.Mutex
	tags   map[string]string

	ready        atomic.Bool // leader with a committed barrier
	bootstrapped atomic.Bool

	verifyMu      sync.Mutex
	verifyWaiters []chan error
	verifyRunning bool

	reconcileCh chan struct{}
	shutdownCh  chan struct{}
	shutdown    sync.Once
	wg          sync.WaitGroup
}

// New opens the data dir, starts raft and serf, and joins cfg.Join.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	s := &Server{
		cfg:         cfg,
		logger:      logger.With("component", "cluster"),
		reconcileCh: make(chan struct{}, 1),
		shutdownCh:  make(chan struct{}),
	}
	if err := s.setupRaft(); err != nil {
		s.closeStores()
		return nil, err
	}
	if err := s.setupSerf(); err != nil {
		s.Shutdown()
		return nil, err
	}
	s.wg.Add(2)
	go s.leaderLoop()
	go s.reconcileLoop()
	if len(cfg.Join) > 0 {
		s.wg.Add(1)
		go s.retryJoin(cfg.Join)
	}
	return s, nil
}

// retryJoin joins the given members, retrying until one answers: managers
// started together must not depend on their start order.
func (s *Server) retryJoin(addrs []string) {
	defer s.wg.Done()
	delay := 100 * time.Millisecond
	for {
		n, err := s.serf.Join(addrs, true)
		if err == nil || n > 0 {
			return
		}
		s.logger.Warn("join failed; retrying", "addrs", addrs, "error", err, "retry_in", delay)
		select {
		case <-s.shutdownCh:
			return
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

// logCacheEntries is how many of the newest raft log entries stay in
// memory: more than one full batch (MaxAppendEntries 512) per follower.
const logCacheEntries = 2048

func (s *Server) setupRaft() error {
	var err error
	s.store, err = state.Open(filepath.Join(s.cfg.DataDir, "state.db"))
	if err != nil {
		return err
	}
	s.fsm = state.NewFSM(s.store, s.logger)
	s.logStore, err = raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(s.cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: 5 * time.Second, FreelistType: bbolt.FreelistMapType, NoFreelistSync: true},
	})
	if err != nil {
		return fmt.Errorf("raft log store: %w", err)
	}
	s.snapshots, err = raft.NewFileSnapshotStoreWithLogger(s.cfg.DataDir, 2,
		logging.HCLog(s.logger, "raft-snap", s.cfg.RaftLogLevel))
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	if err := s.catchUpFromSnapshot(); err != nil {
		return err
	}

	s.raftAddr, err = agent.Advertise(s.cfg.RaftAddr, s.cfg.AdvertiseHost)
	if err != nil {
		return fmt.Errorf("raft address: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", s.raftAddr)
	if err != nil {
		return fmt.Errorf("raft advertise address: %w", err)
	}
	netLog := logging.HCLog(s.logger, "raft-net", s.cfg.RaftLogLevel)
	if id := s.cfg.Security.RPC.TLS; id != nil {
		stream, err := newTLSStream(s.cfg.RaftAddr, adv, id)
		if err != nil {
			return err
		}
		s.trans = raft.NewNetworkTransportWithLogger(stream, 8, 10*time.Second, netLog)
	} else {
		s.trans, err = raft.NewTCPTransportWithLogger(s.cfg.RaftAddr, adv, 8, 10*time.Second, netLog)
		if err != nil {
			return fmt.Errorf("raft transport: %w", err)
		}
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeName)
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = s.cfg.CommitTimeout
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.TrailingLogs = s.cfg.TrailingLogs
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true
	// state.db persists applied entries itself; restoring the last snapshot at
	// every start would only rewind it (catchUpFromSnapshot covers a lost state.db).
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = logging.HCLog(s.logger, "raft", s.cfg.RaftLogLevel)
	// The leader reads back every entry it just wrote to send it to the
	// followers (and the FSM reads it again): from bbolt that is a page walk
	// and a msgpack decode per entry, a tenth of the CPU of a 3-manager
	// write. The cache keeps the newest entries in memory.
	logs, err := raft.NewLogCache(logCacheEntries, s.logStore)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	s.transport = newDrainedTransport(s.trans)
	s.raft, err = raft.NewRaft(rc, s.fsm, logs, s.logStore, s.snapshots, s.transport)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}

	hasState, err := raft.HasExistingState(s.logStore, s.logStore, s.snapshots)
	if err != nil {
		return fmt.Errorf("raft state: %w", err)
	}
	switch {
	case hasState:
		s.bootstrapped.Store(true)
	case s.cfg.BootstrapExpect == 1:
		f := s.raft.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: raft.ServerAddress(s.raftAddr), Suffrage: raft.Voter,
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("bootstrap: %w", err)
		}
		s.bootstrapped.Store(true)
	}
	return nil
}

// catchUpFromSnapshot restores the newest snapshot when state.db is behind it
// (state.db lost or replaced); raft then replays the log after the snapshot.
func (s *Server) catchUpFromSnapshot() error {
	metas, err := s.snapshots.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	if metas[0].Index <= s.store.LastIndex() {
		return nil
	}
	_, rc, err := s.snapshots.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", metas[0].ID, err)
	}
	s.logger.Info("state.db is behind the newest snapshot; restoring", "snapshot_index", metas[0].Index)
	return s.fsm.Restore(rc)
}

func (s *Server) setupSerf() error {
	host, portStr, err := net.SplitHostPort(s.cfg.SerfAddr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return fmt.Errorf("serf port: %w", err)
	}
	sc := serf.DefaultConfig()
	sc.NodeName = s.cfg.NodeName
	if s.cfg.FastGossip {
		sc.MemberlistConfig = memberlist.DefaultLocalConfig()
		agent.FastGossip(sc)
	} else {
		sc.MemberlistConfig = memberlist.DefaultLANConfig()
	}
	if s.cfg.SerfTune != nil {
		s.cfg.SerfTune(sc)
	}
	sc.MemberlistConfig.BindAddr = host
	sc.MemberlistConfig.BindPort = port
	if advHost, _, err := net.SplitHostPort(mustAdvertise(s.cfg.SerfAddr, s.cfg.AdvertiseHost)); err == nil {
		sc.MemberlistConfig.AdvertiseAddr = advHost
	}
	sc.MemberlistConfig.AdvertisePort = port
	sc.MemberlistConfig.Logger = logging.StdLog(s.logger, "memberlist")
	sc.Logger = logging.StdLog(s.logger, "serf")
	s.cfg.Security.ConfigureSerf(sc)
	sc.SnapshotPath = filepath.Join(s.cfg.DataDir, "serf.snapshot")
	sc.RejoinAfterLeave = true
	s.tags = map[string]string{
		TagRole:         RoleManager,
		TagNodeID:       "dcmgr." + s.cfg.NodeName,
		TagRaft:         s.raftAddr,
		TagAPI:          s.cfg.APIAddr,
		TagExpect:       strconv.Itoa(s.cfg.BootstrapExpect),
		TagBootstrapped: boolTag(s.bootstrapped.Load()),
		// Managers subscribe to no event: publishers need not send them any.
		proto.TagEvents: "",
	}
	if s.cfg.RPCAddr != "" {
		s.tags[TagRPC] = s.cfg.RPCAddr
	}
	sc.Tags = copyTags(s.tags)
	ch := make(chan serf.Event, 256)
	sc.EventCh = ch
	s.serf, err = serf.Create(sc)
	if err != nil {
		return fmt.Errorf("start serf: %w", err)
	}
	s.wg.Add(1)
	go s.serfLoop(ch)
	return nil
}

func mustAdvertise(bind, host string) string {
	a, err := agent.Advertise(bind, host)
	if err != nil {
		return bind
	}
	return a
}

func boolTag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func copyTags(t map[string]string) map[string]string {
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

func (s *Server) setTag(k, v string) {
	s.tagsMu.Lock()
	defer s.tagsMu.Unlock()
	if s.tags[k] == v {
		return
	}
	s.tags[k] = v
	if err := s.serf.SetTags(copyTags(s.tags)); err != nil {
		s.logger.Warn("update serf tags", "error", err)
	}
}

func (s *Server) serfLoop(ch <-chan serf.Event) {
	defer s.wg.Done()
	for {
		select {
		case <-s.shutdownCh:
			return
		case ev := <-ch:
			if _, ok := ev.(serf.MemberEvent); ok {
				s.membersMu.Lock()
				s.membersVersion++
				s.membersMu.Unlock()
				s.maybeBootstrap()
				s.triggerReconcile()
			}
		}
	}
}

// maybeBootstrap forms a new cluster once BootstrapExpect managers that all
// expect the same number see each other and none of them is part of a cluster
// already (a late joiner must be added by the leader, not start its own).
func (s *Server) maybeBootstrap() {
	if s.bootstrapped.Load() || s.cfg.BootstrapExpect <= 1 {
		return
	}
	var servers []raft.Server
	for _, m := range s.serf.Members() {
		if m.Tags[TagRole] != RoleManager || m.Status != serf.StatusAlive {
			continue
		}
		if m.Tags[TagBootstrapped] == "1" {
			s.logger.Info("a cluster exists already; waiting to be added by its leader", "member", m.Name)
			s.bootstrapped.Store(true)
			return
		}
		if m.Tags[TagExpect] != strconv.Itoa(s.cfg.BootstrapExpect) {
			continue
		}
		servers = append(servers, raft.Server{
			ID: raft.ServerID(m.Name), Address: raft.ServerAddress(m.Tags[TagRaft]), Suffrage: raft.Voter,
		})
	}
	if len(servers) < s.cfg.BootstrapExpect {
		return
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	s.logger.Info("bootstrapping raft cluster", "servers", len(servers))
	if err := s.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil &&
		!errors.Is(err, raft.ErrCantBootstrap) {
		s.logger.Error("bootstrap", "error", err)
		return
	}
	s.bootstrapped.Store(true)
	s.setTag(TagBootstrapped, "1")
}

func (s *Server) triggerReconcile() {
	select {
	case s.reconcileCh <- struct{}{}:
	default:
	}
}

// leaderLoop tracks leadership: a new leader commits a barrier first, so that
// everything committed by earlier terms is applied before it serves reads.
func (s *Server) leaderLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.shutdownCh:
			return
		case isLeader := <-s.raft.LeaderCh():
			s.ready.Store(false)
			if !isLeader {
				continue
			}
			if !s.establishLeadership() {
				continue
			}
			if s.raft.State() == raft.Leader {
				s.ready.Store(true)
				s.bootstrapped.Store(true)
				s.setTag(TagBootstrapped, "1")
				s.logger.Info("leadership established", "index", s.store.LastIndex())
				s.triggerReconcile()
			}
		}
	}
}

// establishLeadership commits a barrier, retrying while this node still leads.
func (s *Server) establishLeadership() bool {
	for s.raft.State() == raft.Leader {
		err := s.raft.Barrier(s.cfg.ApplyTimeout).Error()
		if err == nil {
			return true
		}
		s.logger.Warn("leader barrier failed", "error", err)
		select {
		case <-s.shutdownCh:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return false
}

func (s *Server) reconcileLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-s.shutdownCh:
			return
		case <-t.C:
		case <-s.reconcileCh:
		}
		if s.bootstrapped.Load() {
			s.setTag(TagBootstrapped, "1")
		}
		if s.IsLeader() {
			s.reconcileMembers()
		}
	}
}

// reconcileMembers makes raft's voters follow serf: alive managers are added,
// managers that left gracefully are removed. Failed ones stay voters, so a
// crashed manager keeps its seat and catches up when it returns.
func (s *Server) reconcileMembers() {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return
	}
	inRaft := map[raft.ServerID]raft.ServerAddress{}
	for _, srv := range f.Configuration().Servers {
		inRaft[srv.ID] = srv.Address
	}
	for _, m := range s.serf.Members() {
		if m.Tags[TagRole] != RoleManager || m.Name == s.cfg.NodeName {
			continue
		}
		id := raft.ServerID(m.Name)
		addr := raft.ServerAddress(m.Tags[TagRaft])
		switch m.Status {
		case serf.StatusAlive:
			if cur, ok := inRaft[id]; !ok || cur != addr {
				s.logger.Info("adding manager to raft", "member", m.Name, "addr", addr)
				if err := s.raft.AddVoter(id, addr, 0, s.cfg.ApplyTimeout).Error(); err != nil {
					s.logger.Warn("add voter", "member", m.Name, "error", err)
				}
			}
		case serf.StatusLeft:
			if _, ok := inRaft[id]; ok {
				s.logger.Info("removing manager that left", "member", m.Name)
				if err := s.raft.RemoveServer(id, 0, s.cfg.ApplyTimeout).Error(); err != nil {
					s.logger.Warn("remove server", "member", m.Name, "error", err)
				}
			}
		}
	}
}

// Apply proposes a command and returns its result. It must run on the leader;
// elsewhere it fails with errs.NoLeader and the caller forwards or retries.
// An error after the entry was handed to raft (leadership lost, timeout)
// means the outcome is unknown, as with any replicated write.
func (s *Server) Apply(ctx context.Context, t state.CommandType, body any) (any, error) {
	data, err := state.Encode(t, body)
	if err != nil {
		return nil, err
	}
	if s.raft.State() != raft.Leader {
		return nil, errs.New(errs.NoLeader, "this manager is not the leader")
	}
	timeout := s.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	f := s.raft.Apply(data, timeout)
	// raft's own timeout covers only enqueueing; a future can stay pending
	// across a leader shutdown, so never wait on it unbounded.
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err = <-done:
	case <-timer.C:
		return nil, errs.New(errs.Timeout, "raft apply timed out; the write may or may not have been applied")
	case <-ctx.Done():
		return nil, errs.Wrap(errs.Timeout, ctx.Err(), "request cancelled while waiting for raft")
	}
	if err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
			errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown):
			return nil, errs.Wrap(errs.NoLeader, err, "leadership changed while writing; retry")
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, errs.Wrap(errs.Timeout, err, "raft is overloaded")
		}
		// Any other error is this leader failing to write its own log (a
		// full or failing disk): raft answers it before replicating the
		// entry and steps down, so another manager can take the write.
		// Callers retry NoLeader; an internal error would end an agent's
		// job half done (an hva left its instance in starting for good).
		return nil, errs.Wrap(errs.NoLeader, err, "the leader could not write its raft log and stepped down; retry")
	}
	if rerr, ok := f.Response().(error); ok {
		return nil, rerr
	}
	return f.Response(), nil
}

// IsLeader reports whether this manager leads and has applied everything
// committed before its term.
func (s *Server) IsLeader() bool {
	return s.ready.Load() && s.raft.State() == raft.Leader
}

// VerifyLeader confirms with a quorum that this manager still leads, so a
// deposed leader in a partition cannot serve a stale read as current.
// Concurrent callers share one round: a caller joins the next round that
// starts after it arrived, which keeps reads linearizable at one heartbeat
// round per batch instead of one per read.
func (s *Server) VerifyLeader(ctx context.Context) error {
	if !s.IsLeader() {
		return errs.New(errs.NoLeader, "this manager is not the leader")
	}
	ch := make(chan error, 1)
	s.verifyMu.Lock()
	s.verifyWaiters = append(s.verifyWaiters, ch)
	if !s.verifyRunning {
		s.verifyRunning = true
		go s.verifyRounds()
	}
	s.verifyMu.Unlock()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return errs.Wrap(errs.Timeout, ctx.Err(), "request cancelled")
	}
}

func (s *Server) verifyRounds() {
	for {
		s.verifyMu.Lock()
		batch := s.verifyWaiters
		s.verifyWaiters = nil
		if len(batch) == 0 {
			s.verifyRunning = false
			s.verifyMu.Unlock()
			return
		}
		s.verifyMu.Unlock()
		err := s.verifyOnce()
		for _, ch := range batch {
			ch <- err
		}
	}
}

// verifyOnce confirms leadership for every read that arrived before it
// started: raft's check triggers a heartbeat round, and it counts only once
// a quorum acknowledged a request sent after start (see peerAcks). A round
// satisfied by older answers is repeated; each sends fresh heartbeats.
func (s *Server) verifyOnce() error {
	start := time.Now()
	timeout := time.NewTimer(s.cfg.ApplyTimeout)
	defer timeout.Stop()
	wait := func(f raft.Future) error {
		done := make(chan error, 1)
		go func() { done <- f.Error() }()
		select {
		case err := <-done:
			if err != nil {
				return errs.Wrap(errs.NoLeader, err, "leadership could not be confirmed")
			}
			return nil
		case <-timeout.C:
			return errs.New(errs.NoLeader, "leadership could not be confirmed in time")
		case <-s.shutdownCh:
			return errs.New(errs.NoLeader, "manager is shutting down")
		}
	}
	cf := s.raft.GetConfiguration()
	if err := wait(cf); err != nil {
		return err
	}
	var voters []raft.ServerID
	for _, srv := range cf.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters = append(voters, srv.ID)
		}
	}
	for {
		if err := wait(s.raft.VerifyLeader()); err != nil {
			return err
		}
		if s.transport.acks.quorumSince(raft.ServerID(s.cfg.NodeName), voters, start) {
			return nil
		}
	}
}

// LeaderAPI returns the API address of the current leader.
func (s *Server) LeaderAPI() (string, error) {
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return "", errs.New(errs.NoLeader, "no cluster leader is known")
	}
	if string(id) == s.cfg.NodeName {
		s.tagsMu.Lock()
		defer s.tagsMu.Unlock()
		return s.cfg.APIAddr, nil
	}
	for _, m := range s.serf.Members() {
		if m.Name == string(id) && m.Tags[TagAPI] != "" {
			return m.Tags[TagAPI], nil
		}
	}
	return "", errs.New(errs.NoLeader, "leader %s has no known API address", id)
}

// Store is the local state (reads only; writes go through Apply).
func (s *Server) Store() *state.Store { return s.store }

// FSM is the state machine (for leader loops that watch applies).
func (s *Server) FSM() *state.FSM { return s.fsm }

// Serf is the local serf member.
func (s *Server) Serf() *serf.Serf { return s.serf }

// Publish sends a fan-out event (a serf user event, encoded as agents
// encode theirs) to every member's subscribers. Best effort: receivers
// reconcile from the state, so a lost event is repaired by their next
// periodic pass.
func (s *Server) Publish(ctx context.Context, ev proto.Event) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, "publish "+ev.Name)
	}
	name, payload, err := agent.EncodeEvent(ev)
	if err != nil {
		return err
	}
	if !s.interest().Wants(ev.Name) {
		// No member subscribes to it (common/agent/interest.go).
		return nil
	}
	if err := s.serf.UserEvent(name, payload, false); err != nil {
		return fmt.Errorf("publish %s: %w", ev.Name, err)
	}
	return nil
}

// interest is what the serf members subscribe to, read again after a
// member event.
func (s *Server) interest() agent.Interest {
	s.membersMu.Lock()
	v := s.membersVersion
	if s.interestOK && s.interestAt == v {
		in := s.interestSet
		s.membersMu.Unlock()
		return in
	}
	s.membersMu.Unlock()
	in := agent.NewInterest(s.cfg.NodeName, s.serf.Members())
	s.membersMu.Lock()
	s.interestSet, s.interestAt, s.interestOK = in, v, true
	s.membersMu.Unlock()
	return in
}

// NodeName is this manager's name.
func (s *Server) NodeName() string { return s.cfg.NodeName }

// RaftAddr is the advertised raft address.
func (s *Server) RaftAddr() string { return s.raftAddr }

// SerfAddr is the address others join through.
func (s *Server) SerfAddr() string {
	m := s.serf.LocalMember()
	return net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
}

// Member is a serf member as shown to operators.
type Member struct {
	Name   string            `json:"name"`
	Addr   string            `json:"addr"`
	Status string            `json:"status"`
	Tags   map[string]string `json:"tags"`
}

// Members lists serf members.
// The list is shared between callers (read it, do not change it) and
// rebuilt after a serf member event.
func (s *Server) Members() []Member {
	s.membersMu.Lock()
	v := s.membersVersion
	if s.members != nil && s.membersAt == v {
		out := s.members
		s.membersMu.Unlock()
		return out
	}
	s.membersMu.Unlock()
	out := make([]Member, 0)
	for _, m := range s.serf.Members() {
		out = append(out, Member{
			Name:   m.Name,
			Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
			Status: m.Status.String(),
			Tags:   m.Tags,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	s.membersMu.Lock()
	s.members, s.membersAt = out, v
	s.membersMu.Unlock()
	return out
}

// MembersVersion changes after every serf member event: a list derived
// from Members() stays valid while it is the same.
func (s *Server) MembersVersion() uint64 {
	s.membersMu.Lock()
	defer s.membersMu.Unlock()
	return s.membersVersion
}

// Peer is a raft server as shown to operators.
type Peer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// Peers lists raft servers.
func (s *Server) Peers() ([]Peer, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	_, leader := s.raft.LeaderWithID()
	var out []Peer
	for _, srv := range f.Configuration().Servers {
		out = append(out, Peer{
			ID: string(srv.ID), Address: string(srv.Address),
			Suffrage: srv.Suffrage.String(), Leader: srv.ID == leader,
		})
	}
	return out, nil
}

// Stats are a few raft figures for status pages.
func (s *Server) Stats() map[string]string {
	st := s.raft.Stats()
	_, leader := s.raft.LeaderWithID()
	return map[string]string{
		"state":         s.raft.State().String(),
		"leader":        string(leader),
		"term":          st["term"],
		"commit_index":  st["commit_index"],
		"applied_index": strconv.FormatUint(s.store.LastIndex(), 10),
		"num_peers":     st["num_peers"],
	}
}

// Snapshot takes a raft snapshot now (tests and operators).
func (s *Server) Snapshot() error { return s.raft.Snapshot().Error() }

// Leave hands leadership over if this node leads, leaves serf gracefully so the
// leader removes it from raft, and waits (bounded) until that happened.
func (s *Server) Leave(ctx context.Context) error {
	if s.raft.State() == raft.Leader {
		if err := s.raft.LeadershipTransfer().Error(); err != nil {
			s.logger.Warn("leadership transfer before leave", "error", err)
		}
	}
	if err := s.serf.Leave(); err != nil {
		return fmt.Errorf("serf leave: %w", err)
	}
	for {
		f := s.raft.GetConfiguration()
		if f.Error() == nil {
			found := false
			for _, srv := range f.Configuration().Servers {
				found = found || string(srv.ID) == s.cfg.NodeName
			}
			if !found {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errs.Wrap(errs.Timeout, ctx.Err(), "not removed from raft in time")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Shutdown stops serf and raft without leaving: the others see this manager
// fail and keep its raft seat for when it returns.
func (s *Server) Shutdown() {
	s.shutdown.Do(func() {
		close(s.shutdownCh)
		if s.serf != nil {
			_ = s.serf.Shutdown()
		}
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				s.logger.Warn("raft shutdown", "error", err)
			}
		}
		if s.trans != nil {
			_ = s.trans.Close()
		}
		s.wg.Wait()
		s.closeStores()
	})
}

func (s *Server) closeStores() {
	if s.logStore != nil {
		_ = s.logStore.Close()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
}

// SetRPCAddr changes the advertised agent RPC address.
func (s *Server) SetRPCAddr(addr string) { s.setTag(TagRPC, addr) }

// SetAPIAddr changes the advertised API address (when the listener picked
// its port after the server started).
func (s *Server) SetAPIAddr(addr string) {
	s.tagsMu.Lock()
	s.cfg.APIAddr = addr
	s.tagsMu.Unlock()
	s.setTag(TagAPI, addr)
}
