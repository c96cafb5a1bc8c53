package collector

import (
	"context"
	"slices"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

func sp(s string) *string { return &s }

// TestNetfilterData: a host gets its filtered vnics and every group they
// are in or name, with members anywhere in the cluster.
func TestNetfilterData(t *testing.T) {
	srv := cluster.TestServer(t, nil)
	cluster.WaitForLeader(t, srv)
	s := New(Deps{Cluster: srv, Logger: logging.NewTest(t)})
	ctx := context.Background()
	inst := func(id, host, st string) proto.Instance {
		return proto.Instance{ID: id, HostNodeID: sp(host), State: st}
	}
	vif := func(id, inst, ip string, sgs ...string) proto.NetworkVif {
		v := proto.NetworkVif{ID: id, MacAddr: "525400000001", IPv4Address: sp(ip), NetworkID: sp("nw-1"), SecurityGroups: sgs}
		if inst != "" {
			v.InstanceID = sp(inst)
		}
		return v
	}
	err := state.Commit(ctx, srv.Store(), srv, func(tx *state.Tx, b *state.Builder) error {
		b.Create(proto.KindHostNode, "hn-1", proto.HostNode{ID: "hn-1", NodeID: "hva.one"})
		b.Create(proto.KindHostNode, "hn-2", proto.HostNode{ID: "hn-2", NodeID: "hva.two"})
		b.Create(proto.KindDcNetwork, "dcn-1", proto.DcNetwork{ID: "dcn-1", Name: "public"})
		b.Create(proto.KindNetwork, "nw-1", proto.Network{ID: "nw-1", DcNetworkID: "dcn-1", IPv4Gw: sp("10.1.0.1")})
		for _, i := range []proto.Instance{
			inst("i-run", "hn-1", proto.InstanceRunning),
			inst("i-halted", "hn-1", proto.InstanceHalted),
			inst("i-down", "hn-1", proto.InstanceShuttingDown),
			inst("i-remote", "hn-2", proto.InstanceRunning),
			inst("i-stopped", "hn-2", proto.InstanceStopped),
		} {
			b.Create(proto.KindInstance, i.ID, i)
		}
		for _, v := range []proto.NetworkVif{
			vif("vif-run", "i-run", "10.1.0.2", "sg-web"),
			vif("vif-halted", "i-halted", "10.1.0.3", "sg-db"),
			vif("vif-down", "i-down", "10.1.0.4", "sg-web"),
			vif("vif-remote", "i-remote", "10.1.0.5", "sg-admin", "sg-web"),
			vif("vif-stopped", "i-stopped", "10.1.0.6", "sg-admin"),
			vif("vif-service", "", "10.1.0.7", "sg-admin"),
			vif("vif-other", "i-remote", "10.1.0.8", "sg-other"),
		} {
			b.Create(proto.KindNetworkVif, v.ID, v)
		}
		b.Create(proto.KindSecurityGroup, "sg-web", proto.SecurityGroup{ID: "sg-web", Rule: "tcp:22,22,sg-admin"})
		b.Create(proto.KindSecurityGroup, "sg-db", proto.SecurityGroup{ID: "sg-db", Rule: "tcp:5432,5432,sg-web"})
		b.Create(proto.KindSecurityGroup, "sg-admin", proto.SecurityGroup{ID: "sg-admin"})
		b.Create(proto.KindSecurityGroup, "sg-other", proto.SecurityGroup{ID: "sg-other", Rule: "tcp:1,1,sg-db"})
		// sg-far names a group the local vnics only name: nothing here.
		b.Create(proto.KindSecurityGroup, "sg-far", proto.SecurityGroup{ID: "sg-far", Rule: "tcp:2,2,sg-admin"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.netfilterData(ctx, proto.GetNetfilterDataRequest{NodeID: "hva.one"})
	if err != nil {
		t.Fatal(err)
	}
	var vnics []string
	for _, v := range got.Vnics {
		vnics = append(vnics, v.ID)
		if v.DcNetwork == nil || v.DcNetwork.Name != "public" || v.Network == nil || *v.Network.IPv4Gw != "10.1.0.1" {
			t.Errorf("vnic %s: network not resolved: %+v %+v", v.ID, v.Network, v.DcNetwork)
		}
	}
	if want := []string{"vif-halted", "vif-run"}; !slices.Equal(vnics, want) {
		t.Errorf("vnics = %v, want %v (not the one shutting down, not the other host's)", vnics, want)
	}
	groups := map[string]proto.NetfilterSecurityGroup{}
	var ids []string
	for _, g := range got.SecurityGroups {
		groups[g.ID] = g
		ids = append(ids, g.ID)
	}
	if want := []string{"sg-admin", "sg-db", "sg-other", "sg-web"}; !slices.Equal(ids, want) {
		t.Fatalf("groups = %v, want %v (own, named, and naming own (sg-other); not sg-far)", ids, want)
	}
	memberIDs := func(g string) []string {
		var out []string
		for _, m := range groups[g].Members {
			out = append(out, m.VifID)
		}
		slices.Sort(out)
		return out
	}
	if got, want := memberIDs("sg-admin"), []string{"vif-remote", "vif-service"}; !slices.Equal(got, want) {
		t.Errorf("sg-admin members = %v, want %v (remote and service vifs, not the stopped one)", got, want)
	}
	if got, want := memberIDs("sg-web"), []string{"vif-remote", "vif-run"}; !slices.Equal(got, want) {
		t.Errorf("sg-web members = %v, want %v", got, want)
	}
	if g := groups["sg-web"]; g.Rule != "tcp:22,22,sg-admin" || !slices.Equal(g.Referencees, []string{"sg-admin"}) ||
		!slices.Equal(g.Referencers, []string{"sg-db"}) {
		t.Errorf("sg-web = %+v", g)
	}
	if g := groups["sg-db"]; !slices.Equal(g.Referencers, []string{"sg-other"}) {
		t.Errorf("sg-db referencers = %v, want [sg-other]", g.Referencers)
	}
	// A referencer's members may ARP the local vnics of the group it names.
	if got, want := memberIDs("sg-other"), []string{"vif-other"}; !slices.Equal(got, want) {
		t.Errorf("sg-other members = %v, want %v", got, want)
	}
	if _, err := s.netfilterData(ctx, proto.GetNetfilterDataRequest{NodeID: "hva.none"}); !errs.Is(err, errs.UnknownHostNode) {
		t.Errorf("unknown node: %v, want UnknownHostNode", err)
	}
}
