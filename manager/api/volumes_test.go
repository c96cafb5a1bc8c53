package api

import (
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

const volKeys = "id,account_id,uuid,status,state,size,instance_id,guest_device_name,request_params,deleted_at,attached_at," +
	"detached_at,created_at,updated_at,service_type,display_name,backup_object_id,volume_type,store_type,labels,volume_device"

const (
	sta1 = "sta-handle.sta.demo1"
	mb   = 1 << 20
)

// volFixture adds storage nodes to the instance fixture: sn-demo1 (agent
// sta.demo1 online, iSCSI at 192.168.0.10, 4000 MB) and sn-demo2 (sta.demo2
// offline, 100000 MB).
type volFixture struct {
	*instFixture
}

func newVolEnv(t *testing.T) *volFixture {
	t.Helper()
	f := &volFixture{newInstEnv(t)}
	for _, sn := range []struct{ id, node, mb, ip, st string }{
		{"sn-demo1", "sta.demo1", "4000", "192.168.0.10", "online"},
		{"sn-demo2", "sta.demo2", "100000", "192.168.0.11", "offline"},
	} {
		f.do(req{method: "POST", path: "/storage_nodes.json", account: acct(""), form: url.Values{
			"uuid": {sn.id}, "node_id": {sn.node}, "storage_type": {"iscsi"}, "offering_disk_space_mb": {sn.mb},
			"ip_address": {sn.ip},
		}}).ok()
		f.seed(proto.KindNodeState, sn.node, proto.NodeState{NodeID: sn.node, State: sn.st})
	}
	return f
}

func (f *volFixture) volume(id string) proto.Volume {
	f.t.Helper()
	var v proto.Volume
	f.record(proto.KindVolume, id, &v)
	return v
}

// newVolume creates a volume and returns its document.
func (f *volFixture) newVolume(kv ...string) map[string]any {
	f.t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		form.Set(kv[i], kv[i+1])
	}
	return f.post("/volumes.json", form).ok().obj()
}

// available creates a volume on sn-demo1 and makes it available, as its
// sta would.
func (f *volFixture) available(kv ...string) string {
	f.t.Helper()
	id := f.newVolume(append([]string{"volume_size", "100", "storage_node_id", "sn-demo1"}, kv...)...)["id"].(string)
	f.setVolume(id, func(v *proto.Volume) {
		v.State = proto.VolumeAvailable
		v.Device = &proto.VolumeDevice{StorageNodeID: "sn-demo1", IQN: "iqn.2010-09.jp.wakame:" + id, LUN: 1}
	})
	return id
}

func (f *volFixture) storageUsed(sn string) int64 {
	f.t.Helper()
	var u proto.StorageUsage
	if !f.exists(proto.KindStorageUsage, sn) {
		return 0
	}
	f.record(proto.KindStorageUsage, sn, &u)
	return u.UsedBytes
}

func TestVolumeCreate(t *testing.T) {
	f := newVolEnv(t)

	// Blank, no storage node: scheduling, scheduler.schedule_volume.
	r := f.post("/volumes.json", url.Values{"volume_size": {"100"}, "display_name": {"data"}}).ok()
	wantEq(t, "keys", docKeys(t, r.body), volKeys)
	doc := r.obj()
	id := doc["id"].(string)
	for k, want := range map[string]any{
		"uuid": id, "account_id": testAccount, "state": "scheduling", "status": "initialized", "size": 100.0 * mb,
		"instance_id": nil, "volume_type": nil, "store_type": "shared", "volume_device": nil, "backup_object_id": nil,
		"service_type": "std", "display_name": "data", "labels": []any{},
	} {
		wantEq(t, k, doc[k], want)
	}
	if !strings.HasPrefix(id, "vol-") || len(id) != 12 {
		t.Fatalf("id = %s", id)
	}
	f.wantJob(proto.EndpointScheduler, proto.VerbScheduleVolume, id, map[string]any{"volume_id": id})
	if used := f.storageUsed("sn-demo1"); used != 0 {
		t.Fatalf("a volume waiting for the scheduler charged %d bytes", used)
	}
	y := string(f.get("/volumes/" + id + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+id+"\n:account_id: a-shpoolxx\n:uuid: "+id+"\n") || !strings.Contains(y, "\n:state: scheduling\n") {
		t.Fatalf("yaml = %s", y)
	}

	// On a storage node: pending, charged, sta-handle.<node>.create_volume.
	doc = f.newVolume("volume_size", "3000", "storage_node_id", "sn-demo1")
	pinned := doc["id"].(string)
	wantEq(t, "pinned state", doc["state"], "pending")
	wantEq(t, "volume_type", doc["volume_type"], "Dcmgr::Models::IscsiVolume")
	wantEq(t, "volume_device", doc["volume_device"], map[string]any{
		"iscsi_storage_node_id": "sn-demo1", "iqn": "", "lun": 0.0, "path": ""})
	f.wantJob(sta1, proto.VerbCreateVolume, pinned, map[string]any{"volume_id": pinned})
	wantEq(t, "sn-demo1 used", f.storageUsed("sn-demo1"), int64(3000*mb))
	if v := f.volume(pinned); v.Device == nil || v.Device.StorageIP != "192.168.0.10" {
		t.Fatalf("device = %+v", v.Device)
	}

	// From a backup object: its size.
	bo := f.seedBackupObject(testAccount, "bkst-demo1", url.Values{"size": {"52428800"}})
	doc = f.newVolume("backup_object_id", bo, "volume_size", "9999")
	wantEq(t, "bo size", doc["size"], 52428800.0)
	wantEq(t, "bo id", doc["backup_object_id"], bo)

	// Errors, each writing nothing.
	pending := f.seedBackupObject(testAccount, "bkst-demo1", url.Values{"state": {"pending"}})
	otherBO := f.seedBackupObject(otherAccount, "bkst-demo1", nil)
	post := func(kv ...string) req {
		form := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			form.Set(kv[i], kv[i+1])
		}
		return req{method: "POST", path: "/volumes.json", form: form}
	}
	f.rejects(400, "118", post(), post("display_name", "x"))
	f.rejects(400, "119", post("volume_size", "9"), post("volume_size", "3001"), post("volume_size", "abc"),
		post("volume_size", ""), post("volume_size", "-10"), post("volume_size", "10.5"))
	f.rejects(404, "100", post("backup_object_id", otherBO), post("backup_object_id", "bo-nothere"),
		post("volume_size", "10", "storage_node_id", "sn-nothere"))
	f.rejects(400, "143", post("backup_object_id", "wmi-demo1"), post("volume_size", "10", "storage_node_id", "hn-demo1"),
		post("volume_size", "10", "service_type", "lb"))
	if m := f.do(post("backup_object_id", pending)).apiError(400, "157"); m["message"] != pending+":pending" {
		t.Fatalf("message = %v", m["message"])
	}
	// sn-demo1 has 1000 MB left; the online nodes too (sn-demo2 is offline).
	f.rejects(400, "109", post("volume_size", "1001", "storage_node_id", "sn-demo1"), post("volume_size", "1001"))
	f.newVolume("volume_size", "1000", "storage_node_id", "sn-demo1")
	f.rejects(400, "109", post("volume_size", "10"), post("volume_size", "10", "storage_node_id", "sn-demo1"))
	// An offline node can be named (its sta takes the job when it is back).
	doc = f.newVolume("volume_size", "10", "storage_node_id", "sn-demo2")
	f.wantJob("sta-handle.sta.demo2", proto.VerbCreateVolume, doc["id"].(string), nil)

	// Quotas come first: volume.count and volume.size_mb (in MB).
	quota := func(q string, r req) req {
		r.header = map[string]string{"X-VDC-Account-Quota": q}
		return r
	}
	n := float64(f.count(proto.KindVolume))
	f.rejects(400, "162", quota(`{"volume.count": 5}`, post("volume_size", "10", "storage_node_id", "sn-demo2")),
		quota(`{"volume.size_mb": 4200}`, post("volume_size", "100", "storage_node_id", "sn-demo2")),
		quota(`{"volume.size_mb": 4200}`, post("backup_object_id", bo)),
		quota(`{"volume.count": 5}`, post()))
	if n != 5 {
		t.Fatalf("%v volumes", n)
	}
	f.do(quota(`{"volume.count": 6, "volume.size_mb": 4300}`, post("volume_size", "10", "storage_node_id", "sn-demo2"))).ok()

	// Without the account header the volume belongs to the system account.
	doc = f.do(req{method: "POST", path: "/volumes.json", account: acct(""),
		form: url.Values{"volume_size": {"10"}, "storage_node_id": {"sn-demo2"}}}).ok().obj()
	wantEq(t, "operator's volume", doc["account_id"], proto.SystemAccount)
}

func TestVolumeListShowUpdate(t *testing.T) {
	f := newVolEnv(t)
	a := f.available("display_name", "a")
	s := f.newVolume("volume_size", "10", "display_name", "s")["id"].(string)
	d := f.available()
	f.setVolume(d, func(v *proto.Volume) { v.State = proto.VolumeDeleted; v.DeletedAt = ptrTime(f.api.now()) })
	other := f.do(asOther("POST", "/volumes.json", url.Values{"volume_size": {"10"}})).ok().obj()["id"].(string)

	ids := func(q string) []string {
		t.Helper()
		_, items := f.get("/volumes.json" + q).envelope()
		var out []string
		for _, it := range items {
			out = append(out, it["id"].(string))
		}
		return out
	}
	wantEq(t, "all (newest first)", ids(""), []string{d, s, a})
	wantEq(t, "available", ids("?state=available"), []string{a})
	wantEq(t, "deleted", ids("?state=deleted"), []string{d})
	wantEq(t, "alive", ids("?state=alive"), []string{s, a})
	wantEq(t, "alive_with_deleted", ids("?state=alive_with_deleted"), []string{d, s, a})
	wantEq(t, "display_name", ids("?display_name=s"), []string{s})
	wantEq(t, "storage node", ids("?storage_node_id=sn-demo1"), []string{d, a})
	wantEq(t, "storage node 2", ids("?storage_node_id=sn-demo2"), []string(nil))
	wantEq(t, "service type", ids("?service_type=std"), []string{d, s, a})
	total, _ := f.do(req{method: "GET", path: "/volumes.json", account: acct("")}).envelope()
	wantEq(t, "operator sees all", total, 4)
	f.rejects(400, "143", req{method: "GET", path: "/volumes.json?state=attaching"},
		req{method: "GET", path: "/volumes.json?service_type=lb"},
		req{method: "GET", path: "/volumes.json?storage_node_id=hn-demo1"})
	f.rejects(404, "100", req{method: "GET", path: "/volumes.json?storage_node_id=sn-nothere"})
	y := string(f.get("/volumes.yml?state=available").ok().body)
	if !strings.HasPrefix(y, "---\n- :total: 1\n  :start: 0\n  :limit: 250\n  :results:\n  - :id: "+a+"\n") {
		t.Fatalf("list yaml = %s", y)
	}

	// Show: ownership, syntax.
	wantEq(t, "show", f.get("/volumes/" + a + ".json").ok().obj()["display_name"], "a")
	f.rejects(404, "100", req{method: "GET", path: "/volumes/" + other + ".json"},
		req{method: "GET", path: "/volumes/vol-nothere.json"},
		req{method: "GET", path: "/volumes/" + a + ".json?service_type=other"})
	f.rejects(400, "143", req{method: "GET", path: "/volumes/i-" + a[4:] + ".json"})

	// Update: display_name.
	doc := f.put("/volumes/"+a+".json", url.Values{"display_name": {"renamed"}}).ok().obj()
	wantEq(t, "renamed", doc["display_name"], "renamed")
	wantEq(t, "stored", f.volume(a).DisplayName, "renamed")
	f.rejects(404, "100", asOther("PUT", "/volumes/"+a+".json", url.Values{"display_name": {"x"}}))
}

func TestVolumeDelete(t *testing.T) {
	f := newVolEnv(t)
	id := f.newVolume("volume_size", "100", "storage_node_id", "sn-demo1")["id"].(string)
	del := req{method: "DELETE", path: "/volumes/" + id + ".json"}
	if m := f.do(del).apiError(400, "140"); m["message"] != "pending" {
		t.Fatalf("message = %v", m["message"])
	}
	f.setVolume(id, func(v *proto.Volume) { v.State = proto.VolumeAvailable })
	f.rejects(404, "100", asOther("DELETE", "/volumes/"+id+".json", nil))

	// A backup still being written, a link to an instance: the model's
	// refusal (400/112).
	bo := f.put("/volumes/"+id+"/backup.json", nil).ok().obj()["backup_object_id"].(string)
	f.rejects(400, "112", del)
	f.setRecord(proto.KindBackupObject, bo, func(b *proto.BackupObject) { b.State = boAvailable })
	inst := f.placed(proto.InstanceRunning)
	f.setVolume(id, func(v *proto.Volume) { v.InstanceID = &inst })
	f.rejects(400, "112", del)
	f.setVolume(id, func(v *proto.Volume) { v.InstanceID = nil })

	wantEq(t, "delete", f.do(del).ok().arr(), []any{id})
	v := f.volume(id)
	wantEq(t, "state", v.State, proto.VolumeDeleting)
	f.wantJob(sta1, proto.VerbDeleteVolume, id, map[string]any{"volume_id": id})
	if m := f.do(del).apiError(400, "140"); m["message"] != "deleting" {
		t.Fatalf("message = %v", m["message"])
	}
	f.rejects(400, "140", del)
}

// setRecord changes a stored record of kind T directly (as an agent would).
func (f *volFixture) setRecord(kind, id string, change any) {
	f.t.Helper()
	switch fn := change.(type) {
	case func(*proto.BackupObject):
		var v proto.BackupObject
		f.record(kind, id, &v)
		fn(&v)
		f.putRecord(kind, id, &v)
	case func(*proto.Job):
		var v proto.Job
		f.record(kind, id, &v)
		fn(&v)
		f.putRecord(kind, id, &v)
	default:
		f.t.Fatalf("setRecord: %T", change)
	}
}

func TestVolumeAttachDetach(t *testing.T) {
	f := newVolEnv(t)
	running := f.placed(proto.InstanceRunning)
	halted := f.placed(proto.InstanceHalted)
	stopped := f.create()["id"].(string)
	f.setInstance(stopped, func(v *proto.Instance) { v.State = proto.InstanceStopped })
	otherInst := f.do(asOther("POST", "/instances.json", f.form())).ok().obj()["id"].(string)
	vol := f.available()
	pendingVol := f.newVolume("volume_size", "10", "storage_node_id", "sn-demo1")["id"].(string)
	p := "/volumes/" + vol

	// Preconditions, in the spec's order; nothing written.
	f.rejects(404, "139", put(p+"/attach.json"), put(p+"/attach.json", "instance_id", ""))
	f.rejects(400, "143", put(p+"/attach.json", "instance_id", "vol-x"), put("/volumes/i-1/attach.json", "instance_id", running))
	f.rejects(404, "100", put(p+"/attach.json", "instance_id", otherInst), put(p+"/attach.json", "instance_id", "i-nothere"),
		put("/volumes/vol-nothere/attach.json", "instance_id", running))
	f.rejectsState("stopped", put(p+"/attach.json", "instance_id", stopped))
	if m := f.do(put("/volumes/"+pendingVol+"/attach.json", "instance_id", running)).apiError(400, "140"); m["message"] != "pending" {
		t.Fatalf("message = %v", m["message"])
	}
	f.rejects(400, "123", put(p+"/detach.json"))

	// Hot attach: linked now, hva-handle attach; the agent drives the state.
	before := f.modifyIndex(proto.KindInstance, running)
	doc := f.do(put(p+"/attach.json", "instance_id", running)).ok().obj()
	wantEq(t, "linked", doc["instance_id"], running)
	wantEq(t, "state", doc["state"], "available")
	f.wantJob(hva1, proto.VerbAttach, running, map[string]any{"instance_id": running, "volume_id": vol})
	if f.modifyIndex(proto.KindInstance, running) == before {
		t.Fatalf("attach did not write the instance (finalize relies on it)")
	}
	// Linked: another attach is refused, and so is a detach while the
	// attach job is queued.
	f.rejects(400, "124", put(p+"/attach.json", "instance_id", halted))
	f.rejects(400, "140", put(p+"/detach.json"))
	f.setVolume(vol, func(v *proto.Volume) { v.State = proto.VolumeAttached })
	f.rejects(400, "124", put(p+"/attach.json", "instance_id", running))

	// Hot detach: hva-handle detach, state left to the agent.
	doc = f.do(put(p + "/detach.json")).ok().obj()
	wantEq(t, "still attached", doc["state"], "attached")
	f.wantJob(hva1, proto.VerbDetach, running, map[string]any{"instance_id": running, "volume_id": vol})
	f.setVolume(vol, func(v *proto.Volume) { v.State, v.InstanceID = proto.VolumeAvailable, nil })

	// Cold attach and detach on a halted instance: no job, done at once.
	jobsBefore := len(f.jobs())
	doc = f.do(put("/instances/" + halted + "/volumes/" + vol + "/attach.json")).ok().obj()
	wantEq(t, "cold attached", doc["state"], "attached")
	wantEq(t, "cold linked", doc["instance_id"], halted)
	if doc["attached_at"] == nil {
		t.Fatalf("attached_at not set")
	}
	vols := f.get("/instances/" + halted + "/volumes.json").ok().arr()
	if len(vols) != 2 || vols[1].(map[string]any)["id"] != vol {
		t.Fatalf("instance volumes = %v", vols)
	}
	f.rejects(404, "113", put("/instances/"+running+"/volumes/"+vol+"/detach.json"))
	doc = f.do(put("/instances/" + halted + "/volumes/" + vol + "/detach.json")).ok().obj()
	wantEq(t, "cold detached", doc["state"], "available")
	wantEq(t, "unlinked", doc["instance_id"], nil)
	if doc["detached_at"] == nil || len(f.jobs()) != jobsBefore {
		t.Fatalf("detached_at %v, %d new jobs", doc["detached_at"], len(f.jobs())-jobsBefore)
	}

	// The boot volume and local volumes stay with their instance.
	boot := f.instance(running).BootVolumeID
	f.setVolume(boot, func(v *proto.Volume) { v.State = proto.VolumeAttached })
	if m := f.do(put("/volumes/"+boot+"/detach.json")).apiError(400, "123"); m["message"] != "boot device can not be detached" {
		t.Fatalf("message = %v", m["message"])
	}
	f.rejects(400, "123", put("/volumes/"+boot+"/detach.json"))
	f.rejects(400, "124", put("/volumes/"+boot+"/attach.json", "instance_id", halted))

	// An attach that failed (the job ended, the volume still linked and
	// available) is undone by a detach: unlinked at once.
	f.do(put(p+"/attach.json", "instance_id", running)).ok()
	f.rejects(400, "140", put(p+"/detach.json"))
	for _, q := range f.agentJobs(hva1) {
		if q.Params["volume_id"] == vol {
			f.remove(proto.KindJobQueue, q.ID) // ended
		}
	}
	doc = f.do(put(p + "/detach.json")).ok().obj()
	wantEq(t, "failed attach undone", doc["instance_id"], nil)

	// An instance no longer running or halted: 400/125 for detach too.
	f.do(put(p+"/attach.json", "instance_id", halted)).ok()
	f.setInstance(halted, func(v *proto.Instance) { v.State = proto.InstanceStarting })
	f.rejectsState("starting", put(p+"/detach.json"))
	f.rejects(404, "100", asOther("PUT", p+"/detach.json", nil), asOther("PUT", p+"/attach.json", url.Values{"instance_id": {otherInst}}))
	y := string(f.do(req{method: "PUT", path: p + "/attach.yml", form: url.Values{"instance_id": {running}}}).body)
	if !strings.Contains(y, ":code: '124'") {
		t.Fatalf("yaml error = %s", y)
	}
}

func TestVolumeBackup(t *testing.T) {
	f := newVolEnv(t)
	vol := f.available()
	p := "/volumes/" + vol + "/backup.json"
	doc := f.put(p, url.Values{"display_name": {"nightly"}, "backup_storage_id": {"bkst-demo1"}}).ok().obj()
	wantEq(t, "volume_id", doc["volume_id"], vol)
	boID := doc["backup_object_id"].(string)
	var bo proto.BackupObject
	f.record(proto.KindBackupObject, boID, &bo)
	if bo.State != boPending || bo.Size != 100*mb || bo.BackupStorageID != "bkst-demo1" || bo.DisplayName != "nightly" ||
		bo.AccountID != testAccount || bo.SourceVolumeID == nil || *bo.SourceVolumeID != vol {
		t.Fatalf("bo = %+v", bo)
	}
	f.wantJob(sta1, proto.VerbBackupVolume, vol, map[string]any{"volume_id": vol, "backup_object_id": boID})
	y := string(f.do(req{method: "PUT", path: "/volumes/" + vol + "/backup.yml", form: url.Values{}}).ok().body)
	if !strings.HasPrefix(y, "---\n:volume_id: "+vol+"\n:backup_object_id: bo-") {
		t.Fatalf("yaml = %s", y)
	}

	pending := f.newVolume("volume_size", "10", "storage_node_id", "sn-demo1")["id"].(string)
	f.rejects(400, "140", put("/volumes/"+pending+"/backup.json"))
	f.rejects(404, "153", put(p, "backup_storage_id", "bkst-nothere"))
	f.rejects(404, "100", asOther("PUT", p, nil), put("/volumes/vol-nothere/backup.json"))
	quota := func(q string) req {
		return req{method: "PUT", path: p, form: url.Values{}, header: map[string]string{"X-VDC-Account-Quota": q}}
	}
	// The fixture's image object (10240 MB) and the two backups above count.
	f.rejects(400, "162", quota(`{"backup_object.count": 3}`), quota(`{"backup_object.size_mb": 10539}`))
	f.do(quota(`{"backup_object.count": 4, "backup_object.size_mb": 10540}`)).ok()

	// Attached: the instance must be running or halted.
	inst := f.placed(proto.InstanceRunning)
	f.setVolume(vol, func(v *proto.Volume) { v.State, v.InstanceID = proto.VolumeAttached, &inst })
	f.put(p, nil).ok()
	f.setInstance(inst, func(v *proto.Instance) { v.State = proto.InstanceStopping })
	f.rejectsState("stopping", put(p))

	// A local volume is backed up by its host's local store.
	f.setInstance(inst, func(v *proto.Instance) { v.State = proto.InstanceHalted })
	boot := f.instance(inst).BootVolumeID
	f.setVolume(boot, func(v *proto.Volume) { v.State = proto.VolumeAttached })
	doc = f.put("/volumes/"+boot+"/backup.json", nil).ok().obj()
	f.wantJob("local-store-handle.hva.demo1", proto.VerbBackupVolume, boot,
		map[string]any{"instance_id": inst, "volume_id": boot, "backup_object_id": doc["backup_object_id"]})
}

func TestVolumeSnapshots(t *testing.T) {
	f := newVolEnv(t)
	vol := f.available()
	r := f.post("/volume_snapshots.json", url.Values{"volume_id": {vol}, "destination": {"bkst-demo1"}, "display_name": {"s1"}}).ok()
	wantEq(t, "keys", docKeys(t, r.body), "id,account_id,uuid,storage_node_id,origin_volume_id,size,state,backup_object_id,"+
		"destination_key,deleted_at,created_at,updated_at,service_type,display_name")
	doc := r.obj()
	snap := doc["id"].(string)
	boID := doc["backup_object_id"].(string)
	for k, want := range map[string]any{"state": "initialized", "origin_volume_id": vol, "storage_node_id": "sn-demo1",
		"size": 100.0 * mb, "destination_key": "bkst-demo1@" + boID, "display_name": "s1"} {
		wantEq(t, k, doc[k], want)
	}
	if !strings.HasPrefix(snap, "snap-") {
		t.Fatalf("id = %s", snap)
	}
	f.wantJob(sta1, proto.VerbCreateSnapshot, vol, map[string]any{"volume_id": vol, "backup_object_id": boID})
	y := string(f.get("/volume_snapshots/" + snap + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+snap+"\n") || !strings.Contains(y, "\n:state: initialized\n") {
		t.Fatalf("yaml = %s", y)
	}

	// Errors.
	post := func(kv ...string) req {
		return req{method: "POST", path: "/volume_snapshots.json", form: formOf(kv...)}
	}
	pending := f.newVolume("volume_size", "10", "storage_node_id", "sn-demo1")["id"].(string)
	f.rejects(400, "111", post(), post("volume_id", ""))
	f.rejects(404, "100", post("volume_id", "vol-nothere"))
	f.rejects(400, "143", post("volume_id", "snap-x"))
	f.rejects(400, "140", post("volume_id", pending))
	f.rejects(404, "153", post("volume_id", vol, "destination", "bkst-nothere"))

	// Destinations: the backup storages.
	_, items := f.get("/volume_snapshots/upload_destination.json").envelope()
	if len(items) != 1 || items[0]["destination_id"] != "bkst-demo1" {
		t.Fatalf("destinations = %v", items)
	}

	// Deleting needs available; the snapshot follows its backup object.
	del := req{method: "DELETE", path: "/volume_snapshots/" + snap + ".json"}
	if m := f.do(del).apiError(400, "140"); m["message"] != "initialized" {
		t.Fatalf("message = %v", m["message"])
	}
	f.rejects(400, "140", del)
	f.setRecord(proto.KindBackupObject, boID, func(b *proto.BackupObject) { b.State = boAvailable })
	wantEq(t, "available", f.get("/volume_snapshots/" + snap + ".json").ok().obj()["state"], "available")
	_, items = f.get("/volume_snapshots.json?state=available").envelope()
	if len(items) != 1 || items[0]["id"] != snap {
		t.Fatalf("list available = %v", items)
	}
	total, _ := f.get("/volume_snapshots.json?state=deleted").envelope()
	wantEq(t, "deleted before delete", total, 0)
	total, _ = f.get("/volume_snapshots.json?storage_node_id=sn-demo2").envelope()
	wantEq(t, "other node", total, 0)
	f.rejects(400, "143", req{method: "GET", path: "/volume_snapshots.json?state=bogus"})

	wantEq(t, "rename", f.put("/volume_snapshots/"+snap+".json", url.Values{"display_name": {"s2"}}).ok().obj()["display_name"], "s2")
	f.rejects(404, "100", asOther("GET", "/volume_snapshots/"+snap+".json", nil), asOther("DELETE", "/volume_snapshots/"+snap+".json", nil),
		req{method: "GET", path: "/volume_snapshots/snap-nothere.json"})
	f.rejects(400, "143", req{method: "GET", path: "/volume_snapshots/vol-x.json"})

	wantEq(t, "delete", f.do(del).ok().arr(), []any{snap})
	doc = f.get("/volume_snapshots/" + snap + ".json").ok().obj()
	if doc["state"] != "deleted" || doc["deleted_at"] == nil {
		t.Fatalf("deleted snapshot = %v", doc)
	}
	var bo proto.BackupObject
	f.record(proto.KindBackupObject, boID, &bo)
	wantEq(t, "bo deleted", bo.State, boDeleted)
	f.rejects(400, "140", del)
	_, items = f.get("/volume_snapshots.json?state=alive").envelope()
	wantEq(t, "alive after delete", len(items), 0)

	// A volume made from the snapshot's backup object.
	f.setRecord(proto.KindBackupObject, boID, func(b *proto.BackupObject) { b.State, b.DeletedAt = boAvailable, nil })
	doc = f.newVolume("backup_object_id", boID)
	wantEq(t, "restored size", doc["size"], 100.0*mb)
}

func formOf(kv ...string) url.Values {
	form := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		form.Set(kv[i], kv[i+1])
	}
	return form
}

func ptrTime(t time.Time) *time.Time { return &t }

func (f *volFixture) modifyIndex(kind, id string) uint64 {
	f.t.Helper()
	var idx uint64
	if err := f.srv.Store().View(func(tx *state.Tx) error {
		e, ok := tx.Raw(kind, id)
		if !ok {
			return fmt.Errorf("%s/%s missing", kind, id)
		}
		idx = e.ModifyIndex
		return nil
	}); err != nil {
		f.t.Fatal(err)
	}
	return idx
}

// TestVolumeReadRoutesBothFormats: every volume and snapshot document reads
// the same in JSON and Ruby-style YAML.
func TestVolumeReadRoutesBothFormats(t *testing.T) {
	f := newVolEnv(t)
	vol := f.available("display_name", "multi\nline: yes")
	inst := f.placed(proto.InstanceHalted)
	f.do(put("/volumes/"+vol+"/attach.json", "instance_id", inst)).ok()
	snap := f.post("/volume_snapshots.json", url.Values{"volume_id": {vol}}).ok().obj()["id"].(string)
	for _, p := range []string{"/volumes", "/volumes/" + vol, "/instances/" + inst + "/volumes",
		"/volume_snapshots", "/volume_snapshots/" + snap, "/volume_snapshots/upload_destination", "/volumes/vol-nothere"} {
		js, ym := f.get(p+".json"), f.get(p+".yml")
		if js.status != ym.status || !strings.HasPrefix(string(ym.body), "---") {
			t.Fatalf("%s: status %d/%d, yaml %q", p, js.status, ym.status, ym.body)
		}
		var fromJSON, fromYAML any
		if err := json.Unmarshal(js.body, &fromJSON); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if err := yaml.Unmarshal(ym.body, &fromYAML); err != nil {
			t.Fatalf("%s: %v\n%s", p, err, ym.body)
		}
		if a, b := normalize(t, fromJSON, false), normalize(t, fromYAML, true); !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: yaml and json differ\njson: %v\nyaml: %v", p, a, b)
		}
	}
}

// TestVolumeDetachedOnTerminate: a volume attached through the volumes API
// survives its instance (detached, available), while the instance's own
// volumes go with it.
func TestVolumeDetachedOnTerminate(t *testing.T) {
	f := newVolEnv(t)
	inst := f.placed(proto.InstanceHalted)
	vol := f.available()
	f.do(put("/volumes/"+vol+"/attach.json", "instance_id", inst)).ok()
	if v := f.volume(vol); !v.KeepOnTerminate || v.State != proto.VolumeAttached {
		t.Fatalf("attached = %+v", v)
	}
	f.setInstance(inst, func(v *proto.Instance) { v.State = proto.InstanceStopped })
	wantEq(t, "delete", f.do(req{method: "DELETE", path: "/instances/" + inst + ".json"}).ok().arr(), []any{inst})
	v := f.volume(vol)
	if v.State != proto.VolumeAvailable || v.InstanceID != nil || v.DetachedAt == nil || v.KeepOnTerminate {
		t.Fatalf("volume of the terminated instance = %+v", v)
	}
	for _, j := range f.jobs() {
		if j.ResourceID == vol && j.Verb == proto.VerbDeleteVolume {
			t.Fatalf("the attached volume is being deleted: %+v", j)
		}
	}
	if boot := f.volume(f.instance(inst).BootVolumeID); boot.State != proto.VolumeDeleting && boot.State != proto.VolumeDeleted {
		t.Fatalf("boot volume = %s", boot.State)
	}
	// Free again: it can be attached elsewhere.
	other := f.placed(proto.InstanceRunning)
	f.do(put("/volumes/"+vol+"/attach.json", "instance_id", other)).ok()
}

// TestVolumeCreateRace: concurrent creates on one storage node never
// overcommit it: with room for 3 volumes, 8 racing requests give 3
// volumes and 5 answers 400/109.
func TestVolumeCreateRace(t *testing.T) {
	f := newVolEnv(t)
	const n = 8
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.do(req{method: "POST", path: "/volumes.json", form: url.Values{"volume_size": {"1300"}, "storage_node_id": {"sn-demo1"}}})
			codes[i] = r.status
			var m map[string]any
			if r.status != 200 && (json.Unmarshal(r.body, &m) != nil || m["code"] != "109") {
				t.Errorf("answer %d: %s", r.status, r.body)
			}
		}()
	}
	wg.Wait()
	ok := 0
	for _, c := range codes {
		if c == 200 {
			ok++
		}
	}
	if ok != 3 || f.storageUsed("sn-demo1") != 3*1300*mb || f.count(proto.KindVolume) != 3 {
		t.Fatalf("%d created (%v), %d bytes used, %d volumes", ok, codes, f.storageUsed("sn-demo1"), f.count(proto.KindVolume))
	}
}
