package jobs

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

// frozenAgent is what a SIGSTOPped agent looks like from the manager: an
// alive serf member whose rpc address accepts connections (the kernel's
// backlog) but never answers. Here the listener is never served.
func frozenAgent(t *testing.T, f *fixture, node, role string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	logger := logging.NewTest(t)
	sc := serf.DefaultConfig()
	sc.NodeName = node
	sc.MemberlistConfig = memberlist.DefaultLocalConfig()
	agent.FastGossip(sc)
	sc.MemberlistConfig.BindAddr = "127.0.0.1"
	sc.MemberlistConfig.BindPort = 0
	sc.MemberlistConfig.Logger = logging.StdLog(logger, "memberlist")
	sc.Logger = logging.StdLog(logger, "serf")
	sc.Tags = map[string]string{proto.TagRole: role, proto.TagNodeID: node, proto.TagRPC: l.Addr().String()}
	sf, err := serf.Create(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sf.Shutdown() })
	if _, err := sf.Join([]string{f.srv.SerfAddr()}, true); err != nil {
		t.Fatal(err)
	}
}

// TestFrozenAgentIsGivenUp: a scheduler job handed to a frozen scheduler
// goes to the live one as soon as the frozen one misses a status probe, not
// after the delivery's wait (10 minutes here): the job ends once, run by
// the live scheduler, which its record names; retry_count counts both
// hand-offs.
func TestFrozenAgentIsGivenUp(t *testing.T) {
	f := newFixtureDeps(t, func(d *Deps) {
		d.Wait = 10 * time.Minute
		d.ProbeInterval = 100 * time.Millisecond
		d.ProbeTimeout = 300 * time.Millisecond
	})
	frozenAgent(t, f, "scheduler.frozen", proto.RoleScheduler)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !f.ds.alive("scheduler.frozen") {
			return fmt.Errorf("the manager does not see the frozen scheduler")
		}
		return nil
	})
	id := f.enqueue(proto.EndpointScheduler, proto.VerbScheduleInstance, proto.ScheduleInstanceRequest{InstanceID: "i-frozen1"}, 0)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if j, _ := f.job(id); j.WorkerID == nil || *j.WorkerID != "scheduler.frozen" {
			return fmt.Errorf("job not handed to the frozen scheduler yet: %+v", j.WorkerID)
		}
		return nil
	})

	var runs atomic.Int32
	a, err := agent.New(agent.Config{
		NodeID: "scheduler.live", Role: proto.RoleScheduler, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0",
		Join: []string{f.srv.SerfAddr()}, FastGossip: true, Logger: logging.NewTest(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	a.HandleJob(proto.EndpointScheduler, proto.VerbScheduleInstance, agent.JobFunc(
		func(context.Context, proto.ScheduleInstanceRequest) (proto.ScheduleInstanceResponse, error) {
			runs.Add(1)
			return proto.ScheduleInstanceResponse{InstanceID: "i-frozen1"}, nil
		}))
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})

	j := f.waitFinished(id)
	if *j.FinishStatus != FinishSuccess || j.WorkerID == nil || *j.WorkerID != "scheduler.live" || j.RetryCount != 2 {
		t.Fatalf("job = status %v worker %v retry_count %d", *j.FinishStatus, *j.WorkerID, j.RetryCount)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the live scheduler ran the job %d times", n)
	}
}

// TestRunningJobStaysWithItsAgent: polling a running scheduler job
// (redelivering it every Wait) keeps it with the scheduler that has it, so
// the other scheduler never runs it too; the record names one hand-off.
func TestRunningJobStaysWithItsAgent(t *testing.T) {
	f := newFixture(t) // Wait 200ms: a 1.5 s job is polled several times
	var runs atomic.Int32
	release := make(chan struct{})
	for _, node := range []string{"scheduler.a", "scheduler.b"} {
		a, err := agent.New(agent.Config{
			NodeID: node, Role: proto.RoleScheduler, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0",
			Join: []string{f.srv.SerfAddr()}, FastGossip: true, Logger: logging.NewTest(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		a.HandleJob(proto.EndpointScheduler, proto.VerbScheduleInstance, agent.JobFunc(
			func(ctx context.Context, _ proto.ScheduleInstanceRequest) (proto.ScheduleInstanceResponse, error) {
				runs.Add(1)
				select {
				case <-release:
				case <-ctx.Done():
				}
				return proto.ScheduleInstanceResponse{}, nil
			}))
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = a.Shutdown(ctx)
		})
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !f.ds.alive("scheduler.a") || !f.ds.alive("scheduler.b") {
			return fmt.Errorf("the manager does not see both schedulers")
		}
		return nil
	})
	id := f.enqueue(proto.EndpointScheduler, proto.VerbScheduleInstance, proto.ScheduleInstanceRequest{InstanceID: "i-sticky"}, 0)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if runs.Load() == 0 {
			return fmt.Errorf("job not started")
		}
		return nil
	})
	// Ten polls' worth of time (Wait is 200ms) in which the job could flip to
	// the other scheduler (as TestJobRunsOnceWhenAgentComesLate waits for a
	// job that must not end).
	time.Sleep(2 * time.Second)
	close(release)
	j := f.waitFinished(id)
	if n := runs.Load(); n != 1 || j.RetryCount != 1 {
		t.Fatalf("job ran %d times, %d hand-offs; want 1 and 1", n, j.RetryCount)
	}
}
