package scheduler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// benchHosts makes n hosts with varied offerings and usage; one in 50 is
// offline, one in 20 runs another hypervisor, so the scan filters as in a
// real cluster.
func benchHosts(n int) *View {
	rnd := rand.New(rand.NewPCG(7, 7))
	v := &View{Hosts: make([]Host, n), Groups: map[string]bool{"hng-a": true, "hng-b": true}}
	for i := range v.Hosts {
		group := "hng-a"
		if i%2 == 1 {
			group = "hng-b"
		}
		h := testHost(fmt.Sprintf("hn-%05d", i), 64, 262144, group)
		h.UsedCPU = rnd.Int64N(60)
		h.UsedMemoryMB = rnd.Int64N(250000)
		for k := range 4 {
			h.Instances = append(h.Instances, InstanceUsage{AccountID: fmt.Sprintf("a-%d", (i+k)%7), CPU: 1, MemoryMB: 1024, QuotaWeight: 1})
		}
		h.Online = i%50 != 0
		if i%20 == 3 {
			h.Hypervisor = "lxc"
		}
		v.Hosts[i] = h
	}
	return v
}

func benchHostScheduler(b *testing.B, s HostScheduler, n int) {
	v := benchHosts(n)
	r := testReq("i-bench", 2, 4096, map[string]any{"host_node_group": "b"})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.ScheduleHost(v, &r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

func BenchmarkLeastUsage(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) { benchHostScheduler(b, LeastUsage{}, n) })
	}
	// Worst cases for the scan: hosts in ascending order of available
	// memory, so every host beats the one before; with "mixed" the most
	// available host runs another hypervisor, which forces the second pass.
	for _, n := range []int{1000, 10000} {
		for _, mixed := range []bool{false, true} {
			name := fmt.Sprintf("hosts=%d/ascending", n)
			if mixed {
				name += "-mixed"
			}
			b.Run(name, func(b *testing.B) { benchAscending(b, n, mixed) })
		}
	}
}

func benchAscending(b *testing.B, n int, mixed bool) {
	v := benchHosts(n)
	for i := range v.Hosts {
		v.Hosts[i].UsedMemoryMB = int64(n - i)
	}
	if mixed {
		v.Hosts[n-1].Online, v.Hosts[n-1].Hypervisor = true, "lxc"
	}
	r := testReq("i-bench", 2, 4096, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := (LeastUsage{}).ScheduleHost(v, &r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

func BenchmarkPipedRules(b *testing.B) {
	p := &PipedRules{Rules: []HostRule{
		HostRequestParamToGroup{Key: "host_node_group", Default: "hng-a", Pairs: map[string]string{"b": "hng-b"}},
		ScatterBy{},
		LeastUsageBy{Key: UsageMemorySize},
	}}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) { benchHostScheduler(b, p, n) })
	}
}

// BenchmarkPlace measures whole placements (host, two NICs with MAC and IP)
// recorded one after another into the view, 1,000 hosts.
func BenchmarkPlace(b *testing.B) {
	v := benchHosts(1000)
	nw := testNetwork("nw-big")
	nw.IPv4Network, nw.Prefix = ip("10.0.0.0"), 8
	nw.DhcpRanges = []IPRange{{ip("10.0.0.1"), ip("10.255.255.254")}}
	v.Networks = []Network{nw}
	v.MacRanges = []MacRange{macRange("mr-1", 0, 0xffffff)}
	v.MacLeases = map[MAC]struct{}{}
	for i := range v.Hosts {
		v.Hosts[i].OfferingCPUCores, v.Hosts[i].OfferingMemoryMB = 1<<40, 1<<40
	}
	s := &Schedulers{Host: LeastUsage{}, Network: VifsRequestParam{}, MAC: DefaultMAC{Rand: newRand()}, IP: Incremental{}}
	r := testReq("i-bench", 1, 1024, map[string]any{"vifs": map[string]any{"eth0": map[string]any{"network": "nw-big"}}})
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.PlaceOne(v, &r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "placements/s")
}
