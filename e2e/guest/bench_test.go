package guest

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
)

// BenchmarkTinyGuest measures the guest image figures: a cold build (empty
// output directory, so the kernel package is downloaded too), a cached
// build, the image size, and per iteration the TCG boot (virsh create → the
// vdc-guest line) and the ACPI stop (virsh shutdown → domain gone).
//
//	VDC_REAL=1 go test -run '^$' -bench TinyGuest -benchtime 5x ./e2e/guest
func BenchmarkTinyGuest(b *testing.B) {
	testutil.Real(b, testutil.NeedRoot, testutil.NeedLibvirt)
	b.Logf("machine: %d cores, %s, %s, loadavg %s", runtime.NumCPU(), cpuModel(), runtime.Version(), loadAvg())
	dir := tempDir(b)
	out := filepath.Join(dir, "image")
	image, cold, _ := runBuild(b, out)
	_, cached, _ := runBuild(b, out)
	st, err := os.Stat(image)
	if err != nil {
		b.Fatal(err)
	}

	removeDomain(b)
	setupBridge(b)
	b.Cleanup(func() { removeDomain(b) })
	meta := filepath.Join(dir, "metadata.img")
	writeMetadataDrive(b, dir, meta, metadataFiles())

	var boot, stop time.Duration
	n := 0
	for b.Loop() {
		overlay := filepath.Join(dir, "root.qcow2")
		os.Remove(overlay)
		run(b, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image, overlay)
		console := filepath.Join(dir, "console.log")
		os.Remove(console)
		started := time.Now()
		createDomain(b, dir, domain{
			console: console,
			disks:   []disk{{path: overlay, format: "qcow2"}, {path: meta, format: "raw", readOnly: true}},
			macs:    []string{guestMAC},
		})
		waitLines(b, console, bootLine, 1)
		boot += time.Since(started)
		stopping := time.Now()
		virsh(b, "shutdown", domainName)
		testutil.WaitFor(b, bootTimeout, func() error {
			if _, err := domainState(); err == nil {
				return errors.New("domain " + domainName + " still exists")
			}
			return nil
		})
		stop += time.Since(stopping)
		n++
	}
	b.ReportMetric(cold.Seconds(), "cold-build-s")
	b.ReportMetric(cached.Seconds(), "cached-build-s")
	b.ReportMetric(float64(st.Size())/(1<<20), "image-MiB")
	b.ReportMetric(boot.Seconds()/float64(n), "boot-s")
	b.ReportMetric(stop.Seconds()/float64(n), "acpi-stop-s")
	b.Logf("cold build %s, cached build %s, image %d bytes, boot %s, ACPI stop %s (mean of %d), loadavg now %s",
		cold.Round(10*time.Millisecond), cached.Round(10*time.Millisecond), st.Size(),
		(boot / time.Duration(n)).Round(10*time.Millisecond), (stop / time.Duration(n)).Round(10*time.Millisecond), n, loadAvg())
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
