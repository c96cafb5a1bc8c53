package api

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/vdc-project/vdc/proto"
)

// testPublicKey returns a fresh ed25519 public key as an authorized_keys line.
func testPublicKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("ssh key: %v", err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " user@host"
}

func TestSshKeyPairGenerated(t *testing.T) {
	e := newEnv(t)
	doc := e.post("/ssh_key_pairs.json", url.Values{"display_name": {"gen"}, "download_once": {"1"}}).ok().obj()
	id := doc["id"].(string)
	priv, _ := doc["private_key"].(string)
	if !strings.HasPrefix(priv, "-----BEGIN RSA PRIVATE KEY-----\n") {
		t.Fatalf("private_key = %q", priv)
	}
	signer, err := ssh.ParsePrivateKey([]byte(priv))
	if err != nil {
		t.Fatalf("parse private key: %v", err)
	}
	stored := e.get("/ssh_key_pairs/" + id + ".json").ok().obj()
	if _, ok := stored["private_key"]; ok {
		t.Fatalf("show has private_key: %v", stored)
	}
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(stored["public_key"].(string)))
	if err != nil {
		t.Fatalf("stored public key: %v", err)
	}
	if !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
		t.Fatalf("stored public key does not match the private key")
	}
	if pub.Type() != ssh.KeyAlgoRSA || comment != strings.TrimPrefix(id, "ssh-") {
		t.Fatalf("public key type %s comment %q", pub.Type(), comment)
	}
	if got, want := stored["finger_print"], ssh.FingerprintLegacyMD5(pub); got != want {
		t.Fatalf("finger_print = %v, want %v", got, want)
	}
	if doc["finger_print"] != stored["finger_print"] || doc["public_key"] != stored["public_key"] {
		t.Fatalf("create and show differ: %v / %v", doc, stored)
	}
	// The private key is never stored.
	for bucket, kv := range e.dump() {
		for k, v := range kv {
			if strings.Contains(v, "PRIVATE KEY") {
				t.Fatalf("private key stored in %s/%s", bucket, k)
			}
		}
	}
}

func TestSshKeyPairRoutes(t *testing.T) {
	e := newEnv(t)
	e.touchAccount(otherAccount)
	key := testPublicKey(t)
	created := e.post("/ssh_key_pairs.json", url.Values{
		"public_key": {key + "\n"}, "description": {"mine"}, "display_name": {"laptop"}, "service_type": {"std"},
	}).ok()
	doc := created.obj()
	id := doc["id"].(string)
	pub, _, _, _, _ := ssh.ParseAuthorizedKey([]byte(key))
	if !strings.HasPrefix(id, "ssh-") || doc["uuid"] != id || doc["public_key"] != key ||
		doc["finger_print"] != ssh.FingerprintLegacyMD5(pub) || doc["deleted_at"] != nil || doc["account_id"] != testAccount {
		t.Fatalf("created = %v", doc)
	}
	if _, ok := doc["private_key"]; ok {
		t.Fatalf("private_key returned for a given public key")
	}
	if !strings.Contains(string(created.body), `"finger_print":"`) ||
		!regexp.MustCompile(`^([0-9a-f]{2}:){15}[0-9a-f]{2}$`).MatchString(doc["finger_print"].(string)) {
		t.Fatalf("finger_print = %v", doc["finger_print"])
	}

	y := string(e.get("/ssh_key_pairs/" + id + ".yml").ok().body)
	for _, line := range []string{
		"---\n:id: " + id + "\n:account_id: a-shpoolxx\n:uuid: " + id + "\n:finger_print: " + doc["finger_print"].(string) + "\n",
		// Psych folds long plain scalars at 80 columns, as Ruby did.
		"\n:public_key: ssh-ed25519 AAAA",
		"\n  user@host\n:description: mine\n",
		"\n:service_type: std\n:display_name: laptop\n:deleted_at:",
		"\n:labels: []\n",
	} {
		if !strings.Contains(y, line) {
			t.Fatalf("yaml lacks %q:\n%s", line, y)
		}
	}

	e.rejects(400, "173",
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"public_key": {"garbage"}}},
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"public_key": {"ssh-rsa AAAAB3NzaC1yc2E"}}},
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"public_key": {key + "\n" + key}}},
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"public_key": {`command="ls" ` + key}}},
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"public_key[]": {key}}},
	)
	e.rejects(400, "143",
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"public_key": {key}, "service_type": {"gold"}}},
		req{method: "GET", path: "/ssh_key_pairs.json?service_type=gold"},
		req{method: "GET", path: "/ssh_key_pairs.json?created_since=yesterday"},
		req{method: "GET", path: "/ssh_key_pairs/sg-1.json"},
		req{method: "PUT", path: "/ssh_key_pairs/x.json", form: url.Values{}},
		req{method: "DELETE", path: "/ssh_key_pairs/ssh-.json"},
		// A malformed quota header.
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"public_key": {key}},
			header: map[string]string{"X-VDC-Account-Quota": `{"ssh_key_pair.count": `}},
	)
	// A service_type param other than the record's is "not found" (§1.4),
	// before the value itself is validated.
	e.rejects(404, "100", req{method: "PUT", path: "/ssh_key_pairs/" + id + ".json", form: url.Values{"service_type": {"gold"}}})
	for _, r := range []req{
		{method: "GET", path: "/ssh_key_pairs/" + id + ".json"},
		{method: "PUT", path: "/ssh_key_pairs/" + id + ".json", form: url.Values{"description": {"x"}}},
		{method: "DELETE", path: "/ssh_key_pairs/" + id + ".json"},
	} {
		e.rejects(404, "100", as(otherAccount, r))
		r.path = strings.Replace(r.path, id, "ssh-nothere", 1)
		e.rejects(404, "100", r)
	}

	upd := e.put("/ssh_key_pairs/"+id+".json", url.Values{"description": {"work"}, "display_name": {"desk"}, "service_type": {"std"}}).ok().arr()
	if len(upd) != 1 || upd[0] != id {
		t.Fatalf("update = %v", upd)
	}
	if got := e.get("/ssh_key_pairs/" + id + ".json").ok().obj(); got["description"] != "work" || got["display_name"] != "desk" {
		t.Fatalf("after update = %v", got)
	}

	second := e.post("/ssh_key_pairs.json", url.Values{"public_key": {testPublicKey(t)}, "display_name": {"two"}}).ok().obj()["id"].(string)
	total, items := e.get("/ssh_key_pairs.json").envelope()
	if total != 2 || items[0]["id"] != second || items[1]["id"] != id {
		t.Fatalf("list = %d %v", total, items)
	}
	if total, items = e.get("/ssh_key_pairs.json?display_name=desk").envelope(); total != 1 || items[0]["id"] != id {
		t.Fatalf("display_name list = %d %v", total, items)
	}
	if total, _ = e.do(as(otherAccount, req{method: "GET", path: "/ssh_key_pairs.json"})).envelope(); total != 0 {
		t.Fatalf("other account list = %d", total)
	}

	// In use by an alive instance: 400/158 unless force=true.
	e.putRecord(proto.KindInstance, "i-user0001", map[string]any{"id": "i-user0001", "ssh_key_pair_id": id, "state": "running", "terminated_at": nil})
	e.putRecord(proto.KindInstance, "i-dead0001", map[string]any{"id": "i-dead0001", "ssh_key_pair_id": second, "state": "terminated", "terminated_at": "2024-01-01T00:00:00Z"})
	m := e.do(req{method: "DELETE", path: "/ssh_key_pairs/" + id + ".json"}).apiError(400, "158")
	if !strings.Contains(m["message"].(string), "i-user0001") {
		t.Fatalf("158 message = %v", m["message"])
	}
	e.rejects(400, "158",
		req{method: "DELETE", path: "/ssh_key_pairs/" + id + ".json"},
		req{method: "DELETE", path: "/ssh_key_pairs/" + id + ".json?force=yes"})

	// A terminated instance does not block.
	if del := e.del("/ssh_key_pairs/" + second + ".json").ok().arr(); len(del) != 1 || del[0] != second {
		t.Fatalf("delete = %v", del)
	}
	deleted := e.get("/ssh_key_pairs/" + second + ".json").ok().obj()
	if deleted["deleted_at"] == nil {
		t.Fatalf("deleted key pair = %v", deleted)
	}
	// Deleting again succeeds and keeps deleted_at.
	e.unchanged(func() { e.del("/ssh_key_pairs/" + second + ".json").ok() })
	if total, items = e.get("/ssh_key_pairs.json").envelope(); total != 1 || items[0]["id"] != id {
		t.Fatalf("list after delete = %d %v", total, items)
	}

	// Quota counts alive key pairs only.
	quota := func(n int) map[string]string {
		return map[string]string{"X-VDC-Account-Quota": fmt.Sprintf(`{"ssh_key_pair.count": %d}`, n)}
	}
	e.rejects(400, "162", req{method: "POST", path: "/ssh_key_pairs.json", header: quota(1), form: url.Values{}})
	e.rejects(400, "162", req{method: "POST", path: "/ssh_key_pairs.json", header: quota(1), form: url.Values{"public_key": {"bad"}}})
	e.do(req{method: "POST", path: "/ssh_key_pairs.json", header: quota(2), form: url.Values{"public_key": {key}}}).ok()

	e.do(req{method: "DELETE", path: "/ssh_key_pairs/" + id + ".json?force=true"}).ok()
	if got := e.get("/ssh_key_pairs/" + id + ".json").ok().obj(); got["deleted_at"] == nil {
		t.Fatalf("forced delete = %v", got)
	}
}

// TestSshKeyPairQuotaRace: N concurrent creates under a quota of N-2 leave
// exactly N-2 key pairs, the rest are refused with 400/162.
func TestSshKeyPairQuotaRace(t *testing.T) {
	e := newEnv(t)
	e.touchAccount(testAccount)
	const n = 8
	key := testPublicKey(t)
	body := url.Values{"public_key": {key}}.Encode()
	type result struct {
		status int
		body   string
		err    error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hr, err := http.NewRequest("POST", e.ts.URL+Prefix+"/ssh_key_pairs.json", strings.NewReader(body))
			if err != nil {
				results[i].err = err
				return
			}
			hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			hr.Header["X_VDC_ACCOUNT_UUID"] = []string{testAccount}
			hr.Header.Set("X-VDC-Account-Quota", fmt.Sprintf(`{"ssh_key_pair.count": %d}`, n-2))
			res, err := http.DefaultClient.Do(hr)
			if err != nil {
				results[i].err = err
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			results[i] = result{status: res.StatusCode, body: string(b), err: err}
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for _, r := range results {
		switch {
		case r.err != nil:
			t.Fatalf("request: %v", r.err)
		case r.status == 200:
			ok++
		case r.status == 400 && strings.Contains(r.body, `"code":"162"`):
			refused++
		default:
			t.Fatalf("unexpected answer %d %s", r.status, r.body)
		}
	}
	if ok != n-2 || refused != 2 {
		t.Fatalf("succeeded %d, refused %d; want %d and 2", ok, refused, n-2)
	}
	if total, _ := e.get("/ssh_key_pairs.json").envelope(); total != n-2 {
		t.Fatalf("stored %d key pairs, want %d", total, n-2)
	}
}
