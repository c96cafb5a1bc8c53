package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLoadConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scheduler.json")
	if err := os.WriteFile(path, []byte(`{"node_id": "scheduler.file", "join": ["10.0.0.1:9010"], "concurrency": 8,
		"mac_ranges": [{"id": "mr-a", "begin": "100000", "end": "1fffff"}],
		"service_types": {"std": {"host_node_scheduler": {"scheduler": "PipedRules", "rules": [{"rule": "LeastUsageBy", "key": "memory_size"}]},
			"storage_node_scheduler": {"scheduler": "FindFirst"}, "network_scheduler": {"scheduler": "VifsRequestParam"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"-config", path, "-node-id", "scheduler.flag", "-manager", "10.0.0.5:9002"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "scheduler.flag" || c.Concurrency != 8 || c.PlanAttempts != 32 || c.SerfAddr != "0.0.0.0:9030" {
		t.Errorf("config = %+v", c)
	}
	if !reflect.DeepEqual(c.Join, []string{"10.0.0.1:9010"}) || !reflect.DeepEqual(c.Managers, []string{"10.0.0.5:9002"}) {
		t.Errorf("join %v managers %v", c.Join, c.Managers)
	}
	if c.ServiceTypes["std"].HostNode.Scheduler != "PipedRules" || c.MacRanges[0].ID != "mr-a" {
		t.Errorf("placement config = %+v %+v", c.ServiceTypes, c.MacRanges)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, args := range [][]string{
		{"-config", write("unknown.json", `{"join": ["x:1"], "no_such_key": 1}`)},
		{"-config", filepath.Join(dir, "missing.json")},
		{}, // no join, no managers
		{"-join", "x:1", "-no-such-flag"},
		{"-config", write("sched.json", `{"join": ["x:1"], "service_types": {"std": {"host_node_scheduler": {"scheduler": "Nope"}}}}`)},
		{"-config", write("typo.json", `{"join": ["x:1"], "service_types": {"std": {"host_node_scheduler": {"scheduler": "LeastUsage", "sortpriority": "cpu"}}}}`)},
		{"-config", write("mac.json", `{"join": ["x:1"], "mac_ranges": [{"id": "mr", "begin": "ffffff", "end": "000001"}]}`)},
		{"-config", write("vendor.json", `{"join": ["x:1"], "mac_address_vendor_id": "52540"}`)},
		{"-config", write("default.json", `{"join": ["x:1"], "default_service_type": "lb"}`)},
	} {
		if _, err := loadConfig(args, io.Discard); err == nil {
			t.Errorf("loadConfig(%s) succeeded", strings.Join(args, " "))
		}
	}
}
