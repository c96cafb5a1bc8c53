package api

import (
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/vdc-project/vdc/manager/collector"
	"github.com/vdc-project/vdc/proto"
)

// addHost registers a host node (operator call) and sets its agent's state.
func (f *instFixture) addHost(id, node, hv, arch, nodeState string, cores, memMB int, extra ...string) {
	f.t.Helper()
	form := url.Values{"uuid": {id}, "node_id": {node}, "arch": {arch}, "hypervisor": {hv},
		"offering_cpu_cores": {strconv.Itoa(cores)}, "offering_memory_size": {strconv.Itoa(memMB)}, "offering_disk_space_mb": {"100"}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Set(extra[i], extra[i+1])
	}
	f.do(req{method: "POST", path: "/host_nodes.json", account: acct(""), form: form}).ok()
	f.seed(proto.KindNodeState, node, proto.NodeState{NodeID: node, State: nodeState})
}

func (f *instFixture) usage(host string) (proto.HostUsage, bool) {
	f.t.Helper()
	if !f.exists(proto.KindHostUsage, host) {
		return proto.HostUsage{}, false
	}
	var u proto.HostUsage
	f.record(proto.KindHostUsage, host, &u)
	return u, true
}

func TestInstanceMove(t *testing.T) {
	f := newInstEnv(t)
	f.addHost("hn-dest1", "hva.dest1", "kvm", "x86_64", "online", 4, 4096)
	f.addHost("hn-off1", "hva.off1", "kvm", "x86_64", "online", 4, 4096, "scheduling_enabled", "false")
	f.addHost("hn-x86", "hva.x86", "kvm", "x86", "online", 4, 4096)
	f.addHost("hn-tiny", "hva.tiny", "kvm", "x86_64", "online", 1, 4096)

	id := f.placed(proto.InstanceRunning, "cpu_cores", "2", "memory_size", "1024")
	// The scheduler's plan counted it on hn-demo1 with 50 MiB of local disk.
	f.seed(proto.KindHostUsage, "hn-demo1", proto.HostUsage{ID: "hn-demo1", CPUCores: 2, MemorySize: 1024,
		DiskBytes: 50 << 20, Instances: []string{id}, LocalDisk: map[string]int64{id: 50 << 20}})
	p := "/instances/" + id + "/move.json"
	to := func(host string) req { return put(p, "host_node_id", host) }

	// Every state but running is refused with the spec's message.
	for _, st := range []string{proto.InstanceScheduling, proto.InstancePending, proto.InstanceStarting,
		proto.InstanceHalting, proto.InstanceHalted, proto.InstanceStopping, proto.InstanceStopped,
		proto.InstanceShuttingDown, proto.InstanceMigrating, proto.InstanceTerminated} {
		f.setInstance(id, func(v *proto.Instance) { v.State = st })
		f.unchanged(func() {
			m := f.do(to("hn-dest1")).apiError(400, "125")
			wantEq(t, "message", m["message"], "Unsupported instance state for migration: "+st)
		})
	}
	f.setInstance(id, func(v *proto.Instance) { v.State = proto.InstanceRunning })

	// The destination: required, valid, another host, online and enabled,
	// compatible, with room.
	f.rejects(400, "143", put(p), put(p, "host_node_id", ""), to("bad"), to("hn-demo1"))
	f.rejects(404, "100", to("hn-nothere"))
	f.rejects(400, "141", to("hn-demo2"), to("hn-off1"))
	f.rejects(400, "179", to("hn-demo3"), to("hn-x86"))
	f.rejects(400, "120", to("hn-tiny"))
	// Ownership and syntax of the instance.
	f.rejects(404, "100", asOther("PUT", p, url.Values{"host_node_id": {"hn-dest1"}}),
		put("/instances/i-nothere/move.json", "host_node_id", "hn-dest1"))
	f.rejects(400, "143", put("/instances/bad/move.json", "host_node_id", "hn-dest1"))

	// Success: migrating, the destination's room reserved (cores, memory
	// and the local disk charged on the source), the job on the destination.
	wantEq(t, "move", f.do(to("hn-dest1")).ok().obj(), map[string]any{"instance_id": id})
	v := f.instance(id)
	if v.State != proto.InstanceMigrating || v.MigratingTo == nil || *v.MigratingTo != "hn-dest1" ||
		v.HostNodeID == nil || *v.HostNodeID != "hn-demo1" {
		t.Fatalf("after move: state %s to %v host %v", v.State, v.MigratingTo, v.HostNodeID)
	}
	f.wantJob(proto.MigrationHandle("hva.dest1"), proto.VerbRunVolStore, id, map[string]any{"instance_id": id})
	u, ok := f.usage("hn-dest1")
	if !ok || u.CPUCores != 2 || u.MemorySize != 1024 || u.DiskBytes != 50<<20 || !slices.Equal(u.Instances, []string{id}) {
		t.Fatalf("destination usage = %+v (%v)", u, ok)
	}
	if src, _ := f.usage("hn-demo1"); src.CPUCores != 2 || !slices.Contains(src.Instances, id) {
		t.Fatalf("source usage = %+v, want the instance still counted", src)
	}
	doc := f.get("/instances/" + id + ".json").ok().obj()
	wantEq(t, "document state", doc["state"], "migrating")
	wantEq(t, "document host", doc["host_node"], "hn-demo1")

	// While it migrates: no second move, no delete, no power actions.
	f.rejectsState(proto.InstanceMigrating, req{method: "DELETE", path: "/instances/" + id + ".json"},
		put("/instances/"+id+"/reboot.json"), put("/instances/"+id+"/poweroff.json"),
		put("/instances/"+id+"/stop.json"))
	f.unchanged(func() { f.do(to("hn-demo3")).apiError(400, "125") })

	// YAML rendering, and a second host's room is reserved per instance.
	id2 := f.placed(proto.InstanceRunning, "cpu_cores", "2", "memory_size", "1024")
	y := string(f.do(req{method: "PUT", path: "/instances/" + id2 + "/move.yml",
		form: url.Values{"host_node_id": {"hn-dest1"}}}).ok().body)
	wantEq(t, "yaml", y, "---\n:instance_id: "+id2+"\n")
	if u, _ := f.usage("hn-dest1"); u.CPUCores != 4 || len(u.Instances) != 2 {
		t.Fatalf("destination usage with two moves = %+v", u)
	}
	// hn-dest1 is full now (4 of 4 cores).
	id3 := f.placed(proto.InstanceRunning)
	f.rejects(400, "120", put("/instances/"+id3+"/move.json", "host_node_id", "hn-dest1"))
}

// TestCancelMoveJob: cancelling the move's job through the API (with the
// server's job-end hook) ends the move: running on the source, the
// destination's room given back, the destination told to clean up.
func TestCancelMoveJob(t *testing.T) {
	f := newInstEnv(t)
	f.api.SetJobEndHook(collector.FailMigration)
	f.addHost("hn-dest1", "hva.dest1", "kvm", "x86_64", "online", 4, 4096)
	id := f.placed(proto.InstanceRunning)
	f.put("/instances/"+id+"/move.json", url.Values{"host_node_id": {"hn-dest1"}}).ok()
	j := f.wantJob(proto.MigrationHandle("hva.dest1"), proto.VerbRunVolStore, id, nil)
	f.del("/jobs/" + j.ID + ".json").ok()
	v := f.instance(id)
	if v.State != proto.InstanceRunning || v.MigratingTo != nil || *v.HostNodeID != "hn-demo1" {
		t.Fatalf("after the cancel: %s to %v on %v", v.State, v.MigratingTo, *v.HostNodeID)
	}
	if _, ok := f.usage("hn-dest1"); ok {
		t.Fatal("the destination's reservation was kept")
	}
	f.wantJob(proto.HvaHandle("hva.dest1"), proto.VerbCleanup, id, map[string]any{"instance_id": id})
}
