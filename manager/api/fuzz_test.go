package api

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/proto"
)

// Fuzz targets of the API's own parsers (uuids, IPv4 and networks, address
// ranges, vifs, list options, a request's parameters). Each states its
// property; every error must be an errs kind the API renders as a 4xx (or
// the 5xx the spec documents for that code), never an Internal 500.

var fuzzPrefixes = []string{
	proto.PrefixAccount, proto.PrefixHostNode, proto.PrefixNetwork, proto.PrefixNetworkVif,
	proto.PrefixIPHandle, proto.PrefixIPPool, proto.PrefixSecurityGroup, proto.PrefixInstance,
	proto.PrefixImage, proto.PrefixBackupStorage, proto.PrefixVolume,
}

func wantKind(t *testing.T, what string, err error, kinds ...errs.Kind) {
	t.Helper()
	k := errs.KindOf(err)
	for _, want := range kinds {
		if k == want {
			return
		}
	}
	t.Fatalf("%s: error %v of kind %s (%d), want one of %v", what, err, k.Name(), k.Status(), kinds)
}

// FuzzUUID: checkUUID is `^<prefix>-\w+` (400/143 otherwise); chosenUUID
// accepts exactly 1–8 of [a-z0-9] with or without the prefix (400/110
// otherwise), returns a canonical id that checkUUID accepts and that
// chosenUUID maps to itself.
func FuzzUUID(f *testing.F) {
	for _, s := range []string{"i-abcd1234", "abcd1234", "i-", "i-ABCD", "i-_x", "i-abcdefghi", "i-../x",
		"i-a\x00", "ii-abc", "-abc", "i-ümlaut", "i-abc def", "wmi-demo1", "a-shpoolxx", "i-i-abc"} {
		f.Add(s, uint8(7))
	}
	f.Fuzz(func(t *testing.T, s string, pi uint8) {
		prefix := fuzzPrefixes[int(pi)%len(fuzzPrefixes)]
		err := checkUUID(s, prefix)
		rest, hasPrefix := strings.CutPrefix(s, prefix+"-")
		wantOK := hasPrefix && rest != "" && isWordChar(rest[0])
		if (err == nil) != wantOK {
			t.Fatalf("checkUUID(%q, %q) = %v, want ok=%v", s, prefix, err, wantOK)
		}
		if err != nil {
			wantKind(t, "checkUUID", err, errs.InvalidParameter)
		}
		id, err := chosenUUID(prefix, s)
		if err != nil {
			wantKind(t, "chosenUUID", err, errs.DatabaseError)
			return
		}
		part, ok := strings.CutPrefix(id, prefix+"-")
		if !ok || !validUUIDPart(part) || len(part) > 8 || checkUUID(id, prefix) != nil {
			t.Fatalf("chosenUUID(%q, %q) = %q, not canonical", prefix, s, id)
		}
		if again, err := chosenUUID(prefix, id); err != nil || again != id {
			t.Fatalf("chosenUUID not idempotent on %q: %q, %v", id, again, err)
		}
	})
}

// FuzzIPv4: parseIPv4 accepts what netip accepts as a zoneless IPv4
// address, and ipString renders a value that parses back to it.
func FuzzIPv4(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "0.0.0.0", "255.255.255.255", "010.0.0.1", "1.2.3", "1.2.3.4.5",
		"::ffff:1.2.3.4", "1.2.3.4%eth0", " 1.2.3.4", "1.2.3.256", "１.2.3.4", "0x1.2.3.4", ""} {
		f.Add(s, uint32(0))
	}
	f.Fuzz(func(t *testing.T, s string, n uint32) {
		v, ok := parseIPv4(s)
		a, err := netip.ParseAddr(s)
		if want := err == nil && a.Is4() && a.Zone() == ""; ok != want {
			t.Fatalf("parseIPv4(%q) ok=%v, netip says %v", s, ok, want)
		}
		if ok {
			if back, ok2 := parseIPv4(ipString(v)); !ok2 || back != v || ipString(v) != a.String() {
				t.Fatalf("round trip of %q: %s", s, ipString(v))
			}
		}
		if back, ok := parseIPv4(ipString(n)); !ok || back != n {
			t.Fatalf("ipString(%d) = %q does not parse back", n, ipString(n))
		}
	})
}

// FuzzNetworkParams: POST /networks' address parameters (network, prefix,
// gw, dhcp_range, service addresses). Errors are 400/110 (model
// validation) or the spec's 500/170 for service addresses; an accepted
// network is a canonical network address with its gateway, DHCP range and
// services inside it.
func FuzzNetworkParams(f *testing.F) {
	f.Add("10.0.2.0", "24", "10.0.2.1", "default", "10.0.2.2")
	f.Add("10.0.2.5", "24", "", "", "")
	f.Add("0.0.0.0", "1", "127.255.255.254", "default", "")
	f.Add("10.0.0.0", "31", "10.0.0.1", "default", "")
	f.Add("10.0.0.0", "32", "", "", "")
	f.Add("10.0.0.0", "-1", "", "", "")
	f.Add("10.0.0.0", "+8", "10.255.255.255", "", "10.0.0.0")
	f.Add("::1", "24", "", "", "")
	f.Add("10.0.0.0", "99999999999999999999", "", "", "")
	f.Fuzz(func(t *testing.T, network, prefix, gw, dhcp, svc string) {
		p := params.Params{"network": network, "prefix": prefix, "gw": gw, "dhcp_range": dhcp}
		if svc != "" {
			p["service_dhcp"] = svc
		}
		if prefix == "" {
			delete(p, "prefix")
		}
		hr, _ := http.NewRequest("POST", "http://x/", nil)
		req := &Request{HTTP: hr, Params: p}
		nw, svcs, err := networkFromParams(req, "nw-fuzz", "dcn-fuzz", "std", time.Unix(0, 0).UTC())
		if err != nil {
			wantKind(t, "networkFromParams", err, errs.DatabaseError, errs.NetworkVifInvalidAddress)
			return
		}
		base, ok := parseIPv4(nw.IPv4Network)
		if !ok || nw.Prefix < 1 || nw.Prefix > 31 {
			t.Fatalf("network %s/%d", nw.IPv4Network, nw.Prefix)
		}
		sn := newSubnet(base, nw.Prefix)
		if sn.base != base {
			t.Fatalf("%s/%d is not a network address", nw.IPv4Network, nw.Prefix)
		}
		if nw.IPv4Gw != nil {
			if g, ok := parseIPv4(*nw.IPv4Gw); !ok || !sn.isHost(g) {
				t.Fatalf("gateway %s outside %s/%d", *nw.IPv4Gw, nw.IPv4Network, nw.Prefix)
			}
		}
		for _, r := range parseRanges(nw.DhcpRanges) {
			if !sn.isHost(r.begin) || !sn.isHost(r.end) || r.begin > r.end {
				t.Fatalf("dhcp range %v outside %s/%d", r, nw.IPv4Network, nw.Prefix)
			}
		}
		if len(parseRanges(nw.DhcpRanges)) != len(nw.DhcpRanges) {
			t.Fatalf("dhcp ranges %v do not parse", nw.DhcpRanges)
		}
		for _, s := range svcs {
			if !sn.isHost(s.addr) {
				t.Fatalf("service %s at %s outside %s/%d", s.name, ipString(s.addr), nw.IPv4Network, nw.Prefix)
			}
		}
	})
}

// FuzzRanges: normalizeRanges covers exactly the union of its input with
// sorted, disjoint, non-adjacent ranges; subtractRange removes exactly the
// given range. Values live in a 512-address window placed at the bottom or
// the top of the IPv4 space, so that the uint32 edges are exercised.
func FuzzRanges(f *testing.F) {
	f.Add([]byte{0, 10, 5, 20, 30, 40, 41, 41}, uint8(0), uint8(255), true)
	f.Add([]byte{255, 0, 0, 255}, uint8(0), uint8(0), false)
	f.Add([]byte{}, uint8(3), uint8(2), true)
	f.Fuzz(func(t *testing.T, raw []byte, xb, xe uint8, top bool) {
		var off uint32
		if top {
			off = ^uint32(0) - 511
		}
		const win = 512
		var in []ipRange
		model := make([]bool, win)
		for i := 0; i+3 < len(raw) && len(in) < 64; i += 4 {
			b := uint32(binary.BigEndian.Uint16(raw[i:])) % win
			e := uint32(binary.BigEndian.Uint16(raw[i+2:])) % win
			if b > e {
				b, e = e, b
			}
			in = append(in, ipRange{off + b, off + e})
			for v := b; v <= e; v++ {
				model[v] = true
			}
		}
		norm := normalizeRanges(append([]ipRange(nil), in...))
		check := func(what string, rs []ipRange, want []bool) {
			got := make([]bool, win)
			for i, r := range rs {
				if r.begin > r.end || r.begin < off || r.end > off+win-1 {
					t.Fatalf("%s: range %v out of the window", what, r)
				}
				if i > 0 && uint64(rs[i-1].end)+1 >= uint64(r.begin) && what == "normalize" {
					t.Fatalf("%s: %v and %v overlap or touch", what, rs[i-1], r)
				}
				if i > 0 && rs[i-1].end >= r.begin {
					t.Fatalf("%s: %v and %v overlap", what, rs[i-1], r)
				}
				for v := r.begin; ; v++ {
					got[v-off] = true
					if v == r.end {
						break
					}
				}
			}
			for v := range got {
				if got[v] != want[v] {
					t.Fatalf("%s: address %d covered=%v, want %v (ranges %v)", what, v, got[v], want[v], rs)
				}
			}
		}
		check("normalize", norm, model)
		x := ipRange{off + uint32(min(xb, xe))*2, off + uint32(max(xb, xe))*2 + 1}
		for v := x.begin - off; v <= x.end-off; v++ {
			model[v] = false
		}
		check("subtract", subtractRange(norm, x), model)
	})
}

// FuzzDecodeVifs: the `vifs` parameter of POST /instances (JSON text or a
// Rack hash). Errors are 400/143.
func FuzzDecodeVifs(f *testing.F) {
	for _, s := range []string{`{"eth0":{"network":"nw-a"}}`, `{"eth0":{"index":"0","network":"nw-a","security_groups":["sg-a"]}}`,
		`{}`, `[]`, `{"eth0":null}`, `{"eth0":1}`, `{"a":{}} x`, `{"a":{"b":` + strings.Repeat("[", 3000), " ", `{"eth0":{"ipv4_addr":"10.0.0.1"}}`} {
		f.Add(s, "")
	}
	f.Add("", "vifs[eth0][network]=nw-a&vifs[eth1][index]=1")
	f.Add("", "vifs[]=a")
	f.Fuzz(func(t *testing.T, text, form string) {
		var raw any = text
		if form != "" {
			p, err := params.ParseQuery(form)
			if err != nil {
				return
			}
			raw = p["vifs"]
		}
		vals, err := decodeVifs(raw)
		if err != nil {
			wantKind(t, "decodeVifs", err, errs.InvalidParameter)
			return
		}
		for _, v := range vals {
			if v == nil {
				t.Fatalf("decodeVifs(%q) gave a nil vif", text)
			}
		}
	})
}

// FuzzListOpts: the §1.8 envelope parameters. Errors are 400/143; an
// accepted limit is within 1..MaxListLimit and start is not negative.
func FuzzListOpts(f *testing.F) {
	for _, q := range []string{"start=0&limit=10", "limit=0", "limit=99999999999", "start=-1", "sort_by=created_at.desc",
		"sort_by=a.b.c", "filter=deleted_at.nil&filter[]=x", "filter[a]=b", "created_since=2013-01-01T00:00:00Z&created_until=2012-01-01T00:00:00Z",
		"created_since=x", "terminated_until=2013-01-01T00:00:00.999999999+09:00", "limit[]=1", "sort_by=%E2%9C%93"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		p, err := params.ParseQuery(q)
		if err != nil {
			return
		}
		hr, _ := http.NewRequest("GET", "http://x/", nil)
		o, err := parseListOpts(&Request{HTTP: hr, Params: p, maxLimit: 1000})
		if err != nil {
			wantKind(t, "parseListOpts", err, errs.InvalidParameter)
			return
		}
		if o.start < 0 || o.limit < 1 || o.limit > 1000 {
			t.Fatalf("%q: start %d limit %d", q, o.start, o.limit)
		}
		for _, r := range o.ranges {
			if r.since != nil && r.until != nil && !r.since.Before(*r.until) {
				t.Fatalf("%q: empty range accepted", q)
			}
		}
	})
}

// FuzzRequestParams: any request through the params decoder and the API's
// error mapping ends as 400 (143 or the plain "Invalid request body.") or
// 413 — never a 500.
func FuzzRequestParams(f *testing.F) {
	f.Add("a=1", "application/x-www-form-urlencoded", []byte("b[]=1&b[c]=2"))
	f.Add("", "application/json", []byte(`{"x": {"a": 1}}`))
	f.Add("", "application/json", []byte(`{"x": [1]}`))
	f.Add("", "text/yaml", []byte("x: &a [*a]"))
	f.Add("%", "", []byte(""))
	f.Add("", "multipart/form-data; boundary=x", []byte("--x\r\nContent-Disposition: form-data; name=\"a[\"\r\n\r\n1\r\n--x--"))
	f.Fuzz(func(t *testing.T, query, ct string, body []byte) {
		hr, err := http.NewRequest("POST", "http://x/?"+url.PathEscape(""), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		hr.URL.RawQuery = query
		hr.Header.Set("Content-Type", ct)
		_, err = params.FromRequest(hr, 4096)
		if err == nil {
			return
		}
		mapped := mapParamsError(err)
		switch errs.KindOf(mapped) {
		case errs.InvalidParameter, errs.InvalidBody, errs.TooLarge:
		default:
			t.Fatalf("FromRequest error %v maps to %s (%d)", err, errs.KindOf(mapped).Name(), errs.KindOf(mapped).Status())
		}
	})
}
