package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/hva/hypervisor/libvirt"
	"github.com/vdc-project/vdc/hva/network"
)

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.NodeID, "hva.") || c.Hypervisor != "dummy" || c.SerfAddr != "0.0.0.0:9020" ||
		c.RPCAddr != "0.0.0.0:9021" || c.MonitorIntervalMS != 5000 || c.LocalStoreConcurrency != 2 {
		t.Errorf("defaults = %+v", c)
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hva.json")
	if err := os.WriteFile(path, []byte(`{"node_id": "hva.file", "cpu_cores": 4, "memory_mb": 2048,
		"join": ["10.0.0.1:9010"], "token": "from-file", "monitor_interval_ms": 1000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"-config", path, "-node-id", "hva.flag", "-join", "10.0.0.2:9010",
		"-memory-mb", "4096", "-soft-poweroff-timeout", "30s", "-fast-gossip"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "hva.flag" || c.CPUCores != 4 || c.MemoryMB != 4096 || c.Token != "from-file" ||
		c.MonitorIntervalMS != 1000 || ms(c.SoftPoweroffTimeoutMS) != 30*time.Second || !c.FastGossip {
		t.Errorf("config = %+v", c)
	}
	if !reflect.DeepEqual(c.Join, []string{"10.0.0.2:9010"}) {
		t.Errorf("join = %v, flags replace the file's list", c.Join)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"node_id": "hva.x", "no_such_key": 1}`), 0o600)
	for _, args := range [][]string{
		{"-config", bad},
		{"-config", filepath.Join(dir, "missing.json")},
		{"-node-id", "sta.x"},
		{"-node-id", "hva."},
		{"-hypervisor", "kvm"},
		{"-hypervisor", "libvirt", "-virt-type", "xen"},
		{"-cpu-cores", "-1"},
		{"-monitor-interval", "-1s"},
		{"-fence-after", "-1s"},
		{"-no-such-flag"},
		{"stray"},
	} {
		if _, err := loadConfig(args, io.Discard); err == nil {
			t.Errorf("loadConfig(%s) succeeded", strings.Join(args, " "))
		}
	}
}

func TestLoadConfigHostNetwork(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hva.json")
	if err := os.WriteFile(path, []byte(`{"node_id": "hva.net",
		"dc_networks": {"public": {"bridge": "br0", "interface": "eth1", "mtu": 9000}, "mgmt": {"bridge": "brmgmt"}},
		"netfilter_interval_ms": 10000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"-config", path, "-netfilter"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]network.DCNetwork{"public": {Bridge: "br0", Interface: "eth1", MTU: 9000}, "mgmt": {Bridge: "brmgmt"}}
	if !reflect.DeepEqual(c.DcNetworks, want) || !c.Netfilter || c.NetfilterTable != "vdc" || c.NetfilterIntervalMS != 10000 {
		t.Errorf("config = %+v", c)
	}
	d, _ := loadConfig(nil, io.Discard)
	if d.Netfilter || len(d.DcNetworks) != 0 || d.NetfilterIntervalMS != 30000 {
		t.Errorf("defaults: netfilter %v, dc networks %v, interval %d", d.Netfilter, d.DcNetworks, d.NetfilterIntervalMS)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(bad, []byte(`{"node_id": "hva.x", "dc_networks": {"public": {"bridge": "a-bridge-name-too-long"}}}`), 0o600)
	if _, err := loadConfig([]string{"-config", bad}, io.Discard); err == nil {
		t.Error("a bridge name over 15 characters was accepted")
	}
}

func TestLoadConfigLibvirtKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hva.json")
	if err := os.WriteFile(path, []byte(`{"node_id": "hva.x", "hypervisor": "auto", "libvirt_socket": "/s",
		"virt_type": "kvm", "data_dir": "/d"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"-config", path}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor != "auto" || c.LibvirtSocket != "/s" || c.VirtType != "kvm" || c.DataDir != "/d" || c.ConsoleDir != "/d/_console" {
		t.Errorf("config = %+v", c)
	}
	c, err = loadConfig([]string{"-config", path, "-hypervisor", "libvirt", "-virt-type", "qemu", "-console-dir", "/c"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor != "libvirt" || c.VirtType != "qemu" || c.ConsoleDir != "/c" {
		t.Errorf("config with flags = %+v", c)
	}
	if d, _ := loadConfig(nil, io.Discard); d.Hypervisor != "dummy" || d.VirtType != "qemu" || d.DataDir != DefaultDataDir {
		t.Errorf("defaults = %+v, want dummy, qemu, %s", d, DefaultDataDir)
	}
}

func TestAutoHypervisorFallsBackToDummy(t *testing.T) {
	var log strings.Builder
	logger := slog.New(slog.NewTextHandler(&log, nil))
	cfg := DefaultConfig()
	cfg.Hypervisor, cfg.LibvirtSocket, cfg.DataDir = "auto", filepath.Join(t.TempDir(), "no-libvirt-sock"), t.TempDir()
	hv, ls, closeHV, err := newHypervisor(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer closeHV()
	if _, ok := hv.(*dummy.Driver); !ok || ls != nil {
		t.Errorf("auto without libvirtd = %T with local store %v, want the dummy without one", hv, ls)
	}
	if !strings.Contains(log.String(), "using the dummy hypervisor") {
		t.Errorf("the log does not say which driver auto took:\n%s", log.String())
	}
}

func TestAutoHypervisorTakesLibvirt(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	var log strings.Builder
	logger := slog.New(slog.NewTextHandler(&log, nil))
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Hypervisor, cfg.DataDir = "hva.vlauto", "auto", t.TempDir()
	cfg.ConsoleDir = filepath.Join(cfg.DataDir, "_console")
	hv, ls, closeHV, err := newHypervisor(context.Background(), cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer closeHV()
	if _, ok := hv.(*libvirt.Driver); !ok || ls == nil {
		t.Errorf("auto with libvirtd = %T with local store %v, want libvirt with one", hv, ls)
	}
	if !strings.Contains(log.String(), "hypervisor: libvirt") {
		t.Errorf("the log does not say which driver auto took:\n%s", log.String())
	}
}

func TestLoadConfigFence(t *testing.T) {
	c, err := loadConfig(nil, io.Discard)
	if err != nil || c.FenceAfterMS != 30000 || c.HeartbeatMS != 0 {
		t.Fatalf("fence defaults = %d/%d, %v", c.FenceAfterMS, c.HeartbeatMS, err)
	}
	if c, err = loadConfig([]string{"-fence-after", "0"}, io.Discard); err != nil || c.FenceAfterMS != 0 {
		t.Errorf("-fence-after 0: %d, %v", c.FenceAfterMS, err)
	}
	path := filepath.Join(t.TempDir(), "hva.json")
	_ = os.WriteFile(path, []byte(`{"fence_after_ms": 2000, "heartbeat_ms": 2000}`), 0o600)
	if _, err := loadConfig([]string{"-config", path}, io.Discard); err == nil {
		t.Error("a heartbeat period as long as the fence timeout was accepted")
	}
}

// TestOpenJobTable: the finished-job table is <data_dir>/_jobs.db with
// libvirt, none with the dummy hypervisor, jobs_file when set; what it
// stores is there when the hva opens it again.
func TestOpenJobTable(t *testing.T) {
	dir := t.TempDir()
	c := DefaultConfig()
	c.DataDir = filepath.Join(dir, "instances")
	if tb, err := openJobTable(c, false); tb != nil || err != nil {
		t.Fatalf("dummy without jobs_file: %v, %v; want no table", tb, err)
	}
	tb, err := openJobTable(c, true)
	if err != nil {
		t.Fatal(err)
	}
	closeJobTable(tb, slog.New(slog.DiscardHandler))
	if _, err := os.Stat(filepath.Join(c.DataDir, "_jobs.db")); err != nil {
		t.Fatalf("libvirt: %v", err)
	}
	c.JobsFile = filepath.Join(dir, "elsewhere", "jobs.db")
	tb, err = openJobTable(c, false)
	if err != nil {
		t.Fatal(err)
	}
	closeJobTable(tb, slog.New(slog.DiscardHandler))
	if _, err := os.Stat(c.JobsFile); err != nil {
		t.Fatalf("jobs_file: %v", err)
	}
}
