package bench

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortDC runs the process benchmarks' short modes on dcmgr, scheduler
// and vdcbench binaries built from this tree: dc, dcfailover, scale and
// serf. They assert what each run must show — every instance running then
// terminated, no acknowledged create lost, no job left, every figure
// reported — never a time or a rate.
func TestShortDC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemons as processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+"/",
		"github.com/vdc-project/vdc/manager/cmd/dcmgr",
		"github.com/vdc-project/vdc/scheduler/cmd/scheduler",
		"github.com/vdc-project/vdc/bench/cmd/vdcbench")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	self := filepath.Join(bin, "vdcbench")
	opts := func() Options {
		o := ShortOptions()
		o.DC.Bin, o.DC.Self = bin, self
		o.DCFailover.Bin, o.DCFailover.Self = bin, self
		o.Scale.Bin, o.Scale.Self = bin, self
		o.Serf.Bin, o.Serf.Self = bin, self
		return o
	}
	run := func(t *testing.T, which string, o Options) *Report {
		t.Helper()
		r := &Runner{Dir: t.TempDir()}
		rep, err := r.Run(ctx, []string{which}, o, true)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	tablesHave := func(t *testing.T, rep *Report, heads ...string) {
		t.Helper()
		var tables bytes.Buffer
		rep.WriteTables(&tables)
		for _, h := range heads {
			if !strings.Contains(tables.String(), h) {
				t.Errorf("tables lack %q", h)
			}
		}
	}
	jsonHas := func(t *testing.T, rep *Report, keys ...string) {
		t.Helper()
		doc := reportJSON(t, rep)
		for _, k := range keys {
			if _, ok := doc[k].(float64); !ok {
				t.Errorf("JSON has no number %q", k)
			}
		}
	}

	t.Run("dc", func(t *testing.T) {
		o := opts()
		rep := run(t, "dc", o)
		d := rep.DC
		if d == nil || d.Create == nil || d.Terminate == nil {
			t.Fatalf("dc result incomplete: %+v", d)
		}
		if d.ManagerSeesAllSeconds < 0 || d.AgentsConvergedSeconds < 0 {
			t.Errorf("membership did not converge: %+v", d)
		}
		if d.Create.Reached != o.DC.Instances || d.Terminate.Reached != o.DC.Instances {
			t.Errorf("create reached %d, terminate %d, of %d", d.Create.Reached, d.Terminate.Reached, o.DC.Instances)
		}
		if d.UnfinishedJobs != 0 || d.UnfinishedJobsEnd != 0 {
			t.Errorf("jobs left unfinished: %d after create, %d after terminate", d.UnfinishedJobs, d.UnfinishedJobsEnd)
		}
		if rep.PlacementsPerSec == nil || rep.AgentsConvergeSeconds == nil || rep.LeaderRSSMBAfterCreate == nil {
			t.Errorf("headline figures missing: %+v", rep)
		}
		tablesHave(t, rep, "## dc", "create → running", "terminate → terminated", "Membership")
	})

	// The leader is killed (SIGKILL) while instances are created: no
	// acknowledged create may be missing afterwards, no job left.
	t.Run("dcfailover", func(t *testing.T) {
		o := opts()
		rep := run(t, "dcfailover", o)
		d := rep.DCFailover
		if d == nil || d.Create == nil || d.Terminate == nil {
			t.Fatalf("dcfailover result incomplete: %+v", d)
		}
		if len(d.Kills) == 0 {
			t.Fatalf("no leader was killed (the create phase ended first?): %+v", d.Create)
		}
		for i, k := range d.Kills {
			if k.FailoverMs < 0 || k.RejoinMs <= 0 {
				t.Errorf("kill %d: writes did not come back or the manager did not rejoin: %+v", i+1, k)
			}
		}
		if d.LostAcked != 0 {
			t.Errorf("%d acknowledged creates lost", d.LostAcked)
		}
		if d.UnfinishedJobs != 0 || d.UnfinishedJobsEnd != 0 {
			t.Errorf("jobs left unfinished: %d after create, %d after terminate", d.UnfinishedJobs, d.UnfinishedJobsEnd)
		}
		// Every acknowledged instance ran, then terminated.
		if acked := d.Create.Requested - d.Create.Failed; d.Create.Reached != acked || d.Terminate.Reached != acked {
			t.Errorf("of %d acknowledged creates %d ran and %d terminated", acked, d.Create.Reached, d.Terminate.Reached)
		}
		jsonHas(t, rep, "dc_leader_kills", "dc_failover_p50_ms", "dc_failover_p99_ms", "dc_lost_acknowledged_creates", "dc_unfinished_jobs")
		tablesHave(t, rep, "dc failover under load", "acknowledged creates lost")
	})

	t.Run("scale", func(t *testing.T) {
		o := opts()
		o.Scale.Managers = []int{1, 3}
		rep := run(t, "scale", o)
		s := rep.Scale
		if s == nil || len(s.Runs) != len(o.Scale.Managers) {
			t.Fatalf("scale: %+v", s)
		}
		for _, run := range s.Runs {
			if len(run.Points) != len(o.Scale.Sizes) {
				t.Fatalf("%d managers: %d points, want %d", run.Managers, len(run.Points), len(o.Scale.Sizes))
			}
			for _, pt := range run.Points {
				if pt.Records["instances"] != pt.Instances || pt.Records["volumes"] != pt.Instances || pt.Records["network_vifs"] != pt.Instances {
					t.Errorf("%d managers at %d: records %v", run.Managers, pt.Instances, pt.Records)
				}
				if pt.UnfinishedJb != 0 {
					t.Errorf("%d managers at %d: %d jobs unfinished", run.Managers, pt.Instances, pt.UnfinishedJb)
				}
				l, ok := pt.leader()
				if !ok || l.RSSMB <= 0 || l.StateDBMB <= 0 || l.RaftDBMB <= 0 || len(pt.Managers) != run.Managers {
					t.Errorf("%d managers at %d: memory and files %+v", run.Managers, pt.Instances, pt.Managers)
				}
				for _, lr := range pt.Latency {
					if lr.N != o.Scale.Samples || lr.Errors != 0 {
						t.Errorf("%d managers at %d: %s: %d answers, %d errors", run.Managers, pt.Instances, lr.Name, lr.N, lr.Errors)
					}
				}
				if want := 2 + run.Managers/3; len(pt.Restarts) != want {
					t.Errorf("%d managers at %d: %d restarts, want %d", run.Managers, pt.Instances, len(pt.Restarts), want)
				}
				for _, m := range pt.Restarts {
					if m.CaughtUpMs <= 0 || m.Index == 0 {
						t.Errorf("%d managers at %d: restart %+v", run.Managers, pt.Instances, m)
					}
				}
			}
		}
		jsonHas(t, rep, "scale_instances", "scale_rss_mb", "scale_state_db_mb", "scale_raft_db_mb", "scale_show_p99_ms",
			"scale_list_100_p99_ms", "scale_restart_ms", "scale_snapshot_restore_ms", "scale_3m_leader_rss_mb", "scale_3m_follower_catchup_ms")
		tablesHave(t, rep, "## scale", "### 1 manager(s)", "### 3 manager(s)", "data_dir_lost")
	})

	t.Run("serf", func(t *testing.T) {
		o := opts()
		rep := run(t, "serf", o)
		s := rep.Serf
		if s == nil || len(s.Rows) != len(o.Serf.Agents)*len(o.Serf.Tunes) {
			t.Fatalf("serf: %+v", s)
		}
		for _, row := range s.Rows {
			if row.ManagerSeesAllSeconds < 0 || row.AgentsConvergedSeconds < 0 {
				t.Errorf("%d hvas, tune %q: did not converge: %+v", row.Agents, row.Tune, row)
			}
		}
		tablesHave(t, rep, "## serf")
	})
}
