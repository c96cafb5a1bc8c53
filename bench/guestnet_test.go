package bench

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor/libvirt"
	"github.com/vdc-project/vdc/hva/localstore"
	"github.com/vdc-project/vdc/hva/netfilter"
	"github.com/vdc-project/vdc/hva/network"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// The guest-network benchmarks run the tiny guest for real: a manager, a
// scheduler daemon and an hva in this process, the hva wired as hva/cmd/hva
// is with -hypervisor libvirt (TCG), dc_networks and netfilter: taps on
// bridge gnbr1 (no uplink, no host address) and security groups in nftables
// table gnbench of the host. A probe namespace gn-bprobe sits on the bridge
// through a veth (it is no vnic). 192.168.253.0/24 exists nowhere else on
// the machine. At most two guests run at once.
const (
	gnbNode    = "hva.gnbench"
	gnbDcNet   = "gnbench"
	gnbBridge  = "gnbr1"
	gnbTable   = "gnbench"
	gnbNetwork = "nw-gnbench"
	gnbImage   = "wmi-gnbench"
	gnbNetns   = "gn-bprobe"
	gnbVeth    = "gnbp-host"
	gnbVethNs  = "gnbp-ns"
	gnbProbeIP = "192.168.253.250"
)

type gnbEnv struct {
	base     string
	hc       *http.Client
	consoles string
	probe    netns.NsHandle
	probed   bool
	vifs     []string
}

func startGNBEnv(b *testing.B, ctx context.Context) *gnbEnv {
	b.Helper()
	testutil.Real(b, testutil.NeedRoot, testutil.NeedLibvirt)
	out, err := exec.CommandContext(ctx, "../scripts/build-guest-image.sh").Output()
	if err != nil {
		b.Fatalf("build-guest-image.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	image := lines[len(lines)-1]
	data, err := os.ReadFile(image)
	if err != nil {
		b.Fatal(err)
	}
	sum := md5.Sum(data)
	dir, err := os.MkdirTemp("/var/tmp", "gn-bench-")
	if err != nil {
		b.Fatal(err)
	}
	env := &gnbEnv{hc: &http.Client{Timeout: 30 * time.Second}, consoles: filepath.Join(dir, "console")}
	// Registered first, so it runs last: after the hva stopped, nothing
	// puts back what this removes.
	cleanHost := func() {
		removeGuestsOf(gnbNode)
		for _, vif := range env.vifs {
			_ = exec.Command("ip", "link", "del", vif).Run()
		}
		_ = exec.Command("ip", "netns", "del", gnbNetns).Run()
		_ = exec.Command("ip", "link", "del", gnbVeth).Run()
		_ = exec.Command("ip", "link", "del", gnbBridge).Run()
		for _, fam := range []string{"bridge", "inet"} {
			_ = exec.Command("nft", "delete", "table", fam, gnbTable).Run()
		}
	}
	cleanHost()
	b.Cleanup(func() {
		cleanHost()
		_ = os.RemoveAll(dir)
	})

	mgr, apiAddr, err := startPlaceManager(dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		mgr.Shutdown(sctx)
	})
	if err := waitUntil(ctx, formTimeout, func() error {
		if !mgr.Cluster.IsLeader() {
			return fmt.Errorf("the manager does not lead yet")
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	env.base = "http://" + apiAddr + "/api/12.03"
	join := []string{mgr.Cluster.SerfAddr()}
	scfg := daemon.DefaultConfig()
	scfg.NodeID, scfg.SerfAddr, scfg.RPCAddr, scfg.Join, scfg.FastGossip = "scheduler.gnbench", "127.0.0.1:0", "127.0.0.1:0", join, true
	sched, err := daemon.New(scfg, logging.Discard())
	if err == nil {
		err = sched.Start()
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		_ = sched.Shutdown(sctx)
	})
	startGNBHva(b, join, dir, env.consoles)

	st, _ := os.Stat(image)
	with := func(v url.Values) url.Values { v["account_id"] = []string{Account}; return v }
	for _, s := range []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodPost, "/host_nodes.json", url.Values{"uuid": {"hn-gnbench"}, "node_id": {gnbNode}, "arch": {"x86_64"},
			"hypervisor": {"qemu"}, "offering_cpu_cores": {"2"}, "offering_memory_size": {"1024"},
			"offering_disk_space_mb": {"100000"}}},
		{http.MethodPost, "/backup_storages.json", url.Values{"uuid": {"bkst-gnbench"}, "storage_type": {"local"},
			"base_uri": {"file://" + filepath.Dir(image) + "/"}}},
		{http.MethodPost, "/backup_objects.json", with(url.Values{"uuid": {"bo-gnbench"}, "backup_storage_id": {"bkst-gnbench"},
			"object_key": {filepath.Base(image)}, "size": {strconv.FormatInt(st.Size(), 10)},
			"checksum": {hex.EncodeToString(sum[:])}, "container_format": {"none"}, "state": {"available"}})},
		{http.MethodPost, "/images.json", with(url.Values{"uuid": {gnbImage}, "backup_object_id": {"bo-gnbench"},
			"arch": {"x86_64"}, "boot_dev_type": {"2"}, "file_format": {"raw"}, "is_public": {"true"}})},
		{http.MethodPost, "/dc_networks.json", url.Values{"uuid": {"dcn-gnbench"}, "name": {gnbDcNet}}},
		{http.MethodPut, "/dc_networks/dcn-gnbench.json", url.Values{"allow_new_networks": {"true"}}},
		{http.MethodPut, "/dc_networks/dcn-gnbench/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}},
		{http.MethodPost, "/networks.json", with(url.Values{"uuid": {gnbNetwork}, "dc_network": {"dcn-gnbench"},
			"network": {"192.168.253.0"}, "prefix": {"24"}, "gw": {"192.168.253.1"}, "network_mode": {"securitygroup"},
			"dhcp_range": {"default"}})},
	} {
		if _, err := expectOK(operatorRequest(ctx, env.hc, s.method, env.base+s.path, s.form)); err != nil {
			b.Fatalf("seed %s: %v", s.path, err)
		}
	}
	if err := waitUntil(ctx, placeReadyTimeout, func() error {
		var h struct {
			Status string `json:"status"`
		}
		if err := getJSON(ctx, env.hc, env.base+"/host_nodes/hn-gnbench.json", &h); err != nil {
			return err
		}
		if h.Status != "online" {
			return fmt.Errorf("host is %s", h.Status)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return env
}

// startGNBHva wires an hva as hva/cmd/hva does with -hypervisor libvirt, a
// dc_networks entry and netfilter on: libvirt driver, local store, taps
// through netlink, the netfilter service on the host's nftables, and the
// vnic events between them.
func startGNBHva(b *testing.B, join []string, dir, consoles string) {
	b.Helper()
	logger := logging.Discard()
	lvd, err := libvirt.New(libvirt.Config{NodeID: gnbNode, ConsoleDir: consoles})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = lvd.Close() })
	ls, err := localstore.New(localstore.Config{DataDir: filepath.Join(dir, "instances")})
	if err != nil {
		b.Fatal(err)
	}
	k, err := network.NewKernel(netns.None())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(k.Close)
	taps, err := network.New(network.Config{Networks: map[string]network.DCNetwork{gnbDcNet: {Bridge: gnbBridge}}, Links: k})
	if err != nil {
		b.Fatal(err)
	}
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID: gnbNode, Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0", Join: join,
		FastGossip: true, Logger: logger,
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, collector.DefaultAttemptTimeout)
			defer cancel()
			_ = cc.JobFinished(ctx, gnbNode, res)
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logger})
	if _, err := filter.EnsureBridgeNetfilter(filter.BridgeNFCallIptables); err != nil {
		b.Fatal(err)
	}
	// An hour: rule changes reach the kernel through the events only.
	svc, err := netfilter.New(netfilter.Config{NodeID: gnbNode, Source: netfilter.CollectorSource{C: cc},
		Filter: filter.NewNFT(0), Table: gnbTable, Bridges: map[string]string{gnbDcNet: gnbBridge},
		Events: a, Publisher: a, Interval: time.Hour, Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	h, err := handlers.New(handlers.Config{
		NodeID: gnbNode, Hypervisor: lvd, Collector: cc, LocalStore: ls, Events: a, Logger: logger,
		Network: &netfilter.Vnics{Inner: taps, NodeID: gnbNode, Publisher: a, Changed: svc.Trigger},
	})
	if err != nil {
		b.Fatal(err)
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		b.Fatal(err)
	}
	svcCtx, stopSvc := context.WithCancel(context.Background())
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(svcCtx) }()
	b.Cleanup(func() {
		stopSvc()
		if err := <-svcDone; err != nil {
			b.Errorf("netfilter service: %v", err)
		}
		sctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		_ = a.Shutdown(sctx)
	})
}

// removeGuestsOf destroys and undefines the domains of hva node.
func removeGuestsOf(node string) {
	out, _ := exec.Command("virsh", "-c", "qemu:///system", "list", "--all", "--name").Output()
	for _, name := range strings.Fields(string(out)) {
		md, err := exec.Command("virsh", "-c", "qemu:///system", "metadata", name, libvirt.MetadataURI).Output()
		if err != nil || !strings.Contains(string(md), "<node>"+node+"</node>") {
			continue
		}
		_ = exec.Command("virsh", "-c", "qemu:///system", "destroy", name).Run()
		_ = exec.Command("virsh", "-c", "qemu:///system", "undefine", name).Run()
	}
}

// addProbe joins the probe namespace to the bridge (which the hva makes
// with the first vnic).
func (e *gnbEnv) addProbe(b *testing.B) {
	b.Helper()
	for _, args := range [][]string{
		{"netns", "add", gnbNetns},
		{"link", "add", gnbVeth, "type", "veth", "peer", "name", gnbVethNs},
		{"link", "set", gnbVethNs, "netns", gnbNetns},
		{"link", "set", gnbVeth, "master", gnbBridge},
		{"link", "set", gnbVeth, "up"},
		{"-n", gnbNetns, "link", "set", "lo", "up"},
		{"-n", gnbNetns, "addr", "add", gnbProbeIP + "/24", "dev", gnbVethNs},
		{"-n", gnbNetns, "link", "set", gnbVethNs, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ns, err := netns.GetFromName(gnbNetns)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ns.Close() })
	e.probe, e.probed = ns, true
}

// probeGET is an HTTP GET of ip:80 from the probe namespace over a new
// connection: the first word of the body.
func (e *gnbEnv) probeGET(ip string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := network.InNetNS(e.probe, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", net.JoinHostPort(ip, "80"), timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	return strings.Fields(string(body) + " ")[0], nil
}

func (e *gnbEnv) api(ctx context.Context, method, path string, form url.Values, out any) error {
	body, err := expectOK(doRequest(ctx, e.hc, method, e.base+path, form))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

func (e *gnbEnv) securityGroup(ctx context.Context, b *testing.B, rule string) string {
	b.Helper()
	var doc struct {
		ID string `json:"id"`
	}
	if err := e.api(ctx, http.MethodPost, "/security_groups.json", url.Values{"rule": {rule}}, &doc); err != nil {
		b.Fatal(err)
	}
	return doc.ID
}

func (e *gnbEnv) setRule(ctx context.Context, sg, rule string) error {
	return e.api(ctx, http.MethodPut, "/security_groups/"+sg+".json", url.Values{"rule": {rule}}, nil)
}

type gnbGuest struct{ id, vif, ip string }

// create POSTs an instance of the tiny guest with one vnic in sg and
// returns once it has its address (t0 is when the POST was sent).
func (e *gnbEnv) create(ctx context.Context, hostname, sg, userData string) (gnbGuest, time.Time, error) {
	vifs := `{"eth0":{"index":"0","network":"` + gnbNetwork + `","security_groups":["` + sg + `"]}}`
	t0 := time.Now()
	var doc struct {
		ID string `json:"id"`
	}
	if err := e.api(ctx, http.MethodPost, "/instances.json", url.Values{
		"image_id": {gnbImage}, "hypervisor": {"qemu"}, "cpu_cores": {"1"}, "memory_size": {"128"},
		"hostname": {hostname}, "user_data": {userData}, "vifs": {vifs},
	}, &doc); err != nil {
		return gnbGuest{}, t0, err
	}
	g := gnbGuest{id: doc.ID}
	err := waitUntil(ctx, 2*time.Minute, func() error {
		var v struct {
			State string `json:"state"`
			Vif   []struct {
				VifID string `json:"vif_id"`
				IPv4  *struct {
					Address string `json:"address"`
				} `json:"ipv4"`
			} `json:"vif"`
		}
		if err := e.api(ctx, http.MethodGet, "/instances/"+g.id+".json", nil, &v); err != nil {
			return err
		}
		if v.State == proto.InstanceTerminated {
			return fmt.Errorf("instance %s was terminated", g.id)
		}
		if len(v.Vif) != 1 || v.Vif[0].IPv4 == nil {
			return fmt.Errorf("instance %s has no address yet", g.id)
		}
		g.vif, g.ip = v.Vif[0].VifID, v.Vif[0].IPv4.Address
		return nil
	})
	if err == nil {
		e.vifs = append(e.vifs, g.vif)
	}
	return g, t0, err
}

func (e *gnbEnv) waitState(ctx context.Context, id, want string) error {
	return waitUntil(ctx, 3*time.Minute, func() error {
		var v struct {
			State string `json:"state"`
		}
		if err := e.api(ctx, http.MethodGet, "/instances/"+id+".json", nil, &v); err != nil {
			return err
		}
		if v.State != want {
			return fmt.Errorf("instance %s is %s, want %s", id, v.State, want)
		}
		return nil
	})
}

func (e *gnbEnv) terminate(ctx context.Context, id string) error {
	if err := e.api(ctx, http.MethodDelete, "/instances/"+id+".json", nil, nil); err != nil {
		return err
	}
	return e.waitState(ctx, id, proto.InstanceTerminated)
}

// BenchmarkGuestReachable: one instance of the tiny guest at a time with one
// vnic whose group lets the probe namespace's address in on tcp 80. Per
// iteration: POST /instances → the guest answers HTTP on the address the
// API shows, from the probe namespace (first successful GET, polled over
// new connections), then DELETE and wait for terminated. Prints p50, min,
// max, and POST → running for comparison.
//
//	VDC_REAL=1 go test -run '^$' -bench GuestReachable -benchtime 5x ./bench/
func BenchmarkGuestReachable(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	machine := Probe(ctx)
	e := startGNBEnv(b, ctx)
	sg := e.securityGroup(ctx, b, "tcp:80,80,ip4:"+gnbProbeIP+"/32")
	var reach, running, booted []time.Duration
	for b.Loop() {
		i := len(reach)
		g, t0, err := e.create(ctx, "gnb"+strconv.Itoa(i), sg, "")
		if err != nil {
			b.Fatal(err)
		}
		if !e.probed {
			// The bridge exists once the hva plugged the first vnic.
			if err := waitUntil(ctx, time.Minute, func() error {
				_, err := net.InterfaceByName(gnbBridge)
				return err
			}); err != nil {
				b.Fatal(err)
			}
			e.addProbe(b)
		}
		var runAt, bootAt time.Time
		bootLine := "vdc-guest: booted " + g.id + " hostname=gnb" + strconv.Itoa(i) + " ips=" + g.ip
		err = waitUntil(ctx, 5*time.Minute, func() error {
			if runAt.IsZero() {
				var v struct {
					State string `json:"state"`
				}
				if err := e.api(ctx, http.MethodGet, "/instances/"+g.id+".json", nil, &v); err == nil && v.State == proto.InstanceRunning {
					runAt = time.Now()
				}
			}
			if bootAt.IsZero() {
				if log, _ := os.ReadFile(libvirt.ConsoleLog(e.consoles, g.id)); strings.Contains(string(log), bootLine) {
					bootAt = time.Now()
				}
			}
			word, err := e.probeGET(g.ip, 300*time.Millisecond)
			if err == nil && word != g.id {
				err = fmt.Errorf("%s answered %q, want %s", g.ip, word, g.id)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		reach = append(reach, time.Since(t0))
		if !runAt.IsZero() {
			running = append(running, runAt.Sub(t0))
		}
		if !bootAt.IsZero() {
			booted = append(booted, bootAt.Sub(t0))
		}
		if err := e.terminate(ctx, g.id); err != nil {
			b.Fatal(err)
		}
	}
	machine.Finish()
	b.StopTimer()
	var out strings.Builder
	machine.WriteTable(&out)
	fmt.Fprintf(&out, "tiny guest, 1 vCPU, 128 MiB, TCG; one vnic on a bridge with nftables security groups; %d sequential instances (the first fills the image cache)\n\n", len(reach))
	fmt.Fprintln(&out, "| figure | p50 | min | max | n |")
	fmt.Fprintln(&out, "|---|---|---|---|---|")
	for _, row := range []struct {
		name string
		v    []time.Duration
	}{
		{"POST /instances → API shows running", running},
		{"POST /instances → the guest's boot line (network configured) on its console", booted},
		{"POST /instances → HTTP answer on its IP (from a namespace on the bridge)", reach},
	} {
		mid, lo, hi := durStats(row.v)
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %d |\n", row.name, fmtMS(mid), fmtMS(lo), fmtMS(hi), len(row.v))
	}
	mid, _, _ := durStats(reach)
	b.ReportMetric(float64(mid.Milliseconds()), "p50-ms-post-to-reachable")
	fmt.Print(out.String())
}

func durStats(v []time.Duration) (mid, lo, hi time.Duration) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2], s[0], s[len(s)-1]
}

// gnbProbeScript is guest A's user data: per round a GET of B's port 80 over
// a new connection (killed after 1 s: busybox 1.35's wget -T crashes), then
// a console line with the guest's uptime at the GET's start and at the
// line:
//
//	gn-probe: <seq> <uptime at GET> <uptime at print> http=ok|fail
func gnbProbeScript(target string) string {
	return `#!/bin/sh
i=0
while :; do
	i=$((i + 1))
	read t0 _ </proc/uptime
	if timeout 1 wget -q -O /dev/null "http://` + target + `/" 2>/dev/null; then r=ok; else r=fail; fi
	read t1 _ </proc/uptime
	echo "gn-probe: $i $t0 $t1 http=$r" >/dev/console
	sleep 0.05
done
`
}

var gnbProbeRE = regexp.MustCompile(`gn-probe: (\d+) ([0-9.]+) ([0-9.]+) http=(ok|fail)`)

// consoleWatch reads a guest's console log as it grows and timestamps each
// probe line with when it was first seen here.
type consoleWatch struct {
	path  string
	off   int64
	part  string
	lines []gnbLine
}

type gnbLine struct {
	seq        int
	start, end float64 // guest uptime: GET started, line printed
	ok         bool
	seen       time.Time
}

func (w *consoleWatch) poll() error {
	f, err := os.Open(w.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(w.off, io.SeekStart); err != nil {
		return err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	now := time.Now()
	w.off += int64(len(b))
	text := w.part + string(b)
	i := strings.LastIndexByte(text, '\n')
	if i < 0 {
		w.part = text
		return nil
	}
	w.part = text[i+1:]
	for l := range strings.SplitSeq(text[:i], "\n") {
		m := gnbProbeRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		seq, _ := strconv.Atoi(m[1])
		start, _ := strconv.ParseFloat(m[2], 64)
		end, _ := strconv.ParseFloat(m[3], 64)
		w.lines = append(w.lines, gnbLine{seq: seq, start: start, end: end, ok: m[4] == "ok", seen: now})
	}
	return nil
}

// waitRun polls until n lines in a row, all seen after since, have ok; it
// returns the first line of that run and the line before it (zero when
// there is none).
func (w *consoleWatch) waitRun(ctx context.Context, since time.Time, n int, ok bool) (gnbLine, gnbLine, error) {
	var first, before gnbLine
	err := waitUntilEvery(ctx, 3*time.Minute, 5*time.Millisecond, func() error {
		if err := w.poll(); err != nil {
			return err
		}
		run := 0
		for i := len(w.lines) - 1; i >= 0 && w.lines[i].seen.After(since) && w.lines[i].ok == ok; i-- {
			run++
			first, before = w.lines[i], gnbLine{}
			if i > 0 {
				before = w.lines[i-1]
			}
		}
		if run < n {
			return fmt.Errorf("%d lines with http ok=%v since the change, want %d", run, ok, n)
		}
		return nil
	})
	return first, before, err
}

// waitUntilEvery is waitUntil with its own poll period.
func waitUntilEvery(ctx context.Context, d, every time.Duration, check func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", d, err)
		}
		if err := sleepCtx(ctx, every); err != nil {
			return err
		}
	}
}

// BenchmarkRuleRemovalSeenByGuest: guest B serves HTTP; guest A's user data
// GETs B's port 80 over a new connection in a loop and prints each result
// on its console. Per iteration B's group gets a rule letting A's group
// (and the probe namespace) in, the test waits until A and the namespace
// get through, then PUTs the group without rules and measures until the
// first connection that fails:
//
//   - seen by guest A: the start of A's first failing GET, placed on the
//     host's clock by the time its console line was seen here minus the
//     guest's own uptime between the GET's start and the print (a span of
//     about a second, so the guest clock's drift does not matter); the
//     start of the GET before it (which passed) bounds the figure from
//     below;
//
//   - seen by the probe namespace: the start of its first failing GET
//     (back-to-back GETs over new connections, 1 s timeout).
//
//     VDC_REAL=1 go test -run '^$' -bench RuleRemovalSeenByGuest -benchtime 5x ./bench/
func BenchmarkRuleRemovalSeenByGuest(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	machine := Probe(ctx)
	e := startGNBEnv(b, ctx)
	sgA, sgB := e.securityGroup(ctx, b, ""), e.securityGroup(ctx, b, "")
	gb, _, err := e.create(ctx, "gnb-b", sgB, "")
	if err != nil {
		b.Fatal(err)
	}
	ga, _, err := e.create(ctx, "gnb-a", sgA, gnbProbeScript(gb.ip))
	if err != nil {
		b.Fatal(err)
	}
	for _, id := range []string{ga.id, gb.id} {
		if err := e.waitState(ctx, id, proto.InstanceRunning); err != nil {
			b.Fatal(err)
		}
	}
	e.addProbe(b)
	w := &consoleWatch{path: libvirt.ConsoleLog(e.consoles, ga.id)}
	// The guest's probe loop runs once A has booted.
	if _, _, err := w.waitRun(ctx, time.Time{}, 1, false); err != nil {
		b.Fatal(err)
	}

	var guestSeen, guestLow, nsSeen []time.Duration
	for b.Loop() {
		open := time.Now()
		if err := e.setRule(ctx, sgB, "tcp:80,80,"+sgA+"\ntcp:80,80,ip4:"+gnbProbeIP+"/32"); err != nil {
			b.Fatal(err)
		}
		if _, _, err := w.waitRun(ctx, open, 3, true); err != nil {
			b.Fatal(err)
		}
		if err := waitUntil(ctx, time.Minute, func() error {
			_, err := e.probeGET(gb.ip, 300*time.Millisecond)
			return err
		}); err != nil {
			b.Fatal(err)
		}

		// The namespace's probe runs from the PUT until its first failure.
		nsDone := make(chan time.Time, 1)
		put := time.Now()
		go func() {
			for ctx.Err() == nil {
				start := time.Now()
				if _, err := e.probeGET(gb.ip, time.Second); err != nil {
					nsDone <- start
					return
				}
			}
			nsDone <- time.Time{}
		}()
		if err := e.setRule(ctx, sgB, ""); err != nil {
			b.Fatal(err)
		}
		failed, before, err := w.waitRun(ctx, put, 1, false)
		if err != nil {
			b.Fatal(err)
		}
		nsFail := <-nsDone
		if nsFail.IsZero() {
			b.Fatal("the namespace's probe stopped without a failure")
		}
		// The failing GET's start on the host clock.
		start := failed.seen.Add(-time.Duration((failed.end - failed.start) * float64(time.Second)))
		guestSeen = append(guestSeen, start.Sub(put))
		if before.seq != 0 && before.ok {
			prev := before.seen.Add(-time.Duration((before.end - before.start) * float64(time.Second)))
			guestLow = append(guestLow, prev.Sub(put))
		}
		nsSeen = append(nsSeen, nsFail.Sub(put))
	}
	machine.Finish()
	b.StopTimer()
	var out strings.Builder
	machine.WriteTable(&out)
	fmt.Fprintf(&out, "two tiny guests (TCG) on one hva, netfilter service driven by events only (periodic pass: 1 h); %d removals\n\n", len(guestSeen))
	fmt.Fprintln(&out, "| figure | p50 | min | max | n |")
	fmt.Fprintln(&out, "|---|---|---|---|---|")
	for _, row := range []struct {
		name string
		v    []time.Duration
	}{
		{"PUT rule removal → start of guest A's first refused GET", guestSeen},
		{"  (lower bound: start of A's last GET that passed)", guestLow},
		{"PUT rule removal → start of the namespace's first refused GET", nsSeen},
	} {
		mid, lo, hi := durStats(row.v)
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %d |\n", row.name, fmtMS(mid), fmtMS(lo), fmtMS(hi), len(row.v))
	}
	mid, _, _ := durStats(guestSeen)
	b.ReportMetric(float64(mid.Milliseconds()), "p50-ms-put-to-guest-refused")
	fmt.Print(out.String())
}
