package bench

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/filter/filtertest"
	"github.com/vdc-project/vdc/hva/netfilter"
	"github.com/vdc-project/vdc/hva/network"
	"github.com/vdc-project/vdc/proto"
)

// logMachine writes the machine the figures were taken on.
func logMachine(b *testing.B) {
	m := Probe(context.Background())
	var sb strings.Builder
	m.WriteTable(&sb)
	b.Log("\n" + sb.String())
}

// BenchmarkSecurityGroupChange100Vnics: one hva with 100 running instances
// (dummy hypervisor, real persistent taps on a bridge in a namespace), all
// in one security group. Each iteration PUTs a new rule text to the group
// and waits until the rule is in the kernel (read back from the chain of
// the last vnic: the whole rule set is one transaction, so all 100 chains
// changed together). Reported: PUT → rules in the kernel, and the
// Filter.Apply of the pass that brought it (compile and the read from the
// managers excluded).
//
//	sudo go test -run '^$' -bench SecurityGroupChange100Vnics -benchtime 20x ./bench/
func BenchmarkSecurityGroupChange100Vnics(b *testing.B) {
	const n = 100
	c := startNFCluster(b, nfOptions{events: true, interval: time.Hour, hostNet: realTaps})
	ctx := context.Background()
	sg := c.securityGroup("tcp:22,22,ip4:0.0.0.0")
	vnics := make([]nfVnic, n)
	var wg sync.WaitGroup
	errc := make(chan error, n)
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			id, err := c.createInstance(ctx, sg)
			if err == nil {
				vnics[i], err = c.running(ctx, id)
			}
			errc <- err
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			b.Fatal(err)
		}
	}
	last := vnics[n-1].vif
	waitFor(b, func() error {
		if st := c.service().Stats(); st.Vnics != n {
			return fmt.Errorf("the last pass had %d vnics", st.Vnics)
		}
		return c.hasChain(ctx, last)
	})
	logMachine(b)

	var toKernel, apply time.Duration
	b.ResetTimer()
	for i := range b.N {
		port := portOf(i)
		start := time.Now()
		if err := c.setRule(ctx, sg, "tcp:"+port+","+port+",ip4:0.0.0.0"); err != nil {
			b.Fatal(err)
		}
		for {
			ok, err := c.chainHas(ctx, last, "th dport "+port+" ")
			if err != nil {
				b.Fatal(err)
			}
			if ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
		toKernel += time.Since(start)
		// The pass that applied it records its figures right after Apply.
		var st netfilter.Stats
		waitFor(b, func() error {
			if st = c.service().Stats(); st.LastAppliedAt.Before(start) {
				return fmt.Errorf("no pass recorded since the change")
			}
			return nil
		})
		apply += st.LastApply
	}
	b.StopTimer()
	st := c.service().Stats()
	b.ReportMetric(float64(toKernel.Microseconds())/1000/float64(b.N), "ms-put-to-kernel")
	b.ReportMetric(float64(apply.Microseconds())/1000/float64(b.N), "ms-apply")
	b.ReportMetric(float64(st.Rules), "rules")
	b.ReportMetric(float64(st.Vnics), "vnics")
}

// realTaps is the hva's own host network over netlink in the lab's
// namespace: persistent taps named after the vifs on the bridge.
func realTaps(c *nfCluster) netfilter.HostNetwork {
	k, err := network.NewKernel(c.lab.Host)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(k.Close)
	n, err := network.New(network.Config{Networks: map[string]network.DCNetwork{nfDcNet: {Bridge: nfBridge}}, Links: k})
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

func waitFor(b *testing.B, fn func() error) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// synthHost is the netfilter data of a host with n vnics in groups of 20,
// each group with four rules: ssh from anywhere, http from the next group,
// icmp echo from a network, and a udp range from its own members.
func synthHost(n int) *proto.GetNetfilterDataResponse {
	base := netip.MustParseAddr("192.168.248.1") // 192.168.248.0/22: 1,022 addresses
	addr := func(i int) string {
		a := base.As4()
		v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		v += uint32(i)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
	}
	groups := (n + 19) / 20
	d := &proto.GetNetfilterDataResponse{}
	members := make([][]proto.NetfilterMember, groups)
	dcn := &proto.DcNetwork{Name: nfDcNet}
	gw := "192.168.248.254"
	nw := &proto.Network{ID: nfNetwork, IPv4Gw: &gw}
	for i := range n {
		ip := addr(i)
		sg := fmt.Sprintf("sg-g%04d", i/20)
		vif := fmt.Sprintf("vif-%08d", i)
		mac := fmt.Sprintf("5254%08x", i+1)
		d.Vnics = append(d.Vnics, proto.VifView{ID: vif, MacAddr: mac, IPv4Address: &ip,
			SecurityGroups: []string{sg}, Network: nw, DcNetwork: dcn})
		members[i/20] = append(members[i/20], proto.NetfilterMember{VifID: vif, MacAddr: mac, IPv4Address: &ip})
	}
	for g := range groups {
		next := fmt.Sprintf("sg-g%04d", (g+1)%groups)
		self := fmt.Sprintf("sg-g%04d", g)
		d.SecurityGroups = append(d.SecurityGroups, proto.NetfilterSecurityGroup{
			ID:      self,
			Rule:    "tcp:22,22,ip4:0.0.0.0\ntcp:80,80," + next + "\nicmp:-1,8,ip4:10.0.0.0/8\nudp:5000,5100," + self,
			Members: members[g],
		})
	}
	return d
}

// BenchmarkNftApply1000Vnics: the whole rule set of a host with 1,000
// vnics (50 groups) applied in one transaction, in a namespace of its own.
// Reported per apply: compile and Filter.Apply (the netlink transaction),
// and the rule count.
//
//	sudo go test -run '^$' -bench NftApply1000Vnics -benchtime 10x ./bench/
func BenchmarkNftApply1000Vnics(b *testing.B) {
	benchApply(b, 1000)
}

func benchApply(b *testing.B, n int) {
	lab := filtertest.NewLab(b, nfBridge) // skips off-root (testutil.Real)
	nft := lab.NFT()
	ctx := context.Background()
	data := synthHost(n)
	logMachine(b)
	var compile, apply time.Duration
	var rules int
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		rs, problems := filter.Compile(data, filter.Options{Table: nfTable, Bridges: map[string]string{nfDcNet: nfBridge}})
		if len(problems) != 0 {
			b.Fatal(problems)
		}
		mid := time.Now()
		if err := nft.Apply(ctx, rs); err != nil {
			b.Fatal(err)
		}
		compile += mid.Sub(start)
		apply += time.Since(mid)
		rules = rs.RuleCount()
	}
	b.StopTimer()
	got, err := nft.ChainRules(ctx, filter.FamilyInet, nfTable, filter.InChain(fmt.Sprintf("vif-%08d", n-1)))
	if err != nil || len(got) == 0 {
		b.Fatalf("the last vnic's chain is not in the kernel: %v", err)
	}
	b.ReportMetric(float64(compile.Microseconds())/1000/float64(b.N), "ms-compile")
	b.ReportMetric(float64(apply.Microseconds())/1000/float64(b.N), "ms-apply")
	b.ReportMetric(float64(rules), "rules")
}
