package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestSecurityAndAccessConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dcmgr.json")
	if err := os.WriteFile(path, []byte(`{"node_name": "m1",
		"security": {"rpc_token": "t2", "rpc_accept_tokens": ["t1"], "gossip_keyring_file": "/etc/vdc/keyring.json",
			"tls_ca_file": "ca.pem", "tls_cert_file": "m1.pem", "tls_key_file": "m1-key.pem"},
		"api": {"tokens": [{"token": "0123456789abcdef0123", "account": "a-shpoolxx"}],
			"rate_limit": {"requests_per_second": 5, "burst": 10}, "max_list_limit": 100}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig([]string{"-config", path, "-trusted-frontends", "10.0.0.0/8,192.0.2.7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Security.RPCToken != "t2" || c.Security.TLSCertFile != "m1.pem" || c.Security.GossipKeyringFile == "" ||
		!reflect.DeepEqual(c.API.TrustedFrontends, []string{"10.0.0.0/8", "192.0.2.7"}) ||
		c.API.RateLimit.RequestsPerSecond != 5 || c.API.MaxListLimit != 100 || len(c.API.Tokens) != 1 {
		t.Errorf("config = %+v", c)
	}
	if _, err := loadConfig([]string{"-node", "x", "-trusted-frontends", "10.0.0.0/40"}, io.Discard); err == nil {
		t.Error("a bad trusted frontend CIDR was accepted")
	}
	if d := DefaultConfig(); !reflect.DeepEqual(d.API.TrustedFrontends, []string{"127.0.0.0/8", "::1/128"}) {
		t.Errorf("default trusted frontends %v", d.API.TrustedFrontends)
	}
}
