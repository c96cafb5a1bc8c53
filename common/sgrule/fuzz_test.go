package sgrule

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseText: for any text, Parse does not panic; it either fails with a
// *SyntaxError (the API's 400/142) naming a line of the text, or returns
// rules that are all valid and render to canonical lines that parse back to
// the same rules (parse → render → parse round trip).
func FuzzParseText(f *testing.F) {
	for _, s := range []string{
		"", "# comment", "tcp:22,22,ip4:0.0.0.0", "udp:53,53,ip4:10.0.0.0/8",
		"icmp:-1,-1,ip4:0.0.0.0/0", "tcp:80,80,sg-abcd1234", "icmp:0,8,ip4:10.0.0.1",
		"tcp:1,65535,ip4:192.168.1.1/32\nudp:1,2,ip6:::/0", " t cp : 22 ,\t22, ip4 : 10.1.2.3 / 8 \r",
		"tcp:22,22,ip4:0.0.0.0\x00", "tcp:99999999999999999999,1,ip4:0.0.0.0", "icmp:-,-1,ip4:0.0.0.0",
		"tcp:22,22,ip4:1.2.3.4/33", "tcp:22,22,ip4:::ffff:1.2.3.4", "tcp:22,22,sg-", "tcp:22,22,sg-ä",
		"tcp:22,22,ip4:0.0.0.0\u00a0", "tcp:22,22,ip4:01.2.3.4", "icmp:3,-1,ip4:0.0.0.0", "tcp:0,0,ip4:0.0.0.0",
		"tcp:22,22,ip4:1.2.3.4%eth0", "';DROP TABLE security_groups;--", "$(reboot)", "tcp:22,22,ip4:1.2.3.4,x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		rules, err := Parse(text)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T %v, want *SyntaxError", text, err, err)
			}
			if se.Reason == "" || !strings.Contains(text, se.Line) {
				t.Fatalf("SyntaxError %+v does not name a line of %q", se, text)
			}
			return
		}
		var lines []string
		for _, r := range rules {
			checkRule(t, r)
			lines = append(lines, r.String())
		}
		again, err := Parse(strings.Join(lines, "\n"))
		if err != nil {
			t.Fatalf("canonical text %q of %q does not parse: %v", lines, text, err)
		}
		if !reflect.DeepEqual(again, rules) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", text, again, rules)
		}
		for _, ref := range References(rules) {
			if !isGroupRef(ref) {
				t.Fatalf("reference %q is not a group uuid", ref)
			}
		}
	})
}

// checkRule asserts what the packet filter relies on.
func checkRule(t *testing.T, r Rule) {
	t.Helper()
	switch r.Protocol {
	case TCP, UDP:
		if r.FromPort < 1 || r.ToPort > 65535 || r.FromPort > r.ToPort {
			t.Fatalf("ports %d-%d", r.FromPort, r.ToPort)
		}
	case ICMP:
		if !validICMPType(r.ICMPType) || r.ICMPCode < -1 || r.ICMPCode > 15 || (r.ICMPType == -1 && r.ICMPCode != -1) {
			t.Fatalf("icmp type %d code %d", r.ICMPType, r.ICMPCode)
		}
	default:
		t.Fatalf("protocol %q", r.Protocol)
	}
	switch {
	case r.IPVersion == IPv4:
		p, err := netip.ParsePrefix(r.Source)
		if err != nil || !p.Addr().Is4() || p != p.Masked() || p.String() != r.Source {
			t.Fatalf("source %q is not a canonical masked IPv4 network", r.Source)
		}
	case r.IPVersion == "" && isGroupRef(r.Source):
	default:
		t.Fatalf("source %q (%q)", r.Source, r.IPVersion)
	}
	if !utf8.ValidString(r.String()) {
		t.Fatalf("rendering %q is not UTF-8", r.String())
	}
}
