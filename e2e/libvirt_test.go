package e2e

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
)

// guestImage builds (or reuses) the tiny guest of
// scripts/build-guest-image.sh: its path and md5.
func guestImage(t *testing.T) (string, string) {
	t.Helper()
	out, err := exec.Command("../scripts/build-guest-image.sh").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("build-guest-image.sh: %v: %s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	image := lines[len(lines)-1]
	b, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(b)
	return image, hex.EncodeToString(sum[:])
}

// libvirtCluster is a cluster whose hva (hva.vle2e) runs the libvirt driver
// (TCG) with its instance files under a /var/tmp/vl-* directory, and a
// catalog image wmi-vltiny of the tiny guest.
type libvirtCluster struct {
	*cluster1
	dataDir, consoles string
}

func newLibvirtCluster(t *testing.T) *libvirtCluster {
	t.Helper()
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	image, sum := guestImage(t)
	dataDir, err := os.MkdirTemp("/var/tmp", "vl-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	c := newClusterWith(t, options{hvaNodeID: "hva.vle2e", hostHypervisor: "qemu", hvaCores: 2, hvaMemoryMB: 1024,
		hvaArgs: []string{"-hypervisor", "libvirt", "-virt-type", "qemu", "-data-dir", dataDir,
			"-soft-poweroff-timeout", "60s"}})
	lc := &libvirtCluster{cluster1: c, dataDir: dataDir, consoles: filepath.Join(dataDir, "_console")}
	// Whatever happens, no domain of this hva outlives the test.
	t.Cleanup(lc.removeDomains)
	st, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	c.must("POST", "/backup_storages.json", url.Values{"uuid": {"bkst-vltiny"}, "storage_type": {"local"},
		"base_uri": {"file://" + filepath.Dir(image) + "/"}}, "")
	c.must("POST", "/backup_objects.json", url.Values{"uuid": {"bo-vltiny"}, "backup_storage_id": {"bkst-vltiny"},
		"object_key": {filepath.Base(image)}, "size": {fmt.Sprint(st.Size())}, "checksum": {sum},
		"container_format": {"none"}, "state": {"available"}, "account_id": {account}}, "")
	c.must("POST", "/images.json", url.Values{"uuid": {"wmi-vltiny"}, "backup_object_id": {"bo-vltiny"},
		"arch": {"x86_64"}, "boot_dev_type": {"2"}, "file_format": {"raw"}, "is_public": {"true"},
		"account_id": {account}}, "")
	return lc
}

// removeDomains destroys and undefines the domains this hva defined (their
// names are instance ids, their metadata names hva.vle2e).
func (c *libvirtCluster) removeDomains() {
	out, _ := exec.Command("virsh", "-c", "qemu:///system", "list", "--all", "--name").Output()
	for _, name := range strings.Fields(string(out)) {
		md, err := exec.Command("virsh", "-c", "qemu:///system", "metadata", name,
			"https://vdc-project.github.io/xmlns/hva/1").Output()
		if err != nil || !strings.Contains(string(md), "hva.vle2e") {
			continue
		}
		_ = exec.Command("virsh", "-c", "qemu:///system", "destroy", name).Run()
		_ = exec.Command("virsh", "-c", "qemu:///system", "undefine", name).Run()
	}
}

// create posts an instance of the tiny guest (1 core, 128 MiB, no vnic:
// host networking is not wired here) and returns its id.
func (c *libvirtCluster) create(hostname string) string {
	c.t.Helper()
	doc := c.must("POST", "/instances.json", url.Values{
		"image_id": {"wmi-vltiny"}, "hypervisor": {"qemu"}, "cpu_cores": {"1"}, "memory_size": {"128"},
		"hostname": {hostname}, "user_data": {"hello from " + hostname}, "vifs": {"{}"},
	}, account).(map[string]any)
	return doc["id"].(string)
}

// domstate is virsh's state of the domain (an error when it is not defined).
func domstate(id string) (string, error) {
	out, err := exec.Command("virsh", "-c", "qemu:///system", "domstate", id).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("virsh domstate %s: %v: %s", id, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func (c *libvirtCluster) wantDomstate(id, want string) {
	c.t.Helper()
	if got, err := domstate(id); err != nil || got != want {
		c.t.Fatalf("domain %s is %q (%v), want %q", id, got, err, want)
	}
}

func (c *libvirtCluster) wantNoDomain(id string) {
	c.t.Helper()
	if got, err := domstate(id); err == nil {
		c.t.Fatalf("domain %s is still defined (%s)", id, got)
	}
}

// bootLines counts the guest's own boot line for instance id (with its
// hostname from the metadata drive) in its console log.
func (c *libvirtCluster) bootLines(id, hostname string) int {
	b, _ := os.ReadFile(filepath.Join(c.consoles, id+".log"))
	return strings.Count(string(b), "vdc-guest: booted "+id+" hostname="+hostname+" ")
}

// waitBoots waits for the n-th boot line of the guest.
func (c *libvirtCluster) waitBoots(id, hostname string, n int) {
	c.t.Helper()
	testutil.WaitFor(c.t, 2*time.Minute, func() error {
		if got := c.bootLines(id, hostname); got < n {
			return fmt.Errorf("console of %s shows %d boot lines, want %d", id, got, n)
		}
		return nil
	})
}

// bootVolume is the instance's boot volume file (the one qcow2 file in its
// directory).
func (c *libvirtCluster) bootVolume(id string) os.FileInfo {
	c.t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.dataDir, id, "vol-*.qcow2"))
	if len(files) != 1 {
		c.t.Fatalf("instance %s has volume files %v, want one", id, files)
	}
	st, err := os.Stat(files[0])
	if err != nil {
		c.t.Fatal(err)
	}
	return st
}

// TestLibvirtGuestsThroughTheAPI boots two instances of the tiny guest on
// one hva with the libvirt driver (TCG) through the 12.03 API and takes one
// of them through every verb on its real domain, an hva restart included.
func TestLibvirtGuestsThroughTheAPI(t *testing.T) {
	c := newLibvirtCluster(t)
	started := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(started).Seconds(), what) }
	a, b := c.create("vl-a"), c.create("vl-b")
	for _, id := range []string{a, b} {
		doc := c.waitState(id, "running")
		if doc["status"] != "online" {
			t.Fatalf("instance %s is running but %v", id, doc["status"])
		}
		c.wantDomstate(id, "running")
	}
	// The consoles show each guest's own boot line: it read its instance id
	// and hostname from its metadata drive.
	c.waitBoots(a, "vl-a", 1)
	c.waitBoots(b, "vl-b", 1)
	if _, err := os.Stat(filepath.Join(c.dataDir, "_base", "bo-vltiny")); err != nil {
		t.Fatalf("the image is not cached: %v", err)
	}

	step("Terminate removes")
	// Terminate removes the domain and the instance's directory.
	c.must("DELETE", "/instances/"+b+".json", nil, account)
	c.waitState(b, "terminated")
	c.wantNoDomain(b)
	if _, err := os.Stat(filepath.Join(c.dataDir, b)); !os.IsNotExist(err) {
		t.Fatalf("instance dir of terminated %s: %v", b, err)
	}

	step("reboot: a reset")
	// reboot: a reset; the guest boots again.
	boots := 1
	c.must("PUT", "/instances/"+a+"/reboot.json", url.Values{}, account)
	boots++
	c.waitBoots(a, "vl-a", boots)
	c.waitJobsIdle()

	step("soft_poweroff:")
	// soft_poweroff: the guest powers itself off on the ACPI button.
	c.must("PUT", "/instances/"+a+"/poweroff.json", url.Values{"force": {"false"}}, account)
	c.waitState(a, "halted")
	c.wantDomstate(a, "shut off")
	if log, _ := os.ReadFile(filepath.Join(c.consoles, a+".log")); !strings.Contains(string(log), "vdc-guest: ACPI power button") {
		t.Fatalf("soft poweroff did not go through the guest's ACPI handler:\n%s", log)
	}
	c.must("PUT", "/instances/"+a+"/poweron.json", url.Values{}, account)
	c.waitState(a, "running")
	boots++
	c.waitBoots(a, "vl-a", boots)

	step("poweroff (hard)")
	// poweroff (hard) / poweron.
	c.must("PUT", "/instances/"+a+"/poweroff.json", url.Values{"force": {"true"}}, account)
	c.waitState(a, "halted")
	c.wantDomstate(a, "shut off")
	c.must("PUT", "/instances/"+a+"/poweron.json", url.Values{}, account)
	c.waitState(a, "running")
	boots++
	c.waitBoots(a, "vl-a", boots)

	step("stop / start:")
	// stop / start: the domain goes, the disk stays (the same file).
	disk := c.bootVolume(a)
	c.must("PUT", "/instances/"+a+"/stop.json", url.Values{}, account)
	c.waitState(a, "stopped")
	c.wantNoDomain(a)
	if kept := c.bootVolume(a); !os.SameFile(disk, kept) {
		t.Fatalf("stop did not keep the boot volume")
	}
	c.must("PUT", "/instances/"+a+"/start.json", url.Values{}, account)
	c.waitState(a, "running")
	boots++
	c.waitBoots(a, "vl-a", boots)
	if kept := c.bootVolume(a); !os.SameFile(disk, kept) {
		t.Fatalf("start made a new boot volume instead of booting the kept one")
	}
	c.waitJobsIdle()

	step("An hva killed")
	// An hva killed while the instance runs: the guest runs on, and the
	// restarted hva serves it (a reboot through it boots the same domain).
	domID, _ := exec.Command("virsh", "-c", "qemu:///system", "domid", a).Output()
	c.hva.kill(t)
	c.hva = c.restart(c.hva, "hva-restarted")
	c.must("PUT", "/instances/"+a+"/reboot.json", url.Values{}, account)
	boots++
	c.waitBoots(a, "vl-a", boots)
	c.waitJobsIdle()
	if doc := c.instance(a); doc["state"] != "running" || doc["status"] != "online" {
		t.Fatalf("after the hva restart the instance is %v/%v", doc["state"], doc["status"])
	}
	if now, _ := exec.Command("virsh", "-c", "qemu:///system", "domid", a).Output(); string(now) != string(domID) {
		t.Fatalf("the domain was re-created across the hva restart (id %q, was %q)", now, domID)
	}

	step("terminate")
	c.must("DELETE", "/instances/"+a+".json", nil, account)
	c.waitState(a, "terminated")
	c.wantNoDomain(a)
	if _, err := os.Stat(filepath.Join(c.dataDir, a)); !os.IsNotExist(err) {
		t.Fatalf("instance dir of terminated %s: %v", a, err)
	}
	c.waitJobsIdle()
	for _, j := range c.jobs() {
		if j["state"] != "finished" || j["finish_status"] != "success" {
			t.Errorf("job %v %v %v: %v/%v %v", j["id"], j["queue_name"], j["job_name"], j["state"], j["finish_status"], j["finish_message"])
		}
	}
}
