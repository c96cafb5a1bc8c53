package api

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// docKeys returns the top-level keys of a JSON object in document order.
func docKeys(t *testing.T, body []byte) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", body)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("decode keys: %v", err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatalf("decode value: %v", err)
		}
	}
	return strings.Join(keys, ",")
}

// getRecord reads a stored record.
func (e *env) getRecord(kind, id string, v any) {
	e.t.Helper()
	if err := e.srv.Store().View(func(tx *state.Tx) error {
		_, err := tx.Get(kind, id, v)
		return err
	}); err != nil {
		e.t.Fatalf("get %s/%s: %v", kind, id, err)
	}
}

// jobs returns every stored job.
func (e *env) jobs() []proto.Job {
	e.t.Helper()
	var out []proto.Job
	if err := e.srv.Store().View(func(tx *state.Tx) error {
		return tx.Each(proto.KindJob, false, func(en state.Entry) error {
			var j proto.Job
			if err := json.Unmarshal(en.Value, &j); err != nil {
				return err
			}
			out = append(out, j)
			return nil
		})
	}); err != nil {
		e.t.Fatalf("jobs: %v", err)
	}
	return out
}

const boDocKeys = "id,uuid,account_id,state,size,allocation_size,backup_storage_id,object_key,checksum,progress," +
	"backup_storage,description,display_name,service_type,created_at,updated_at,deleted_at,labels"

func TestBackupObjectCreate(t *testing.T) {
	e := newEnv(t)
	e.seedStorage("bkst-demo1", "")

	r := e.post("/backup_objects.json", url.Values{
		"backup_storage_id": {"bkst-demo1"}, "size": {"10485760"}, "checksum": {"abc"},
		"display_name": {"boot"}, "description": {"root disk"},
	}).ok()
	if got := docKeys(t, r.body); got != boDocKeys {
		t.Fatalf("document keys = %s", got)
	}
	doc := r.obj()
	id := doc["id"].(string)
	bs, _ := doc["backup_storage"].(map[string]any)
	if !strings.HasPrefix(id, "bo-") || doc["uuid"] != id || doc["account_id"] != testAccount ||
		doc["state"] != "creating" || doc["size"] != 10485760.0 || doc["allocation_size"] != nil ||
		doc["backup_storage_id"] != "bkst-demo1" || doc["object_key"] != id || doc["checksum"] != "abc" ||
		doc["progress"] != 0.0 || bs["id"] != "bkst-demo1" || doc["service_type"] != "std" || doc["deleted_at"] != nil {
		t.Fatalf("created = %v", doc)
	}
	var rec proto.BackupObject
	e.getRecord(proto.KindBackupObject, id, &rec)
	if rec.ContainerFormat != "raw" {
		t.Fatalf("container_format = %q, want raw", rec.ContainerFormat)
	}

	avail := e.post("/backup_objects.json", url.Values{
		"backup_storage_id": {"bkst-demo1"}, "size": {"0"}, "state": {"available"}, "object_key": {"images/x.raw"},
		"allocation_size": {"4096"}, "container_format": {"tgz"},
	}).ok().obj()
	if avail["state"] != "available" || avail["progress"] != 100.0 || avail["object_key"] != "images/x.raw" || avail["allocation_size"] != 4096.0 {
		t.Fatalf("available = %v", avail)
	}
	e.getRecord(proto.KindBackupObject, avail["id"].(string), &rec)
	if rec.ContainerFormat != "tgz" {
		t.Fatalf("container_format = %q, want tgz", rec.ContainerFormat)
	}
	// The operator registers for an account named by account_id.
	op := e.do(req{method: "POST", path: "/backup_objects.json", account: acct(""), form: url.Values{
		"backup_storage_id": {"bkst-demo1"}, "size": {"1"}, "account_id": {otherAccount},
	}}).ok().obj()
	if op["account_id"] != otherAccount {
		t.Fatalf("operator registration = %v", op)
	}

	base := url.Values{"backup_storage_id": {"bkst-demo1"}, "size": {"1"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range base {
			f[kk] = vv
		}
		if v == "" && k != "" {
			delete(f, k)
		} else if k != "" {
			f.Set(k, v)
		}
		return f
	}
	post := func(f url.Values) req { return req{method: "POST", path: "/backup_objects.json", form: f} }
	e.rejects(400, "143",
		post(with("backup_storage_id", "")),
		post(with("backup_storage_id", "sn-1")),
		post(with("size", "ten")),
		post(with("allocation_size", "1.5")),
		post(with("service_type", "gold")),
		post(with("labels", "x")),
	)
	e.rejects(404, "153", post(with("backup_storage_id", "bkst-nothere")))
	e.rejects(400, "110",
		post(with("size", "")),
		post(with("size", "-1")),
		post(with("allocation_size", "-1")),
		post(with("container_format", "zip")),
		post(with("state", "deleted")),
	)

	// Quotas: count of alive objects, and size in MiB.
	quota := func(q string) map[string]string { return map[string]string{"X-VDC-Account-Quota": q} }
	e.rejects(400, "162",
		req{method: "POST", path: "/backup_objects.json", form: base, header: quota(`{"backup_object.count": 2}`)},
		req{method: "POST", path: "/backup_objects.json", form: with("size", "1048576"), header: quota(`{"backup_object.size_mb": 10}`)},
		// Quotas are checked before the parameters.
		req{method: "POST", path: "/backup_objects.json", form: with("backup_storage_id", ""), header: quota(`{"backup_object.count": 0}`)},
	)
	e.do(req{method: "POST", path: "/backup_objects.json", form: base, header: quota(`{"backup_object.count": 3, "backup_object.size_mb": 11}`)}).ok()
}

func TestBackupObjectRoutes(t *testing.T) {
	e := newEnv(t)
	e.touchAccount(otherAccount)
	e.seedStorage("bkst-nonode", "")
	e.seedStorage("bkst-node1", "bksta.demo1")
	bo := e.seedBackupObject(testAccount, "bkst-node1", url.Values{"display_name": {"one"}})
	pending := e.seedBackupObject(testAccount, "bkst-node1", url.Values{"state": {"pending"}})
	nonode := e.seedBackupObject(testAccount, "bkst-nonode", nil)
	theirs := e.seedBackupObject(otherAccount, "bkst-node1", nil)

	y := string(e.get("/backup_objects/" + bo + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+bo+"\n:uuid: "+bo+"\n:account_id: a-shpoolxx\n:state: available\n:size: 1048576\n") ||
		!strings.Contains(y, "\n:backup_storage:\n  :id: bkst-node1\n") {
		t.Fatalf("yaml = %s", y)
	}

	// Lists.
	total, items := e.get("/backup_objects.json").envelope()
	if total != 3 || items[0]["id"] != nonode {
		t.Fatalf("list = %d %v", total, items)
	}
	for q, want := range map[string]int{
		"state=available": 2, "state=deleted": 0, "state=alive": 3, "state=alive_with_deleted": 3,
		"display_name=one": 1, "backup_storage_id=bkst-nonode": 1, "service_type=std": 3,
	} {
		if n, _ := e.get("/backup_objects.json?" + q).envelope(); n != want {
			t.Fatalf("list %s = %d, want %d", q, n, want)
		}
	}
	e.rejects(400, "143",
		req{method: "GET", path: "/backup_objects.json?state=pending"},
		req{method: "GET", path: "/backup_objects.json?state=bogus"},
		req{method: "GET", path: "/backup_objects.json?service_type=gold"},
		req{method: "GET", path: "/backup_objects.json?backup_storage_id=x-1"},
		req{method: "GET", path: "/backup_objects/vol-1.json"},
		req{method: "PUT", path: "/backup_objects/bo.json", form: url.Values{}},
		req{method: "PUT", path: "/backup_objects/" + bo + "/copy_to.json", form: url.Values{}},
		req{method: "PUT", path: "/backup_objects/" + bo + "/copy_to.json", form: url.Values{"destination": {""}}},
		req{method: "DELETE", path: "/backup_objects/x.json"},
	)
	e.rejects(404, "100", req{method: "GET", path: "/backup_objects.json?backup_storage_id=bkst-nothere"})

	for _, r := range []req{
		{method: "GET", path: "/backup_objects/" + bo + ".json"},
		{method: "PUT", path: "/backup_objects/" + bo + ".json", form: url.Values{"description": {"x"}}},
		{method: "PUT", path: "/backup_objects/" + bo + "/copy_to.json", form: url.Values{"destination": {"x"}}},
		{method: "DELETE", path: "/backup_objects/" + bo + ".json"},
	} {
		e.rejects(404, "100", as(otherAccount, r))
		r.path = strings.Replace(r.path, bo, "bo-nothere", 1)
		e.rejects(404, "100", r)
	}
	if n, items := e.do(as(otherAccount, req{method: "GET", path: "/backup_objects.json"})).envelope(); n != 1 || items[0]["id"] != theirs {
		t.Fatalf("other account list = %d %v", n, items)
	}
	if n, _ := e.do(as("", req{method: "GET", path: "/backup_objects.json"})).envelope(); n != 4 {
		t.Fatalf("operator list = %d", n)
	}

	// PUT.
	upd := e.put("/backup_objects/"+bo+".json", url.Values{"display_name": {"uno"}, "description": {"d"}, "service_type": {"std"}}).ok()
	if got := docKeys(t, upd.body); got != boDocKeys {
		t.Fatalf("update keys = %s", got)
	}
	if d := upd.obj(); d["display_name"] != "uno" || d["description"] != "d" {
		t.Fatalf("update = %v", d)
	}

	// copy_to.
	e.rejects(400, "157", req{method: "PUT", path: "/backup_objects/" + pending + "/copy_to.json", form: url.Values{"destination": {"x"}}})
	e.rejects(400, "182", req{method: "PUT", path: "/backup_objects/" + nonode + "/copy_to.json", form: url.Values{"destination": {"x"}}})
	job := e.put("/backup_objects/"+bo+"/copy_to.json", url.Values{"destination": {"bkst-remote"}, "display_name": {"copy"}}).ok()
	if got := docKeys(t, job.body); got != "uuid,created_at" {
		t.Fatalf("copy_to keys = %s", got)
	}
	jd := job.obj()
	jobs := e.jobs()
	if len(jobs) != 1 || jobs[0].ID != jd["uuid"] || !strings.HasPrefix(jobs[0].ID, "job-") {
		t.Fatalf("jobs = %+v, answer %v", jobs, jd)
	}
	j := jobs[0]
	raw, _ := j.Params["backup_object"].(map[string]any)
	if j.QueueName != "backup_storage.copy_to.bksta.demo1" || j.State != "pending" || j.ResourceID != bo ||
		j.Params["destination"] != "bkst-remote" || j.Params["display_name"] != "copy" || raw["uuid"] != bo ||
		raw["state"] != "available" || raw["labels"] != nil {
		t.Fatalf("job = %+v", j)
	}
	if _, ok := j.Params["description"]; ok {
		t.Fatalf("job params carry an absent description: %v", j.Params)
	}

	// DELETE: available only, logical.
	e.rejects(400, "157", req{method: "DELETE", path: "/backup_objects/" + pending + ".json"})
	if del := e.del("/backup_objects/" + bo + ".json").ok().arr(); len(del) != 1 || del[0] != bo {
		t.Fatalf("delete = %v", del)
	}
	d := e.get("/backup_objects/" + bo + ".json").ok().obj()
	if d["state"] != "deleted" || d["deleted_at"] == nil {
		t.Fatalf("deleted = %v", d)
	}
	e.rejects(400, "157",
		req{method: "DELETE", path: "/backup_objects/" + bo + ".json"},
		req{method: "PUT", path: "/backup_objects/" + bo + "/copy_to.json", form: url.Values{"destination": {"x"}}})
	for q, want := range map[string]int{"state=deleted": 1, "state=alive": 2, "state=alive_with_deleted": 3} {
		if n, _ := e.get("/backup_objects.json?" + q).envelope(); n != want {
			t.Fatalf("list %s = %d, want %d", q, n, want)
		}
	}
}

func TestBackupObjectChosenUUID(t *testing.T) {
	e := newEnv(t)
	e.post("/backup_storages.json", url.Values{"uuid": {"bkst-c1"}, "storage_type": {"local"}, "base_uri": {"file:///c/"}}).ok()
	form := url.Values{"uuid": {"bo-chosen1"}, "backup_storage_id": {"bkst-c1"}, "size": {"1024"}, "state": {"available"}}
	if id := e.post("/backup_objects.json", form).ok().obj()["id"]; id != "bo-chosen1" {
		t.Fatalf("id = %v, want the chosen uuid", id)
	}
	e.rejects(400, "110", req{method: "POST", path: "/backup_objects.json", form: form})
	bad := url.Values{"uuid": {"bo-NOT_OK"}, "backup_storage_id": {"bkst-c1"}, "size": {"1"}}
	e.rejects(400, "110", req{method: "POST", path: "/backup_objects.json", form: bad})
}
