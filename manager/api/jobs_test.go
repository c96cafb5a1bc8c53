package api

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

var jobKeys = []string{
	"id", "uuid", "parent_id", "queue_name", "params", "resource_id", "worker_id", "state", "retry_max",
	"retry_count", "finish_status", "finish_message", "created_at", "updated_at", "finished_at", "started_at",
}

// addJob commits a job record the way copy_to (and later the dispatcher)
// creates them.
func (e *env) addJob(j proto.Job) {
	e.t.Helper()
	if j.CreatedAt.IsZero() {
		j.CreatedAt = e.api.now()
		j.UpdatedAt = j.CreatedAt
	}
	_, err := e.api.commit(context.Background(), func(_ *state.Tx, b *state.Builder) (renderFn, error) {
		b.Create(proto.KindJob, j.ID, j)
		return nil, nil
	})
	if err != nil {
		e.t.Fatalf("add job %s: %v", j.ID, err)
	}
}

func TestJobs(t *testing.T) {
	e := newEnv(t)
	e.get("/jobs.json").ok()
	worker := "bkst-worker1"
	started := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	e.addJob(proto.Job{
		ID: "job-pend1", QueueName: "backup_storage.copy_to.bkst-demo1", ResourceID: "bo-demo1", State: jobs.StatePending,
		Params: map[string]any{"destination": "bkst-demo2"}, RetryMax: 3,
		Timestamps: proto.Timestamps{CreatedAt: started, UpdatedAt: started},
	})
	e.addJob(proto.Job{ID: "job-run1", QueueName: "q", State: jobs.StateRunning, WorkerID: &worker, StartedAt: &started})
	success := "success"
	e.addJob(proto.Job{ID: "job-done1", QueueName: "q", State: jobs.StateFinished, FinishStatus: &success,
		FinishMessage: map[string]any{"message": "ok"}, FinishedAt: &started})

	r := e.get("/jobs/job-pend1.json").ok()
	wantKeys(t, r.body, jobKeys...)
	j := r.obj()
	if j["id"] != "job-pend1" || j["uuid"] != "job-pend1" || j["state"] != "pending" || j["parent_id"] != nil ||
		j["worker_id"] != nil || j["finish_status"] != nil || j["finish_message"] != nil || j["finished_at"] != nil ||
		j["retry_max"] != 3.0 || j["resource_id"] != "bo-demo1" || j["created_at"] != "2024-05-01T10:00:00Z" ||
		!reflect.DeepEqual(j["params"], map[string]any{"destination": "bkst-demo2"}) {
		t.Fatalf("job = %v", j)
	}
	y := string(e.get("/jobs/job-run1.yml").ok().body)
	if !strings.HasPrefix(y, "---\n:id: job-run1\n:uuid: job-run1\n") || !strings.Contains(y, "\n:worker_id: bkst-worker1\n:state: running\n") {
		t.Fatalf("yaml = %q", y)
	}

	ids := func(q string) []string {
		t.Helper()
		_, items := e.get("/jobs.json" + q).envelope()
		out := []string{}
		for _, it := range items {
			out = append(out, it["id"].(string))
		}
		return out
	}
	for q, want := range map[string][]string{
		"":                                    {"job-done1", "job-run1", "job-pend1"},
		"?state=running":                      {"job-run1"},
		"?state=finished":                     {"job-done1"},
		"?created_until=2024-06-01T00:00:00Z": {"job-pend1"},
		"?created_since=2024-06-01T00:00:00Z": {"job-done1", "job-run1"},
	} {
		if got := ids(q); !reflect.DeepEqual(got, want) {
			t.Fatalf("list %q = %v, want %v", q, got, want)
		}
	}
	if y := string(e.get("/jobs.yml?state=running").ok().body); !strings.HasPrefix(y, "---\n- :total: 1\n  :start: 0\n  :limit: 250\n  :results:\n  - :id: job-run1\n") {
		t.Fatalf("yaml list = %q", y)
	}

	// Cancel.
	for _, id := range []string{"job-pend1", "job-run1"} {
		del := strs(t, e.del("/jobs/"+id+".json").ok().arr())
		if !reflect.DeepEqual(del, []string{id}) {
			t.Fatalf("cancel = %v", del)
		}
		j = e.get("/jobs/" + id + ".json").ok().obj()
		if j["state"] != "finished" || j["finish_status"] != "cancel" || j["finished_at"] == nil {
			t.Fatalf("cancelled job = %v", j)
		}
	}

	m := e.del("/jobs/job-done1.json").apiError(400, "143")
	if !strings.Contains(m["message"].(string), "already finished") {
		t.Fatalf("message = %v", m["message"])
	}
	e.rejects(400, "143",
		req{method: "DELETE", path: "/jobs/job-done1.json"},
		req{method: "DELETE", path: "/jobs/job-pend1.json"},
		req{method: "GET", path: "/jobs/bo-demo1.json"},
		req{method: "DELETE", path: "/jobs/xx.json"},
		req{method: "GET", path: "/jobs.json?created_since=soon"},
	)
	e.rejects(404, "100",
		req{method: "GET", path: "/jobs/job-nothere.json"},
		req{method: "DELETE", path: "/jobs/job-nothere.json"},
	)
	// Jobs have no deleted_at / terminated_at column.
	e.rejects(400, "110",
		req{method: "GET", path: "/jobs.json?deleted_since=2024-01-01T00:00:00Z"},
		req{method: "GET", path: "/jobs.json?terminated_until=2024-01-01T00:00:00Z"},
	)
}

func TestJobsDeletedRangeWithoutJobs(t *testing.T) {
	e := newEnv(t)
	e.get("/jobs.json").ok()
	e.rejects(400, "110", req{method: "GET", path: "/jobs.json?deleted_until=2024-01-01T00:00:00Z"})
}
