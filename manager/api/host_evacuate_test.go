package api

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// evacuationJob waits for the host's evacuate_from job to be queued.
func (e *env) evacuationJob(host string) string {
	e.t.Helper()
	var id string
	testutil.WaitFor(e.t, 10*time.Second, func() error {
		return e.srv.Store().View(func(tx *state.Tx) error {
			var ok bool
			var err error
			id, ok, err = scheduling.PendingEvacuation(tx, host)
			if err == nil && !ok {
				err = fmt.Errorf("no evacuation of %s queued", host)
			}
			return err
		})
	})
	return id
}

// finishEvacuation finishes the evacuate_from job as the scheduler daemon
// would (no daemon here: by hand).
func (e *env) finishEvacuation(id string) {
	e.t.Helper()
	err := state.Commit(context.Background(), e.srv.Store(), e.srv, func(tx *state.Tx, b *state.Builder) error {
		return jobs.FinishTx(tx, b, id, time.Now().UTC(), jobs.FinishSuccess, "", map[string]any{
			"scheduled": []any{"i-moved001"}, "failed": []any{"i-huge0001"}, "halted": []any{},
			"reasons": map[string]any{"i-huge0001": "no other host can run it"},
		})
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestEvacuateHostNode: PUT /host_nodes/:id/evacuate refuses a bad host at
// once with the spec's error and no change; else it queues one
// scheduler.evacuate_from job, fences a host that is offline, disables its
// scheduling, and answers at once with the job (state running). A second
// call while it runs changes nothing and answers the same job. The
// operator follows the job through GET /jobs/:id.
func TestEvacuateHostNode(t *testing.T) {
	e := newEnv(t)
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo1")).ok()
	e.rejects(404, "100", req{method: "PUT", path: "/host_nodes/hn-nothere/evacuate.json", form: url.Values{}})
	e.rejects(400, "143", req{method: "PUT", path: "/host_nodes/xx-demo1/evacuate.json", form: url.Values{}})
	if n := countEvacuations(t, e); n != 0 {
		t.Fatalf("%d evacuate_from jobs after refused requests", n)
	}

	m := e.put("/host_nodes/hn-demo1/evacuate.json", nil).ok().obj()
	id := e.evacuationJob("hn-demo1")
	if m["job_id"] != id || m["state"] != "running" || m["host_node_id"] != "hn-demo1" ||
		fmt.Sprint(m["scheduled"], m["failed"], m["halted"], m["reasons"]) != "[] [] [] map[]" {
		t.Errorf("evacuate = %v, want job %s running with empty results", m, id)
	}
	var f proto.HostFence
	var host proto.HostNode
	_ = e.srv.Store().View(func(tx *state.Tx) error {
		_, _ = tx.Get(proto.KindHostFence, "hva.demo1", &f)
		_, _ = tx.Get(proto.KindHostNode, "hn-demo1", &host)
		return nil
	})
	if f.JobID != id || !strings.Contains(f.Reason, "while offline") {
		t.Errorf("fence of the offline host = %+v", f)
	}
	if host.SchedulingEnabled {
		t.Error("scheduling still enabled on the evacuated host")
	}

	// Again while it runs: the same job, nothing applied.
	idx := e.srv.Store().LastIndex()
	y := string(e.put("/host_nodes/hn-demo1/evacuate.yml", nil).ok().body)
	if !strings.Contains(y, ":job_id: "+id) || !strings.Contains(y, ":state: running") {
		t.Errorf("second evacuate (YAML) = %s", y)
	}
	if after := e.srv.Store().LastIndex(); after != idx {
		t.Errorf("a second evacuate while the first runs applied raft entries %d..%d", idx+1, after)
	}
	if j := e.get("/jobs/" + id + ".json").ok().obj(); j["state"] == "finished" || j["resource_id"] != "hn-demo1" {
		t.Errorf("job while running = %v", j)
	}

	e.finishEvacuation(id)
	if j := e.get("/jobs/" + id + ".json").ok().obj(); j["state"] != "finished" || j["finish_status"] != "success" {
		t.Errorf("job after the evacuation = %v", j)
	}
	if n := countEvacuations(t, e); n != 1 {
		t.Errorf("%d evacuate_from jobs, want 1", n)
	}
}

// TestEvacuateHostNodeWaits: with api.evacuate_wait_ms the route answers
// the job's result once it ends (the original's synchronous answer), to
// every call waiting on it.
func TestEvacuateHostNodeWaits(t *testing.T) {
	e := newEnvWith(t, func(c *Config) { c.EvacuateWaitMS = int(MaxEvacuateWait.Milliseconds()) })
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo1")).ok()
	docs := make(chan *resp, 2)
	go func() { docs <- e.put("/host_nodes/hn-demo1/evacuate.json", nil) }()
	id := e.evacuationJob("hn-demo1")
	go func() { docs <- e.put("/host_nodes/hn-demo1/evacuate.yml", nil) }()
	e.finishEvacuation(id)
	for range 2 {
		r := (<-docs).ok()
		if strings.HasPrefix(string(r.body), "---") {
			if y := string(r.body); !strings.Contains(y, ":scheduled:\n- i-moved001\n") || !strings.Contains(y, ":job_id: "+id) {
				t.Errorf("YAML = %s", y)
			}
			continue
		}
		m := r.obj()
		if fmt.Sprint(m["scheduled"]) != "[i-moved001]" || fmt.Sprint(m["failed"]) != "[i-huge0001]" || m["job_id"] != id ||
			m["state"] != "finished" || m["host_node_id"] != "hn-demo1" {
			t.Errorf("evacuate = %v", m)
		}
	}
	if n := countEvacuations(t, e); n != 1 {
		t.Errorf("%d evacuate_from jobs, want 1", n)
	}
}

func TestEvacuateWaitConfig(t *testing.T) {
	for _, ms := range []int{-1, int(MaxEvacuateWait.Milliseconds()) + 1} {
		c := DefaultConfig()
		c.EvacuateWaitMS = ms
		if err := c.Validate(); err == nil {
			t.Errorf("evacuate_wait_ms %d accepted", ms)
		}
	}
	c := DefaultConfig()
	if c.EvacuateWaitMS != 0 || c.Validate() != nil {
		t.Errorf("default evacuate_wait_ms %d: want 0, valid", c.EvacuateWaitMS)
	}
}

func countEvacuations(t *testing.T, e *env) int {
	n := 0
	_ = e.srv.Store().View(func(tx *state.Tx) error {
		return tx.Each(proto.KindJob, false, func(en state.Entry) error {
			if strings.Contains(string(en.Value), `"verb":"evacuate_from"`) {
				n++
			}
			return nil
		})
	})
	return n
}
