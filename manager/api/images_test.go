package api

import (
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

const imageDocKeys = "id,account_id,uuid,created_at,updated_at,boot_dev_type,arch,description,is_public,state," +
	"features,file_format,root_device,is_cacheable,instance_model_name,parent_image_id,service_type,display_name," +
	"backup_object_id,deleted_at,volumes,vifs,os_type,labels"

func TestImageRegister(t *testing.T) {
	e := newEnv(t)
	e.seedStorage("bkst-demo1", "")
	bo := e.seedBackupObject(testAccount, "bkst-demo1", nil)

	r := e.do(req{method: "POST", path: "/images.json", account: acct(""), form: url.Values{
		"uuid": {"lucid0"}, "backup_object_id": {bo}, "account_id": {testAccount}, "arch": {"x86"},
		"boot_dev_type": {"1"}, "description": {"ubuntu"}, "display_name": {"lucid"}, "is_public": {"true"},
		"is_cacheable": {"1"}, "file_format": {"qcow2"}, "root_device": {"label:root"},
		"features[virtio]": {"true"}, "os_type": {"linux"}, "state": {"pending"},
	}}).ok()
	if got := docKeys(t, r.body); got != imageDocKeys {
		t.Fatalf("document keys = %s", got)
	}
	doc := r.obj()
	feat, _ := doc["features"].(map[string]any)
	if doc["id"] != "wmi-lucid0" || doc["uuid"] != "wmi-lucid0" || doc["account_id"] != testAccount ||
		doc["arch"] != "x86" || doc["boot_dev_type"] != 1.0 || doc["is_public"] != true || doc["is_cacheable"] != true ||
		doc["file_format"] != "qcow2" || doc["root_device"] != "label:root" || feat["virtio"] != true ||
		doc["state"] != "pending" || doc["backup_object_id"] != bo || doc["os_type"] != "linux" ||
		doc["service_type"] != "std" || doc["parent_image_id"] != nil || doc["deleted_at"] != nil {
		t.Fatalf("registered = %v", doc)
	}
	if v, _ := doc["volumes"].([]any); v == nil || len(v) != 0 {
		t.Fatalf("volumes = %v", doc["volumes"])
	}

	// Defaults; features as JSON text; the system account when no account_id.
	d := e.do(req{method: "POST", path: "/images.json", account: acct(""), form: url.Values{
		"backup_object_id": {bo}, "features": {`{"acpi": false}`},
	}}).ok().obj()
	feat, _ = d["features"].(map[string]any)
	if d["account_id"] != proto.SystemAccount || d["arch"] != "x86_64" || d["boot_dev_type"] != 2.0 ||
		d["state"] != "available" || d["os_type"] != "linux" || d["is_public"] != false || d["file_format"] != "raw" ||
		d["root_device"] != nil || feat["acpi"] != false {
		t.Fatalf("defaults = %v", d)
	}

	op := func(f url.Values) req { return req{method: "POST", path: "/images.json", account: acct(""), form: f} }
	with := func(k, v string) url.Values { return url.Values{"backup_object_id": {bo}, k: {v}} }
	e.rejects(403, "105", req{method: "POST", path: "/images.json", form: url.Values{"backup_object_id": {bo}}})
	e.rejects(400, "143",
		op(url.Values{}),
		op(url.Values{"backup_object_id": {"wmi-1"}}),
		op(with("arch", "arm")),
		op(with("os_type", "plan9")),
		op(with("state", "deleted")),
		op(with("boot_dev_type", "3")),
		op(with("boot_dev_type", "x")),
		op(with("is_public", "yes")),
		op(with("is_cacheable", "maybe")),
		op(with("features", "[1]")),
		op(with("features[turbo]", "true")),
		op(with("service_type", "gold")),
		op(with("account_id", "shpoolxx")),
	)
	e.rejects(404, "156", op(url.Values{"backup_object_id": {"bo-nothere"}}))
	e.rejects(400, "110",
		op(url.Values{"backup_object_id": {bo}, "uuid": {"lucid0"}}),
		op(url.Values{"backup_object_id": {bo}, "uuid": {"wmi-BAD!"}}),
	)
}

func TestImageRoutes(t *testing.T) {
	e := newEnv(t)
	e.touchAccount(otherAccount)
	e.seedStorage("bkst-nonode", "")
	e.seedStorage("bkst-node1", "bksta.demo1")
	bo := e.seedBackupObject(testAccount, "bkst-node1", nil)
	nbo := e.seedBackupObject(testAccount, "bkst-nonode", nil)
	mine := e.seedImage(testAccount, bo, url.Values{"display_name": {"mine"}})
	minePub := e.seedImage(testAccount, bo, url.Values{"is_public": {"true"}})
	theirsPub := e.seedImage(otherAccount, bo, url.Values{"is_public": {"true"}})
	theirs := e.seedImage(otherAccount, bo, nil)
	nonode := e.seedImage(testAccount, nbo, nil)

	ids := func(items []map[string]any) string {
		var out []string
		for _, it := range items {
			out = append(out, it["id"].(string))
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	set := func(xs ...string) string {
		sort.Strings(xs)
		return strings.Join(xs, ",")
	}
	for _, c := range []struct {
		account, query, want string
	}{
		{testAccount, "", set(mine, minePub, nonode)},
		{testAccount, "is_public=true", set(mine, minePub, nonode, theirsPub)},
		{testAccount, "is_public=1", set(mine, minePub, nonode, theirsPub)},
		// Upstream OR-ed is_public=0 and so leaked other accounts' private
		// images; a caller sees only their own.
		{testAccount, "is_public=false", set(mine, minePub, nonode)},
		{testAccount, "is_public=0", set(mine, minePub, nonode)},
		{otherAccount, "is_public=true", set(theirs, theirsPub, minePub)},
		{"", "", set(mine, minePub, nonode, theirs, theirsPub)},
		{"", "is_public=true", set(minePub, theirsPub)},
		{"", "is_public=false", set(mine, nonode, theirs)},
		{"", "is_public=true&account_id=" + otherAccount, set(minePub, theirsPub, theirs)},
		{testAccount, "state=available", set(mine, minePub, nonode)},
		{testAccount, "state=deleted", ""},
		{testAccount, "state=alive&service_type=std", set(mine, minePub, nonode)},
	} {
		_, items := e.do(as(c.account, req{method: "GET", path: "/images.json?" + c.query})).envelope()
		if got := ids(items); got != c.want {
			t.Fatalf("%s GET /images?%s = %s, want %s", c.account, c.query, got, c.want)
		}
	}
	e.rejects(400, "143",
		req{method: "GET", path: "/images.json?is_public=yes"},
		req{method: "GET", path: "/images.json?state=pending"},
		req{method: "GET", path: "/images.json?service_type=gold"},
		req{method: "GET", path: "/images.json?sort_by=x.up"},
		req{method: "GET", path: "/images/bo-1.json"},
		req{method: "PUT", path: "/images/wmi.json", form: url.Values{}},
		req{method: "DELETE", path: "/images/x.json"},
		req{method: "PUT", path: "/images/" + mine + "/copy_to.json", form: url.Values{}},
	)

	// YAML list: the lines clients grep.
	y := string(e.get("/images.yml?limit=1").ok().body)
	if !strings.HasPrefix(y, "---\n- :total: 3\n  :start: 0\n  :limit: 1\n  :results:\n  - :id: "+nonode+"\n    :account_id: a-shpoolxx\n") ||
		!strings.Contains(y, "\n    :state: available\n") || !strings.Contains(y, "\n    :volumes: []\n") {
		t.Fatalf("yaml list = %s", y)
	}
	y = string(e.get("/images/" + mine + ".yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: "+mine+"\n") || !strings.Contains(y, "\n:state: available\n") ||
		!strings.Contains(y, "\n:backup_object_id: "+bo+"\n") || !strings.Contains(y, "\n:is_public: false\n") {
		t.Fatalf("yaml show = %s", y)
	}

	// Another account's image, even a public one, is not found by member routes.
	for _, id := range []string{theirsPub, theirs, "wmi-nothere"} {
		e.rejects(404, "100",
			req{method: "GET", path: "/images/" + id + ".json"},
			req{method: "PUT", path: "/images/" + id + ".json", form: url.Values{"display_name": {"x"}}},
			req{method: "PUT", path: "/images/" + id + "/copy_to.json", form: url.Values{"destination": {"x"}}},
			req{method: "DELETE", path: "/images/" + id + ".json"},
		)
	}
	if got := e.do(as("", req{method: "GET", path: "/images/" + theirs + ".json"})).ok().obj(); got["id"] != theirs {
		t.Fatalf("operator show = %v", got)
	}

	upd := e.put("/images/"+mine+".json", url.Values{"display_name": {"renamed"}, "description": {"desc"}, "is_public": {"true"}}).ok()
	if got := docKeys(t, upd.body); got != imageDocKeys {
		t.Fatalf("update keys = %s", got)
	}
	if d := upd.obj(); d["display_name"] != "renamed" || d["description"] != "desc" || d["is_public"] != false {
		t.Fatalf("update = %v", d)
	}

	// copy_to.
	e.rejects(400, "182", req{method: "PUT", path: "/images/" + nonode + "/copy_to.json", form: url.Values{"destination": {"x"}}})
	job := e.put("/images/"+mine+"/copy_to.json", url.Values{"destination": {"bkst-remote"}, "description": {"copied"}}).ok()
	if got := docKeys(t, job.body); got != "uuid,created_at" {
		t.Fatalf("copy_to keys = %s", got)
	}
	jobs := e.jobs()
	if len(jobs) != 1 || jobs[0].ID != job.obj()["uuid"] {
		t.Fatalf("jobs = %+v", jobs)
	}
	j := jobs[0]
	img, _ := j.Params["image"].(map[string]any)
	boh, _ := j.Params["backup_object"].(map[string]any)
	if j.QueueName != "backup_storage.copy_to.bksta.demo1" || j.ResourceID != bo || j.State != "pending" ||
		img["uuid"] != mine || img["display_name"] != "renamed" || boh["uuid"] != bo ||
		j.Params["destination"] != "bkst-remote" || j.Params["description"] != "copied" {
		t.Fatalf("job = %+v", j)
	}
	if _, ok := j.Params["display_name"]; ok {
		t.Fatalf("job params carry an absent display_name: %v", j.Params)
	}

	// DELETE: logical, no precondition, idempotent.
	if del := e.del("/images/" + mine + ".json").ok().arr(); len(del) != 1 || del[0] != mine {
		t.Fatalf("delete = %v", del)
	}
	d := e.get("/images/" + mine + ".json").ok().obj()
	if d["state"] != "deleted" || d["deleted_at"] == nil {
		t.Fatalf("deleted = %v", d)
	}
	e.unchanged(func() { e.del("/images/" + mine + ".json").ok() })
	for q, want := range map[string]string{
		"state=deleted":                      mine,
		"state=alive":                        set(minePub, nonode),
		"state=alive_with_deleted":           set(mine, minePub, nonode),
		"deleted_since=2000-01-01T00:00:00Z": mine,
	} {
		if _, items := e.get("/images.json?" + q).envelope(); ids(items) != want {
			t.Fatalf("list %s = %s, want %s", q, ids(items), want)
		}
	}
}
