package libvirt_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/hypervisortest"
	"github.com/vdc-project/vdc/hva/hypervisor/libvirt"
)

// atNode marks the domains of the hot-plug tests (prefix at).
const atNode = "hva.attest"

// atTempDir is a directory under /var/tmp named with the at prefix.
func atTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "at-lv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// rawFile makes a sparse raw file of size bytes.
func rawFile(t *testing.T, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDiskConformance runs the hot-plug suite on libvirt: file disks on
// firmware-only domains, and on a booted tiny guest that releases a
// hot-unplugged disk (ACPI PCI hotplug).
func TestDiskConformance(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	consoles := atTempDir(t)
	files := atTempDir(t)
	hypervisortest.RunDisks(t, hypervisortest.DiskOptions{
		New:      func(t *testing.T) hypervisortest.DiskHypervisor { return newDriver(t, atNode, consoles) },
		IDPrefix: "at",
		GuestSpec: func(t *testing.T, id string) hypervisor.Spec {
			spec := acpiGuestSpec(t, id)
			spec.Disks[0].VolumeID = "vol-atboot"
			return spec
		},
		GuestReady: func(t *testing.T, id string) { waitConsole(t, libvirt.ConsoleLog(consoles, id), "vdc-guest: ") },
		Disk: func(t *testing.T, vol string) hypervisor.Disk {
			return hypervisor.Disk{VolumeID: vol, Path: rawFile(t, files, vol+".raw", 16<<20), Format: hypervisor.FormatRaw}
		},
	})
}

// tgtTarget exports file as LUN 1 of a fresh tgt target named
// iqn.2026-01.test.at:<name> on the machine's tgtd (127.0.0.1:3260) and
// removes it when the test ends.
func tgtTarget(t *testing.T, name, file string) string {
	t.Helper()
	iqn := "iqn.2026-01.test.at:" + name
	tgtadm := func(args ...string) (string, error) {
		out, err := exec.Command("tgtadm", append([]string{"--lld", "iscsi"}, args...)...).CombinedOutput()
		return string(out), err
	}
	// A free tid: one above the highest in use (again when another user
	// of tgtd took it meanwhile).
	ts := ""
	for attempt := 0; ts == ""; attempt++ {
		out, err := tgtadm("--op", "show", "--mode", "target")
		if err != nil {
			t.Fatalf("tgtadm show: %v: %s", err, out)
		}
		tid := 1
		for _, line := range strings.Split(out, "\n") {
			var n int
			if _, err := fmt.Sscanf(line, "Target %d:", &n); err == nil && n >= tid {
				tid = n + 1
			}
		}
		out, err = tgtadm("--op", "new", "--mode", "target", "--tid", strconv.Itoa(tid), "-T", iqn)
		switch {
		case err == nil:
			ts = strconv.Itoa(tid)
		case attempt == 5 || !strings.Contains(out, "already exists"):
			t.Fatalf("tgtadm new target: %v: %s", err, out)
		}
	}
	t.Cleanup(func() {
		// --force: a domain of the test may still hold a session.
		if out, err := tgtadm("--op", "delete", "--mode", "target", "--tid", ts, "--force"); err != nil {
			t.Errorf("remove target %s: %v: %s", iqn, err, out)
		}
	})
	for _, args := range [][]string{
		{"--op", "new", "--mode", "logicalunit", "--tid", ts, "--lun", "1", "-b", file},
		{"--op", "bind", "--mode", "target", "--tid", ts, "-I", "ALL"},
	} {
		if out, err := tgtadm(args...); err != nil {
			t.Fatalf("tgtadm %v: %v: %s", args, err, out)
		}
	}
	return iqn
}

// capacity is the size of a domain's disk as QEMU opened it.
func capacity(t *testing.T, id, target string) int64 {
	t.Helper()
	out, err := exec.Command("virsh", "-c", "qemu:///system", "domblkinfo", id, target).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh domblkinfo %s %s: %v: %s", id, target, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Capacity:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no capacity in %s", out)
	return 0
}

// TestAttachISCSI hot-plugs iSCSI LUNs into a running domain: QEMU's own
// initiator logs in to tgtd (no kernel initiator on this host), a raw LUN
// is seen with its size and a LUN holding a qcow2 image with the image's
// virtual size (volume_device.format qcow2).
func TestAttachISCSI(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt, testutil.NeedTgt)
	ctx := ctxT(t)
	dir := atTempDir(t)
	d := newDriver(t, atNode, "")
	const id = "i-atiscsi"
	cleanupDomain(t, d, id)
	if err := d.Define(ctx, hypervisor.Spec{ID: id, CPUCores: 1, MemoryMB: 32}); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	rawIQN := tgtTarget(t, "vol-atraw", rawFile(t, dir, "raw.img", 24<<20))
	q := filepath.Join(dir, "q.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", q, "40M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	qIQN := tgtTarget(t, "vol-atqcow", q)

	tr, err := d.AttachDisk(ctx, id, hypervisor.Disk{VolumeID: "vol-atraw", IQN: rawIQN, LUN: 1, StorageIP: "127.0.0.1"})
	if err != nil {
		t.Fatalf("AttachDisk(raw LUN) = %v", err)
	}
	tq, err := d.AttachDisk(ctx, id, hypervisor.Disk{VolumeID: "vol-atqcow", IQN: qIQN, LUN: 1, StorageIP: "127.0.0.1",
		Format: hypervisor.FormatQcow2})
	if err != nil {
		t.Fatalf("AttachDisk(qcow2 LUN) = %v", err)
	}
	if tr != "vda" || tq != "vdb" {
		t.Errorf("targets = %s, %s; want vda, vdb on a domain without disks", tr, tq)
	}
	if got := capacity(t, id, tr); got != 24<<20 {
		t.Errorf("raw LUN capacity = %d, want %d", got, 24<<20)
	}
	if got := capacity(t, id, tq); got != 40<<20 {
		t.Errorf("qcow2 LUN capacity = %d, want the image's virtual size %d", got, 40<<20)
	}
	x, err := exec.Command("virsh", "-c", "qemu:///system", "dumpxml", id).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<source protocol='iscsi' name='" + rawIQN + "/1'", "<host name='127.0.0.1' port='3260'/>",
		"<driver name='qemu' type='qcow2' cache='none'/>", "<serial>vol-atqcow</serial>"} {
		if !strings.Contains(string(x), want) {
			t.Errorf("live domain XML lacks %s:\n%s", want, x)
		}
	}
}
