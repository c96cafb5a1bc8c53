package api

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// instKeys is the instance document's key order (§2.1).
const instKeys = "id,account_id,host_node,cpu_cores,memory_size,arch,image_id,created_at,updated_at," +
	"terminated_at,deleted_at,state,status,ssh_key_pair,volume,vif,hostname,ha_enabled,hypervisor," +
	"display_name,service_type,monitoring,labels,boot_volume_id"

// instFixture is what instances need: an online kvm host (hva.demo1, 8
// cores, 8 GB), an offline host, an online lxc host, an image with a local
// boot volume and one with a shared one, two networks, a security group and
// an ssh key of testAccount.
type instFixture struct {
	*env
	img, sharedImg string
	nw, nwNoRange  string
	sg, ssh        string
	otherSG        string
}

func newInstEnv(t *testing.T) *instFixture {
	t.Helper()
	e := newEnv(t)
	e.touchAccount(otherAccount)
	op := acct("")
	for _, h := range []struct{ id, node, hv, state string }{
		{"hn-demo1", "hva.demo1", "kvm", "online"},
		{"hn-demo2", "hva.demo2", "kvm", "offline"},
		{"hn-demo3", "hva.demo3", "lxc", "online"},
	} {
		e.do(req{method: "POST", path: "/host_nodes.json", account: op, form: url.Values{
			"uuid": {h.id}, "node_id": {h.node}, "arch": {"x86_64"}, "hypervisor": {h.hv},
			"offering_cpu_cores": {"8"}, "offering_memory_size": {"8192"},
		}}).ok()
		e.seed(proto.KindNodeState, h.node, proto.NodeState{NodeID: h.node, State: h.state})
	}
	e.seedStorage("bkst-demo1", "")
	bo := e.seedBackupObject(testAccount, "bkst-demo1", url.Values{"size": {"10737418240"}})
	f := &instFixture{env: e}
	// Public: other accounts launch it too (another account's private
	// image is unknown to them, ownership.go).
	f.img = e.seedImage(testAccount, bo, url.Values{"uuid": {"wmi-demo1"}, "arch": {"x86_64"}, "is_public": {"true"}})
	f.sharedImg = e.seedImage(testAccount, bo, url.Values{"uuid": {"wmi-shared"}, "boot_dev_type": {"1"}})
	dcn := e.dcNetwork("pub")
	f.nw = e.network(dcn, url.Values{"uuid": {"nw-demo1"}, "dhcp_range": {"default"}, "gw": {"10.0.0.1"}})["id"].(string)
	f.nwNoRange = e.network(dcn, url.Values{"uuid": {"nw-demo2"}, "network": {"10.1.0.0"}})["id"].(string)
	f.sg = e.post("/security_groups.json", url.Values{"rule": {"tcp:22,22,ip4:0.0.0.0"}}).ok().obj()["id"].(string)
	f.otherSG = e.do(asOther("POST", "/security_groups.json", url.Values{})).ok().obj()["id"].(string)
	f.ssh = e.post("/ssh_key_pairs.json", url.Values{"public_key": {testPublicKey(t)}, "display_name": {"k1"}}).ok().obj()["id"].(string)
	return f
}

// form is the minimal valid POST /instances form plus kv pairs.
func (f *instFixture) form(kv ...string) url.Values {
	v := url.Values{
		"image_id": {f.img}, "hypervisor": {"kvm"}, "cpu_cores": {"1"}, "memory_size": {"512"},
		"service_type": {"std"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		v[kv[i]] = []string{kv[i+1]}
	}
	return v
}

// create posts an instance and returns its document.
func (f *instFixture) create(kv ...string) map[string]any {
	f.t.Helper()
	return f.post("/instances.json", f.form(kv...)).ok().obj()
}

// instance reads the stored instance.
func (f *instFixture) instance(id string) proto.Instance {
	f.t.Helper()
	var v proto.Instance
	f.record(proto.KindInstance, id, &v)
	return v
}

// setInstance changes the stored instance directly, as agents would through
// the collector.
func (f *instFixture) setInstance(id string, change func(v *proto.Instance)) {
	f.t.Helper()
	_, err := f.api.commit(context.Background(), func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		var v proto.Instance
		m, err := tx.Get(proto.KindInstance, id, &v)
		if err != nil {
			return nil, err
		}
		change(&v)
		b.Update(proto.KindInstance, id, m.ModifyIndex, &v)
		return nil, nil
	})
	if err != nil {
		f.t.Fatalf("set instance %s: %v", id, err)
	}
}

// setVolume changes a stored volume directly.
func (f *instFixture) setVolume(id string, change func(v *proto.Volume)) {
	f.t.Helper()
	_, err := f.api.commit(context.Background(), func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		var v proto.Volume
		m, err := tx.Get(proto.KindVolume, id, &v)
		if err != nil {
			return nil, err
		}
		change(&v)
		b.Update(proto.KindVolume, id, m.ModifyIndex, &v)
		return nil, nil
	})
	if err != nil {
		f.t.Fatalf("set volume %s: %v", id, err)
	}
}

// placed creates an instance and puts it on hn-demo1 in state st.
func (f *instFixture) placed(st string, kv ...string) string {
	f.t.Helper()
	id := f.create(kv...)["id"].(string)
	f.setInstance(id, func(v *proto.Instance) {
		h := "hn-demo1"
		v.HostNodeID, v.State, v.Status = &h, st, proto.StatusOnline
	})
	return id
}

// attachVif stores a vif of the instance on nw with address ip (the
// scheduler's plan does this), its lease and its MAC claim.
func (f *instFixture) attachVif(inst, nw, ip string, index int, groups ...string) string {
	f.t.Helper()
	id := newID(proto.PrefixNetworkVif)
	mac := fmt.Sprintf("525400%06x", 1+rand.IntN(0xfffffe))
	now := f.api.now()
	vif := proto.NetworkVif{
		ID: id, Timestamps: stamps(now), AccountID: testAccount, NetworkID: &nw, InstanceID: &inst,
		DeviceIndex: index, MacAddr: mac, SecurityGroups: append([]string{}, groups...),
	}
	recs := []any{proto.KindUniqueName, macClaimScope + mac, proto.UniqueName{ID: macClaimScope + mac, Owner: id}}
	if ip != "" {
		vif.IPv4Address = &ip
		recs = append(recs, proto.KindIPLease, leaseID(nw, ip), proto.IPLease{
			ID: leaseID(nw, ip), Timestamps: stamps(now), NetworkID: nw, IPv4: ip, Type: proto.LeaseVif, NetworkVifID: &id,
		})
	}
	f.commitRecords(append([]any{proto.KindNetworkVif, id, vif}, recs...)...)
	return id
}

// agentJobs returns the jobs of endpoint, and checks each has a queue entry.
func (f *instFixture) agentJobs(endpoint string) []proto.Job {
	f.t.Helper()
	var out []proto.Job
	for _, j := range f.jobs() {
		if j.QueueName != endpoint {
			continue
		}
		if !f.exists(proto.KindJobQueue, j.ID) {
			f.t.Fatalf("job %s (%s %s) has no queue entry", j.ID, j.QueueName, j.Verb)
		}
		out = append(out, j)
	}
	return out
}

// wantJob asserts exactly one job of endpoint.verb for resource with params.
func (f *instFixture) wantJob(endpoint, verb, resource string, params map[string]any) proto.Job {
	f.t.Helper()
	var found []proto.Job
	for _, j := range f.agentJobs(endpoint) {
		if j.Verb == verb && j.ResourceID == resource {
			found = append(found, j)
		}
	}
	if len(found) != 1 {
		f.t.Fatalf("%d jobs %s.%s for %s, want 1 (jobs: %+v)", len(found), endpoint, verb, resource, f.jobs())
	}
	j := found[0]
	if j.State != "pending" {
		f.t.Fatalf("job state = %s", j.State)
	}
	for k, v := range params {
		if got := j.Params[k]; !reflect.DeepEqual(got, v) {
			f.t.Fatalf("job %s.%s param %s = %v, want %v", endpoint, verb, k, got, v)
		}
	}
	return j
}

func TestInstanceCreate(t *testing.T) {
	f := newInstEnv(t)
	r := f.post("/instances.json", f.form("display_name", "web", "ssh_key_id", f.ssh, "ha_enabled", "true",
		"service_type", "std", "user_data", "#!/bin/sh\necho hi", "quota_weight", "1.5", "instance_spec_name", "ignored"))
	wantEq(t, "keys", docKeys(t, r.ok().body), instKeys)
	doc := r.obj()
	id := doc["id"].(string)
	if !strings.HasPrefix(id, "i-") || len(id) != 10 {
		t.Fatalf("id = %q", id)
	}
	for k, want := range map[string]any{
		"account_id": testAccount, "host_node": nil, "cpu_cores": 1.0, "memory_size": 512.0, "arch": "x86_64",
		"image_id": f.img, "terminated_at": nil, "deleted_at": nil, "state": "scheduling", "status": "init",
		"hostname": strings.TrimPrefix(id, "i-"), "ha_enabled": 1.0, "hypervisor": "kvm", "display_name": "web",
		"service_type": "std",
	} {
		if !reflect.DeepEqual(doc[k], want) {
			t.Errorf("%s = %#v, want %#v", k, doc[k], want)
		}
	}
	wantEq(t, "ssh_key_pair", doc["ssh_key_pair"], map[string]any{"uuid": f.ssh, "display_name": "k1"})
	wantEq(t, "vif", doc["vif"], []any{})
	wantEq(t, "monitoring", doc["monitoring"], map[string]any{"enabled": false, "mail_address": []any{}, "items": map[string]any{}})
	vols := doc["volume"].([]any)
	boot := doc["boot_volume_id"].(string)
	if len(vols) != 1 || vols[0].(map[string]any)["vol_id"] != boot || vols[0].(map[string]any)["state"] != "scheduling" {
		t.Fatalf("volume = %v, boot %s", vols, boot)
	}

	// Records: the instance keeps the request, the boot volume is local
	// (boot_dev_type 2) from the image's backup object, the hostname is
	// claimed, and the scheduler job is queued.
	inst := f.instance(id)
	if inst.UserData != "#!/bin/sh\necho hi" || inst.QuotaWeight != 1.5 || inst.RequestParams["instance_spec_name"] != "ignored" {
		t.Fatalf("instance record = %+v", inst)
	}
	if _, ok := inst.RequestParams["user_data"]; ok {
		t.Fatalf("user_data kept twice in request_params")
	}
	var vol proto.Volume
	f.record(proto.KindVolume, boot, &vol)
	if vol.StoreType != proto.VolumeLocal || vol.State != proto.VolumeScheduling || vol.Size != 10737418240 ||
		vol.BackupObjectID == nil || *vol.InstanceID != id || vol.AccountID != testAccount {
		t.Fatalf("boot volume = %+v", vol)
	}
	if !f.exists(proto.KindUniqueName, hostnameClaim(testAccount, inst.Hostname)) {
		t.Fatalf("hostname not claimed")
	}
	f.wantJob(proto.EndpointScheduler, proto.VerbScheduleInstance, id, map[string]any{"instance_id": id})

	// Shared boot volume for boot_dev_type 1; service_type comes from the image.
	doc2 := f.create("image_id", f.sharedImg, "hostname", "Web-01", "service_type", "other")
	if doc2["hostname"] != "web-01" || doc2["service_type"] != "std" {
		t.Fatalf("hostname/service_type = %v %v", doc2["hostname"], doc2["service_type"])
	}
	f.record(proto.KindVolume, doc2["boot_volume_id"].(string), &vol)
	wantEq(t, "shared store", vol.StoreType, proto.VolumeShared)

	// The create answer in YAML, as mussel reads it.
	cy := string(f.post("/instances.yml", f.form()).ok().body)
	if !strings.HasPrefix(cy, "---\n:id: i-") || !strings.Contains(cy, "\n:state: scheduling\n:status: init\n") {
		t.Fatalf("create yaml = %s", cy)
	}

	// YAML: the lines mussel reads.
	y := string(f.get("/instances/" + id + ".yml").ok().body)
	for _, line := range []string{"---\n:id: " + id + "\n", "\n:state: scheduling\n", "\n:status: init\n",
		"\n:host_node:\n", "\n:boot_volume_id: " + boot + "\n", "\n- :vol_id: " + boot + "\n  :state: scheduling\n"} {
		if !strings.Contains(y, line) {
			t.Errorf("yaml lacks %q:\n%s", line, y)
		}
	}
}

func TestInstanceCreateParams(t *testing.T) {
	f := newInstEnv(t)
	// vifs as JSON text (mussel sends a file's content) with a manual MAC
	// and address, labels, volumes, monitoring and a host pin.
	vifs := `{"eth0":{"index":"0","network":"nw-demo1","security_groups":"` + f.sg + `","mac_addr":"525400aabbcc","ipv4_addr":"10.0.0.50"},"eth1":{"network":"nw-demo1"}}`
	form := f.form("vifs", vifs, "host_node_id", "hn-demo1",
		"labels[][name]", "env", "volumes[0][size]", "10G", "volumes[0][volume_type]", "shared",
		"volumes[1][size]", "512M", "volumes[1][volume_type]", "local", "volumes[1][display_name]", "scratch",
		"monitoring[enabled]", "true", "monitoring[mail_address]", "ops@example.com",
		"monitoring[items][0][title]", "ping", "monitoring[items][0][enabled]", "true", "monitoring[items][0][params][port]", "22")
	form["labels[][value]"] = []string{"prod"}
	doc := f.post("/instances.json", form).ok().obj()
	id := doc["id"].(string)
	wantEq(t, "host_node", doc["host_node"], "hn-demo1")
	labels := doc["labels"].([]any)
	if len(labels) != 1 || labels[0].(map[string]any)["name"] != "env" || labels[0].(map[string]any)["value"] != "prod" {
		t.Fatalf("labels = %v", labels)
	}
	mon := doc["monitoring"].(map[string]any)
	items := mon["items"].(map[string]any)
	itemID := "imon-" + strings.TrimPrefix(id, "i-") + "1"
	if mon["enabled"] != true || !reflect.DeepEqual(mon["mail_address"], []any{"ops@example.com"}) ||
		!reflect.DeepEqual(items[itemID], map[string]any{"enabled": true, "title": "ping", "params": map[string]any{"port": "22"}}) {
		t.Fatalf("monitoring = %v", mon)
	}
	if len(doc["volume"].([]any)) != 3 {
		t.Fatalf("volumes = %v", doc["volume"])
	}
	vols := f.get("/instances/" + id + "/volumes.json").ok().arr()
	sizes := []any{}
	for _, v := range vols {
		m := v.(map[string]any)
		sizes = append(sizes, m["size"], m["store_type"])
	}
	wantEq(t, "volume sizes", sizes, []any{10737418240.0, "local", 10737418240.0, "shared", 536870912.0, "local"})
	// The vifs are the scheduler's: none yet, the request keeps them as sent.
	inst := f.instance(id)
	if inst.RequestParams["vifs"] != vifs || len(doc["vif"].([]any)) != 0 {
		t.Fatalf("request vifs = %v, doc vif %v", inst.RequestParams["vifs"], doc["vif"])
	}

	// vifs as a Rack nested hash, network-less vif, security groups as array.
	form = f.form("vifs[eth0][network]", "nw-demo1", "vifs[eth0][security_groups][]", f.sg, "vifs[eth1][index]", "1")
	f.post("/instances.json", form).ok()

	// A manual address is free again only when not leased; the scheduler
	// claims it, so a second request for it still passes validation now.
	f.post("/instances.json", f.form("vifs", vifs)).ok()
}

func TestInstanceCreateErrors(t *testing.T) {
	f := newInstEnv(t)
	taken := f.placed(proto.InstanceRunning, "hostname", "taken")
	f.attachVif(taken, f.nw, "10.0.0.9", 0)
	var vif proto.NetworkVif
	for _, v := range records[proto.NetworkVif](f.env, proto.KindNetworkVif) {
		if v.InstanceID != nil && *v.InstanceID == taken {
			vif = v
		}
	}
	post := func(kv ...string) req { return req{method: "POST", path: "/instances.json", form: f.form(kv...)} }
	without := func(key string, r req) req { r.form.Del(key); return r }
	vifJSON := func(body string) req { return post("vifs", body) }
	quota := func(q string, r req) req { r.header = map[string]string{"X-VDC-Account-Quota": q}; return r }

	f.rejects(400, "102", req{method: "POST", path: "/instances.json", form: f.form(), account: acct("")})
	f.rejects(400, "162", quota(`{"instance.count": 1}`, post()), quota(`{"instance.quota_weight": 2.5}`, post("quota_weight", "3")))
	f.post("/instances.json", f.form("quota_weight", "1")).ok()
	f.do(quota(`{"instance.count": 3, "instance.quota_weight": 3.5}`, post("quota_weight", "1"))).ok()

	f.rejects(400, "137", without("image_id", post()), post("image_id", "wmi-nothere"))
	f.rejects(400, "110", post("image_id", "bo-demo1"), post("hostname", "-bad"), post("hostname", "a_b"),
		post("hostname", strings.Repeat("a", 33)), post("hostname[]", "a"), vifJSON(`{"eth0":{"network":""}}`), vifJSON(`{"eth0":{"network":"sg-x"}}`))
	f.rejects(400, "143", without("hypervisor", post()), post("hypervisor", "xen"),
		post("cpu_cores", "0"), post("cpu_cores", "129"), post("cpu_cores", "x"), without("cpu_cores", post()),
		post("memory_size", "127"), post("memory_size", "1000000"),
		vifJSON(`{"eth0":`), vifJSON(`["eth0"]`), vifJSON(`{"eth0":"nw-demo1"}`), post("vifs[eth0]", "x"),
		post("quota_weight", "heavy"), post("quota_weight", "-1"), post("labels[][name]", "env"),
		post("volumes[0][size]", "10Q", "volumes[0][volume_type]", "local"),
		post("volumes[0][size]", "1G", "volumes[0][volume_type]", "floppy"),
		post("volumes[0][volume_type]", "local"), post("volumes", "x"), post("monitoring", "on"),
		vifJSON(`{"eth0":{"network":"nw-demo1","security_groups":"bad"}}`))
	// "hypervisor lxc" is online but "xen" and hn-demo2's kvm-offline do not count.
	f.rejects(400, "120", post("cpu_cores", "17"), post("memory_size", "16385"),
		post("host_node_id", "hn-demo1", "cpu_cores", "9"))
	f.rejects(404, "129", vifJSON(`{"eth0":{"network":"nw-nothere"}}`),
		vifJSON(`{"eth0":{"ipv4_addr":"10.0.0.5"}}`), vifJSON(`{"eth0":{"network":"nw-demo1","nat_ipv4_addr":"10.0.0.5"}}`),
		vifJSON(`{"eth0":{"network":"nw-demo1","nat_network":"nw-nothere"}}`))
	f.rejects(404, "100", vifJSON(`{"eth0":{"network":"nw-demo1","security_groups":["sg-nothere"]}}`),
		vifJSON(`{"eth0":{"network":"nw-demo1","security_groups":"`+f.otherSG+`"}}`),
		post("volumes[0][backup_object_id]", "bo-nothere", "volumes[0][volume_type]", "shared"))
	f.rejects(400, "174", vifJSON(`{"eth0":{"network":"nw-demo1","mac_addr":"5254"}}`),
		vifJSON(`{"eth0":{"network":"nw-demo1","mac_addr":"52540000zz00"}}`))
	f.rejects(400, "175", vifJSON(`{"eth0":{"network":"nw-demo1","mac_addr":"`+vif.MacAddr+`"}}`),
		vifJSON(`{"eth0":{"mac_addr":"525400000001"},"eth1":{"mac_addr":"525400000001"}}`))
	f.rejects(400, "180", vifJSON(`{"eth0":{"network":"nw-demo1","mac_addr":"001122334455"}}`))
	f.rejects(400, "176", vifJSON(`{"eth0":{"network":"nw-demo1","ipv4_addr":"10.0.0.256"}}`))
	f.rejects(400, "177", vifJSON(`{"eth0":{"network":"nw-demo1","ipv4_addr":"10.0.0.9"}}`),
		vifJSON(`{"eth0":{"network":"nw-demo1","ipv4_addr":"10.0.0.1"}}`),
		vifJSON(`{"eth0":{"network":"nw-demo1","ipv4_addr":"10.0.0.7"},"eth1":{"network":"nw-demo1","ipv4_addr":"10.0.0.7"}}`))
	f.rejects(400, "178", vifJSON(`{"eth0":{"network":"nw-demo1","ipv4_addr":"10.2.0.5"}}`))
	f.rejects(400, "181", vifJSON(`{"eth0":{"network":"nw-demo2","ipv4_addr":"10.1.0.5"}}`),
		vifJSON(`{"eth0":{"network":"nw-demo1","nat_network":"nw-demo2","nat_ipv4_addr":"10.1.0.5"}}`))
	f.rejects(400, "126", post("hostname", "TAKEN"))
	f.rejects(404, "121", post("ssh_key_id", "ssh-nothere"), post("ssh_key_id", "bad"))
	f.rejects(404, "114", post("host_node_id", "hn-nothere"), post("host_id", "x"))
	f.rejects(400, "141", post("host_node_id", "hn-demo2"))
	f.rejects(400, "179", post("host_pool_id", "hn-demo3"))

	// The order of the table: the image before the hypervisor before the
	// sizes before the vifs before the hostname.
	f.rejects(400, "137", post("image_id", "wmi-nothere", "hypervisor", "xen"))
	f.rejects(400, "143", post("hypervisor", "xen", "cpu_cores", "0"))
	f.rejects(404, "129", post("vifs", `{"eth0":{"network":"nw-nothere"}}`, "hostname", "taken"))

	// Another account's hostname does not collide.
	f.do(req{method: "POST", path: "/instances.json", form: f.form("hostname", "taken"), account: acct(otherAccount)}).ok()
}

// TestInstanceHostnameRace: concurrent creates with one hostname, one wins.
func TestInstanceHostnameRace(t *testing.T) {
	f := newInstEnv(t)
	const n = 8
	var wg sync.WaitGroup
	status := make([]int, n)
	codes := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.do(req{method: "POST", path: "/instances.json", form: f.form("hostname", "same")})
			status[i] = r.status
			if r.status != 200 {
				var m map[string]any
				_ = json.Unmarshal(r.body, &m)
				codes[i], _ = m["code"].(string)
			}
		}()
	}
	wg.Wait()
	ok := 0
	for i := range n {
		switch {
		case status[i] == 200:
			ok++
		case status[i] != 400 || codes[i] != "126":
			t.Fatalf("request %d: %d %s", i, status[i], codes[i])
		}
	}
	if ok != 1 || f.count(proto.KindInstance) != 1 {
		t.Fatalf("%d creates succeeded, %d instances stored; want 1", ok, f.count(proto.KindInstance))
	}
}

func TestInstanceListAndShow(t *testing.T) {
	f := newInstEnv(t)
	a := f.placed(proto.InstanceRunning, "display_name", "a")
	b := f.placed(proto.InstanceStopped, "display_name", "b")
	c := f.create("display_name", "c")["id"].(string)
	d := f.placed(proto.InstanceTerminated)
	now := f.api.now()
	f.setInstance(d, func(v *proto.Instance) { v.TerminatedAt = &now })
	other := f.do(req{method: "POST", path: "/instances.json", form: f.form(), account: acct(otherAccount)}).ok().obj()["id"].(string)

	ids := func(q string) []string {
		t.Helper()
		_, items := f.get("/instances.json" + q).envelope()
		var out []string
		for _, it := range items {
			out = append(out, it["id"].(string))
		}
		return out
	}
	// Newest first, only the caller's.
	wantEq(t, "all", ids(""), []string{d, c, b, a})
	wantEq(t, "running", ids("?state=running"), []string{a})
	wantEq(t, "alive", ids("?state=alive"), []string{c, b, a})
	wantEq(t, "alive_with_terminated", ids("?state=alive_with_terminated"), []string{d, c, b, a})
	wantEq(t, "without_terminated", ids("?state=without_terminated"), []string{b, a})
	wantEq(t, "display_name", ids("?display_name=b"), []string{b})
	wantEq(t, "id prefix", ids("?id="+a[:5]), []string{a})
	wantEq(t, "id prefix bare", ids("?id="+strings.TrimPrefix(a, "i-")), []string{a})
	wantEq(t, "host", ids("?host_node_id=hn-demo1"), []string{d, b, a})
	wantEq(t, "service_type", ids("?service_type=std&limit=1&start=1"), []string{c})
	wantEq(t, "terminated range", ids("?terminated_since=2000-01-01T00:00:00Z"), []string{d})
	wantEq(t, "operator sees all", len(f.do(req{method: "GET", path: "/instances.json", account: acct("")}).arr()[0].(map[string]any)["results"].([]any)), 5)
	// What the filters read is kept between lists per record write: a
	// change shows in the next list.
	f.setInstance(a, func(v *proto.Instance) { v.DisplayName = "z" })
	wantEq(t, "display_name after a change", ids("?display_name=a"), []string(nil))
	wantEq(t, "display_name changed", ids("?display_name=z"), []string{a})
	f.rejects(400, "143", req{method: "GET", path: "/instances.json?state=scheduling"},
		req{method: "GET", path: "/instances.json?service_type=nope"},
		req{method: "GET", path: "/instances.json?host_node_id=xx-1"},
		req{method: "GET", path: "/instances/x-1.json"})
	f.rejects(404, "100", req{method: "GET", path: "/instances.json?host_node_id=hn-nothere"},
		req{method: "GET", path: "/instances/i-nothere.json"},
		req{method: "GET", path: "/instances/" + other + ".json"},
		req{method: "GET", path: "/instances/" + a + ".json?service_type=lb"})

	// vifs: sorted by index; ipv4 left out without an address.
	v1 := f.attachVif(a, f.nw, "", 1)
	v0 := f.attachVif(a, f.nw, "10.0.0.20", 0, f.sg)
	doc := f.get("/instances/" + a + ".json").ok().obj()
	wantEq(t, "vif", doc["vif"], []any{
		map[string]any{"vif_id": v0, "network_id": f.nw, "index": 0.0,
			"ipv4": map[string]any{"address": "10.0.0.20", "nat_address": nil}, "security_groups": []any{f.sg}},
		map[string]any{"vif_id": v1, "network_id": f.nw, "index": 1.0, "security_groups": []any{}},
	})
	wantEq(t, "keys", docKeys(t, f.get("/instances/"+a+".json").body), instKeys)
	_, ly := f.get("/instances.yml?service_type=std&state=running").envelopeYAML(t)
	if !strings.Contains(ly, "\n  :results:\n  - :id: "+a+"\n") || !strings.Contains(ly, "\n    - :vif_id: "+v0+"\n") {
		t.Errorf("list yaml:\n%s", ly)
	}
	uy := string(f.put("/instances/"+a+".yml", url.Values{"display_name": {"renamed"}}).ok().body)
	if !strings.HasPrefix(uy, "---\n:id: "+a+"\n") || !strings.Contains(uy, "\n:display_name: renamed\n") {
		t.Errorf("update yaml:\n%s", uy)
	}
	y := string(f.get("/instances/" + a + ".yml").ok().body)
	for _, line := range []string{"\n:state: running\n", "\n:status: online\n", "\n:host_node: hn-demo1\n",
		"\n:vif:\n- :vif_id: " + v0 + "\n  :network_id: nw-demo1\n  :index: 0\n  :ipv4:\n    :address: 10.0.0.20\n    :nat_address:\n  :security_groups:\n  - " + f.sg + "\n- :vif_id: " + v1 + "\n"} {
		if !strings.Contains(y, line) {
			t.Errorf("yaml lacks %q:\n%s", line, y)
		}
	}
}

// TestInstanceReadRoutesBothFormats: every GET route of instances renders
// the same document in JSON and Ruby YAML.
func TestInstanceReadRoutesBothFormats(t *testing.T) {
	f := newInstEnv(t)
	id := f.placed(proto.InstanceRunning, "labels[0][name]", "env", "labels[0][value]", "prod",
		"monitoring[items][0][title]", "t", "monitoring[items][0][enabled]", "true", "monitoring[items][0][params][a]", "b",
		"volumes[0][size]", "1G", "volumes[0][volume_type]", "shared", "ssh_key_id", f.ssh)
	f.attachVif(id, f.nw, "10.0.0.30", 0, f.sg)
	pw := "c2VjcmV0"
	f.setInstance(id, func(v *proto.Instance) { v.EncryptedPassword = &pw })
	item := "imon-" + strings.TrimPrefix(id, "i-") + "1"
	paths := []string{"/instances", "/instances/" + id, "/instances/" + id + "/volumes", "/instances/" + id + "/password",
		"/instances/" + id + "/monitoring", "/instances/" + id + "/monitoring/" + item,
		"/instances/" + id + "/labels", "/instances/" + id + "/labels/env", "/instances/i-nothere"}
	for _, p := range paths {
		js := f.get(p + ".json")
		ym := f.get(p + ".yml")
		if js.status != ym.status {
			t.Fatalf("%s: status %d / %d", p, js.status, ym.status)
		}
		var fromJSON, fromYAML any
		if err := json.Unmarshal(js.body, &fromJSON); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if err := yaml.Unmarshal(ym.body, &fromYAML); err != nil {
			t.Fatalf("%s: yaml %v\n%s", p, err, ym.body)
		}
		if a, b := normalize(t, fromJSON, false), normalize(t, fromYAML, true); !reflect.DeepEqual(a, b) {
			t.Errorf("%s: yaml and json differ\njson: %v\nyaml: %v", p, a, b)
		}
	}
	wantEq(t, "password", f.get("/instances/"+id+"/password.json").ok().obj(), map[string]any{"id": id, "encrypted_password": pw})
}
