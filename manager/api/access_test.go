package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/cluster"
)

// newEnvWith is newEnv with a modified API config.
func newEnvWith(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	srv := cluster.TestServer(t, nil)
	cfg := DefaultConfig()
	mod(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	a := New(cfg, srv, logging.NewTest(t))
	ts := httptest.NewServer(a)
	t.Cleanup(ts.Close)
	srv.SetAPIAddr(strings.TrimPrefix(ts.URL, "http://"))
	return &env{t: t, srv: srv, api: a, ts: ts}
}

const (
	tokenA  = "tok-a-0123456789abcdef"
	tokenOp = "tok-operator-0123456789"
)

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

func TestAccountHeaderFromUntrustedAddressIsRefused(t *testing.T) {
	// The test client connects from 127.0.0.1, which this manager does not trust.
	e := newEnvWith(t, func(c *Config) { c.TrustedFrontends = []string{"192.0.2.0/24"} })
	e.rejects(403, "105",
		req{method: "GET", path: "/ssh_key_pairs.json"},
		req{method: "GET", path: "/ssh_key_pairs.json", account: acct("")}, // would be the operator
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"display_name": {"k"}}},
		req{method: "POST", path: "/backup_storages.json", account: acct(""),
			form: url.Values{"storage_type": {"local"}, "base_uri": {"file:///x"}}},
		req{method: "GET", path: "/ssh_key_pairs.json", account: acct("a-somebody")},
	)
	if r := e.get("/ssh_key_pairs.yml"); r.status != 403 || !strings.Contains(string(r.body), ":code: '105'") {
		t.Errorf("YAML: %d %s", r.status, r.body)
	}
	r := e.get("/ssh_key_pairs.json")
	if m := r.apiError(403, "105"); !strings.Contains(m["message"].(string), "127.0.0.1") {
		t.Errorf("message %q does not name the address", m["message"])
	}
	// The operator routes are closed too.
	res, err := http.Get(e.ts.URL + "/internal/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 403 {
		t.Errorf("/internal/v1/status from an untrusted address = %d, want 403", res.StatusCode)
	}
	// An address inside a trusted CIDR is believed.
	e2 := newEnvWith(t, func(c *Config) { c.TrustedFrontends = []string{"10.0.0.0/8", "127.0.0.1"} })
	e2.get("/ssh_key_pairs.json").ok()
}

func TestAPITokens(t *testing.T) {
	e := newEnvWith(t, func(c *Config) {
		c.TrustedFrontends = []string{} // nobody: every request needs a token
		c.Tokens = []Token{{Token: tokenA, Account: "a-tokena1"}, {Token: tokenOp}}
	})
	// An account token acts as its account, with or without the header.
	doc := e.do(req{method: "POST", path: "/ssh_key_pairs.json", account: acct(""), header: bearer(tokenA),
		form: url.Values{"display_name": {"by-token"}}}).ok().obj()
	if doc["account_id"] != "a-tokena1" {
		t.Fatalf("account_id = %v, want the token's account", doc["account_id"])
	}
	id := doc["id"].(string)
	e.do(req{method: "GET", path: "/ssh_key_pairs/" + id + ".json", account: acct("a-tokena1"), header: bearer(tokenA)}).ok()
	// ... and cannot claim another account, or be the operator.
	e.rejects(403, "105",
		req{method: "GET", path: "/ssh_key_pairs.json", account: acct("a-other"), header: bearer(tokenA)},
		req{method: "DELETE", path: "/ssh_key_pairs/" + id + ".json", account: acct("a-other"), header: bearer(tokenA)},
		req{method: "GET", path: "/ssh_key_pairs.json", header: bearer("wrong-token-0123456789")},
		req{method: "POST", path: "/ssh_key_pairs.json", header: bearer("wrong-token-0123456789"), form: url.Values{"display_name": {"x"}}},
		req{method: "GET", path: "/ssh_key_pairs.json"},                    // no token
		req{method: "GET", path: "/ssh_key_pairs.json", account: acct("")}, // no token, no header
	)
	// An account token reads the infrastructure but does not change it; the
	// operator token does.
	hostForm := url.Values{"uuid": {"hn-tok1"}, "node_id": {"hva.tok1"}, "arch": {"x86_64"}, "hypervisor": {"kvm"},
		"offering_cpu_cores": {"1"}, "offering_memory_size": {"128"}}
	e.rejects(403, "105",
		req{method: "POST", path: "/host_nodes.json", account: acct(""), header: bearer(tokenA), form: hostForm},
		req{method: "POST", path: "/dc_networks.json", account: acct(""), header: bearer(tokenA), form: url.Values{"name": {"x"}}},
		req{method: "DELETE", path: "/accounts/a-tokena1.json", account: acct(""), header: bearer(tokenA)},
	)
	e.do(req{method: "GET", path: "/host_nodes.json", account: acct(""), header: bearer(tokenA)}).ok()
	e.do(req{method: "POST", path: "/host_nodes.json", account: acct(""), header: bearer(tokenOp), form: hostForm}).ok()
	e.rejects(403, "105", req{method: "PUT", path: "/host_nodes/hn-tok1.json", account: acct(""), header: bearer(tokenA),
		form: url.Values{"offering_cpu_cores": {"64"}}})
	if r := e.do(req{method: "GET", path: "/ssh_key_pairs.json", header: map[string]string{"Authorization": "Basic eDp5"}}); r.status != 403 {
		t.Errorf("basic auth: %d, want 403", r.status)
	}
	// The operator token sees everything, or acts as the account it names.
	total, _ := e.do(req{method: "GET", path: "/ssh_key_pairs.json", account: acct(""), header: bearer(tokenOp)}).envelope()
	if total != 1 {
		t.Errorf("operator list total = %d, want 1", total)
	}
	total, _ = e.do(req{method: "GET", path: "/ssh_key_pairs.json", account: acct("a-elsewh1"), header: bearer(tokenOp)}).envelope()
	if total != 0 {
		t.Errorf("operator as a-elsewh1: total = %d, want 0", total)
	}
	// Operator routes: the operator token only.
	for tok, want := range map[string]int{tokenOp: 200, tokenA: 403, "": 403} {
		hr, _ := http.NewRequest("GET", e.ts.URL+"/internal/v1/status", nil)
		if tok != "" {
			hr.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("/internal/v1/status with %q: %d, want %d", tok, res.StatusCode, want)
		}
	}
}

func TestAccessConfigValidation(t *testing.T) {
	for _, c := range []Config{
		{TrustedFrontends: []string{"10.0.0.0/33"}},
		{TrustedFrontends: []string{"not-an-address"}},
		{Tokens: []Token{{Token: "short"}}},
		{Tokens: []Token{{Token: tokenA, Account: "shpoolxx"}}},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config: %v", err)
	}
}

func TestRateLimitAnswers429AndChangesNothing(t *testing.T) {
	// One token per 1000 s: the bucket does not refill during the test.
	e := newEnvWith(t, func(c *Config) { c.RateLimit = RateLimit{RequestsPerSecond: 0.001, Burst: 3} })
	for i := 0; i < 3; i++ {
		e.get("/ssh_key_pairs.json").ok()
	}
	e.rejects(429, "162",
		req{method: "GET", path: "/ssh_key_pairs.json"},
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"display_name": {"k"}}},
	)
	r := e.get("/ssh_key_pairs.yml")
	if r.status != 429 || !strings.Contains(string(r.body), ":code: '162'") ||
		!strings.Contains(string(r.body), ":error: Dcmgr::Endpoints::ExceedQuotaLimit") {
		t.Errorf("YAML rendering: %d %s", r.status, r.body)
	}
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q", ra)
	}
	// The bucket is the account's: another account and the operator go on.
	e.do(req{method: "GET", path: "/ssh_key_pairs.json", account: acct("a-another")}).ok()
	e.do(req{method: "GET", path: "/ssh_key_pairs.json", account: acct("")}).ok()
}

func TestListLimitIsCapped(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.MaxListLimit = 2 })
	for i := 0; i < 3; i++ {
		e.post("/ssh_key_pairs.json", url.Values{"display_name": {fmt.Sprint(i)}}).ok()
	}
	for _, q := range []string{"", "?limit=999999999", "?limit=3"} {
		env := e.get("/ssh_key_pairs.json" + q).ok().arr()[0].(map[string]any)
		if env["limit"].(float64) != 2 || len(env["results"].([]any)) != 2 || env["total"].(float64) != 3 {
			t.Errorf("%s: envelope %v", q, env)
		}
	}
	if d := DefaultConfig().MaxListLimit; d != 1000 {
		t.Errorf("default cap %d", d)
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	big := strings.Repeat("x", 2048)
	e.rejects(413, "904",
		req{method: "POST", path: "/ssh_key_pairs.json", form: url.Values{"display_name": {big}}},
		req{method: "POST", path: "/ssh_key_pairs.json", header: map[string]string{"Content-Type": "application/json"},
			body: `{"ssh_key_pair":{"display_name":"` + big + `"}}`},
	)
	// Chunked (no Content-Length) is bounded too.
	e.unchanged(func() {
		pr, pw := io.Pipe()
		go func() {
			for i := 0; i < 8; i++ {
				_, _ = pw.Write([]byte("display_name=" + big))
			}
			pw.Close()
		}()
		hr, _ := http.NewRequest("POST", e.ts.URL+Prefix+"/ssh_key_pairs.json", pr)
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		hr.Header.Set("X-VDC-Account-UUID", testAccount)
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 413 {
			t.Errorf("chunked oversize body: %d, want 413", res.StatusCode)
		}
	})
}

// clientFrom is an HTTP client whose connections come from local (a
// loopback address other than 127.0.0.1).
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 20 * time.Second}
}

func TestForwardedRequestIsJudgedByTheClientAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	// Managers talk from 127.0.0.1 (their advertised address); the trusted
	// frontend is 127.0.0.2 and 127.0.0.3 is an outsider.
	var nodes []*node
	var first string
	for i := 0; i < 3; i++ {
		srv := cluster.TestServer(t, func(c *cluster.Config) {
			c.BootstrapExpect = 3
			if first != "" {
				c.Join = []string{first}
			}
		})
		if first == "" {
			first = srv.SerfAddr()
		}
		cfg := DefaultConfig()
		cfg.TrustedFrontends = []string{"127.0.0.2/32"}
		a := New(cfg, srv, logging.NewTest(t))
		ts := httptest.NewServer(a)
		t.Cleanup(ts.Close)
		srv.SetAPIAddr(strings.TrimPrefix(ts.URL, "http://"))
		nodes = append(nodes, &node{srv: srv, ts: ts})
	}
	cluster.WaitForLeader(t, nodes[0].srv, nodes[1].srv, nodes[2].srv)
	testutil.WaitFor(t, 10*time.Second, func() error {
		for _, n := range nodes {
			if _, err := n.srv.LeaderAPI(); err != nil {
				return err
			}
		}
		return nil
	})
	roles := func() (follower, leader *node) {
		for _, n := range nodes {
			if n.srv.IsLeader() {
				leader = n
			} else if follower == nil {
				follower = n
			}
		}
		return follower, leader
	}
	send := func(from string, n *node, hdr map[string]string) (int, string) {
		form := url.Values{"storage_type": {"local"}, "base_uri": {"file:///fwd"}}
		hr, _ := http.NewRequestWithContext(context.Background(), "POST", n.ts.URL+Prefix+"/backup_storages.json",
			strings.NewReader(form.Encode()))
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range hdr {
			hr.Header.Set(k, v)
		}
		res, err := clientFrom(from).Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	// The trusted frontend's write reaches the leader through a follower
	// (retried while an election on a loaded machine answers 503, as a
	// client would).
	testutil.WaitFor(t, 20*time.Second, func() error {
		follower, leader := roles()
		if follower == nil || leader == nil {
			return fmt.Errorf("no leader")
		}
		st, body := send("127.0.0.2", follower, nil)
		if st == http.StatusServiceUnavailable {
			return fmt.Errorf("%d %s", st, body)
		}
		if st != 200 {
			t.Fatalf("trusted frontend via follower: %d %s", st, body)
		}
		return nil
	})
	// An outsider is refused by any manager, before any forwarding ...
	for _, n := range nodes {
		if st, body := send("127.0.0.3", n, nil); st != 403 {
			t.Fatalf("outsider: %d %s", st, body)
		}
		// ... and cannot pose as a forward: it is not a manager's address.
		if st, body := send("127.0.0.3", n, map[string]string{headerForwarded: "1", headerClientAddr: "127.0.0.2"}); st != 403 {
			t.Fatalf("outsider posing as a forwarding manager: %d %s", st, body)
		}
	}
}
