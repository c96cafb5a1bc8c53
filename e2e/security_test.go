package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/common/tlsutil/tlstest"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/proto"
)

// TestSecuredClusterRunsInstances runs 3 managers, a scheduler and an hva as
// processes with every cluster security feature on, each read from the
// daemon's config file: mutual TLS for RPC and raft, an encrypted gossip
// keyring, and RPC tokens in the middle of a rotation (m1 still sends the
// old token; the others send the new one and accept both). An instance goes
// through its life; calls without the right credentials are refused.
func TestSecuredClusterRunsInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemons")
	}
	ca := tlstest.NewCA(t, "e2e cluster")
	key, err := security.NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	roles := map[string]string{
		"m1": proto.RoleManager, "m2": proto.RoleManager, "m3": proto.RoleManager,
		"scheduler.e2e": proto.RoleScheduler, "hva.e2e1": proto.RoleHva,
	}
	configs := map[string]string{}
	for name, role := range roles {
		caFile, certFile, keyFile := ca.Files(t, role, name)
		keyring := filepath.Join(dir, name+"-keyring.json")
		if err := security.WriteKeyring(keyring, key); err != nil {
			t.Fatal(err)
		}
		sec := security.Config{
			RPCToken: "token-2", RPCAcceptTokens: []string{"token-1"},
			TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile, GossipKeyringFile: keyring,
		}
		if name == "m1" {
			sec.RPCToken, sec.RPCAcceptTokens = "token-1", []string{"token-2"}
		}
		b, _ := json.Marshal(map[string]any{"security": sec})
		path := filepath.Join(dir, name+".json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		configs[name] = path
	}
	c := newClusterWith(t, options{managers: 3, extra: func(name string) []string {
		return []string{"-config", configs[name]}
	}})

	id := c.create(1, 256)
	c.waitState(id, "running")

	// The collector refuses callers without the right credentials.
	leader, err := c.leader()
	if err != nil {
		t.Fatal(err)
	}
	call := func(sec rpc.Security) error {
		cl := rpc.NewClient(rpc.ClientConfig{Security: sec, DialTimeout: 5 * time.Second})
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var out json.RawMessage
		return cl.Call(ctx, leader.rpc, proto.EndpointHvaCollector, proto.VerbGetInstance,
			proto.GetInstanceRequest{InstanceID: id}, &out)
	}
	hva := ca.Identity(t, proto.RoleHva, "hva.e2e1")
	if err := call(rpc.Security{TLS: hva, Token: "token-2"}); err != nil {
		t.Fatalf("hva certificate and token: %v", err)
	}
	other := tlstest.NewCA(t, "elsewhere")
	for name, sec := range map[string]rpc.Security{
		"nothing":                   {},
		"only the token":            {Token: "token-2"},
		"hva certificate, no token": {TLS: hva},
		"another CA's hva":          {TLS: other.Identity(t, proto.RoleHva, "hva.e2e1"), Token: "token-2"},
		"scheduler certificate":     {TLS: ca.Identity(t, proto.RoleScheduler, "scheduler.e2e"), Token: "token-2"},
	} {
		if err := call(sec); err == nil {
			t.Errorf("%s: the collector answered", name)
		} else if name != "nothing" && name != "only the token" && !errs.Is(err, errs.Unauthorized) {
			t.Errorf("%s: %v, want Unauthorized", name, err)
		}
	}

	// A serf member without the gossip key cannot join.
	intruder := bareSerf(t, nil)
	if n, err := intruder.Join([]string{c.serf}, true); err == nil && n > 0 {
		t.Errorf("a member without the gossip key joined %d member(s)", n)
	}

	c.must("DELETE", "/instances/"+id+".json", nil, account)
	c.waitState(id, "terminated")
	c.waitJobsIdle()
}

func bareSerf(t *testing.T, kr *memberlist.Keyring) *serf.Serf {
	t.Helper()
	sc := serf.DefaultConfig()
	sc.NodeName = "intruder"
	sc.MemberlistConfig = memberlist.DefaultLocalConfig()
	sc.MemberlistConfig.BindAddr = "127.0.0.1"
	p, _ := strconv.Atoi(cluster.FreePort(t))
	sc.MemberlistConfig.BindPort, sc.MemberlistConfig.AdvertisePort = p, p
	sc.MemberlistConfig.Keyring = kr
	sc.MemberlistConfig.LogOutput = os.Stderr
	sc.LogOutput = os.Stderr
	s, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}
