package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Need is a part of the machine a real-component test uses.
type Need string

// What real-component tests may need (scripts/host-setup.sh provides all).
const (
	// NeedRoot: netns, bridges, nftables, loop mounts.
	NeedRoot Need = "root"
	// NeedLibvirt: libvirtd's socket.
	NeedLibvirt Need = "libvirtd"
	// NeedTgt: a running tgtd.
	NeedTgt Need = "tgtd"
)

// LibvirtSocket is where host-setup.sh's libvirtd listens.
const LibvirtSocket = "/run/libvirt/libvirt-sock"

// RealEnv is the environment variable that makes Real fail instead of skip:
// CI sets it (after scripts/host-setup.sh), so the real tier cannot
// silently skip there.
const RealEnv = "VDC_REAL"

// Real runs the rest of the test only where the real-component tier can
// run: not with -short, as root, with every need present. Elsewhere it
// skips, unless VDC_REAL=1, where a missing part fails the test.
func Real(t testing.TB, needs ...Need) {
	t.Helper()
	required := os.Getenv(RealEnv) == "1"
	if testing.Short() && !required {
		t.Skip("real-component test: skipped with -short")
	}
	missing := func(what string) {
		t.Helper()
		if required {
			t.Fatalf("real-component test: %s is missing (run scripts/host-setup.sh)", what)
		}
		t.Skipf("real-component test: %s is missing (run scripts/host-setup.sh as root, or set %s=1 to make this fail)", what, RealEnv)
	}
	if os.Geteuid() != 0 {
		missing("root")
	}
	for _, n := range needs {
		switch n {
		case NeedLibvirt:
			if _, err := os.Stat(LibvirtSocket); err != nil {
				missing("libvirtd (" + LibvirtSocket + ")")
			}
		case NeedTgt:
			if err := exec.Command("tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "sys").Run(); err != nil {
				missing("tgtd")
			}
		}
	}
}
