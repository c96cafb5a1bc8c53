package api

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/proto"
)

var operator = acct("")

func strs(t *testing.T, a []any) []string {
	t.Helper()
	out := []string{}
	for _, v := range a {
		out = append(out, v.(string))
	}
	return out
}

func TestAccountsShowUpdateDelete(t *testing.T) {
	e := newEnv(t)
	e.get("/host_nodes.json").ok() // creates a-shpoolxx
	e.do(req{method: "GET", path: "/host_nodes.json", account: acct("a-other")}).ok()

	r := e.get("/accounts/a-shpoolxx.json").ok()
	wantKeys(t, r.body, "id", "created_at", "updated_at")
	if got := r.obj()["id"]; got != testAccount {
		t.Fatalf("id = %v", got)
	}
	if y := string(e.get("/accounts/a-shpoolxx.yml").ok().body); !strings.HasPrefix(y, "---\n:id: a-shpoolxx\n:created_at: ") {
		t.Fatalf("yaml = %q", y)
	}
	// Operators address any account.
	if got := e.do(req{method: "GET", path: "/accounts/a-other.json", account: operator}).ok().obj()["id"]; got != "a-other" {
		t.Fatalf("operator show = %v", got)
	}

	e.rejects(404, "100",
		req{method: "GET", path: "/accounts/a-other.json"}, // another caller's account
		req{method: "GET", path: "/accounts/a-other/usage.json"},
		req{method: "PUT", path: "/accounts/a-other.json", form: url.Values{"enabled": {"false"}}},
		req{method: "DELETE", path: "/accounts/a-other.json"},
		req{method: "DELETE", path: "/accounts/a-other/security_groups.json"},
		req{method: "DELETE", path: "/accounts/a-other/ssh_key_pairs.json"},
		req{method: "DELETE", path: "/accounts/a-other/backup_objects.json"},
		req{method: "GET", path: "/accounts/a-nothere.json", account: operator},
		req{method: "GET", path: "/accounts/a-nothere/usage.json", account: operator},
		req{method: "PUT", path: "/accounts/a-nothere.json", account: operator, form: url.Values{"enabled": {"true"}}},
		req{method: "DELETE", path: "/accounts/a-nothere.json", account: operator},
		req{method: "DELETE", path: "/accounts/a-nothere/security_groups.json", account: operator},
		req{method: "DELETE", path: "/accounts/a-nothere/ssh_key_pairs.json", account: operator},
		req{method: "DELETE", path: "/accounts/a-nothere/backup_objects.json", account: operator},
	)
	e.rejects(400, "110",
		req{method: "GET", path: "/accounts/shpoolxx.json", account: operator},
		req{method: "DELETE", path: "/accounts/hn-shpoolxx.json", account: operator},
	)
	e.rejects(400, "143",
		req{method: "PUT", path: "/accounts/a-other.json", account: operator, form: url.Values{"enabled": {"yes"}}},
		req{method: "GET", path: "/accounts/a-other/usage.json?service_type=bogus", account: operator},
	)

	// Disable: the header is refused with 403/104; enable lets it in again.
	r = e.do(req{method: "PUT", path: "/accounts/a-other.json", account: operator, form: url.Values{"enabled": {"false"}}}).ok()
	wantKeys(t, r.body, "id", "created_at", "updated_at")
	var acc proto.Account
	e.record(proto.KindAccount, "a-other", &acc)
	if acc.Enabled {
		t.Fatalf("still enabled")
	}
	e.rejects(403, "104", req{method: "GET", path: "/host_nodes.json", account: acct("a-other")})
	e.do(req{method: "PUT", path: "/accounts/a-other.json", account: operator, form: url.Values{"enabled": {"true"}}}).ok()
	e.do(req{method: "GET", path: "/host_nodes.json", account: acct("a-other")}).ok()
	// No change requested: nothing written.
	e.unchanged(func() {
		e.do(req{method: "PUT", path: "/accounts/a-other.json", account: operator, form: url.Values{}}).ok()
		e.do(req{method: "PUT", path: "/accounts/a-other.json", account: operator, form: url.Values{"enabled": {"true"}}}).ok()
	})

	// Logical delete: the record stays, the header is refused.
	del := e.do(req{method: "DELETE", path: "/accounts/a-other.json", account: acct("a-other")}).ok().arr()
	if !reflect.DeepEqual(strs(t, del), []string{"a-other"}) {
		t.Fatalf("delete = %v", del)
	}
	e.record(proto.KindAccount, "a-other", &acc)
	if acc.DeletedAt == nil {
		t.Fatalf("deleted_at not set")
	}
	e.rejects(403, "104", req{method: "GET", path: "/accounts/a-other.json", account: acct("a-other")})
	e.do(req{method: "GET", path: "/accounts/a-other.json", account: operator}).ok()
	e.unchanged(func() {
		if del := e.do(req{method: "DELETE", path: "/accounts/a-other.yml", account: operator}).ok(); string(del.body) != "---\n- a-other\n" {
			t.Fatalf("second delete = %q", del.body)
		}
	})
}

func TestAccountsUsage(t *testing.T) {
	e := newEnv(t)
	e.get("/host_nodes.json").ok()
	now := time.Now().UTC()
	e.seed(proto.KindSecurityGroup, "sg-u1", proto.SecurityGroup{ID: "sg-u1", AccountID: testAccount, ServiceType: "std"})
	e.seed(proto.KindSecurityGroup, "sg-u2", proto.SecurityGroup{ID: "sg-u2", AccountID: testAccount, ServiceType: "std"})
	e.seed(proto.KindSecurityGroup, "sg-x", proto.SecurityGroup{ID: "sg-x", AccountID: "a-other", ServiceType: "std"})
	e.seed(proto.KindSshKeyPair, "ssh-u1", proto.SshKeyPair{ID: "ssh-u1", AccountID: testAccount, ServiceType: "std"})
	e.seed(proto.KindSshKeyPair, "ssh-u2", proto.SshKeyPair{ID: "ssh-u2", AccountID: testAccount, ServiceType: "std", DeletedAt: &now})
	e.seed(proto.KindBackupObject, "bo-u1", proto.BackupObject{ID: "bo-u1", AccountID: testAccount, State: "available", Size: 3 << 20, ServiceType: "std"})
	e.seed(proto.KindBackupObject, "bo-u2", proto.BackupObject{ID: "bo-u2", AccountID: testAccount, State: "available", Size: 1<<20 + 5, ServiceType: "std"})
	e.seed(proto.KindBackupObject, "bo-u3", proto.BackupObject{ID: "bo-u3", AccountID: testAccount, State: "deleted", Size: 8 << 20, DeletedAt: &now})
	e.seed(proto.KindNetwork, "nw-u1", proto.Network{ID: "nw-u1", AccountID: testAccount, ServiceType: "std"})
	e.seed(proto.KindImage, "wmi-u1", proto.Image{ID: "wmi-u1", AccountID: testAccount, State: "available", ServiceType: "std",
		Timestamps: proto.Timestamps{CreatedAt: now}})

	r := e.get("/accounts/a-shpoolxx/usage.json").ok()
	wantKeys(t, r.body, QuotaKeys...)
	want := map[string]any{
		"instance.count": 0.0, "instance.quota_weight": 0.0, "instance.backup_operations_per_hour": 1.0,
		"volume.count": 0.0, "volume.size_mb": 0.0, "image.count": 1.0,
		"backup_object.count": 2.0, "backup_object.size_mb": 4.0, "security_group.count": 2.0,
		"ssh_key_pair.count": 1.0, "load_balancer.count": 0.0, "network.count": 1.0,
	}
	if got := r.obj(); !reflect.DeepEqual(got, want) {
		t.Fatalf("usage = %v\nwant    %v", got, want)
	}
	if !strings.Contains(string(r.body), `"instance.quota_weight":0.0,`) || !strings.Contains(string(r.body), `"instance.count":0,`) {
		t.Fatalf("number forms: %s", r.body)
	}
	y := string(e.get("/accounts/a-shpoolxx/usage.yml?service_type=std").ok().body)
	if !strings.HasPrefix(y, "---\n:instance.count: 0\n:instance.quota_weight: 0.0\n") || !strings.HasSuffix(y, ":network.count: 1\n") {
		t.Fatalf("yaml usage = %q", y)
	}
	// Usage of another account, by an operator.
	got := e.do(req{method: "GET", path: "/accounts/a-shpoolxx/usage.json", account: operator}).ok().obj()
	if got["security_group.count"] != 2.0 {
		t.Fatalf("operator usage = %v", got)
	}
}

func TestAccountsBulkSecurityGroups(t *testing.T) {
	e := newEnv(t)
	e.get("/host_nodes.json").ok()
	now := time.Now().UTC()
	sg := func(id, account, rule string) {
		e.seed(proto.KindSecurityGroup, id, proto.SecurityGroup{ID: id, AccountID: account, Rule: rule, ServiceType: "std"})
	}
	sg("sg-free", testAccount, "tcp:22,22,ip4:0.0.0.0/0")
	sg("sg-refd", testAccount, "")                                   // referenced by sg-refr only
	sg("sg-refr", testAccount, "tcp:80,80,sg-refd\ntcp:1,1,sg-refr") // self reference does not block
	sg("sg-vif", testAccount, "")                                    // in an alive vif
	sg("sg-outs", testAccount, "")                                   // referenced by another account's group
	sg("sg-cyca", testAccount, "tcp:1,1,sg-cycb")
	sg("sg-cycb", testAccount, "tcp:1,1,sg-cyca")
	sg("sg-oldv", testAccount, "") // only in a deleted vif
	sg("sg-theirs", "a-other", "tcp:22,22,sg-outs")
	e.seed(proto.KindNetworkVif, "vif-1", proto.NetworkVif{ID: "vif-1", AccountID: testAccount, SecurityGroups: []string{"sg-vif"}})
	e.seed(proto.KindNetworkVif, "vif-2", proto.NetworkVif{ID: "vif-2", AccountID: testAccount, SecurityGroups: []string{"sg-oldv"}, DeletedAt: &now})

	e.rejects(404, "100", req{method: "DELETE", path: "/accounts/a-other/security_groups.json"})

	got := strs(t, e.del("/accounts/a-shpoolxx/security_groups.json").ok().arr())
	if want := []string{"sg-free", "sg-refd", "sg-refr", "sg-oldv"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("deleted = %v, want %v", got, want)
	}
	for _, id := range []string{"sg-free", "sg-refd", "sg-refr", "sg-oldv"} {
		if e.exists(proto.KindSecurityGroup, id) {
			t.Fatalf("%s not deleted", id)
		}
	}
	for _, id := range []string{"sg-vif", "sg-outs", "sg-cyca", "sg-cycb", "sg-theirs"} {
		if !e.exists(proto.KindSecurityGroup, id) {
			t.Fatalf("%s deleted", id)
		}
	}
	// Nothing left that may go: [] and no write.
	e.unchanged(func() {
		if y := string(e.del("/accounts/a-shpoolxx/security_groups.yml").ok().body); y != "--- []\n" {
			t.Fatalf("second run = %q", y)
		}
	})
}

func TestAccountsBulkSshKeyPairsAndBackupObjects(t *testing.T) {
	e := newEnv(t)
	e.get("/host_nodes.json").ok()
	e.do(req{method: "GET", path: "/host_nodes.json", account: acct("a-other")}).ok()
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	e.seed(proto.KindSshKeyPair, "ssh-a1", proto.SshKeyPair{ID: "ssh-a1", AccountID: testAccount})
	e.seed(proto.KindSshKeyPair, "ssh-a2", proto.SshKeyPair{ID: "ssh-a2", AccountID: testAccount})
	e.seed(proto.KindSshKeyPair, "ssh-gone", proto.SshKeyPair{ID: "ssh-gone", AccountID: testAccount, DeletedAt: &past})
	e.seed(proto.KindSshKeyPair, "ssh-x", proto.SshKeyPair{ID: "ssh-x", AccountID: "a-other"})
	e.seed(proto.KindBackupObject, "bo-a1", proto.BackupObject{ID: "bo-a1", AccountID: testAccount, State: "available"})
	e.seed(proto.KindBackupObject, "bo-pend", proto.BackupObject{ID: "bo-pend", AccountID: testAccount, State: "pending"})
	e.seed(proto.KindBackupObject, "bo-a2", proto.BackupObject{ID: "bo-a2", AccountID: testAccount, State: "available"})
	e.seed(proto.KindBackupObject, "bo-x", proto.BackupObject{ID: "bo-x", AccountID: "a-other", State: "available"})

	got := strs(t, e.del("/accounts/a-shpoolxx/ssh_key_pairs.json").ok().arr())
	if want := []string{"ssh-a1", "ssh-a2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ssh deleted = %v", got)
	}
	var k proto.SshKeyPair
	e.record(proto.KindSshKeyPair, "ssh-a1", &k)
	if k.DeletedAt == nil {
		t.Fatalf("ssh-a1 not logically deleted")
	}
	e.record(proto.KindSshKeyPair, "ssh-gone", &k)
	if !k.DeletedAt.Equal(past) {
		t.Fatalf("ssh-gone deleted_at changed: %v", k.DeletedAt)
	}
	e.record(proto.KindSshKeyPair, "ssh-x", &k)
	if k.DeletedAt != nil {
		t.Fatalf("other account's key deleted")
	}

	got = strs(t, e.del("/accounts/a-shpoolxx/backup_objects.json").ok().arr())
	if want := []string{"bo-a1", "bo-a2"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("bo deleted = %v", got)
	}
	var bo proto.BackupObject
	e.record(proto.KindBackupObject, "bo-a2", &bo)
	if bo.State != "deleted" || bo.DeletedAt == nil {
		t.Fatalf("bo-a2 = %+v", bo)
	}
	for id, state := range map[string]string{"bo-pend": "pending", "bo-x": "available"} {
		e.record(proto.KindBackupObject, id, &bo)
		if bo.State != state || bo.DeletedAt != nil {
			t.Fatalf("%s changed: %+v", id, bo)
		}
	}

	// Operators clear any account.
	got = strs(t, e.do(req{method: "DELETE", path: "/accounts/a-other/ssh_key_pairs.json", account: operator}).ok().arr())
	if !reflect.DeepEqual(got, []string{"ssh-x"}) {
		t.Fatalf("operator ssh deleted = %v", got)
	}
	e.unchanged(func() {
		if got := e.del("/accounts/a-shpoolxx/backup_objects.json").ok().arr(); len(got) != 0 {
			t.Fatalf("second run = %v", got)
		}
		if got := e.del("/accounts/a-shpoolxx/ssh_key_pairs.json").ok().arr(); len(got) != 0 {
			t.Fatalf("second run = %v", got)
		}
	})
}
