package filtertest

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/hva/filter"
)

// Run runs the conformance suite of Filters. newFn returns a Filter with no
// tables of the names used here (nfsuite, nfother): the Recorder, or NFT in
// a network namespace of the test's own.
func Run(t *testing.T, newFn func(t *testing.T) filter.Filter) {
	cases := []struct {
		name string
		fn   func(t *testing.T, f filter.Filter)
	}{
		{"Absent", testAbsent},
		{"ApplyReadsBack", testReadBack},
		{"ApplyIdempotent", testIdempotent},
		{"ApplyReplacesWhole", testReplace},
		{"OtherTablesUntouched", testOthers},
		{"InvalidLeavesPrevious", testInvalid},
		{"CompiledRulesetReadsBack", testCompiled},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newFn(t)) })
	}
}

const suiteTable = "nfsuite"

func m(f filter.Field, op filter.Op, v string) filter.Match {
	return filter.Match{Field: f, Op: op, Value: v}
}

func inSet(f filter.Field, set string) filter.Match {
	return filter.Match{Field: f, Op: filter.OpInSet, Set: set}
}

func rule(v filter.Verdict, ms ...filter.Match) filter.Rule {
	return filter.Rule{Matches: ms, Verdict: v}
}

var (
	accept = filter.Verdict{Kind: filter.Accept}
	drop   = filter.Verdict{Kind: filter.Drop}
)

// Sample is a rule set that uses every field, op and verdict the model has,
// in both families.
func Sample(table string) filter.Ruleset {
	const vif = "vif-suite001"
	bridge := filter.Table{Family: filter.FamilyBridge, Name: table,
		Sets: []filter.Set{
			{Name: "m_sg-a", Key: filter.KeyIPv4, Elements: []filter.Element{{Key: "192.168.251.3"}, {Key: "192.168.251.2"}}},
			{Name: "m_sg-empty", Key: filter.KeyIPv4},
			{Name: "from_vnic", Key: filter.KeyIfname, Map: true, Elements: []filter.Element{{Key: vif, Goto: "out_" + vif}}},
			{Name: "names", Key: filter.KeyIfname, Elements: []filter.Element{{Key: "nfbr0"}}},
		},
		Chains: []filter.Chain{
			{Name: "prerouting", Hook: filter.HookPrerouting, Priority: -200, Rules: []filter.Rule{
				rule(filter.Verdict{Kind: filter.VMap, Key: filter.FieldIIFName, Map: "from_vnic"}),
				{Matches: []filter.Match{m(filter.FieldIIFName, filter.OpPrefix, "vif-")}, Counter: true, Verdict: drop},
			}},
			{Name: "forward", Hook: filter.HookForward, Priority: -200, Rules: []filter.Rule{
				rule(filter.Verdict{Kind: filter.Jump, Chain: "sub"}, m(filter.FieldOIFName, filter.OpEq, vif)),
				rule(accept, inSet(filter.FieldIIFName, "names")),
			}},
			{Name: "sub", Rules: []filter.Rule{rule(filter.Verdict{Kind: filter.Return})}},
			{Name: "out_" + vif, Rules: []filter.Rule{
				{Matches: []filter.Match{m(filter.FieldEtherSrc, filter.OpNeq, "52:54:00:00:00:01")}, Counter: true, Verdict: drop},
				rule(accept, m(filter.FieldEtherType, filter.OpEq, filter.EtherTypeIPv4), m(filter.FieldIPSrc, filter.OpEq, "192.168.251.2")),
				rule(accept, m(filter.FieldEtherType, filter.OpEq, filter.EtherTypeIPv4), m(filter.FieldIPProto, filter.OpEq, filter.ProtoUDP),
					m(filter.FieldTHSport, filter.OpEq, "68"), m(filter.FieldTHDport, filter.OpEq, "67")),
				rule(accept, m(filter.FieldEtherType, filter.OpEq, filter.EtherTypeARP), m(filter.FieldARPSha, filter.OpEq, "52:54:00:00:00:01"),
					m(filter.FieldARPSpa, filter.OpEq, "192.168.251.2")),
				rule(accept, m(filter.FieldEtherType, filter.OpEq, filter.EtherTypeARP), m(filter.FieldARPOp, filter.OpEq, filter.ARPReply),
					m(filter.FieldARPTpa, filter.OpEq, "192.168.251.2")),
				rule(accept, m(filter.FieldEtherType, filter.OpEq, filter.EtherTypeARP), inSet(filter.FieldARPSpa, "m_sg-a")),
				rule(accept, m(filter.FieldEtherType, filter.OpEq, filter.EtherTypeARP), m(filter.FieldARPSpa, filter.OpCIDR, "10.0.0.0/8")),
				{Counter: true, Verdict: drop},
			}},
		},
	}
	inet := filter.Table{Family: filter.FamilyInet, Name: table,
		Sets: []filter.Set{
			{Name: "m_sg-a", Key: filter.KeyIPv4, Elements: []filter.Element{{Key: "192.168.251.2"}, {Key: "192.168.251.3"}}},
			{Name: "ip_nfbr0", Key: filter.KeyIPv4, Map: true, Elements: []filter.Element{{Key: "192.168.251.2", Goto: "in_" + vif}}},
		},
		Chains: []filter.Chain{
			{Name: "forward", Hook: filter.HookForward, Priority: 0, Rules: []filter.Rule{
				rule(filter.Verdict{Kind: filter.VMap, Key: filter.FieldIPDst, Map: "ip_nfbr0"},
					m(filter.FieldNFProto, filter.OpEq, filter.NFProtoIPv4), m(filter.FieldOIFName, filter.OpEq, "nfbr0")),
			}},
			{Name: "in_" + vif, Rules: []filter.Rule{
				rule(accept, m(filter.FieldCtState, filter.OpAny, "established,related")),
				rule(accept, inSet(filter.FieldIPSrc, "m_sg-a")),
				rule(accept, m(filter.FieldIPProto, filter.OpEq, filter.ProtoTCP), m(filter.FieldIPSrc, filter.OpCIDR, "10.0.0.0/8"),
					m(filter.FieldTHDport, filter.OpEq, "22")),
				rule(accept, m(filter.FieldIPProto, filter.OpEq, filter.ProtoUDP), m(filter.FieldIPSrc, filter.OpCIDR, "0.0.0.0/0"),
					filter.Match{Field: filter.FieldTHDport, Op: filter.OpRange, Value: "1000", To: "2000"}),
				rule(accept, m(filter.FieldIPProto, filter.OpEq, filter.ProtoICMP), m(filter.FieldIPSrc, filter.OpCIDR, "192.168.251.9/32"),
					m(filter.FieldICMPType, filter.OpEq, "8"), m(filter.FieldICMPCode, filter.OpEq, "0")),
				{Counter: true, Verdict: drop},
			}},
		},
	}
	return filter.Ruleset{Tables: []filter.Table{bridge, inet}}
}

// smaller is Sample with one vnic's chains gone and different members.
func smaller(table string) filter.Ruleset {
	inet := filter.Table{Family: filter.FamilyInet, Name: table,
		Sets: []filter.Set{{Name: "m_sg-b", Key: filter.KeyIPv4, Elements: []filter.Element{{Key: "192.168.251.7"}}}},
		Chains: []filter.Chain{
			{Name: "forward", Hook: filter.HookForward, Rules: []filter.Rule{rule(accept, inSet(filter.FieldIPSrc, "m_sg-b"))}},
		},
	}
	bridge := filter.Table{Family: filter.FamilyBridge, Name: table,
		Chains: []filter.Chain{{Name: "prerouting", Hook: filter.HookPrerouting, Priority: -200}},
	}
	return filter.Ruleset{Tables: []filter.Table{inet, bridge}}
}

func apply(t *testing.T, f filter.Filter, rs filter.Ruleset) {
	t.Helper()
	if err := f.Apply(context.Background(), rs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// wantInstalled checks that the tables called name hold exactly want.
func wantInstalled(t *testing.T, f filter.Filter, name string, want filter.Ruleset) {
	t.Helper()
	got, err := f.Installed(context.Background(), name)
	if err != nil {
		t.Fatalf("Installed(%s): %v", name, err)
	}
	want = want.Sorted()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Installed(%s) differs from what was applied:\n%s", name, Diff(got, want))
	}
}

// Diff describes how two sorted rule sets differ, for test failures.
func Diff(got, want filter.Ruleset) string {
	g, w := Render(got), Render(want)
	gl, wl := strings.Split(g, "\n"), strings.Split(w, "\n")
	var b strings.Builder
	for i := 0; i < len(gl) || i < len(wl); i++ {
		var a, c string
		if i < len(gl) {
			a = gl[i]
		}
		if i < len(wl) {
			c = wl[i]
		}
		if a != c {
			b.WriteString("  got:  " + a + "\n  want: " + c + "\n")
		}
	}
	if b.Len() == 0 {
		return "(same text, different values)\n" + g
	}
	return b.String()
}

// Render writes a rule set in nft's list syntax.
func Render(rs filter.Ruleset) string {
	var b strings.Builder
	for _, t := range rs.Tables {
		b.WriteString("table " + string(t.Family) + " " + t.Name + "\n")
		for _, s := range t.Sets {
			kind := "set"
			if s.Map {
				kind = "map"
			}
			b.WriteString("  " + kind + " " + s.Name + " " + string(s.Key) + ":")
			for _, e := range s.Elements {
				b.WriteString(" " + e.Key)
				if e.Goto != "" {
					b.WriteString(":goto " + e.Goto)
				}
			}
			b.WriteString("\n")
		}
		for _, c := range t.Chains {
			b.WriteString("  chain " + c.Name)
			if c.Hook != "" {
				b.WriteString(" hook " + string(c.Hook))
			}
			b.WriteString("\n")
			for _, r := range c.Rules {
				b.WriteString("    " + r.String() + "\n")
			}
		}
	}
	return b.String()
}

func testAbsent(t *testing.T, f filter.Filter) {
	wantInstalled(t, f, "nfabsent", filter.Ruleset{})
	if err := f.Remove(context.Background(), "nfabsent"); err != nil {
		t.Fatalf("Remove of absent tables: %v", err)
	}
}

func testReadBack(t *testing.T, f filter.Filter) {
	apply(t, f, Sample(suiteTable))
	wantInstalled(t, f, suiteTable, Sample(suiteTable))
}

func testIdempotent(t *testing.T, f filter.Filter) {
	apply(t, f, Sample(suiteTable))
	apply(t, f, Sample(suiteTable))
	wantInstalled(t, f, suiteTable, Sample(suiteTable))
}

func testReplace(t *testing.T, f filter.Filter) {
	apply(t, f, Sample(suiteTable))
	apply(t, f, smaller(suiteTable))
	wantInstalled(t, f, suiteTable, smaller(suiteTable))
	apply(t, f, Sample(suiteTable))
	wantInstalled(t, f, suiteTable, Sample(suiteTable))
}

func testOthers(t *testing.T, f filter.Filter) {
	ctx := context.Background()
	apply(t, f, Sample("nfother"))
	apply(t, f, Sample(suiteTable))
	apply(t, f, smaller(suiteTable))
	wantInstalled(t, f, "nfother", Sample("nfother"))
	if err := f.Remove(ctx, suiteTable); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	wantInstalled(t, f, suiteTable, filter.Ruleset{})
	wantInstalled(t, f, "nfother", Sample("nfother"))
	if err := f.Remove(ctx, "nfother"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
}

// testInvalid: a rule set that cannot be installed (its second table goes
// to a missing chain) leaves what was there, first table included.
func testInvalid(t *testing.T, f filter.Filter) {
	apply(t, f, Sample(suiteTable))
	bad := smaller(suiteTable)
	bad.Tables[1].Chains[0].Rules = []filter.Rule{rule(filter.Verdict{Kind: filter.Goto, Chain: "missing"})}
	if err := f.Apply(context.Background(), bad); err == nil {
		t.Fatal("Apply of a rule set going to a missing chain succeeded")
	}
	wantInstalled(t, f, suiteTable, Sample(suiteTable))
}

// testCompiled: what Compile makes installs and reads back.
func testCompiled(t *testing.T, f filter.Filter) {
	rs, problems := filter.Compile(SampleData(), filter.Options{Table: suiteTable, Bridges: map[string]string{"public": "nfbr0"}})
	if len(problems) != 0 {
		t.Fatalf("Compile problems: %v", problems)
	}
	apply(t, f, rs)
	wantInstalled(t, f, suiteTable, rs)
}
