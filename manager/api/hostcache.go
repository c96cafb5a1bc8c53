package api

import (
	"encoding/json"
	"sync"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// hostCache keeps, across requests, what an instance create decodes from
// the host records for its checks: the hosts open for scheduling and each
// host's usage sums. Every create read them all (O(hosts) JSON decodes, a
// usage record listing every instance of its host), which was a third of a
// create's CPU with 50 hosts. Each entry is keyed by what the request's own
// transaction shows — the raft index of the last write to host nodes and
// node states, the usage record's ModifyIndex — so an answer is always the
// one a full read of that transaction would give, never a stale one.
type hostCache struct {
	mu       sync.Mutex
	hostsKey [2]uint64
	hosts    []*proto.HostNode // shared: callers must not change them
	usage    map[string]usageSums
}

// usageSums are the sums of a HostUsage record at ModifyIndex mod.
type usageSums struct {
	mod      uint64
	cpu, mem int64
}

// onlineHosts returns the host nodes open for scheduling: agent online and
// scheduling_enabled (§3.4). The slice and the hosts are shared.
func (c *hostCache) onlineHosts(tx *state.Tx) ([]*proto.HostNode, error) {
	key := [2]uint64{tx.KindIndex(proto.KindHostNode), tx.KindIndex(proto.KindNodeState)}
	c.mu.Lock()
	if c.hosts != nil && c.hostsKey == key {
		hosts := c.hosts
		c.mu.Unlock()
		return hosts, nil
	}
	c.mu.Unlock()
	hosts, err := onlineHosts(tx)
	if err != nil {
		return nil, err
	}
	if hosts == nil {
		hosts = []*proto.HostNode{}
	}
	c.mu.Lock()
	c.hosts, c.hostsKey = hosts, key
	c.mu.Unlock()
	return hosts, nil
}

// used returns the cores and memory placed on a host (0 when it has no
// usage record).
func (c *hostCache) used(tx *state.Tx, hostID string) (cpu, mem int64, err error) {
	e, ok := tx.Raw(proto.KindHostUsage, hostID)
	if !ok {
		return 0, 0, nil
	}
	c.mu.Lock()
	s, hit := c.usage[hostID]
	c.mu.Unlock()
	if hit && s.mod == e.ModifyIndex {
		return s.cpu, s.mem, nil
	}
	var u struct {
		CPUCores   int64 `json:"cpu_cores"`
		MemorySize int64 `json:"memory_size"`
	}
	if err := json.Unmarshal(e.Value, &u); err != nil {
		return 0, 0, err
	}
	c.mu.Lock()
	if c.usage == nil {
		c.usage = map[string]usageSums{}
	}
	c.usage[hostID] = usageSums{mod: e.ModifyIndex, cpu: u.CPUCores, mem: u.MemorySize}
	c.mu.Unlock()
	return u.CPUCores, u.MemorySize, nil
}
