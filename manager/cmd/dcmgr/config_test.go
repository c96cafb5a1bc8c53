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
	for _, args := range [][]string{
		{"-config", bad},
		{"-config", filepath.Join(dir, "missing.json")},
		{"-bootstrap-expect", "0"},
		{"-no-such-flag"},
	} {
		if _, err := loadConfig(args, io.Discard); err == nil {
			t.Errorf("loadConfig(%s) succeeded", strings.Join(args, " "))
		}
	}
}
