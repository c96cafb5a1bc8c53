package jobs

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// testClocks are a dispatcher's clocks: the real wall clock moved by jump
// (what a clock step does to a manager), and the real monotonic clock
// moved on by skip (time passing without waiting for it).
type testClocks struct{ jump, skip atomic.Int64 }

func (c *testClocks) now() time.Time {
	return time.Now().UTC().Add(time.Duration(c.jump.Load()))
}

func (c *testClocks) monotonic() func() time.Duration {
	start := time.Now()
	return func() time.Duration { return time.Since(start) + time.Duration(c.skip.Load()) }
}

func clockFixture(t *testing.T) (*fixture, *testClocks) {
	t.Helper()
	c := &testClocks{}
	f := newFixtureDeps(t, func(d *Deps) {
		d.Now = c.now
		d.Monotonic = c.monotonic()
	})
	return f, c
}

// enqueueAt enqueues a reboot job (timeout 5 minutes) created at now.
func (f *fixture) enqueueAt(now time.Time, node string) string {
	f.t.Helper()
	j, err := New(now, proto.HvaHandle(node), proto.VerbReboot, "i-clock001", proto.HvaRebootRequest{InstanceID: "i-clock001"})
	if err != nil {
		f.t.Fatal(err)
	}
	err = state.Commit(context.Background(), f.srv.Store(), f.srv, func(tx *state.Tx, b *state.Builder) error {
		Enqueue(b, j)
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return j.ID
}

// waitSeen waits until the dispatcher counts job id's time.
func (f *fixture) waitSeen(id string) {
	f.t.Helper()
	testutil.WaitFor(f.t, 10*time.Second, func() error {
		f.ds.mu.Lock()
		defer f.ds.mu.Unlock()
		if _, ok := f.ds.seen[id]; !ok {
			return fmt.Errorf("the dispatcher has not seen job %s yet", id)
		}
		return nil
	})
}

// TestJobTimeoutIgnoresWallClockJumps: a job's timeout is counted on the
// monotonic clocks of the leader and of the agent, so a step of the
// leader's wall clock (the chaos test's clock-jump fault) neither fails a
// job early nor keeps it forever, and a leader clock behind the agent's
// does not make the agent refuse the job. (Before, the leader compared its
// wall clock with the record's absolute deadline and sent that deadline to
// the agent, which compared it with its own clock.)
func TestJobTimeoutIgnoresWallClockJumps(t *testing.T) {
	t.Run("leader clock jumps ahead", func(t *testing.T) {
		f, c := clockFixture(t)
		id := f.enqueueAt(c.now(), "hva.jump1")
		c.jump.Store(int64(2 * time.Hour))
		var runs atomic.Int32
		f.startAgent("hva.jump1", func(context.Context, proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
			runs.Add(1)
			return proto.HvaRebootResponse{}, nil
		})
		j := f.waitFinished(id)
		if *j.FinishStatus != FinishSuccess || runs.Load() != 1 {
			t.Fatalf("job = %s %v after %d runs; want success after one", *j.FinishStatus, j.FinishMessage, runs.Load())
		}
	})
	t.Run("leader clock behind the agent's", func(t *testing.T) {
		// The job is created on the leader's clock (2 h behind): its
		// recorded deadline is in the agent's past.
		f, c := clockFixture(t)
		c.jump.Store(int64(-2 * time.Hour))
		id := f.enqueueAt(c.now(), "hva.skew1")
		var runs atomic.Int32
		f.startAgent("hva.skew1", func(ctx context.Context, _ proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
			runs.Add(1)
			if dl, ok := ctx.Deadline(); !ok || time.Until(dl) <= 0 || time.Until(dl) > 5*time.Minute {
				return proto.HvaRebootResponse{}, fmt.Errorf("job context deadline %v (set %v), want within the next 5 minutes", dl, ok)
			}
			return proto.HvaRebootResponse{}, nil
		})
		j := f.waitFinished(id)
		if *j.FinishStatus != FinishSuccess || runs.Load() != 1 {
			t.Fatalf("job = %s %v after %d runs; want success after one", *j.FinishStatus, j.FinishMessage, runs.Load())
		}
	})
	t.Run("leader clock jumps back", func(t *testing.T) {
		// No agent: the job waits; its 5 minutes pass on the monotonic
		// clock after the dispatcher saw it, while the wall clock went 2 h
		// back.
		f, c := clockFixture(t)
		id := f.enqueueAt(c.now(), "hva.none1")
		f.waitSeen(id)
		c.jump.Store(int64(-2 * time.Hour))
		c.skip.Store(int64(6 * time.Minute))
		j := f.waitFinished(id)
		if *j.FinishStatus != FinishFail || !strings.Contains(fmt.Sprint(j.FinishMessage["message"]), "timed out") {
			t.Fatalf("job = %s %v; want failed, timed out", *j.FinishStatus, j.FinishMessage)
		}
	})
	t.Run("inherited job keeps its age", func(t *testing.T) {
		// A job created 4 minutes ago (by an earlier leader) has one
		// minute left: it times out once one more minute passes, and not
		// before. The dispatcher's clock jumps 2 h ahead meanwhile.
		f, c := clockFixture(t)
		id := f.enqueueAt(c.now().Add(-4*time.Minute), "hva.none2")
		f.waitSeen(id)
		c.jump.Store(int64(2 * time.Hour))
		j, queued := f.job(id)
		left, _ := f.ds.remaining(j)
		if !queued || left <= 0 || left > time.Minute {
			t.Fatalf("job %s (queued %v) has %s left; want (0, 1m]", j.State, queued, left)
		}
		c.skip.Store(int64(time.Minute))
		j = f.waitFinished(id)
		if *j.FinishStatus != FinishFail {
			t.Fatalf("job = %s %v; want failed, timed out", *j.FinishStatus, j.FinishMessage)
		}
	})
}
