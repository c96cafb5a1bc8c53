// Package guest boots the tiny real guest image (scripts/build-guest-image.sh)
// under libvirt/QEMU (TCG) with a metadata drive written the way the hva
// writes it, and checks what the guest promises: its boot line on the serial
// console, ping, HTTP and echo on its configured address, user-data scripts,
// a clean reboot on reset and a power-off on an ACPI power-button press.
package guest

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
)

// Host resources carry this session's prefix (gi) so that tests of other
// areas running on the same machine never collide with them.
const (
	domainName = "gi-guest"
	bridgeName = "gibr0"
	tapPrefix  = "gi-vnet"
	// The bridge has no uplink; 192.168.250.0/24 exists nowhere else here.
	hostCIDR = "192.168.250.1/24"
	hostIP   = "192.168.250.1"
	guestIP  = "192.168.250.10"
	// The second MAC has no directory on the drive: /init must leave it alone.
	guestMAC   = "52:54:00:fa:00:0a"
	otherMAC   = "52:54:00:fa:00:0b"
	staleMAC   = "52:54:00:fa:00:ee"
	instanceID = "i-gitiny1"
	hostname   = "gi-tiny1"
	libvirtURI = "qemu:///system"
	// Generous: a TCG boot takes ~4 s alone, several times that when the
	// machine's two cores are busy.
	bootTimeout = 3 * time.Minute
)

// bootLine is what the guest prints once configured from metadataFiles.
var bootLine = fmt.Sprintf("vdc-guest: booted %s hostname=%s ips=%s", instanceID, hostname, guestIP)

// userData runs in the guest after networking; it publishes what /init
// configured through the guest's own web server.
const userData = `#!/bin/sh
{ echo "hostname $(hostname)"; ip -4 route; cat /etc/resolv.conf; } >/www/config.tmp
mv /www/config.tmp /www/config.txt
`

func TestTinyGuest(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	image := buildImage(t)
	dir := tempDir(t)
	removeDomain(t) // a previous run killed before its cleanup
	setupBridge(t)
	t.Cleanup(func() { removeDomain(t) })

	overlay := filepath.Join(dir, "root.qcow2")
	run(t, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", image, overlay)
	meta := filepath.Join(dir, "metadata.img")
	writeMetadataDrive(t, dir, meta, metadataFiles())

	console := filepath.Join(dir, "console.log")
	started := time.Now()
	createDomain(t, dir, domain{
		console: console,
		disks:   []disk{{path: overlay, format: "qcow2"}, {path: meta, format: "raw", readOnly: true}},
		macs:    []string{guestMAC, otherMAC},
		paused:  true,
	})
	// The host knows the guest's address with another MAC (a terminated
	// guest's): the guest's gratuitous ARP must correct it. Set once the
	// taps are on the bridge (its first port flushes its neighbours), before
	// the guest runs.
	run(t, "ip", "neigh", "replace", guestIP, "lladdr", staleMAC, "dev", bridgeName, "nud", "stale")
	virsh(t, "resume", domainName)
	waitLines(t, console, bootLine, 1)
	t.Logf("boot: %s from virsh create to the vdc-guest line", time.Since(started).Round(10*time.Millisecond))

	t.Run("Console", func(t *testing.T) {
		lines := consoleLines(t, console)
		if count(lines, func(l string) bool { return strings.Contains(l, "Linux version ") }) != 1 {
			t.Errorf("console has no single kernel 'Linux version' line:\n%s", strings.Join(lines, "\n"))
		}
		guestLines := 0
		for _, l := range lines {
			if strings.HasPrefix(l, "vdc-guest:") {
				guestLines++
				if l != bootLine {
					t.Errorf("console line %q, want %q", l, bootLine)
				}
			}
		}
		if guestLines != 1 {
			t.Errorf("%d vdc-guest lines on the console, want exactly 1", guestLines)
		}
	})

	t.Run("GratuitousARP", func(t *testing.T) {
		// Before the host sends the guest anything.
		testutil.WaitFor(t, 30*time.Second, func() error {
			out := output(t, "ip", "neigh", "show", guestIP, "dev", bridgeName)
			if !strings.Contains(out, "lladdr "+guestMAC) {
				return fmt.Errorf("host's neighbour entry for %s: %q, want the guest's MAC %s", guestIP, out, guestMAC)
			}
			return nil
		})
	})

	t.Run("Ping", func(t *testing.T) {
		testutil.WaitFor(t, 30*time.Second, func() error {
			out, err := exec.Command("ping", "-c", "1", "-W", "1", guestIP).CombinedOutput()
			if err != nil {
				return fmt.Errorf("ping %s: %v: %s", guestIP, err, out)
			}
			return nil
		})
	})

	t.Run("HTTP", func(t *testing.T) {
		if got, want := httpGet(t, "/"), instanceID+" "+hostname+"\n"; got != want {
			t.Errorf("GET / = %q, want %q", got, want)
		}
	})

	t.Run("Echo", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(guestIP, "7"), 10*time.Second)
		if err != nil {
			t.Fatalf("dial echo port: %v", err)
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, "echo from the host\n"); err != nil {
			t.Fatalf("write to echo port: %v", err)
		}
		got, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || got != "echo from the host\n" {
			t.Errorf("echo port answered %q, %v", got, err)
		}
	})

	t.Run("UserDataSeesConfiguredNetwork", func(t *testing.T) {
		cfg := httpGet(t, "/config.txt")
		var lines []string
		for l := range strings.SplitSeq(cfg, "\n") {
			lines = append(lines, strings.Join(strings.Fields(l), " "))
		}
		for _, want := range []string{
			"hostname " + hostname,
			"default via " + hostIP + " dev eth0 metric 100",
			"192.168.250.0/24 dev eth0 scope link src " + guestIP,
			"nameserver " + hostIP,
		} {
			if count(lines, func(l string) bool { return l == want }) != 1 {
				t.Errorf("guest config lacks %q:\n%s", want, cfg)
			}
		}
		// eth1's MAC has no directory on the drive: no address, no route.
		if strings.Contains(cfg, "eth1") {
			t.Errorf("eth1 was configured although the drive has nothing for %s:\n%s", otherMAC, cfg)
		}
	})

	t.Run("RebootsOnReset", func(t *testing.T) {
		virsh(t, "reset", domainName)
		waitLines(t, console, bootLine, 2)
		if got := httpGet(t, "/"); got != instanceID+" "+hostname+"\n" {
			t.Errorf("GET / after reset = %q", got)
		}
	})

	t.Run("ACPIPowerButtonPowersOff", func(t *testing.T) {
		stopping := time.Now()
		virsh(t, "shutdown", domainName)
		// A transient domain disappears once its guest has powered off.
		testutil.WaitFor(t, bootTimeout, func() error {
			if st, err := domainState(); err == nil {
				return fmt.Errorf("domain %s is still %s", domainName, st)
			}
			return nil
		})
		t.Logf("ACPI shutdown: %s from virsh shutdown to the domain gone", time.Since(stopping).Round(10*time.Millisecond))
		lines := consoleLines(t, console)
		for _, want := range []string{"vdc-guest: ACPI power button, powering off", "reboot: Power down"} {
			if count(lines, func(l string) bool { return strings.HasSuffix(l, want) }) != 1 {
				t.Errorf("console lacks %q after the ACPI shutdown", want)
			}
		}
	})

	t.Run("NoMetadataDrive", func(t *testing.T) {
		console := filepath.Join(dir, "console-nometa.log")
		createDomain(t, dir, domain{
			console: console,
			disks:   []disk{{path: overlay, format: "qcow2"}},
			macs:    []string{guestMAC},
		})
		waitLines(t, console, "vdc-guest: no metadata drive", 1)
		removeDomain(t)
	})
}

// metadataFiles is the drive's content for the test guest: one vnic
// (guestMAC) with an address, gateway and DNS server.
func metadataFiles() map[string]string {
	mac := strings.ReplaceAll(guestMAC, ":", "-")
	nic := "meta-data/network/interfaces/macs/" + mac + "/"
	return map[string]string{
		"meta-data/instance-id":               instanceID,
		"meta-data/local-hostname":            hostname,
		"meta-data/hostname":                  hostname,
		"meta-data/x-account-id":              "a-gitest",
		"meta-data/first-boot":                "",
		"meta-data/public-keys/0/openssh-key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGl0ZXN0a2V5 gi@test",
		nic + "device-number":                 "0",
		nic + "local-ipv4s":                   guestIP,
		nic + "x-netmask":                     "255.255.255.0",
		nic + "x-prefix":                      "24",
		nic + "x-network":                     "192.168.250.0",
		nic + "x-broadcast":                   "192.168.250.255",
		nic + "x-gateway":                     hostIP,
		nic + "x-dns":                         hostIP,
		nic + "x-metric":                      "100",
		"user-data":                           userData,
		"metadata.yml":                        "instance-id: " + instanceID + "\n",
	}
}

// buildImage runs the build script with its default output (cached across
// runs under var/) and checks where it put the image.
func buildImage(t *testing.T) string {
	t.Helper()
	image, elapsed, log := runBuild(t, "")
	t.Logf("build-guest-image.sh: %s\n%s", elapsed.Round(10*time.Millisecond), log)
	if want := filepath.Join(repoRoot(t), "var", "guest-image", "vdc-tiny.raw"); image != want {
		t.Fatalf("build-guest-image.sh printed %q last, want %q", image, want)
	}
	return image
}

func repoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		tb.Fatal(err)
	}
	return root
}

// runBuild runs scripts/build-guest-image.sh (with --out unless out is
// empty) and checks its contract: the last stdout line is the image, the
// .md5 sidecar holds the image's md5 in hex. It returns the image, how long
// the script took and what it logged.
func runBuild(tb testing.TB, out string) (string, time.Duration, string) {
	tb.Helper()
	args := []string{}
	if out != "" {
		args = append(args, "--out", out)
	}
	started := time.Now()
	cmd := exec.Command(filepath.Join(repoRoot(tb), "scripts", "build-guest-image.sh"), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	elapsed := time.Since(started)
	if err != nil {
		tb.Fatalf("build-guest-image.sh: %v\n%s", err, stderr.Bytes())
	}
	lines := strings.Split(strings.TrimSpace(string(stdout)), "\n")
	image := lines[len(lines)-1]
	data, err := os.ReadFile(image)
	if err != nil {
		tb.Fatalf("build-guest-image.sh's last line is not the image: %v", err)
	}
	sum := md5.Sum(data)
	sidecar, err := os.ReadFile(image + ".md5")
	if err != nil {
		tb.Fatal(err)
	}
	if string(sidecar) != hex.EncodeToString(sum[:]) {
		tb.Fatalf("%s.md5 = %q, image md5 is %x", image, sidecar, sum)
	}
	if len(data) > 64<<20 {
		tb.Errorf("image is %d bytes; it is meant to be a few tens of MB", len(data))
	}
	return image, elapsed, strings.TrimSpace(stderr.String())
}

func tempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gi-guest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// setupBridge makes the test network: a bridge without uplink whose host
// side sits in the guest's subnet.
func setupBridge(t testing.TB) {
	t.Helper()
	_ = exec.Command("ip", "link", "del", bridgeName).Run() // left by a killed run
	run(t, "ip", "link", "add", bridgeName, "type", "bridge")
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "link", "del", bridgeName).CombinedOutput(); err != nil {
			t.Errorf("remove bridge %s: %v: %s", bridgeName, err, out)
		}
	})
	run(t, "ip", "addr", "add", hostCIDR, "dev", bridgeName)
	run(t, "ip", "link", "set", bridgeName, "up")
}

// writeMetadataDrive writes the metadata drive as the hva does: vfat over the
// whole disk, label METADATA, bare values without trailing newlines.
// mtools writes it without mounting anything.
func writeMetadataDrive(t testing.TB, dir, img string, files map[string]string) {
	t.Helper()
	tree := filepath.Join(dir, "metadata")
	for name, value := range files {
		p := filepath.Join(tree, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "mkfs.vfat", "-C", "-n", "METADATA", img, "4096")
	entries, err := os.ReadDir(tree)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-s", "-i", img}
	for _, e := range entries {
		args = append(args, filepath.Join(tree, e.Name()))
	}
	run(t, "mcopy", append(args, "::/")...)
	// mcopy skips names FAT cannot hold with only a warning: check that
	// every file arrived.
	for name, value := range files {
		got := output(t, "mtype", "-i", img, "::/"+name)
		if got != value {
			t.Fatalf("metadata drive: %s = %q, want %q", name, got, value)
		}
	}
}

type disk struct {
	path, format string
	readOnly     bool
}

type domain struct {
	console string
	disks   []disk
	macs    []string
	paused  bool // created with its CPU paused (virsh resume runs it)
}

// createDomain starts a transient TCG domain: BIOS boot from the first disk
// (vda), virtio NICs on the test bridge, serial console to a file.
func createDomain(t testing.TB, dir string, d domain) {
	t.Helper()
	esc := func(s string) string {
		var b strings.Builder
		if err := xml.EscapeText(&b, []byte(s)); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	var devs strings.Builder
	for i, dk := range d.disks {
		ro := ""
		if dk.readOnly {
			ro = "<readonly/>"
		}
		fmt.Fprintf(&devs, `<disk type='file' device='disk'><driver name='qemu' type='%s'/><source file='%s'/><target dev='vd%c' bus='virtio'/>%s</disk>`,
			dk.format, esc(dk.path), 'a'+i, ro)
	}
	for i, mac := range d.macs {
		fmt.Fprintf(&devs, `<interface type='bridge'><source bridge='%s'/><target dev='%s%d'/><mac address='%s'/><model type='virtio'/></interface>`,
			bridgeName, tapPrefix, i, mac)
	}
	fmt.Fprintf(&devs, `<serial type='file'><source path='%[1]s'/><target port='0'/></serial><console type='file'><source path='%[1]s'/><target type='serial' port='0'/></console>`,
		esc(d.console))
	x := fmt.Sprintf(`<domain type='qemu'><name>%s</name><memory unit='MiB'>192</memory><vcpu>1</vcpu>`+
		`<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><features><acpi/></features>`+
		`<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>`+
		`<devices>%s</devices></domain>`, domainName, devs.String())
	f := filepath.Join(dir, "domain.xml")
	if err := os.WriteFile(f, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	if d.paused {
		virsh(t, "create", "--paused", f)
		return
	}
	virsh(t, "create", f)
}

func removeDomain(t testing.TB) {
	t.Helper()
	if _, err := domainState(); err != nil {
		return
	}
	out, err := exec.Command("virsh", "-c", libvirtURI, "destroy", domainName).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "not found") {
		t.Errorf("virsh destroy %s: %v: %s", domainName, err, out)
	}
}

func domainState() (string, error) {
	out, err := exec.Command("virsh", "-c", libvirtURI, "domstate", domainName).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("virsh domstate: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

func virsh(t testing.TB, args ...string) {
	t.Helper()
	run(t, "virsh", append([]string{"-c", libvirtURI}, args...)...)
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	output(t, name, args...)
}

func output(t testing.TB, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// consoleLines reads the serial console log (CRLF line ends).
func consoleLines(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []string
	for l := range strings.SplitSeq(string(data), "\n") {
		lines = append(lines, strings.TrimRight(l, "\r"))
	}
	return lines
}

// waitLines waits until the console shows line n times.
func waitLines(t testing.TB, console, line string, n int) {
	t.Helper()
	testutil.WaitFor(t, bootTimeout, func() error {
		lines := consoleLines(t, console)
		if c := count(lines, func(l string) bool { return l == line }); c < n {
			tail := lines[max(0, len(lines)-15):]
			return fmt.Errorf("console shows %q %d times, want %d; last lines:\n%s", line, c, n, strings.Join(tail, "\n"))
		}
		return nil
	})
}

func count(lines []string, match func(string) bool) int {
	n := 0
	for _, l := range lines {
		if match(l) {
			n++
		}
	}
	return n
}

// httpGet fetches a path from the guest's web server, waiting for it to
// answer (first ARP, a user-data script still writing its file).
func httpGet(t testing.TB, path string) string {
	t.Helper()
	// No proxy from the environment: the guest is on a bridge of this host.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	var body string
	testutil.WaitFor(t, 60*time.Second, func() error {
		resp, err := client.Get("http://" + guestIP + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		body = string(b)
		return nil
	})
	return body
}
