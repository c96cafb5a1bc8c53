package filter_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/filter/filtertest"
	"github.com/vdc-project/vdc/proto"
)

var bridges = map[string]string{"public": "nfbr0"}

func rules(t *testing.T, rs filter.Ruleset, f filter.Family, chain string) []string {
	t.Helper()
	tbl := rs.Table(f, "nfvdc")
	if tbl == nil {
		t.Fatalf("no %s table", f)
	}
	c := tbl.Chain(chain)
	if c == nil {
		return nil
	}
	var out []string
	for _, r := range c.Rules {
		out = append(out, r.String())
	}
	return out
}

func wantRules(t *testing.T, rs filter.Ruleset, f filter.Family, chain string, want ...string) {
	t.Helper()
	got := rules(t, rs, f, chain)
	if !slices.Equal(got, want) {
		t.Errorf("%s chain %s:\ngot:\n  %s\nwant:\n  %s", f, chain, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestCompileSample pins the compiled chains of the sample host (the
// packet tests show what they do).
func TestCompileSample(t *testing.T) {
	rs, problems := filter.Compile(filtertest.SampleData(), filter.Options{Table: "nfvdc", Bridges: bridges})
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	if err := rs.Validate(); err != nil {
		t.Fatal(err)
	}
	wantRules(t, rs, filter.FamilyInet, "in_vif-web00001",
		"ct state established,related accept",
		"ip saddr @m_sg-web accept",
		"ip saddr 192.168.251.250 ip protocol 17 th sport 67 th dport 68 accept",
		"ip protocol 6 th dport 80 accept",
		"ip protocol 6 th dport 8000-8010 ip saddr 10.0.0.0/8 accept",
		"ip protocol 6 th dport 22 ip saddr @m_sg-admin accept",
		"ip protocol 1 icmp type 8 accept",
		"counter drop")
	wantRules(t, rs, filter.FamilyInet, "in_vif-adm00001",
		"ct state established,related accept",
		"ip saddr @m_sg-admin accept",
		"ip saddr 192.168.251.250 ip protocol 17 th sport 67 th dport 68 accept",
		"ip protocol 17 th dport 53 ip saddr @m_sg-web accept",
		"ip protocol 1 icmp type 8 icmp code 0 ip saddr @m_sg-web accept",
		"counter drop")
	wantRules(t, rs, filter.FamilyBridge, "out_vif-web00001",
		"ether saddr != 52:54:00:00:00:01 counter drop",
		"ether type 0x0800 ip saddr 192.168.251.11 accept",
		"ether type 0x0800 ip saddr 0.0.0.0 ip daddr 255.255.255.255 ip protocol 17 th sport 68 th dport 67 accept",
		"ether type 0x0806 arp saddr ether 52:54:00:00:00:01 arp saddr ip 192.168.251.11 accept",
		"ether type 0x0806 arp saddr ether 52:54:00:00:00:01 arp saddr ip 0.0.0.0 accept",
		"counter drop")
	wantRules(t, rs, filter.FamilyBridge, "in_vif-adm00001",
		"ether type 0x0800 ip daddr 192.168.251.21 accept",
		"ether type 0x0800 ip saddr 192.168.251.250 ip protocol 17 th sport 67 th dport 68 accept",
		"ether type 0x0806 arp operation 2 arp daddr ip 192.168.251.21 accept",
		"ether type 0x0806 arp saddr ip @m_sg-admin accept",
		"ether type 0x0806 arp saddr ip @m_sg-web accept",
		"ether type 0x0806 arp saddr ip 192.168.251.1 accept",
		"ether type 0x0806 arp saddr ip 192.168.251.250 accept",
		"counter drop")
	// No address: it may send DHCP and ARP probes, and receives nothing.
	wantRules(t, rs, filter.FamilyBridge, "out_vif-noip0001",
		"ether saddr != 52:54:00:00:00:03 counter drop",
		"ether type 0x0800 ip saddr 0.0.0.0 ip daddr 255.255.255.255 ip protocol 17 th sport 68 th dport 67 accept",
		"ether type 0x0806 arp saddr ether 52:54:00:00:00:03 arp saddr ip 0.0.0.0 accept",
		"counter drop")
	wantRules(t, rs, filter.FamilyBridge, "in_vif-noip0001", "counter drop")
	if got := rules(t, rs, filter.FamilyInet, "in_vif-noip0001"); got != nil {
		t.Errorf("inet chain of a vnic without an address: %v", got)
	}
	wantRules(t, rs, filter.FamilyInet, "forward", "meta nfproto 2 oifname \"nfbr0\" ip daddr vmap @ip_nfbr0")
	wantRules(t, rs, filter.FamilyBridge, "prerouting", "iifname vmap @from_vnic", "iifname \"vif-*\" counter drop")
	wantRules(t, rs, filter.FamilyBridge, "forward", "oifname vmap @to_vnic", "oifname \"vif-*\" counter drop")

	inet := rs.Table(filter.FamilyInet, "nfvdc")
	if s := inet.Set("m_sg-admin"); s == nil || len(s.Elements) != 2 || s.Elements[1].Key != "192.168.251.22" {
		t.Errorf("m_sg-admin = %+v, want both members, the remote one too", s)
	}
	if s := inet.Set("ip_nfbr0"); s == nil || len(s.Elements) != 2 ||
		s.Elements[0] != (filter.Element{Key: "192.168.251.11", Goto: "in_vif-web00001"}) {
		t.Errorf("ip_nfbr0 = %+v", s)
	}
}

// TestCompileDeterministic: the same data in another order compiles to the
// same rule set.
func TestCompileDeterministic(t *testing.T) {
	a, _ := filter.Compile(filtertest.SampleData(), filter.Options{Table: "nfvdc", Bridges: bridges})
	d := filtertest.SampleData()
	slices.Reverse(d.Vnics)
	slices.Reverse(d.SecurityGroups)
	for i := range d.SecurityGroups {
		slices.Reverse(d.SecurityGroups[i].Members)
	}
	b, _ := filter.Compile(d, filter.Options{Table: "nfvdc", Bridges: bridges})
	if diff := filtertest.Diff(a, b); !slicesEqual(a, b) {
		t.Fatalf("order changed the rule set:\n%s", diff)
	}
}

func slicesEqual(a, b filter.Ruleset) bool { return filtertest.Render(a) == filtertest.Render(b) }

// TestCompileFailsClosed: what cannot be compiled is reported and left
// without chains (its tap then drops everything).
func TestCompileFailsClosed(t *testing.T) {
	d := filtertest.SampleData()
	bad := func(mut func(v *proto.VifView)) proto.VifView {
		v := proto.VifView{ID: "vif-bad00001", MacAddr: "525400000009", IPv4Address: sptr("192.168.251.99"),
			DcNetwork: &proto.DcNetwork{Name: "public"}}
		mut(&v)
		return v
	}
	d.Vnics = append(d.Vnics,
		bad(func(v *proto.VifView) { v.MacAddr = "zz" }),
		bad(func(v *proto.VifView) { v.ID = "eth0" }),
		bad(func(v *proto.VifView) { v.ID = "vif-zdup0001"; v.IPv4Address = sptr("192.168.251.11") }),
		bad(func(v *proto.VifView) { v.ID = "vif-nobr0001"; v.DcNetwork = &proto.DcNetwork{Name: "elsewhere"} }),
	)
	d.SecurityGroups[0].Rule += "\nbogus"
	rs, problems := filter.Compile(d, filter.Options{Table: "nfvdc", Bridges: bridges})
	text := fmt.Sprint(problems)
	for _, want := range []string{"vif-bad00001 left out: bad mac", "eth0 left out", "vif-zdup0001 left out",
		"vif-nobr0001: its dc network has no bridge", "security group sg-web: rules not applied"} {
		if !strings.Contains(text, want) {
			t.Errorf("problems %s: missing %q", text, want)
		}
	}
	br := rs.Table(filter.FamilyBridge, "nfvdc")
	for _, c := range []string{"out_vif-bad00001", "out_eth0", "out_vif-zdup0001"} {
		if br.Chain(c) != nil {
			t.Errorf("chain %s exists for a vnic left out", c)
		}
	}
	// Unknown bridge: its IPv4 is dropped in the bridge table (no accept
	// of its address) and it has no inet chain.
	for _, r := range rules(t, rs, filter.FamilyBridge, "in_vif-nobr0001") {
		if strings.Contains(r, "ip daddr") {
			t.Errorf("vnic without a bridge accepts IPv4: %s", r)
		}
	}
	if rules(t, rs, filter.FamilyInet, "in_vif-nobr0001") != nil {
		t.Error("vnic without a bridge has an inet chain")
	}
	// sg-web's broken rule text applies none of its rules: web only has
	// its friends.
	wantRules(t, rs, filter.FamilyInet, "in_vif-web00001",
		"ct state established,related accept",
		"ip saddr @m_sg-web accept",
		"ip saddr 192.168.251.250 ip protocol 17 th sport 67 th dport 68 accept",
		"counter drop")
	if err := rs.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestCompileDedupsAndAnywhere: two groups allowing the same thing give one
// rule; an "anywhere" source has no address match and opens ARP to all.
func TestCompileDedupsAndAnywhere(t *testing.T) {
	d := &proto.GetNetfilterDataResponse{
		Vnics: []proto.VifView{{ID: "vif-x0000001", MacAddr: "525400000001", IPv4Address: sptr("192.168.251.2"),
			SecurityGroups: []string{"sg-1", "sg-2"}, DcNetwork: &proto.DcNetwork{Name: "public"}}},
		SecurityGroups: []proto.NetfilterSecurityGroup{
			{ID: "sg-1", Rule: "tcp:22,22,ip4:0.0.0.0"},
			{ID: "sg-2", Rule: "tcp:22,22,ip4:0.0.0.0/0\nudp:1,65535,sg-3"},
		},
	}
	rs, problems := filter.Compile(d, filter.Options{Table: "nfvdc", Bridges: bridges})
	if want := "security group sg-3 is named but not in the data"; !strings.Contains(fmt.Sprint(problems), want) {
		t.Errorf("problems %v, want %q", problems, want)
	}
	wantRules(t, rs, filter.FamilyInet, "in_vif-x0000001",
		"ct state established,related accept",
		"ip saddr @m_sg-1 accept",
		"ip saddr @m_sg-2 accept",
		"ip protocol 6 th dport 22 accept",
		"ip protocol 17 th dport 1-65535 ip saddr @m_sg-3 accept",
		"counter drop")
	if got := rules(t, rs, filter.FamilyBridge, "in_vif-x0000001"); !slices.Contains(got, "ether type 0x0806 accept") {
		t.Errorf("bridge in chain %v: want ARP from anywhere", got)
	}
	if s := rs.Table(filter.FamilyInet, "nfvdc").Set("m_sg-3"); s == nil || len(s.Elements) != 0 {
		t.Errorf("m_sg-3 = %+v, want an empty set", s)
	}
}
