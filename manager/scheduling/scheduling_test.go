package scheduling

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler"
)

var testNow = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// env is a Service over a real single-manager cluster, served on a loopback
// RPC server like the manager serves it.
type env struct {
	t      *testing.T
	srv    *cluster.Server
	svc    *Service
	client *rpc.Client
	addr   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := cluster.TestServer(t, nil)
	svc := New(Config{Store: srv.Store(), Applier: srv, Now: func() time.Time { return testNow }, Logger: logging.NewTest(t)})
	rs := rpc.NewServer(rpc.ServerConfig{Logger: logging.NewTest(t)})
	svc.Register(rs)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rs.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rs.Shutdown(ctx)
		<-done
	})
	c := rpc.NewClient(rpc.ClientConfig{})
	t.Cleanup(c.Close)
	return &env{t: t, srv: srv, svc: svc, client: c, addr: l.Addr().String()}
}

// seed commits records through a state.Builder.
func (e *env) seed(fn func(b *state.Builder)) {
	e.t.Helper()
	var b state.Builder
	fn(&b)
	txn, err := b.Txn()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.srv.Apply(context.Background(), state.CmdTxn, txn); err != nil {
		e.t.Fatalf("seed: %v", err)
	}
}

func (e *env) call(verb string, req, resp any) error {
	return e.client.Call(context.Background(), e.addr, proto.EndpointSchedulerCollector, verb, req, resp)
}

// get reads a record; ok is false when it does not exist.
func (e *env) get(kind, id string, v any) bool {
	e.t.Helper()
	var found bool
	err := e.srv.Store().View(func(tx *state.Tx) error {
		_, err := tx.Get(kind, id, v)
		if errs.Is(err, errs.NotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return found
}

// all decodes every record of kind.
func all[T any](e *env, kind string) []T {
	e.t.Helper()
	var out []T
	err := e.srv.Store().View(func(tx *state.Tx) error {
		return each(tx, kind, func(v *T, _ state.Meta) error { out = append(out, *v); return nil })
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// buckets is the state without the meta bucket (raft indexes move on
// every applied entry, rejected or not).
func (e *env) buckets() map[string]map[string]string {
	var out map[string]map[string]string
	_ = e.srv.Store().View(func(tx *state.Tx) error { out = tx.Buckets(); return nil })
	delete(out, "meta")
	return out
}

// rejects asserts that fn fails with kind (and a message containing msg)
// and changes no record.
func (e *env) rejects(kind errs.Kind, msg string, fn func() error) {
	e.t.Helper()
	before := e.buckets()
	err := fn()
	if !errs.Is(err, kind) || !strings.Contains(err.Error(), msg) {
		e.t.Fatalf("error = %v, want %s containing %q", err, kind.Name(), msg)
	}
	if after := e.buckets(); !reflect.DeepEqual(before, after) {
		e.t.Fatalf("a rejected call changed the state")
	}
}

func ptr[T any](v T) *T { return &v }

// seedCluster makes host hn-demo1 (agent hva.demo1 online), network
// nw-demo1 10.0.0.0/24 with DHCP range .10–.20 and gateway .1, security
// group sg-demo1, a local boot image and a SAN boot image.
func (e *env) seedCluster(cpu, memMB int64) {
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindHostNode, "hn-demo1", proto.HostNode{ID: "hn-demo1", NodeID: "hva.demo1", Arch: "x86_64",
			Hypervisor: "kvm", OfferingCPUCores: cpu, OfferingMemorySize: memMB, OfferingDiskSpaceMB: 100 << 10, SchedulingEnabled: true})
		b.Put(proto.KindNodeState, "hva.demo1", proto.NodeState{NodeID: "hva.demo1", State: "online"})
		b.Create(proto.KindNetwork, "nw-demo1", proto.Network{ID: "nw-demo1", IPv4Network: "10.0.0.0", Prefix: 24,
			IPv4Gw: ptr("10.0.0.1"), DhcpRanges: []proto.DhcpRange{{Begin: "10.0.0.10", End: "10.0.0.20"}}})
		b.Create(proto.KindSecurityGroup, "sg-demo1", proto.SecurityGroup{ID: "sg-demo1", AccountID: "a-shpoolxx"})
		b.Create(proto.KindImage, "wmi-local", proto.Image{ID: "wmi-local", BootDevType: 2, Arch: "x86_64"})
		b.Create(proto.KindImage, "wmi-san", proto.Image{ID: "wmi-san", BootDevType: 1, Arch: "x86_64"})
		b.Create(proto.KindStorageNode, "sn-demo1", proto.StorageNode{ID: "sn-demo1", NodeID: "sta.demo1", OfferingDiskSpaceMB: 1 << 20})
		b.Put(proto.KindNodeState, "sta.demo1", proto.NodeState{NodeID: "sta.demo1", State: "online"})
	})
}

// seedInstance makes an instance in state scheduling with a local boot
// volume of 10 GiB (or none when volGiB is 0) and the given vifs param.
func (e *env) seedInstance(id string, cpu int, memMB int64, volGiB int64, vifs string) {
	e.seed(func(b *state.Builder) {
		inst := proto.Instance{ID: id, AccountID: "a-shpoolxx", ImageID: "wmi-local", Arch: "x86_64", Hypervisor: "kvm",
			CPUCores: cpu, MemorySize: memMB, State: proto.InstanceScheduling, Status: proto.StatusInit, ServiceType: "std",
			RequestParams: map[string]any{"vifs": vifs}}
		if volGiB > 0 {
			vol := "vol-" + strings.TrimPrefix(id, "i-")
			inst.BootVolumeID = vol
			b.Create(proto.KindVolume, vol, proto.Volume{ID: vol, AccountID: "a-shpoolxx", State: proto.VolumeScheduling,
				Size: volGiB << 30, StoreType: proto.VolumeLocal, InstanceID: ptr(id)})
		}
		b.Create(proto.KindInstance, id, inst)
	})
}

const eth0 = `{"eth0":{"network":"nw-demo1","security_groups":["sg-demo1"]}}`

// plan reads the view of an instance over RPC and places it as the daemon
// does with the default schedulers.
func (e *env) plan(instanceID string, start bool, seed uint64) proto.SubmitPlanRequest {
	e.t.Helper()
	var w proto.SchedView
	if err := e.call(proto.VerbGetView, proto.GetViewRequest{InstanceID: instanceID, Start: start}, &w); err != nil {
		e.t.Fatalf("get_view: %v", err)
	}
	v, req, err := scheduler.ViewFromProto(&w)
	if err != nil {
		e.t.Fatal(err)
	}
	v.MacRanges = []scheduler.MacRange{{ID: "mr-default", Vendor: scheduler.DefaultMacVendor, Begin: 1, End: 0xfffffe}}
	s := &scheduler.Schedulers{Host: scheduler.LeastUsage{}, Storage: scheduler.StorageLeastUsage{},
		Network: scheduler.VifsRequestParam{}, MAC: scheduler.DefaultMAC{Rand: rand.New(rand.NewPCG(seed, 7))}, IP: scheduler.Incremental{}}
	pl, err := s.PlaceOne(v, &req)
	if err != nil {
		e.t.Fatalf("place %s: %v", instanceID, err)
	}
	p := scheduler.PlacementToProto(&pl)
	p.ViewIndex = w.Index
	return p
}

func (e *env) submit(p proto.SubmitPlanRequest) (proto.SubmitPlanResponse, error) {
	var resp proto.SubmitPlanResponse
	err := e.call(proto.VerbSubmitPlan, p, &resp)
	return resp, err
}

func TestGetView(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 2, 2048, 10, eth0)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindTag, "hng-1", proto.Tag{ID: "hng-1", TypeID: proto.TagTypeHostNodeGroup, MappedUUIDs: []string{"hn-demo1"}})
		b.Create(proto.KindIPLease, "nw-demo1/10.0.0.10", proto.IPLease{ID: "nw-demo1/10.0.0.10", NetworkID: "nw-demo1", IPv4: "10.0.0.10", Type: proto.LeaseVif, Auto: true})
		b.Create(proto.KindUniqueName, "mac/525400000001", proto.UniqueName{ID: "mac/525400000001", Owner: "vif-x"})
		b.Create(proto.KindUniqueName, "hostname/x", proto.UniqueName{ID: "hostname/x", Owner: "i-x"})
	})
	var w proto.SchedView
	if err := e.call(proto.VerbGetView, proto.GetViewRequest{InstanceID: "i-aaaa0001"}, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.Hosts) != 1 || !w.Hosts[0].Online || !w.Hosts[0].SchedulingEnabled || w.Hosts[0].OfferingCPUCores != 8 ||
		!reflect.DeepEqual(w.Hosts[0].Groups, []string{"hng-1"}) {
		t.Errorf("hosts = %+v", w.Hosts)
	}
	if len(w.Networks) != 1 || len(w.Networks[0].Leases) != 1 || w.Networks[0].Leases[0].Kind != proto.SchedLeaseAuto ||
		w.Networks[0].Gateway != "10.0.0.1" {
		t.Errorf("networks = %+v", w.Networks)
	}
	if !reflect.DeepEqual(w.MacLeases, []string{"525400000001"}) || !reflect.DeepEqual(w.Groups, []string{"hng-1"}) {
		t.Errorf("mac leases %v, groups %v", w.MacLeases, w.Groups)
	}
	if len(w.StorageNodes) != 1 || !w.StorageNodes[0].Online || w.StorageNodes[0].FreeBytes != 1<<40 {
		t.Errorf("storage nodes = %+v", w.StorageNodes)
	}
	r := w.Request
	if r.InstanceID != "i-aaaa0001" || r.CPU != 2 || r.MemoryMB != 2048 || r.State != proto.InstanceScheduling ||
		len(r.Volumes) != 1 || !r.Volumes[0].Local || r.Volumes[0].SizeBytes != 10<<30 || r.RequestParams["vifs"] != eth0 {
		t.Errorf("request = %+v", r)
	}
	// The in-memory form the algorithms read.
	err := e.srv.Store().View(func(tx *state.Tx) error {
		v, req, err := BuildView(tx, "i-aaaa0001", false)
		if err != nil {
			return err
		}
		if len(v.Hosts) != 1 || req.CPU != 2 || len(v.Networks[0].Leases) != 1 {
			t.Errorf("BuildView = %+v, %+v", v, req)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.call(proto.VerbGetView, proto.GetViewRequest{InstanceID: "i-nothere"}, nil); !errs.Is(err, errs.UnknownInstance) {
		t.Errorf("get_view of a missing instance = %v, want UnknownInstance", err)
	}
}

func TestSubmitPlanApplied(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 2, 2048, 10, eth0)
	p := e.plan("i-aaaa0001", false, 1)
	resp, err := e.submit(p)
	if err != nil {
		t.Fatalf("submit_plan: %v", err)
	}
	if resp.HostNodeID != "hn-demo1" || len(resp.VifIDs) != 1 || len(resp.JobIDs) != 1 || resp.AlreadyApplied {
		t.Fatalf("response = %+v", resp)
	}

	var inst proto.Instance
	e.get(proto.KindInstance, "i-aaaa0001", &inst)
	if inst.State != proto.InstancePending || inst.HostNodeID == nil || *inst.HostNodeID != "hn-demo1" || !inst.UpdatedAt.Equal(testNow) {
		t.Errorf("instance = %+v", inst)
	}
	var u proto.HostUsage
	e.get(proto.KindHostUsage, "hn-demo1", &u)
	if u.CPUCores != 2 || u.MemorySize != 2048 || u.DiskBytes != 10<<30 || !reflect.DeepEqual(u.Instances, []string{"i-aaaa0001"}) {
		t.Errorf("host usage = %+v", u)
	}
	var vif proto.NetworkVif
	e.get(proto.KindNetworkVif, resp.VifIDs[0], &vif)
	if vif.InstanceID == nil || *vif.InstanceID != "i-aaaa0001" || vif.NetworkID == nil || *vif.NetworkID != "nw-demo1" ||
		vif.IPv4Address == nil || *vif.IPv4Address != "10.0.0.10" || vif.MacAddr != p.Nics[0].MacAddr ||
		!reflect.DeepEqual(vif.SecurityGroups, []string{"sg-demo1"}) || vif.AccountID != "a-shpoolxx" {
		t.Errorf("vif = %+v", vif)
	}
	var lease proto.IPLease
	if !e.get(proto.KindIPLease, "nw-demo1/10.0.0.10", &lease) || !lease.Auto || lease.Type != proto.LeaseVif ||
		lease.NetworkVifID == nil || *lease.NetworkVifID != vif.ID {
		t.Errorf("lease = %+v", lease)
	}
	var claim proto.UniqueName
	if !e.get(proto.KindUniqueName, "mac/"+vif.MacAddr, &claim) || claim.Owner != vif.ID {
		t.Errorf("MAC claim = %+v", claim)
	}
	var vol proto.Volume
	e.get(proto.KindVolume, "vol-aaaa0001", &vol)
	if vol.State != proto.VolumePending || vol.Device == nil || vol.Device.MountLabel != "instance" {
		t.Errorf("volume = %+v", vol)
	}
	var job proto.Job
	if !e.get(proto.KindJob, resp.JobIDs[0], &job) || job.QueueName != "local-store-handle.hva.demo1" ||
		job.Verb != proto.VerbRunLocalStore || job.Params["instance_id"] != "i-aaaa0001" || job.ResourceID != "i-aaaa0001" {
		t.Errorf("job = %+v", job)
	}
	if !e.get(proto.KindJobQueue, job.ID, &proto.JobQueueEntry{}) {
		t.Errorf("job %s has no queue entry", job.ID)
	}

	// A retried submit (first answer lost) is answered, not applied twice.
	again, err := e.submit(p)
	if err != nil || !again.AlreadyApplied || !reflect.DeepEqual(again.VifIDs, resp.VifIDs) {
		t.Errorf("second submit = %+v, %v; want already applied", again, err)
	}
	if n := len(all[proto.NetworkVif](e, proto.KindNetworkVif)); n != 1 {
		t.Errorf("%d vifs after the retry, want 1", n)
	}
	// A different plan for an instance that is no longer scheduling is refused.
	other := p
	other.HostNodeID = "hn-other"
	e.rejects(errs.InvalidInstanceState, "not scheduling", func() error { _, err := e.submit(other); return err })
}

func TestSubmitPlanSharedVolume(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindVolume, "vol-san1", proto.Volume{ID: "vol-san1", State: proto.VolumeScheduling, Size: 20 << 30,
			StoreType: proto.VolumeShared, InstanceID: ptr("i-san1")})
		b.Create(proto.KindInstance, "i-san1", proto.Instance{ID: "i-san1", ImageID: "wmi-san", Arch: "x86_64", Hypervisor: "kvm",
			CPUCores: 1, MemorySize: 512, State: proto.InstanceScheduling, BootVolumeID: "vol-san1",
			RequestParams: map[string]any{"vifs": "{}"}})
	})
	resp, err := e.submit(e.plan("i-san1", false, 1))
	if err != nil {
		t.Fatal(err)
	}
	var vol proto.Volume
	e.get(proto.KindVolume, "vol-san1", &vol)
	if vol.State != proto.VolumePending || vol.StorageNodeID == nil || *vol.StorageNodeID != "sn-demo1" {
		t.Errorf("volume = %+v", vol)
	}
	var job proto.Job
	if len(resp.JobIDs) != 1 || !e.get(proto.KindJob, resp.JobIDs[0], &job) || job.QueueName != "sta-handle.sta.demo1" ||
		job.Verb != proto.VerbCreateVolumeAndRunInstance || job.Params["volume_id"] != "vol-san1" {
		t.Errorf("jobs %v: %+v", resp.JobIDs, job)
	}
	var u proto.HostUsage
	if e.get(proto.KindHostUsage, "hn-demo1", &u); u.DiskBytes != 0 || u.CPUCores != 1 {
		t.Errorf("usage = %+v (shared volumes take no host disk)", u)
	}
}

func TestStalePlanRejected(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 2, 2048, 10, eth0)
	p := e.plan("i-aaaa0001", false, 1)

	// The planned address was taken after the view was read.
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindIPLease, "nw-demo1/10.0.0.10", proto.IPLease{ID: "nw-demo1/10.0.0.10", NetworkID: "nw-demo1", IPv4: "10.0.0.10", Type: proto.LeaseVif})
	})
	e.rejects(errs.Conflict, "stale plan: address 10.0.0.10 of network nw-demo1 is taken", func() error { _, err := e.submit(p); return err })

	// A fresh view places it elsewhere.
	p = e.plan("i-aaaa0001", false, 2)
	if p.Nics[0].IPv4Address != "10.0.0.11" {
		t.Fatalf("fresh plan address %s, want 10.0.0.11", p.Nics[0].IPv4Address)
	}
	// The host went offline.
	e.seed(func(b *state.Builder) {
		b.Put(proto.KindNodeState, "hva.demo1", proto.NodeState{NodeID: "hva.demo1", State: "offline"})
	})
	e.rejects(errs.Conflict, "stale plan: host node hn-demo1 (hva.demo1) is not online", func() error { _, err := e.submit(p); return err })
	e.seed(func(b *state.Builder) {
		b.Put(proto.KindNodeState, "hva.demo1", proto.NodeState{NodeID: "hva.demo1", State: "online"})
	})
	// Its capacity was taken.
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindHostUsage, "hn-demo1", proto.HostUsage{ID: "hn-demo1", CPUCores: 7, MemorySize: 1024, Instances: []string{"i-other"}})
	})
	e.rejects(errs.Conflict, "stale plan: host node hn-demo1 has no room", func() error { _, err := e.submit(p); return err })
	// Its MAC was claimed.
	e.seed(func(b *state.Builder) {
		b.Delete(proto.KindHostUsage, "hn-demo1", 0)
		b.Create(proto.KindUniqueName, "mac/"+p.Nics[0].MacAddr, proto.UniqueName{ID: "mac/" + p.Nics[0].MacAddr, Owner: "vif-other"})
	})
	e.rejects(errs.Conflict, "stale plan: MAC address "+p.Nics[0].MacAddr+" is taken", func() error { _, err := e.submit(p); return err })
	// The address left the DHCP ranges.
	e.seed(func(b *state.Builder) {
		b.Delete(proto.KindUniqueName, "mac/"+p.Nics[0].MacAddr, 0)
		b.Update(proto.KindNetwork, "nw-demo1", 0, proto.Network{ID: "nw-demo1", IPv4Network: "10.0.0.0", Prefix: 24,
			IPv4Gw: ptr("10.0.0.1"), DhcpRanges: []proto.DhcpRange{{Begin: "10.0.0.100", End: "10.0.0.120"}}})
	})
	e.rejects(errs.Conflict, "stale plan: address 10.0.0.11 is not in a DHCP range", func() error { _, err := e.submit(p); return err })

	// Malformed plans are not stale: planning again would not help.
	p = e.plan("i-aaaa0001", false, 3)
	bad := p
	bad.Nics = []proto.PlannedNic{p.Nics[0], p.Nics[0]}
	bad.Nics[1].Index = 1
	e.rejects(errs.InvalidParameter, "given twice", func() error { _, err := e.submit(bad); return err })
	bad = p
	bad.Nics = []proto.PlannedNic{p.Nics[0]}
	bad.Nics[0].IPv4Address = "10.9.0.5"
	e.rejects(errs.InvalidParameter, "not in network nw-demo1", func() error { _, err := e.submit(bad); return err })
	bad = p
	bad.Volumes = nil
	e.rejects(errs.Conflict, "volumes", func() error { _, err := e.submit(bad); return err })
	bad = p
	bad.Nics = []proto.PlannedNic{p.Nics[0]}
	bad.Nics[0].SecurityGroups = []string{"sg-gone"}
	e.rejects(errs.UnknownSecurityGroup, "sg-gone", func() error { _, err := e.submit(bad); return err })
	if _, err := e.submit(p); err != nil {
		t.Fatalf("the good plan after all that: %v", err)
	}
}

// TestConcurrentLastCapacity submits two plans for the last capacity of a
// host at once: exactly one wins, the other is stale.
func TestConcurrentLastCapacity(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(2, 4096)
	for round := range 5 {
		a, b := "i-a"+string(rune('0'+round)), "i-b"+string(rune('0'+round))
		e.seedInstance(a, 2, 1024, 0, "{}")
		e.seedInstance(b, 2, 1024, 0, "{}")
		plans := []proto.SubmitPlanRequest{e.plan(a, false, 1), e.plan(b, false, 2)}
		errs2 := make([]error, 2)
		var wg sync.WaitGroup
		for i := range plans {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs2[i] = e.submit(plans[i])
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs2 {
			switch {
			case err == nil:
				won++
			case errs.Is(err, errs.Conflict) && strings.Contains(err.Error(), "no room"):
			default:
				t.Fatalf("round %d: submit = %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d plans won, want 1 (%v)", round, won, errs2)
		}
		var u proto.HostUsage
		e.get(proto.KindHostUsage, "hn-demo1", &u)
		if u.CPUCores != 2 || len(u.Instances) != 1 {
			t.Fatalf("round %d: usage %+v", round, u)
		}
		// Free the host for the next round: the winner fails over to
		// terminated through schedule_failed's sibling, Release.
		var inst proto.Instance
		e.get(proto.KindInstance, u.Instances[0], &inst)
		e.release(&inst)
	}
}

// release runs Release in a commit, as finalize does.
func (e *env) release(inst *proto.Instance) {
	e.t.Helper()
	err := e.svc.commit(context.Background(), func(tx *state.Tx, b *state.Builder) error { return Release(tx, b, inst) })
	if err != nil {
		e.t.Fatalf("release: %v", err)
	}
}

func TestDuplicateIPAndMAC(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 1, 512, 0, eth0)
	e.seedInstance("i-aaaa0002", 1, 512, 0, eth0)
	// Both planned on the same view: both pick the first free address.
	p1, p2 := e.plan("i-aaaa0001", false, 1), e.plan("i-aaaa0002", false, 2)
	if p1.Nics[0].IPv4Address != p2.Nics[0].IPv4Address {
		t.Fatalf("addresses %s, %s: want the same", p1.Nics[0].IPv4Address, p2.Nics[0].IPv4Address)
	}
	if _, err := e.submit(p1); err != nil {
		t.Fatal(err)
	}
	e.rejects(errs.Conflict, "address 10.0.0.10 of network nw-demo1 is taken", func() error { _, err := e.submit(p2); return err })
	// Another address but the first one's MAC.
	p2.Nics[0].IPv4Address = "10.0.0.15"
	p2.Nics[0].MacAddr = p1.Nics[0].MacAddr
	e.rejects(errs.Conflict, "MAC address "+p1.Nics[0].MacAddr+" is taken", func() error { _, err := e.submit(p2); return err })
	// Two NICs of one plan with the same address.
	e.seedInstance("i-aaaa0003", 1, 512, 0, `{"eth0":{"network":"nw-demo1"},"eth1":{"network":"nw-demo1"}}`)
	p3 := e.plan("i-aaaa0003", false, 3)
	p3.Nics[1].IPv4Address = p3.Nics[0].IPv4Address
	e.rejects(errs.InvalidParameter, "given twice", func() error { _, err := e.submit(p3); return err })
}

func TestScheduleFailedReleasesEverything(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 2, 2048, 10, eth0)
	// What an instance in scheduling may hold: a hostname claim, a host
	// chosen by the API and counted, a vif from an earlier life.
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindUniqueName, "hostname/a-shpoolxx/web1", proto.UniqueName{ID: "hostname/a-shpoolxx/web1", Owner: "i-aaaa0001"})
		b.Create(proto.KindHostUsage, "hn-demo1", proto.HostUsage{ID: "hn-demo1", CPUCores: 3, MemorySize: 3072,
			DiskBytes: 10 << 30, Instances: []string{"i-other", "i-aaaa0001"}, LocalDisk: map[string]int64{"i-aaaa0001": 10 << 30}})
		b.Create(proto.KindNetworkVif, "vif-old1", proto.NetworkVif{ID: "vif-old1", InstanceID: ptr("i-aaaa0001"),
			NetworkID: ptr("nw-demo1"), IPv4Address: ptr("10.0.0.12"), MacAddr: "525400abcdef"})
		b.Create(proto.KindIPLease, "nw-demo1/10.0.0.12", proto.IPLease{ID: "nw-demo1/10.0.0.12", NetworkID: "nw-demo1",
			IPv4: "10.0.0.12", Type: proto.LeaseVif, NetworkVifID: ptr("vif-old1")})
		b.Create(proto.KindUniqueName, "mac/525400abcdef", proto.UniqueName{ID: "mac/525400abcdef", Owner: "vif-old1"})
	})
	reason := "Unable to find a suitable host node for x86_64 kvm"
	if err := e.call(proto.VerbScheduleFailed, proto.ScheduleFailedRequest{InstanceID: "i-aaaa0001", Reason: reason}, nil); err != nil {
		t.Fatal(err)
	}
	var inst proto.Instance
	e.get(proto.KindInstance, "i-aaaa0001", &inst)
	if inst.State != proto.InstanceTerminated || inst.Status != proto.StatusOffline || inst.LastError != reason ||
		inst.TerminatedAt == nil || !inst.TerminatedAt.Equal(testNow) {
		t.Errorf("instance = %+v", inst)
	}
	var u proto.HostUsage
	e.get(proto.KindHostUsage, "hn-demo1", &u)
	if u.CPUCores != 1 || u.MemorySize != 1024 || u.DiskBytes != 0 || !reflect.DeepEqual(u.Instances, []string{"i-other"}) || len(u.LocalDisk) != 0 {
		t.Errorf("usage = %+v", u)
	}
	var vol proto.Volume
	e.get(proto.KindVolume, "vol-aaaa0001", &vol)
	if vol.State != proto.VolumeDeleted || vol.DeletedAt == nil {
		t.Errorf("volume = %+v", vol)
	}
	for _, k := range [][2]string{{proto.KindNetworkVif, "vif-old1"}, {proto.KindIPLease, "nw-demo1/10.0.0.12"},
		{proto.KindUniqueName, "mac/525400abcdef"}, {proto.KindUniqueName, "hostname/a-shpoolxx/web1"}} {
		if e.get(k[0], k[1], &json.RawMessage{}) {
			t.Errorf("%s/%s still exists", k[0], k[1])
		}
	}
	// Idempotent.
	before := e.buckets()
	if err := e.call(proto.VerbScheduleFailed, proto.ScheduleFailedRequest{InstanceID: "i-aaaa0001", Reason: "again"}, nil); err != nil {
		t.Fatalf("second schedule_failed: %v", err)
	}
	if !reflect.DeepEqual(before, e.buckets()) {
		t.Errorf("a second schedule_failed changed the state")
	}
	// A placed instance is not failed.
	e.seedInstance("i-aaaa0002", 1, 512, 0, "{}")
	if _, err := e.submit(e.plan("i-aaaa0002", false, 1)); err != nil {
		t.Fatal(err)
	}
	e.rejects(errs.InvalidInstanceState, "pending", func() error {
		return e.call(proto.VerbScheduleFailed, proto.ScheduleFailedRequest{InstanceID: "i-aaaa0002", Reason: "x"}, nil)
	})
	e.rejects(errs.UnknownInstance, "i-nothere", func() error {
		return e.call(proto.VerbScheduleFailed, proto.ScheduleFailedRequest{InstanceID: "i-nothere"}, nil)
	})
}

func TestReleaseIdempotent(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 2, 2048, 10, "{}")
	e.seedInstance("i-aaaa0002", 1, 1024, 0, "{}")
	for _, id := range []string{"i-aaaa0001", "i-aaaa0002"} {
		if _, err := e.submit(e.plan(id, false, 1)); err != nil {
			t.Fatal(err)
		}
	}
	var inst proto.Instance
	e.get(proto.KindInstance, "i-aaaa0001", &inst)
	// Released twice, the second time with the host already cleared (stop).
	e.release(&inst)
	inst.HostNodeID = nil
	e.release(&inst)
	var u proto.HostUsage
	e.get(proto.KindHostUsage, "hn-demo1", &u)
	if u.CPUCores != 1 || u.MemorySize != 1024 || u.DiskBytes != 0 || !reflect.DeepEqual(u.Instances, []string{"i-aaaa0002"}) {
		t.Errorf("usage = %+v", u)
	}
	e.get(proto.KindInstance, "i-aaaa0002", &inst)
	e.release(&inst)
	if e.get(proto.KindHostUsage, "hn-demo1", &u) {
		t.Errorf("an idle host keeps its usage record: %+v", u)
	}
}

// TestStartInstance re-places a stopped instance: same vif and MAC, a new
// address, the host charged, the boot job enqueued.
func TestStartInstance(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 2, 2048, 0, eth0)
	e.seed(func(b *state.Builder) {
		b.Create(proto.KindVolume, "vol-aaaa0001", proto.Volume{ID: "vol-aaaa0001", State: proto.VolumeAvailable,
			Size: 5 << 30, StoreType: proto.VolumeLocal, InstanceID: ptr("i-aaaa0001")})
		b.Create(proto.KindNetworkVif, "vif-keep1", proto.NetworkVif{ID: "vif-keep1", InstanceID: ptr("i-aaaa0001"),
			NetworkID: ptr("nw-demo1"), IPv4Address: ptr("10.0.0.12"), MacAddr: "525400abcdef"})
		b.Create(proto.KindUniqueName, "mac/525400abcdef", proto.UniqueName{ID: "mac/525400abcdef", Owner: "vif-keep1"})
		// Its old address went to someone else while it was stopped.
		b.Create(proto.KindIPLease, "nw-demo1/10.0.0.12", proto.IPLease{ID: "nw-demo1/10.0.0.12", NetworkID: "nw-demo1",
			IPv4: "10.0.0.12", Type: proto.LeaseVif, NetworkVifID: ptr("vif-other"), Auto: true})
	})
	var w proto.SchedView
	if err := e.call(proto.VerbGetView, proto.GetViewRequest{InstanceID: "i-aaaa0001", Start: true}, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.Request.Vifs) != 1 || w.Request.Vifs[0].ID != "vif-keep1" || len(w.Request.Volumes) != 1 {
		t.Fatalf("start request = %+v", w.Request)
	}
	p := proto.SubmitPlanRequest{InstanceID: "i-aaaa0001", Start: true, HostNodeID: "hn-demo1",
		Nics:    []proto.PlannedNic{{VifID: "vif-keep1", NetworkID: "nw-demo1", IPv4Address: "10.0.0.13", IPv4Auto: true, MacAddr: "525400abcdef"}},
		Volumes: []proto.PlannedVolume{{VolumeID: "vol-aaaa0001", Local: true}}}
	resp, err := e.submit(p)
	if err != nil {
		t.Fatal(err)
	}
	var vif proto.NetworkVif
	e.get(proto.KindNetworkVif, "vif-keep1", &vif)
	if vif.IPv4Address == nil || *vif.IPv4Address != "10.0.0.13" || vif.MacAddr != "525400abcdef" {
		t.Errorf("vif = %+v", vif)
	}
	var lease proto.IPLease
	if !e.get(proto.KindIPLease, "nw-demo1/10.0.0.13", &lease) || *lease.NetworkVifID != "vif-keep1" {
		t.Errorf("lease = %+v", lease)
	}
	var u proto.HostUsage
	if e.get(proto.KindHostUsage, "hn-demo1", &u); u.CPUCores != 2 || u.DiskBytes != 5<<30 {
		t.Errorf("usage = %+v", u)
	}
	var job proto.Job
	if len(resp.JobIDs) != 1 || !e.get(proto.KindJob, resp.JobIDs[0], &job) || job.Verb != proto.VerbRunLocalStore {
		t.Errorf("job = %+v", job)
	}
	if !reflect.DeepEqual(resp.VifIDs, []string{"vif-keep1"}) {
		t.Errorf("vif ids = %v", resp.VifIDs)
	}
}

// notLeader is an Applier of a follower.
type notLeader struct{}

func (notLeader) Apply(context.Context, state.CommandType, any) (any, error) {
	return nil, errs.New(errs.NoLeader, "follower")
}
func (notLeader) IsLeader() bool { return false }

func TestFollowerAnswersNoLeader(t *testing.T) {
	store, err := state.Open(t.TempDir() + "/state.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	s := New(Config{Store: store, Applier: notLeader{}})
	ctx := context.Background()
	if _, err := s.GetView(ctx, proto.GetViewRequest{InstanceID: "i-x"}); !errs.Is(err, errs.NoLeader) {
		t.Errorf("GetView = %v", err)
	}
	if _, err := s.SubmitPlan(ctx, proto.SubmitPlanRequest{InstanceID: "i-x"}); !errs.Is(err, errs.NoLeader) {
		t.Errorf("SubmitPlan = %v", err)
	}
	if _, err := s.ScheduleFailed(ctx, proto.ScheduleFailedRequest{InstanceID: "i-x"}); !errs.Is(err, errs.NoLeader) {
		t.Errorf("ScheduleFailed = %v", err)
	}
}

// TestGuardsCatchRaces builds two plans' txns on the same state, as two
// leader goroutines would, and applies them one after the other: the
// second fails its guards in raft instead of overcommitting the host.
func TestGuardsCatchRaces(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(2, 4096)
	for _, withUsage := range []bool{false, true} {
		a, b := "i-race1", "i-race2"
		if withUsage {
			a, b = "i-race3", "i-race4"
			e.seed(func(b *state.Builder) {
				b.Create(proto.KindHostUsage, "hn-demo1", proto.HostUsage{ID: "hn-demo1", Instances: []string{"i-idle"}})
			})
		}
		e.seedInstance(a, 2, 1024, 0, eth0)
		e.seedInstance(b, 2, 1024, 0, eth0)
		pa, pb := e.plan(a, false, 1), e.plan(b, false, 2)
		var txns []*state.Txn
		err := e.srv.Store().View(func(tx *state.Tx) error {
			for _, p := range []*proto.SubmitPlanRequest{&pa, &pb} {
				var bld state.Builder
				if _, err := applyPlan(tx, &bld, p, testNow); err != nil {
					return err
				}
				txn, err := bld.Txn()
				if err != nil {
					return err
				}
				txns = append(txns, txn)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.srv.Apply(context.Background(), state.CmdTxn, txns[0]); err != nil {
			t.Fatalf("first txn: %v", err)
		}
		_, err = e.srv.Apply(context.Background(), state.CmdTxn, txns[1])
		var te *state.TxnError
		if !errors.As(err, &te) || te.Kind != proto.KindHostUsage {
			t.Fatalf("second txn = %v, want a host_usage guard failure", err)
		}
		// Re-checked on the new state, the loser is stale.
		if _, err := e.submit(pb); !errs.Is(err, errs.Conflict) {
			t.Fatalf("loser resubmitted = %v, want Conflict", err)
		}
		var inst proto.Instance
		e.get(proto.KindInstance, a, &inst)
		e.release(&inst)
	}
}
