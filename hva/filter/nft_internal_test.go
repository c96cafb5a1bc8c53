package filter

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/network"
)

// TestNFTTransactionAtomic: when the kernel itself refuses a rule set late
// in the transaction (a chain loop, which Apply would have caught), nothing
// of it stays, not even the tables queued before the bad one.
func TestNFTTransactionAtomic(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	name := fmt.Sprintf("nf-atom-%d", time.Now().UnixNano()%1_000_000)
	ns, err := network.NewNamedNS(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(); _ = network.DeleteNamedNS(name) })
	n := NewNFT(int(ns))
	ctx := context.Background()
	good := func(verdict VerdictKind) Ruleset {
		return Ruleset{Tables: []Table{
			{Family: FamilyBridge, Name: "nfatom", Chains: []Chain{{Name: "prerouting", Hook: HookPrerouting, Priority: -200,
				Rules: []Rule{{Verdict: Verdict{Kind: verdict}}}}}},
			{Family: FamilyInet, Name: "nfatom", Chains: []Chain{{Name: "a"}, {Name: "b"},
				{Name: "forward", Hook: HookForward, Rules: []Rule{{Verdict: Verdict{Kind: Jump, Chain: "a"}}}}}},
		}}
	}
	if err := n.Apply(ctx, good(Accept)); err != nil {
		t.Fatal(err)
	}
	bad := good(Drop) // the bridge table changes ...
	bad.Tables[1].Chains[0].Rules = []Rule{{Verdict: Verdict{Kind: Jump, Chain: "b"}}}
	bad.Tables[1].Chains[1].Rules = []Rule{{Verdict: Verdict{Kind: Jump, Chain: "a"}}} // ... and the inet one loops
	if err := bad.Validate(); err == nil {
		t.Fatal("Validate missed the loop")
	}
	if err := n.apply(ctx, bad); err == nil {
		t.Fatal("the kernel took a chain loop")
	}
	got, err := n.Installed(ctx, "nfatom")
	if err != nil {
		t.Fatal(err)
	}
	if want := good(Accept).Sorted(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the refused transaction:\n%+v\nwant the previous rule set\n%+v", got, want)
	}
}

func TestNFTChainRules(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	name := fmt.Sprintf("nf-chr-%d", time.Now().UnixNano()%1_000_000)
	ns, err := network.NewNamedNS(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close(); _ = network.DeleteNamedNS(name) })
	n := NewNFT(int(ns))
	ctx := context.Background()
	rs := Ruleset{Tables: []Table{{Family: FamilyInet, Name: "nfchr", Chains: []Chain{{Name: "c", Rules: []Rule{
		{Matches: []Match{{Field: FieldIPProto, Op: OpEq, Value: ProtoTCP}}, Verdict: Verdict{Kind: Accept}},
		{Counter: true, Verdict: Verdict{Kind: Drop}},
	}}}}}}
	if err := n.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	got, err := n.ChainRules(ctx, FamilyInet, "nfchr", "c")
	if err != nil || !reflect.DeepEqual(got, rs.Tables[0].Chains[0].Rules) {
		t.Fatalf("ChainRules = %v, %v", got, err)
	}
	if _, err := n.ChainRules(ctx, FamilyInet, "nfchr", "missing"); err == nil {
		t.Fatal("ChainRules of a missing chain succeeded")
	}
}
