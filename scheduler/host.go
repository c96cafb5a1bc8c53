package scheduler

import (
	"cmp"
	"slices"
)

// HostScheduler chooses the host node for an instance. The returned pointer
// points into v.Hosts so that Plan can charge the request to it.
type HostScheduler interface {
	ScheduleHost(v *View, r *Request) (*Host, error)
}

// OverCommitScheduler is implemented by host schedulers that can place an
// instance ignoring capacity; evacuation (HA) uses it so that a failed host's
// instances restart somewhere even on a full cluster.
type OverCommitScheduler interface {
	ScheduleOverCommit(v *View, r *Request) (*Host, error)
}

// compatible is the candidate test shared by the schedulers that filter on
// architecture and hypervisor.
func compatible(h *Host, r *Request) bool {
	return h.Online && h.SchedulingEnabled && h.Arch == r.Arch && h.Hypervisor == r.Hypervisor
}

func errNoHost(r *Request) error {
	return newErr(KindHostNode, "Unable to find a suitable host node for %s %s", r.Arch, r.Hypervisor)
}

// FindFirst places on the first host, in record order, that is online, runs
// the request's arch and hypervisor, and has room. The original took the first
// host_nodes row with no filter at all, offline or full (spec §9); that only
// ever worked on one-host demo setups, so the filters of LeastUsage apply.
type FindFirst struct{}

// ScheduleHost implements HostScheduler.
func (FindFirst) ScheduleHost(v *View, r *Request) (*Host, error) {
	n := needOf(r)
	for i := range v.Hosts {
		h := &v.Hosts[i]
		if compatible(h, r) && h.fits(n) {
			return h, nil
		}
	}
	return nil, errNoHost(r)
}

// SortPriority is the resource LeastUsage balances on.
type SortPriority int

// Sort priorities (dcmgr.conf sort_priority :memory / :cpu).
const (
	SortMemory SortPriority = iota // the default
	SortCPU
)

// LeastUsage places on the compatible online host with the most available
// memory (or cores) that still fits the request.
//
// The original sorted every candidate and took the first that fit; the
// largest available amount among the fitting hosts is the same host (ties go
// to the earlier host in record order), found by one pass with no allocation,
// which is what keeps a decision over 10,000 hosts in the microseconds.
type LeastUsage struct {
	SortPriority SortPriority
}

// ScheduleHost implements HostScheduler.
func (s LeastUsage) ScheduleHost(v *View, r *Request) (*Host, error) {
	if h := s.best(v, r, true); h != nil {
		return h, nil
	}
	return nil, errNoHost(r)
}

// ScheduleOverCommit implements OverCommitScheduler: the host that would come
// first in LeastUsage's order, whether or not the request fits.
func (s LeastUsage) ScheduleOverCommit(v *View, r *Request) (*Host, error) {
	if h := s.best(v, r, false); h != nil {
		return h, nil
	}
	return nil, errNoHost(r)
}

// best returns the compatible host with the largest key (available memory or
// cores), the earliest on ties, among the hosts that fit (checkFit) or all.
//
// It runs in two passes because the string compares of arch and hypervisor
// cost more than everything else of a host's test together (a runtime call
// each). The first pass finds the best host by integers and flags alone; in
// the usual cluster, where the arch and hypervisor mix is uniform, that host
// is compatible and one string check settles it. Otherwise a second pass
// checks everything. Both passes skip a host that cannot beat the best so far
// before any other test, so a typical scan reads two integers per host.
func (s LeastUsage) best(v *View, r *Request, checkFit bool) *Host {
	n := needOf(r)
	byCPU := s.SortPriority == SortCPU
	hosts := v.Hosts
	var best *Host
	var bestKey int64
	for i := range hosts {
		h := &hosts[i]
		key := h.OfferingMemoryMB - h.UsedMemoryMB
		if byCPU {
			key = h.OfferingCPUCores - h.UsedCPU
		}
		if (best != nil && key <= bestKey) || !h.Online || !h.SchedulingEnabled || (checkFit && !h.fits(n)) {
			continue
		}
		best, bestKey = h, key
	}
	if best == nil || (best.Arch == r.Arch && best.Hypervisor == r.Hypervisor) {
		return best
	}
	best = nil
	for i := range hosts {
		h := &hosts[i]
		key := h.OfferingMemoryMB - h.UsedMemoryMB
		if byCPU {
			key = h.OfferingCPUCores - h.UsedCPU
		}
		if (best != nil && key <= bestKey) || !h.Online || !h.SchedulingEnabled || (checkFit && !h.fits(n)) ||
			h.Arch != r.Arch || h.Hypervisor != r.Hypervisor {
			continue
		}
		best, bestKey = h, key
	}
	return best
}

// ExcludeSame is an HA scheduler: the first compatible online host other than
// the one the instance is on now. Like the original it does not check
// capacity, since it serves evacuation, where a running instance beats a full
// host; the leader's capacity check still applies to the resulting plan.
type ExcludeSame struct{}

// ScheduleHost implements HostScheduler.
func (ExcludeSame) ScheduleHost(v *View, r *Request) (*Host, error) {
	for i := range v.Hosts {
		h := &v.Hosts[i]
		if compatible(h, r) && h.ID != r.CurrentHostID {
			return h, nil
		}
	}
	return nil, errNoHost(r)
}

// ScheduleOverCommit implements OverCommitScheduler; ExcludeSame never checks
// capacity anyway.
func (s ExcludeSame) ScheduleOverCommit(v *View, r *Request) (*Host, error) {
	return s.ScheduleHost(v, r)
}

// SpecifyNode places on the host named by request_params host_id,
// host_pool_id or host_node_id (first set wins, as in the original). The host
// must exist and be online with scheduling enabled. It must also fit: the
// original did not check, but the leader rejects an over-capacity plan, and
// failing here names the cause.
type SpecifyNode struct{}

// ScheduleHost implements HostScheduler.
func (SpecifyNode) ScheduleHost(v *View, r *Request) (*Host, error) {
	var id string
	for _, k := range [...]string{"host_id", "host_pool_id", "host_node_id"} {
		if id = r.param(k); id != "" {
			break
		}
	}
	if id == "" {
		return nil, newErr(KindHostNode, "No host node specified in request_params (host_node_id)")
	}
	h := v.host(id)
	if h == nil {
		return nil, newErr(KindHostNode, "Unknown host node: %s", id)
	}
	if !h.schedulable() {
		return nil, newErr(KindHostNode, "Host node %s is not online or not enabled for scheduling", id)
	}
	if !h.fits(needOf(r)) {
		return nil, newErr(KindHostNode, "Host node %s has not enough capacity for the instance", id)
	}
	return h, nil
}

// HostRule is one stage of PipedRules: Filter narrows the candidates (the SQL
// filter of the original), Reorder sorts them stably (the array reorder).
// A rule that only filters returns its input from Reorder unchanged, and the
// other way round.
type HostRule interface {
	Filter(v *View, r *Request, hosts []*Host) ([]*Host, error)
	Reorder(r *Request, hosts []*Host)
}

// DefaultMaxResults is PipedRules' max_results default.
const DefaultMaxResults = 100

// PipedRules runs the candidates through configured rules and takes the first
// survivor. Order of stages:
//
//  1. the implicit Common rule: online hosts with scheduling enabled and the
//     request's hypervisor and arch. The original did not check arch
//     (spec §9), which could put an instance on a host that cannot run its
//     image; here it does.
//  2. every rule's Filter, in order;
//  3. capacity (the Common rule's reorder: cores and memory fit);
//  4. the first MaxResults hosts;
//  5. every rule's Reorder, in order.
//
// The original applied the max_results LIMIT before the capacity check, so
// with more than max_results candidates it could fail while hosts further
// down had room; checking capacity first keeps the bound on sorting work
// without that failure.
type PipedRules struct {
	MaxResults int // <= 0 means DefaultMaxResults
	Rules      []HostRule
}

// ScheduleHost implements HostScheduler.
func (p *PipedRules) ScheduleHost(v *View, r *Request) (*Host, error) {
	cands := make([]*Host, 0, len(v.Hosts))
	for i := range v.Hosts {
		if h := &v.Hosts[i]; compatible(h, r) {
			cands = append(cands, h)
		}
	}
	var err error
	for _, rule := range p.Rules {
		if cands, err = rule.Filter(v, r, cands); err != nil {
			return nil, err
		}
	}
	n := needOf(r)
	cands = slices.DeleteFunc(cands, func(h *Host) bool { return !h.fits(n) })
	limit := p.MaxResults
	if limit <= 0 {
		limit = DefaultMaxResults
	}
	if len(cands) > limit {
		cands = cands[:limit]
	}
	for _, rule := range p.Rules {
		rule.Reorder(r, cands)
	}
	if len(cands) == 0 {
		return nil, newErr(KindHostNode, "No suitable host node found after piping through all rules.")
	}
	return cands[0], nil
}

// UsageKey is what LeastUsageBy sums over a host's instances.
type UsageKey int

// Usage keys (dcmgr.conf key :cpu_cores / :memory_size / :quota_weight).
const (
	UsageCPUCores UsageKey = iota // the default
	UsageMemorySize
	UsageQuotaWeight
)

// LeastUsageBy orders hosts by ascending total of Key over their alive
// instances; ties keep the previous order.
type LeastUsageBy struct{ Key UsageKey }

// Filter implements HostRule; this rule only reorders.
func (LeastUsageBy) Filter(_ *View, _ *Request, hosts []*Host) ([]*Host, error) { return hosts, nil }

// Reorder implements HostRule.
func (l LeastUsageBy) Reorder(_ *Request, hosts []*Host) {
	sortHostsBy(hosts, func(h *Host) float64 {
		switch l.Key {
		case UsageMemorySize:
			return float64(h.UsedMemoryMB)
		case UsageQuotaWeight:
			var w float64
			for _, in := range h.Instances {
				w += in.QuotaWeight
			}
			return w
		}
		return float64(h.UsedCPU)
	})
}

// ScatterBy orders hosts by ascending number of alive instances of the
// requesting account, spreading an account's instances over hosts. The
// original's column option only ever named account_id, the one column kept.
type ScatterBy struct{}

// Filter implements HostRule; this rule only reorders.
func (ScatterBy) Filter(_ *View, _ *Request, hosts []*Host) ([]*Host, error) { return hosts, nil }

// Reorder implements HostRule.
func (ScatterBy) Reorder(r *Request, hosts []*Host) {
	sortHostsBy(hosts, func(h *Host) float64 {
		c := 0
		for _, in := range h.Instances {
			if in.AccountID == r.AccountID {
				c++
			}
		}
		return float64(c)
	})
}

// sortHostsBy stable-sorts hosts by an ascending key computed once per host.
func sortHostsBy(hosts []*Host, key func(*Host) float64) {
	type kh struct {
		k float64
		h *Host
	}
	ks := make([]kh, len(hosts))
	for i, h := range hosts {
		ks[i] = kh{key(h), h}
	}
	slices.SortStableFunc(ks, func(a, b kh) int { return cmp.Compare(a.k, b.k) })
	for i := range ks {
		hosts[i] = ks[i].h
	}
}

// HostRequestParamToGroup keeps the hosts of one host node group: the group
// paired with request_params[Key], else Default.
type HostRequestParamToGroup struct {
	Key     string
	Default string
	Pairs   map[string]string // request param value -> hng id
}

// Filter implements HostRule.
func (g HostRequestParamToGroup) Filter(v *View, r *Request, hosts []*Host) ([]*Host, error) {
	id, err := pairedGroup(v, r, g.Key, g.Default, g.Pairs, KindHostNode, "host node")
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(hosts, func(h *Host) bool { return !h.InGroup(id) }), nil
}

// Reorder implements HostRule; this rule only filters.
func (HostRequestParamToGroup) Reorder(*Request, []*Host) {}

// pairedGroup resolves the RequestParamToGroup option shared by host and
// network schedulers: pairs[request_params[key]], else the default, which
// must name an existing group.
func pairedGroup(v *View, r *Request, key, def string, pairs map[string]string, k ErrorKind, what string) (string, error) {
	id, ok := pairs[r.param(key)]
	if !ok || id == "" {
		if def == "" {
			return "", newErr(k, "No default %s group set", what)
		}
		id = def
	}
	if !v.Groups[id] {
		return "", newErr(k, "Unknown %s group: %s", what, id)
	}
	return id, nil
}
