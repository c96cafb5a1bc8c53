package sgrule

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func tcp(from, to int, cidr string) Rule {
	return Rule{Protocol: TCP, FromPort: from, ToPort: to, IPVersion: IPv4, Source: cidr}
}

func icmp(typ, code int, cidr string) Rule {
	return Rule{Protocol: ICMP, ICMPType: typ, ICMPCode: code, IPVersion: IPv4, Source: cidr}
}

func TestParse(t *testing.T) {
	cases := []struct {
		name string
		text string
		want []Rule
	}{
		{"empty", "", nil},
		{"blank and comments", "\n   \n# tcp:bogus\n  #x\n\t\n", nil},
		{"tcp", "tcp:22,22,ip4:0.0.0.0", []Rule{tcp(22, 22, "0.0.0.0/0")}},
		{"udp range", "udp:53,1024,ip4:10.0.0.0/8",
			[]Rule{{Protocol: UDP, FromPort: 53, ToPort: 1024, IPVersion: IPv4, Source: "10.0.0.0/8"}}},
		{"port bounds", "tcp:1,65535,ip4:192.168.1.1", []Rule{tcp(1, 65535, "192.168.1.1/32")}},
		{"leading zeros in ports", "tcp:022,0080,ip4:1.2.3.4/32", []Rule{tcp(22, 80, "1.2.3.4/32")}},
		{"whitespace anywhere", " t cp : 22 ,\t22, ip4 : 10.1.2.3 / 8 \r", []Rule{tcp(22, 22, "10.0.0.0/8")}},
		{"explicit /0 and /32 of 0.0.0.0", "tcp:1,1,ip4:0.0.0.0/0\ntcp:1,1,ip4:0.0.0.0/32",
			[]Rule{tcp(1, 1, "0.0.0.0/0"), tcp(1, 1, "0.0.0.0/32")}},
		{"masked network", "tcp:1,1,ip4:172.16.5.4/12", []Rule{tcp(1, 1, "172.16.0.0/12")}},
		{"icmp any", "icmp:-1,-1,ip4:0.0.0.0", []Rule{icmp(-1, -1, "0.0.0.0/0")}},
		// The first number is the code, the second the type.
		{"icmp echo request", "icmp:0,8,ip4:10.0.0.1", []Rule{icmp(8, 0, "10.0.0.1/32")}},
		{"icmp unreachable code 15", "icmp:15,3,ip4:10.0.0.0/24", []Rule{icmp(3, 15, "10.0.0.0/24")}},
		{"icmp type any code", "icmp:-1,0,ip4:0.0.0.0", []Rule{icmp(0, -1, "0.0.0.0/0")}},
		{"icmp types 11..18", "icmp:0,11,ip4:0.0.0.0\nicmp:0,18,ip4:0.0.0.0",
			[]Rule{icmp(11, 0, "0.0.0.0/0"), icmp(18, 0, "0.0.0.0/0")}},
		{"icmp type -1 with a code dropped", "icmp:3,-1,ip4:0.0.0.0\ntcp:22,22,ip4:0.0.0.0",
			[]Rule{tcp(22, 22, "0.0.0.0/0")}},
		{"ip6 dropped", "tcp:22,22,ip6:::/0\nudp:1,2,ip6:whatever", nil},
		{"group reference", "tcp:22,22,sg-abcd1234\nicmp:-1,-1,sg-Ab_9",
			[]Rule{{Protocol: TCP, FromPort: 22, ToPort: 22, Source: "sg-abcd1234"},
				{Protocol: ICMP, ICMPType: -1, ICMPCode: -1, Source: "sg-Ab_9"}}},
		{"mixed", "# web\ntcp:80,80,ip4:0.0.0.0\n\ntcp:443,443,ip4:0.0.0.0\nudp:53,53,sg-dns\n",
			[]Rule{tcp(80, 80, "0.0.0.0/0"), tcp(443, 443, "0.0.0.0/0"),
				{Protocol: UDP, FromPort: 53, ToPort: 53, Source: "sg-dns"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse(c.text)
			if err != nil {
				t.Fatalf("Parse(%q): %v", c.text, err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Parse(%q)\n got  %+v\n want %+v", c.text, got, c.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		text   string
		line   string
		reason string // substring of the reason
	}{
		{"tcp", "tcp", "missing protocol"},
		{"sctp:1,1,ip4:0.0.0.0", "sctp:1,1,ip4:0.0.0.0", "unknown protocol"},
		{"TCP:1,1,ip4:0.0.0.0", "TCP:1,1,ip4:0.0.0.0", "unknown protocol"},
		{"ip4:0.0.0.0", "ip4:0.0.0.0", "unknown protocol"},
		{"tcp:22,ip4:0.0.0.0", "tcp:22,ip4:0.0.0.0", "field"},
		{"tcp:22,22", "tcp:22,22", "field"},
		{"tcp:22,22,ip4:0.0.0.0,", "tcp:22,22,ip4:0.0.0.0,", "field"},
		{"tcp:22,22,ip4:0.0.0.0,x", "tcp:22,22,ip4:0.0.0.0,x", "field"},
		{"tcp:ssh,22,ip4:0.0.0.0", "tcp:ssh,22,ip4:0.0.0.0", "not a number"},
		{"tcp:,22,ip4:0.0.0.0", "tcp:,22,ip4:0.0.0.0", "not a number"},
		{"tcp:+22,22,ip4:0.0.0.0", "tcp:+22,22,ip4:0.0.0.0", "not a number"},
		{"tcp:-1,22,ip4:0.0.0.0", "tcp:-1,22,ip4:0.0.0.0", "not a number"},
		{"tcp:0,22,ip4:0.0.0.0", "tcp:0,22,ip4:0.0.0.0", "out of range"},
		{"udp:1,65536,ip4:0.0.0.0", "udp:1,65536,ip4:0.0.0.0", "out of range"},
		{"tcp:1,99999999999999999999999,ip4:0.0.0.0", "tcp:1,99999999999999999999999,ip4:0.0.0.0", "out of range"},
		{"tcp:23,22,ip4:0.0.0.0", "tcp:23,22,ip4:0.0.0.0", "greater"},
		{"icmp:0,4,ip4:0.0.0.0", "icmp:0,4,ip4:0.0.0.0", "icmp type"},
		{"icmp:0,19,ip4:0.0.0.0", "icmp:0,19,ip4:0.0.0.0", "icmp type"},
		{"icmp:0,-2,ip4:0.0.0.0", "icmp:0,-2,ip4:0.0.0.0", "icmp type"},
		{"icmp:16,0,ip4:0.0.0.0", "icmp:16,0,ip4:0.0.0.0", "icmp code"},
		{"icmp:-2,0,ip4:0.0.0.0", "icmp:-2,0,ip4:0.0.0.0", "icmp code"},
		{"icmp:99,-1,ip4:0.0.0.0", "icmp:99,-1,ip4:0.0.0.0", "icmp code"},
		{"icmp:x,-1,ip4:0.0.0.0", "icmp:x,-1,ip4:0.0.0.0", "not a number"},
		{"tcp:22,22,ip4:", "tcp:22,22,ip4:", "invalid ip4"},
		{"tcp:22,22,ip4:10.0.0.256", "tcp:22,22,ip4:10.0.0.256", "invalid ip4"},
		{"tcp:22,22,ip4:10.0.0.0/33", "tcp:22,22,ip4:10.0.0.0/33", "invalid ip4"},
		{"tcp:22,22,ip4:10.0.0.0/", "tcp:22,22,ip4:10.0.0.0/", "invalid ip4"},
		{"tcp:22,22,ip4:010.0.0.1", "tcp:22,22,ip4:010.0.0.1", "invalid ip4"},
		{"tcp:22,22,ip4:::1", "tcp:22,22,ip4:::1", "invalid ip4"},
		{"tcp:22,22,ip4:::ffff:1.2.3.4", "tcp:22,22,ip4:::ffff:1.2.3.4", "invalid ip4"},
		{"tcp:22,22,10.0.0.0/8", "tcp:22,22,10.0.0.0/8", "invalid source"},
		{"tcp:22,22,sg-", "tcp:22,22,sg-", "invalid source"},
		{"tcp:22,22,sg-ab.cd", "tcp:22,22,sg-ab.cd", "invalid source"},
		{"tcp:22,22,ip5:1.2.3.4", "tcp:22,22,ip5:1.2.3.4", "invalid source"},
		{"tcp:22,22,ip4:0.0.0.0\u00a0", "tcp:22,22,ip4:0.0.0.0\u00a0", "invalid ip4"},
		// The offending line is reported even after valid ones; whitespace is trimmed.
		{"tcp:22,22,ip4:0.0.0.0\n  udp : 9, 8, ip4:0.0.0.0  \n", "udp : 9, 8, ip4:0.0.0.0", "greater"},
	}
	for _, c := range cases {
		rules, err := Parse(c.text)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Parse(%q) = %+v, %v; want *SyntaxError", c.text, rules, err)
			continue
		}
		if se.Line != c.line || !strings.Contains(se.Reason, c.reason) {
			t.Errorf("Parse(%q): line %q reason %q; want line %q reason containing %q",
				c.text, se.Line, se.Reason, c.line, c.reason)
		}
		if !strings.Contains(err.Error(), strconv.Quote(se.Line)) || !strings.Contains(err.Error(), se.Reason) {
			t.Errorf("Error() %q must state reason and line", err.Error())
		}
	}
}

func TestReferences(t *testing.T) {
	rules, err := Parse("tcp:22,22,sg-b\ntcp:80,80,ip4:0.0.0.0\nudp:1,2,sg-a\nicmp:-1,-1,sg-b\ntcp:1,1,sg-c")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := References(rules), []string{"sg-b", "sg-a", "sg-c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("References = %v, want %v", got, want)
	}
	if References(nil) != nil {
		t.Errorf("References(nil) must be nil")
	}
	if !rules[0].IsReference() || rules[1].IsReference() || (Rule{}).IsReference() {
		t.Errorf("IsReference wrong")
	}
}

func TestString(t *testing.T) {
	cases := []struct {
		in   string
		want string
	}{
		{"tcp:22,22,ip4:0.0.0.0", "tcp:22,22,ip4:0.0.0.0/0"},
		{"udp : 053 , 53 , ip4:10.1.0.0/16", "udp:53,53,ip4:10.1.0.0/16"},
		{"icmp:0,8,ip4:1.2.3.4", "icmp:0,8,ip4:1.2.3.4/32"},
		{"tcp:1,2,sg-x", "tcp:1,2,sg-x"},
	}
	for _, c := range cases {
		rules, err := Parse(c.in)
		if err != nil || len(rules) != 1 {
			t.Fatalf("Parse(%q) = %v, %v", c.in, rules, err)
		}
		if got := rules[0].String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"tcp:22,22,ip4:0.0.0.0", "udp:1,65535,ip4:10.0.0.0/8", "icmp:-1,-1,ip4:0.0.0.0/0",
		"icmp:3,-1,ip4:0.0.0.0", "tcp:22,22,sg-abc", "# c\n\ntcp:1,2,ip6:::/0", "tcp:2,1,ip4:1.2.3.4/33",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		rules, err := Parse(text)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for _, r := range rules {
			back, err := Parse(r.String())
			if err != nil || len(back) != 1 || back[0] != r {
				t.Fatalf("round trip of %+v via %q = %+v, %v", r, r.String(), back, err)
			}
		}
	})
}
