package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
)

// TestApplyWithFullDiskIsNoLeader: a leader whose data dir is full cannot
// write its raft log; raft steps it down without replicating the entry, and
// Apply says NoLeader (retry elsewhere), not an internal error. Found by
// e2e/chaos: an hva's update_instance failed for good that way and left its
// instance in starting. Once space is back the manager writes again.
func TestApplyWithFullDiskIsNoLeader(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	dir := filepath.Join(t.TempDir(), "ch-diskfull")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "vdc-test", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	s := TestServer(t, func(c *Config) { c.DataDir = dir })
	ctx := context.Background()
	if err := put(ctx, s, "before"); err != nil {
		t.Fatal(err)
	}

	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for _, n := range []int{len(buf), 4 << 10, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	f.Close()

	// Entries big enough to need new pages in raft.db.
	var err2 error
	for i := 0; i < 50 && err2 == nil; i++ {
		err2 = put(ctx, s, fmt.Sprintf("full-%d-%0500d", i, i))
	}
	if err2 == nil {
		t.Fatal("50 writes went through a full disk")
	}
	if !errs.Is(err2, errs.NoLeader) {
		t.Fatalf("write on a full disk: %v (kind %v), want NoLeader", err2, errs.KindOf(err2))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		if !s.IsLeader() {
			return fmt.Errorf("not leading again yet")
		}
		return put(ctx, s, "after")
	})
	if !has(s, "before") || !has(s, "after") {
		t.Fatal("writes before and after the full disk are not both there")
	}
}
