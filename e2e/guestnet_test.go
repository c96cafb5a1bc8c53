package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
)

// Host resources of the guest-network test carry the prefix gn. The
// network 192.168.253.0/24 exists nowhere else on the machine; the bridge
// has no uplink and no address of the host, so the guests' packets go
// nowhere but to each other and to the probe namespace.
const (
	gnNode     = "hva.gn1"
	gnDcNet    = "gnnet"
	gnBridge   = "gnbr0"
	gnTable    = "gne2e"
	gnNetwork  = "nw-gn1"
	gnImage    = "wmi-gntiny"
	gnNetns    = "gn-probe"
	gnVethHost = "gnp-host"
	gnVethNs   = "gnp-ns"
	// gnProbeIP is the probe namespace's address: far from the addresses
	// the network hands out first.
	gnProbeIP = "192.168.253.250"
	virshURI  = "qemu:///system"
)

// gnCluster is a cluster whose hva runs the libvirt driver (TCG) with host
// networking (DC network gnnet on bridge gnbr0) and security groups in
// nftables table gne2e, and whose catalog has the tiny guest.
type gnCluster struct {
	*cluster1
	dataDir, consoles string
	// vifs are the vnics the test made (their taps are removed at the end
	// even if the hva did not).
	vifs []string
}

func newGNCluster(t *testing.T) *gnCluster {
	t.Helper()
	testutil.Real(t, testutil.NeedRoot, testutil.NeedLibvirt)
	image, sum := guestImage(t)
	dataDir, err := os.MkdirTemp("/var/tmp", "gn-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	g := &gnCluster{dataDir: dataDir, consoles: filepath.Join(dataDir, "_console")}
	// Registered before the cluster starts, so run after its daemons are
	// killed: nothing re-creates what this removes.
	removeHostState := func() {
		removeDomainsOf(gnNode)
		for _, vif := range g.vifs {
			_ = exec.Command("ip", "link", "del", vif).Run()
		}
		_ = exec.Command("ip", "netns", "del", gnNetns).Run()
		_ = exec.Command("ip", "link", "del", gnVethHost).Run()
		_ = exec.Command("ip", "link", "del", gnBridge).Run()
		for _, fam := range []string{"bridge", "inet"} {
			_ = exec.Command("nft", "delete", "table", fam, gnTable).Run()
		}
	}
	removeHostState() // a previous run killed before its cleanup
	t.Cleanup(func() {
		removeHostState()
		_ = os.RemoveAll(dataDir)
	})
	conf := filepath.Join(dataDir, "hva.json")
	b, _ := json.Marshal(map[string]any{
		"dc_networks":     map[string]any{gnDcNet: map[string]any{"bridge": gnBridge}},
		"netfilter":       true,
		"netfilter_table": gnTable,
		// Only events make the rules follow the API: the periodic pass
		// would hide a lost event.
		"netfilter_interval_ms": int((time.Hour).Milliseconds()),
	})
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClusterWith(t, options{hvaNodeID: gnNode, hostHypervisor: "qemu", hvaCores: 2, hvaMemoryMB: 1024,
		hvaArgs: []string{"-config", conf, "-hypervisor", "libvirt", "-virt-type", "qemu", "-data-dir", dataDir}})
	g.cluster1 = c
	st, err := os.Stat(image)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		method, path string
		form         url.Values
		acct         string
	}{
		{"POST", "/backup_storages.json", url.Values{"uuid": {"bkst-gntiny"}, "storage_type": {"local"},
			"base_uri": {"file://" + filepath.Dir(image) + "/"}}, ""},
		{"POST", "/backup_objects.json", url.Values{"uuid": {"bo-gntiny"}, "backup_storage_id": {"bkst-gntiny"},
			"object_key": {filepath.Base(image)}, "size": {fmt.Sprint(st.Size())}, "checksum": {sum},
			"container_format": {"none"}, "state": {"available"}, "account_id": {account}}, ""},
		{"POST", "/images.json", url.Values{"uuid": {gnImage}, "backup_object_id": {"bo-gntiny"},
			"arch": {"x86_64"}, "boot_dev_type": {"2"}, "file_format": {"raw"}, "is_public": {"true"},
			"account_id": {account}}, ""},
		{"POST", "/dc_networks.json", url.Values{"uuid": {"dcn-gn1"}, "name": {gnDcNet}}, ""},
		{"PUT", "/dc_networks/dcn-gn1.json", url.Values{"allow_new_networks": {"true"}}, ""},
		{"PUT", "/dc_networks/dcn-gn1/offering_modes/add.json", url.Values{"mode": {"securitygroup"}}, ""},
		{"POST", "/networks.json", url.Values{"uuid": {gnNetwork}, "dc_network": {"dcn-gn1"},
			"network": {"192.168.253.0"}, "prefix": {"24"}, "gw": {"192.168.253.1"},
			"network_mode": {"securitygroup"}, "dhcp_range": {"default"}, "account_id": {account}}, ""},
	} {
		c.must(r.method, r.path, r.form, r.acct)
	}
	return g
}

// removeDomainsOf destroys and undefines the domains the hva node defined
// (their metadata names it).
func removeDomainsOf(node string) {
	out, _ := exec.Command("virsh", "-c", virshURI, "list", "--all", "--name").Output()
	for _, name := range strings.Fields(string(out)) {
		md, err := exec.Command("virsh", "-c", virshURI, "metadata", name,
			"https://vdc-project.github.io/xmlns/hva/1").Output()
		if err != nil || !strings.Contains(string(md), "<node>"+node+"</node>") {
			continue
		}
		_ = exec.Command("virsh", "-c", virshURI, "destroy", name).Run()
		_ = exec.Command("virsh", "-c", virshURI, "undefine", name).Run()
	}
}

// securityGroup creates a group with rule text and returns its id.
func (g *gnCluster) securityGroup(rule string) string {
	g.t.Helper()
	doc := g.must("POST", "/security_groups.json", url.Values{"rule": {rule}}, account).(map[string]any)
	return doc["id"].(string)
}

func (g *gnCluster) setRule(sg, rule string) {
	g.t.Helper()
	g.must("PUT", "/security_groups/"+sg+".json", url.Values{"rule": {rule}}, account)
}

// gnGuest is an instance of the tiny guest with one vnic.
type gnGuest struct {
	id, hostname, vif, ip string
}

// create posts an instance of the tiny guest (1 core, 128 MiB) with one
// vnic on the network in group sg, and waits until the scheduler gave it
// its address.
func (g *gnCluster) create(hostname, sg, userData string) gnGuest {
	g.t.Helper()
	vifs := `{"eth0":{"index":"0","network":"` + gnNetwork + `","security_groups":["` + sg + `"]}}`
	doc := g.must("POST", "/instances.json", url.Values{
		"image_id": {gnImage}, "hypervisor": {"qemu"}, "cpu_cores": {"1"}, "memory_size": {"128"},
		"hostname": {hostname}, "user_data": {userData}, "vifs": {vifs},
	}, account).(map[string]any)
	gg := gnGuest{id: doc["id"].(string), hostname: hostname}
	testutil.WaitFor(g.t, 60*time.Second, func() error {
		doc := g.instance(gg.id)
		vifs, _ := doc["vif"].([]any)
		if len(vifs) != 1 {
			return fmt.Errorf("instance %s (%v) has vifs %v", gg.id, doc["state"], doc["vif"])
		}
		v := vifs[0].(map[string]any)
		ipv4, _ := v["ipv4"].(map[string]any)
		if ipv4 == nil || ipv4["address"] == nil {
			return fmt.Errorf("instance %s (%v): vif %v has no address yet", gg.id, doc["state"], v["vif_id"])
		}
		gg.vif, gg.ip = v["vif_id"].(string), ipv4["address"].(string)
		return nil
	})
	g.vifs = append(g.vifs, gg.vif)
	if gg.ip == gnProbeIP {
		g.t.Fatalf("the network gave %s the probe's address %s", gg.id, gnProbeIP)
	}
	return gg
}

// console is the guest's serial console log, lines without their CR.
func (g *gnCluster) console(id string) []string {
	b, _ := os.ReadFile(filepath.Join(g.consoles, id+".log"))
	var lines []string
	for l := range strings.SplitSeq(string(b), "\n") {
		lines = append(lines, strings.TrimRight(l, "\r"))
	}
	return lines
}

// waitBootLine waits for the guest's boot line naming its instance id,
// hostname and the address the API shows: the metadata drive's network
// configuration reached the guest, which configured its NIC with it.
func (g *gnCluster) waitBootLine(gg gnGuest) {
	g.t.Helper()
	want := "vdc-guest: booted " + gg.id + " hostname=" + gg.hostname + " ips=" + gg.ip
	testutil.WaitFor(g.t, 3*time.Minute, func() error {
		lines := g.console(gg.id)
		for _, l := range lines {
			if l == want {
				return nil
			}
		}
		return fmt.Errorf("console of %s lacks %q; last lines:\n%s", gg.id, want,
			strings.Join(lines[max(0, len(lines)-8):], "\n"))
	})
}

// probeScript is user data that probes target from inside the guest: per
// round one HTTP GET of port 80 (a new TCP connection each time, killed
// after 1 s: busybox 1.35's wget -T crashes) and one ping, then a console
// line
//
//	gn-probe: <seq> <uptime before GET> <uptime after GET> http=ok:<first word>|fail ping=ok|fail
func probeScript(target string) string {
	return `#!/bin/sh
b=` + target + `
i=0
while :; do
	i=$((i + 1))
	read t0 _ </proc/uptime
	if body=$(timeout 1 wget -q -O - "http://$b/" 2>/dev/null); then http="ok:${body%% *}"; else http=fail; fi
	read t1 _ </proc/uptime
	if ping -c 1 -W 1 "$b" >/dev/null 2>&1; then icmp=ok; else icmp=fail; fi
	echo "gn-probe: $i $t0 $t1 http=$http ping=$icmp" >/dev/console
	sleep 0.2
done
`
}

// probeLine is one parsed gn-probe line.
type probeLine struct {
	seq        int
	start, end float64 // guest uptime around the GET
	http, ping string
}

var probeRE = regexp.MustCompile(`gn-probe: (\d+) ([0-9.]+) ([0-9.]+) http=(\S+) ping=(\S+)$`)

func (g *gnCluster) probes(id string) []probeLine {
	var out []probeLine
	for _, l := range g.console(id) {
		m := probeRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		seq, _ := strconv.Atoi(m[1])
		start, _ := strconv.ParseFloat(m[2], 64)
		end, _ := strconv.ParseFloat(m[3], 64)
		out = append(out, probeLine{seq: seq, start: start, end: end, http: m[4], ping: m[5]})
	}
	return out
}

// lastSeq is the sequence number of the guest's last probe line (0: none).
func (g *gnCluster) lastSeq(id string) int {
	p := g.probes(id)
	if len(p) == 0 {
		return 0
	}
	return p[len(p)-1].seq
}

// waitProbes waits until the guest's last n probe lines, all after seq
// from, show http and ping as wanted, and returns the first line of the
// run that showed it.
func (g *gnCluster) waitProbes(id string, from, n int, http, ping string) probeLine {
	g.t.Helper()
	var first probeLine
	testutil.WaitFor(g.t, 2*time.Minute, func() error {
		p := g.probes(id)
		run := 0
		for i := len(p) - 1; i >= 0 && p[i].seq > from && p[i].http == http && p[i].ping == ping; i-- {
			run++
			first = p[i]
		}
		if run < n {
			var tail []string
			for _, l := range p[max(0, len(p)-4):] {
				tail = append(tail, fmt.Sprintf("%d http=%s ping=%s", l.seq, l.http, l.ping))
			}
			return fmt.Errorf("guest %s: %d probe lines after %d show http=%s ping=%s, want %d; last: %s",
				id, run, from, http, ping, n, strings.Join(tail, "; "))
		}
		return nil
	})
	return first
}

// ---- the probe namespace: a veth on the bridge, not a vnic ----

func setupProbeNetns(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"netns", "add", gnNetns},
		{"link", "add", gnVethHost, "type", "veth", "peer", "name", gnVethNs},
		{"link", "set", gnVethNs, "netns", gnNetns},
		{"link", "set", gnVethHost, "master", gnBridge},
		{"link", "set", gnVethHost, "up"},
		{"-n", gnNetns, "link", "set", "lo", "up"},
		{"-n", gnNetns, "addr", "add", gnProbeIP + "/24", "dev", gnVethNs},
		{"-n", gnNetns, "link", "set", gnVethNs, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
}

// nsHTTP gets http://ip/ from the probe namespace (1 s timeout; busybox
// 1.35's wget -T crashes); it returns
// the body's first word.
func nsHTTP(ip string) (string, error) {
	cmd := exec.Command("ip", "netns", "exec", gnNetns, "busybox", "timeout", "1", "busybox", "wget", "-q", "-O", "-", "http://"+ip+"/")
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"} // no proxy
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("GET http://%s/ from %s: %v", ip, gnNetns, err)
	}
	return strings.Fields(string(out) + " ")[0], nil
}

func nsPing(ip string) error {
	if out, err := exec.Command("ip", "netns", "exec", gnNetns, "ping", "-c", "1", "-W", "1", ip).CombinedOutput(); err != nil {
		return fmt.Errorf("ping %s from %s: %v: %s", ip, gnNetns, err, out)
	}
	return nil
}

// ---- host state ----

// tapState is `ip -d link show` of the vnic's tap ("" when it is absent).
func tapState(vif string) string {
	out, err := exec.Command("ip", "-d", "link", "show", "dev", vif).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// hasChain reports whether nftables table gne2e of family has the chain.
func hasChain(family, chain string) bool {
	return exec.Command("nft", "list", "chain", family, gnTable, chain).Run() == nil
}

func domainXML(t *testing.T, id string) string {
	t.Helper()
	out, err := exec.Command("virsh", "-c", virshURI, "dumpxml", id).CombinedOutput()
	if err != nil {
		t.Fatalf("virsh dumpxml %s: %v: %s", id, err, out)
	}
	return string(out)
}

// TestGuestNetworkThroughTheAPI boots two instances of the tiny guest with
// one vnic each on an hva with the libvirt driver (TCG), host networking and
// security groups in nftables, and shows with real packets between the
// guests (and from a namespace on their bridge) that the groups' rules as
// set through the API decide what passes, that a rule's removal cuts new
// connections, that an hva restart loses nothing, and that terminate leaves
// nothing behind.
func TestGuestNetworkThroughTheAPI(t *testing.T) {
	g := newGNCluster(t)
	started := time.Now()
	step := func(what string) { t.Logf("%6.1fs %s", time.Since(started).Seconds(), what) }

	sgA, sgB := g.securityGroup(""), g.securityGroup("")
	b := g.create("gn-b", sgB, "gn-b has no user-data script")
	a := g.create("gn-a", sgA, probeScript(b.ip))
	for _, gg := range []gnGuest{a, b} {
		if doc := g.waitState(gg.id, "running"); doc["status"] != "online" {
			t.Fatalf("instance %s is running but %v", gg.id, doc["status"])
		}
	}

	step("boot lines, taps, domain interfaces")
	for _, gg := range []gnGuest{a, b} {
		g.waitBootLine(gg)
		st := tapState(gg.vif)
		for _, want := range []string{"master " + gnBridge, "state UP", "tun type tap"} {
			if !strings.Contains(st, want) {
				t.Fatalf("tap %s lacks %q:\n%s", gg.vif, want, st)
			}
		}
		x := domainXML(t, gg.id)
		if !strings.Contains(x, "<interface type='ethernet'>") || !strings.Contains(x, "<target dev='"+gg.vif+"' managed='no'/>") {
			t.Fatalf("domain %s does not open tap %s unmanaged:\n%s", gg.id, gg.vif, x)
		}
		for _, fam := range []string{"bridge", "inet"} {
			if !hasChain(fam, "in_"+gg.vif) {
				t.Fatalf("no %s chain in_%s in table %s", fam, gg.vif, gnTable)
			}
		}
	}
	setupProbeNetns(t)

	step("no rule: A reaches nothing of B")
	g.waitProbes(a.id, 0, 2, "fail", "fail")
	if _, err := nsHTTP(b.ip); err == nil {
		t.Fatalf("the probe namespace reaches B's port 80 without a rule")
	}

	step("B allows A's group: tcp 80 and icmp")
	g.setRule(sgB, "tcp:80,80,"+sgA+"\nicmp:-1,-1,"+sgA)
	g.waitProbes(a.id, g.lastSeq(a.id), 2, "ok:"+b.id, "ok")
	// The namespace is not in A's group: B stays closed to it.
	if _, err := nsHTTP(b.ip); err == nil {
		t.Fatalf("the probe namespace reaches B's port 80 through a rule naming group %s only", sgA)
	}

	step("icmp only")
	g.setRule(sgB, "icmp:-1,-1,"+sgA)
	g.waitProbes(a.id, g.lastSeq(a.id), 2, "fail", "ok")

	step("tcp 80 from A's address only; tcp 80 and icmp from the namespace's")
	g.setRule(sgB, "tcp:80,80,ip4:"+a.ip+"/32\ntcp:80,80,ip4:"+gnProbeIP+"/32\nicmp:-1,-1,ip4:"+gnProbeIP+"/32")
	g.waitProbes(a.id, g.lastSeq(a.id), 2, "ok:"+b.id, "fail")
	testutil.WaitFor(t, 30*time.Second, func() error {
		word, err := nsHTTP(b.ip)
		if err == nil && word != b.id {
			err = fmt.Errorf("the probe namespace got %q from %s, want %s", word, b.ip, b.id)
		}
		return err
	})
	testutil.WaitFor(t, 30*time.Second, func() error { return nsPing(b.ip) })
	g.setRule(sgB, "tcp:80,80,ip4:"+gnProbeIP+"/32")
	testutil.WaitFor(t, 30*time.Second, func() error {
		if nsPing(b.ip) == nil {
			return fmt.Errorf("the probe namespace still pings B without an icmp rule")
		}
		return nil
	})
	if _, err := nsHTTP(b.ip); err != nil {
		t.Fatalf("the probe namespace lost port 80 of B with the icmp rule: %v", err)
	}
	// Nothing opens A to the namespace.
	if _, err := nsHTTP(a.ip); err == nil {
		t.Fatalf("the probe namespace reaches A, whose group has no rule")
	}

	step("removing the rules cuts new connections")
	mark := g.lastSeq(a.id)
	g.setRule(sgB, "")
	g.waitProbes(a.id, mark, 2, "fail", "fail")
	testutil.WaitFor(t, 30*time.Second, func() error {
		if _, err := nsHTTP(b.ip); err == nil {
			return fmt.Errorf("the probe namespace still reaches B")
		}
		return nil
	})

	step("an hva restart loses nothing")
	g.setRule(sgB, "tcp:80,80,"+sgA+"\nicmp:-1,-1,"+sgA)
	g.waitProbes(a.id, g.lastSeq(a.id), 2, "ok:"+b.id, "ok")
	domIDs := map[string]string{}
	for _, gg := range []gnGuest{a, b} {
		out, _ := exec.Command("virsh", "-c", virshURI, "domid", gg.id).Output()
		domIDs[gg.id] = strings.TrimSpace(string(out))
	}
	g.hva.kill(t)
	// The guests keep talking while no hva runs: the taps and the rules
	// stay in the kernel.
	g.waitProbes(a.id, g.lastSeq(a.id), 2, "ok:"+b.id, "ok")
	g.hva = g.restart(g.hva, "hva-restarted")
	testutil.WaitFor(t, 30*time.Second, func() error {
		if len(logLines(t, g.hva, "netfilter rules applied")) == 0 {
			return fmt.Errorf("the restarted hva applied no rules yet")
		}
		return nil
	})
	g.waitProbes(a.id, g.lastSeq(a.id), 2, "ok:"+b.id, "ok")
	for _, gg := range []gnGuest{a, b} {
		out, _ := exec.Command("virsh", "-c", virshURI, "domid", gg.id).Output()
		if now := strings.TrimSpace(string(out)); now != domIDs[gg.id] {
			t.Fatalf("domain %s was re-created across the hva restart (id %s, was %s)", gg.id, now, domIDs[gg.id])
		}
		if doc := g.instance(gg.id); doc["state"] != "running" || doc["status"] != "online" {
			t.Fatalf("after the hva restart %s is %v/%v", gg.id, doc["state"], doc["status"])
		}
		if !strings.Contains(tapState(gg.vif), "master "+gnBridge) {
			t.Fatalf("tap %s is gone after the hva restart", gg.vif)
		}
	}
	// The restarted hva follows rule changes (its event subscription).
	mark = g.lastSeq(a.id)
	g.setRule(sgB, "icmp:-1,-1,"+sgA)
	g.waitProbes(a.id, mark, 2, "fail", "ok")

	step("terminate removes domain, overlay, tap and chains")
	for _, gg := range []gnGuest{b, a} {
		g.must("DELETE", "/instances/"+gg.id+".json", nil, account)
		g.waitState(gg.id, "terminated")
		if st, err := domstate(gg.id); err == nil {
			t.Fatalf("domain %s is still defined (%s)", gg.id, st)
		}
		if _, err := os.Stat(filepath.Join(g.dataDir, gg.id)); !os.IsNotExist(err) {
			t.Fatalf("instance dir of terminated %s: %v", gg.id, err)
		}
		if st := tapState(gg.vif); st != "" {
			t.Fatalf("tap %s of terminated %s is left:\n%s", gg.vif, gg.id, st)
		}
		testutil.WaitFor(t, 30*time.Second, func() error {
			for _, chain := range []string{"bridge in_", "bridge out_", "inet in_"} {
				fam, prefix, _ := strings.Cut(chain, " ")
				if hasChain(fam, prefix+gg.vif) {
					return fmt.Errorf("%s chain %s of terminated %s is left", fam, prefix+gg.vif, gg.id)
				}
			}
			return nil
		})
		if gg == b {
			// Only B's: A's chains stay while A runs.
			for _, chain := range []string{"bridge in_", "bridge out_", "inet in_"} {
				fam, prefix, _ := strings.Cut(chain, " ")
				if !hasChain(fam, prefix+a.vif) {
					t.Fatalf("%s chain %s of running %s went with B's", fam, prefix+a.vif, a.id)
				}
			}
		}
	}
	g.waitJobsIdle()
	for _, j := range g.jobs() {
		if j["state"] != "finished" || j["finish_status"] != "success" {
			t.Errorf("job %v %v %v: %v/%v %v", j["id"], j["queue_name"], j["job_name"], j["state"], j["finish_status"], j["finish_message"])
		}
	}
}
