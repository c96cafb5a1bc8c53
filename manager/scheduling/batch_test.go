package scheduling

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// submitBatch submits plans as one batch.
func (e *env) submitBatch(plans ...proto.SubmitPlanRequest) []proto.PlanResult {
	e.t.Helper()
	resp, err := e.submit(proto.SubmitPlanRequest{Plans: plans})
	if err != nil {
		e.t.Fatalf("submit batch: %v", err)
	}
	if len(resp.Results) != len(plans) {
		e.t.Fatalf("%d results for %d plans", len(resp.Results), len(plans))
	}
	return resp.Results
}

// A batch is re-checked plan by plan: the plans that hold are applied in
// one transaction (the host's usage is the sum of theirs, written once),
// the others get the error they would have got alone and change nothing.
func TestSubmitBatch(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(2, 16384)
	for _, id := range []string{"i-aaaa0001", "i-aaaa0002", "i-aaaa0003", "i-aaaa0004"} {
		e.seedInstance(id, 1, 512, 1, eth0)
	}
	// Planned on views that do not know of each other: all on hn-demo1,
	// 1 and 2 on the same first address.
	p1, p2, p3, p4 := e.plan("i-aaaa0001", false, 1), e.plan("i-aaaa0002", false, 2), e.plan("i-aaaa0003", false, 3), e.plan("i-aaaa0004", false, 4)
	p3.Nics[0].IPv4Address, p4.Nics[0].IPv4Address = "10.0.0.12", "10.0.0.13"
	before := len(all[proto.IPLease](e, proto.KindIPLease))
	res := e.submitBatch(p1, p2, p1, p3, p4)

	if res[0].Error != nil || res[0].HostNodeID != "hn-demo1" || len(res[0].VifIDs) != 1 || len(res[0].JobIDs) != 1 {
		t.Errorf("plan 1 = %+v", res[0])
	}
	wantErr := func(i int, kind errs.Kind, msg string) {
		t.Helper()
		err := rpc.FromWire(res[i].Error)
		if !errs.Is(err, kind) || !strings.Contains(err.Error(), msg) {
			t.Errorf("plan %d: %v, want kind %v %q", i+1, err, kind, msg)
		}
	}
	wantErr(1, errs.Conflict, "address 10.0.0.10 of network nw-demo1 is taken")
	wantErr(2, errs.InvalidParameter, "placed twice in one batch")
	if res[3].Error != nil {
		t.Errorf("plan 4 = %+v", res[3])
	}
	// Two cores: the third plan that holds finds none left.
	wantErr(4, errs.Conflict, "has no room")

	var u proto.HostUsage
	e.get(proto.KindHostUsage, "hn-demo1", &u)
	if u.CPUCores != 2 || u.MemorySize != 1024 || u.DiskBytes != 2<<30 ||
		!slices.Equal(u.Instances, []string{"i-aaaa0001", "i-aaaa0003"}) {
		t.Errorf("usage = %+v", u)
	}
	for id, want := range map[string]string{"i-aaaa0001": proto.InstancePending, "i-aaaa0002": proto.InstanceScheduling,
		"i-aaaa0003": proto.InstancePending, "i-aaaa0004": proto.InstanceScheduling} {
		var inst proto.Instance
		e.get(proto.KindInstance, id, &inst)
		if inst.State != want {
			t.Errorf("%s is %s, want %s", id, inst.State, want)
		}
	}
	if n := len(all[proto.IPLease](e, proto.KindIPLease)); n != before+2 {
		t.Errorf("%d leases, want %d", n, before+2)
	}

	// The same batch again (its answer lost): the applied plans are
	// recognised, nothing is written twice.
	res = e.submitBatch(p1, p3)
	if !res[0].AlreadyApplied || !res[1].AlreadyApplied {
		t.Errorf("resubmitted = %+v", res)
	}
	e.get(proto.KindHostUsage, "hn-demo1", &u)
	if u.CPUCores != 2 {
		t.Errorf("usage after the resubmit = %+v", u)
	}
}

// get_view answers a batch: the requests of the instances that exist, with
// or without the cluster part.
func TestGetViewBatch(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(8, 16384)
	e.seedInstance("i-aaaa0001", 1, 512, 1, eth0)
	e.seedInstance("i-aaaa0002", 2, 1024, 0, eth0)
	var w proto.SchedView
	if err := e.call(proto.VerbGetView, proto.GetViewRequest{InstanceIDs: []string{"i-aaaa0002", "i-nothere", "i-aaaa0001"}}, &w); err != nil {
		t.Fatal(err)
	}
	if len(w.Hosts) != 1 || len(w.Networks) != 1 || len(w.Requests) != 2 ||
		w.Requests[0].InstanceID != "i-aaaa0002" || w.Requests[1].InstanceID != "i-aaaa0001" ||
		len(w.Requests[1].Volumes) != 1 || w.Requests[0].CPU != 2 {
		t.Fatalf("view = %+v", w)
	}
	var r proto.SchedView
	if err := e.call(proto.VerbGetView, proto.GetViewRequest{InstanceIDs: []string{"i-aaaa0001"}, RequestsOnly: true}, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Hosts) != 0 || len(r.Networks) != 0 || len(r.Requests) != 1 || r.Index != w.Index {
		t.Fatalf("requests-only view = %+v", r)
	}
}

// countPlans counts the daemon's "instance placed" records by batch size.
type countPlans struct {
	mu      sync.Mutex
	batches map[int64]int
}

func (c *countPlans) Enabled(context.Context, slog.Level) bool { return true }
func (c *countPlans) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "instance placed" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "batch" {
			c.mu.Lock()
			c.batches[a.Value.Int64()]++
			c.mu.Unlock()
		}
		return true
	})
	return nil
}
func (c *countPlans) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *countPlans) WithGroup(string) slog.Handler      { return c }

// The daemon places the jobs that wait together: many instances per view
// and plan, each address and MAC once, and the view it keeps follows its
// own placements across batches.
func TestDaemonPlacesInBatches(t *testing.T) {
	e := newEnv(t)
	e.seedCluster(64, 64<<10)
	e.seed(func(b *state.Builder) {
		b.Update(proto.KindNetwork, "nw-demo1", 0, proto.Network{ID: "nw-demo1", IPv4Network: "10.0.0.0", Prefix: 24,
			IPv4Gw: ptr("10.0.0.1"), DhcpRanges: []proto.DhcpRange{{Begin: "10.0.0.10", End: "10.0.0.250"}}})
	})
	const n = 60
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("i-b%07d", i)
		e.seedInstance(ids[i], 1, 256, 0, eth0)
	}
	cfg := daemon.DefaultConfig()
	cfg.Managers = []string{e.addr}
	c := rpc.NewClient(rpc.ClientConfig{})
	t.Cleanup(c.Close)
	counts := &countPlans{batches: map[int64]int{}}
	p, err := daemon.NewPlacer(cfg, c, func() []string { return cfg.Managers }, slog.New(counts))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errsOf := make([]error, n)
	for i, id := range ids {
		wg.Go(func() {
			_, errsOf[i] = p.ScheduleInstance(ctx, proto.ScheduleInstanceRequest{InstanceID: id})
		})
	}
	wg.Wait()
	for i, err := range errsOf {
		if err != nil {
			t.Errorf("%s: %v", ids[i], err)
		}
	}
	counts.mu.Lock()
	batched := 0
	for size, placed := range counts.batches {
		if size > 1 {
			batched += placed
		}
	}
	counts.mu.Unlock()
	if batched == 0 {
		t.Errorf("no instance was placed in a batch of more than one: %v", counts.batches)
	}
	addrs, macs := map[string]bool{}, map[string]bool{}
	for _, v := range all[proto.NetworkVif](e, proto.KindNetworkVif) {
		if addrs[*v.IPv4Address] || macs[v.MacAddr] {
			t.Errorf("address %s or MAC %s given twice", *v.IPv4Address, v.MacAddr)
		}
		addrs[*v.IPv4Address], macs[v.MacAddr] = true, true
	}
	if len(addrs) != n {
		t.Errorf("%d vifs, want %d", len(addrs), n)
	}
	var u proto.HostUsage
	e.get(proto.KindHostUsage, "hn-demo1", &u)
	if u.CPUCores != n || len(u.Instances) != n {
		t.Errorf("usage = %d cores, %d instances; want %d", u.CPUCores, len(u.Instances), n)
	}
}
