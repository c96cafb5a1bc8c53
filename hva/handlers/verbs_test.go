package handlers

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/proto"
)

const (
	hvaHandle = proto.EndpointHvaHandle
	lsHandle  = proto.EndpointLocalStoreHandle
)

var (
	nodeTerminated = proto.EventNodeInstanceTerminated(node)
	errBoom        = errors.New("boom")
)

func TestRegisterServesEveryInstanceVerb(t *testing.T) {
	e := newEnv(t, envOpts{})
	var got []string
	for k := range e.jobs {
		got = append(got, k)
	}
	slices.Sort(got)
	hva, ls, mig := proto.HvaHandle(node)+"/", proto.LocalStoreHandle(node)+"/", proto.MigrationHandle(node)+"/"
	want := []string{
		hva + "attach", hva + "attach_nic", hva + "cleanup", hva + "detach", hva + "detach_nic", hva + "poweroff",
		hva + "poweron", hva + "reboot", hva + "run_local_store", hva + "run_vol_store", hva + "soft_poweroff",
		hva + "stop", hva + "terminate", hva + "wait_volumes_available", ls + "delete_volume", ls + "run_local_store",
		mig + "run_vol_store", mig + "start_migration",
	}
	if !slices.Equal(got, want) {
		t.Errorf("registered %v, want %v", got, want)
	}
	for _, k := range got {
		ep, verb, _ := strings.Cut(k, "/")
		if _, ok := proto.LookupJobVerb(ep, verb); !ok {
			t.Errorf("%s is not a job verb of proto", k)
		}
	}
}

func TestBootVerbs(t *testing.T) {
	for _, c := range []struct {
		base, verb string
		req        any
	}{
		{lsHandle, proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-boot"}},
		{hvaHandle, proto.VerbRunLocalStore, proto.HvaRunLocalStoreRequest{InstanceID: "i-boot"}},
		{hvaHandle, proto.VerbRunVolStore, proto.HvaRunVolStoreRequest{InstanceID: "i-boot"}},
	} {
		t.Run(c.base+"/"+c.verb, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.put("i-boot", proto.InstancePending, proto.StatusInit)
			if err := e.job(c.base, c.verb, c.req); err != nil {
				t.Fatalf("job = %v", err)
			}
			e.want("i-boot", []string{proto.InstanceStarting, proto.InstanceRunning},
				proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)
			e.wantEvents("i-boot", proto.EventInstanceStarted)

			// A redelivery (the agent restarted and forgot the job) finds it done.
			if err := e.job(c.base, c.verb, c.req); err != nil {
				t.Fatalf("redelivered job = %v", err)
			}
			if n := len(e.coll.Updates("i-boot")); n != 2 {
				t.Errorf("redelivery sent updates: %d in total, want 2", n)
			}
			want := []dummy.Call{{Op: dummy.OpDefine, ID: "i-boot"}, {Op: dummy.OpStart, ID: "i-boot"}}
			if got := e.calls("i-boot"); !slices.Equal(got, want) {
				t.Errorf("driver calls = %v, want %v", got, want)
			}
		})
	}
}

func TestBootSpec(t *testing.T) {
	var got hypervisor.Spec
	e := newEnv(t, envOpts{hv: func(h hypervisor.Hypervisor) hypervisor.Hypervisor {
		return &spyDefine{Hypervisor: h, spec: &got}
	}})
	e.put("i-spec", proto.InstancePending, proto.StatusInit)
	if err := e.job(lsHandle, proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-spec"}); err != nil {
		t.Fatal(err)
	}
	if got.ID != "i-spec" || got.CPUCores != 2 || got.MemoryMB != 1024 ||
		len(got.Disks) != 1 || !got.Disks[0].Boot || got.Disks[0].Path != "/var/lib/vdc/i-spec/vol" ||
		len(got.NICs) != 1 || got.NICs[0].VifID != "vif-spec" || got.NICs[0].MAC != "525400000001" || got.NICs[0].DcNetwork != "public" {
		t.Errorf("defined spec = %+v", got)
	}
}

type spyDefine struct {
	hypervisor.Hypervisor
	spec *hypervisor.Spec
}

func (s *spyDefine) Define(ctx context.Context, spec hypervisor.Spec) error {
	*s.spec = spec
	return s.Hypervisor.Define(ctx, spec)
}

func TestBootRedeliveredMidway(t *testing.T) {
	// The first run set starting and started the domain, then the agent died.
	e := newEnv(t, envOpts{})
	e.put("i-mid", proto.InstanceStarting, proto.StatusInit)
	e.withDomain("i-mid", true)
	if err := e.job(lsHandle, proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-mid"}); err != nil {
		t.Fatalf("job = %v", err)
	}
	e.want("i-mid", []string{proto.InstanceRunning}, proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)
	if got := e.hv.Boots("i-mid"); got != 1 {
		t.Errorf("domain booted %d times, want once", got)
	}
}

func TestBootFailureTerminates(t *testing.T) {
	t.Run("no capacity", func(t *testing.T) {
		e := newEnv(t, envOpts{dummy: func(c *dummy.Config) { c.CPUCores = 1 }})
		e.put("i-big", proto.InstancePending, proto.StatusInit)
		err := e.job(lsHandle, proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-big"})
		wantKind(t, "job", err, errs.OutOfHostCapacity)
		if err == nil || !strings.Contains(err.Error(), "terminated") {
			t.Errorf("job error %v does not say the instance was terminated", err)
		}
		e.want("i-big", []string{proto.InstanceStarting, proto.InstanceTerminated},
			proto.InstanceTerminated, proto.StatusOffline, "")
		e.wantEvents("i-big", proto.EventInstanceTerminated, nodeTerminated)
	})
	t.Run("start fails", func(t *testing.T) {
		e := newEnv(t, envOpts{})
		e.hv.InjectError(dummy.OpStart, errBoom)
		e.put("i-bad", proto.InstancePending, proto.StatusInit)
		err := e.job(hvaHandle, proto.VerbRunLocalStore, proto.HvaRunLocalStoreRequest{InstanceID: "i-bad"})
		if !errors.Is(err, errBoom) {
			t.Errorf("job = %v, want the driver's error", err)
		}
		// The defined domain was removed with the instance.
		e.want("i-bad", []string{proto.InstanceStarting, proto.InstanceTerminated},
			proto.InstanceTerminated, proto.StatusOffline, "")
	})
}

// cancelOnDefine cancels the job's context when the domain is defined, as a
// shutdown running out of time would.
type cancelOnDefine struct {
	hypervisor.Hypervisor
	cancel context.CancelFunc
}

func (c *cancelOnDefine) Define(ctx context.Context, spec hypervisor.Spec) error {
	c.cancel()
	return c.Hypervisor.Define(ctx, spec)
}

func TestBootInterruptedStaysStarting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEnv(t, envOpts{hv: func(h hypervisor.Hypervisor) hypervisor.Hypervisor {
		return &cancelOnDefine{Hypervisor: h, cancel: cancel}
	}})
	e.put("i-int", proto.InstancePending, proto.StatusInit)
	err := e.jobCtx(ctx, lsHandle, proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-int"})
	wantKind(t, "interrupted job", err, errs.Timeout)
	// Not terminated: the redelivery carries on.
	e.want("i-int", []string{proto.InstanceStarting}, proto.InstanceStarting, proto.StatusInit, "")
	e.wantEvents("i-int")
}

func TestBootRefusals(t *testing.T) {
	e := newEnv(t, envOpts{})
	req := func(id string) proto.LocalStoreRunLocalStoreRequest {
		return proto.LocalStoreRunLocalStoreRequest{InstanceID: id}
	}
	e.put("i-term", proto.InstanceTerminated, proto.StatusOffline)
	wantKind(t, "boot terminated", e.job(lsHandle, proto.VerbRunLocalStore, req("i-term")), errs.InvalidInstanceState)
	wantKind(t, "boot unknown", e.job(lsHandle, proto.VerbRunLocalStore, req("i-none")), errs.UnknownInstance)
	wantKind(t, "boot without id", e.job(lsHandle, proto.VerbRunLocalStore, req("")), errs.UndefinedInstanceID)
	e.coll.Put(proto.InstanceView{ID: "i-else", State: proto.InstancePending, CPUCores: 1, MemorySize: 1,
		HostNode: &proto.HostNode{NodeID: "hva.other"}})
	wantKind(t, "boot elsewhere", e.job(lsHandle, proto.VerbRunLocalStore, req("i-else")), errs.IncompatibleHostNode)
	if u := e.coll.Updates(""); len(u) != 0 {
		t.Errorf("refused jobs sent updates %+v", u)
	}
	if c := e.hv.Calls(); len(c) != 0 {
		t.Errorf("refused jobs called the driver: %v", c)
	}
}

func TestTerminate(t *testing.T) {
	for _, state := range []string{proto.InstanceRunning, proto.InstanceHalted} {
		t.Run(state, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.put("i-t", state, proto.StatusOnline)
			e.withDomain("i-t", state == proto.InstanceRunning)
			req := proto.HvaTerminateRequest{InstanceID: "i-t"}
			if err := e.job(hvaHandle, proto.VerbTerminate, req); err != nil {
				t.Fatalf("terminate = %v", err)
			}
			e.want("i-t", []string{proto.InstanceShuttingDown, proto.InstanceTerminated},
				proto.InstanceTerminated, proto.StatusOffline, "")
			e.wantEvents("i-t", proto.EventInstanceTerminated, nodeTerminated)
			if err := e.job(hvaHandle, proto.VerbTerminate, req); err != nil {
				t.Fatalf("redelivered terminate = %v", err)
			}
			if n := len(e.coll.Updates("i-t")); n != 2 {
				t.Errorf("redelivery sent updates (%d in total)", n)
			}
		})
	}
}

func TestTerminateRedeliveredWhileShuttingDown(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-t", proto.InstanceShuttingDown, proto.StatusOnline)
	e.withDomain("i-t", true)
	if err := e.job(hvaHandle, proto.VerbTerminate, proto.HvaTerminateRequest{InstanceID: "i-t"}); err != nil {
		t.Fatal(err)
	}
	e.want("i-t", []string{proto.InstanceTerminated}, proto.InstanceTerminated, proto.StatusOffline, "")
}

func TestTerminateStateCheckAndForce(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-p", proto.InstanceStarting, proto.StatusInit)
	e.withDomain("i-p", true)
	wantKind(t, "terminate starting", e.job(hvaHandle, proto.VerbTerminate, proto.HvaTerminateRequest{InstanceID: "i-p"}),
		errs.InvalidInstanceState)
	e.want("i-p", nil, proto.InstanceStarting, proto.StatusInit, hypervisor.Running)
	if err := e.job(hvaHandle, proto.VerbTerminate, proto.HvaTerminateRequest{InstanceID: "i-p", Force: true}); err != nil {
		t.Fatalf("forced terminate = %v", err)
	}
	e.want("i-p", []string{proto.InstanceShuttingDown, proto.InstanceTerminated}, proto.InstanceTerminated, proto.StatusOffline, "")
}

func TestTerminateTeardownFailureStillTerminates(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-t", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-t", true)
	e.hv.InjectError(dummy.OpUndefine, errBoom)
	err := e.job(hvaHandle, proto.VerbTerminate, proto.HvaTerminateRequest{InstanceID: "i-t"})
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "left on the host") {
		t.Errorf("terminate = %v, want the undefine error saying the domain is left", err)
	}
	e.want("i-t", []string{proto.InstanceShuttingDown, proto.InstanceTerminated},
		proto.InstanceTerminated, proto.StatusOffline, hypervisor.Shutoff)
	e.wantEvents("i-t", proto.EventInstanceTerminated, nodeTerminated)
}

func TestStop(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-s", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-s", true)
	req := proto.HvaStopRequest{InstanceID: "i-s"}
	if err := e.job(hvaHandle, proto.VerbStop, req); err != nil {
		t.Fatalf("stop = %v", err)
	}
	e.want("i-s", []string{proto.InstanceStopping, proto.InstanceStopped}, proto.InstanceStopped, proto.StatusOffline, "")
	if v := e.instance("i-s"); v.HostNode != nil {
		t.Errorf("stopped instance keeps host %+v", v.HostNode)
	}
	// Volumes are not touched (the source marked them deleted).
	if v := e.instance("i-s"); v.Volumes[0].State != proto.VolumePending {
		t.Errorf("stop changed the volume to %s", v.Volumes[0].State)
	}
	e.wantEvents("i-s", proto.EventInstanceTerminated, nodeTerminated)
	if err := e.job(hvaHandle, proto.VerbStop, req); err != nil {
		t.Fatalf("redelivered stop = %v", err)
	}
	if n := len(e.coll.Updates("i-s")); n != 2 {
		t.Errorf("redelivery sent updates (%d in total)", n)
	}

	e.put("i-h", proto.InstanceHalted, proto.StatusOffline)
	wantKind(t, "stop halted", e.job(hvaHandle, proto.VerbStop, proto.HvaStopRequest{InstanceID: "i-h"}), errs.InvalidInstanceState)
}

func TestReboot(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-r", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-r", true)
	if err := e.job(hvaHandle, proto.VerbReboot, proto.HvaRebootRequest{InstanceID: "i-r"}); err != nil {
		t.Fatalf("reboot = %v", err)
	}
	if got := e.hv.Boots("i-r"); got != 2 {
		t.Errorf("boots = %d, want 2", got)
	}
	e.want("i-r", nil, proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)

	e.put("i-h", proto.InstanceHalted, proto.StatusOffline)
	e.withDomain("i-h", false)
	wantKind(t, "reboot halted", e.job(hvaHandle, proto.VerbReboot, proto.HvaRebootRequest{InstanceID: "i-h"}), errs.InvalidInstanceState)
	e.put("i-gone", proto.InstanceRunning, proto.StatusOnline)
	wantKind(t, "reboot without domain", e.job(hvaHandle, proto.VerbReboot, proto.HvaRebootRequest{InstanceID: "i-gone"}), errs.NotFound)
}

func TestPoweroff(t *testing.T) {
	for _, from := range []string{proto.InstanceHalting, proto.InstanceRunning} {
		t.Run(from, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.put("i-o", from, proto.StatusOnline)
			e.withDomain("i-o", true)
			req := proto.HvaPoweroffRequest{InstanceID: "i-o"}
			if err := e.job(hvaHandle, proto.VerbPoweroff, req); err != nil {
				t.Fatalf("poweroff = %v", err)
			}
			want := []string{proto.InstanceHalted}
			if from == proto.InstanceRunning {
				want = []string{proto.InstanceHalting, proto.InstanceHalted}
			}
			// The domain stays defined for poweron.
			e.want("i-o", want, proto.InstanceHalted, proto.StatusOffline, hypervisor.Shutoff)
			e.wantEvents("i-o", proto.EventInstanceTurnedOff)
			if err := e.job(hvaHandle, proto.VerbPoweroff, req); err != nil {
				t.Fatalf("redelivered poweroff = %v", err)
			}
			if got := e.coll.States("i-o"); !slices.Equal(got, want) {
				t.Errorf("redelivery moved the state: %v", got)
			}
		})
	}
}

func TestPoweroffFailureStaysHalting(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-o", proto.InstanceHalting, proto.StatusOnline)
	e.withDomain("i-o", true)
	e.hv.InjectError(dummy.OpStop, errBoom)
	if err := e.job(hvaHandle, proto.VerbPoweroff, proto.HvaPoweroffRequest{InstanceID: "i-o"}); !errors.Is(err, errBoom) {
		t.Errorf("poweroff = %v, want the driver's error", err)
	}
	e.want("i-o", nil, proto.InstanceHalting, proto.StatusOnline, hypervisor.Running)
	e.put("i-s", proto.InstanceStopped, proto.StatusOffline)
	wantKind(t, "poweroff stopped", e.job(hvaHandle, proto.VerbPoweroff, proto.HvaPoweroffRequest{InstanceID: "i-s"}),
		errs.InvalidInstanceState)
}

func TestSoftPoweroff(t *testing.T) {
	t.Run("guest obliges", func(t *testing.T) {
		e := newEnv(t, envOpts{dummy: func(c *dummy.Config) { c.ShutdownDelay = 10 * time.Millisecond }})
		e.put("i-o", proto.InstanceHalting, proto.StatusOnline)
		e.withDomain("i-o", true)
		if err := e.job(hvaHandle, proto.VerbSoftPoweroff, proto.HvaSoftPoweroffRequest{InstanceID: "i-o"}); err != nil {
			t.Fatalf("soft_poweroff = %v", err)
		}
		e.want("i-o", []string{proto.InstanceHalted}, proto.InstanceHalted, proto.StatusOffline, hypervisor.Shutoff)
		e.wantEvents("i-o", proto.EventInstanceTurnedOff)
		for _, c := range e.calls("i-o") {
			if c.Op == dummy.OpStop && c.Force {
				t.Errorf("a guest that powered off was forced: %v", e.calls("i-o"))
			}
		}
	})
	t.Run("guest ignores ACPI", func(t *testing.T) {
		e := newEnv(t, envOpts{
			dummy: func(c *dummy.Config) { c.ShutdownDelay = -1 },
			cfg:   func(c *Config) { c.SoftPoweroffTimeout = 20 * time.Millisecond },
		})
		e.put("i-o", proto.InstanceHalting, proto.StatusOnline)
		e.withDomain("i-o", true)
		if err := e.job(hvaHandle, proto.VerbSoftPoweroff, proto.HvaSoftPoweroffRequest{InstanceID: "i-o"}); err != nil {
			t.Fatalf("soft_poweroff = %v", err)
		}
		e.want("i-o", []string{proto.InstanceHalted}, proto.InstanceHalted, proto.StatusOffline, hypervisor.Shutoff)
		stops := []dummy.Call{}
		for _, c := range e.calls("i-o") {
			if c.Op == dummy.OpStop {
				stops = append(stops, c)
			}
		}
		want := []dummy.Call{{Op: dummy.OpStop, ID: "i-o"}, {Op: dummy.OpStop, ID: "i-o", Force: true}}
		if !slices.Equal(stops, want) {
			t.Errorf("stops = %v, want graceful then forced", stops)
		}
	})
}

func TestPoweron(t *testing.T) {
	for name, defined := range map[string]bool{"domain defined": true, "domain lost": false} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.put("i-on", proto.InstanceHalted, proto.StatusOffline)
			if defined {
				e.withDomain("i-on", false)
			}
			req := proto.HvaPoweronRequest{InstanceID: "i-on"}
			if err := e.job(hvaHandle, proto.VerbPoweron, req); err != nil {
				t.Fatalf("poweron = %v", err)
			}
			e.want("i-on", []string{proto.InstanceStarting, proto.InstanceRunning},
				proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)
			e.wantEvents("i-on", proto.EventInstanceTurnedOn)
			if err := e.job(hvaHandle, proto.VerbPoweron, req); err != nil {
				t.Fatalf("redelivered poweron = %v", err)
			}
			if n := len(e.coll.Updates("i-on")); n != 2 {
				t.Errorf("redelivery sent updates (%d in total)", n)
			}
		})
	}
}

func TestPoweronFromStartingAndFailure(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-on", proto.InstanceStarting, proto.StatusOffline) // the API set starting
	e.withDomain("i-on", false)
	if err := e.job(hvaHandle, proto.VerbPoweron, proto.HvaPoweronRequest{InstanceID: "i-on"}); err != nil {
		t.Fatalf("poweron = %v", err)
	}
	e.want("i-on", []string{proto.InstanceRunning}, proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)

	e.put("i-bad", proto.InstanceHalted, proto.StatusOffline)
	e.withDomain("i-bad", false)
	e.hv.InjectError(dummy.OpStart, errBoom)
	err := e.job(hvaHandle, proto.VerbPoweron, proto.HvaPoweronRequest{InstanceID: "i-bad"})
	if !errors.Is(err, errBoom) || !strings.Contains(err.Error(), "halted") {
		t.Errorf("poweron = %v, want the driver's error saying the instance is halted", err)
	}
	e.want("i-bad", []string{proto.InstanceStarting, proto.InstanceHalted}, proto.InstanceHalted, proto.StatusOffline, hypervisor.Shutoff)
	e.wantEvents("i-bad", proto.EventInstanceTurnedOff)

	e.put("i-run", proto.InstanceTerminated, proto.StatusOffline)
	wantKind(t, "poweron terminated", e.job(hvaHandle, proto.VerbPoweron, proto.HvaPoweronRequest{InstanceID: "i-run"}),
		errs.InvalidInstanceState)
}

func TestCleanup(t *testing.T) {
	e := newEnv(t, envOpts{})
	// Evacuated: the instance now lives on another host; its old VM is here.
	e.coll.Put(proto.InstanceView{ID: "i-ev", State: proto.InstancePending, CPUCores: 2, MemorySize: 1024,
		HostNode: &proto.HostNode{NodeID: "hva.other"}})
	e.withDomain("i-ev", true)
	for i := range 2 {
		if err := e.job(hvaHandle, proto.VerbCleanup, proto.HvaCleanupRequest{InstanceID: "i-ev"}); err != nil {
			t.Fatalf("cleanup #%d = %v", i+1, err)
		}
	}
	e.want("i-ev", nil, proto.InstancePending, "", "")
	e.wantEvents("i-ev", proto.EventInstanceTerminated, nodeTerminated, proto.EventInstanceTerminated, nodeTerminated)

	// Unknown to the managers: nothing to protect.
	e.withDomain("i-unknown", true)
	if err := e.job(hvaHandle, proto.VerbCleanup, proto.HvaCleanupRequest{InstanceID: "i-unknown"}); err != nil {
		t.Fatalf("cleanup unknown = %v", err)
	}
	if e.domain("i-unknown") != "" {
		t.Errorf("domain of an unknown instance left")
	}

	// Still placed here: refused, the VM lives.
	e.put("i-here", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-here", true)
	wantKind(t, "cleanup of a local instance", e.job(hvaHandle, proto.VerbCleanup, proto.HvaCleanupRequest{InstanceID: "i-here"}),
		errs.InvalidInstanceState)
	if e.domain("i-here") != hypervisor.Running {
		t.Errorf("cleanup killed the instance's VM")
	}
}

func TestNicVerbsAreNoOps(t *testing.T) {
	e := newEnv(t, envOpts{})
	if err := e.job(hvaHandle, proto.VerbAttachNic, proto.HvaAttachNicRequest{DcNetwork: "public", VifID: "vif-1"}); err != nil {
		t.Errorf("attach_nic = %v", err)
	}
	if err := e.job(hvaHandle, proto.VerbDetachNic, proto.HvaDetachNicRequest{DcNetwork: "public", VifID: "vif-1"}); err != nil {
		t.Errorf("detach_nic = %v", err)
	}
	if c := e.hv.Calls(); len(c) != 0 {
		t.Errorf("nic verbs called the driver: %v", c)
	}
}

func TestJobsOnOneInstanceAreSerialised(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-l", proto.InstanceRunning, proto.StatusOnline)
	e.withDomain("i-l", true)
	unlock, err := e.h.locks.Lock(context.Background(), "i-l")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = e.jobCtx(ctx, hvaHandle, proto.VerbTerminate, proto.HvaTerminateRequest{InstanceID: "i-l"})
	wantKind(t, "terminate while another job holds the instance", err, errs.Timeout)
	unlock()
	if err := e.job(hvaHandle, proto.VerbTerminate, proto.HvaTerminateRequest{InstanceID: "i-l"}); err != nil {
		t.Fatalf("terminate after unlock = %v", err)
	}
}

func TestCollectorFailureFailsTheJob(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("i-c", proto.InstancePending, proto.StatusInit)
	e.coll.InjectError(proto.VerbUpdateInstance, errs.New(errs.Timeout, "no manager"))
	err := e.job(lsHandle, proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-c"})
	wantKind(t, "boot with managers unreachable", err, errs.Timeout)
	if c := e.hv.Calls(); len(c) != 0 {
		t.Errorf("the domain was touched before the manager knew: %v", c)
	}
	// A redelivery once the managers answer again boots it.
	e.coll.InjectError(proto.VerbUpdateInstance, nil)
	if err := e.job(lsHandle, proto.VerbRunLocalStore, proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-c"}); err != nil {
		t.Fatal(err)
	}
	e.want("i-c", []string{proto.InstanceStarting, proto.InstanceRunning}, proto.InstanceRunning, proto.StatusOnline, hypervisor.Running)
}

func TestLocalStoreDeleteVolumeRecordsDeletion(t *testing.T) {
	e := newEnv(t, envOpts{})
	h, fc := e.h, e.coll
	ctx := context.Background()
	for i := 0; i < 2; i++ { // a redelivered job does the same, harmlessly
		if _, err := h.localStoreDeleteVolume(ctx, proto.LocalStoreDeleteVolumeRequest{InstanceID: "i-a", VolumeID: "vol-a"}); err != nil {
			t.Fatal(err)
		}
	}
	ups := fc.VolumeUpdates()
	if len(ups) != 2 || ups[0].VolumeID != "vol-a" || ups[0].State == nil || *ups[0].State != proto.VolumeDeleted || !ups[0].DetachInstance {
		t.Fatalf("volume updates = %+v", ups)
	}
	if _, err := h.localStoreDeleteVolume(ctx, proto.LocalStoreDeleteVolumeRequest{}); err == nil {
		t.Fatal("a job without a volume id succeeded")
	}
}
