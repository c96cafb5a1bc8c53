package scheduling

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// placer is a scheduler daemon's job logic talking to this env's Service
// over loopback RPC.
func (e *env) placer() *daemon.Placer {
	e.t.Helper()
	cfg := daemon.DefaultConfig()
	cfg.Managers = []string{e.addr}
	c := rpc.NewClient(rpc.ClientConfig{})
	e.t.Cleanup(c.Close)
	p, err := daemon.NewPlacer(cfg, c, func() []string { return cfg.Managers }, logging.NewTest(e.t))
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// TestDaemonAgainstService schedules instances end to end: the daemon reads
// views from the real Service, places, submits; the leader applies.
func TestDaemonAgainstService(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 2, 2048, 10, eth0)
	e.seedInstance("i-aaaa0002", 64, 2048, 10, eth0)
	p := e.placer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	resp, err := p.ScheduleInstance(ctx, proto.ScheduleInstanceRequest{InstanceID: "i-aaaa0001"})
	if err != nil || resp.HostNodeID != "hn-demo1" {
		t.Fatalf("ScheduleInstance = %+v, %v", resp, err)
	}
	var inst proto.Instance
	e.get(proto.KindInstance, "i-aaaa0001", &inst)
	if inst.State != proto.InstancePending {
		t.Errorf("instance state %s", inst.State)
	}
	// Delivered again (the dispatcher lost the result): nothing new.
	if resp, err := p.ScheduleInstance(ctx, proto.ScheduleInstanceRequest{InstanceID: "i-aaaa0001"}); err != nil || resp.HostNodeID != "hn-demo1" {
		t.Fatalf("redelivery = %+v, %v", resp, err)
	}
	if n := len(all[proto.NetworkVif](e, proto.KindNetworkVif)); n != 1 {
		t.Errorf("%d vifs, want 1", n)
	}

	// Too big for any host: failed, terminated with the reason.
	_, err = p.ScheduleInstance(ctx, proto.ScheduleInstanceRequest{InstanceID: "i-aaaa0002"})
	if !errs.Is(err, errs.OutOfHostCapacity) {
		t.Fatalf("big instance: %v", err)
	}
	e.get(proto.KindInstance, "i-aaaa0002", &inst)
	if inst.State != proto.InstanceTerminated || inst.LastError != "HostNodeSchedulingError: Unable to find a suitable host node for x86_64 kvm" {
		t.Errorf("big instance = %s %q", inst.State, inst.LastError)
	}
	var vol proto.Volume
	if e.get(proto.KindVolume, "vol-aaaa0002", &vol); vol.State != proto.VolumeDeleted {
		t.Errorf("big instance's volume is %s", vol.State)
	}
}

// TestDaemonsRaceForCapacity runs two daemons scheduling 12 instances at
// once onto a host with room for 8: each instance is either placed or
// failed, no capacity, address or MAC is given twice, and the usage record
// adds up.
func TestDaemonsRaceForCapacity(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	const n = 12
	for i := range n {
		e.seedInstance(fmt.Sprintf("i-race%04d", i), 1, 1024, 1, eth0)
	}
	placers := []*daemon.Placer{e.placer(), e.placer()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errsOut := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errsOut[i] = placers[i%2].ScheduleInstance(ctx, proto.ScheduleInstanceRequest{InstanceID: fmt.Sprintf("i-race%04d", i)})
		}()
	}
	wg.Wait()
	placed := 0
	for i, err := range errsOut {
		var inst proto.Instance
		e.get(proto.KindInstance, fmt.Sprintf("i-race%04d", i), &inst)
		switch {
		case err == nil && inst.State == proto.InstancePending:
			placed++
		case err != nil && inst.State == proto.InstanceTerminated && inst.LastError != "":
		default:
			t.Errorf("instance %d: %v, state %s %q", i, err, inst.State, inst.LastError)
		}
	}
	if placed != 8 {
		t.Errorf("%d placed, want 8 (8 cores)", placed)
	}
	var u proto.HostUsage
	e.get(proto.KindHostUsage, "hn-demo1", &u)
	if u.CPUCores != placed || len(u.Instances) != placed || u.MemorySize != int64(placed)*1024 || u.DiskBytes != int64(placed)<<30 {
		t.Errorf("usage = %+v for %d placed", u, placed)
	}
	addrs, macs := map[string]bool{}, map[string]bool{}
	for _, v := range all[proto.NetworkVif](e, proto.KindNetworkVif) {
		if addrs[*v.IPv4Address] || macs[v.MacAddr] {
			t.Errorf("address %s or MAC %s given twice", *v.IPv4Address, v.MacAddr)
		}
		addrs[*v.IPv4Address], macs[v.MacAddr] = true, true
	}
	if len(addrs) != placed || len(all[proto.IPLease](e, proto.KindIPLease)) != placed {
		t.Errorf("%d vifs and %d leases for %d placed", len(addrs), len(all[proto.IPLease](e, proto.KindIPLease)), placed)
	}
}

// TestDaemonKeepsHostChosenByAPI: an instance created with host_node_id
// (stored on the instance) is placed on that host, not where LeastUsage
// would put it.
func TestDaemonKeepsHostChosenByAPI(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindHostNode, "hn-demo2", proto.HostNode{ID: "hn-demo2", NodeID: "hva.demo2", Arch: "x86_64",
			Hypervisor: "kvm", OfferingCPUCores: 64, OfferingMemorySize: 1 << 20, OfferingDiskSpaceMB: 100 << 10, SchedulingEnabled: true})
		b.Put(proto.KindNodeState, "hva.demo2", proto.NodeState{NodeID: "hva.demo2", State: "online"})
	})
	e.seedInstance("i-aaaa0001", 1, 512, 0, eth0)
	e.seedInstance("i-aaaa0002", 1, 512, 0, eth0)
	var inst proto.Instance
	e.get(proto.KindInstance, "i-aaaa0002", &inst)
	inst.HostNodeID = ptr("hn-demo1")
	e.seed(func(b *state.Builder) { b.Update(proto.KindInstance, inst.ID, 0, &inst) })

	p := e.placer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for id, want := range map[string]string{"i-aaaa0001": "hn-demo2", "i-aaaa0002": "hn-demo1"} {
		resp, err := p.ScheduleInstance(ctx, proto.ScheduleInstanceRequest{InstanceID: id})
		if err != nil || resp.HostNodeID != want {
			t.Errorf("%s placed on %+v (%v), want %s", id, resp, err, want)
		}
	}
}
