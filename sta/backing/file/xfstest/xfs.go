// Package xfstest mounts scratch XFS filesystems with reflink for the real
// tier (root): a sparse image file under /var/tmp, formatted with
// mkfs.xfs -m reflink=1 and loop-mounted, unmounted and removed when the
// test ends, pass or fail.
package xfstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Prefix starts the names of everything made on the host (the sta's
// host-resource prefix), so that other users of the machine can tell them.
const Prefix = "st-"

// Mount makes a reflink XFS of size bytes (at least 300 MiB: mkfs.xfs
// refuses less) and returns its mount point. The test must run as root
// (testutil.Real with NeedRoot first).
func Mount(t testing.TB, size int64) string {
	t.Helper()
	base, err := os.MkdirTemp("/var/tmp", Prefix+"xfs-")
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(base, "fs.img")
	mnt := filepath.Join(base, "mnt")
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil && !strings.Contains(string(out), "not mounted") {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
		os.RemoveAll(base)
	})
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run("truncate", "-s", fmt.Sprint(size), img)
	run("mkfs.xfs", "-q", "-m", "reflink=1", img)
	// The kernel frees the loop device at umount (autoclear).
	run("mount", "-o", "loop", img, mnt)
	return mnt
}
