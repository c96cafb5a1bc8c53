package scheduler

import (
	"reflect"
	"testing"
)

// netView is a view with one host, networks nw-demo1 (.1–.254), nw-demo2
// (10.0.0.0/24, .1–.254), nw-nodhcp (no DHCP range), nw-nat (172.16.0.0/24),
// a two-address network nw-tiny and network groups.
func netView() *View {
	demo1 := testNetwork("nw-demo1", [2]int{1, 254})
	demo1.Groups = []string{"nwg-shnet"}
	demo2 := testNetwork("nw-demo2", [2]int{1, 254})
	demo2.IPv4Network = ip("10.0.0.0")
	demo2.DhcpRanges = []IPRange{{ip("10.0.0.1"), ip("10.0.0.254")}}
	demo2.Groups = []string{"nwg-shnet", "nwg-second"}
	nodhcp := testNetwork("nw-nodhcp")
	nodhcp.Groups = []string{"nwg-first"}
	nat := testNetwork("nw-nat", [2]int{1, 254})
	nat.IPv4Network = ip("172.16.0.0")
	nat.DhcpRanges = []IPRange{{ip("172.16.0.10"), ip("172.16.0.20")}}
	tiny := testNetwork("nw-tiny", [2]int{1, 2})
	tiny.Groups = []string{"nwg-first"}
	return &View{
		Hosts:     []Host{testHost("hn-1", 1000, 1<<20, "hng-shhost")},
		Networks:  []Network{demo1, demo2, nodhcp, nat, tiny},
		Groups:    map[string]bool{"hng-shhost": true, "nwg-shnet": true, "nwg-first": true, "nwg-second": true},
		MacRanges: []MacRange{macRange("mr-demomacs", 0, 0xffffff)},
		MacLeases: map[MAC]struct{}{},
	}
}

// nicSummary is what the network tests compare: name, index, networks,
// addresses, groups.
type nicSummary struct {
	Name, Network, IP, Nat, NatIP string
	Index                         int
	SGs                           []string
}

func summarize(nics []NIC) []nicSummary {
	out := []nicSummary{}
	for _, n := range nics {
		s := nicSummary{Name: n.Name, Index: n.Index, Network: n.NetworkID, Nat: n.NatNetworkID, SGs: n.SecurityGroups}
		if n.IPv4Addr != 0 {
			s.IP = n.IPv4Addr.String()
		}
		if n.NatIPv4Addr != 0 {
			s.NatIP = n.NatIPv4Addr.String()
		}
		out = append(out, s)
	}
	return out
}

func TestNetworkSchedulers(t *testing.T) {
	perInstance := PerInstance{Default: "vifs", Schedulers: map[string]NetworkScheduler{
		"vifs": VifsRequestParam{}, "flat": FlatSingle{}, "nat": NatOneToOne{NetworkID: "nw-demo2", NatNetworkID: "nw-nat"},
	}}
	eth0 := func(nw string) map[string]any {
		return map[string]any{"vifs": map[string]any{"eth0": map[string]any{"network": nw}}}
	}
	tests := []struct {
		name    string
		sched   NetworkScheduler
		params  map[string]any
		want    []nicSummary
		wantErr ErrorKind
		msg     string
	}{
		// VifsRequestParam spec cases.
		{name: "VifsRequestParam malformed vifs", sched: VifsRequestParam{}, params: map[string]any{"vifs": "string"},
			wantErr: KindNetwork, msg: "Missing or badly formatted vifs request parameter"},
		{name: "VifsRequestParam network with no dhcp range", sched: VifsRequestParam{}, params: map[string]any{"vifs": `{"eth0":{"network":"nw-nodhcp"}}`},
			wantErr: KindOutOfIPRange},
		{name: "VifsRequestParam non-existent network id", sched: VifsRequestParam{}, params: map[string]any{"vifs": `{"eth0":{"network":"nonexistent"}}`},
			wantErr: KindInvalidUUID},
		{name: "VifsRequestParam empty vifs", sched: VifsRequestParam{}, params: map[string]any{"vifs": `{}`},
			want: []nicSummary{}},
		{name: "VifsRequestParam single vif with network", sched: VifsRequestParam{}, params: map[string]any{"vifs": `{"eth0":{"network":"nw-demo1"}}`},
			want: []nicSummary{{Name: "eth0", Network: "nw-demo1", IP: "192.168.0.1"}}},
		{name: "VifsRequestParam two vifs on two networks", sched: VifsRequestParam{}, params: map[string]any{"vifs": `{"eth0":{"network":"nw-demo1"},"eth1":{"network":"nw-demo2"}}`},
			want: []nicSummary{{Name: "eth0", Network: "nw-demo1", IP: "192.168.0.1"}, {Name: "eth1", Index: 1, Network: "nw-demo2", IP: "10.0.0.1"}}},
		{name: "VifsRequestParam single vif without network", sched: VifsRequestParam{}, params: map[string]any{"vifs": `{"eth0":{}}`},
			want: []nicSummary{{Name: "eth0"}}},

		// More VifsRequestParam behaviour.
		{name: "VifsRequestParam unknown network", sched: VifsRequestParam{}, params: eth0("nw-zzzzzzzz"),
			wantErr: KindNetwork, msg: "Network 'nw-zzzzzzzz' doesn't exist."},
		{name: "VifsRequestParam missing vifs", sched: VifsRequestParam{}, params: nil,
			wantErr: KindNetwork, msg: "Missing or badly formatted vifs request parameter"},
		{name: "VifsRequestParam vifs is a list", sched: VifsRequestParam{}, params: map[string]any{"vifs": `[{"network":"nw-demo1"}]`},
			wantErr: KindNetwork, msg: "Missing or badly formatted vifs request parameter"},
		{name: "VifsRequestParam entry not a hash", sched: VifsRequestParam{}, params: map[string]any{"vifs": map[string]any{"eth0": "nw-demo1"}},
			wantErr: KindNetwork, msg: "Missing or badly formatted vifs request parameter"},
		{name: "VifsRequestParam Rack form map, index strings, natural order", sched: VifsRequestParam{},
			params: map[string]any{"vifs": map[string]any{
				"eth10": map[string]any{"network": "nw-demo2", "security_groups": "sg-b sg-c"},
				"eth2":  map[string]any{"network": "nw-demo1", "index": "5", "security_groups": map[string]any{"0": "sg-a", "1": ""}},
			}},
			want: []nicSummary{
				{Name: "eth2", Index: 5, Network: "nw-demo1", IP: "192.168.0.1", SGs: []string{"sg-a"}},
				{Name: "eth10", Index: 6, Network: "nw-demo2", IP: "10.0.0.1", SGs: []string{"sg-b", "sg-c"}},
			}},
		{name: "VifsRequestParam JSON keeps document order and counter", sched: VifsRequestParam{},
			params: map[string]any{"vifs": `{"b":{"index":3},"a":{},"c":{"index":1},"d":{}}`},
			want:   []nicSummary{{Name: "b", Index: 3}, {Name: "a", Index: 4}, {Name: "c", Index: 1}, {Name: "d", Index: 6}}},
		{name: "VifsRequestParam nat network", sched: VifsRequestParam{},
			params: map[string]any{"vifs": `{"eth0":{"network":"nw-demo1","nat_network":"nw-nat","security_groups":["sg-a"]}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-demo1", IP: "192.168.0.1", Nat: "nw-nat", NatIP: "172.16.0.10", SGs: []string{"sg-a"}}}},
		{name: "VifsRequestParam unknown nat network", sched: VifsRequestParam{},
			params:  map[string]any{"vifs": `{"eth0":{"network":"nw-demo1","nat_network":"nw-nope"}}`},
			wantErr: KindNetwork, msg: "Network 'nw-nope' doesn't exist."},
		{name: "VifsRequestParam manual address", sched: VifsRequestParam{},
			params: map[string]any{"vifs": `{"eth0":{"network":"nw-demo1","ipv4_addr":"192.168.0.77"}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-demo1", IP: "192.168.0.77"}}},
		{name: "VifsRequestParam second vif fails: nothing kept", sched: VifsRequestParam{},
			params:  map[string]any{"vifs": `{"eth0":{"network":"nw-demo1"},"eth1":{"network":"nw-nodhcp"}}`},
			wantErr: KindOutOfIPRange},

		{name: "SpecifyNetwork addresses from the template", sched: SpecifyNetwork{},
			params: map[string]any{"vifs": `{"eth0":{"network":"nw-demo1","ipv4_addr":"192.168.0.50","nat_network":"nw-nat","nat_ipv4_addr":"172.16.0.15"}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-demo1", IP: "192.168.0.50", Nat: "nw-nat", NatIP: "172.16.0.15"}}},
		{name: "SpecifyNetwork without an address", sched: SpecifyNetwork{}, params: eth0("nw-demo1"),
			wantErr: KindIPAddress, msg: "Invalid IP address: ''"},
		{name: "SpecifyNetwork malformed vifs", sched: SpecifyNetwork{}, params: map[string]any{"vifs": "[]"},
			wantErr: KindNetwork, msg: "Missing or badly formatted vifs request parameter"},

		{name: "VifParamTemplate tolerates bad vifs", sched: VifParamTemplate{}, params: map[string]any{"vifs": "string"},
			want: []nicSummary{}},
		{name: "VifParamTemplate skips unknown networks", sched: VifParamTemplate{},
			params: map[string]any{"vifs": `{"eth0":{"network":"nw-nope"},"eth1":{"network":"bogus"},"eth2":{"network":"nw-demo1"}}`},
			want:   []nicSummary{{Name: "eth2", Index: 2, Network: "nw-demo1", IP: "192.168.0.1"}}},

		{name: "VifTemplate by name", sched: VifTemplate{Template: map[string]string{"eth0": "nw-demo2"}},
			params: map[string]any{"vifs": `{"eth0":{"network":"nw-demo1"},"eth1":{}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-demo2", IP: "10.0.0.1"}, {Name: "eth1", Index: 1}}},

		{name: "NatOneToOne", sched: NatOneToOne{NetworkID: "nw-demo2", NatNetworkID: "nw-nat"}, params: eth0(""),
			want: []nicSummary{{Name: "eth0", Network: "nw-demo2", IP: "10.0.0.1", Nat: "nw-nat", NatIP: "172.16.0.10"}}},

		{name: "FlatSingle without vifs", sched: FlatSingle{}, params: nil,
			want: []nicSummary{{Name: "eth0", Network: "nw-demo1", IP: "192.168.0.1"}}},
		{name: "FlatSingle takes the first vif's template, first network", sched: FlatSingle{},
			params: map[string]any{"vifs": `{"nic":{"index":2,"network":"nw-demo2","security_groups":"sg-x"},"other":{}}`},
			want:   []nicSummary{{Name: "nic", Index: 2, Network: "nw-demo1", IP: "192.168.0.1", SGs: []string{"sg-x"}}}},

		{name: "RequestParamToGroup moves on when out of range", sched: NetworkRequestParamToGroup{Key: "network_group", Default: "nwg-shnet", Pairs: map[string]string{"first": "nwg-first"}},
			params: map[string]any{"network_group": "first", "vifs": `{"eth0":{}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-tiny", IP: "192.168.0.1"}}},
		{name: "RequestParamToGroup group exhausted", sched: NetworkRequestParamToGroup{Key: "network_group", Default: "nwg-first"},
			params:  map[string]any{"vifs": `{"eth0":{},"eth1":{}}`},
			wantErr: KindNetwork, msg: "No network in network group nwg-first has a free IP address"},
		{name: "RequestParamToGroup manual address in the second network", sched: NetworkRequestParamToGroup{Key: "network_group", Default: "nwg-shnet"},
			params: map[string]any{"vifs": `{"eth0":{"ipv4_addr":"10.0.0.9"}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-demo2", IP: "10.0.0.9"}}},
		{name: "RequestParamToGroup manual address in no network", sched: NetworkRequestParamToGroup{Key: "network_group", Default: "nwg-shnet"},
			params:  map[string]any{"vifs": `{"eth0":{"ipv4_addr":"10.9.0.9"}}`},
			wantErr: KindNetwork, msg: "No network in network group nwg-shnet can lease IP address 10.9.0.9"},
		{name: "RequestParamToGroup manual address leased", sched: NetworkRequestParamToGroup{Key: "network_group", Default: "nwg-first"},
			params:  map[string]any{"vifs": `{"eth0":{"ipv4_addr":"192.168.0.2"}}`},
			wantErr: KindIPAddress, msg: "IP address 192.168.0.2 is already leased in network nw-tiny"},
		{name: "RequestParamToGroup default group", sched: NetworkRequestParamToGroup{Key: "network_group", Default: "nwg-second"},
			params: map[string]any{"vifs": `{"eth0":{}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-demo2", IP: "10.0.0.1"}}},
		{name: "RequestParamToGroup no default", sched: NetworkRequestParamToGroup{Key: "network_group"},
			params: map[string]any{"vifs": `{"eth0":{}}`}, wantErr: KindNetwork, msg: "No default network group set"},
		{name: "RequestParamToGroup unknown group", sched: NetworkRequestParamToGroup{Key: "network_group", Default: "nwg-nope"},
			params: map[string]any{"vifs": `{"eth0":{}}`}, wantErr: KindNetwork, msg: "Unknown network group: nwg-nope"},

		{name: "NetworkGroup least allocation", sched: NetworkGroup{NetworkGroupID: "nwg-shnet"},
			params: map[string]any{"vifs": `{"eth0":{},"eth1":{}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-demo1", IP: "192.168.0.1"}, {Name: "eth1", Index: 1, Network: "nw-demo2", IP: "10.0.0.1"}}},
		{name: "NetworkGroup group from the vif, full network dropped", sched: NetworkGroup{NetworkGroupID: "nwg-shnet"},
			params: map[string]any{"vifs": `{"eth0":{"network":"nwg-first"}}`},
			want:   []nicSummary{{Name: "eth0", Network: "nw-tiny", IP: "192.168.0.1"}}},
		{name: "NetworkGroup unknown group", sched: NetworkGroup{NetworkGroupID: "nwg-nope"},
			params: map[string]any{"vifs": `{"eth0":{}}`}, wantErr: KindNetwork, msg: "Unknown network group: nwg-nope"},

		{name: "PerInstance default", sched: perInstance, params: map[string]any{"vifs": `{"eth0":{"network":"nw-demo2"}}`},
			want: []nicSummary{{Name: "eth0", Network: "nw-demo2", IP: "10.0.0.1"}}},
		{name: "PerInstance by request param", sched: perInstance, params: map[string]any{"network_scheduler": "nat", "vifs": `{"eth0":{}}`},
			want: []nicSummary{{Name: "eth0", Network: "nw-demo2", IP: "10.0.0.1", Nat: "nw-nat", NatIP: "172.16.0.10"}}},
		{name: "PerInstance unknown", sched: perInstance, params: map[string]any{"network_scheduler": "nope"},
			wantErr: KindNetwork, msg: "Unknown network scheduler: nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := netView()
			// nw-tiny's two addresses are taken by leases so that it is the
			// least allocated network of nwg-first only after nw-nodhcp.
			tiny := v.network("nw-tiny")
			tiny.Leases[ip("192.168.0.2")] = Lease{Seq: 1}
			before := v.Clone()
			s := &Schedulers{Host: FindFirst{}, Network: tt.sched, MAC: DefaultMAC{Rand: newRand()}, IP: Incremental{}}
			r := testReq("i-1", 1, 1, tt.params)
			pl, err := s.PlaceOne(v, &r)
			if !checkErr(t, err, tt.wantErr, tt.msg) {
				if !reflect.DeepEqual(v, before) {
					t.Error("failed placement changed the view")
				}
				return
			}
			if got := summarize(pl.NICs); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("NICs =\n%+v\nwant\n%+v", got, tt.want)
			}
			for _, n := range pl.NICs {
				if _, ok := v.MacLeases[n.MacAddr]; !ok || n.Bandwidth != DefaultBandwidth {
					t.Errorf("NIC %s: MAC %v not leased or bandwidth %d", n.Name, n.MacAddr, n.Bandwidth)
				}
				if n.NetworkID != "" {
					if _, ok := v.network(n.NetworkID).Leases[n.IPv4Addr]; !ok {
						t.Errorf("NIC %s: %v not leased", n.Name, n.IPv4Addr)
					}
				}
			}
		})
	}
}

func TestVifMacAddr(t *testing.T) {
	v := netView()
	s := &Schedulers{Host: FindFirst{}, Network: VifsRequestParam{}, MAC: DefaultMAC{Rand: newRand()}}
	r := testReq("i-1", 1, 1, map[string]any{"vifs": `{"eth0":{"network":"nw-demo1","mac_addr":"00abcd"}}`})
	pl, err := s.PlaceOne(v, &r)
	if err != nil {
		t.Fatal(err)
	}
	if got := pl.NICs[0].MacAddr.String(); got != "52540000abcd" {
		t.Errorf("mac = %s, want 52540000abcd", got)
	}
	// The same MAC again is refused and the failed request leaves nothing.
	r2 := testReq("i-2", 1, 1, map[string]any{"vifs": `{"eth0":{"network":"nw-demo1"},"eth1":{"mac_addr":"52540000abcd"}}`})
	leases := len(v.network("nw-demo1").Leases)
	_, err = s.PlaceOne(v, &r2)
	checkErr(t, err, KindMacAddress, "MAC address 52540000abcd is already leased")
	if n := len(v.network("nw-demo1").Leases); n != leases || len(v.MacLeases) != 1 || v.Hosts[0].UsedCPU != 1 {
		t.Errorf("failed request left leases %d (want %d), macs %d, used cpu %d", n, leases, len(v.MacLeases), v.Hosts[0].UsedCPU)
	}
}

func TestNetworkReservedLeasesInPlacement(t *testing.T) {
	v := netView()
	demo1 := v.network("nw-demo1")
	demo1.DhcpRanges = []IPRange{{ip("192.168.0.0"), ip("192.168.0.255")}}
	demo1.Gateway = ip("192.168.0.1")
	s := &Schedulers{Host: FindFirst{}, Network: VifsRequestParam{}, MAC: DefaultMAC{Rand: newRand()}}
	r := testReq("i-1", 1, 1, map[string]any{"vifs": `{"eth0":{"network":"nw-demo1"}}`})
	pl, err := s.PlaceOne(v, &r)
	if err != nil {
		t.Fatal(err)
	}
	want := []ReservedLease{{"nw-demo1", ip("192.168.0.0")}, {"nw-demo1", ip("192.168.0.1")}}
	if !reflect.DeepEqual(pl.Reserved, want) || pl.NICs[0].IPv4Addr != ip("192.168.0.2") {
		t.Errorf("reserved %v ip %v, want %v and .2", pl.Reserved, pl.NICs[0].IPv4Addr, want)
	}
}

func TestNetworkConfig(t *testing.T) {
	tests := []struct {
		c       NetworkConfig
		want    NetworkScheduler
		wantErr bool
	}{
		{NetworkConfig{Scheduler: "FlatSingle"}, FlatSingle{}, false},
		{NetworkConfig{Scheduler: "VifsRequestParam"}, VifsRequestParam{}, false},
		{NetworkConfig{Scheduler: "SpecifyNetwork"}, SpecifyNetwork{}, false},
		{NetworkConfig{Scheduler: "VifParamTemplate"}, VifParamTemplate{}, false},
		{NetworkConfig{Scheduler: "VifTemplate", Template: map[string]string{"eth0": "nw-a"}}, VifTemplate{Template: map[string]string{"eth0": "nw-a"}}, false},
		{NetworkConfig{Scheduler: "NatOneToOne", NetworkID: "nw-a", NatNetworkID: "nw-b"}, NatOneToOne{"nw-a", "nw-b"}, false},
		{NetworkConfig{Scheduler: "NatOneToOne", NetworkID: "nw-a"}, nil, true},
		{NetworkConfig{Scheduler: "RequestParamToGroup", Key: "k", Default: "nwg-a"}, NetworkRequestParamToGroup{Key: "k", Default: "nwg-a"}, false},
		{NetworkConfig{Scheduler: "RequestParamToGroup"}, nil, true},
		{NetworkConfig{Scheduler: "NetworkGroup", NetworkGroupID: "nwg-a", Algorithm: "least_allocation"}, NetworkGroup{"nwg-a"}, false},
		{NetworkConfig{Scheduler: "NetworkGroup", Algorithm: "round_robin"}, nil, true},
		{NetworkConfig{Scheduler: "PerInstance", Default: "VifsRequestParam", Schedulers: map[string]NetworkConfig{"flat": {Scheduler: "FlatSingle"}}},
			PerInstance{Default: "VifsRequestParam", Schedulers: map[string]NetworkScheduler{"flat": FlatSingle{}, "VifsRequestParam": VifsRequestParam{}}}, false},
		{NetworkConfig{Scheduler: "PerInstance"}, nil, true},
		{NetworkConfig{Scheduler: "PerInstance", Default: "x", Schedulers: map[string]NetworkConfig{"x": {Scheduler: "PerInstance"}}}, nil, true},
		{NetworkConfig{Scheduler: "Nope"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.c.Scheduler, func(t *testing.T) {
			got, err := tt.c.Build()
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("built %#v, want %#v", got, tt.want)
			}
		})
	}
}
