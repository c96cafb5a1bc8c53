package api

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

func TestSecurityGroupRules(t *testing.T) {
	e := newEnv(t)
	web := e.post("/security_groups.json", url.Values{"display_name": {"web"}}).ok().obj()
	webID := web["id"].(string)
	if rules := web["rules"].([]any); len(rules) != 0 || web["rule"] != "" {
		t.Fatalf("empty group = %v", web)
	}

	text := "# ssh from anywhere\n" +
		"tcp:22,22,ip4:0.0.0.0\n" +
		"\n" +
		" udp : 53 , 53 , ip4:10.1.2.3/8 \n" +
		"icmp:-1,-1,ip4:0.0.0.0/0\n" +
		"tcp:80,80,ip6:::/0\n" +
		"tcp:8080,8089," + webID + "\n"
	created := e.post("/security_groups.json", url.Values{
		"rule": {text}, "description": {"app tier"}, "display_name": {"app"}, "service_type": {"std"},
	}).ok()
	doc := created.obj()
	id := doc["id"].(string)
	if !strings.HasPrefix(id, "sg-") || doc["uuid"] != id || doc["account_id"] != testAccount ||
		doc["rule"] != text || doc["service_type"] != "std" || doc["description"] != "app tier" {
		t.Fatalf("created = %v", doc)
	}
	want := []any{
		map[string]any{"ip_protocol": "tcp", "ip_fport": 22.0, "ip_tport": 22.0, "protocol": "ip4", "ip_source": "0.0.0.0/0"},
		map[string]any{"ip_protocol": "udp", "ip_fport": 53.0, "ip_tport": 53.0, "protocol": "ip4", "ip_source": "10.0.0.0/8"},
		map[string]any{"ip_protocol": "icmp", "icmp_type": -1.0, "icmp_code": -1.0, "protocol": "ip4", "ip_source": "0.0.0.0/0"},
		map[string]any{"ip_protocol": "tcp", "ip_fport": 8080.0, "ip_tport": 8089.0, "protocol": nil, "ip_source": webID},
	}
	if got := doc["rules"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("rules =\n%v\nwant\n%v", got, want)
	}
	// Key order of the document and of a rule, as in §2.6.
	if got := docKeys(t, created.body); got != "id,account_id,uuid,created_at,updated_at,description,rule,service_type,display_name,rules,labels" {
		t.Fatalf("document keys = %s", got)
	}

	y := string(e.get("/security_groups/" + id + ".yml").ok().body)
	for _, line := range []string{
		"---\n:id: " + id + "\n:account_id: a-shpoolxx\n:uuid: " + id + "\n",
		"\n:rules:\n- :ip_protocol: tcp\n  :ip_fport: 22\n  :ip_tport: 22\n  :protocol: ip4\n  :ip_source: 0.0.0.0/0\n",
		"\n- :ip_protocol: icmp\n  :icmp_type: -1\n  :icmp_code: -1\n  :protocol: ip4\n  :ip_source: 0.0.0.0/0\n",
		"\n  :ip_tport: 8089\n  :protocol:\n  :ip_source: " + webID + "\n:labels: []\n",
		"\n:display_name: app\n",
	} {
		if !strings.Contains(y, line) {
			t.Fatalf("yaml lacks %q:\n%s", line, y)
		}
	}

	// icmp quirk: the first number is the code, the second the type.
	q := e.post("/security_groups.json", url.Values{"rule": {"icmp:0,8,ip4:10.0.0.1"}}).ok().obj()
	r0 := q["rules"].([]any)[0].(map[string]any)
	if r0["icmp_type"] != 8.0 || r0["icmp_code"] != 0.0 || r0["ip_source"] != "10.0.0.1/32" {
		t.Fatalf("icmp rule = %v", r0)
	}
	// type -1 with a specific code is dropped.
	if q := e.post("/security_groups.json", url.Values{"rule": {"icmp:3,-1,ip4:0.0.0.0"}}).ok().obj(); len(q["rules"].([]any)) != 0 {
		t.Fatalf("dropped icmp rule = %v", q["rules"])
	}

	e.touchAccount(otherAccount)
	foreign := e.do(as(otherAccount, req{method: "POST", path: "/security_groups.json", form: url.Values{}})).ok().obj()["id"].(string)

	for _, bad := range []string{
		"ftp:21,21,ip4:0.0.0.0",
		"tcp:0,22,ip4:0.0.0.0",
		"tcp:23,22,ip4:0.0.0.0",
		"tcp:22,70000,ip4:0.0.0.0",
		"udp:53,53,ip4:300.0.0.0",
		"icmp:0,4,ip4:0.0.0.0",
		"tcp:22,22",
		"tcp:22,22,sg-nothere",
		"tcp:22,22," + foreign,
	} {
		m := e.do(req{method: "POST", path: "/security_groups.json", form: url.Values{"rule": {bad}}})
		doc := m.apiError(400, "142")
		if doc["message"] == "" {
			t.Fatalf("rule %q: empty message", bad)
		}
		e.rejects(400, "142",
			req{method: "POST", path: "/security_groups.json", form: url.Values{"rule": {bad}}},
			req{method: "PUT", path: "/security_groups/" + id + ".json", form: url.Values{"rule": {bad}}})
	}
	msg := e.post("/security_groups.json", url.Values{"rule": {"tcp:22,22," + foreign}}).apiError(400, "142")["message"]
	if !strings.Contains(msg.(string), foreign) {
		t.Fatalf("reference message %q does not name %s", msg, foreign)
	}
	msg = e.post("/security_groups.json", url.Values{"rule": {"tcp:1,2,ip4:0.0.0.0\nudp:9,1,ip4:0.0.0.0"}}).apiError(400, "142")["message"]
	if !strings.Contains(msg.(string), "udp:9,1") {
		t.Fatalf("syntax message %q does not show the line", msg)
	}
}

func TestSecurityGroupRoutes(t *testing.T) {
	e := newEnv(t)
	e.touchAccount(otherAccount)
	a := e.post("/security_groups.json", url.Values{"display_name": {"a"}, "description": {"first"}}).ok().obj()
	aID := a["id"].(string)

	// PUT: fields, self reference, reference to a group of the account.
	b := e.post("/security_groups.json", url.Values{"display_name": {"b"}}).ok().obj()
	bID := b["id"].(string)
	upd := e.put("/security_groups/"+bID+".json", url.Values{
		"rule": {"tcp:22,22," + aID + "\ntcp:80,80," + bID}, "description": {"second"}, "display_name": {"bee"},
	}).ok().obj()
	if upd["id"] != bID || upd["description"] != "second" || upd["display_name"] != "bee" || len(upd["rules"].([]any)) != 2 {
		t.Fatalf("update = %v", upd)
	}
	if upd["updated_at"] == nil || upd["created_at"] != b["created_at"] {
		t.Fatalf("timestamps = %v / %v", upd["created_at"], upd["updated_at"])
	}

	// Lists.
	total, items := e.get("/security_groups.json").envelope()
	if total != 2 || items[0]["id"] != bID || items[1]["id"] != aID {
		t.Fatalf("list = %d %v", total, items)
	}
	if total, items = e.get("/security_groups.json?display_name=a&service_type=std").envelope(); total != 1 || items[0]["id"] != aID {
		t.Fatalf("filtered list = %d %v", total, items)
	}
	if total, _ = e.do(as(otherAccount, req{method: "GET", path: "/security_groups.json"})).envelope(); total != 0 {
		t.Fatalf("other account sees %d groups", total)
	}
	if total, _ = e.do(req{method: "GET", path: "/security_groups.json", account: acct("")}).envelope(); total != 2 {
		t.Fatalf("operator sees %d groups", total)
	}
	y := string(e.get("/security_groups.yml").ok().body)
	if !strings.HasPrefix(y, "---\n- :total: 2\n  :start: 0\n  :limit: 250\n  :results:\n  - :id: "+bID+"\n") {
		t.Fatalf("yaml list = %q", y)
	}
	e.rejects(400, "143",
		req{method: "GET", path: "/security_groups.json?service_type=gold"},
		req{method: "GET", path: "/security_groups.json?limit=x"},
		req{method: "POST", path: "/security_groups.json", form: url.Values{"service_type": {"gold"}}},
		req{method: "POST", path: "/security_groups.json", form: url.Values{"rule[]": {"tcp:22,22,ip4:0.0.0.0"}}},
		req{method: "PUT", path: "/security_groups/" + aID + ".json", form: url.Values{"rule[x]": {"y"}}},
		req{method: "GET", path: "/security_groups/xx-1.json"},
		req{method: "PUT", path: "/security_groups/xx-1.json", form: url.Values{}},
		req{method: "DELETE", path: "/security_groups/i-1.json"},
	)

	// Another account's group and an unknown one are not found.
	for _, r := range []req{
		{method: "GET", path: "/security_groups/" + aID + ".json"},
		{method: "PUT", path: "/security_groups/" + aID + ".json", form: url.Values{"description": {"x"}}},
		{method: "DELETE", path: "/security_groups/" + aID + ".json"},
	} {
		e.rejects(404, "100", as(otherAccount, r))
		r.path = strings.Replace(r.path, aID, "sg-nothere", 1)
		e.rejects(404, "100", r)
	}
	// A service_type other than the group's is not found either (§1.4).
	e.rejects(404, "100", req{method: "GET", path: "/security_groups/" + aID + ".json?service_type=other"})

	// DELETE is refused while another group references the group...
	m := e.do(req{method: "DELETE", path: "/security_groups/" + aID + ".json"}).apiError(403, "105")
	if !strings.Contains(m["message"].(string), bID) {
		t.Fatalf("message %q does not name the referencer", m["message"])
	}
	e.rejects(403, "105", req{method: "DELETE", path: "/security_groups/" + aID + ".json"})
	// ...but a self reference does not block.
	e.put("/security_groups/"+bID+".json", url.Values{"rule": {"tcp:80,80," + bID}}).ok()

	// ...and while a network vif is in it (deleted vifs do not count).
	e.putRecord(proto.KindNetworkVif, "vif-live0001", proto.NetworkVif{ID: "vif-live0001", AccountID: testAccount, SecurityGroups: []string{aID}})
	e.rejects(403, "105", req{method: "DELETE", path: "/security_groups/" + aID + ".json"})
	gone := a["created_at"]
	e.putRecord(proto.KindNetworkVif, "vif-live0001", json.RawMessage(`{"id":"vif-live0001","security_groups":["`+aID+`"],"deleted_at":"`+gone.(string)+`"}`))

	del := e.del("/security_groups/" + aID + ".json").ok().arr()
	if len(del) != 1 || del[0] != aID {
		t.Fatalf("delete = %v", del)
	}
	e.get("/security_groups/"+aID+".json").apiError(404, "100")
	y = string(e.del("/security_groups/" + bID + ".yml").ok().body)
	if y != "---\n- "+bID+"\n" {
		t.Fatalf("yaml delete = %q", y)
	}
	e.get("/security_groups/"+bID+".json").apiError(404, "100")

	// Quota: all groups of the account count.
	e.post("/security_groups.json", nil).ok()
	quota := map[string]string{"X-VDC-Account-Quota": `{"security_group.count": 1}`}
	e.rejects(400, "162", req{method: "POST", path: "/security_groups.json", form: url.Values{}, header: quota})
	quota = map[string]string{"X-VDC-Account-Quota": `{"security_group.count": 2}`}
	e.do(req{method: "POST", path: "/security_groups.json", form: url.Values{}, header: quota}).ok()
}
