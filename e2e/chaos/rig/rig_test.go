package rig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
)

// TestRig starts the rig and checks each fault and its heal by what it
// does: who can reach whom, a frozen manager, a manager's clock, a full
// data dir, a killed and restarted process; and that Close leaves nothing.
func TestRig(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	ctx := context.Background()
	root, err := ModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := Build(ctx, root, bin); err != nil {
		t.Fatal(err)
	}
	r, err := Start(ctx, Config{Bin: bin, Dir: dir, Logf: t.Logf, RaftLogLevel: os.Getenv("VDC_RIG_RAFT_LOG")})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if t.Failed() && !closed {
			for _, m := range r.Managers {
				m.DumpStacks()
			}
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("ch-rig-logs-%d", os.Getpid()))
			if err := os.CopyFS(keep, os.DirFS(filepath.Join(dir, "logs"))); err == nil {
				t.Logf("daemon logs (with stacks) kept in %s", keep)
			}
		}
		if !closed {
			_ = r.Close()
		}
	})
	c, err := r.HTTPClient(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitHealthy(ctx, c, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	m1, m2, m3 := r.Managers[0], r.Managers[1], r.Managers[2]
	fromM1, err := r.HTTPClientFrom(m1.Host, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	reach := func(c *http.Client, m *Proc) bool {
		_, err := m.Status(ctx, c)
		return err == nil
	}

	// Partition: m1 against the rest; the client still reaches both sides.
	if err := r.Partition(ctx, []*Host{m1.Host}, []*Host{m2.Host, m3.Host}); err != nil {
		t.Fatal(err)
	}
	if reach(fromM1, m2) || !reach(c, m1) || !reach(c, m2) {
		t.Fatalf("partition m1 | m2,m3: m1->m2 %v, client->m1 %v, client->m2 %v",
			reach(fromM1, m2), reach(c, m1), reach(c, m2))
	}
	if err := r.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if !reach(fromM1, m2) {
		t.Fatal("m1 cannot reach m2 after the heal")
	}

	// Isolation: nobody reaches m2.
	if err := r.Isolate(ctx, m2.Host); err != nil {
		t.Fatal(err)
	}
	if reach(c, m2) || reach(fromM1, m2) {
		t.Fatal("m2 reachable with its switch port down")
	}
	if err := r.Heal(ctx); err != nil {
		t.Fatal(err)
	}

	// One way: UDP from m1 to m2 is dropped, from m2 to m1 passes.
	if err := r.DropOneWay(ctx, m1.Host, m2.Host); err != nil {
		t.Fatal(err)
	}
	if udpPasses(t, r, m1.Host, m2.Host) || !udpPasses(t, r, m2.Host, m1.Host) {
		t.Fatalf("one way m1->m2: m1->m2 passes %v, m2->m1 passes %v",
			udpPasses(t, r, m1.Host, m2.Host), udpPasses(t, r, m2.Host, m1.Host))
	}
	if err := r.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if !udpPasses(t, r, m1.Host, m2.Host) {
		t.Fatal("m1->m2 still dropped after the heal")
	}

	// Pause: a frozen manager accepts connections but answers nothing.
	if err := m3.Pause(); err != nil {
		t.Fatal(err)
	}
	if _, err := m3.Status(ctx, c); err == nil || !isTimeout(err) {
		t.Fatalf("frozen m3 answered: %v", err)
	}
	if err := m3.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := m3.Status(ctx, c); err != nil {
		t.Fatalf("m3 after SIGCONT: %v", err)
	}

	// Clock: the leader stamps records with its offset clock.
	if err := r.WaitHealthy(ctx, c, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	l, err := r.Leader(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.SetClockOffset(time.Hour); err != nil {
		t.Fatal(err)
	}
	created := func() time.Time {
		t.Helper()
		req, _ := http.NewRequest("POST", l.API+"/security_groups.json", strings.NewReader(url.Values{"display_name": {"clock"}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-VDC-Account-UUID", "a-rigtest1")
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var doc struct {
			CreatedAt time.Time `json:"created_at"`
		}
		if err := json.NewDecoder(res.Body).Decode(&doc); err != nil || res.StatusCode != 200 {
			t.Fatalf("create: HTTP %d %v", res.StatusCode, err)
		}
		return doc.CreatedAt
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if d := time.Until(created()); d < 55*time.Minute || d > 65*time.Minute {
			return fmt.Errorf("created_at is %v from now, want about +1h", d.Round(time.Second))
		}
		return nil
	})
	if err := l.SetClockOffset(0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, func() error {
		if d := time.Until(created()); d > time.Minute || d < -time.Minute {
			return fmt.Errorf("created_at is %v from now after the reset", d.Round(time.Second))
		}
		return nil
	})

	// Disk: a full data dir refuses writes until freed.
	probe := filepath.Join(m3.DataDir, "probe")
	if err := m3.FillDisk(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probe, []byte("x"), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write to a full data dir: %v, want ENOSPC", err)
	}
	if err := m3.FreeDisk(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probe, []byte("x"), 0o600); err != nil {
		t.Fatalf("write after FreeDisk: %v", err)
	}
	_ = os.Remove(probe)

	// Kill -9 and restart under the same name and address.
	h1 := r.Hvas[0]
	pid := h1.Pid()
	h1.Kill()
	if !h1.Exited() || pidAlive(pid) {
		t.Fatalf("hva %d still runs after kill", pid)
	}
	if err := h1.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitHealthy(ctx, c, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	if h1.Starts() != 2 || h1.Pid() == pid {
		t.Fatalf("restart: %d starts, pid %d (was %d)", h1.Starts(), h1.Pid(), pid)
	}

	// Close removes the processes, namespaces and mounts.
	pids := []int{}
	for _, p := range r.Procs() {
		pids = append(pids, p.Pid())
	}
	closed = true
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if pidAlive(pid) {
			t.Errorf("pid %d alive after Close", pid)
		}
	}
	for _, h := range append(r.Hosts, r.Client) {
		if _, err := os.Stat("/run/netns/" + h.NS); err == nil {
			t.Errorf("namespace %s left after Close", h.NS)
		}
	}
	for _, m := range r.Managers {
		if mounted(m.DataDir) {
			t.Errorf("%s still mounted after Close", m.DataDir)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// udpPasses sends a datagram from one host to a listener on the other.
func udpPasses(t *testing.T, r *Rig, from, to *Host) bool {
	t.Helper()
	var l net.PacketConn
	if err := r.InNamespace(to, func() error {
		var err error
		l, err = net.ListenPacket("udp4", to.Addr+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := r.InNamespace(from, func() error {
		c, err := net.Dial("udp4", l.LocalAddr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("rig"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_ = l.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	buf := make([]byte, 16)
	n, _, err := l.ReadFrom(buf)
	return err == nil && string(buf[:n]) == "rig"
}
