package manage

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"

	"net/http/httptest"
)

// TestAgainstManager drives the CLI against a real single-manager cluster
// (raft, bbolt, serf on loopback) for the routes the framework serves today:
// backup storages and the /internal/v1 cluster routes.
func TestAgainstManager(t *testing.T) {
	srv := cluster.TestServer(t, nil)
	ts := httptest.NewServer(api.New(api.DefaultConfig(), srv, logging.NewTest(t)))
	t.Cleanup(ts.Close)
	srv.SetAPIAddr(strings.TrimPrefix(ts.URL, "http://"))

	run := func(args ...string) (string, string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		code := Run(t.Context(), args, &out, Config{API: ts.URL, Stderr: &errb})
		return out.String(), errb.String(), code
	}
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := run(args...)
		if code != 0 {
			t.Fatalf("vdc-manage %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}

	add := []string{"--if-missing", "backupstorage", "add", "--uuid", "bkst-local", "--storage-type", "local",
		"--base-uri", "file:///var/lib/vdc/images/", "--display-name", "local"}
	out := must(add...)
	if !strings.HasPrefix(out, "id            bkst-local\n") || !strings.Contains(out, "base_uri      file:///var/lib/vdc/images/\n") {
		t.Fatalf("add printed:\n%s", out)
	}
	if out := must(add...); out != "exists: bkst-local\n" {
		t.Fatalf("second add printed %q", out)
	}
	for _, id := range []string{"a", "b"} {
		must("backupstorage", "add", "--uuid", id, "--storage-type", "webdav", "--base-uri", "http://x/"+id+"/")
	}
	out = must("backupstorage", "list", "--page-size", "2")
	for _, id := range []string{"bkst-local", "bkst-a", "bkst-b"} {
		if !strings.Contains(out, "\n"+id+" ") {
			t.Errorf("list lacks %s:\n%s", id, out)
		}
	}
	out = must("backupstorage", "list", "--param", "storage_type=webdav", "-o", "json")
	if !strings.HasPrefix(out, `[{"total":2,"start":0,"limit":2,"results":[{"id":"bkst-b"`) {
		t.Errorf("filtered json list:\n%s", out)
	}

	if out := must("backupstorage", "modify", "bkst-a", "--display-name", "A"); out != "modified: bkst-a\n" {
		t.Errorf("modify printed %q", out)
	}
	if out := must("backupstorage", "show", "bkst-a"); !strings.Contains(out, "display_name  A\n") {
		t.Errorf("show after modify:\n%s", out)
	}
	if out := must("backupstorage", "del", "bkst-a"); out != "deleted: bkst-a\n" {
		t.Errorf("del printed %q", out)
	}
	_, errOut, code := run("backupstorage", "show", "bkst-a")
	if code != 1 || errOut != "error: bkst-a (code 100, HTTP 404)\n" {
		t.Errorf("show deleted: exit %d stderr %q", code, errOut)
	}
	_, errOut, code = run("backupstorage", "add", "--storage-type", "local")
	if code != 1 || !strings.Contains(errOut, "(code 110, HTTP 400)") {
		t.Errorf("add without base_uri: exit %d stderr %q", code, errOut)
	}

	if out := must("cluster", "members"); !strings.Contains(out, "alive") || !strings.HasPrefix(out, "NAME ") {
		t.Errorf("members:\n%s", out)
	}
	if out := must("cluster", "peers"); !strings.Contains(out, "true") {
		t.Errorf("peers (no leader marked):\n%s", out)
	}
	if out := must("cluster", "status"); !strings.Contains(out, "Leader") {
		t.Errorf("status:\n%s", out)
	}
}
