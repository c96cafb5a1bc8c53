package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/manager/cluster"
)

// proc is one dcmgr process of a loopback cluster.
type proc struct {
	name, api, rpc, serf, raft, dir string
	cmd                             *exec.Cmd
	log                             *os.File
}

func buildDcmgr(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dcmgr")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build dcmgr: %v\n%s", err, out)
	}
	return bin
}

func (p *proc) start(t *testing.T, bin string, join string) {
	t.Helper()
	args := []string{"-node", p.name, "-data-dir", p.dir, "-api", p.api, "-rpc", p.rpc, "-serf", p.serf, "-raft", p.raft,
		"-bootstrap-expect", "3", "-fast-gossip", "-log-level", "warn"}
	if join != "" {
		args = append(args, "-join", join)
	}
	var err error
	p.log, err = os.OpenFile(filepath.Join(p.dir+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.dir + ".log")
			t.Logf("%s log:\n%s", p.name, b)
		}
	})
}

func (p *proc) kill() {
	if p.cmd != nil && p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill() // SIGKILL: no leave, no flush
		_ = p.cmd.Wait()
	}
	if p.log != nil {
		p.log.Close()
	}
}

func httpDo(method, u string, form url.Values) (int, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("X_VDC_ACCOUNT_UUID", "a-procs001")
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

func leaderName(p *proc) (string, error) {
	code, body, err := httpDo("GET", "http://"+p.api+"/internal/v1/peers", nil)
	if err != nil || code != 200 {
		return "", fmt.Errorf("peers: %d %v", code, err)
	}
	var peers []struct {
		ID     string `json:"id"`
		Leader bool   `json:"leader"`
	}
	if err := json.Unmarshal(body, &peers); err != nil {
		return "", err
	}
	if len(peers) != 3 {
		return "", fmt.Errorf("%d peers", len(peers))
	}
	for _, pe := range peers {
		if pe.Leader {
			return pe.ID, nil
		}
	}
	return "", fmt.Errorf("no leader yet")
}

// TestProcessClusterSurvivesKill9 runs three dcmgr processes on loopback,
// kills the leader with SIGKILL under a write load, and checks that writes
// resume through the survivors and that no acknowledged write is lost, also
// after the killed manager restarts from its data dir.
func TestProcessClusterSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs dcmgr processes")
	}
	bin := buildDcmgr(t)
	base := t.TempDir()
	var procs []*proc
	for i := 1; i <= 3; i++ {
		procs = append(procs, &proc{
			name: fmt.Sprintf("p%d", i), dir: filepath.Join(base, fmt.Sprintf("p%d", i)),
			api: "127.0.0.1:" + cluster.FreePort(t), rpc: "127.0.0.1:" + cluster.FreePort(t),
			serf: "127.0.0.1:" + cluster.FreePort(t),
			raft: "127.0.0.1:" + cluster.FreePort(t),
		})
	}
	for i, p := range procs {
		join := ""
		if i > 0 {
			join = procs[0].serf
		}
		p.start(t, bin, join)
	}
	var leader string
	testutil.WaitFor(t, 20*time.Second, func() error {
		var err error
		leader, err = leaderName(procs[0])
		return err
	})

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("bkst-w%dn%d", w, n)
				p := procs[(w+n)%3]
				code, _, err := httpDo("POST", "http://"+p.api+"/api/12.03/backup_storages.json",
					url.Values{"uuid": {id}, "storage_type": {"local"}, "base_uri": {"file:///" + id}})
				if err == nil && code == 200 {
					mu.Lock()
					acked = append(acked, id)
					mu.Unlock()
				} else {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)
	var killed *proc
	for _, p := range procs {
		if p.name == leader {
			killed = p
		}
	}
	killed.kill()
	killedAt := time.Now()
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	testutil.WaitFor(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acked) <= before+10 {
			return fmt.Errorf("writes not resumed after kill (%d acked)", len(acked))
		}
		return nil
	})
	t.Logf("writes resumed %s after SIGKILL of the leader", time.Since(killedAt).Round(time.Millisecond))
	close(stop)
	wg.Wait()

	// Restart the killed manager from its data dir; it must catch up.
	killed.start(t, bin, procs[0].serf)
	for _, p := range procs {
		testutil.WaitFor(t, 20*time.Second, func() error {
			for _, id := range acked {
				code, _, err := httpDo("GET", "http://"+p.api+"/api/12.03/backup_storages/"+id+".json?stale=true", nil)
				if err != nil || code != 200 {
					return fmt.Errorf("%s lacks acknowledged %s (%d %v)", p.name, id, code, err)
				}
			}
			return nil
		})
	}
	t.Logf("%d acknowledged writes present on all three managers", len(acked))
}
