package api

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

const hva1 = "hva-handle.hva.demo1"

// put is a PUT request on an instance sub-path.
func put(path string, kv ...string) req {
	f := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Add(kv[i], kv[i+1])
	}
	return req{method: "PUT", path: path, form: f}
}

// rejectsState asserts 400/125 with the current state as message and no
// change for each request.
func (f *instFixture) rejectsState(st string, rs ...req) {
	f.t.Helper()
	for _, r := range rs {
		f.unchanged(func() {
			if m := f.do(r).apiError(400, "125"); m["message"] != st {
				f.t.Fatalf("%s %s: message %v, want %s", r.method, r.path, m["message"], st)
			}
		})
	}
}

func TestInstancePowerActions(t *testing.T) {
	f := newInstEnv(t)
	id := f.placed(proto.InstanceRunning)
	p := "/instances/" + id
	f.attachVif(id, f.nw, "10.0.0.40", 0)

	// reboot: running only, no state change.
	wantEq(t, "reboot", f.put(p+"/reboot.yml", nil).ok().body, []byte("---\n- "+id+"\n"))
	f.wantJob(hva1, proto.VerbReboot, id, map[string]any{"instance_id": id})
	wantEq(t, "state after reboot", f.instance(id).State, proto.InstanceRunning)

	// Wrong states: every action refuses with the state and changes nothing.
	for _, st := range []string{proto.InstanceScheduling, proto.InstancePending, proto.InstanceHalted, proto.InstanceStopped, proto.InstanceTerminated} {
		f.setInstance(id, func(v *proto.Instance) { v.State = st })
		rs := []req{put(p + "/reboot.json"), put(p + "/stop.json")}
		if st != proto.InstanceStopped {
			rs = append(rs, put(p+"/start.json"))
		}
		if st != proto.InstanceHalted {
			rs = append(rs, put(p+"/poweron.json"))
		}
		rs = append(rs, put(p+"/poweroff.json"))
		if st != proto.InstanceHalted {
			rs = append(rs, put(p+"/backup.json"))
		}
		f.rejectsState(st, rs...)
	}

	// poweroff: running → halting, forced by default.
	f.setInstance(id, func(v *proto.Instance) { v.State = proto.InstanceRunning })
	wantEq(t, "poweroff", f.put(p+"/poweroff.json", nil).ok().obj(), map[string]any{"instance_id": id})
	wantEq(t, "state", f.instance(id).State, proto.InstanceHalting)
	f.wantJob(hva1, proto.VerbPoweroff, id, map[string]any{"instance_id": id})
	// From halting again, soft this time.
	f.put(p+"/poweroff.json", url.Values{"force": {"false"}}).ok()
	f.wantJob(hva1, proto.VerbSoftPoweroff, id, map[string]any{"instance_id": id})

	// poweron: halted → starting.
	f.setInstance(id, func(v *proto.Instance) { v.State = proto.InstanceHalted })
	y := string(f.put(p+"/poweron.yml", nil).ok().body)
	wantEq(t, "poweron yaml", y, "---\n:instance_id: "+id+"\n")
	wantEq(t, "state", f.instance(id).State, proto.InstanceStarting)
	f.wantJob(hva1, proto.VerbPoweron, id, map[string]any{"instance_id": id})

	// stop: running, releases the addresses now, keeps the vif.
	f.setInstance(id, func(v *proto.Instance) { v.State = proto.InstanceRunning })
	f.put(p+"/stop.json", nil).ok()
	f.wantJob(hva1, proto.VerbStop, id, map[string]any{"instance_id": id})
	if f.exists(proto.KindIPLease, leaseID(f.nw, "10.0.0.40")) {
		t.Fatalf("lease kept after stop")
	}
	doc := f.get(p + ".json").ok().obj()
	vif := doc["vif"].([]any)[0].(map[string]any)
	if _, ok := vif["ipv4"]; ok || doc["state"] != "running" {
		t.Fatalf("after stop: state %v vif %v", doc["state"], vif)
	}

	// start: stopped → scheduling → scheduler.
	f.setInstance(id, func(v *proto.Instance) { v.State, v.HostNodeID = proto.InstanceStopped, nil })
	f.put(p+"/start.json", nil).ok()
	wantEq(t, "state", f.instance(id).State, proto.InstanceScheduling)
	f.wantJob(proto.EndpointScheduler, proto.VerbScheduleStartInstance, id, map[string]any{"instance_id": id})

	// Ownership and syntax.
	for _, action := range []string{"reboot", "stop", "start", "poweroff", "poweron", "backup"} {
		f.rejects(404, "100", asOther("PUT", p+"/"+action+".json", nil), put("/instances/i-nothere/"+action+".json"))
		f.rejects(400, "143", put("/instances/bad/"+action+".json"))
	}
}

func TestInstancePoweronReadiness(t *testing.T) {
	f := newInstEnv(t)
	id := f.placed(proto.InstanceHalted)
	boot := f.instance(id).BootVolumeID
	f.setVolume(boot, func(v *proto.Volume) { v.State = proto.VolumeAttached })
	r := f.put("/instances/"+id+"/backup.json", nil).ok().obj()
	bo := r["backup_object_id"].(string)
	f.unchanged(func() { f.put("/instances/"+id+"/poweron.json", nil).apiError(400, "125") })
	f.unchanged(func() { f.del("/instances/"+id+".json").apiError(400, "125") })
	f.putRecord(proto.KindBackupObject, bo, func() proto.BackupObject {
		var v proto.BackupObject
		f.record(proto.KindBackupObject, bo, &v)
		v.State = "available"
		return v
	}())
	f.put("/instances/"+id+"/poweron.json", nil).ok()
}

func TestInstanceDelete(t *testing.T) {
	f := newInstEnv(t)

	// scheduling and terminated are refused.
	sched := f.create()["id"].(string)
	f.rejectsState(proto.InstanceScheduling, req{method: "DELETE", path: "/instances/" + sched + ".json"})

	// A placed instance gets the agent's terminate; its state stays.
	run := f.placed(proto.InstanceRunning)
	wantEq(t, "delete", f.del("/instances/"+run+".yml").ok().body, []byte("---\n- "+run+"\n"))
	f.wantJob(hva1, proto.VerbTerminate, run, map[string]any{"instance_id": run, "force": false})
	wantEq(t, "state", f.instance(run).State, proto.InstanceRunning)
	// Halted too; an instance still booting or halting is terminated by
	// force (the hva refuses those states otherwise).
	for _, c := range []struct {
		state string
		force bool
	}{{proto.InstanceHalted, false}, {proto.InstancePending, true}, {proto.InstanceStarting, true}, {proto.InstanceHalting, true}} {
		id := f.placed(c.state)
		f.del("/instances/" + id + ".json").ok()
		f.wantJob(hva1, proto.VerbTerminate, id, map[string]any{"instance_id": id, "force": c.force})
	}

	// A stopped instance ends at once and releases everything.
	st := f.placed(proto.InstanceStopped, "hostname", "gone",
		"volumes[0][size]", "1G", "volumes[0][volume_type]", "shared")
	inst := f.instance(st)
	vif := f.attachVif(st, f.nw, "10.0.0.41", 0, f.sg)
	var mac string
	for _, v := range records[proto.NetworkVif](f.env, proto.KindNetworkVif) {
		if v.ID == vif {
			mac = v.MacAddr
		}
	}
	vols := records[proto.Volume](f.env, proto.KindVolume)
	var extra string
	for _, v := range vols {
		if v.InstanceID != nil && *v.InstanceID == st && v.ID != inst.BootVolumeID {
			extra = v.ID
		}
	}
	// The boot volume is on the host's local store, the extra one on a
	// storage node.
	f.do(req{method: "POST", path: "/storage_nodes.json", account: acct(""), form: url.Values{
		"uuid": {"sn-demo1"}, "node_id": {"sta.demo1"}, "storage_type": {"iscsi"}, "ip_address": {"127.0.0.1"},
		"offering_disk_space_mb": {"100000"}}}).ok()
	f.setVolume(inst.BootVolumeID, func(v *proto.Volume) { v.State = proto.VolumeAttached })
	f.setVolume(extra, func(v *proto.Volume) { sn := "sn-demo1"; v.State, v.StorageNodeID = proto.VolumeAttached, &sn })
	f.del("/instances/" + st + ".json").ok()
	doc := f.get("/instances/" + st + ".json").ok().obj()
	if doc["state"] != "terminated" || doc["status"] != "offline" || doc["terminated_at"] == nil ||
		doc["deleted_at"] != doc["terminated_at"] || len(doc["vif"].([]any)) != 0 {
		t.Fatalf("terminated doc = %v", doc)
	}
	if f.exists(proto.KindNetworkVif, vif) || f.exists(proto.KindIPLease, leaseID(f.nw, "10.0.0.41")) ||
		f.exists(proto.KindUniqueName, macClaimScope+mac) || f.exists(proto.KindUniqueName, hostnameClaim(testAccount, "gone")) {
		t.Fatalf("vif, lease, MAC or hostname claim left after termination")
	}
	var bootVol, extraVol proto.Volume
	f.record(proto.KindVolume, inst.BootVolumeID, &bootVol)
	f.record(proto.KindVolume, extra, &extraVol)
	wantEq(t, "volume states", []string{bootVol.State, extraVol.State}, []string{proto.VolumeDeleting, proto.VolumeDeleting})
	f.wantJob("local-store-handle.hva.demo1", proto.VerbDeleteVolume, bootVol.ID, map[string]any{"instance_id": st, "volume_id": bootVol.ID})
	f.wantJob("sta-handle.sta.demo1", proto.VerbDeleteVolume, extra, map[string]any{"volume_id": extra})
	// The hostname is free again.
	f.create("hostname", "gone")
	f.rejectsState(proto.InstanceTerminated, req{method: "DELETE", path: "/instances/" + st + ".json"})

	// An instance that never reached a host ends at once too; its
	// unplaced volumes are deleted without an agent.
	orphan := f.create()["id"].(string)
	f.setInstance(orphan, func(v *proto.Instance) { v.State = proto.InstancePending })
	f.del("/instances/" + orphan + ".json").ok()
	var ov proto.Volume
	f.record(proto.KindVolume, f.instance(orphan).BootVolumeID, &ov)
	if f.instance(orphan).State != proto.InstanceTerminated || ov.State != proto.VolumeDeleted || ov.DeletedAt == nil {
		t.Fatalf("orphan: %s, volume %s", f.instance(orphan).State, ov.State)
	}

	f.rejects(404, "100", req{method: "DELETE", path: "/instances/i-nothere.json"}, asOther("DELETE", "/instances/"+run+".json", nil))
	f.rejects(400, "143", req{method: "DELETE", path: "/instances/x.json"})
}

func TestInstanceUpdate(t *testing.T) {
	f := newInstEnv(t)
	id := f.placed(proto.InstanceRunning)
	p := "/instances/" + id + ".json"
	// A group of another service type stays on the vif.
	lb := "sg-lbgroup1"
	f.commitRecords(proto.KindSecurityGroup, lb, proto.SecurityGroup{ID: lb, AccountID: testAccount, ServiceType: "lb", Labels: []proto.Label{}})
	vif := f.attachVif(id, f.nw, "10.0.0.42", 0, f.sg, lb)
	sg2 := f.post("/security_groups.json", nil).ok().obj()["id"].(string)

	doc := f.put(p, url.Values{"display_name": {"renamed"}, "ssh_key_id": {f.ssh}, "security_groups[]": {sg2},
		"monitoring[enabled]": {"true"}, "monitoring[mail_address][]": {"a@example.com", "b@example.com"}}).ok().obj()
	if doc["display_name"] != "renamed" || doc["ssh_key_pair"].(map[string]any)["uuid"] != f.ssh {
		t.Fatalf("updated = %v", doc)
	}
	wantEq(t, "groups", doc["vif"].([]any)[0].(map[string]any)["security_groups"], []any{lb, sg2})
	wantEq(t, "monitoring", doc["monitoring"], map[string]any{"enabled": true, "mail_address": []any{"a@example.com", "b@example.com"}, "items": map[string]any{}})
	// "" clears the groups of the service type, and the mail addresses.
	doc = f.put(p, url.Values{"security_groups": {""}, "monitoring[mail_address]": {""}, "ssh_key_id": {""}}).ok().obj()
	wantEq(t, "groups cleared", doc["vif"].([]any)[0].(map[string]any)["security_groups"], []any{lb})
	wantEq(t, "mail cleared", doc["monitoring"].(map[string]any)["mail_address"], []any{})
	wantEq(t, "ssh cleared", doc["ssh_key_pair"], nil)
	_ = vif

	f.rejects(404, "121", put(p, "ssh_key_id", "ssh-nothere"))
	f.rejects(404, "100", put(p, "security_groups", f.otherSG), put(p, "security_groups[]", "sg-nothere"),
		asOther("PUT", p, url.Values{"display_name": {"x"}}))
	f.rejects(400, "143", put(p, "monitoring", "x"))
}

func TestInstanceBackup(t *testing.T) {
	f := newInstEnv(t)
	id := f.placed(proto.InstanceHalted, "volumes[0][size]", "1G", "volumes[0][volume_type]", "shared",
		"volumes[1][size]", "2G", "volumes[1][volume_type]", "local")
	inst := f.instance(id)
	f.do(req{method: "POST", path: "/storage_nodes.json", account: acct(""), form: url.Values{
		"uuid": {"sn-demo1"}, "node_id": {"sta.demo1"}, "storage_type": {"iscsi"}, "ip_address": {"127.0.0.1"},
		"offering_disk_space_mb": {"100000"}}}).ok()
	var shared, local string
	for _, v := range records[proto.Volume](f.env, proto.KindVolume) {
		if v.InstanceID == nil || *v.InstanceID != id {
			continue
		}
		switch {
		case v.ID == inst.BootVolumeID:
		case v.StoreType == proto.VolumeShared:
			shared = v.ID
		default:
			local = v.ID
		}
		f.setVolume(v.ID, func(v *proto.Volume) {
			v.State = proto.VolumeAttached
			if v.StoreType == proto.VolumeShared {
				sn := "sn-demo1"
				v.StorageNodeID = &sn
			}
		})
	}
	p := "/instances/" + id + "/backup.json"
	quota := func(q string) req {
		return req{method: "PUT", path: p, form: url.Values{}, header: map[string]string{"X-VDC-Account-Quota": q}}
	}
	// 13 GiB attached: 13312 MB.
	f.rejects(400, "162", quota(`{"backup_object.size_mb": 13311}`), quota(`{"backup_object.count": 1}`),
		quota(`{"image.count": 2}`), quota(`{"instance.backup_operations_per_hour": 2}`))
	f.rejects(404, "153", put(p, "backup_storage_id", "bkst-nothere"))
	f.rejects(400, "143", put(p, "is_public", "maybe"))

	r := f.put(p, url.Values{"all": {"true"}, "display_name": {"snap"}, "is_public": {"true"}, "backup_storage_id": {"bkst-demo1"}}).ok()
	wantEq(t, "keys", docKeys(t, r.body), "instance_id,backup_object_id,image_id,backup_object_ids")
	doc := r.obj()
	ids := doc["backup_object_ids"].([]any)
	if doc["instance_id"] != id || len(ids) != 3 || ids[0] != doc["backup_object_id"] {
		t.Fatalf("backup = %v", doc)
	}
	img := f.get("/images/" + doc["image_id"].(string) + ".json").ok().obj()
	if img["state"] != "creating" || img["parent_image_id"] != f.img || img["backup_object_id"] != ids[0] ||
		img["display_name"] != "snap" || img["is_public"] != true || img["boot_dev_type"] != 2.0 ||
		!reflect.DeepEqual(img["volumes"], []any{map[string]any{"backup_object_id": ids[1]}, map[string]any{"backup_object_id": ids[2]}}) {
		t.Fatalf("image = %v", img)
	}
	for i, vol := range []string{inst.BootVolumeID, shared, local} {
		bo := f.get("/backup_objects/" + ids[i].(string) + ".json").ok().obj()
		if bo["state"] != "pending" || bo["backup_storage_id"] != "bkst-demo1" {
			t.Fatalf("bo %d = %v", i, bo)
		}
		var rec proto.BackupObject
		f.record(proto.KindBackupObject, ids[i].(string), &rec)
		wantEq(t, "source volume", *rec.SourceVolumeID, vol)
	}
	f.wantJob("local-store-handle.hva.demo1", proto.VerbBackupImage, id,
		map[string]any{"instance_id": id, "backup_object_id": ids[0], "image_id": doc["image_id"]})
	f.wantJob("sta-handle.sta.demo1", proto.VerbBackupVolume, id, map[string]any{"volume_id": shared, "backup_object_id": ids[1]})
	f.wantJob("local-store-handle.hva.demo1", proto.VerbBackupVolume, id,
		map[string]any{"instance_id": id, "volume_id": local, "backup_object_id": ids[2]})

	// Without all: only the boot volume.
	doc = f.put(p, nil).ok().obj()
	if len(doc["backup_object_ids"].([]any)) != 1 {
		t.Fatalf("boot-only backup = %v", doc)
	}

	// Volume backup: the volume must be the instance's.
	vp := "/instances/" + id + "/volumes/" + shared + "/backup.json"
	r = f.put(vp, url.Values{"display_name": {"v"}}).ok()
	wantEq(t, "volume backup keys", docKeys(t, r.body), "volume_id,backup_object_id")
	vb := r.obj()
	f.wantJob("sta-handle.sta.demo1", proto.VerbBackupVolume, shared, map[string]any{"volume_id": shared, "backup_object_id": vb["backup_object_id"]})
	vb = f.put("/instances/"+id+"/volumes/"+local+"/backup.json", nil).ok().obj()
	f.wantJob("local-store-handle.hva.demo1", proto.VerbBackupVolume, local,
		map[string]any{"instance_id": id, "volume_id": local, "backup_object_id": vb["backup_object_id"]})
	otherInst := f.create()["id"].(string)
	f.rejects(404, "113", put("/instances/"+otherInst+"/volumes/"+shared+"/backup.json"),
		put("/instances/"+id+"/volumes/vol-nothere/backup.json"))
	f.rejects(400, "143", put("/instances/"+id+"/volumes/bad/backup.json"))
	f.rejects(404, "100", asOther("PUT", vp, nil))
	f.rejects(400, "162", req{method: "PUT", path: vp, form: url.Values{},
		header: map[string]string{"X-VDC-Account-Quota": `{"backup_object.size_mb": 1}`}})
}

func TestInstanceVolumesAndPassword(t *testing.T) {
	f := newInstEnv(t)
	bo := f.seedBackupObject(testAccount, "bkst-demo1", url.Values{"size": {"2097152"}})
	doc := f.create("volumes[0][size]", "1G", "volumes[0][volume_type]", "shared",
		"volumes[1][backup_object_id]", bo, "volumes[1][volume_type]", "shared")
	inst := doc["id"].(string)
	r := f.get("/instances/" + inst + "/volumes.json").ok()
	vols := r.arr()
	if len(vols) != 3 || vols[0].(map[string]any)["id"] != doc["boot_volume_id"] ||
		vols[2].(map[string]any)["size"] != 2097152.0 || vols[2].(map[string]any)["backup_object_id"] != bo {
		t.Fatalf("volumes = %v", vols)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	wantEq(t, "volume keys", docKeys(t, raw[0]),
		"id,account_id,uuid,status,state,size,instance_id,guest_device_name,request_params,deleted_at,attached_at,"+
			"detached_at,created_at,updated_at,service_type,display_name,backup_object_id,volume_type,store_type,labels,volume_device")
	y := string(f.get("/instances/" + inst + "/volumes.yml").ok().body)
	if !strings.HasPrefix(y, "---\n- :id: "+doc["boot_volume_id"].(string)+"\n") {
		t.Fatalf("yaml = %s", y)
	}

	// Password: 410/201 until the agent stores one; DELETE clears it.
	pp := "/instances/" + inst + "/password.json"
	f.rejects(410, "201", req{method: "GET", path: pp})
	pw := "ZW5jcnlwdGVk"
	f.setInstance(inst, func(v *proto.Instance) { v.EncryptedPassword = &pw })
	wantEq(t, "password", f.get(pp).ok().obj()["encrypted_password"], pw)
	wantEq(t, "delete password", f.del(pp).ok().obj(), map[string]any{})
	f.rejects(410, "201", req{method: "GET", path: pp})
	f.rejects(404, "100", asOther("GET", pp, nil), asOther("DELETE", pp, nil), asOther("GET", "/instances/"+inst+"/volumes.json", nil))
}

func TestInstanceMonitoringRoutes(t *testing.T) {
	f := newInstEnv(t)
	id := f.create()["id"].(string)
	base := "/instances/" + id + "/monitoring"
	wantEq(t, "empty", f.get(base+".json").ok().obj(), map[string]any{})
	f.rejects(400, "143", req{method: "POST", path: base + ".json", form: url.Values{"title": {"x"}}},
		req{method: "POST", path: base + ".json", form: url.Values{"enabled": {"true"}}},
		req{method: "POST", path: base + ".json", form: url.Values{"title": {"x"}, "enabled": {"true"}, "params": {"x"}}})
	r := f.post(base+".json", url.Values{"title": {"ping"}, "enabled": {"true"}, "params[port]": {"22"}}).ok()
	wantEq(t, "keys", docKeys(t, r.body), "uuid,title,enabled,params")
	item := r.obj()
	mid := item["uuid"].(string)
	wantEq(t, "id", mid, "imon-"+strings.TrimPrefix(id, "i-")+"1")
	wantEq(t, "enabled", item["enabled"], true)
	mid2 := f.post(base+".json", url.Values{"title": {"http"}, "enabled": {"no"}}).ok().obj()["uuid"].(string)
	wantEq(t, "list", f.get(base+".json").ok().obj(), map[string]any{
		mid:  map[string]any{"enabled": true, "title": "ping", "params": map[string]any{"port": "22"}},
		mid2: map[string]any{"enabled": false, "title": "http", "params": map[string]any{}},
	})
	wantEq(t, "show", f.get(base+"/"+mid+".json").ok().obj(), map[string]any{"enabled": true, "title": "ping", "params": map[string]any{"port": "22"}})
	up := f.put(base+"/"+mid+".json", url.Values{"title": {""}, "enabled": {"false"}, "params[port]": {"80"}}).ok().obj()
	wantEq(t, "update", up, map[string]any{"uuid": mid, "title": "ping", "enabled": false, "params": map[string]any{"port": "80"}})
	wantEq(t, "delete", f.del(base+"/"+mid+".json").ok().arr(), []any{mid})
	f.rejects(404, "100", req{method: "GET", path: base + "/" + mid + ".json"},
		req{method: "DELETE", path: base + "/" + mid + ".json"}, put(base+"/"+mid+".json", "title", "x"),
		asOther("GET", base+".json", nil), asOther("POST", base+".json", url.Values{"title": {"x"}, "enabled": {"true"}}))
	// The instance document shows the remaining item; new ids keep counting.
	doc := f.get("/instances/" + id + ".json").ok().obj()
	wantEq(t, "items", doc["monitoring"].(map[string]any)["items"], map[string]any{mid2: map[string]any{"enabled": false, "title": "http", "params": map[string]any{}}})
	wantEq(t, "next id", f.post(base+".json", url.Values{"title": {"x"}, "enabled": {"true"}}).ok().obj()["uuid"], "imon-"+strings.TrimPrefix(id, "i-")+"3")
}

func TestInstanceLabels(t *testing.T) {
	f := newInstEnv(t)
	id := f.create()["id"].(string)
	f.post("/instances/"+id+"/labels/env.json", url.Values{"value": {"prod"}}).ok()
	labels := f.get("/instances/" + id + ".json").ok().obj()["labels"].([]any)
	if len(labels) != 1 || labels[0].(map[string]any)["resource_uuid"] != id {
		t.Fatalf("labels = %v", labels)
	}
	f.rejects(404, "100", asOther("GET", "/instances/"+id+"/labels.json", nil))
	f.rejects(404, "187", req{method: "GET", path: "/instances/" + id + "/labels/none.json"})
}
