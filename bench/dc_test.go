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

// TestShortDC runs `vdcbench dc --short`: a dcmgr, a scheduler and 4 dummy
// hvas in 2 hvasim processes, built from this tree, place and terminate 20
// instances. It asserts that membership converged, that every instance
// reached running and then terminated, and that the figures reach the
// report — never a time or a rate.
func TestShortDC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemons as processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+"/",
		"github.com/vdc-project/vdc/manager/cmd/dcmgr",
		"github.com/vdc-project/vdc/scheduler/cmd/scheduler",
		"github.com/vdc-project/vdc/bench/cmd/vdcbench")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	o := ShortOptions()
	o.DC.Bin, o.DC.Self = bin, filepath.Join(bin, "vdcbench")
	r := &Runner{Dir: t.TempDir()}
	rep, err := r.Run(ctx, []string{"dc"}, o, true)
	if err != nil {
		t.Fatal(err)
	}
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
	if rep.PlacementsPerSec == nil || rep.AgentsConvergeSeconds == nil || rep.LeaderRSSMBAfterCreate == nil {
		t.Errorf("headline figures missing: %+v", rep)
	}
	var tables bytes.Buffer
	rep.WriteTables(&tables)
	for _, h := range []string{"## dc", "create → running", "terminate → terminated", "Membership"} {
		if !strings.Contains(tables.String(), h) {
			t.Errorf("tables lack %q", h)
		}
	}
}
