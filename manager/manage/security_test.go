package manage

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/common/tlsutil"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/proto"
)

func runCLI(t *testing.T, cfg Config, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	cfg.Stderr = &errb
	code := Run(t.Context(), args, &out, cfg)
	return out.String(), errb.String(), code
}

func TestTLSCreateCAAndCertificates(t *testing.T) {
	dir := t.TempDir()
	if _, e, code := runCLI(t, Config{}, "tls", "ca", "create", "--dir", dir); code != 0 {
		t.Fatalf("ca create: %s", e)
	}
	if _, e, code := runCLI(t, Config{}, "tls", "ca", "create", "--dir", dir); code == 0 || !strings.Contains(e, "exists") {
		t.Fatalf("second ca create did not refuse: %d %s", code, e)
	}
	certDir := filepath.Join(dir, "m1")
	if _, e, code := runCLI(t, Config{}, "tls", "cert", "create", "--dir", certDir, "--ca-dir", dir,
		"--role", "manager", "--name", "m1", "--host", "10.0.0.11", "--host", "m1.example"); code != 0 {
		t.Fatalf("cert create: %s", e)
	}
	id, err := tlsutil.Load(filepath.Join(certDir, "ca.pem"), filepath.Join(certDir, "m1.pem"), filepath.Join(certDir, "m1-key.pem"))
	if err != nil {
		t.Fatalf("load the created files: %v", err)
	}
	if id.Role != proto.RoleManager || id.Name != "m1" {
		t.Errorf("identity = %+v", id.Peer)
	}
	for _, f := range []string{filepath.Join(dir, "ca-key.pem"), filepath.Join(certDir, "m1-key.pem")} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, st.Mode().Perm(), err)
		}
	}
	// The daemon's config loads them, and refuses them for another role.
	sec := security.Config{TLSCAFile: filepath.Join(certDir, "ca.pem"), TLSCertFile: filepath.Join(certDir, "m1.pem"),
		TLSKeyFile: filepath.Join(certDir, "m1-key.pem")}
	if _, err := sec.Load(proto.RoleManager); err != nil {
		t.Errorf("load as manager: %v", err)
	}
	if _, err := sec.Load(proto.RoleHva); err == nil {
		t.Error("a manager certificate loaded for an hva")
	}
	for _, args := range [][]string{
		{"tls", "cert", "create", "--dir", dir, "--role", "admin", "--name", "x"},
		{"tls", "cert", "create", "--dir", dir, "--role", "hva"},
		{"tls", "cert", "create", "--dir", t.TempDir(), "--role", "hva", "--name", "x"}, // no CA there
	} {
		if _, _, code := runCLI(t, Config{}, args...); code == 0 {
			t.Errorf("vdc-manage %s succeeded", strings.Join(args, " "))
		}
	}
}

func TestGossipKeygen(t *testing.T) {
	out, e, code := runCLI(t, Config{}, "gossip", "keygen")
	if code != 0 {
		t.Fatal(e)
	}
	if _, err := security.DecodeGossipKey(out); err != nil {
		t.Fatalf("keygen printed %q: %v", out, err)
	}
	path := filepath.Join(t.TempDir(), "keyring.json")
	if _, e, code := runCLI(t, Config{}, "gossip", "keygen", "--out", path); code != 0 {
		t.Fatal(e)
	}
	if kr, err := security.ReadKeyring(path); err != nil || len(kr.GetKeys()) != 1 {
		t.Fatalf("keyring file: %v", err)
	}
}

func TestGossipKeysThroughManager(t *testing.T) {
	oldKey, _ := security.NewGossipKey()
	newKey, _ := security.NewGossipKey()
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := security.WriteKeyring(path, oldKey); err != nil {
		t.Fatal(err)
	}
	kr, err := security.ReadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := cluster.TestServer(t, func(c *cluster.Config) { c.Security = security.Settings{Keyring: kr, KeyringFile: path} })
	ts := httptest.NewServer(api.New(api.DefaultConfig(), srv, logging.NewTest(t)))
	t.Cleanup(ts.Close)
	cfg := Config{API: ts.URL}
	for _, step := range [][]string{{"install", newKey}, {"use", newKey}, {"remove", oldKey}} {
		out, e, code := runCLI(t, cfg, "gossip", "keys", step[0], step[1])
		if code != 0 || !strings.Contains(out, "members 1, responses 1, errors 0") {
			t.Fatalf("keys %s: exit %d\n%s%s", step[0], code, out, e)
		}
	}
	out, e, code := runCLI(t, cfg, "gossip", "keys", "list")
	if code != 0 || !strings.Contains(out, newKey) || strings.Contains(out, oldKey) {
		t.Fatalf("list: %d\n%s%s", code, out, e)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), newKey) || strings.Contains(string(b), oldKey) {
		t.Errorf("keyring file after rotation: %s", b)
	}
	// Removing the key in use is refused by the members.
	if out, _, code := runCLI(t, cfg, "gossip", "keys", "remove", newKey); code == 0 {
		t.Errorf("removing the primary key succeeded:\n%s", out)
	}
	// A caller with an account is not the operator.
	if _, e, code := runCLI(t, cfg, "--account", "a-shpoolxx", "gossip", "keys", "list"); code == 0 || !strings.Contains(e, "105") {
		t.Errorf("keys list as an account: exit %d %s", code, e)
	}
}

func TestTokenFlagSendsBearer(t *testing.T) {
	f := newFake(t).on("GET "+p+"host_nodes/hn-demo1.json", ok(hostDoc))
	if _, e, code := runCLI(t, Config{API: f.srv.URL}, "--token", "s3cret-token", "host", "show", "hn-demo1"); code != 0 {
		t.Fatal(e)
	}
	if h := f.recorded()[0].Header.Get("Authorization"); h != "Bearer s3cret-token" {
		t.Fatalf("Authorization = %q", h)
	}
}
