package api

import (
	"net/url"
	"strings"
	"testing"
)

func TestBackupStorages(t *testing.T) {
	e := newEnv(t)

	created := e.post("/backup_storages.json", url.Values{
		"uuid": {"bkst-demo1"}, "storage_type": {"local"}, "base_uri": {"file:///var/lib/vdc/backups"},
		"display_name": {"demo"},
	}).ok().obj()
	if created["id"] != "bkst-demo1" || created["uuid"] != "bkst-demo1" || created["storage_type"] != "local" {
		t.Fatalf("created = %v", created)
	}

	y := string(e.get("/backup_storages/bkst-demo1.yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: bkst-demo1\n:uuid: bkst-demo1\n") {
		t.Fatalf("yaml show = %q", y)
	}

	total, items := e.get("/backup_storages.json?storage_type=local").envelope()
	if total != 1 || items[0]["id"] != "bkst-demo1" {
		t.Fatalf("list = %d %v", total, items)
	}
	total, _ = e.get("/backup_storages.json?storage_type=webdav").envelope()
	if total != 0 {
		t.Fatalf("filtered list total = %d, want 0", total)
	}

	upd := e.put("/backup_storages/bkst-demo1.json", url.Values{"description": {"nightly"}}).ok().arr()
	if len(upd) != 1 || upd[0] != "bkst-demo1" {
		t.Fatalf("update = %v", upd)
	}
	if got := e.get("/backup_storages/bkst-demo1.json").ok().obj()["description"]; got != "nightly" {
		t.Fatalf("description = %v", got)
	}

	e.rejects(400, "110",
		req{method: "POST", path: "/backup_storages.json", form: url.Values{"uuid": {"bkst-demo1"}, "storage_type": {"local"}, "base_uri": {"x"}}},
		req{method: "POST", path: "/backup_storages.json", form: url.Values{"storage_type": {"local"}}},
	)
	e.rejects(400, "143", req{method: "GET", path: "/backup_storages/xx-1.json"})
	e.rejects(404, "100", req{method: "GET", path: "/backup_storages/bkst-nothere.json"},
		req{method: "DELETE", path: "/backup_storages/bkst-nothere.json"})

	del := e.del("/backup_storages/bkst-demo1.json").ok().arr()
	if len(del) != 1 || del[0] != "bkst-demo1" {
		t.Fatalf("delete = %v", del)
	}
	e.get("/backup_storages/bkst-demo1.json").apiError(404, "100")
}
