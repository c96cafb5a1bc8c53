package filter_test

import (
	"cmp"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/sgrule"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/filter/filtertest"
	"github.com/vdc-project/vdc/proto"
)

// The packet tests' host: bridge nfbr0 in a namespace of its own, vnics A
// (sg-a), B and C (both sg-b: friends), and a probe P on the bridge that is
// not a vnic. Addresses are 192.168.251.0/24, which exists nowhere else.
const (
	ipA, ipB, ipC, ipP = "192.168.251.2", "192.168.251.3", "192.168.251.4", "192.168.251.9"
	macA, macB, macC   = "52:54:00:fb:00:02", "52:54:00:fb:00:03", "52:54:00:fb:00:04"
	macP               = "52:54:00:fb:00:09"
	vifA, vifB, vifC   = "vif-a0000001", "vif-b0000001", "vif-c0000001"
	portOpen, portShut = 7001, 7002
	portUDP            = 7003
	// negative is how long a probe that should be dropped is given.
	negative = 700 * time.Millisecond
)

func sptr(s string) *string { return &s }

// hostData is the managers' answer for the host: B's group has ruleB.
func hostData(ruleB string, extra ...proto.VifView) *proto.GetNetfilterDataResponse {
	dcn := &proto.DcNetwork{Name: "public"}
	vnic := func(id, mac, ip, sg string) proto.VifView {
		return proto.VifView{ID: id, MacAddr: mac, IPv4Address: sptr(ip), SecurityGroups: []string{sg}, DcNetwork: dcn,
			Network: &proto.Network{ID: "nw-lab"}}
	}
	member := func(id, mac, ip string) proto.NetfilterMember {
		return proto.NetfilterMember{VifID: id, MacAddr: mac, IPv4Address: sptr(ip)}
	}
	// B's group is a referencer of A's when its rule names sg-a.
	var refA []string
	if rules, err := sgrule.Parse(ruleB); err == nil && slices.Contains(sgrule.References(rules), "sg-a") {
		refA = []string{"sg-b"}
	}
	return &proto.GetNetfilterDataResponse{
		Vnics: append([]proto.VifView{vnic(vifA, macA, ipA, "sg-a"), vnic(vifB, macB, ipB, "sg-b"), vnic(vifC, macC, ipC, "sg-b")}, extra...),
		SecurityGroups: []proto.NetfilterSecurityGroup{
			{ID: "sg-a", Members: []proto.NetfilterMember{member(vifA, macA, ipA)}, Referencers: refA},
			{ID: "sg-b", Rule: ruleB, Members: []proto.NetfilterMember{member(vifB, macB, ipB), member(vifC, macC, ipC)}},
		},
	}
}

type packetLab struct {
	*filtertest.Lab
	nft        *filter.NFT
	a, b, c, p *filtertest.Guest
}

func newPacketLab(t *testing.T) *packetLab {
	testutil.Real(t, testutil.NeedRoot)
	l := &packetLab{Lab: filtertest.NewLab(t, "nfbr0")}
	l.nft = l.NFT()
	l.a = l.AddGuest(vifA, macA, ipA)
	l.b = l.AddGuest(vifB, macB, ipB)
	l.c = l.AddGuest(vifC, macC, ipC)
	l.p = l.AddGuest("nfprobe0", macP, ipP)
	for _, g := range []*filtertest.Guest{l.a, l.b, l.c, l.p} {
		g.Serve(portOpen)
		g.Serve(portShut)
	}
	return l
}

// apply compiles and installs the host's rules with B's group rule.
func (l *packetLab) apply(t *testing.T, ruleB string, extra ...proto.VifView) {
	t.Helper()
	rs, problems := filter.Compile(hostData(ruleB, extra...), filter.Options{Table: "nfvdc", Bridges: map[string]string{"public": "nfbr0"}})
	if len(problems) != 0 {
		t.Fatalf("Compile: %v", problems)
	}
	if err := l.nft.Apply(context.Background(), rs); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// reaches waits until from gets an echo from to's port.
func reaches(t *testing.T, from, to *filtertest.Guest, port int) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error {
		return from.Connect(filtertest.Addr(to.IP, port), "", time.Second)
	})
}

// blocked checks that a new connection from from to to's port fails.
func blocked(t *testing.T, from, to *filtertest.Guest, port int, src string) {
	t.Helper()
	if err := from.Connect(filtertest.Addr(to.IP, port), src, negative); err == nil {
		t.Fatalf("%s reached %s:%d (from %q), want it dropped", from.HostIf, to.IP, port, src)
	}
}

func pings(t *testing.T, from, to *filtertest.Guest) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, func() error { return from.Ping(context.Background(), to.IP, time.Second) })
}

func noPing(t *testing.T, from, to *filtertest.Guest) {
	t.Helper()
	if err := from.Ping(context.Background(), to.IP, time.Second); err == nil {
		t.Fatalf("%s got a ping reply from %s, want it dropped", from.HostIf, to.IP)
	}
}

// TestSecurityGroupPackets sends real packets between namespaces on a
// bridge filtered by the compiled rules.
func TestSecurityGroupPackets(t *testing.T) {
	l := newPacketLab(t)

	t.Run("DefaultDropAndFriends", func(t *testing.T) {
		l.apply(t, "")
		// Friends (B, C share sg-b) reach each other, both ways.
		reaches(t, l.c, l.b, portOpen)
		reaches(t, l.b, l.c, portShut)
		pings(t, l.b, l.c)
		// Nobody else reaches B; B's replies from friends are not enough.
		blocked(t, l.a, l.b, portOpen, "")
		blocked(t, l.p, l.b, portOpen, "")
		blocked(t, l.b, l.a, portOpen, "") // A's own group allows nothing
		noPing(t, l.a, l.b)
	})

	t.Run("RuleNamingAGroup", func(t *testing.T) {
		l.apply(t, fmt.Sprintf("tcp:%d,%d,sg-a", portOpen, portOpen))
		reaches(t, l.a, l.b, portOpen)     // replies pass A's closed group: established
		blocked(t, l.a, l.b, portShut, "") // only the port of the rule
		blocked(t, l.p, l.b, portOpen, "") // the probe is not in sg-a
		noPing(t, l.a, l.b)                // no icmp rule
	})

	t.Run("RuleNamingAnAddress", func(t *testing.T) {
		l.apply(t, fmt.Sprintf("tcp:%d,%d,ip4:%s", portOpen, portOpen, ipP))
		reaches(t, l.p, l.b, portOpen)
		blocked(t, l.a, l.b, portOpen, "")
		l.apply(t, fmt.Sprintf("tcp:%d,%d,ip4:192.168.251.0/24", portOpen, portShut))
		reaches(t, l.a, l.b, portShut) // a port range from a network
		reaches(t, l.p, l.b, portOpen)
	})

	t.Run("PingFollowsIcmpRule", func(t *testing.T) {
		l.apply(t, "icmp:-1,-1,ip4:0.0.0.0")
		pings(t, l.a, l.b)
		pings(t, l.p, l.b)
		blocked(t, l.a, l.b, portOpen, "")
		l.apply(t, "icmp:0,8,sg-a") // echo request (type 8, code 0) from sg-a only
		pings(t, l.a, l.b)
		noPing(t, l.p, l.b)
		l.apply(t, "")
		noPing(t, l.a, l.b)
	})

	t.Run("ReferencersResolveWhomTheyAnswer", func(t *testing.T) {
		// B's group lets A in: B answers A, so B must be able to resolve A
		// again when its neighbour entry expires, although A's own group
		// lets nobody in. The probe, in no group, cannot resolve A.
		l.apply(t, "icmp:-1,-1,sg-a")
		pings(t, l.a, l.b)
		for _, g := range []*filtertest.Guest{l.b, l.p} {
			if out, err := exec.Command("ip", "-n", g.Name, "neigh", "flush", "dev", "eth0").CombinedOutput(); err != nil {
				t.Fatalf("flush neighbours of %s: %v: %s", g.Name, err, out)
			}
		}
		// The pings themselves are dropped by A's group: they only make B
		// and the probe send ARP requests for A.
		noPing(t, l.b, l.a)
		noPing(t, l.p, l.a)
		if n := neighbor(t, l.b, ipA); !strings.Contains(n, "lladdr "+macA) {
			t.Fatalf("B cannot resolve A, whose group B's rule names: %q", n)
		}
		if n := neighbor(t, l.p, ipA); strings.Contains(n, "lladdr") {
			t.Fatalf("the probe resolved A, whose groups nothing of the probe's names: %q", n)
		}
		pings(t, l.a, l.b)
	})

	t.Run("RemovingRuleCutsNewConnectionsOnly", func(t *testing.T) {
		l.apply(t, fmt.Sprintf("tcp:%d,%d,sg-a", portOpen, portOpen))
		reaches(t, l.a, l.b, portOpen)
		conn, err := l.a.Dial(filtertest.Addr(ipB, portOpen), "", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := filtertest.Echo(conn, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		l.apply(t, "")
		blocked(t, l.a, l.b, portOpen, "")
		// conntrack still knows the open connection: it carries on.
		if err := filtertest.Echo(conn, 5*time.Second); err != nil {
			t.Fatalf("established connection after the rule went: %v", err)
		}
	})

	t.Run("SpoofedSourceDropped", func(t *testing.T) {
		// One-way UDP shows what leaves A: B's group takes it from anywhere.
		l.apply(t, fmt.Sprintf("udp:%d,%d,ip4:0.0.0.0", portUDP, portUDP))
		sink := l.b.ServeUDP(portUDP)
		dst := filtertest.Addr(ipB, portUDP)
		// arrives sends a datagram until B has it: A's own first (A learns
		// B's MAC), later as a marker. One path keeps datagrams in order, so
		// once a marker is in, spoofed datagrams sent before it had their
		// chance to arrive.
		arrives := func(g *filtertest.Guest, src, payload string) {
			t.Helper()
			testutil.WaitFor(t, 10*time.Second, func() error {
				if err := g.SendUDP(dst, src, payload); err != nil {
					return err
				}
				if sink.Count(cmp.Or(src, g.IP), payload) == 0 {
					return fmt.Errorf("%q from %s not in yet", payload, g.HostIf)
				}
				return nil
			})
		}
		send := func(g *filtertest.Guest, src, payload string) {
			t.Helper()
			for range 5 {
				if err := g.SendUDP(dst, src, payload); err != nil {
					t.Fatal(err)
				}
			}
		}
		arrives(l.a, "", "own")

		// A takes an address that is not its vnic's: dropped as it leaves.
		const spoofed = "192.168.251.50"
		l.a.AddAddr(spoofed)
		send(l.a, spoofed, "spoofed-ip")
		arrives(l.a, "", "marker-1")
		if n := sink.Count(spoofed, "spoofed-ip"); n != 0 {
			t.Fatalf("B received %d datagrams from the spoofed %s", n, spoofed)
		}

		// A takes another MAC: its frames are dropped (B's MAC is pinned in
		// A, so this is about the frames, not about ARP).
		l.a.SetMAC("52:54:00:fb:00:66")
		l.a.StaticNeighbor(ipB, macB)
		send(l.a, "", "spoofed-mac")
		l.a.SetMAC(macA)
		arrives(l.a, "", "marker-2")
		if n := sink.Count(ipA, "spoofed-mac"); n != 0 {
			t.Fatalf("B received %d datagrams sent with a spoofed MAC", n)
		}

		// The probe is no vnic: any address it uses reaches B.
		l.p.AddAddr("192.168.251.51")
		arrives(l.p, "192.168.251.51", "probe")
	})

	t.Run("UnknownVnicTapIsClosed", func(t *testing.T) {
		const vifD, macD, ipD = "vif-d0000001", "52:54:00:fb:00:05", "192.168.251.5"
		l.apply(t, fmt.Sprintf("tcp:%d,%d,ip4:0.0.0.0", portOpen, portOpen))
		d := l.AddGuest(vifD, macD, ipD)
		d.Serve(portOpen)
		// A tap named like a vnic with no chains yet: nothing in or out.
		blocked(t, d, l.b, portOpen, "")
		blocked(t, l.p, d, portOpen, "")
		l.apply(t, fmt.Sprintf("tcp:%d,%d,ip4:0.0.0.0", portOpen, portOpen), proto.VifView{
			ID: vifD, MacAddr: macD, IPv4Address: sptr(ipD), SecurityGroups: []string{"sg-b"},
			DcNetwork: &proto.DcNetwork{Name: "public"}})
		reaches(t, d, l.b, portOpen)
		reaches(t, l.b, d, portOpen) // D is in sg-b, whose rule opens the port
	})
}

// neighbor is the guest's neighbour entry for ip ("" when there is none).
func neighbor(t *testing.T, g *filtertest.Guest, ip string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", g.Name, "neigh", "show", ip).CombinedOutput()
	if err != nil {
		t.Fatalf("neighbours of %s: %v: %s", g.Name, err, out)
	}
	return strings.TrimSpace(string(out))
}
