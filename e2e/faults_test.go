package e2e

// Fault tests (the instances issue's "Faults" list): daemons die or fail
// while jobs are outstanding, and the durable jobs still end, once, with
// the instance in the state the spec gives.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

const (
	hvaQueue   = "hva-handle.hva.e2e1"
	storeQueue = "local-store-handle.hva.e2e1"
	schedQueue = "scheduler"
)

// create posts a small instance on nw-e2e1 and returns its id.
func (c *cluster1) create(cores, memory int) string {
	c.t.Helper()
	doc := c.must("POST", "/instances.json", createForm(cores, memory), account).(map[string]any)
	return doc["id"].(string)
}

func createForm(cores, memory int) url.Values {
	return url.Values{
		"image_id": {"wmi-e2e1"}, "hypervisor": {"dummy"}, "cpu_cores": {fmt.Sprint(cores)},
		"memory_size": {fmt.Sprint(memory)}, "vifs": {`{"eth0":{"index":"0","network":"nw-e2e1"}}`},
	}
}

// waitHost waits until host node id has status.
func (c *cluster1) waitHost(id, status string) {
	c.t.Helper()
	testutil.WaitFor(c.t, 30*time.Second, func() error {
		doc, err := c.call("GET", "/host_nodes/"+id+".json", nil, "")
		if err != nil {
			return err
		}
		if got := doc.(map[string]any)["status"]; got != status {
			return fmt.Errorf("host %s is %v, want %s", id, got, status)
		}
		return nil
	})
}

// memberStatus is the serf status of member name as the first live manager
// sees it ("" when it is not listed).
func (c *cluster1) memberStatus(name string) string {
	c.t.Helper()
	for _, m := range c.managers {
		if m.d.exited.Load() {
			continue
		}
		res, err := (&http.Client{Timeout: 5 * time.Second}).Get(m.internal + "/members")
		if err != nil {
			c.t.Fatal(err)
		}
		defer res.Body.Close()
		var ms []struct {
			Name, Status string
		}
		if err := json.NewDecoder(res.Body).Decode(&ms); err != nil {
			c.t.Fatal(err)
		}
		for _, mb := range ms {
			if mb.Name == name {
				return mb.Status
			}
		}
		return ""
	}
	c.t.Fatal("no live manager")
	return ""
}

// onlyJob is the one job of resource id on queue.
func (c *cluster1) onlyJob(id, queue string) map[string]any {
	c.t.Helper()
	js := c.jobsOf(id, queue)
	if len(js) != 1 {
		c.t.Fatalf("%d %s jobs for %s, want 1: %v", len(js), queue, id, js)
	}
	return js[0]
}

func finishMessage(j map[string]any) string {
	if m, ok := j["finish_message"].(map[string]any); ok {
		return fmt.Sprint(m["message"])
	}
	return ""
}

// logLines are the lines of a daemon's log matching all of subs.
func logLines(t *testing.T, d *daemon, subs ...string) []string {
	t.Helper()
	b, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// TestPoweroffWaitsForDownHva: poweroffs queued while the instances' hva is
// down wait (the instances stay halting, the jobs unfinished); the hva
// restarted under the same node id gets the jobs, runs each once, and the
// instances end halted. Two paths: instance a's poweroff is queued right
// after the SIGKILL, while the leader's serf may still list the hva alive
// (deliveries are refused and retried); instance b's once the host is known
// offline (the dispatcher finds no agent at all).
func TestPoweroffWaitsForDownHva(t *testing.T) {
	c := newCluster(t)
	a, b := c.create(1, 256), c.create(1, 256)
	c.waitState(a, "running")
	c.waitState(b, "running")
	c.waitJobsIdle()

	c.hva.kill(t)
	c.must("PUT", "/instances/"+a+"/poweroff.json", url.Values{"force": {"true"}}, account)
	// Offline is the leader's serf seeing the hva failed; from then on the
	// dispatcher finds no agent for hva-handle.hva.e2e1 until it returns.
	c.waitHost("hn-e2e1", "offline")
	c.must("PUT", "/instances/"+b+"/poweroff.json", url.Values{"force": {"true"}}, account)
	jobID := map[string]string{a: c.onlyJob(a, hvaQueue)["id"].(string), b: c.onlyJob(b, hvaQueue)["id"].(string)}

	// The jobs wait: over several dispatcher passes and delivery retries the
	// instances stay halting and the jobs unfinished; b's was never handed
	// to anyone, so it is pending without a worker.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		for _, id := range []string{a, b} {
			if st := c.instance(id)["state"]; st != "halting" {
				t.Fatalf("instance %s is %v while its hva is down, want halting", id, st)
			}
			j := c.must("GET", "/jobs/"+jobID[id]+".json", nil, "").(map[string]any)
			if j["state"] == "finished" || (id == b && (j["state"] != "pending" || j["worker_id"] != nil)) {
				t.Fatalf("poweroff job of %s while the hva is down: state %v worker %v", id, j["state"], j["worker_id"])
			}
		}
	}

	ja := c.must("GET", "/jobs/"+jobID[a]+".json", nil, "").(map[string]any)
	t.Logf("while the hva is down: job of a %v (worker %v)", ja["state"], ja["worker_id"])

	// Same node id and addresses; a monitor that never runs in this test,
	// so only the jobs can take the instances from halting to halted.
	hva2 := c.restart(c.hva, "hva-restarted", "-monitor-interval", "1h")
	for _, id := range []string{a, b} {
		seen := []string{"halting"}
		testutil.WaitFor(t, 60*time.Second, func() error {
			st := c.instance(id)["state"].(string)
			if st != seen[len(seen)-1] {
				seen = append(seen, st)
			}
			if st != "halted" {
				return fmt.Errorf("instance %s is %s", id, st)
			}
			return nil
		})
		if !slices.Equal(seen, []string{"halting", "halted"}) {
			t.Fatalf("instance %s went through %v, want halting then halted", id, seen)
		}
	}
	c.waitJobsIdle()
	c.waitHost("hn-e2e1", "online")

	// Once: one poweroff job per instance, ended successfully on hva.e2e1;
	// the restarted hva accepted each once (redeliveries are deduplicated
	// by job id) and the killed one never had them.
	for _, id := range []string{a, b} {
		if doc := c.instance(id); doc["state"] != "halted" || doc["status"] != "offline" {
			t.Fatalf("instance %s after the poweroff: state %v status %v", id, doc["state"], doc["status"])
		}
		job := c.onlyJob(id, hvaQueue)
		if job["id"] != jobID[id] || job["state"] != "finished" || job["finish_status"] != "success" ||
			job["worker_id"] != "hva.e2e1" {
			t.Fatalf("poweroff job of %s = %v", id, job)
		}
		if n := len(logLines(t, hva2, `msg="job accepted"`, "job_id="+jobID[id])); n != 1 {
			t.Fatalf("restarted hva accepted poweroff job %s %d times, want 1", jobID[id], n)
		}
		if n := len(logLines(t, c.hva, "job_id="+jobID[id])); n != 0 {
			t.Fatalf("the killed hva logged poweroff job %s %d times", jobID[id], n)
		}
	}
	// Every job ended successfully.
	for _, j := range c.jobs() {
		if j["state"] != "finished" || j["finish_status"] != "success" {
			t.Errorf("job %v %v: %v/%v %v", j["id"], j["queue_name"], j["state"], j["finish_status"], finishMessage(j))
		}
	}
	// The restarted hva lost the domains (the dummy is in memory); poweron
	// defines them again.
	c.must("PUT", "/instances/"+a+"/poweron.json", url.Values{}, account)
	c.waitState(a, "running")
}

// TestBootFailureTerminates: the hva's hypervisor refuses the boot (the host
// record offers 8 cores, the dummy has 1), so the instance is terminated
// (spec: a failed boot destroys the instance), everything it held is
// released, and the run_local_store job fails naming the cause.
func TestBootFailureTerminates(t *testing.T) {
	c := newClusterWith(t, options{hvaCores: 1, hostCores: 8})
	id := c.create(4, 512)
	doc := c.waitState(id, "terminated")
	if len(doc["vif"].([]any)) != 0 || doc["terminated_at"] == nil || doc["status"] != "offline" {
		t.Fatalf("terminated after a failed boot: %v", doc)
	}
	c.waitJobsIdle()
	doc = c.instance(id) // after finalize's delete_volume job
	if j := c.onlyJob(id, schedQueue); j["finish_status"] != "success" {
		t.Fatalf("schedule job = %v", j)
	}
	j := c.onlyJob(id, storeQueue)
	msg := finishMessage(j)
	if j["state"] != "finished" || j["finish_status"] != "fail" {
		t.Fatalf("run_local_store job = %v", j)
	}
	for _, want := range []string{id, "terminated", "needs 4 cores", "1 of 1 cores"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("run_local_store job message %q does not say %q", msg, want)
		}
	}
	for _, v := range doc["volume"].([]any) {
		if st := v.(map[string]any)["state"]; st != "deleted" {
			t.Fatalf("volume of the terminated instance is %v: %v", st, doc["volume"])
		}
	}
	// What the instance held is free again: the host's whole record capacity
	// takes the next instance, and the dummy boots one that fits it.
	id2 := c.create(1, 256)
	doc = c.waitState(id2, "running")
	if doc["host_node"] != "hn-e2e1" {
		t.Fatalf("second instance on %v", doc["host_node"])
	}
}

// accepted counts, per instance, the jobs of verb d's agent accepted (the
// agent logs each job id once: redeliveries are deduplicated).
func accepted(t *testing.T, d *daemon, verb string) map[string]int {
	t.Helper()
	re := regexp.MustCompile(`job_id=(\S+) resource_id=(i-\w+) .*verb=` + verb + `( |$)`)
	jobs := map[string]bool{}
	out := map[string]int{}
	for _, l := range logLines(t, d, `msg="job accepted"`, "verb="+verb) {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("unexpected log line %q", l)
		}
		if jobs[m[1]] {
			t.Errorf("%s accepted job %s twice", d.name, m[1])
		}
		jobs[m[1]] = true
		out[m[2]]++
	}
	return out
}

// TestLeaderKilledMidJobs: instances are created through all three managers
// while the raft leader is killed with SIGKILL. The scheduler is frozen
// across the kill so that schedule jobs are deterministically outstanding
// (some handed to it by the old leader, unanswered); the hva keeps booting
// what was placed before. Once a new leader leads and the scheduler thaws,
// every instance (acknowledged or not) ends running or terminated with every
// job ended, and nothing ran twice: one schedule job and one run_local_store
// job per instance, each accepted once by its agent.
func TestLeaderKilledMidJobs(t *testing.T) {
	c := newClusterWith(t, options{managers: 3, hvaCores: 64, hvaMemoryMB: 65536})
	old, err := c.leader()
	if err != nil {
		t.Fatal(err)
	}

	const maxCreates = 30
	var (
		mu     sync.Mutex
		acked  []string
		failed int
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				full := len(acked) >= maxCreates
				mu.Unlock()
				if full {
					return
				}
				m := c.managers[(w+n)%len(c.managers)]
				if m.d.exited.Load() {
					continue
				}
				cl := &cluster1{t: t, api: m.api}
				doc, err := cl.call("POST", "/instances.json", createForm(1, 128), account)
				mu.Lock()
				if err == nil {
					acked = append(acked, doc.(map[string]any)["id"].(string))
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(50 * time.Millisecond) // the cluster is electing; don't spin
				}
			}
		}(w)
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitCreates := func(n int) {
		t.Helper()
		testutil.WaitFor(t, 30*time.Second, func() error {
			if got := count(); got < n && got < maxCreates {
				return fmt.Errorf("%d creates acknowledged, want %d", got, n)
			}
			return nil
		})
	}
	waitCreates(4)
	c.sched.signal(t, syscall.SIGSTOP)
	waitCreates(count() + 3)
	// At least the schedule jobs of the creates since the freeze are
	// unfinished (the old leader has handed some to the frozen scheduler).
	open := 0
	for _, j := range c.jobs() {
		if j["queue_name"] == schedQueue && j["state"] != "finished" {
			open++
		}
	}
	if open < 3 {
		t.Fatalf("%d schedule jobs outstanding before the kill, want at least 3", open)
	}
	old.d.kill(t)
	before := count()
	t.Logf("killed leader %s after %d acknowledged creates, %d schedule jobs outstanding", old.name, before, open)

	var lead *manager
	testutil.WaitFor(t, 30*time.Second, func() error {
		l, err := c.leader()
		if err != nil {
			return err
		}
		if l == old {
			return fmt.Errorf("old leader still named")
		}
		lead = l
		return nil
	})
	c.api = lead.api
	waitCreates(before + 3) // the new leader takes creates
	c.sched.signal(t, syscall.SIGCONT)
	waitCreates(count() + 3)
	close(stop)
	wg.Wait()
	t.Logf("new leader %s; %d creates acknowledged, %d refused", lead.name, len(acked), failed)
	if len(acked) <= before {
		t.Fatalf("no create acknowledged after the leader was killed")
	}

	// Every job ends, and every instance leaves the transitional states.
	c.waitJobsIdle()
	env := c.must("GET", "/instances.json?limit=1000", nil, account).([]any)[0].(map[string]any)
	insts := map[string]map[string]any{}
	for _, r := range env["results"].([]any) {
		d := r.(map[string]any)
		insts[d["id"].(string)] = d
	}
	for _, id := range acked {
		if insts[id] == nil {
			t.Errorf("acknowledged instance %s is missing", id)
		}
	}
	byInst := map[string]map[string][]map[string]any{}
	for _, j := range c.jobs() {
		if j["state"] != "finished" {
			t.Errorf("job %v %v is %v", j["id"], j["queue_name"], j["state"])
		}
		id := j["resource_id"].(string)
		if byInst[id] == nil {
			byInst[id] = map[string][]map[string]any{}
		}
		q := j["queue_name"].(string)
		byInst[id][q] = append(byInst[id][q], j)
	}
	booted := accepted(t, c.hva, "run_local_store")
	scheduled := accepted(t, c.sched, "schedule_instance")
	ips := map[string]string{}
	running := 0
	for id, d := range insts {
		sched, boot := byInst[id][schedQueue], byInst[id][storeQueue]
		if len(sched) != 1 || scheduled[id] > 1 {
			t.Errorf("instance %s: %d schedule jobs, %d accepted by the scheduler", id, len(sched), scheduled[id])
		}
		switch d["state"] {
		case "running":
			running++
			if len(sched) != 1 || sched[0]["finish_status"] != "success" {
				t.Errorf("running instance %s: schedule jobs %v", id, sched)
			}
			if len(boot) != 1 || boot[0]["finish_status"] != "success" {
				t.Errorf("running instance %s: run_local_store jobs %v", id, boot)
			}
			if booted[id] != 1 {
				t.Errorf("running instance %s: the hva accepted %d boot jobs", id, booted[id])
			}
			for _, v := range d["vif"].([]any) {
				ip := v.(map[string]any)["ipv4"].(map[string]any)["address"].(string)
				if other, dup := ips[ip]; dup {
					t.Errorf("instances %s and %s share address %s", id, other, ip)
				}
				ips[ip] = id
			}
		case "terminated":
			// A legitimate failure ends a job with a reason.
			var reasons []string
			for _, j := range append(slices.Clone(sched), boot...) {
				if j["finish_status"] == "fail" {
					reasons = append(reasons, finishMessage(j))
				}
			}
			if len(reasons) == 0 {
				t.Errorf("instance %s terminated with no failed job: %v %v", id, sched, boot)
			}
			if len(boot) > 1 || booted[id] > 1 {
				t.Errorf("terminated instance %s: %d run_local_store jobs, %d accepted", id, len(boot), booted[id])
			}
			t.Logf("instance %s terminated: %v", id, reasons)
		default:
			t.Errorf("instance %s is stuck %v (jobs: schedule %v, boot %v)", id, d["state"], sched, boot)
		}
	}
	t.Logf("%d instances, %d running", len(insts), running)
	if running == 0 {
		t.Fatal("no instance reached running")
	}
	if t.Failed() {
		return
	}
	// The host's usage counts each running instance exactly once (a plan
	// applied twice would count it twice, a lost one not at all): one core
	// more than is left does not fit, the cores left do.
	if doc, err := c.call("POST", "/instances.json", createForm(65-running, 128), account); err == nil {
		over := doc.(map[string]any)["id"].(string)
		c.waitState(over, "terminated")
		t.Logf("%d cores: accepted, then terminated by the scheduler", 65-running)
	} else if ae, ok := err.(*apiError); !ok || ae.status != 400 {
		t.Fatalf("create beyond the host's capacity: %v", err)
	} else {
		t.Logf("%d cores: refused by the API (%s)", 65-running, ae.code)
	}
	id := c.create(64-running, 128)
	if doc := c.waitState(id, "running"); doc["host_node"] != "hn-e2e1" {
		t.Fatalf("instance of the %d cores left on %v", 64-running, doc["host_node"])
	}
}

// TestSchedulerKilledMidPlan: the scheduler is frozen, an instance is
// created, its schedule job is handed to the frozen scheduler, and the
// scheduler is killed before it could place the instance. A new scheduler
// process gets the job: the instance is placed and runs, and the job ends
// successfully.
func TestSchedulerKilledMidPlan(t *testing.T) {
	c := newCluster(t)
	testutil.WaitFor(t, 30*time.Second, func() error {
		if st := c.memberStatus("scheduler.e2e"); st != "alive" {
			return fmt.Errorf("scheduler.e2e is %q in serf", st)
		}
		return nil
	})
	c.sched.signal(t, syscall.SIGSTOP)
	id := c.create(1, 256)
	// The dispatcher marks the job running as it delivers it; the frozen
	// scheduler's kernel accepts the connection, nothing answers. (Should
	// serf have declared the frozen scheduler failed first, the job stays
	// pending: the scheduler is then down when the job is dispatched, and
	// the outcome below must be the same.)
	delivered := false
	testutil.WaitFor(t, 30*time.Second, func() error {
		j := c.onlyJob(id, schedQueue)
		if delivered = j["state"] == "running"; delivered {
			return nil
		}
		if st := c.memberStatus("scheduler.e2e"); st == "failed" {
			return nil
		}
		return fmt.Errorf("schedule job is %v", j["state"])
	})
	t.Logf("schedule job delivered to the frozen scheduler: %v", delivered)
	c.sched.kill(t)
	if st := c.instance(id)["state"]; st != "scheduling" {
		t.Fatalf("instance is %v after the scheduler was killed, want scheduling", st)
	}
	sched2 := c.start("scheduler2", "scheduler", "-node-id", "scheduler.e2e2", "-serf", port(t), "-rpc", port(t),
		"-join", c.serf, "-fast-gossip", "-log-level", "info")
	doc := c.waitState(id, "running")
	if doc["host_node"] != "hn-e2e1" {
		t.Fatalf("instance on %v", doc["host_node"])
	}
	c.waitJobsIdle()
	j := c.onlyJob(id, schedQueue)
	if j["finish_status"] != "success" {
		t.Fatalf("schedule job = %v", j)
	}
	if n := len(logLines(t, sched2, `msg="instance placed"`, "instance_id="+id)); n != 1 {
		t.Fatalf("the new scheduler placed %s %d times, want 1", id, n)
	}
	if b := c.onlyJob(id, storeQueue); b["finish_status"] != "success" {
		t.Fatalf("run_local_store job = %v", b)
	}
}

// TestCollectorReadsOnLeader pins the fix of the bug TestLeaderKilledMidJobs
// found: an hva read its instance through a follower that had not applied
// the plan yet, saw it still scheduling, failed run_local_store, and left
// the instance pending for good. The hva-collector reads are the leader's:
// a follower answers NoLeader (the agent then asks the next manager).
func TestCollectorReadsOnLeader(t *testing.T) {
	c := newClusterWith(t, options{managers: 3})
	id := c.create(1, 256)
	c.waitState(id, "running")
	lead, err := c.leader()
	if err != nil {
		t.Fatal(err)
	}
	client := rpc.NewClient(rpc.ClientConfig{Timeout: 10 * time.Second})
	defer client.Close()
	for _, m := range c.managers {
		var v proto.InstanceView
		err := client.Call(context.Background(), m.rpc, proto.EndpointHvaCollector, proto.VerbGetInstance,
			proto.GetInstanceRequest{InstanceID: id}, &v)
		var md proto.GetInstanceMonitorDataResponse
		mdErr := client.Call(context.Background(), m.rpc, proto.EndpointHvaCollector, proto.VerbGetInstanceMonitorData,
			proto.GetInstanceMonitorDataRequest{NodeID: "hva.e2e1"}, &md)
		if m == lead {
			if err != nil || v.State != "running" {
				t.Fatalf("get_instance on the leader %s = %+v, %v", m.name, v, err)
			}
			if mdErr != nil || len(md.Instances) != 1 || md.Instances[0].InstanceID != id {
				t.Fatalf("get_instance_monitor_data on the leader %s = %+v, %v", m.name, md, mdErr)
			}
			continue
		}
		if !errs.Is(err, errs.NoLeader) || !errs.Is(mdErr, errs.NoLeader) {
			t.Fatalf("follower %s answered get_instance %v (%+v), get_instance_monitor_data %v; want NoLeader",
				m.name, err, v, mdErr)
		}
	}
}
