package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
)

// fakeManager is an rpc server answering hva-collector get_instance with
// whatever answer says.
type fakeManager struct {
	addr   string
	calls  atomic.Int32
	answer func() (proto.GetInstanceResponse, error)
}

func startManager(t *testing.T, answer func() (proto.GetInstanceResponse, error)) *fakeManager {
	t.Helper()
	m := &fakeManager{answer: answer}
	s := rpc.NewServer(rpc.ServerConfig{Logger: logging.NewTest(t)})
	s.Register(proto.EndpointHvaCollector, proto.VerbGetInstance, rpc.Func(
		func(ctx context.Context, req proto.GetInstanceRequest) (proto.GetInstanceResponse, error) {
			m.calls.Add(1)
			return m.answer()
		}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.addr = l.Addr().String()
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return m
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

type members struct {
	mu   sync.Mutex
	list []agent.Member
	n    int // calls
}

func (m *members) Members() []agent.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	return append([]agent.Member(nil), m.list...)
}

func (m *members) set(list ...agent.Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list = list
}

func mgr(name, rpcAddr string) agent.Member {
	return agent.Member{Name: name, Status: "alive", Role: proto.RoleManager, RPC: rpcAddr}
}

func newClient(t *testing.T, ms Members) *Client {
	t.Helper()
	rc := rpc.NewClient(rpc.ClientConfig{})
	t.Cleanup(rc.Close)
	return New(Config{Members: ms, RPC: rc, Logger: logging.NewTest(t),
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, AttemptTimeout: 5 * time.Second})
}

func ok(id string) func() (proto.GetInstanceResponse, error) {
	return func() (proto.GetInstanceResponse, error) { return proto.GetInstanceResponse{ID: id}, nil }
}

func TestCallSkipsFollowersAndDeadManagers(t *testing.T) {
	follower := startManager(t, func() (proto.GetInstanceResponse, error) {
		return proto.GetInstanceResponse{}, errs.New(errs.NoLeader, "not the leader")
	})
	leader := startManager(t, ok("i-1"))
	ms := &members{}
	ms.set(
		mgr("dcmgr.a", deadAddr(t)),
		mgr("dcmgr.b", follower.addr),
		agent.Member{Name: "hva.x", Status: "alive", Role: proto.RoleHva, RPC: leader.addr},
		agent.Member{Name: "dcmgr.gone", Status: "failed", Role: proto.RoleManager, RPC: leader.addr},
		agent.Member{Name: "dcmgr.norpc", Status: "alive", Role: proto.RoleManager},
		mgr("dcmgr.c", leader.addr),
	)
	c := newClient(t, ms)
	ctx := context.Background()
	v, err := c.GetInstance(ctx, "i-1")
	if err != nil || v.ID != "i-1" {
		t.Fatalf("GetInstance = %+v, %v", v, err)
	}
	if follower.calls.Load() != 1 || leader.calls.Load() != 1 {
		t.Errorf("calls: follower %d, leader %d, want 1 and 1", follower.calls.Load(), leader.calls.Load())
	}
	// The manager that accepted is tried first from now on.
	if _, err := c.GetInstance(ctx, "i-1"); err != nil {
		t.Fatal(err)
	}
	if follower.calls.Load() != 1 || leader.calls.Load() != 2 {
		t.Errorf("second call: follower %d, leader %d calls, want 1 and 2", follower.calls.Load(), leader.calls.Load())
	}
}

func TestCallReturnsAnswerErrors(t *testing.T) {
	m1 := startManager(t, func() (proto.GetInstanceResponse, error) {
		return proto.GetInstanceResponse{}, errs.New(errs.UnknownInstance, "no instance i-9")
	})
	m2 := startManager(t, ok("i-9"))
	ms := &members{}
	ms.set(mgr("dcmgr.a", m1.addr), mgr("dcmgr.b", m2.addr))
	_, err := newClient(t, ms).GetInstance(context.Background(), "i-9")
	if !errs.Is(err, errs.UnknownInstance) {
		t.Fatalf("GetInstance = %v, want UnknownInstance", err)
	}
	if m2.calls.Load() != 0 {
		t.Errorf("an answer was retried on another manager")
	}
}

func TestCallWaitsForAManager(t *testing.T) {
	var noLeader atomic.Int32
	m := startManager(t, func() (proto.GetInstanceResponse, error) {
		// No leader for the first three calls, as during an election.
		if noLeader.Add(1) <= 3 {
			return proto.GetInstanceResponse{}, errs.New(errs.NoLeader, "election")
		}
		return proto.GetInstanceResponse{ID: "i-1"}, nil
	})
	ms := &members{} // no managers known yet
	c := newClient(t, ms)
	done := make(chan error, 1)
	go func() {
		_, err := c.GetInstance(context.Background(), "i-1")
		done <- err
	}()
	// Let the client go round a few times with nobody to ask.
	testutil.WaitFor(t, 10*time.Second, func() error {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		if ms.n < 3 {
			return fmt.Errorf("client asked for members %d times", ms.n)
		}
		return nil
	})
	ms.set(mgr("dcmgr.a", m.addr))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("GetInstance = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("GetInstance did not return after a manager appeared")
	}
	if m.calls.Load() != 4 {
		t.Errorf("manager saw %d calls, want 4 (3 without leader)", m.calls.Load())
	}
}

func TestCallBoundedByContext(t *testing.T) {
	ms := &members{}
	ms.set(mgr("dcmgr.a", deadAddr(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := newClient(t, ms).UpdateInstance(ctx, proto.UpdateInstanceRequest{InstanceID: "i-1"})
	if !errs.Is(err, errs.Timeout) {
		t.Fatalf("UpdateInstance = %v, want Timeout", err)
	}
	// The last failure is kept for the operator.
	var e *errs.Error
	if !errors.As(err, &e) || !errs.Is(e.Err, errs.Unavailable) {
		t.Errorf("error %v does not carry the last failure (Unavailable)", err)
	}

	ms.set()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if err := newClient(t, ms).FinalizeInstance(ctx2, "i-1"); !errs.Is(err, errs.Timeout) {
		t.Errorf("FinalizeInstance with no managers = %v, want Timeout", err)
	}
}
