package chaos

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/e2e/chaos/rig"
)

// Test flags: `make test` runs the short default, `make test-chaos` a long
// run (see the Makefile).
var (
	chaosDuration = flag.Duration("chaos.duration", 45*time.Second, "how long the nemesis injects faults")
	chaosCycles   = flag.Int("chaos.cycles", 0, "fault cycles to complete at least (the run goes past -chaos.duration until then)")
	chaosSeed     = flag.Uint64("chaos.seed", 0, "random seed (0: from the clock; the log names the one used)")
	chaosHold     = flag.Duration("chaos.hold", 1500*time.Millisecond, "shortest time a fault lasts")
	chaosLogs     = flag.String("chaos.logs", "", "copy the daemons' logs here at the end (they are kept on failure anyway)")
	chaosFaults   = flag.String("chaos.faults", "", "comma-separated fault kinds to inject (default: all, in turn)")
)

const (
	kvClients   = 4
	instClients = 2
)

// TestChaos runs 3 managers, a scheduler and 2 hvas in their own network
// namespaces, has concurrent clients write and read security groups and
// drive instances through any manager while a nemesis injects every fault
// of the rig in turn, then heals everything and checks: the history is
// linearizable (porcupine), stale reads kept their promise, no
// acknowledged write is missing, every job ended, no instance is stuck in a
// transitional state, and no process died that the nemesis did not kill.
func TestChaos(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -chaos.seed=%d)", seed, seed)
	ctx := context.Background()

	dir := t.TempDir()
	root, err := rig.ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := rig.Build(ctx, root, bin); err != nil {
		t.Fatal(err)
	}
	r, err := rig.Start(ctx, rig.Config{Bin: bin, Dir: dir, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		keep := *chaosLogs
		if t.Failed() {
			for _, p := range r.Procs() {
				t.Logf("---- %s log (tail) ----\n%s", p.Name, tail(p.LogPath(), 60))
			}
			if keep == "" {
				keep = filepath.Join(os.TempDir(), fmt.Sprintf("ch-chaos-logs-%d", os.Getpid()))
			}
		}
		// The daemons' logs outlive the test's temporary dir.
		if keep != "" {
			if err := os.CopyFS(keep, os.DirFS(filepath.Join(dir, "logs"))); err != nil {
				t.Logf("keep logs: %v", err)
			} else {
				t.Logf("daemon logs kept in %s", keep)
			}
		}
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	})
	hc, err := r.HTTPClient(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitHealthy(ctx, hc, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	api := &API{HTTP: hc}
	var targets []Target
	for _, m := range r.Managers {
		targets = append(targets, Target{Name: m.Name, API: m.API})
	}
	probe := setupCatalog(t, api, r)

	h := NewHistory()
	t.Logf("history time 0 is %s", time.Now().Format("15:04:05.000"))
	w := &Workload{API: api, Targets: targets, H: h, Seed: seed, Network: "nw-chaos1", Image: "wmi-chaos1",
		MaxInstances: 12 + int(chaosDuration.Seconds()/10)}
	n := &Nemesis{Rig: r, API: api, HTTP: hc, Rand: rand.New(rand.NewPCG(seed, 99)), Probe: probe,
		Hold: *chaosHold, Logf: t.Logf, Clock: h.Now}
	hostOf := func(p *rig.Proc) string { return "hn-ch" + strings.TrimPrefix(p.Name, "h") }
	n.OnKill = func(p *rig.Proc) {
		if p.Role == rig.RoleHva {
			now := h.Now()
			w.HvaLost(kvClients+instClients+1, hostOf(p), now, now)
		}
	}
	n.OnHvaCut = func(p *rig.Proc, from, to int64) {
		w.HvaLost(kvClients+instClients+1, hostOf(p), from, to)
	}

	wctx, stopClients := context.WithCancel(ctx)
	clientsDone := make(chan struct{})
	go func() {
		defer close(clientsDone)
		w.Run(wctx, kvClients, instClients)
	}()
	kinds := FaultKinds
	if *chaosFaults != "" {
		kinds = strings.Split(*chaosFaults, ",")
		for _, k := range kinds {
			if !slices.Contains(FaultKinds, k) {
				t.Fatalf("unknown fault %q (known: %v)", k, FaultKinds)
			}
		}
	}
	start := time.Now()
	var nemErr error
	for i := 0; time.Since(start) < *chaosDuration || i < *chaosCycles; i++ {
		if nemErr = n.Cycle(ctx, kinds[i%len(kinds)]); nemErr != nil {
			break
		}
		time.Sleep(time.Duration(200+n.Rand.IntN(500)) * time.Millisecond) // clients work between faults
	}
	stopClients()
	<-clientsDone
	if nemErr != nil {
		t.Errorf("nemesis: %v", nemErr)
	}
	if err := n.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitHealthy(ctx, hc, 90*time.Second); err != nil {
		// Where are they stuck? The stacks go to the kept logs.
		for _, m := range r.Managers {
			m.DumpStacks()
		}
		t.Fatal(err)
	}
	t.Logf("%d fault cycles in %s; workload: %s", len(n.Faults), time.Since(start).Round(time.Second), w.Stats())
	t.Logf("failed requests:%s", w.Failures())

	jobsEnd := checkJobsEnd(t, api, targets[0])
	checkInstancesSettled(t, api, targets[0])
	if err := w.FinalReads(ctx, targets[n.Rand.IntN(len(targets))], kvClients+instClients); err != nil {
		t.Fatal(err)
	}

	kv, inst, stale := h.KV(), h.Inst(), h.Stale()
	t.Logf("history: %d group ops:%s", len(kv), FormatCounts(Counts(kv)))
	t.Logf("history: %d instance ops:%s", len(inst), FormatCounts(Counts(inst)))
	t.Logf("history: %d stale reads", len(stale))
	checkLinearizable(t, "security groups", KVModel, kv)
	checkLinearizable(t, "instances", InstModel, inst)
	if lost := LostWrites(kv); len(lost) > 0 {
		t.Errorf("%d acknowledged writes missing after the heal:\n%s", len(lost), strings.Join(lost, "\n"))
	}
	if bad := CheckStale(kv, stale); len(bad) > 0 {
		t.Errorf("%d stale-read violations:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	for _, f := range w.Findings() {
		t.Errorf("workload: %s", f)
	}
	for _, c := range n.Crashes {
		t.Errorf("crash: %s", c)
	}
	reportFaults(t, n.Faults)
	t.Logf("every job ended %.1fs after the heal", jobsEnd.Seconds())
}

// setupCatalog registers what instances need and the nemesis's probe
// group; it returns the probe's id.
func setupCatalog(t *testing.T, api *API, r *rig.Rig) string {
	t.Helper()
	base := r.Managers[0].API
	must := func(method, path string, form url.Values, account string) map[string]any {
		t.Helper()
		res := api.Do(context.Background(), base, method, path, form, account)
		if res.Err != nil {
			t.Fatalf("setup %s %s: %v", method, path, res.Err)
		}
		return res.Map()
	}
	must("POST", "/dc_networks.json", url.Values{"uuid": {"dcn-chaos1"}, "name": {"chaos"}}, "")
	must("PUT", "/dc_networks/dcn-chaos1.json", url.Values{"allow_new_networks": {"true"}}, "")
	must("PUT", "/dc_networks/dcn-chaos1/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}, "")
	must("POST", "/networks.json", url.Values{"uuid": {"nw-chaos1"}, "dc_network": {"dcn-chaos1"},
		"network": {"172.30.0.0"}, "prefix": {"16"}, "gw": {"172.30.0.1"}, "network_mode": {"securitygroup"},
		"dhcp_range": {"default"}, "account_id": {Account}}, "")
	for i := range r.Hvas {
		must("POST", "/host_nodes.json", url.Values{"uuid": {fmt.Sprintf("hn-ch%d", i+1)},
			"node_id": {rig.HvaNodeID(i + 1)}, "arch": {"x86_64"}, "hypervisor": {"dummy"},
			"offering_cpu_cores": {"64"}, "offering_memory_size": {"65536"}, "offering_disk_space_mb": {"1000000"}}, "")
	}
	must("POST", "/backup_storages.json", url.Values{"uuid": {"bkst-chaos1"}, "storage_type": {"local"},
		"base_uri": {"file:///tmp/ch-chaos/"}}, "")
	must("POST", "/backup_objects.json", url.Values{"uuid": {"bo-chaos1"}, "backup_storage_id": {"bkst-chaos1"},
		"size": {"33554432"}, "state": {"available"}, "account_id": {Account}}, "")
	must("POST", "/images.json", url.Values{"uuid": {"wmi-chaos1"}, "backup_object_id": {"bo-chaos1"},
		"arch": {"x86_64"}, "boot_dev_type": {"2"}, "is_public": {"true"}, "account_id": {Account}}, "")
	probe := must("POST", "/security_groups.json", url.Values{"display_name": {"probe"}}, Account)["id"].(string)
	testutil.WaitFor(t, 60*time.Second, func() error {
		for i := range r.Hvas {
			doc := api.Do(context.Background(), base, "GET", fmt.Sprintf("/host_nodes/hn-ch%d.json", i+1), nil, "")
			if doc.Err != nil {
				return doc.Err
			}
			if st := doc.Map()["status"]; st != "online" {
				return fmt.Errorf("host hn-ch%d is %v", i+1, st)
			}
		}
		return nil
	})
	return probe
}

// checkJobsEnd polls until no job is pending or running (bounded) and
// returns how long that took.
func checkJobsEnd(t *testing.T, api *API, tg Target) time.Duration {
	t.Helper()
	start := time.Now()
	var open []map[string]any
	deadline := start.Add(3 * time.Minute)
	for {
		open = open[:0]
		for _, st := range []string{"pending", "running"} {
			res := api.Do(context.Background(), tg.API, "GET", "/jobs.json?limit=1000&state="+st, nil, "")
			docs, _, err := listResults(res.Doc)
			if res.Err != nil || err != nil {
				open = append(open, map[string]any{"error": fmt.Sprint(res.Err, err)})
				continue
			}
			open = append(open, docs...)
		}
		if len(open) == 0 {
			took := time.Since(start)
			summarizeJobs(t, api, tg)
			return took
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	var lines []string
	for _, j := range open {
		lines = append(lines, fmt.Sprintf("  %v %v %v resource %v worker %v params %v", j["id"], j["state"], j["queue_name"],
			j["resource_id"], j["worker_id"], j["params"]))
	}
	t.Errorf("%d jobs still unfinished 3 minutes after the heal:\n%s", len(open), strings.Join(lines, "\n"))
	return time.Since(start)
}

// summarizeJobs logs the jobs by outcome, with the reasons of failures.
func summarizeJobs(t *testing.T, api *API, tg Target) {
	t.Helper()
	res := api.Do(context.Background(), tg.API, "GET", "/jobs.json?limit=100000", nil, "")
	docs, _, err := listResults(res.Doc)
	if res.Err != nil || err != nil {
		t.Logf("jobs: %v %v", res.Err, err)
		return
	}
	outcomes := map[string]int{}
	for _, j := range docs {
		k := fmt.Sprintf("%v/%v", endpointBase(fmt.Sprint(j["queue_name"])), j["finish_status"])
		if j["finish_status"] != "success" {
			msg := fmt.Sprint(j["finish_message"])
			if m, ok := j["finish_message"].(map[string]any); ok {
				msg = fmt.Sprint(m["message"])
			}
			if len(msg) > 90 {
				msg = msg[:90] + "..."
			}
			k += ": " + msg
		}
		outcomes[k]++
	}
	var lines []string
	for k, n := range outcomes {
		lines = append(lines, fmt.Sprintf("  %5d %s", n, k))
	}
	sort.Strings(lines)
	t.Logf("%d jobs:\n%s", len(docs), strings.Join(lines, "\n"))
}

// endpointBase strips the node from a queue name (hva-handle.hva.ch1 ->
// hva-handle).
func endpointBase(q string) string {
	base, _, _ := strings.Cut(q, ".")
	return base
}

// checkInstancesSettled: once every job ended, no instance of the account
// may be left in a transitional state (nothing would move it on).
func checkInstancesSettled(t *testing.T, api *API, tg Target) {
	t.Helper()
	res := api.Do(context.Background(), tg.API, "GET", "/instances.json?limit=100000", nil, Account)
	docs, total, err := listResults(res.Doc)
	if res.Err != nil || err != nil || total != len(docs) {
		t.Fatalf("list instances: %v %v (%d of %d)", res.Err, err, len(docs), total)
	}
	states := map[string]int{}
	for _, d := range docs {
		st, _ := d["state"].(string)
		states[st]++
		if !slices.Contains([]string{"running", "halted", "stopped", "terminated"}, st) {
			t.Errorf("instance %v is stuck in %s (status %v) with every job ended", d["id"], st, d["status"])
		}
	}
	t.Logf("instances after the heal: %v", states)
}

func checkLinearizable(t *testing.T, name string, m porcupine.Model, h []porcupine.Operation) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(m, h, 3*time.Minute)
	switch res {
	case porcupine.Ok:
		t.Logf("%s: %d operations, linearizable", name, len(h))
		return
	case porcupine.Unknown:
		t.Errorf("%s: the checker timed out on %d operations", name, len(h))
		return
	}
	path := filepath.Join(os.TempDir(), fmt.Sprintf("ch-chaos-%s-%d.html", strings.ReplaceAll(name, " ", "-"), os.Getpid()))
	if err := porcupine.VisualizePath(m, info, path); err == nil {
		t.Logf("visualization: %s", path)
	}
	shown := 0
	for _, part := range m.Partition(h) {
		if porcupine.CheckOperations(m, part) || shown >= 3 {
			continue
		}
		shown++
		t.Errorf("%s: NOT linearizable; the failing part's history:\n%s", name, Describe(m, part))
	}
	if shown == 0 {
		t.Errorf("%s: NOT linearizable", name)
	}
}

// reportFaults logs the faults by kind and the measured times.
func reportFaults(t *testing.T, fs []Fault) {
	t.Helper()
	byKind := map[string][]Fault{}
	for _, f := range fs {
		byKind[f.Kind] = append(byKind[f.Kind], f)
	}
	for _, k := range FaultKinds {
		list := byKind[k]
		if len(list) == 0 {
			continue
		}
		var avail, rec, wr []time.Duration
		never := 0
		for _, f := range list {
			if f.Available == 0 {
				never++
			} else {
				avail = append(avail, f.Available)
			}
			rec = append(rec, f.Recovered)
			wr = append(wr, f.Writable)
		}
		t.Logf("fault %-16s x%-3d writes during fault after p50 %s p99 %s (none: %d); healthy after heal p50 %s max %s; writable after heal p50 %s max %s",
			k, len(list), pct(avail, 50), pct(avail, 99), never, pct(rec, 50), pct(rec, 100), pct(wr, 50), pct(wr, 100))
	}
	// Leader failover under the workload: from the fault that took the
	// leader away to the first write a manager it spared acknowledged.
	var failover []time.Duration
	never := 0
	for _, k := range leaderFaults {
		for _, f := range byKind[k] {
			if f.Available == 0 {
				never++
			} else {
				failover = append(failover, f.Available)
			}
		}
	}
	if len(failover)+never > 0 {
		t.Logf("leader failover under load (%s: fault to next acknowledged write) n=%d p50 %s p99 %s max %s (no write during the fault: %d)",
			strings.Join(leaderFaults, ", "), len(failover), pct(failover, 50), pct(failover, 99), pct(failover, 100), never)
	}
}

// leaderFaults are the faults that take the leader away from the other
// managers.
var leaderFaults = []string{"kill-leader", "partition-leader", "pause-leader", "oneway-leader"}

func pct(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	ds = slices.Clone(ds)
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	i := (len(ds)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	if i > len(ds) {
		i = len(ds)
	}
	return fmt.Sprintf("%.2fs", ds[i-1].Seconds())
}
