package api

import (
	"context"
	"fmt"
	"net/url"
	"testing"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Helpers shared by the network tests.

// otherAccount is a second tenant.

// asOther is a request as otherAccount.
func asOther(method, path string, form url.Values) req {
	return req{method: method, path: path, form: form, account: acct(otherAccount)}
}

// commitRecords stores records directly (kind, id, value triples), for
// resources whose routes other issues own (security groups, instances).
func (e *env) commitRecords(recs ...any) {
	e.t.Helper()
	_, err := e.api.commit(context.Background(), func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		for i := 0; i+2 < len(recs); i += 3 {
			b.Create(recs[i].(string), recs[i+1].(string), recs[i+2])
		}
		return nil, nil
	})
	if err != nil {
		e.t.Fatalf("commit records: %v", err)
	}
}

// securityGroup stores a security group of account.
func (e *env) securityGroup(id, account string) {
	e.t.Helper()
	now := e.api.now()
	e.commitRecords(proto.KindSecurityGroup, id, proto.SecurityGroup{
		ID: id, Timestamps: stamps(now), AccountID: account, ServiceType: "std", Labels: []proto.Label{},
	})
}

// dcNetwork creates a DC network offering every mode and allowing networks.
func (e *env) dcNetwork(name string) string {
	e.t.Helper()
	// Create the second tenant's account now, so that its rejected requests
	// later change nothing.
	e.do(asOther("GET", "/dc_networks.json", nil)).ok()
	id := e.post("/dc_networks.json", url.Values{"name": {name}}).ok().obj()["id"].(string)
	e.put("/dc_networks/"+id+".json", url.Values{"allow_new_networks": {"true"}}).ok()
	e.put("/dc_networks/"+id+"/offering_modes/add.json", url.Values{"mode": {"securitygroup,l2overlay"}}).ok()
	return id
}

// network creates a network on dcn with the given extra parameters.
func (e *env) network(dcn string, extra url.Values) map[string]any {
	e.t.Helper()
	f := url.Values{"dc_network": {dcn}, "network": {"10.0.0.0"}, "prefix": {"24"}, "network_mode": {"securitygroup"}}
	for k, v := range extra {
		f[k] = v
	}
	return e.post("/networks.json", f).ok().obj()
}

// newVif creates a bare vif on nw and returns its id and address.
func (e *env) newVif(nw string) (string, string) {
	e.t.Helper()
	v := e.post("/networks/"+nw+"/vifs.json", nil).ok().obj()
	ip, _ := v["ipv4_address"].(string)
	return v["id"].(string), ip
}

// records returns the decoded records of kind.
func records[T any](e *env, kind string) []T {
	e.t.Helper()
	var out []T
	err := e.srv.Store().View(func(tx *state.Tx) error {
		return tx.Each(kind, false, func(en state.Entry) error {
			var v T
			if err := decodeInto(en, &v); err != nil {
				return err
			}
			out = append(out, v)
			return nil
		})
	})
	if err != nil {
		e.t.Fatalf("read %s: %v", kind, err)
	}
	return out
}

func (e *env) count(kind string) int {
	e.t.Helper()
	n := 0
	_ = e.srv.Store().View(func(tx *state.Tx) error { n = tx.Count(kind); return nil })
	return n
}

func wantEq(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func TestIPRangeArithmetic(t *testing.T) {
	ip := func(s string) uint32 {
		v, ok := parseIPv4(s)
		if !ok {
			t.Fatalf("parse %s", s)
		}
		return v
	}
	r := func(a, b string) ipRange { return ipRange{ip(a), ip(b)} }
	str := func(rs []ipRange) string { return fmt.Sprint(formatRanges(rs)) }

	got := normalizeRanges([]ipRange{r("10.0.0.20", "10.0.0.30"), r("10.0.0.1", "10.0.0.10"), r("10.0.0.11", "10.0.0.12"), r("10.0.0.25", "10.0.0.40")})
	wantEq(t, "merge", str(got), str([]ipRange{r("10.0.0.1", "10.0.0.12"), r("10.0.0.20", "10.0.0.40")}))

	got = subtractRange([]ipRange{r("10.0.0.1", "10.0.0.100")}, r("10.0.0.10", "10.0.0.20"))
	wantEq(t, "split", str(got), str([]ipRange{r("10.0.0.1", "10.0.0.9"), r("10.0.0.21", "10.0.0.100")}))
	got = subtractRange([]ipRange{r("10.0.0.1", "10.0.0.5"), r("10.0.0.8", "10.0.0.9")}, r("10.0.0.1", "10.0.0.8"))
	wantEq(t, "trim", str(got), str([]ipRange{r("10.0.0.9", "10.0.0.9")}))

	for _, bad := range []string{"10.0.0", "10.0.0.256", "010.0.0.1", "::1", "a.b.c.d", ""} {
		if _, ok := parseIPv4(bad); ok {
			t.Errorf("parseIPv4(%q) accepted", bad)
		}
	}
	sn := newSubnet(ip("10.0.0.0"), 28)
	if !sn.isHost(ip("10.0.0.14")) || sn.isHost(ip("10.0.0.15")) || sn.isHost(ip("10.0.0.0")) || sn.contains(ip("10.0.0.16")) {
		t.Fatalf("subnet /28 bounds wrong: %+v", sn)
	}
	wantEq(t, "freeAsc", freeAsc([]uint32{2, 3, 5}, 1, 7, 3, nil), []uint32{1, 4, 6})
	wantEq(t, "freeDesc", freeDesc([]uint32{2, 6, 7}, 1, 7, 3, nil), []uint32{5, 4, 3})
	wantEq(t, "mac", macColon("525400a1b2c3"), "52:54:00:a1:b2:c3")
}
