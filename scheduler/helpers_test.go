package scheduler

import (
	"errors"
	"math/rand/v2"
	"testing"
)

// host returns an online, enabled x86_64 kvm host with the given offering.
func testHost(id string, cpu, memMB int64, groups ...string) Host {
	return Host{
		ID: id, NodeID: "hva." + id, Arch: "x86_64", Hypervisor: "kvm",
		Online: true, SchedulingEnabled: true,
		OfferingCPUCores: cpu, OfferingMemoryMB: memMB, OfferingDiskMB: 100 << 10,
		Groups: groups,
	}
}

// testReq returns an x86_64 kvm request.
func testReq(id string, cpu, memMB int64, params map[string]any) Request {
	return Request{
		InstanceID: id, AccountID: "a-shpoolxx", Arch: "x86_64", Hypervisor: "kvm",
		CPU: cpu, MemoryMB: memMB, RequestParams: params,
	}
}

// testNetwork returns 192.168.0.0/24 with the given DHCP ranges ("a-b" in
// last octets).
func testNetwork(id string, ranges ...[2]int) Network {
	n := Network{ID: id, IPv4Network: MustIPv4("192.168.0.0"), Prefix: 24, Leases: map[IPv4]Lease{}}
	for _, r := range ranges {
		n.DhcpRanges = append(n.DhcpRanges, IPRange{Begin: n.IPv4Network + IPv4(r[0]), End: n.IPv4Network + IPv4(r[1])})
	}
	return n
}

func ip(s string) IPv4 { return MustIPv4(s) }

// seqRand returns the given values in turn (modulo n), then repeats the last.
type seqRand struct {
	vals []uint64
	i    int
}

func (s *seqRand) Uint64N(n uint64) uint64 {
	v := s.vals[min(s.i, len(s.vals)-1)]
	s.i++
	return v % n
}

func newRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// checkErr fails unless err matches the wanted kind and message ("" = any
// message; kind 0 = no error).
func checkErr(t *testing.T, err error, kind ErrorKind, msg string) bool {
	t.Helper()
	if kind == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return true
	}
	var se *SchedulingError
	if !errors.As(err, &se) {
		t.Fatalf("error = %v, want %v %q", err, kind, msg)
	}
	if se.Kind != kind || (msg != "" && se.Msg != msg) {
		t.Fatalf("error = %v %q, want %v %q", se.Kind, se.Msg, kind, msg)
	}
	return false
}
