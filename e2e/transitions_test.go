package e2e

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

// TestIllegalTransitionsEndToEnd walks an instance through running, halted,
// stopped and terminated on a real manager and hvas, and in each state
// makes every action the state forbids: each is answered 400/125 and
// changes nothing (state, host, jobs: none is enqueued).
func TestIllegalTransitionsEndToEnd(t *testing.T) {
	c := newInProcess(t, hvaOpts{node: ip1, cores: 8}, hvaOpts{node: ip2, cores: 8})
	c.seed()
	id := c.runningOn(hn1, 1)
	p := "/instances/" + id
	refuse := func(actions ...string) {
		t.Helper()
		c.waitJobsIdle()
		jobs := len(c.jobs())
		host := c.instance(id)["host_node"]
		for _, a := range actions {
			method, path := "PUT", p+"/"+a+".json"
			if a == "delete" {
				method, path = "DELETE", p+".json"
			}
			c.rejects(method, path, id, 400, "125")
		}
		if st := c.instance(id)["state"]; st != "running" {
			// move needs a destination to get past its parameter checks.
			_, err := c.call("PUT", p+"/move.json", url.Values{"host_node_id": {hn2}}, account)
			if ae, ok := err.(*apiError); !ok || ae.status != 400 || ae.code != "125" {
				t.Fatalf("move in state %v = %v, want 400/125", st, err)
			}
		}
		if n := len(c.jobs()); n != jobs {
			t.Fatalf("refused actions enqueued %d jobs", n-jobs)
		}
		if h := c.instance(id)["host_node"]; h != host {
			t.Fatalf("refused actions moved the instance %v -> %v", host, h)
		}
	}

	refuse("poweron", "start", "backup") // running
	c.must("PUT", p+"/poweroff.json", url.Values{}, account)
	c.waitState(id, "halted")
	refuse("reboot", "stop", "start", "poweroff")
	c.must("PUT", p+"/poweron.json", url.Values{}, account)
	c.waitState(id, "running")
	c.must("PUT", p+"/stop.json", url.Values{}, account)
	c.waitState(id, "stopped")
	refuse("reboot", "stop", "poweroff", "poweron", "backup")
	c.must("DELETE", p+".json", nil, account)
	c.waitState(id, "terminated")
	refuse("reboot", "stop", "start", "poweroff", "poweron", "backup", "delete")
}

// TestLifecycleTransitionsEndToEnd: every move of the lifecycle, as the
// manager accepted it from the hva (each report names the state the hva
// read, and the manager refuses it unless the instance is still there): the
// API's scheduling, the scheduler's pending, then pending → starting →
// running; poweroff (API halting) → halted; poweron (API starting) →
// running; stop running → stopping → stopped; start (API scheduling,
// scheduler pending) → starting → running; terminate running → shuttingdown
// → terminated.
func TestLifecycleTransitionsEndToEnd(t *testing.T) {
	c := newInProcess(t, hvaOpts{node: ip1, cores: 8})
	c.seed()
	doc := c.must("POST", "/instances.json", url.Values{
		"image_id": {"wmi-ip1"}, "hypervisor": {"dummy"}, "cpu_cores": {"1"}, "memory_size": {"256"},
		"vifs": {`{"eth0":{"network":"nw-ip1"}}`},
	}, account).(map[string]any)
	id := doc["id"].(string)
	if doc["state"] != "scheduling" || doc["status"] != "init" {
		t.Fatalf("created %v/%v", doc["state"], doc["status"])
	}
	c.waitState(id, "running")
	p := "/instances/" + id
	c.must("PUT", p+"/poweroff.json", url.Values{}, account)
	c.waitState(id, "halted")
	c.must("PUT", p+"/poweron.json", url.Values{}, account)
	c.waitState(id, "running")
	c.must("PUT", p+"/stop.json", url.Values{}, account)
	c.waitState(id, "stopped")
	c.must("PUT", p+"/start.json", url.Values{}, account)
	c.waitState(id, "running")
	c.must("DELETE", p+".json", nil, account)
	c.waitState(id, "terminated")
	c.waitJobsIdle()
	want := []string{
		"pending>starting", "starting>running", // boot
		"halting>halted",                       // poweroff
		"starting>running",                     // poweron
		"running>stopping", "stopping>stopped", // stop
		"pending>starting", "starting>running", // start
		"running>shuttingdown", ">terminated", // terminate
	}
	if got := c.hvas[ip1].coll.moves(id); !slices.Equal(got, want) {
		t.Fatalf("accepted moves = %v\nwant %v", got, want)
	}
	for _, j := range c.jobs() {
		if j["resource_id"] == id && j["finish_status"] != "success" {
			t.Errorf("job %v on %v: %v %v", j["id"], j["queue_name"], j["finish_status"], j["finish_message"])
		}
	}
}

// TestPoweronFailureHalts: the hypervisor refuses to start the domain; the
// instance ends halted (spec §8: poweron failure → halted) and the job
// failed with the cause.
func TestPoweronFailureHalts(t *testing.T) {
	c := newInProcess(t, hvaOpts{node: ip1, cores: 8})
	c.seed()
	id := c.runningOn(hn1, 1)
	p := "/instances/" + id
	c.must("PUT", p+"/poweroff.json", url.Values{}, account)
	c.waitState(id, "halted")
	c.waitJobsIdle()
	c.hvas[ip1].hv.InjectError(dummy.OpStart, errs.New(errs.Internal, "injected start failure"))
	c.must("PUT", p+"/poweron.json", url.Values{}, account)
	c.waitJobsIdle()
	if doc := c.waitState(id, "halted"); doc["status"] != "offline" {
		t.Fatalf("after a failed poweron: status %v", doc["status"])
	}
	var failed []map[string]any
	for _, j := range c.jobsOf(id, proto.HvaHandle(ip1)) {
		if j["finish_status"] == "fail" {
			failed = append(failed, j)
		}
	}
	if len(failed) != 1 || !strings.Contains(fmt.Sprint(failed[0]["finish_message"]), "injected start failure") {
		t.Fatalf("failed jobs = %v", failed)
	}
	c.hvas[ip1].hv.InjectError(dummy.OpStart, nil)
	c.must("PUT", p+"/poweron.json", url.Values{}, account)
	c.waitState(id, "running")
}
