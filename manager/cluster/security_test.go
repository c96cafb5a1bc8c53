package cluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/common/tlsutil"
	"github.com/vdc-project/vdc/common/tlsutil/tlstest"
	"github.com/vdc-project/vdc/proto"
)

func TestThreeManagersOverTLSElectAndReplicate(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	ca := tlstest.NewCA(t, "cluster")
	servers := threeManagers(t, func(c *Config) {
		c.Security.RPC.TLS = ca.Identity(t, proto.RoleManager, c.NodeName)
	})
	for i := 0; i < 20; i++ {
		putRetry(t, servers, fmt.Sprintf("tls%d", i))
	}
	for _, s := range servers {
		testutil.WaitFor(t, 10*time.Second, func() error {
			for i := 0; i < 20; i++ {
				if !has(s, fmt.Sprintf("tls%d", i)) {
					return fmt.Errorf("%s lacks tls%d", s.NodeName(), i)
				}
			}
			return nil
		})
	}
	leader := leaderOf(servers)

	// Nobody else can speak raft to it: not a plain TCP transport, not a
	// manager certificate of another CA, not an agent certificate of ours.
	plain, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, time.Second, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	var out raft.RequestVoteResponse
	if err := plain.RequestVote("x", raft.ServerAddress(leader.RaftAddr()), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("x"), Addr: []byte("127.0.0.1:1")}, Term: 1 << 40,
	}, &out); err == nil {
		t.Error("a plain-TCP raft peer got an answer from a TLS manager")
	}
	other := tlstest.NewCA(t, "elsewhere")
	for name, id := range map[string]*tlsutil.Identity{
		"manager of another CA": other.Identity(t, proto.RoleManager, "m9"),
		"hva of our CA":         ca.Identity(t, proto.RoleHva, "hva.x"),
	} {
		stream, err := newTLSStream("127.0.0.1:0", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, id)
		if err != nil {
			t.Fatal(err)
		}
		trans := raft.NewNetworkTransport(stream, 1, time.Second, os.Stderr)
		err = trans.RequestVote("x", raft.ServerAddress(leader.RaftAddr()), &raft.RequestVoteRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("x"), Addr: []byte("127.0.0.1:1")}, Term: 1 << 40,
		}, &out)
		trans.Close()
		if err == nil {
			t.Errorf("%s: raft RequestVote answered", name)
		}
	}
}

func writeKeyring(t *testing.T, keys ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keyring.json")
	if err := security.WriteKeyring(path, keys...); err != nil {
		t.Fatal(err)
	}
	return path
}

func gossipSettings(t *testing.T, keys ...string) security.Settings {
	t.Helper()
	path := writeKeyring(t, keys...)
	kr, err := security.ReadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	return security.Settings{Keyring: kr, KeyringFile: path}
}

// bareMember starts a serf member outside vdc (an intruder or a late agent).
func bareMember(t *testing.T, sec security.Settings) *serf.Serf {
	t.Helper()
	sc := serf.DefaultConfig()
	sc.NodeName = fmt.Sprintf("bare%d", testNodeSeq.Add(1))
	sc.MemberlistConfig = memberlist.DefaultLocalConfig()
	sc.MemberlistConfig.BindAddr = "127.0.0.1"
	port, _ := strconv.Atoi(FreePort(t))
	sc.MemberlistConfig.BindPort = port
	sc.MemberlistConfig.AdvertisePort = port
	sc.MemberlistConfig.Logger = logging.StdLog(logging.NewTest(t), "memberlist")
	sc.Logger = logging.StdLog(logging.NewTest(t), "serf")
	sc.Tags = map[string]string{proto.TagRole: proto.RoleHva}
	sec.ConfigureSerf(sc)
	s, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

func TestSerfKeyringKeepsOutMembersWithoutTheKey(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	key, _ := security.NewGossipKey()
	otherKey, _ := security.NewGossipKey()
	m := TestServer(t, func(c *Config) { c.Security = gossipSettings(t, key) })

	for name, sec := range map[string]security.Settings{
		"no key":        {},
		"another key":   gossipSettings(t, otherKey),
		"key not first": gossipSettings(t, otherKey, key), // encrypts with the wrong one
	} {
		intruder := bareMember(t, sec)
		if n, err := intruder.Join([]string{m.SerfAddr()}, true); err == nil && n > 0 {
			t.Errorf("%s: joined %d member(s)", name, n)
		}
		for _, mem := range m.Members() {
			if mem.Name == intruder.LocalMember().Name {
				t.Errorf("%s: the manager lists the intruder as %s", name, mem.Status)
			}
		}
	}

	friend := bareMember(t, gossipSettings(t, key))
	if n, err := friend.Join([]string{m.SerfAddr()}, true); err != nil || n != 1 {
		t.Fatalf("member with the key: Join = %d, %v", n, err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if len(m.Members()) != 2 {
			return fmt.Errorf("members = %v", m.Members())
		}
		return nil
	})
}

func TestGossipKeyRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	oldKey, _ := security.NewGossipKey()
	newKey, _ := security.NewGossipKey()
	sec := gossipSettings(t, oldKey)
	m := TestServer(t, func(c *Config) { c.Security = sec })
	agentSec := gossipSettings(t, oldKey)
	agent := bareMember(t, agentSec)
	if _, err := agent.Join([]string{m.SerfAddr()}, true); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if len(m.Members()) != 2 {
			return fmt.Errorf("members = %d", len(m.Members()))
		}
		return nil
	})

	// install -> use -> remove, each answered by both members.
	// Each step is idempotent; on a loaded machine a member may answer
	// after the query's deadline, so a step is repeated until both did.
	for _, step := range []struct{ op, key string }{
		{KeyringInstall, newKey}, {KeyringUse, newKey}, {KeyringRemove, oldKey},
	} {
		testutil.WaitFor(t, 20*time.Second, func() error {
			res, err := m.GossipKeyring(step.op, step.key)
			if err != nil || res.Responses != 2 || res.Errors != 0 {
				return fmt.Errorf("%s: %+v, %v", step.op, res, err)
			}
			return nil
		})
	}
	testutil.WaitFor(t, 20*time.Second, func() error {
		res, err := m.GossipKeyring(KeyringList, "")
		if err != nil || res.Responses != 2 || res.Keys[newKey] != 2 || len(res.Keys) != 1 || res.PrimaryKeys[newKey] != 2 {
			return fmt.Errorf("list after rotation: %+v, %v", res, err)
		}
		return nil
	})
	// Both keyring files now hold only the new key: a restart keeps it.
	for _, path := range []string{sec.KeyringFile, agentSec.KeyringFile} {
		kr, err := security.ReadKeyring(path)
		if err != nil {
			t.Fatal(err)
		}
		if keys := kr.GetKeys(); len(keys) != 1 || string(kr.GetPrimaryKey()) != string(mustDecode(t, newKey)) {
			t.Errorf("%s holds %d keys, primary not the new key", path, len(keys))
		}
	}
	// A member with only the old key is out; one with the new key is in.
	if n, err := bareMember(t, gossipSettings(t, oldKey)).Join([]string{m.SerfAddr()}, true); err == nil && n > 0 {
		t.Error("a member with the removed key joined")
	}
	if _, err := bareMember(t, gossipSettings(t, newKey)).Join([]string{m.SerfAddr()}, true); err != nil {
		t.Errorf("a member with the new key: %v", err)
	}
	if _, err := m.GossipKeyring(KeyringUse, "not-base64!"); err == nil {
		t.Error("use of a malformed key succeeded")
	}
}

func mustDecode(t *testing.T, k string) []byte {
	t.Helper()
	b, err := security.DecodeGossipKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
