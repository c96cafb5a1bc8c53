package scheduler

import (
	"fmt"
	"reflect"
	"testing"
)

// TestPlanManyRequests places 1,000 requests with two NICs, a local and a
// shared volume each on 20 hosts that cannot hold them all: no host goes over
// capacity, no address or MAC is given twice, and a request fails only when
// no host has room for it.
func TestPlanManyRequests(t *testing.T) {
	v := &View{
		Groups:    map[string]bool{},
		MacRanges: []MacRange{macRange("mr-1", 0, 0xffffff)},
		MacLeases: map[MAC]struct{}{},
	}
	for i := range 20 {
		// Hosts of different sizes: 16..54 cores, 32..108 GiB.
		h := testHost(fmt.Sprintf("hn-%02d", i), int64(16+2*i), int64(32768+4096*i))
		h.OfferingDiskMB = 200 << 10
		v.Hosts = append(v.Hosts, h)
	}
	big := testNetwork("nw-big")
	big.IPv4Network, big.Prefix = ip("10.0.0.0"), 22
	big.Gateway = ip("10.0.0.1")
	big.DhcpRanges = []IPRange{{ip("10.0.0.0"), ip("10.0.3.255")}}
	small := testNetwork("nw-small")
	small.IPv4Network, small.Prefix = ip("10.1.0.0"), 22
	small.DhcpRanges = []IPRange{{ip("10.1.0.10"), ip("10.1.1.250")}, {ip("10.1.2.10"), ip("10.1.3.250")}}
	v.Networks = []Network{big, small}
	for i := range 4 {
		v.StorageNodes = append(v.StorageNodes, StorageNode{ID: fmt.Sprintf("sn-%d", i), Online: true, FreeBytes: 300 << 30})
	}
	reqs := make([]Request, 1000)
	for i := range reqs {
		reqs[i] = testReq(fmt.Sprintf("i-%04d", i), int64(1+i%2), int64(1024*(1+i%3)), map[string]any{
			"vifs": `{"eth0":{"network":"nw-big"},"eth1":{"network":"nw-small"}}`,
		})
		reqs[i].Volumes = []VolumeRequest{
			{ID: fmt.Sprintf("vol-l%04d", i), SizeBytes: 1 << 30, Local: true},
			{ID: fmt.Sprintf("vol-s%04d", i), SizeBytes: 1 << 30},
		}
	}
	orig := v.Clone()
	s := &Schedulers{Host: LeastUsage{}, Storage: StorageLeastUsage{}, Network: VifsRequestParam{}, MAC: DefaultMAC{Rand: newRand()}, IP: Incremental{}}
	p := s.Place(v, reqs)

	placed := 0
	usedCPU := map[string]int64{}
	usedMem := map[string]int64{}
	ips := map[string]string{}
	macs := map[MAC]string{}
	storage := map[string]int64{}
	for i, pl := range p.Placements {
		if pl.Err != nil {
			if !IsKind(pl.Err, KindHostNode) {
				t.Fatalf("request %d: %v", i, pl.Err)
			}
			// Usage only grows, so a request that found no host then finds
			// none now.
			for j := range v.Hosts {
				if v.Hosts[j].fits(needOf(&reqs[i])) {
					t.Fatalf("request %d failed but fits %s", i, v.Hosts[j].ID)
				}
			}
			continue
		}
		placed++
		usedCPU[pl.HostID] += reqs[i].CPU
		usedMem[pl.HostID] += reqs[i].MemoryMB
		if len(pl.NICs) != 2 || len(pl.Volumes) != 2 {
			t.Fatalf("request %d: %d NICs, %d volumes", i, len(pl.NICs), len(pl.Volumes))
		}
		for _, n := range pl.NICs {
			key := n.NetworkID + "/" + n.IPv4Addr.String()
			if prev, dup := ips[key]; dup {
				t.Fatalf("address %s given to %s and %s", key, prev, pl.InstanceID)
			}
			ips[key] = pl.InstanceID
			if prev, dup := macs[n.MacAddr]; dup {
				t.Fatalf("MAC %s given to %s and %s", n.MacAddr, prev, pl.InstanceID)
			}
			macs[n.MacAddr] = pl.InstanceID
		}
		storage[pl.Volumes[1].StorageNodeID] += reqs[i].Volumes[1].SizeBytes
	}
	if placed < 400 || p.Failed() == 0 || placed+p.Failed() != 1000 {
		t.Errorf("placed %d, failed %d; want at least 400 placed and some failures", placed, p.Failed())
	}
	t.Logf("placed %d, failed %d", placed, p.Failed())
	for i := range v.Hosts {
		h := &v.Hosts[i]
		if usedCPU[h.ID] > h.OfferingCPUCores || usedMem[h.ID] > h.OfferingMemoryMB {
			t.Errorf("%s over capacity: %d/%d cores, %d/%d MB", h.ID, usedCPU[h.ID], h.OfferingCPUCores, usedMem[h.ID], h.OfferingMemoryMB)
		}
		if h.UsedCPU != usedCPU[h.ID] || h.UsedMemoryMB != usedMem[h.ID] {
			t.Errorf("%s: view usage %d cores %d MB, plan %d cores %d MB", h.ID, h.UsedCPU, h.UsedMemoryMB, usedCPU[h.ID], usedMem[h.ID])
		}
	}
	for i := range v.StorageNodes {
		sn := &v.StorageNodes[i]
		if sn.FreeBytes != orig.StorageNodes[i].FreeBytes-storage[sn.ID] || sn.FreeBytes < 0 {
			t.Errorf("%s: free %d, want %d", sn.ID, sn.FreeBytes, orig.StorageNodes[i].FreeBytes-storage[sn.ID])
		}
	}
	// Gateway and network address of nw-big were met and recorded.
	if l := v.network("nw-big").Leases[ip("10.0.0.1")]; l.Kind != LeaseReserved {
		t.Errorf("gateway lease %+v, want reserved", l)
	}
	if len(v.MacLeases) != 2*placed {
		t.Errorf("%d MAC leases, want %d", len(v.MacLeases), 2*placed)
	}
}

// TestPlanCapacity fills hosts exactly: every request fits until the
// cluster is full, then every request fails without changing the view.
func TestPlanCapacity(t *testing.T) {
	v := &View{}
	for i := range 20 {
		v.Hosts = append(v.Hosts, testHost(fmt.Sprintf("hn-%02d", i), 8, 16384))
	}
	reqs := make([]Request, 1000)
	for i := range reqs {
		reqs[i] = testReq(fmt.Sprintf("i-%04d", i), 1, 1024, nil)
	}
	for _, hs := range []HostScheduler{LeastUsage{}, LeastUsage{SortPriority: SortCPU}, FindFirst{}, &PipedRules{Rules: []HostRule{LeastUsageBy{}}}} {
		t.Run(fmt.Sprintf("%T", hs), func(t *testing.T) {
			v := v.Clone()
			p := (&Schedulers{Host: hs}).Place(v, reqs)
			if p.Failed() != 1000-160 {
				t.Errorf("failed %d, want %d", p.Failed(), 1000-160)
			}
			for _, h := range v.Hosts {
				if h.UsedCPU != 8 || h.UsedMemoryMB != 8192 || len(h.Instances) != 8 {
					t.Errorf("%s: used %d cores %d MB %d instances, want 8/8192/8", h.ID, h.UsedCPU, h.UsedMemoryMB, len(h.Instances))
				}
			}
		})
	}
}

func TestPlaceLocalDiskAndHA(t *testing.T) {
	h1 := testHost("hn-1", 4, 4096)
	h1.OfferingDiskMB = 10
	h2 := testHost("hn-2", 4, 2048)
	h2.OfferingDiskMB = 10
	v := &View{Hosts: []Host{h1, h2}}
	r := testReq("i-1", 8, 1024, nil)
	r.Volumes = []VolumeRequest{{ID: "vol-1", SizeBytes: 20 << 20, Local: true}}
	s := &Schedulers{Host: LeastUsage{}}

	if _, err := s.PlaceHA(v, &r); !IsKind(err, KindConfig) {
		t.Errorf("PlaceHA without HA scheduler: %v", err)
	}
	s.HostHA = LeastUsage{}
	// Over-commit places the 8-core instance on a 4-core host, but not its
	// 20 MiB local volume on a 10 MiB disk.
	before := v.Clone()
	_, err := s.PlaceHA(v, &r)
	checkErr(t, err, KindHostNode, "Insufficient local disk space")
	if !reflect.DeepEqual(v, before) {
		t.Error("failed PlaceHA changed the view")
	}
	r.Volumes[0].SizeBytes = 5 << 20
	h, err := s.PlaceHA(v, &r)
	if err != nil || h.ID != "hn-1" || h.UsedCPU != 8 || h.UsedDiskBytes != 5<<20 {
		t.Fatalf("PlaceHA = %+v, %v", h, err)
	}
	// A normal placement checks local disk as part of capacity.
	r2 := testReq("i-2", 1, 512, nil)
	r2.Volumes = []VolumeRequest{{ID: "vol-2", SizeBytes: 6 << 20, Local: true}}
	pl, err := s.PlaceOne(v, &r2)
	if err != nil || pl.HostID != "hn-2" || !pl.Volumes[0].Local {
		t.Fatalf("PlaceOne = %+v, %v", pl, err)
	}
	// Volumes need a storage scheduler.
	r3 := testReq("i-3", 1, 1, nil)
	r3.Volumes = []VolumeRequest{{ID: "vol-3", SizeBytes: 1}}
	if _, err := s.PlaceOne(v, &r3); !IsKind(err, KindConfig) {
		t.Errorf("shared volume without storage scheduler: %v", err)
	}
	if n := len(v.Hosts[1].Instances); n != 1 {
		t.Errorf("failed request left %d instances on hn-2, want 1", n)
	}
}

func TestServiceTypeConfig(t *testing.T) {
	// The example dcmgr.conf: LeastUsage host and storage, ByHostNodeGroup
	// MACs, PerInstance network with default VifsRequestParam.
	const conf = `{
		"host_node_scheduler": {"scheduler": "LeastUsage"},
		"host_node_ha_scheduler": {"scheduler": "LeastUsage", "sort_priority": "cpu"},
		"storage_node_scheduler": {"scheduler": "LeastUsage"},
		"network_scheduler": {"scheduler": "PerInstance", "default": "VifsRequestParam",
			"schedulers": {"nat": {"scheduler": "NatOneToOne", "network_id": "nw-demo2", "nat_network_id": "nw-nat"}}},
		"mac_address_scheduler": {"scheduler": "ByHostNodeGroup", "default": "mr-demomacs",
			"pairs": {"hng-shhost": "mr-range1"}}
	}`
	c, err := ParseServiceTypeConfig([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Build(newRand(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Host != (LeastUsage{}) || s.HostHA != (LeastUsage{SortPriority: SortCPU}) || s.Storage != (StorageLeastUsage{}) || s.IP != (Incremental{}) {
		t.Errorf("schedulers %#v", s)
	}
	v := netView()
	v.MacRanges = append(v.MacRanges, macRange("mr-range1", 0x100, 0x1ff))
	r := testReq("i-1", 1, 1, map[string]any{"network_scheduler": "nat", "vifs": map[string]any{"eth0": map[string]any{}}})
	pl, err := s.PlaceOne(v, &r)
	if err != nil {
		t.Fatal(err)
	}
	n := pl.NICs[0]
	if n.NetworkID != "nw-demo2" || n.NatNetworkID != "nw-nat" || n.MacAddr.Addr() < 0x100 || n.MacAddr.Addr() > 0x1ff {
		t.Errorf("NIC %+v: want nw-demo2 + nw-nat, MAC from mr-range1", n)
	}

	for _, bad := range []string{
		`{"host_node_scheduler": {"scheduler": "Nope"}, "storage_node_scheduler": {"scheduler": "LeastUsage"}, "network_scheduler": {"scheduler": "FlatSingle"}}`,
		`{"host_node_scheduler": {"scheduler": "LeastUsage"}, "storage_node_scheduler": {"scheduler": "Nope"}, "network_scheduler": {"scheduler": "FlatSingle"}}`,
		`{"host_node_scheduler": {"scheduler": "LeastUsage"}, "storage_node_scheduler": {"scheduler": "LeastUsage"}, "network_scheduler": {"scheduler": "Nope"}}`,
		`{"host_node_scheduler": {"scheduler": "LeastUsage"}, "storage_node_scheduler": {"scheduler": "LeastUsage"}, "network_scheduler": {"scheduler": "FlatSingle"}, "mac_address_scheduler": {"scheduler": "Nope"}}`,
		`{"host_node_scheduler": {"scheduler": "LeastUsage"}, "storage_node_scheduler": {"scheduler": "LeastUsage"}, "network_scheduler": {"scheduler": "FlatSingle"}, "ip_address_scheduler": {"scheduler": "Nope"}}`,
		`{"host_node_scheduler": {"scheduler": "LeastUsage"}, "storage_node_scheduler": {"scheduler": "LeastUsage"}, "network_scheduler": {"scheduler": "FlatSingle"}, "mac_address_scheduler": {"scheduler": "ByHostNodeGroup"}}`,
		`{"host_node_scheduler": {"scheduler": "LeastUsage"}, "storage_node_scheduler": {"scheduler": "LeastUsage"}, "network_scheduler": {"scheduler": "FlatSingle"}, "host_node_ha_scheduler": {"scheduler": "X"}}`,
	} {
		c, err := ParseServiceTypeConfig([]byte(bad))
		if err == nil {
			_, err = c.Build(newRand(), 0)
		}
		if !IsKind(err, KindConfig) {
			t.Errorf("config %s: err = %v, want ArgumentError", bad, err)
		}
	}
	if _, err := ParseServiceTypeConfig([]byte(`{"host_node": {}}`)); err == nil {
		t.Error("unknown field accepted")
	}
	if _, err := (ServiceTypeConfig{HostNode: HostConfig{Scheduler: "FindFirst"}, StorageNode: StorageConfig{Scheduler: "FindFirst"},
		Network: NetworkConfig{Scheduler: "FlatSingle"}}).Build(nil, 0); !IsKind(err, KindConfig) {
		t.Errorf("Default MAC without random source: %v", err)
	}
}

func TestPlaceVolumeAndExcludeSameHA(t *testing.T) {
	v := &View{StorageNodes: []StorageNode{{ID: "sn-1", Online: true, FreeBytes: 10}, {ID: "sn-2", Online: true, FreeBytes: 8}}}
	s := &Schedulers{Storage: StorageLeastUsage{}}
	for _, want := range []string{"sn-1", "sn-1", "sn-2", "sn-1"} {
		sn, err := s.PlaceVolume(v, &VolumeRequest{ID: "vol", SizeBytes: 2})
		if err != nil || sn.ID != want {
			t.Fatalf("PlaceVolume = %v, %v; want %s", hostIDsn(sn), err, want)
		}
	}
	if _, err := (&Schedulers{}).PlaceVolume(v, &VolumeRequest{}); !IsKind(err, KindConfig) {
		t.Errorf("no storage scheduler: %v", err)
	}

	full := testHost("hn-full", 1, 1)
	full.UsedCPU = 1
	hv := &View{Hosts: []Host{testHost("hn-cur", 8, 8192), full}}
	r := testReq("i-1", 4, 1024, nil)
	r.CurrentHostID = "hn-cur"
	h, err := (&Schedulers{HostHA: ExcludeSame{}}).PlaceHA(hv, &r)
	if err != nil || h.ID != "hn-full" || h.UsedCPU != 5 {
		t.Fatalf("PlaceHA(ExcludeSame) = %v, %v", hostID(h), err)
	}
	// SpecifyNode accepts numeric request params as the JSON decoder gives them.
	hv.Hosts[0].ID = "42"
	r.RequestParams = map[string]any{"host_node_id": float64(42)}
	if h, err := (SpecifyNode{}).ScheduleHost(hv, &r); err != nil || h.ID != "42" {
		t.Fatalf("SpecifyNode numeric = %v, %v", hostID(h), err)
	}
}

func hostIDsn(sn *StorageNode) string {
	if sn == nil {
		return "<nil>"
	}
	return sn.ID
}
