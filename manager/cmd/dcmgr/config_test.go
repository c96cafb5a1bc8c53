package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dcmgr.json")
	if err := os.WriteFile(path, []byte(`{"node_name": "from-file", "data_dir": "/srv/vdc", "bootstrap_expect": 3,
		"join": ["10.0.0.1:9010"], "api": {"service_types": ["std", "lb"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"-config", path, "-node", "from-flag", "-join", "10.0.0.2:9010"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "from-flag" || c.DataDir != "/srv/vdc" || c.BootstrapExpect != 3 {
		t.Errorf("config = %+v", c)
	}
	if !reflect.DeepEqual(c.Join, []string{"10.0.0.2:9010"}) {
		t.Errorf("join = %v, flags replace the file's list", c.Join)
	}
	if !reflect.DeepEqual(c.API.ServiceTypes, []string{"std", "lb"}) || c.APIAddr != "0.0.0.0:9001" {
		t.Errorf("api config = %+v addr %s", c.API, c.APIAddr)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"node_name": "x", "no_such_key": 1}`), 0o600)
	// The HA window must leave the fence margin.
	badHA := filepath.Join(dir, "ha.json")
	_ = os.WriteFile(badHA, []byte(`{"ha_reschedule_after_ms": 5000, "ha_fence_margin_ms": 5000}`), 0o600)
	negHA := filepath.Join(dir, "neg.json")
	_ = os.WriteFile(negHA, []byte(`{"ha_reschedule_after_ms": -1}`), 0o600)
	longWait := filepath.Join(dir, "wait.json")
	_ = os.WriteFile(longWait, []byte(`{"api": {"evacuate_wait_ms": 60000}}`), 0o600)
	// A heartbeat timeout above the default election timeout, and a lease
	// above the heartbeat timeout: raft would refuse both at start.
	slowHB := filepath.Join(dir, "slowhb.json")
	_ = os.WriteFile(slowHB, []byte(`{"raft_heartbeat_timeout_ms": 1000}`), 0o600)
	longLease := filepath.Join(dir, "lease.json")
	_ = os.WriteFile(longLease, []byte(`{"raft_heartbeat_timeout_ms": 200, "raft_election_timeout_ms": 200}`), 0o600)
	for _, args := range [][]string{
		{"-config", bad},
		{"-config", badHA},
		{"-config", negHA},
		{"-config", longWait},
		{"-config", slowHB},
		{"-config", longLease},
		{"-config", filepath.Join(dir, "missing.json")},
		{"-bootstrap-expect", "0"},
		{"-no-such-flag"},
	} {
		if _, err := loadConfig(args, io.Discard); err == nil {
			t.Errorf("loadConfig(%s) succeeded", strings.Join(args, " "))
		}
	}
}

func TestLoadConfigHA(t *testing.T) {
	c, err := loadConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if ha := c.haConfig(); ha.RescheduleAfter != 45*time.Second || ha.FenceMargin != 10*time.Second {
		t.Errorf("HA defaults = %+v", ha)
	}
	path := filepath.Join(t.TempDir(), "ha.json")
	_ = os.WriteFile(path, []byte(`{"ha_reschedule_after_ms": 0}`), 0o600)
	if c, err = loadConfig([]string{"-config", path}, io.Discard); err != nil || c.haConfig().RescheduleAfter != 0 {
		t.Errorf("HA off: %+v, %v", c.haConfig(), err)
	}
}

func TestRaftTimeouts(t *testing.T) {
	c, err := loadConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.clusterConfig()
	if cc.HeartbeatTimeout != 300*time.Millisecond || cc.ElectionTimeout != 300*time.Millisecond ||
		cc.LeaderLeaseTimeout != 300*time.Millisecond {
		t.Errorf("default raft timeouts %s/%s/%s, want 300 ms each", cc.HeartbeatTimeout, cc.ElectionTimeout, cc.LeaderLeaseTimeout)
	}
	path := filepath.Join(t.TempDir(), "dcmgr.json")
	if err := os.WriteFile(path, []byte(`{"raft_heartbeat_timeout_ms": 1000, "raft_election_timeout_ms": 1500,
		"raft_leader_lease_timeout_ms": 500}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err = loadConfig([]string{"-config", path}, io.Discard); err != nil {
		t.Fatal(err)
	}
	cc = c.clusterConfig()
	if cc.HeartbeatTimeout != time.Second || cc.ElectionTimeout != 1500*time.Millisecond || cc.LeaderLeaseTimeout != 500*time.Millisecond {
		t.Errorf("configured raft timeouts %s/%s/%s, want 1s/1.5s/500ms", cc.HeartbeatTimeout, cc.ElectionTimeout, cc.LeaderLeaseTimeout)
	}
}

func TestLoadConfigJobRetention(t *testing.T) {
	c, err := loadConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.jobRetention(); r.Age != 24*time.Hour || r.Count != 10000 {
		t.Errorf("job retention defaults = %+v", r)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ret.json")
	_ = os.WriteFile(path, []byte(`{"job_retention_minutes": 90, "job_retention_count": 0}`), 0o600)
	if c, err = loadConfig([]string{"-config", path}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if r := c.jobRetention(); r.Age != 90*time.Minute || r.Count != 0 {
		t.Errorf("job retention = %+v, want 90m and no count limit", r)
	}
	neg := filepath.Join(dir, "neg.json")
	_ = os.WriteFile(neg, []byte(`{"job_retention_count": -1}`), 0o600)
	if _, err := loadConfig([]string{"-config", neg}, io.Discard); err == nil {
		t.Error("a negative job_retention_count was accepted")
	}
}
