package security_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/common/tlsutil/tlstest"
	"github.com/vdc-project/vdc/proto"
)

func TestLoadTLSAndTokens(t *testing.T) {
	ca := tlstest.NewCA(t, "c")
	caf, cert, key := ca.Files(t, proto.RoleScheduler, "scheduler.s1")
	s, err := security.Config{RPCToken: "a", RPCAcceptTokens: []string{"b"}, TLSCAFile: caf, TLSCertFile: cert, TLSKeyFile: key}.
		Load(proto.RoleScheduler)
	if err != nil {
		t.Fatal(err)
	}
	if s.RPC.Token != "a" || len(s.RPC.AcceptTokens) != 1 || s.RPC.TLS == nil || s.RPC.TLS.Name != "scheduler.s1" || s.Keyring != nil {
		t.Fatalf("settings = %+v", s)
	}
	for name, c := range map[string]security.Config{
		"wrong role":         {TLSCAFile: caf, TLSCertFile: cert, TLSKeyFile: key},
		"half the TLS files": {TLSCAFile: caf, TLSCertFile: cert},
		"missing key file":   {TLSCAFile: caf, TLSCertFile: cert, TLSKeyFile: key + ".nope"},
		"missing keyring":    {GossipKeyringFile: filepath.Join(t.TempDir(), "none.json")},
	} {
		role := proto.RoleScheduler
		if name == "wrong role" {
			role = proto.RoleHva
		}
		if _, err := c.Load(role); err == nil {
			t.Errorf("%s: Load succeeded", name)
		}
	}
	if s, err := (security.Config{}).Load(proto.RoleHva); err != nil || s.RPC.TLS != nil || s.Keyring != nil {
		t.Errorf("empty config: %+v, %v", s, err)
	}
}

func TestKeyringFiles(t *testing.T) {
	k1, _ := security.NewGossipKey()
	k2, _ := security.NewGossipKey()
	dir := t.TempDir()
	list := filepath.Join(dir, "list.json")
	if err := security.WriteKeyring(list, k1, k2); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(list); st.Mode().Perm() != 0o600 {
		t.Errorf("keyring mode %v", st.Mode().Perm())
	}
	kr, err := security.ReadKeyring(list)
	if err != nil || len(kr.GetKeys()) != 2 {
		t.Fatalf("ReadKeyring(list) = %v", err)
	}
	if p, _ := security.DecodeGossipKey(k1); string(kr.GetPrimaryKey()) != string(p) {
		t.Error("the first key is not the primary")
	}
	bare := filepath.Join(dir, "bare")
	_ = os.WriteFile(bare, []byte(k2+"\n"), 0o600)
	if kr, err := security.ReadKeyring(bare); err != nil || len(kr.GetKeys()) != 1 {
		t.Errorf("bare key file: %v", err)
	}
	for name, content := range map[string]string{
		"16-byte key": "AAAAAAAAAAAAAAAAAAAAAA==", "not base64": "!!!", "empty list": "[]", "bad JSON": "[\"x\"",
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		_ = os.WriteFile(p, []byte(content), 0o600)
		if _, err := security.ReadKeyring(p); err == nil {
			t.Errorf("%s: ReadKeyring succeeded", name)
		}
	}
	if err := security.WriteKeyring(filepath.Join(dir, "x"), "short"); err == nil {
		t.Error("WriteKeyring accepted a bad key")
	}
	// ConfigureSerf turns verification on and persists rotations to the file.
	sc := serf.DefaultConfig()
	sc.MemberlistConfig = memberlist.DefaultLocalConfig()
	sc.MemberlistConfig.GossipVerifyIncoming = false
	security.Settings{Keyring: kr, KeyringFile: list}.ConfigureSerf(sc)
	if sc.MemberlistConfig.Keyring != kr || !sc.MemberlistConfig.GossipVerifyIncoming || sc.KeyringFile != list {
		t.Error("ConfigureSerf did not set the keyring")
	}
}
