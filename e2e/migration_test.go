package e2e

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

const (
	ip1, ip2 = "hva.ip1", "hva.ip2"
	hn1, hn2 = "hn-ip1", "hn-ip2"
)

// jobOf returns the one job of resource id on queue, failing unless there
// is exactly one. (The job document has no verb; the queues the tests look
// at get one verb each, named for the message.)
func (c *ipCluster) jobOf(id, queue, verb string) map[string]any {
	c.t.Helper()
	found := c.jobsOf(id, queue)
	if len(found) != 1 {
		c.t.Fatalf("%d jobs on %s (%s) for %s: %v", len(found), queue, verb, id, found)
	}
	return found[0]
}

// wantUsage checks which instances a host's usage counts, and its cores.
func (c *ipCluster) wantUsage(host string, cores int, ids ...string) {
	c.t.Helper()
	u := c.usage(host)
	got := slices.Clone(u.Instances)
	slices.Sort(got)
	slices.Sort(ids)
	if u.CPUCores != cores || !slices.Equal(got, ids) {
		c.t.Fatalf("usage of %s = %d cores %v, want %d cores %v", host, u.CPUCores, got, cores, ids)
	}
}

func (c *ipCluster) move(id, host string) {
	c.t.Helper()
	doc := c.must("PUT", "/instances/"+id+"/move.json", url.Values{"host_node_id": {host}}, account).(map[string]any)
	if doc["instance_id"] != id {
		c.t.Fatalf("move answered %v", doc)
	}
}

// waitMoved waits until the instance runs on host.
func (c *ipCluster) waitOn(id, host string) map[string]any {
	c.t.Helper()
	var doc map[string]any
	testutil.WaitFor(c.t, 60*time.Second, func() error {
		doc = c.instance(id)
		if doc["state"] != "running" || doc["host_node"] != host {
			return fmt.Errorf("instance %s is %v on %v, want running on %s", id, doc["state"], doc["host_node"], host)
		}
		return nil
	})
	return doc
}

// TestMoveBetweenDummyHvas moves an instance to another hva and back: the
// VM runs on the destination only, the instance is placed there, each
// host's usage counts it where it runs, the jobs chain (run_vol_store on the
// destination submits start_migration on the source) and succeed.
func TestMoveBetweenDummyHvas(t *testing.T) {
	c := newInProcess(t, hvaOpts{node: ip1, cores: 8}, hvaOpts{node: ip2, cores: 8})
	c.seed()
	id := c.runningOn(hn1, 2)
	ip := c.instance(id)["vif"].([]any)[0].(map[string]any)["ipv4"].(map[string]any)["address"]
	c.wantUsage(hn1, 2, id)

	c.move(id, hn2)
	doc := c.waitOn(id, hn2)
	c.waitJobsIdle() // the source removes its leftovers after reporting running
	if doc["status"] != "online" {
		t.Fatalf("moved instance status %v", doc["status"])
	}
	if got := doc["vif"].([]any)[0].(map[string]any)["ipv4"].(map[string]any)["address"]; got != ip {
		t.Fatalf("the move changed the address %v -> %v", ip, got)
	}
	if c.domain(ip2, id) != "running" || c.domain(ip1, id) != "" {
		t.Fatalf("domains after the move: %s %q, %s %q", ip1, c.domain(ip1, id), ip2, c.domain(ip2, id))
	}
	c.wantUsage(hn2, 2, id)
	c.wantUsage(hn1, 0)
	var inst proto.Instance
	c.record(proto.KindInstance, id, &inst)
	if inst.MigratingTo != nil || inst.LastError != "" {
		t.Fatalf("after the move: migrating_to %v, last_error %q", inst.MigratingTo, inst.LastError)
	}
	rvs := c.jobOf(id, proto.MigrationHandle(ip2), proto.VerbRunVolStore)
	sm := c.jobOf(id, proto.MigrationHandle(ip1), proto.VerbStartMigration)
	for _, j := range []map[string]any{rvs, sm} {
		if j["finish_status"] != "success" {
			t.Fatalf("job %v %v: %v %v", j["queue_name"], j["verb"], j["finish_status"], j["finish_message"])
		}
	}
	if sm["parent_id"] != rvs["id"] {
		t.Fatalf("start_migration's parent %v, want %v", sm["parent_id"], rvs["id"])
	}

	// The instance works on its new host: power actions go there.
	c.must("PUT", "/instances/"+id+"/reboot.json", url.Values{}, account)
	c.waitJobsIdle()
	if c.hvas[ip2].hv.Boots(id) != 1 {
		t.Fatalf("reboot did not reach %s: %d boots", ip2, c.hvas[ip2].hv.Boots(id))
	}

	// And back.
	c.move(id, hn1)
	c.waitOn(id, hn1)
	c.waitJobsIdle()
	if c.domain(ip1, id) != "running" || c.domain(ip2, id) != "" {
		t.Fatalf("domains after moving back: %q %q", c.domain(ip1, id), c.domain(ip2, id))
	}
	c.wantUsage(hn1, 2, id)
	c.wantUsage(hn2, 0)

	// Terminate releases everything on the host it runs on.
	c.must("DELETE", "/instances/"+id+".json", nil, account)
	c.waitState(id, "terminated")
	c.waitJobsIdle()
	c.wantUsage(hn1, 0)
	if c.domain(ip1, id) != "" {
		t.Fatalf("domain left after terminate: %q", c.domain(ip1, id))
	}
}

// TestMoveFailures: a move that fails anywhere leaves the instance running
// on its source, with the destination's reservation released and nothing
// of the instance left on the destination: the destination cannot hold the
// VM (its run_vol_store fails and aborts); the destination runs an hva
// without migration verbs (the job is refused, the dispatcher fails it and
// aborts in the same txn); the source cannot send the VM (start_migration
// fails and aborts, the destination's waiting VM is removed by the cleanup
// job). The instance then still moves.
func TestMoveFailures(t *testing.T) {
	const ip3, ip4 = "hva.ip3", "hva.ip4"
	c := newInProcess(t,
		hvaOpts{node: ip1, cores: 8},
		hvaOpts{node: ip2, cores: 1}, // the host record offers 8 cores; its hypervisor has 1
		hvaOpts{node: ip3, cores: 8, noMigration: true},
		hvaOpts{node: ip4, cores: 8})
	c.seed()
	a := c.runningOn(hn1, 2)

	wantBack := func(what string) {
		t.Helper()
		c.waitJobsIdle()
		doc := c.waitOn(a, hn1)
		var inst proto.Instance
		c.record(proto.KindInstance, a, &inst)
		if inst.MigratingTo != nil || !strings.Contains(inst.LastError, "migration to") {
			t.Fatalf("%s: migrating_to %v, last_error %q", what, inst.MigratingTo, inst.LastError)
		}
		if doc["status"] != "online" || c.domain(ip1, a) != "running" {
			t.Fatalf("%s: status %v, source domain %q", what, doc["status"], c.domain(ip1, a))
		}
		c.wantUsage(hn1, 2, a)
		for _, n := range []string{ip2, ip3, ip4} {
			c.wantUsage(hostOf(n), 0)
			if got := c.domain(n, a); got != "" {
				t.Fatalf("%s: domain left on %s: %q", what, n, got)
			}
		}
	}
	wantJob := func(queue, verb, status, msg string) {
		t.Helper()
		j := c.jobOf(a, queue, verb)
		if j["finish_status"] != status || !strings.Contains(fmt.Sprint(j["finish_message"]), msg) {
			t.Fatalf("%s %s: %v %v, want %s with %q", queue, verb, j["finish_status"], j["finish_message"], status, msg)
		}
	}

	c.move(a, hostOf(ip2))
	wantBack("destination full")
	wantJob(proto.MigrationHandle(ip2), proto.VerbRunVolStore, "fail", "cores")
	if n := len(c.jobsOf(a, proto.MigrationHandle(ip1))); n != 0 {
		t.Fatalf("%d start_migration jobs for a failed destination", n)
	}

	c.move(a, hostOf(ip3))
	wantBack("destination without migration verbs")
	wantJob(proto.MigrationHandle(ip3), proto.VerbRunVolStore, "fail", "refused")
	wantJob(proto.HvaHandle(ip3), proto.VerbCleanup, "success", "")

	c.hvas[ip1].hv.InjectError(dummy.OpMigrate, errs.New(errs.Internal, "injected migration failure"))
	c.move(a, hostOf(ip4))
	wantBack("source cannot send")
	wantJob(proto.MigrationHandle(ip1), proto.VerbStartMigration, "fail", "injected")
	wantJob(proto.HvaHandle(ip4), proto.VerbCleanup, "success", "")

	c.hvas[ip1].hv.InjectError(dummy.OpMigrate, nil)
	c.move(a, hostOf(ip4))
	c.waitOn(a, hostOf(ip4))
	c.waitJobsIdle()
	c.wantUsage(hostOf(ip4), 2, a)
	c.wantUsage(hn1, 0)
}

// TestMoveBetweenHvaProcesses moves an instance between two hva processes
// (the commands as shipped: the dummy's migration stream crosses processes
// on loopback).
func TestMoveBetweenHvaProcesses(t *testing.T) {
	c := newCluster(t)
	hva2 := c.start("hva2", "hva", "-node-id", "hva.e2e2", "-serf", port(t), "-rpc", port(t), "-join", c.serf,
		"-fast-gossip", "-hypervisor", "dummy", "-cpu-cores", "8", "-memory-mb", "8192",
		"-monitor-interval", "500ms", "-log-level", "info")
	c.must("POST", "/host_nodes.json", url.Values{"uuid": {"hn-e2e2"}, "node_id": {"hva.e2e2"}, "arch": {"x86_64"},
		"hypervisor": {"dummy"}, "offering_cpu_cores": {"8"}, "offering_memory_size": {"8192"},
		"offering_disk_space_mb": {"100000"}}, "")
	c.waitHost("hn-e2e2", "online")
	form := createForm(2, 512)
	form.Set("host_node_id", "hn-e2e1")
	id := c.must("POST", "/instances.json", form, account).(map[string]any)["id"].(string)
	c.waitState(id, "running")
	c.must("PUT", "/instances/"+id+"/move.json", url.Values{"host_node_id": {"hn-e2e2"}}, account)
	testutil.WaitFor(t, 60*time.Second, func() error {
		doc := c.instance(id)
		if doc["state"] != "running" || doc["host_node"] != "hn-e2e2" {
			return fmt.Errorf("instance is %v on %v", doc["state"], doc["host_node"])
		}
		return nil
	})
	c.waitJobsIdle()
	for _, j := range c.jobs() {
		if j["resource_id"] == id && j["finish_status"] != "success" {
			t.Errorf("job %v on %v: %v %v", j["id"], j["queue_name"], j["finish_status"], j["finish_message"])
		}
	}
	// The source sent the VM and the destination received it (their logs);
	// the instance keeps working on its new host.
	if n := len(logLines(t, c.hva, `msg="domain migrated"`, id)); n != 1 {
		t.Fatalf("source logged %d migrations of %s", n, id)
	}
	if n := len(logLines(t, hva2, `msg="incoming domain waits for the migration"`, id)); n != 1 {
		t.Fatalf("destination logged %d incoming domains of %s", n, id)
	}
	c.must("PUT", "/instances/"+id+"/poweroff.json", url.Values{}, account)
	c.waitState(id, "halted")
	c.must("PUT", "/instances/"+id+"/poweron.json", url.Values{}, account)
	if doc := c.waitState(id, "running"); doc["host_node"] != "hn-e2e2" {
		t.Fatalf("powered on on %v", doc["host_node"])
	}
}
