// Package e2e runs vdc's daemons as real processes on loopback (dcmgr,
// scheduler, hva with the dummy hypervisor) and drives them through the 12.03
// API the way a client would.
package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/cluster"
)

const account = "a-e2etest"

type daemon struct {
	name string
	bin  string
	args []string
	cmd  *exec.Cmd
	log  string
	// exited is set once kill has reaped the process (safe to read from
	// any goroutine, unlike cmd.ProcessState).
	exited atomic.Bool
}

type cluster1 struct {
	t       *testing.T
	api     string
	bins    string
	dir     string
	serf    string
	daemons []*daemon

	managers []*manager
	sched    *daemon // the first scheduler
	hva      *daemon // the first hva (hva.e2e1)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// build compiles the daemons once per test binary run.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "vdc-e2e-bin"); buildErr != nil {
			return
		}
		for _, pkg := range []string{"manager/cmd/dcmgr", "scheduler/cmd/scheduler", "hva/cmd/hva", "sta/cmd/sta"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, filepath.Base(pkg)), "../"+pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func (c *cluster1) start(name, bin string, args ...string) *daemon {
	c.t.Helper()
	d := &daemon{name: name, bin: bin, args: args, log: filepath.Join(c.dir, name+".log")}
	f, err := os.Create(d.log)
	if err != nil {
		c.t.Fatal(err)
	}
	d.cmd = exec.Command(filepath.Join(c.bins, bin), args...)
	d.cmd.Stdout, d.cmd.Stderr = f, f
	if err := d.cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	c.daemons = append(c.daemons, d)
	c.t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
		f.Close()
		if c.t.Failed() {
			b, _ := os.ReadFile(d.log)
			c.t.Logf("---- %s log ----\n%s", name, b)
		}
	})
	return d
}

// restart starts d's binary again with the same arguments (so the same node
// id and addresses) followed by extra (later flags win), logging to name.log.
func (c *cluster1) restart(d *daemon, name string, extra ...string) *daemon {
	c.t.Helper()
	return c.start(name, d.bin, append(slices.Clone(d.args), extra...)...)
}

// kill ends d with SIGKILL: no leave, no flush, no job handover.
func (d *daemon) kill(t *testing.T) {
	t.Helper()
	if d.cmd.ProcessState != nil {
		return
	}
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill %s: %v", d.name, err)
	}
	_ = d.cmd.Wait()
	d.exited.Store(true)
}

// signal sends sig to d (SIGSTOP freezes it: its sockets stay open but
// nothing answers).
func (d *daemon) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s %v: %v", d.name, sig, err)
	}
}

func port(t *testing.T) string { return "127.0.0.1:" + cluster.FreePort(t) }

// options size a test cluster; the zero value is newCluster's.
type options struct {
	// managers is 1 (default) or 3 (-bootstrap-expect 3, joining the first).
	managers int
	// hvaCores and hvaMemoryMB size the dummy hypervisor (default 8 and
	// 8192); hostCores and hostMemoryMB are what the host node record offers
	// the scheduler (default: the same).
	hvaCores, hvaMemoryMB, hostCores, hostMemoryMB int
	// hvaNodeID names the hva (default hva.e2e1), hostHypervisor is its
	// host node's hypervisor (default dummy), and hvaArgs go after the
	// hva's default flags (later flags win).
	hvaNodeID, hostHypervisor string
	hvaArgs                   []string
	// extra, when set, gives more arguments for each daemon by its node
	// name (m1.., scheduler.e2e, hva.e2e1), e.g. a -config file.
	extra func(name string) []string
}

func (o options) more(name string) []string {
	if o.extra == nil {
		return nil
	}
	return o.extra(name)
}

// manager is one dcmgr process of the cluster.
type manager struct {
	name, api string // api is the 12.03 base URL
	internal  string // base URL of /internal/v1
	rpc       string // agent RPC address (collector, scheduler-collector)
	d         *daemon
}

// newCluster starts one manager, one scheduler and one hva (dummy, 8 cores,
// 8 GiB, node id hva.e2e1), and registers the catalog an instance needs.
func newCluster(t *testing.T) *cluster1 {
	t.Helper()
	return newClusterWith(t, options{})
}

func newClusterWith(t *testing.T, o options) *cluster1 {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the daemons")
	}
	if o.managers == 0 {
		o.managers = 1
	}
	if o.hvaCores == 0 {
		o.hvaCores = 8
	}
	if o.hvaMemoryMB == 0 {
		o.hvaMemoryMB = 8192
	}
	if o.hostCores == 0 {
		o.hostCores = o.hvaCores
	}
	if o.hostMemoryMB == 0 {
		o.hostMemoryMB = o.hvaMemoryMB
	}
	if o.hvaNodeID == "" {
		o.hvaNodeID = "hva.e2e1"
	}
	if o.hostHypervisor == "" {
		o.hostHypervisor = "dummy"
	}
	c := &cluster1{t: t, bins: build(t), dir: t.TempDir()}
	for i := 1; i <= o.managers; i++ {
		name := fmt.Sprintf("m%d", i)
		api, serf, rpc := port(t), port(t), port(t)
		args := []string{"-node", name, "-data-dir", filepath.Join(c.dir, name), "-api", api,
			"-rpc", rpc, "-serf", serf, "-raft", port(t), "-fast-gossip", "-log-level", "info"}
		if o.managers > 1 {
			args = append(args, "-bootstrap-expect", fmt.Sprint(o.managers))
		}
		if i == 1 {
			c.serf = serf
		} else {
			args = append(args, "-join", c.serf)
		}
		dname := "dcmgr"
		if o.managers > 1 {
			dname = "dcmgr-" + name
		}
		m := &manager{name: name, api: "http://" + api + "/api/12.03", internal: "http://" + api + "/internal/v1", rpc: rpc}
		m.d = c.start(dname, "dcmgr", append(args, o.more(name)...)...)
		c.managers = append(c.managers, m)
	}
	c.api = c.managers[0].api
	c.sched = c.start("scheduler", "scheduler", append([]string{"-node-id", "scheduler.e2e", "-serf", port(t), "-rpc", port(t),
		"-join", c.serf, "-fast-gossip", "-log-level", "info"}, o.more("scheduler.e2e")...)...)
	hvaArgs := append([]string{"-node-id", o.hvaNodeID, "-serf", port(t), "-rpc", port(t), "-join", c.serf,
		"-fast-gossip", "-hypervisor", "dummy", "-cpu-cores", fmt.Sprint(o.hvaCores),
		"-memory-mb", fmt.Sprint(o.hvaMemoryMB), "-monitor-interval", "500ms", "-log-level", "info"}, o.hvaArgs...)
	c.hva = c.start("hva", "hva", append(hvaArgs, o.more(o.hvaNodeID)...)...)
	if o.managers > 1 {
		testutil.WaitFor(t, 30*time.Second, func() error {
			_, err := c.leader()
			return err
		})
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		_, err := c.call("GET", "/host_nodes.json", nil, "")
		return err
	})
	for _, r := range []struct {
		path string
		form url.Values
	}{
		{"/dc_networks.json", url.Values{"uuid": {"dcn-e2e1"}, "name": {"e2e"}}},
	} {
		c.must("POST", r.path, r.form, "")
	}
	c.must("PUT", "/dc_networks/dcn-e2e1.json", url.Values{"allow_new_networks": {"true"}}, "")
	c.must("PUT", "/dc_networks/dcn-e2e1/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}, "")
	c.must("POST", "/networks.json", url.Values{"uuid": {"nw-e2e1"}, "dc_network": {"dcn-e2e1"},
		"network": {"10.77.0.0"}, "prefix": {"24"}, "gw": {"10.77.0.1"}, "network_mode": {"securitygroup"},
		"dhcp_range": {"default"}, "account_id": {account}}, "")
	c.must("POST", "/host_nodes.json", url.Values{"uuid": {"hn-e2e1"}, "node_id": {o.hvaNodeID}, "arch": {"x86_64"},
		"hypervisor": {o.hostHypervisor}, "offering_cpu_cores": {fmt.Sprint(o.hostCores)},
		"offering_memory_size":   {fmt.Sprint(o.hostMemoryMB)},
		"offering_disk_space_mb": {"100000"}}, "")
	c.must("POST", "/backup_storages.json", url.Values{"uuid": {"bkst-e2e1"}, "storage_type": {"local"},
		"base_uri": {"file:///tmp/e2e/"}}, "")
	c.must("POST", "/backup_objects.json", url.Values{"uuid": {"bo-e2e1"}, "backup_storage_id": {"bkst-e2e1"},
		"size": {"33554432"}, "state": {"available"}, "account_id": {account}}, "")
	c.must("POST", "/images.json", url.Values{"uuid": {"wmi-e2e1"}, "backup_object_id": {"bo-e2e1"},
		"arch": {"x86_64"}, "boot_dev_type": {"2"}, "is_public": {"true"}, "account_id": {account}}, "")
	// The hva's serf membership makes its host online (node health loop).
	testutil.WaitFor(t, 30*time.Second, func() error {
		doc, err := c.call("GET", "/host_nodes/hn-e2e1.json", nil, "")
		if err != nil {
			return err
		}
		if doc.(map[string]any)["status"] != "online" {
			return fmt.Errorf("host status %v", doc.(map[string]any)["status"])
		}
		return nil
	})
	return c
}

type apiError struct {
	status int
	code   string
	body   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d code %s: %s", e.status, e.code, e.body)
}

func (c *cluster1) call(method, path string, form url.Values, acct string) (any, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.api+path, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if acct != "" {
		req.Header.Set("X_VDC_ACCOUNT_UUID", acct)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		var doc struct {
			Code string `json:"code"`
		}
		_ = json.Unmarshal(b, &doc)
		return nil, &apiError{status: res.StatusCode, code: doc.Code, body: string(b)}
	}
	var v any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return v, nil
}

func (c *cluster1) must(method, path string, form url.Values, acct string) any {
	c.t.Helper()
	v, err := c.call(method, path, form, acct)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return v
}

func (c *cluster1) instance(id string) map[string]any {
	c.t.Helper()
	return c.must("GET", "/instances/"+id+".json", nil, account).(map[string]any)
}

func (c *cluster1) waitState(id, want string) map[string]any {
	c.t.Helper()
	var doc map[string]any
	testutil.WaitFor(c.t, 60*time.Second, func() error {
		doc = c.instance(id)
		if doc["state"] != want {
			return fmt.Errorf("instance %s is %v, want %s", id, doc["state"], want)
		}
		return nil
	})
	return doc
}

// rejects asserts a request fails with status/code and leaves the instance's
// state as it was.
func (c *cluster1) rejects(method, path, id string, status int, code string) {
	c.t.Helper()
	before := c.instance(id)["state"]
	_, err := c.call(method, path, url.Values{}, account)
	ae, ok := err.(*apiError)
	if !ok || ae.status != status || ae.code != code {
		c.t.Fatalf("%s %s = %v, want %d/%s", method, path, err, status, code)
	}
	if after := c.instance(id)["state"]; after != before {
		c.t.Fatalf("%s %s changed state %v -> %v", method, path, before, after)
	}
}

// waitJobsIdle waits until no job is pending or running. One listing
// answers it: two (pending, then running) could miss a job that a running
// one made pending as it finished in between.
func (c *cluster1) waitJobsIdle() {
	c.t.Helper()
	testutil.WaitFor(c.t, 60*time.Second, func() error {
		env := c.must("GET", "/jobs.json?limit=100000", nil, "").([]any)[0].(map[string]any)
		for _, j := range env["results"].([]any) {
			if st := j.(map[string]any)["state"]; st != "finished" {
				return fmt.Errorf("job %v is %v", j.(map[string]any)["id"], st)
			}
		}
		return nil
	})
}

// leader is the live manager the raft peers name leader (asked of each live
// manager; the answer counts only when the leader confirms it).
func (c *cluster1) leader() (*manager, error) {
	var lastErr error = fmt.Errorf("no live manager")
	for _, m := range c.managers {
		if m.d.cmd.ProcessState != nil {
			continue
		}
		id, err := peersLeader(m)
		if err != nil {
			lastErr = err
			continue
		}
		for _, l := range c.managers {
			if l.name != id || l.d.cmd.ProcessState != nil {
				continue
			}
			if own, err := peersLeader(l); err == nil && own == l.name {
				return l, nil
			}
		}
		lastErr = fmt.Errorf("%s names %s leader, which does not confirm it", m.name, id)
	}
	return nil, lastErr
}

func peersLeader(m *manager) (string, error) {
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(m.internal + "/peers")
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var peers []struct {
		ID     string `json:"id"`
		Leader bool   `json:"leader"`
	}
	if res.StatusCode != 200 {
		return "", fmt.Errorf("%s peers: HTTP %d", m.name, res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&peers); err != nil {
		return "", err
	}
	for _, p := range peers {
		if p.Leader {
			return p.ID, nil
		}
	}
	return "", fmt.Errorf("%s knows no leader", m.name)
}

// jobs lists every job record (newest first, as the API sorts them).
func (c *cluster1) jobs() []map[string]any {
	c.t.Helper()
	env := c.must("GET", "/jobs.json?limit=1000", nil, "").([]any)[0].(map[string]any)
	var out []map[string]any
	for _, j := range env["results"].([]any) {
		out = append(out, j.(map[string]any))
	}
	if total := int(env["total"].(float64)); total != len(out) {
		c.t.Fatalf("jobs: %d of %d listed", len(out), total)
	}
	return out
}

// jobsOf lists the jobs of resource id on queue (an endpoint name).
func (c *cluster1) jobsOf(id, queue string) []map[string]any {
	c.t.Helper()
	var out []map[string]any
	for _, j := range c.jobs() {
		if j["resource_id"] == id && j["queue_name"] == queue {
			out = append(out, j)
		}
	}
	return out
}

func TestInstanceLifecycleOnDummyHva(t *testing.T) {
	c := newCluster(t)
	doc := c.must("POST", "/instances.json", url.Values{
		"image_id": {"wmi-e2e1"}, "hypervisor": {"dummy"}, "cpu_cores": {"2"}, "memory_size": {"512"},
		"vifs": {`{"eth0":{"index":"0","network":"nw-e2e1"}}`}, "display_name": {"e2e"},
	}, account).(map[string]any)
	id := doc["id"].(string)
	if doc["state"] != "scheduling" {
		t.Fatalf("created in state %v", doc["state"])
	}
	doc = c.waitState(id, "running")
	if doc["host_node"] != "hn-e2e1" || doc["status"] != "online" {
		t.Fatalf("running instance: host %v status %v", doc["host_node"], doc["status"])
	}
	vifs := doc["vif"].([]any)
	if len(vifs) != 1 {
		t.Fatalf("vifs = %v", vifs)
	}
	ip := vifs[0].(map[string]any)["ipv4"].(map[string]any)["address"].(string)
	if !strings.HasPrefix(ip, "10.77.0.") {
		t.Fatalf("vif address %s is not on nw-e2e1", ip)
	}

	// Illegal transitions are refused with 400/125 and change nothing.
	c.rejects("PUT", "/instances/"+id+"/poweron.json", id, 400, "125")
	c.rejects("PUT", "/instances/"+id+"/start.json", id, 400, "125")

	c.must("PUT", "/instances/"+id+"/reboot.json", url.Values{}, account)
	// A reboot does not change the state: wait for its job to end before the
	// next action, or the hva could find the instance halting already.
	c.waitJobsIdle()
	c.must("PUT", "/instances/"+id+"/poweroff.json", url.Values{"force": {"true"}}, account)
	c.waitState(id, "halted")
	c.rejects("PUT", "/instances/"+id+"/reboot.json", id, 400, "125")
	c.must("PUT", "/instances/"+id+"/poweron.json", url.Values{}, account)
	c.waitState(id, "running")
	c.must("PUT", "/instances/"+id+"/stop.json", url.Values{}, account)
	c.waitState(id, "stopped")
	c.must("PUT", "/instances/"+id+"/start.json", url.Values{}, account)
	c.waitState(id, "running")
	c.must("DELETE", "/instances/"+id+".json", nil, account)
	doc = c.waitState(id, "terminated")
	if doc["terminated_at"] == nil || doc["status"] != "offline" {
		t.Fatalf("terminated instance: %v", doc)
	}
	c.rejects("DELETE", "/instances/"+id+".json", id, 400, "125")

	// Every job the lifecycle made has ended, successfully (including the
	// deletion of the boot volume that terminate submits).
	c.waitJobsIdle()
	jobs := c.must("GET", "/jobs.json?limit=100", nil, "").([]any)[0].(map[string]any)["results"].([]any)
	if len(jobs) < 8 {
		t.Fatalf("only %d jobs recorded", len(jobs))
	}
	for _, j := range jobs {
		jm := j.(map[string]any)
		if jm["state"] != "finished" || jm["finish_status"] != "success" {
			t.Errorf("job %v %v: %v/%v %v", jm["id"], jm["queue_name"], jm["state"], jm["finish_status"], jm["finish_message"])
		}
	}
}

func TestNoHostFitsFailsCleanly(t *testing.T) {
	c := newCluster(t)
	// The API's checks pass (hypervisor online, capacity in aggregate), but no
	// host has the image's arch: only the scheduler can find that out.
	c.must("POST", "/images.json", url.Values{"uuid": {"wmi-e2ex86"}, "backup_object_id": {"bo-e2e1"},
		"arch": {"x86"}, "boot_dev_type": {"2"}, "is_public": {"true"}, "account_id": {account}}, "")
	doc := c.must("POST", "/instances.json", url.Values{
		"image_id": {"wmi-e2ex86"}, "hypervisor": {"dummy"}, "cpu_cores": {"1"}, "memory_size": {"256"},
		"vifs": {`{"eth0":{"network":"nw-e2e1"}}`}, "hostname": {"nofit"},
	}, account).(map[string]any)
	id := doc["id"].(string)
	doc = c.waitState(id, "terminated")
	if len(doc["vif"].([]any)) != 0 || doc["host_node"] != nil {
		t.Fatalf("a failed placement left resources: vif %v host %v", doc["vif"], doc["host_node"])
	}
	c.waitJobsIdle()
	found := false
	jobs := c.must("GET", "/jobs.json?limit=100", nil, "").([]any)[0].(map[string]any)["results"].([]any)
	for _, j := range jobs {
		jm := j.(map[string]any)
		if jm["resource_id"] == id && jm["queue_name"] == "scheduler" {
			found = true
			if jm["finish_status"] != "fail" || !strings.Contains(fmt.Sprint(jm["finish_message"]), "host") {
				t.Fatalf("schedule job = %v", jm)
			}
		}
	}
	if !found {
		t.Fatal("no scheduler job for the instance")
	}
	// Nothing is left allocated: the hostname is free again and the host's
	// whole capacity takes an instance of every core.
	doc = c.must("POST", "/instances.json", url.Values{
		"image_id": {"wmi-e2e1"}, "hypervisor": {"dummy"}, "cpu_cores": {"8"}, "memory_size": {"8192"},
		"vifs": {`{"eth0":{"network":"nw-e2e1"}}`}, "hostname": {"nofit"},
	}, account).(map[string]any)
	c.waitState(doc["id"].(string), "running")
}
