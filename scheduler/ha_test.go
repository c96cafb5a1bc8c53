package scheduler

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// TestPlaceEvacuee: the HA scheduler (LeastUsage by default) picks among
// the other online hosts that fit, charges the view so the next evacuee
// sees the capacity taken, never over-commits and never picks the
// evacuated host; an instance that fits nowhere gets a host-node error and
// leaves the view as it was.
func TestPlaceEvacuee(t *testing.T) {
	failed := testHost("hn-dead", 16, 16384)
	failed.Online, failed.SchedulingEnabled = false, false
	big := testHost("hn-big", 4, 8192)
	small := testHost("hn-small", 4, 4096)
	off := testHost("hn-off", 64, 65536)
	off.Online = false
	v := &View{Hosts: []Host{failed, big, small, off}}
	s := &Schedulers{} // no HA scheduler configured: the default

	evacuee := func(id string, cpu, mem int64) Request {
		r := testReq(id, cpu, mem, nil)
		r.CurrentHostID = "hn-dead"
		return r
	}
	r1 := evacuee("i-1", 2, 1024)
	h, err := s.PlaceEvacuee(v, &r1)
	if err != nil || h.ID != "hn-big" || h.UsedCPU != 2 || h.UsedMemoryMB != 1024 {
		t.Fatalf("first evacuee: %v, %v", hostID(h), err)
	}
	// hn-big has 2 cores left: a 3-core evacuee goes to hn-small.
	r2 := evacuee("i-2", 3, 1024)
	if h, err := s.PlaceEvacuee(v, &r2); err != nil || h.ID != "hn-small" {
		t.Fatalf("second evacuee: %v, %v", hostID(h), err)
	}
	// 8 cores fit nowhere (hn-dead and hn-off are not online): error, view
	// unchanged, no over-commit.
	before := v.Clone()
	r3 := evacuee("i-3", 8, 1024)
	_, err = s.PlaceEvacuee(v, &r3)
	checkErr(t, err, KindHostNode, "Unable to find a suitable host node for x86_64 kvm")
	if !reflect.DeepEqual(v, before) {
		t.Error("a failed placement changed the view")
	}

	// A capacity-blind HA scheduler (ExcludeSame) choosing a full host is
	// refused rather than over-committing it.
	full := testHost("hn-full", 1, 1024)
	full.UsedCPU = 1
	v2 := &View{Hosts: []Host{testHost("hn-dead", 8, 8192), full}}
	r4 := evacuee("i-4", 1, 512)
	_, err = (&Schedulers{HostHA: ExcludeSame{}}).PlaceEvacuee(v2, &r4)
	checkErr(t, err, KindHostNode, "Host node hn-full has not enough capacity for the instance")
	// ExcludeSame never chooses the evacuated host itself.
	v3 := &View{Hosts: []Host{testHost("hn-dead", 8, 8192), testHost("hn-ok", 8, 8192)}}
	if h, err := (&Schedulers{HostHA: ExcludeSame{}}).PlaceEvacuee(v3, &r4); err != nil || h.ID != "hn-ok" {
		t.Fatalf("ExcludeSame: %v, %v", hostID(h), err)
	}
	// FindFirst as HA scheduler on an enabled evacuated host: refused.
	if _, err := (&Schedulers{HostHA: FindFirst{}}).PlaceEvacuee(&View{Hosts: []Host{testHost("hn-dead", 8, 8192)}}, &r4); err == nil {
		t.Error("placed on the evacuated host")
	}
}

// TestDefaultHAScheduler: a service type without host_node_ha_scheduler
// still evacuates (the original had no default, spec §9).
func TestDefaultHAScheduler(t *testing.T) {
	c, err := ParseServiceTypeConfig([]byte(`{"host_node_scheduler":{"scheduler":"LeastUsage"},
		"storage_node_scheduler":{"scheduler":"LeastUsage"},"network_scheduler":{"scheduler":"VifsRequestParam"}}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Build(rand.New(rand.NewPCG(1, 2)), 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.HostHA != (LeastUsage{}) {
		t.Errorf("default HA scheduler = %#v", s.HostHA)
	}
}
