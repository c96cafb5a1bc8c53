package rig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// Member is a serf member as a manager lists it.
type Member struct {
	Name   string            `json:"name"`
	Status string            `json:"status"`
	Tags   map[string]string `json:"tags"`
}

// Peer is a raft server as a manager lists it.
type Peer struct {
	ID     string `json:"id"`
	Leader bool   `json:"leader"`
}

func getJSON(ctx context.Context, c *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, res.StatusCode)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

// Members is the serf membership manager m sees.
func (m *Proc) Members(ctx context.Context, c *http.Client) ([]Member, error) {
	var out []Member
	err := getJSON(ctx, c, m.Internal+"/members", &out)
	return out, err
}

// LeaderSeen is the raft leader manager m names ("" when it knows none).
func (m *Proc) LeaderSeen(ctx context.Context, c *http.Client) (string, error) {
	var peers []Peer
	if err := getJSON(ctx, c, m.Internal+"/peers", &peers); err != nil {
		return "", err
	}
	for _, p := range peers {
		if p.Leader {
			return p.ID, nil
		}
	}
	return "", nil
}

// Status is the raft state a manager reports.
type Status struct {
	State        string `json:"state"`
	Leader       string `json:"leader"`
	CommitIndex  uint64 `json:"commit_index,string"`
	AppliedIndex uint64 `json:"applied_index,string"`
}

// Status is manager m's raft state.
func (m *Proc) Status(ctx context.Context, c *http.Client) (Status, error) {
	var st Status
	err := getJSON(ctx, c, m.Internal+"/status", &st)
	return st, err
}

// Leader is the manager that every running, unpaused manager names leader,
// and that names itself.
func (r *Rig) Leader(ctx context.Context, c *http.Client) (*Proc, error) {
	var leader string
	for _, m := range r.Managers {
		if m.Exited() || m.Paused() {
			continue
		}
		id, err := m.LeaderSeen(ctx, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		if id == "" {
			return nil, fmt.Errorf("%s knows no leader", m.Name)
		}
		if leader != "" && id != leader {
			return nil, fmt.Errorf("managers name leaders %s and %s", leader, id)
		}
		leader = id
	}
	for _, m := range r.Managers {
		if m.NodeID == leader {
			return m, nil
		}
	}
	return nil, errors.New("no running manager")
}

// Healthy returns nil when every process runs unpaused, the managers agree
// on a leader, every manager sees every process alive in serf, and every
// manager has applied the commands the leader had applied when asked (a
// manager whose raft replication is still backing off after a fault is
// not healthy yet: a second fault would find no quorum). The applied index
// counts commands only; raft's commit index also counts the no-op entries
// of elections, which the state machine never sees.
func (r *Rig) Healthy(ctx context.Context, c *http.Client) error {
	for _, p := range r.Procs() {
		if p.Exited() {
			return fmt.Errorf("%s is not running (%v)", p.Name, p.ExitErr())
		}
		if p.Paused() {
			return fmt.Errorf("%s is paused", p.Name)
		}
	}
	l, err := r.Leader(ctx, c)
	if err != nil {
		return err
	}
	ls, err := l.Status(ctx, c)
	if err != nil {
		return fmt.Errorf("%s status: %w", l.Name, err)
	}
	for _, m := range r.Managers {
		st, err := m.Status(ctx, c)
		if err != nil {
			return fmt.Errorf("%s status: %w", m.Name, err)
		}
		if st.AppliedIndex < ls.AppliedIndex {
			return fmt.Errorf("%s applied %d, behind the leader's %d", m.Name, st.AppliedIndex, ls.AppliedIndex)
		}
	}
	for _, m := range r.Managers {
		ms, err := m.Members(ctx, c)
		if err != nil {
			return fmt.Errorf("%s members: %w", m.Name, err)
		}
		status := map[string]string{}
		for _, mb := range ms {
			status[mb.Name] = mb.Status
		}
		var bad []string
		for _, p := range r.Procs() {
			if status[p.NodeID] != "alive" {
				bad = append(bad, fmt.Sprintf("%s=%q", p.NodeID, status[p.NodeID]))
			}
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			return fmt.Errorf("%s (leader %s) sees %s", m.Name, l.Name, strings.Join(bad, " "))
		}
	}
	return nil
}

// WaitHealthy polls Healthy until it holds or timeout passes.
func (r *Rig) WaitHealthy(ctx context.Context, c *http.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	delay := 20 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := r.Healthy(cctx, c)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("cluster not healthy after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		if delay < 200*time.Millisecond {
			delay *= 2
		}
	}
}
