package libvirt_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/hypervisortest"
	"github.com/vdc-project/vdc/hva/hypervisor/libvirt"
)

// testNode marks the domains of these tests (prefix vl).
const testNode = "hva.vltest"

// tempDir is a directory under /var/tmp named with the vl prefix, removed
// when the test ends.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "vl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func newDriver(t *testing.T, node, consoleDir string) *libvirt.Driver {
	t.Helper()
	d, err := libvirt.New(libvirt.Config{NodeID: node, ConsoleDir: consoleDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// cleanupDomain removes a test domain whatever happens to the test.
func cleanupDomain(t *testing.T, h hypervisor.Hypervisor, id string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = h.Stop(ctx, id, true)
		_ = h.Undefine(ctx, id)
	})
}

func TestConformance(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	consoles := tempDir(t)
	hypervisortest.RunWith(t, hypervisortest.Options{
		New:        func(t *testing.T) hypervisor.Hypervisor { return newDriver(t, testNode, consoles) },
		IDPrefix:   "vl",
		Concurrent: 2,
		ACPISpec:   acpiGuestSpec,
		GuestReady: func(t *testing.T, id string) { waitConsole(t, libvirt.ConsoleLog(consoles, id), "vdc-guest: ") },
		// A TCG guest on a loaded 2-core machine may still be booting when
		// the graceful stop starts; the driver presses the button until it
		// answers, within this bound.
		ShutdownTimeout: 2 * time.Minute,
	})
}

// TestOnlyOwnDomains: a domain another hva (another node id) defined is
// invisible to this one and cannot be clobbered by it.
func TestOnlyOwnDomains(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	ctx := ctxT(t)
	mine := newDriver(t, testNode, "")
	other := newDriver(t, "hva.vlother", "")
	const id = "i-vlforeign"
	cleanupDomain(t, other, id)
	if err := other.Define(ctx, hypervisor.Spec{ID: id, CPUCores: 1, MemoryMB: 32}); err != nil {
		t.Fatalf("Define = %v", err)
	}
	if _, err := mine.Get(ctx, id); !errs.Is(err, errs.NotFound) {
		t.Errorf("Get(another hva's domain) = %v, want NotFound", err)
	}
	list, err := mine.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range list {
		if d.ID == id {
			t.Errorf("List shows another hva's domain %s", id)
		}
	}
	if err := mine.Define(ctx, hypervisor.Spec{ID: id, CPUCores: 2, MemoryMB: 64}); !errs.Is(err, errs.IncompatibleHostNode) {
		t.Errorf("Define over another hva's domain = %v, want IncompatibleHostNode", err)
	}
	if err := mine.Undefine(ctx, id); err != nil {
		t.Errorf("Undefine(another hva's domain) = %v, want nil (absent for this hva)", err)
	}
	if d, err := other.Get(ctx, id); err != nil || d.CPUCores != 1 {
		t.Errorf("the other hva's domain = %+v, %v; want it untouched", d, err)
	}
}

// TestReconnect: a lost connection (as when libvirtd restarts) is made
// again by the next call.
func TestReconnect(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	ctx := ctxT(t)
	d := newDriver(t, testNode, "")
	if err := d.Ping(ctx); err != nil {
		t.Fatalf("Ping = %v", err)
	}
	libvirt.DropConnection(t, d)
	if _, err := d.List(ctx); err != nil {
		t.Fatalf("List after the connection was lost = %v", err)
	}
}

// TestNICAndConsole boots a domain with a NIC on a tap made beforehand (as
// the host network does) and checks libvirt's live definition and the
// console log file.
func TestNICAndConsole(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	ctx := ctxT(t)
	consoles := tempDir(t)
	d := newDriver(t, testNode, consoles)
	const tap = "vif-vltest0"
	if out, err := exec.Command("ip", "tuntap", "add", "dev", tap, "mode", "tap").CombinedOutput(); err != nil {
		t.Fatalf("create tap: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", tap).Run() })
	const id = "i-vlnic"
	cleanupDomain(t, d, id)
	spec := hypervisor.Spec{ID: id, CPUCores: 1, MemoryMB: 64,
		NICs: []hypervisor.NIC{{VifID: tap, MAC: "525400AB0001", DeviceIndex: 0}}}
	if err := d.Define(ctx, spec); err != nil {
		t.Fatalf("Define = %v", err)
	}
	if err := d.Start(ctx, id); err != nil {
		t.Fatalf("Start = %v", err)
	}
	x, err := exec.Command("virsh", "-c", "qemu:///system", "dumpxml", id).Output()
	if err != nil {
		t.Fatalf("virsh dumpxml: %v", err)
	}
	for _, want := range []string{"<mac address='52:54:00:ab:00:01'/>", "<target dev='" + tap + "' managed='no'/>",
		"<model type='virtio'/>", "<log file='" + libvirt.ConsoleLog(consoles, id) + "' append='on'/>", "<acpi/>",
		"<domain type='qemu'", "<instance xmlns=\"" + libvirt.MetadataURI + "\">"} {
		if !strings.Contains(string(x), want) {
			t.Errorf("live domain XML lacks %s:\n%s", want, x)
		}
	}
	if _, err := os.Stat(libvirt.ConsoleLog(consoles, id)); err != nil {
		t.Errorf("console log: %v", err)
	}
}

// guestImage builds (or reuses) the tiny guest image of
// scripts/build-guest-image.sh and returns its path.
func guestImage(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../../../scripts/build-guest-image.sh").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("build-guest-image.sh: %v: %s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// acpiGuestSpec is a domain booting the tiny guest image from a qcow2
// overlay of its own: a guest that powers off on the ACPI power button.
func acpiGuestSpec(t *testing.T, id string) hypervisor.Spec {
	image := guestImage(t)
	overlay := filepath.Join(tempDir(t), id+".qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image, overlay).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	return hypervisor.Spec{ID: id, CPUCores: 1, MemoryMB: 128, Disks: []hypervisor.Disk{
		{VolumeID: "vol-vlboot", Path: overlay, Format: hypervisor.FormatQcow2, Boot: true}}}
}

// waitConsole waits until the console log holds a line containing want.
func waitConsole(t *testing.T, path, want string) {
	t.Helper()
	testutil.WaitFor(t, time.Minute, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.Contains(string(b), want) {
			return fmt.Errorf("console %s has no %q yet", path, want)
		}
		return nil
	})
}

// TestGracefulStopOfAGuestIgnoringACPI: a domain without an operating
// system (firmware only) does not act on the power button; a graceful Stop
// gives up with its context and leaves the domain running.
func TestGracefulStopOfAGuestIgnoringACPI(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	ctx := ctxT(t)
	d := newDriver(t, testNode, "")
	const id = "i-vlnoacpi"
	cleanupDomain(t, d, id)
	if err := d.Define(ctx, hypervisor.Spec{ID: id, CPUCores: 1, MemoryMB: 32}); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	if err := d.Stop(sctx, id, false); !errs.Is(err, errs.Timeout) {
		t.Errorf("Stop(graceful) of a guest ignoring ACPI = %v, want Timeout", err)
	}
	if dom, err := d.Get(ctx, id); err != nil || dom.State != hypervisor.Running {
		t.Errorf("after the timed-out Stop the domain is %+v, %v; want running", dom, err)
	}
}
