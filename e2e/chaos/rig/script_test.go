package rig

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
)

// TestNetnsClusterScript brings scripts/netns-cluster.sh's cluster up,
// checks that the API answers and that a partition, a kill and a restart
// act as they say, and that down leaves no namespace, mount or process.
func TestNetnsClusterScript(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	ctx := context.Background()
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	if err := Build(ctx, root, bin); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("chs%d", os.Getpid())
	env := append(os.Environ(), "CH_NAME="+name, "CH_DIR="+filepath.Join(tmp, "rig"), "BIN="+bin)
	script := filepath.Join(root, "scripts", "netns-cluster.sh")
	sh := func(args ...string) (string, error) {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := sh(args...)
		if err != nil {
			t.Fatalf("netns-cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	t.Cleanup(func() {
		if out, err := sh("down"); err != nil {
			t.Errorf("down: %v\n%s", err, out)
		}
	})
	must("up")
	// The netns namespaces exist with the script's names, one per host.
	for _, h := range []string{"sw", "m1", "m2", "m3", "s1", "h1", "h2", "c"} {
		if _, err := os.Stat("/run/netns/" + name + "-" + h); err != nil {
			t.Fatalf("namespace %s-%s: %v", name, h, err)
		}
	}
	api := "http://192.168.252.12:9001/api/12.03"
	testutil.WaitFor(t, 60*time.Second, func() error {
		_, err := sh("curl", "-fsS", "-m", "2", api+"/host_nodes.json")
		return err
	})
	out := must("curl", "-fsS", "-m", "5", "-X", "POST", "-H", "X-VDC-Account-UUID: a-chaos001",
		"-d", "display_name=script", api+"/security_groups.json")
	if !strings.Contains(out, `"display_name":"script"`) {
		t.Fatalf("create through the script's client namespace: %s", out)
	}

	// m1 cut from the rest: m1 cannot reach m2, the client still can.
	reach := func(from, url string) bool {
		return exec.Command("ip", "netns", "exec", name+"-"+from, "curl", "-fsS", "-m", "1", "-o", "/dev/null", url).Run() == nil
	}
	m2 := "http://192.168.252.12:9001/internal/v1/status"
	if !reach("m1", m2) {
		t.Fatal("m1 cannot reach m2 before the partition")
	}
	must("partition", "m1", "m2,m3,s1,h1,h2")
	if reach("m1", m2) || !reach("c", m2) {
		t.Fatalf("partition m1 | rest: m1 reaches m2 %v, client reaches m2 %v", reach("m1", m2), reach("c", m2))
	}
	if st := must("status"); !strings.Contains(st, "m1: partition rules active") {
		t.Fatalf("status does not show the partition:\n%s", st)
	}
	must("heal")
	if !reach("m1", m2) {
		t.Fatal("m1 cannot reach m2 after heal")
	}
	must("isolate", "m2")
	if reach("c", m2) {
		t.Fatal("the client reaches m2 with its switch port down")
	}
	must("heal")

	must("kill", "m2")
	if st := must("status"); !strings.Contains(st, "m2 192.168.252.12 not running") {
		t.Fatalf("status after kill m2:\n%s", st)
	}
	must("start", "m2")
	testutil.WaitFor(t, 60*time.Second, func() error {
		out, err := sh("curl", "-fsS", "-m", "2", m2)
		if err != nil {
			return err
		}
		if !strings.Contains(out, `"leader":"m`) {
			return fmt.Errorf("m2 status %s", out)
		}
		return nil
	})
	must("down")
	for _, h := range []string{"sw", "m1", "m2", "m3", "s1", "h1", "h2", "c"} {
		if _, err := os.Stat("/run/netns/" + name + "-" + h); err == nil {
			t.Errorf("namespace %s-%s left after down", name, h)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), filepath.Join(tmp, "rig")) {
		t.Errorf("a data dir is still mounted after down")
	}
	if out, _ := exec.Command("pgrep", "-f", filepath.Join(tmp, "rig")).Output(); len(out) > 0 {
		t.Errorf("processes left after down: %s", out)
	}
}
