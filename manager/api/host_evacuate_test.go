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

// TestEvacuateHostNode: PUT /host_nodes/:id/evacuate queues one
// scheduler.evacuate_from job (a second call while it runs gets the same
// job), fences a host that is offline, disables its scheduling, and
// answers the job's result once it ends.
func TestEvacuateHostNode(t *testing.T) {
	e := newEnv(t)
	e.post("/host_nodes.json", hostNodeForm("uuid", "hn-demo1")).ok()
	e.rejects(404, "100", req{method: "PUT", path: "/host_nodes/hn-nothere/evacuate.json", form: url.Values{}})
	e.rejects(400, "143", req{method: "PUT", path: "/host_nodes/xx-demo1/evacuate.json", form: url.Values{}})

	docs := make(chan *resp, 2)
	go func() { docs <- e.put("/host_nodes/hn-demo1/evacuate.json", nil) }()
	id := e.evacuationJob("hn-demo1")
	go func() { docs <- e.put("/host_nodes/hn-demo1/evacuate.yml", nil) }()

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
	// The scheduler finishes the job (no daemon here: by hand).
	err := state.Commit(context.Background(), e.srv.Store(), e.srv, func(tx *state.Tx, b *state.Builder) error {
		return jobs.FinishTx(tx, b, id, time.Now().UTC(), jobs.FinishSuccess, "", map[string]any{
			"scheduled": []any{"i-moved001"}, "failed": []any{"i-huge0001"}, "halted": []any{},
			"reasons": map[string]any{"i-huge0001": "no other host can run it"},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
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
