package api

import (
	"net/url"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

// The account_id / service_type / display_name filter the lists share: a
// record of another service type (written as an older release or another
// frontend would) is left out when the list asks for one.
func TestListsFilterByServiceType(t *testing.T) {
	e := newEnv(t)
	keep := e.post("/security_groups.json", url.Values{"display_name": {"a"}}).ok().obj()["id"].(string)
	other := e.post("/security_groups.json", url.Values{"display_name": {"a"}}).ok().obj()["id"].(string)
	var g proto.SecurityGroup
	e.record(proto.KindSecurityGroup, other, &g)
	g.ServiceType = "legacy"
	e.seed(proto.KindSecurityGroup, other, &g)

	total, results := e.get("/security_groups.json?service_type=std").envelope()
	if total != 1 || len(results) != 1 || results[0]["id"] != keep {
		t.Fatalf("service_type=std: total %d, %v; want only %s", total, results, keep)
	}
	if total, _ := e.get("/security_groups.json?display_name=a").envelope(); total != 2 {
		t.Fatalf("display_name=a: total %d, want 2", total)
	}
	if total, _ := e.get("/security_groups.json?display_name=a&service_type=std&account_id=" + g.AccountID).envelope(); total != 1 {
		t.Fatalf("all three filters: total %d, want 1", total)
	}
	e.get("/security_groups.json?service_type=legacy").apiError(400, "143")
}
