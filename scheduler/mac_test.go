package scheduler

import "testing"

func macRange(id string, begin, end uint32) MacRange {
	return MacRange{ID: id, Vendor: DefaultMacVendor, Begin: begin, End: end}
}

func leased(ms ...MAC) map[MAC]struct{} {
	m := make(map[MAC]struct{})
	for _, x := range ms {
		m[x] = struct{}{}
	}
	return m
}

func TestMacSchedulers(t *testing.T) {
	mac := func(addr uint32) MAC { return makeMAC(DefaultMacVendor, addr) }
	ranges := []MacRange{macRange("mr-demomacs", 0x10, 0x13), macRange("mr-range1", 0x100, 0x101), macRange("mr-full", 0x200, 0x200)}
	host := testHost("hn-1", 1, 1, "hng-other", "hng-full", "hng-shhost")
	byGroup := func(def string) ByHostNodeGroup {
		return ByHostNodeGroup{Default: def, Pairs: map[string]string{"hng-shhost": "mr-range1", "hng-full": "mr-full"}}
	}
	tests := []struct {
		name    string
		sched   MacScheduler
		rnd     []uint64
		ranges  []MacRange
		leases  map[MAC]struct{}
		host    *Host
		want    MAC
		wantErr ErrorKind
		msg     string
	}{
		{"Default random in first range", DefaultMAC{}, []uint64{2}, ranges, nil, nil, mac(0x12), 0, ""},
		{"Default retries until not leased", DefaultMAC{}, []uint64{0, 1, 3}, ranges, leased(mac(0x10), mac(0x11)), nil, mac(0x13), 0, ""},
		// The random picks keep hitting leased addresses: the probe that
		// follows still finds the free one.
		{"Default probes after unlucky picks", DefaultMAC{}, []uint64{0}, ranges, leased(mac(0x10), mac(0x11), mac(0x13)), nil, mac(0x12), 0, ""},
		{"Default full range", DefaultMAC{}, []uint64{0}, ranges, leased(mac(0x10), mac(0x11), mac(0x12), mac(0x13)), nil, 0, KindMacAddress, "No free MAC address left in range 'mr-demomacs'"},
		{"Default no range", DefaultMAC{}, []uint64{0}, nil, nil, nil, 0, KindMacAddress, "No MAC address range defined"},

		{"ByHostNodeGroup first paired group in host order", byGroup("mr-demomacs"), []uint64{1}, ranges, nil, &host, mac(0x200), 0, ""},
		{"ByHostNodeGroup next group when one range is full", byGroup("mr-demomacs"), []uint64{1}, ranges, leased(mac(0x200)), &host, mac(0x101), 0, ""},
		{"ByHostNodeGroup full group range falls through", byGroup("mr-demomacs"), []uint64{1}, ranges, leased(mac(0x200), mac(0x100), mac(0x101)), &host, mac(0x11), 0, ""},
		{"ByHostNodeGroup no host uses default", byGroup("mr-demomacs"), []uint64{0}, ranges, nil, nil, mac(0x10), 0, ""},
		{"ByHostNodeGroup unknown paired range", ByHostNodeGroup{Default: "mr-demomacs", Pairs: map[string]string{"hng-other": "mr-nope"}}, []uint64{0}, ranges, nil, &host, 0, KindMacAddress, "MAC address range 'mr-nope' not found"},
		{"ByHostNodeGroup unknown default", byGroup("mr-nope"), []uint64{0}, ranges, leased(mac(0x200), mac(0x100), mac(0x101)), &host, 0, KindMacAddress, "MAC address range 'mr-nope' not found"},
		{"ByHostNodeGroup all full", byGroup("mr-full"), []uint64{0}, ranges, leased(mac(0x200), mac(0x100), mac(0x101)), &host, 0, KindMacAddress, "No free MAC address left in range 'mr-full'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rnd := &seqRand{vals: tt.rnd}
			switch s := tt.sched.(type) {
			case DefaultMAC:
				s.Rand = rnd
				tt.sched = s
			case ByHostNodeGroup:
				s.Rand = rnd
				tt.sched = s
			}
			v := &View{MacRanges: tt.ranges, MacLeases: tt.leases}
			m, err := tt.sched.ScheduleMAC(v, tt.host, "")
			if checkErr(t, err, tt.wantErr, tt.msg) && m != tt.want {
				t.Errorf("mac = %v, want %v", m, tt.want)
			}
		})
	}
}

func TestSpecifyMacAddress(t *testing.T) {
	v := &View{
		MacRanges: []MacRange{macRange("mr-1", 0x000010, 0x0000ff), {ID: "mr-other", Vendor: 0x001122, Begin: 0, End: 0xffffff}},
		MacLeases: leased(makeMAC(DefaultMacVendor, 0x20)),
	}
	tests := []struct {
		vendor  uint32
		want    string
		mac     string
		reason  Reason
		wantErr ErrorKind
		msg     string
	}{
		{0, "525400000011", "525400000011", 0, 0, ""},
		{0, "52:54:00:00:00:12", "", ReasonInvalidAddress, KindMacAddress, "Invalid MAC address: '52:54:00:00:00:12'"},
		{0, "000013", "525400000013", 0, 0, ""},
		{0, "00001A", "52540000001a", 0, 0, ""},
		{0x001122, "000013", "001122000013", 0, 0, ""},
		{0, "001122abcdef", "001122abcdef", 0, 0, ""},
		{0, "00001", "", ReasonInvalidAddress, KindMacAddress, ""},
		{0, "0000123", "", ReasonInvalidAddress, KindMacAddress, ""},
		{0, "00001g", "", ReasonInvalidAddress, KindMacAddress, ""},
		{0, "", "", ReasonInvalidAddress, KindMacAddress, ""},
		{0, "525400000020", "", ReasonLeased, KindMacAddress, "MAC address 525400000020 is already leased"},
		{0, "000020", "", ReasonLeased, KindMacAddress, ""},
		{0, "525400000100", "", ReasonNotInRange, KindMacAddress, "MAC address 525400000100 is not in any MAC address range"},
		{0, "525401000011", "", ReasonNotInRange, KindMacAddress, ""},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			m, err := SpecifyMacAddress{Vendor: tt.vendor}.ScheduleMAC(v, nil, tt.want)
			if !checkErr(t, err, tt.wantErr, tt.msg) {
				if r := err.(*SchedulingError).Reason; r != tt.reason {
					t.Errorf("reason = %v, want %v", r, tt.reason)
				}
				return
			}
			if m.String() != tt.mac {
				t.Errorf("mac = %v, want %s", m, tt.mac)
			}
		})
	}
}

func TestDefaultMACSpreads(t *testing.T) {
	// With a real random source, 200 picks from a 256-address range recorded
	// one after another are all distinct and all inside the range.
	v := &View{MacRanges: []MacRange{macRange("mr-1", 0x100, 0x1ff)}, MacLeases: map[MAC]struct{}{}}
	d := DefaultMAC{Rand: newRand()}
	for i := range 256 {
		m, err := d.ScheduleMAC(v, nil, "")
		if err != nil {
			t.Fatalf("pick %d: %v", i, err)
		}
		if !v.MacRanges[0].contains(m) {
			t.Fatalf("pick %d: %v outside range", i, m)
		}
		if _, dup := v.MacLeases[m]; dup {
			t.Fatalf("pick %d: %v given twice", i, m)
		}
		v.MacLeases[m] = struct{}{}
	}
	if _, err := d.ScheduleMAC(v, nil, ""); !IsKind(err, KindMacAddress) {
		t.Fatalf("full range: err = %v", err)
	}
}
