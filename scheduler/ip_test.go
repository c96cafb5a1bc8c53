package scheduler

import (
	"slices"
	"testing"
)

// allocate runs Incremental n times on nw, recording each choice, and returns
// the addresses given.
func allocate(t *testing.T, nw *Network, n int) []string {
	t.Helper()
	var got []string
	for range n {
		c, err := Incremental{}.ScheduleIP(nw, "")
		if err != nil {
			t.Fatalf("allocation %d: %v", len(got)+1, err)
		}
		nw.Record(c)
		got = append(got, c.Addr.String())
	}
	return got
}

// TestIncrementalSpec covers the original's IP Incremental spec (network
// 192.168.0.0/24) plus the descending order. Each case allocates pre
// addresses, releases some, optionally replaces the DHCP ranges, then checks
// the next allocations.
func TestIncrementalSpec(t *testing.T) {
	r := func(a, b int) [2]int { return [2]int{a, b} }
	tests := []struct {
		name       string
		ranges     [][2]int
		gateway    string
		desc       bool
		pre        int
		wantPre    []string // checked when set
		release    []string
		thenRanges [][2]int // replaces the ranges after pre/release when set
		want       []string
		wantErr    ErrorKind
	}{
		{name: "no dhcp range", wantErr: KindOutOfIPRange},
		{name: "first ip: default range", ranges: [][2]int{r(0, 255)}, want: []string{"192.168.0.1"}},
		{name: "first ip: range .1-.254", ranges: [][2]int{r(1, 254)}, want: []string{"192.168.0.1"}},
		{name: "two ranges, three assigned: next in second range",
			ranges: [][2]int{r(3, 5), r(10, 12)}, pre: 3,
			wantPre: []string{"192.168.0.3", "192.168.0.4", "192.168.0.5"},
			want:    []string{"192.168.0.10"}},
		{name: "gateway .1 in range .1-.5", ranges: [][2]int{r(1, 5)}, gateway: "192.168.0.1",
			want: []string{"192.168.0.2"}},
		{name: "gateway .3 after two assignments", ranges: [][2]int{r(1, 5)}, gateway: "192.168.0.3", pre: 2,
			wantPre: []string{"192.168.0.1", "192.168.0.2"},
			want:    []string{"192.168.0.4"}},
		{name: "wraparound: continue from last, wrap, lowest free first",
			ranges: [][2]int{r(1, 5), r(11, 15)}, pre: 10,
			release: []string{"192.168.0.12", "192.168.0.3", "192.168.0.5"},
			want:    []string{"192.168.0.3", "192.168.0.5", "192.168.0.12"}},
		{name: "wraparound exhausts the network", ranges: [][2]int{r(1, 5), r(11, 15)}, pre: 10,
			wantErr: KindOutOfIPRange},
		{name: "dhcp range replaced", ranges: [][2]int{r(10, 15)}, pre: 6,
			thenRanges: [][2]int{r(4, 6)},
			want:       []string{"192.168.0.4"}},
		{name: "don't reuse immediately", ranges: [][2]int{r(1, 15)}, pre: 5,
			release: []string{"192.168.0.3"},
			want:    []string{"192.168.0.6"}},
		{name: "don't reuse immediately, then wrap to the released one", ranges: [][2]int{r(1, 6)}, pre: 5,
			release: []string{"192.168.0.3"},
			want:    []string{"192.168.0.6", "192.168.0.3"}},
		{name: "broadcast is reserved", ranges: [][2]int{r(250, 255)}, pre: 5,
			wantErr: KindOutOfIPRange},

		{name: "desc: first ip from the top, broadcast reserved", ranges: [][2]int{r(0, 255)}, desc: true,
			want: []string{"192.168.0.254", "192.168.0.253"}},
		{name: "desc: ranges by end descending", ranges: [][2]int{r(3, 5), r(10, 12)}, desc: true, pre: 3,
			wantPre: []string{"192.168.0.12", "192.168.0.11", "192.168.0.10"},
			want:    []string{"192.168.0.5"}},
		{name: "desc: wraparound", ranges: [][2]int{r(1, 5)}, desc: true, pre: 4,
			release: []string{"192.168.0.4", "192.168.0.3"},
			want:    []string{"192.168.0.1", "192.168.0.4", "192.168.0.3"}},
		{name: "desc: gateway skipped", ranges: [][2]int{r(1, 5)}, desc: true, gateway: "192.168.0.5",
			want: []string{"192.168.0.4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nw := testNetwork("nw-test", tt.ranges...)
			if tt.gateway != "" {
				nw.Gateway = ip(tt.gateway)
			}
			if tt.desc {
				nw.IPAssignment = "desc"
			}
			pre := allocate(t, &nw, tt.pre)
			if tt.wantPre != nil && !slices.Equal(pre, tt.wantPre) {
				t.Fatalf("first allocations = %v, want %v", pre, tt.wantPre)
			}
			for _, a := range tt.release {
				if _, ok := nw.Leases[ip(a)]; !ok {
					t.Fatalf("release %s: not leased", a)
				}
				delete(nw.Leases, ip(a))
			}
			if tt.thenRanges != nil {
				nw.DhcpRanges = testNetwork("", tt.thenRanges...).DhcpRanges
			}
			if tt.wantErr != 0 {
				_, err := Incremental{}.ScheduleIP(&nw, "")
				checkErr(t, err, tt.wantErr, "Run out of dynamic IP addresses from the network segment: 192.168.0.0/24")
				return
			}
			if got := allocate(t, &nw, len(tt.want)); !slices.Equal(got, tt.want) {
				t.Errorf("allocations = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIncrementalReserved(t *testing.T) {
	nw := testNetwork("nw-test", [2]int{0, 255})
	nw.Gateway, nw.DNSServer, nw.DHCPServer, nw.MetadataServer = ip("192.168.0.1"), ip("192.168.0.2"), ip("192.168.0.3"), ip("192.168.0.4")
	c, err := Incremental{}.ScheduleIP(&nw, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ip("192.168.0.5") || c.Kind != LeaseAuto {
		t.Errorf("choice = %v %v, want 192.168.0.5 auto", c.Addr, c.Kind)
	}
	want := []IPv4{ip("192.168.0.0"), ip("192.168.0.1"), ip("192.168.0.2"), ip("192.168.0.3"), ip("192.168.0.4")}
	if !slices.Equal(c.Reserved, want) {
		t.Errorf("reserved = %v, want %v", c.Reserved, want)
	}
	if len(nw.Leases) != 0 {
		t.Fatal("ScheduleIP modified the network")
	}
	nw.Record(c)
	if l := nw.Leases[ip("192.168.0.1")]; l.Kind != LeaseReserved {
		t.Errorf("gateway lease = %+v, want reserved", l)
	}
	if l := nw.Leases[ip("192.168.0.5")]; l.Kind != LeaseAuto || l.Seq != 6 {
		t.Errorf("lease = %+v, want auto with seq 6", l)
	}
	// Reserved leases do not move the starting point: the next search
	// continues after .5, not after the last reserved one.
	c, _ = Incremental{}.ScheduleIP(&nw, "")
	if c.Addr != ip("192.168.0.6") || len(c.Reserved) != 0 {
		t.Errorf("next = %v reserved %v, want .6 and none", c.Addr, c.Reserved)
	}
	// A static lease (SpecifyIP) does not move it either.
	nw.Record(IPChoice{Addr: ip("192.168.0.100"), Kind: LeaseStatic})
	if c, _ = (Incremental{}).ScheduleIP(&nw, ""); c.Addr != ip("192.168.0.6") {
		t.Errorf("after static lease next = %v, want .6", c.Addr)
	}

	nw.IPAssignment = "random"
	_, err = Incremental{}.ScheduleIP(&nw, "")
	checkErr(t, err, KindIPAddress, "Unsupported IP address assignment: random")
}

func TestSpecifyIP(t *testing.T) {
	nw := testNetwork("nw-test", [2]int{10, 20}, [2]int{100, 110})
	nw.Gateway = ip("192.168.0.15")
	nw.Leases[ip("192.168.0.12")] = Lease{Seq: 1}
	tests := []struct {
		want    string
		wantErr ErrorKind
		reason  Reason
		msg     string
	}{
		{"192.168.0.10", 0, 0, ""},
		{"192.168.0.105", 0, 0, ""},
		{"", KindIPAddress, ReasonInvalidAddress, "Invalid IP address: ''"},
		{"192.168.0", KindIPAddress, ReasonInvalidAddress, "Invalid IP address: '192.168.0'"},
		{"192.168.0.256", KindIPAddress, ReasonInvalidAddress, ""},
		{"192.168.0.1x", KindIPAddress, ReasonInvalidAddress, ""},
		{"10.0.0.10", KindIPAddress, ReasonNotInSegment, "IP address 10.0.0.10 is not in the segment of network nw-test (192.168.0.0/24)"},
		{"192.168.0.50", KindIPAddress, ReasonNotInRange, "IP address 192.168.0.50 is not in a DHCP range of network nw-test"},
		{"192.168.0.12", KindIPAddress, ReasonLeased, "IP address 192.168.0.12 is already leased in network nw-test"},
		// The gateway inside a DHCP range is refused even without a reserved
		// lease row (fixed: the original handed it out).
		{"192.168.0.15", KindIPAddress, ReasonLeased, ""},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			c, err := SpecifyIP{}.ScheduleIP(&nw, tt.want)
			if !checkErr(t, err, tt.wantErr, tt.msg) {
				if r := err.(*SchedulingError).Reason; r != tt.reason {
					t.Errorf("reason = %v, want %v", r, tt.reason)
				}
				return
			}
			if c.Addr.String() != tt.want || c.Kind != LeaseStatic || len(c.Reserved) != 0 {
				t.Errorf("choice = %+v, want %s static", c, tt.want)
			}
		})
	}
}

func TestParseIPv4(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "255.255.255.255", "10.1.2.3"} {
		a, err := ParseIPv4(s)
		if err != nil || a.String() != s {
			t.Errorf("ParseIPv4(%q) = %v, %v", s, a, err)
		}
	}
	for _, s := range []string{"", "1.2.3", "1.2.3.4.5", "1..3.4", "+1.2.3.4", "1.2.3.-4", "1.2.3.1000", "a.b.c.d", " 1.2.3.4"} {
		if _, err := ParseIPv4(s); err == nil {
			t.Errorf("ParseIPv4(%q) succeeded", s)
		}
	}
}
