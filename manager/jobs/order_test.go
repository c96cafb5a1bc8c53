package jobs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// TestJobsOfOneResourceRunInOrder: a newer job of a resource waits until
// every older job of that resource has ended, even when the newer one's
// agent is reachable and the older one's is not. Found by e2e/chaos: an
// hva came back after a partition, and poweroff jobs of an instance that
// had waited in delivery backoff were run after a poweron of the same
// instance accepted later (had the poweron finished first, the stale
// poweroff would have turned the instance off again).
func TestJobsOfOneResourceRunInOrder(t *testing.T) {
	f := newFixture(t)
	var older string
	var overtook, ran atomic.Int32
	f.startAgent("hva.order2", func(context.Context, proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
		ran.Add(1)
		if _, queued := f.job(older); queued {
			overtook.Add(1)
		}
		return proto.HvaRebootResponse{}, nil
	})
	// hva.order1 never comes: the older job ends by its deadline.
	older = f.enqueue(proto.HvaHandle("hva.order1"), proto.VerbReboot, proto.HvaRebootRequest{InstanceID: "i-test0001"}, 1500*time.Millisecond)
	newer := f.enqueue(proto.HvaHandle("hva.order2"), proto.VerbReboot, proto.HvaRebootRequest{InstanceID: "i-test0001"}, 0)

	j := f.waitFinished(newer)
	if *j.FinishStatus != FinishSuccess || ran.Load() != 1 {
		t.Fatalf("newer job = %+v, handler ran %d times", j, ran.Load())
	}
	if n := overtook.Load(); n != 0 {
		t.Fatalf("the newer job ran while the older job of the same resource was unfinished")
	}
	if o := f.waitFinished(older); *o.FinishStatus != FinishFail {
		t.Fatalf("older job = %+v", o)
	}

	// Jobs of other resources are not held back by one that waits.
	f.startAgent("hva.order3", func(context.Context, proto.HvaRebootRequest) (proto.HvaRebootResponse, error) {
		return proto.HvaRebootResponse{}, nil
	})
	stuck := f.enqueue(proto.HvaHandle("hva.order4"), proto.VerbReboot, proto.HvaRebootRequest{InstanceID: "i-test0001"}, 0)
	other, err := New(time.Now().UTC(), proto.HvaHandle("hva.order3"), proto.VerbReboot, "i-other001", proto.HvaRebootRequest{InstanceID: "i-other001"})
	if err != nil {
		t.Fatal(err)
	}
	if err := state.Commit(context.Background(), f.srv.Store(), f.srv, func(_ *state.Tx, b *state.Builder) error {
		Enqueue(b, other)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if j := f.waitFinished(other.ID); *j.FinishStatus != FinishSuccess {
		t.Fatalf("job of another resource = %+v", j)
	}
	if j, queued := f.job(stuck); j.State == StateFinished || !queued {
		t.Fatalf("the job without an agent ended: %+v", j)
	}
}
