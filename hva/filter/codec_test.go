package filter

import (
	"reflect"
	"strings"
	"testing"
)

// TestCodecRoundTrip: every rule shape encodes to expressions that decode
// back to it (the kernel read back in the real tier does the same).
func TestCodecRoundTrip(t *testing.T) {
	f := func(x Field) Match { return Match{Field: x, Op: OpEq} }
	cases := []struct {
		fam Family
		r   Rule
	}{
		{FamilyBridge, Rule{Matches: []Match{{Field: FieldIIFName, Op: OpPrefix, Value: "vif-"}}, Counter: true, Verdict: Verdict{Kind: Drop}}},
		{FamilyBridge, Rule{Verdict: Verdict{Kind: VMap, Key: FieldOIFName, Map: "to_vnic"}}},
		{FamilyBridge, Rule{Matches: []Match{{Field: FieldEtherSrc, Op: OpNeq, Value: "52:54:00:00:00:01"}}, Verdict: Verdict{Kind: Return}}},
		{FamilyBridge, Rule{Matches: []Match{withV(f(FieldEtherType), EtherTypeARP), withV(f(FieldARPOp), ARPReply),
			withV(f(FieldARPSha), "52:54:00:00:00:01"), withV(f(FieldARPTpa), "10.1.2.3"),
			{Field: FieldARPSpa, Op: OpCIDR, Value: "10.0.0.0/8"}}, Verdict: Verdict{Kind: Jump, Chain: "x"}}},
		{FamilyInet, Rule{Matches: []Match{{Field: FieldCtState, Op: OpAny, Value: "established,related"}}, Verdict: Verdict{Kind: Accept}}},
		{FamilyInet, Rule{Matches: []Match{withV(f(FieldNFProto), NFProtoIPv4), withV(f(FieldOIFName), "nfbr0")},
			Verdict: Verdict{Kind: VMap, Key: FieldIPDst, Map: "ip_nfbr0"}}},
		{FamilyInet, Rule{Matches: []Match{withV(f(FieldIPProto), ProtoTCP), {Field: FieldTHDport, Op: OpRange, Value: "1", To: "65535"},
			{Field: FieldIPSrc, Op: OpInSet, Set: "m_sg-1"}}, Verdict: Verdict{Kind: Goto, Chain: "y"}}},
		{FamilyInet, Rule{Matches: []Match{withV(f(FieldIPProto), ProtoICMP), withV(f(FieldICMPType), "8"), withV(f(FieldICMPCode), "0"),
			{Field: FieldIPSrc, Op: OpCIDR, Value: "192.168.251.9/32"}, withV(f(FieldTHSport), "67")}, Verdict: Verdict{Kind: Accept}}},
	}
	for _, c := range cases {
		es, err := encodeRule(c.fam, c.r)
		if err != nil {
			t.Fatalf("encode %s: %v", c.r, err)
		}
		got, err := decodeRule(es)
		if err != nil {
			t.Fatalf("decode %s: %v", c.r, err)
		}
		if !reflect.DeepEqual(got, c.r) {
			t.Errorf("round trip of %s = %s", c.r, got)
		}
	}
}

func withV(m Match, v string) Match { m.Value = v; return m }

// TestEncodeRejects: values and shapes the kernel would take wrongly are
// refused before it sees them.
func TestEncodeRejects(t *testing.T) {
	for _, c := range []struct {
		fam Family
		m   Match
	}{
		{FamilyInet, Match{Field: FieldEtherSrc, Op: OpEq, Value: "52:54:00:00:00:01"}}, // link layer in inet
		{FamilyBridge, Match{Field: FieldCtState, Op: OpAny, Value: "established"}},     // no conntrack in bridge
		{FamilyInet, Match{Field: FieldIPSrc, Op: OpCIDR, Value: "10.1.0.0/8"}},         // not masked
		{FamilyInet, Match{Field: FieldIPSrc, Op: OpEq, Value: "::1"}},
		{FamilyInet, Match{Field: FieldTHDport, Op: OpEq, Value: "65536"}},
		{FamilyInet, Match{Field: FieldTHDport, Op: OpEq, Value: "022"}},
		{FamilyInet, Match{Field: FieldTHDport, Op: OpRange, Value: "9", To: "8"}},
		{FamilyBridge, Match{Field: FieldEtherType, Op: OpEq, Value: "2048"}},
		{FamilyBridge, Match{Field: FieldEtherSrc, Op: OpEq, Value: "52-54-00-00-00-01"}},
		{FamilyBridge, Match{Field: FieldIIFName, Op: OpEq, Value: strings.Repeat("x", 16)}},
		{FamilyInet, Match{Field: FieldCtState, Op: OpAny, Value: "related,established"}}, // not canonical
		{FamilyInet, Match{Field: FieldIPProto, Op: OpInSet, Set: "s"}},                   // no set type
	} {
		if _, err := encodeMatch(c.fam, c.m); err == nil {
			t.Errorf("encodeMatch(%s, %s) accepted it", c.fam, c.m)
		}
	}
}

func TestValidate(t *testing.T) {
	base := func() Ruleset {
		return Ruleset{Tables: []Table{{Family: FamilyInet, Name: "t",
			Sets:   []Set{{Name: "m", Key: KeyIPv4, Map: true, Elements: []Element{{Key: "10.0.0.1", Goto: "c"}}}, {Name: "s", Key: KeyIPv4}},
			Chains: []Chain{{Name: "f", Hook: HookForward, Rules: []Rule{{Verdict: Verdict{Kind: VMap, Key: FieldIPDst, Map: "m"}}}}, {Name: "c"}},
		}}}
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("valid rule set: %v", err)
	}
	for name, mut := range map[string]func(rs *Ruleset){
		"goto missing chain":  func(rs *Ruleset) { rs.Tables[0].Sets[0].Elements[0].Goto = "nope" },
		"vmap on a plain set": func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[0].Verdict.Map = "s" },
		"vmap key type":       func(rs *Ruleset) { rs.Tables[0].Chains[0].Rules[0].Verdict.Key = FieldOIFName },
		"duplicate element":   func(rs *Ruleset) { rs.Tables[0].Sets[1].Elements = []Element{{Key: "1.1.1.1"}, {Key: "1.1.1.1"}} },
		"duplicate chain":     func(rs *Ruleset) { rs.Tables[0].Chains[1].Name = "f" },
		"jump missing":        func(rs *Ruleset) { rs.Tables[0].Chains[1].Rules = []Rule{{Verdict: Verdict{Kind: Jump, Chain: "z"}}} },
		"lookup missing set": func(rs *Ruleset) {
			rs.Tables[0].Chains[1].Rules = []Rule{{Matches: []Match{{Field: FieldIPSrc, Op: OpInSet, Set: "z"}}, Verdict: Verdict{Kind: Accept}}}
		},
		"regular with prio":    func(rs *Ruleset) { rs.Tables[0].Chains[1].Priority = 5 },
		"duplicate table":      func(rs *Ruleset) { rs.Tables = append(rs.Tables, rs.Tables[0]) },
		"unknown family":       func(rs *Ruleset) { rs.Tables[0].Family = "ip6" },
		"map element no chain": func(rs *Ruleset) { rs.Tables[0].Sets[0].Elements[0].Goto = "" },
		"loop": func(rs *Ruleset) {
			rs.Tables[0].Chains[1].Rules = []Rule{{Verdict: Verdict{Kind: Goto, Chain: "f"}}}
		},
	} {
		rs := base()
		mut(&rs)
		if err := rs.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}
