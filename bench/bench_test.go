package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestShortSuite runs `vdcbench all --short` in-process so the harness cannot
// rot. It asserts only that every figure was produced and that no
// acknowledged write was lost — never a time or a rate.
func TestShortSuite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := &Runner{Dir: t.TempDir()}
	rep, err := r.Run(ctx, []string{"raft", "api", "failover"}, ShortOptions(), true)
	if err != nil {
		t.Fatal(err)
	}

	o := ShortOptions()
	if got, want := len(rep.Raft.Rows), len(o.Raft.Managers)*len(o.Raft.Writers); got != want {
		t.Errorf("raft: %d rows, want %d", got, want)
	}
	for _, row := range rep.Raft.Rows {
		if row.Ops() == 0 || len(row.Reps) != o.Raft.Reps {
			t.Errorf("raft %s: %d ops in %d reps", row.Name, row.Ops(), len(row.Reps))
		}
	}
	if rep.API.Seeded != o.API.Seed {
		t.Errorf("api: seeded %d, want %d", rep.API.Seeded, o.API.Seed)
	}
	for _, key := range []string{APIShow, APIShowStale, APIList10, APIListDef, APIPost} {
		row, ok := rep.API.Find(key)
		if !ok || row.Ops() == 0 {
			t.Errorf("api %s: missing or no successful requests (%+v)", key, row)
		}
	}
	if len(rep.Failover.Trials) != o.Failover.Trials {
		t.Errorf("failover: %d trials, want %d", len(rep.Failover.Trials), o.Failover.Trials)
	}
	for i, tr := range rep.Failover.Trials {
		if tr.AckedBeforeKill == 0 || tr.Acked <= tr.AckedBeforeKill || tr.FailoverMs <= 0 {
			t.Errorf("failover trial %d: %+v", i+1, tr)
		}
	}
	if rep.LostAcknowledgedWrites == nil || *rep.LostAcknowledgedWrites != 0 {
		t.Errorf("lost acknowledged writes = %v, want 0", rep.LostAcknowledgedWrites)
	}

	doc := reportJSON(t, rep)
	for _, k := range []string{"raft_commands_per_sec", "api_get_per_sec", "api_post_per_sec", "failover_p99_ms", "lost_acknowledged_writes", "machine"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON has no %q", k)
		}
	}
	m, _ := doc["machine"].(map[string]any)
	for _, k := range []string{"cores", "cpu_model", "go_version", "kernel", "git_commit", "date"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON machine has no %q", k)
		}
	}

	var tables bytes.Buffer
	rep.WriteTables(&tables)
	for _, h := range []string{"## machine", "## raft", "## api", "## failover"} {
		if !strings.Contains(tables.String(), h) {
			t.Errorf("tables lack %q", h)
		}
	}
}

// TestShortPlace runs `vdcbench place --short` in-process: 1 manager, 1
// scheduler daemon and 5 dummy hvas place and terminate 50 instances through
// the API. It asserts only that every instance reached running and then
// terminated, and that the figures reach the report — never a time or a rate.
func TestShortPlace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := &Runner{Dir: t.TempDir()}
	o := ShortOptions()
	rep, err := r.Run(ctx, []string{"place"}, o, true)
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Place
	if p == nil || p.Create == nil || p.Terminate == nil {
		t.Fatalf("place result incomplete: %+v", p)
	}
	if p.Create.Reached != o.Place.Instances || p.Create.Target != "running" {
		t.Errorf("create: %d of %d instances seen %s", p.Create.Reached, o.Place.Instances, p.Create.Target)
	}
	if p.Terminate.Reached != o.Place.Instances || p.Terminate.Target != "terminated" {
		t.Errorf("terminate: %d of %d instances seen %s", p.Terminate.Reached, o.Place.Instances, p.Terminate.Target)
	}
	for _, v := range []*float64{rep.PlacementsPerSec, rep.CreateToRunningP50Ms, rep.CreateToRunningP99Ms, rep.TerminationsPerSec} {
		if v == nil {
			t.Errorf("headline figures missing: %+v", rep)
			break
		}
	}

	path := filepath.Join(t.TempDir(), "out.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"placements_per_sec", "create_to_running_p50_ms", "create_to_running_p99_ms", "terminations_per_sec", "place", "machine"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON has no %q", k)
		}
	}
	var tables bytes.Buffer
	rep.WriteTables(&tables)
	for _, h := range []string{"## machine", "## place", "create → running", "terminate → terminated"} {
		if !strings.Contains(tables.String(), h) {
			t.Errorf("tables lack %q", h)
		}
	}
}

// reportJSON writes rep as --json does and reads the document back.
func reportJSON(t *testing.T, rep *Report) map[string]any {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}
