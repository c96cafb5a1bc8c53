package bench

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/hypervisor/libvirt"
	"github.com/vdc-project/vdc/hva/localstore"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backing/file"
	stacollector "github.com/vdc-project/vdc/sta/collector"
	stahandlers "github.com/vdc-project/vdc/sta/handlers"
	"github.com/vdc-project/vdc/sta/target/tgt"
)

// BenchmarkAttach measures the hot-plug of a shared volume into a running
// guest: one tiny guest (libvirt, QEMU TCG) and one 10 MB volume made by
// an sta (raw file exported by the machine's tgtd), with a real manager,
// scheduler, hva and sta in this process. Each iteration attaches the
// volume through the API and detaches it again:
//
//   - PUT attach → attached: the client's view (polled every 2 ms);
//   - hva attach job: its first read of the instance → its update to
//     attached answered;
//   - libvirt attach: the driver's AttachDisk (virDomainAttachDeviceFlags,
//     QEMU logging in to the target) inside it;
//   - PUT detach → available, and the driver's DetachDisk (the guest
//     releases the disk) inside it.
//
// It prints p50 (and min/max) of each and the machine.
//
//	VDC_REAL=1 go test -run '^$' -bench Attach -benchtime 10x ./bench/
func BenchmarkAttach(b *testing.B) {
	testutil.Real(b, testutil.NeedRoot, testutil.NeedLibvirt, testutil.NeedTgt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	machine := Probe(ctx)
	env := startAttachEnv(b, ctx)
	inst, vol := env.prepare(b, ctx)

	var samples []attachSample
	for b.Loop() {
		s, err := env.cycle(ctx, inst, vol)
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, s)
	}
	machine.Finish()
	b.StopTimer()

	printSampleTable(b, machine, fmt.Sprintf("tiny guest, 1 vCPU, 128 MiB, domain type qemu (TCG); a 10 MB raw volume exported by tgtd "+
		"(127.0.0.1:3260), hot-plugged as a libvirt iSCSI network disk; %d attach/detach cycles", len(samples)), samples, []sampleRow[attachSample]{
		{"PUT attach → attached (API)", "attach-api", func(s attachSample) time.Duration { return s.api }},
		{"hva attach job (get_instance → attached)", "attach-hva", func(s attachSample) time.Duration { return s.hva }},
		{"  libvirt AttachDisk", "attach-libvirt", func(s attachSample) time.Duration { return s.attachDisk }},
		{"PUT detach → available (API)", "detach-api", func(s attachSample) time.Duration { return s.detachAPI }},
		{"  libvirt DetachDisk (guest releases)", "detach-libvirt", func(s attachSample) time.Duration { return s.detachDisk }},
	}, "")
}

type attachSample struct {
	api, hva, attachDisk, detachAPI, detachDisk time.Duration
}

const (
	atBenchHva    = "hva.atbench"
	atBenchSta    = "sta.atbench"
	atBenchPrefix = "iqn.2026-01.test.at-bench"
)

// attachEnv is the benchmark's cluster.
type attachEnv struct {
	base     string // API base URL
	consoles string
	hc       *http.Client
	timing   *attachTiming
}

// attachTiming is what the hva's wrappers saw in the current iteration.
type attachTiming struct {
	mu                     sync.Mutex
	armed                  bool
	firstGet, attached     time.Time
	attachDisk, detachDisk time.Duration
}

func (t *attachTiming) arm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.armed, t.firstGet, t.attached, t.attachDisk, t.detachDisk = true, time.Time{}, time.Time{}, 0, 0
}

type timedAttacher struct {
	*libvirt.Driver
	t *attachTiming
}

func (h timedAttacher) AttachDisk(ctx context.Context, id string, d hypervisor.Disk) (string, error) {
	t0 := time.Now()
	target, err := h.Driver.AttachDisk(ctx, id, d)
	h.t.mu.Lock()
	h.t.attachDisk += time.Since(t0)
	h.t.mu.Unlock()
	return target, err
}

func (h timedAttacher) DetachDisk(ctx context.Context, id, vol string) error {
	t0 := time.Now()
	err := h.Driver.DetachDisk(ctx, id, vol)
	h.t.mu.Lock()
	h.t.detachDisk += time.Since(t0)
	h.t.mu.Unlock()
	return err
}

type attachCollector struct {
	handlers.Collector
	t *attachTiming
}

func (c attachCollector) GetInstance(ctx context.Context, id string) (*proto.InstanceView, error) {
	c.t.mu.Lock()
	if c.t.armed && c.t.firstGet.IsZero() {
		c.t.firstGet = time.Now()
	}
	c.t.mu.Unlock()
	return c.Collector.GetInstance(ctx, id)
}

func (c attachCollector) UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error {
	err := c.Collector.UpdateVolume(ctx, req)
	if err == nil && req.State != nil && *req.State == proto.VolumeAttached {
		c.t.mu.Lock()
		if c.t.armed && c.t.attached.IsZero() {
			c.t.attached = time.Now()
		}
		c.t.mu.Unlock()
	}
	return err
}

func startAttachEnv(b *testing.B, ctx context.Context) *attachEnv {
	b.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "at-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	b.Cleanup(func() { removeBenchTargets(atBenchPrefix) })
	_, apiAddr, join := startControlPlane(ctx, b, dir, "scheduler.atbench")
	env := &attachEnv{base: "http://" + apiAddr + "/api/12.03", consoles: filepath.Join(dir, "console"),
		hc: &http.Client{Timeout: 30 * time.Second}, timing: &attachTiming{}}
	startAttachHva(b, join, dir, env)
	startAttachSta(b, join, dir)
	return env
}

// startAgent starts an agent whose finished jobs are reported through the
// client made by mk.
func startAgent(b *testing.B, node, role string, join []string, mk func(a *agent.Agent) *collector.Client, register func(a *agent.Agent)) {
	b.Helper()
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID: node, Role: role, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0", Join: join,
		FastGossip: true, Logger: logging.Discard(),
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, collector.DefaultAttemptTimeout)
			defer cancel()
			_ = cc.JobFinished(ctx, node, res)
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	cc = mk(a)
	register(a)
	if err := a.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		_ = a.Shutdown(sctx)
	})
}

func newCollector(a *agent.Agent) *collector.Client {
	return collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logging.Discard(),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second})
}

// startAttachHva wires an hva as hva/cmd/hva does with -hypervisor
// libvirt, its driver and collector wrapped to time the attach job.
func startAttachHva(b *testing.B, join []string, dir string, env *attachEnv) {
	b.Helper()
	lvd, err := libvirt.New(libvirt.Config{NodeID: atBenchHva, ConsoleDir: env.consoles})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		if doms, err := lvd.List(ctx); err == nil {
			for _, d := range doms {
				_ = lvd.Stop(ctx, d.ID, true)
				_ = lvd.Undefine(ctx, d.ID)
			}
		}
		_ = lvd.Close()
	})
	ls, err := localstore.New(localstore.Config{DataDir: filepath.Join(dir, "instances")})
	if err != nil {
		b.Fatal(err)
	}
	startAgent(b, atBenchHva, proto.RoleHva, join, newCollector, func(a *agent.Agent) {
		h, err := handlers.New(handlers.Config{
			NodeID: atBenchHva, Hypervisor: timedAttacher{lvd, env.timing},
			Collector: attachCollector{newCollector(a), env.timing}, LocalStore: ls, Events: a, Logger: logging.Discard(),
		})
		if err != nil {
			b.Fatal(err)
		}
		h.Register(a)
	})
}

// startAttachSta wires an sta as sta/cmd/sta does with raw files and tgt.
func startAttachSta(b *testing.B, join []string, dir string) {
	b.Helper()
	vols, tmp := filepath.Join(dir, "vols"), filepath.Join(dir, "tmp")
	for _, d := range []string{vols, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	store, err := file.New(file.Raw, file.Config{Dir: vols})
	if err != nil {
		b.Fatal(err)
	}
	startAgent(b, atBenchSta, proto.RoleSta, join, newCollector, func(a *agent.Agent) {
		h, err := stahandlers.New(stahandlers.Config{NodeID: atBenchSta, Store: store, Target: tgt.New(tgt.Config{}),
			Collector: stacollector.New(newCollector(a)), IQNPrefix: atBenchPrefix, TmpDir: tmp, Logger: logging.Discard()})
		if err != nil {
			b.Fatal(err)
		}
		h.Register(a)
	})
}

var benchTargetLine = regexp.MustCompile(`(?m)^Target (\d+): (\S+)$`)

// removeBenchTargets deletes tgtd's targets under prefix.
func removeBenchTargets(prefix string) {
	out, _ := exec.Command("tgtadm", "--lld", "iscsi", "--op", "show", "--mode", "target").Output()
	for _, m := range benchTargetLine.FindAllStringSubmatch(string(out), -1) {
		if strings.HasPrefix(m[2], prefix+":") {
			_ = exec.Command("tgtadm", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", m[1], "--force").Run()
		}
	}
}

func (e *attachEnv) post(ctx context.Context, path string, form url.Values, operator bool) ([]byte, error) {
	if operator {
		return expectOK(operatorRequest(ctx, e.hc, http.MethodPost, e.base+path, form))
	}
	return expectOK(doRequest(ctx, e.hc, http.MethodPost, e.base+path, form))
}

// state polls a resource's state until it is want (every 2 ms).
func (e *attachEnv) waitState(ctx context.Context, path, want string) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var v struct {
			State string `json:"state"`
		}
		_, body, err := doRequest(ctx, e.hc, http.MethodGet, e.base+path, nil)
		if err == nil {
			err = json.Unmarshal(body, &v)
		}
		if err == nil && v.State == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s is %q (%v), want %s", path, v.State, err, want)
		}
		if err := sleepCtx(ctx, 2*time.Millisecond); err != nil {
			return err
		}
	}
}

// prepare registers the host, storage node and image, boots one instance
// of the tiny guest and makes one volume; it returns their ids.
func (e *attachEnv) prepare(b *testing.B, ctx context.Context) (string, string) {
	b.Helper()
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
	with := func(v url.Values) url.Values {
		v.Set("account_id", Account)
		return v
	}
	for _, s := range []struct {
		path string
		form url.Values
	}{
		{"/host_nodes.json", url.Values{"uuid": {"hn-atbench"}, "node_id": {atBenchHva}, "arch": {"x86_64"},
			"hypervisor": {"qemu"}, "offering_cpu_cores": {"2"}, "offering_memory_size": {"2048"},
			"offering_disk_space_mb": {"100000"}}},
		{"/storage_nodes.json", url.Values{"uuid": {"sn-atbench"}, "node_id": {atBenchSta}, "storage_type": {"iscsi"},
			"ip_address": {"127.0.0.1"}, "offering_disk_space_mb": {"1000"}}},
		{"/backup_storages.json", url.Values{"uuid": {"bkst-atbench"}, "storage_type": {"local"},
			"base_uri": {"file://" + filepath.Dir(image) + "/"}}},
		{"/backup_objects.json", with(url.Values{"uuid": {"bo-atbench"}, "backup_storage_id": {"bkst-atbench"},
			"object_key": {filepath.Base(image)}, "size": {strconv.Itoa(len(data))},
			"checksum": {hex.EncodeToString(sum[:])}, "container_format": {"none"}, "state": {"available"}})},
		{"/images.json", with(url.Values{"uuid": {"wmi-atbench"}, "backup_object_id": {"bo-atbench"},
			"arch": {"x86_64"}, "boot_dev_type": {"2"}, "file_format": {"raw"}, "is_public": {"true"}})},
	} {
		if _, err := e.post(ctx, s.path, s.form, true); err != nil {
			b.Fatalf("seed %s: %v", s.path, err)
		}
	}
	for _, p := range []string{"/host_nodes/hn-atbench.json", "/storage_nodes/sn-atbench.json"} {
		if err := waitUntil(ctx, placeReadyTimeout, func() error {
			var n struct {
				Status string `json:"status"`
			}
			if err := getJSON(ctx, e.hc, e.base+p, &n); err != nil {
				return err
			}
			if n.Status != "online" {
				return fmt.Errorf("%s is %s", p, n.Status)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	id := func(body []byte, err error) string {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &v); err != nil {
			b.Fatal(err)
		}
		return v.ID
	}
	inst := id(e.post(ctx, "/instances.json", url.Values{"image_id": {"wmi-atbench"}, "hypervisor": {"qemu"},
		"cpu_cores": {"1"}, "memory_size": {"128"}, "hostname": {"atbench"}, "vifs": {"{}"}}, false))
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _, _ = doRequest(ctx, e.hc, http.MethodDelete, e.base+"/instances/"+inst+".json", nil)
		_ = e.waitState(ctx, "/instances/"+inst+".json", proto.InstanceTerminated)
	})
	vol := id(e.post(ctx, "/volumes.json", url.Values{"volume_size": {"10"}}, false))
	for path, want := range map[string]string{"/instances/" + inst + ".json": proto.InstanceRunning,
		"/volumes/" + vol + ".json": proto.VolumeAvailable} {
		if err := e.waitState(ctx, path, want); err != nil {
			b.Fatal(err)
		}
	}
	// The guest handles hot-plug once it has booted.
	console := libvirt.ConsoleLog(e.consoles, inst)
	if err := waitUntil(ctx, 5*time.Minute, func() error {
		c, _ := os.ReadFile(console)
		if !strings.Contains(string(c), "vdc-guest: booted "+inst) {
			return fmt.Errorf("no boot line on %s yet", console)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return inst, vol
}

// cycle attaches the volume and detaches it again.
func (e *attachEnv) cycle(ctx context.Context, inst, vol string) (attachSample, error) {
	var s attachSample
	e.timing.arm()
	t0 := time.Now()
	if _, err := expectOK(doRequest(ctx, e.hc, http.MethodPut, e.base+"/volumes/"+vol+"/attach.json",
		url.Values{"instance_id": {inst}})); err != nil {
		return s, fmt.Errorf("PUT attach: %w", err)
	}
	if err := e.waitState(ctx, "/volumes/"+vol+".json", proto.VolumeAttached); err != nil {
		return s, err
	}
	s.api = time.Since(t0)
	t1 := time.Now()
	if _, err := expectOK(doRequest(ctx, e.hc, http.MethodPut, e.base+"/volumes/"+vol+"/detach.json", url.Values{})); err != nil {
		return s, fmt.Errorf("PUT detach: %w", err)
	}
	if err := e.waitState(ctx, "/volumes/"+vol+".json", proto.VolumeAvailable); err != nil {
		return s, err
	}
	s.detachAPI = time.Since(t1)
	t := e.timing
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.firstGet.IsZero() || t.attached.IsZero() {
		return s, fmt.Errorf("the hva's attach job was not seen (get %v, attached %v)", t.firstGet, t.attached)
	}
	s.hva, s.attachDisk, s.detachDisk = t.attached.Sub(t.firstGet), t.attachDisk, t.detachDisk
	return s, nil
}
