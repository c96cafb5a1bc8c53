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

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.NodeID, "sta.") || c.SerfAddr != "0.0.0.0:9040" || c.RPCAddr != "0.0.0.0:9041" ||
		c.Backing.Driver != "raw" || c.Backing.ExportPath != "/var/lib/vdc/volumes" || c.Backing.SnapshotTmpDir != "/var/tmp" ||
		c.Target.Driver != "tgt" || c.Target.IQNPrefix != "iqn.2010-09.jp.wakame" ||
		!reflect.DeepEqual(c.Target.InitiatorAddress, []string{"ALL"}) || c.Concurrency != 4 || c.ReexportIntervalMS != 60000 {
		t.Errorf("defaults = %+v", c)
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sta.json")
	if err := os.WriteFile(path, []byte(`{"node_id": "sta.file", "token": "from-file",
		"backing_store": {"driver": "qcow2", "export_path": "/srv/vols", "local_backup_storage_id": "bkst-local",
		                  "local_backup_path": "/srv/backups"},
		"target": {"iqn_prefix": "iqn.2026-01.com.example", "initiator_address": ["10.0.0.5"]},
		"join": ["10.0.0.1:9010"], "reexport_interval_ms": 1000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"-config", path, "-node-id", "sta.flag", "-join", "10.0.0.2:9010",
		"-backing-driver", "reflink", "-reexport-interval", "30s", "-concurrency", "2", "-fast-gossip"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeID != "sta.flag" || c.Token != "from-file" || c.Backing.Driver != "reflink" || c.Backing.ExportPath != "/srv/vols" ||
		c.Backing.LocalBackupStorageID != "bkst-local" || c.Target.IQNPrefix != "iqn.2026-01.com.example" ||
		!reflect.DeepEqual(c.Target.InitiatorAddress, []string{"10.0.0.5"}) || c.Target.Driver != "tgt" ||
		ms(c.ReexportIntervalMS) != 30*time.Second || c.Concurrency != 2 || !c.FastGossip {
		t.Errorf("config = %+v", c)
	}
	if !reflect.DeepEqual(c.Join, []string{"10.0.0.2:9010"}) {
		t.Errorf("join = %v, flags replace the file's list", c.Join)
	}
}

func TestLoadConfigRejects(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	_ = os.WriteFile(bad, []byte(`{"node_id": "sta.x", "no_such_key": 1}`), 0o600)
	for _, args := range [][]string{
		{"-config", bad},
		{"-config", filepath.Join(dir, "missing.json")},
		{"-node-id", "hva.x"},
		{"-node-id", "sta."},
		{"-backing-driver", "zfs"},
		{"-backing-driver", "lvm"}, // no volume group
		{"-export-path", "relative/dir"},
		{"-snapshot-tmp-dir", "tmp"},
		{"-local-backup-storage-id", "bkst-x"}, // no path
		{"-target-driver", "linux_iscsi"},
		{"-iqn-prefix", "iqn.2026-01.x:y"},
		{"-iqn-prefix", "Wakame"},
		{"-concurrency", "-1"},
		{"-no-such-flag"},
		{"stray"},
	} {
		if _, err := loadConfig(args, io.Discard); err == nil {
			t.Errorf("loadConfig(%s) succeeded", strings.Join(args, " "))
		}
	}
}

// TestJobsFile: the finished-job table lives in the export path with the
// file drivers, nowhere (memory only) with lvm or memory unless set.
func TestJobsFile(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "/var/lib/vdc/volumes/_jobs.db"},
		{[]string{"-backing-driver", "qcow2", "-export-path", "/srv/v"}, "/srv/v/_jobs.db"},
		{[]string{"-backing-driver", "memory"}, ""},
		{[]string{"-backing-driver", "memory", "-jobs-file", "/srv/sta/jobs.db"}, "/srv/sta/jobs.db"},
	} {
		cfg, err := loadConfig(c.args, io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if got := cfg.jobsFile(); got != c.want {
			t.Errorf("%v: jobs file %q, want %q", c.args, got, c.want)
		}
	}
	if _, err := loadConfig([]string{"-jobs-file", "rel/jobs.db"}, io.Discard); err == nil {
		t.Error("a relative jobs file was accepted")
	}
}
