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
)

// BenchmarkLibvirtBoot measures, for the tiny guest on an hva with the
// libvirt driver (QEMU TCG) and a real manager and scheduler daemon in this
// process, one instance at a time (each iteration creates one, waits for
// running, deletes it and waits for terminated):
//
//   - post-running: POST /instances → the API shows running (client view);
//   - hva-job: the hva's boot job, from its first read of the instance to
//     its update to running;
//   - define, start: libvirt's own DomainDefineXML and DomainCreate in it;
//   - hva-overhead: hva-job − (define + start): reading and updating the
//     instance through the managers, the local store (image cache, overlay,
//     metadata drive) and the driver's own checks;
//   - guest-boot: running → the guest's boot line on its console.
//
// It prints p50 (and min/max) of each and the machine.
//
//	VDC_REAL=1 go test -run '^$' -bench LibvirtBoot -benchtime 10x ./bench/
func BenchmarkLibvirtBoot(b *testing.B) {
	testutil.Real(b, testutil.NeedRoot, testutil.NeedLibvirt)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	machine := Probe(ctx)
	env := startBootEnv(b, ctx)
	hc := &http.Client{Timeout: 30 * time.Second}

	var samples []bootSample
	for b.Loop() {
		s, err := env.bootOnce(ctx, hc, len(samples))
		if err != nil {
			b.Fatal(err)
		}
		samples = append(samples, s)
	}
	machine.Finish()
	b.StopTimer()

	printSampleTable(b, machine, fmt.Sprintf("tiny guest, 1 vCPU, 128 MiB, domain type qemu (TCG); %d sequential instances (the first fetches the image into the cache)", len(samples)), samples, []sampleRow[bootSample]{
		{"POST /instances → running", "", func(s bootSample) time.Duration { return s.postToRunning }},
		{"hva boot job (get_instance → update running)", "", func(s bootSample) time.Duration { return s.hvaJob }},
		{"  libvirt define", "", func(s bootSample) time.Duration { return s.define }},
		{"  libvirt start", "", func(s bootSample) time.Duration { return s.start }},
		{"  local store prepare", "", func(s bootSample) time.Duration { return s.prepare }},
		{"hva overhead = job − (define + start)", "", func(s bootSample) time.Duration { return s.hvaJob - s.define - s.start }},
		{"running → guest boot line", "", func(s bootSample) time.Duration { return s.guestBoot }},
	}, fmt.Sprintf("\nfirst instance (cold image cache): POST → running %s, prepare %s\n",
		fmtMS(samples[0].postToRunning), fmtMS(samples[0].prepare)))
}

type bootSample struct {
	postToRunning, hvaJob, define, start, prepare, guestBoot time.Duration
}

// bootEnv is the manager, scheduler and libvirt hva of the benchmark.
type bootEnv struct {
	base     string
	consoles string
	timing   *bootTiming
}

const bootNode = "hva.vlbench"

func startBootEnv(b *testing.B, ctx context.Context) *bootEnv {
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
	dir, err := os.MkdirTemp("/var/tmp", "vl-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = os.RemoveAll(dir) })

	_, apiAddr, join := startControlPlane(ctx, b, dir, "scheduler.vlbench")

	env := &bootEnv{base: "http://" + apiAddr + "/api/12.03", consoles: filepath.Join(dir, "console"), timing: &bootTiming{}}
	startBootHva(b, join, dir, env)

	st, _ := os.Stat(image)
	acct := url.Values{"account_id": {Account}}
	with := func(v url.Values) url.Values {
		v["account_id"] = acct["account_id"]
		return v
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, s := range []struct {
		path string
		form url.Values
	}{
		{"/host_nodes.json", url.Values{"uuid": {"hn-vlbench"}, "node_id": {bootNode}, "arch": {"x86_64"},
			"hypervisor": {"qemu"}, "offering_cpu_cores": {"2"}, "offering_memory_size": {"2048"},
			"offering_disk_space_mb": {"100000"}}},
		{"/backup_storages.json", url.Values{"uuid": {"bkst-vlbench"}, "storage_type": {"local"},
			"base_uri": {"file://" + filepath.Dir(image) + "/"}}},
		{"/backup_objects.json", with(url.Values{"uuid": {"bo-vlbench"}, "backup_storage_id": {"bkst-vlbench"},
			"object_key": {filepath.Base(image)}, "size": {strconv.FormatInt(st.Size(), 10)},
			"checksum": {hex.EncodeToString(sum[:])}, "container_format": {"none"}, "state": {"available"}})},
		{"/images.json", with(url.Values{"uuid": {"wmi-vlbench"}, "backup_object_id": {"bo-vlbench"},
			"arch": {"x86_64"}, "boot_dev_type": {"2"}, "file_format": {"raw"}, "is_public": {"true"}})},
	} {
		if _, err := expectOK(operatorRequest(ctx, hc, http.MethodPost, env.base+s.path, s.form)); err != nil {
			b.Fatalf("seed %s: %v", s.path, err)
		}
	}
	if err := waitUntil(ctx, placeReadyTimeout, func() error {
		var h struct {
			Status string `json:"status"`
		}
		if err := getJSON(ctx, hc, env.base+"/host_nodes/hn-vlbench.json", &h); err != nil {
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

// startBootHva wires an hva as hva/cmd/hva does with -hypervisor libvirt,
// its driver, local store and collector wrapped to time the boot job.
func startBootHva(b *testing.B, join []string, dir string, env *bootEnv) {
	b.Helper()
	lvd, err := libvirt.New(libvirt.Config{NodeID: bootNode, ConsoleDir: env.consoles})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = lvd.Close() })
	ls, err := localstore.New(localstore.Config{DataDir: filepath.Join(dir, "instances")})
	if err != nil {
		b.Fatal(err)
	}
	var cc *collector.Client
	a, err := agent.New(agent.Config{
		NodeID: bootNode, Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0", Join: join,
		FastGossip: true, Logger: logging.Discard(),
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, collector.DefaultAttemptTimeout)
			defer cancel()
			_ = cc.JobFinished(ctx, bootNode, res)
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logging.Discard()})
	t := env.timing
	h, err := handlers.New(handlers.Config{
		NodeID: bootNode, Hypervisor: timedHypervisor{lvd, t}, Collector: timedCollector{cc, t},
		LocalStore: timedStore{ls, t}, Events: a, Logger: logging.Discard(),
	})
	if err != nil {
		b.Fatal(err)
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), agentStopTimeout)
		defer cancel()
		_ = a.Shutdown(sctx)
	})
}

// bootTiming records, per instance, when the hva's boot job read it first,
// when it was updated to running, and the durations of define, start and
// prepare.
type bootTiming struct {
	mu                     sync.Mutex
	firstGet, running      map[string]time.Time
	define, start, prepare map[string]time.Duration
	initOnce               sync.Once
}

func (t *bootTiming) init() {
	t.initOnce.Do(func() {
		t.firstGet, t.running = map[string]time.Time{}, map[string]time.Time{}
		t.define, t.start, t.prepare = map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
	})
}

func (t *bootTiming) add(m map[string]time.Duration, id string, d time.Duration) {
	t.init()
	t.mu.Lock()
	m[id] += d
	t.mu.Unlock()
}

type timedHypervisor struct {
	hypervisor.Hypervisor
	t *bootTiming
}

func (h timedHypervisor) Define(ctx context.Context, spec hypervisor.Spec) error {
	t0 := time.Now()
	err := h.Hypervisor.Define(ctx, spec)
	h.t.init()
	h.t.add(h.t.define, spec.ID, time.Since(t0))
	return err
}

func (h timedHypervisor) Start(ctx context.Context, id string) error {
	t0 := time.Now()
	err := h.Hypervisor.Start(ctx, id)
	h.t.init()
	h.t.add(h.t.start, id, time.Since(t0))
	return err
}

type timedStore struct {
	handlers.LocalStore
	t *bootTiming
}

func (s timedStore) Prepare(ctx context.Context, v *proto.InstanceView, spec *hypervisor.Spec, firstBoot bool) error {
	t0 := time.Now()
	err := s.LocalStore.Prepare(ctx, v, spec, firstBoot)
	s.t.init()
	s.t.add(s.t.prepare, v.ID, time.Since(t0))
	return err
}

type timedCollector struct {
	handlers.Collector
	t *bootTiming
}

func (c timedCollector) GetInstance(ctx context.Context, id string) (*proto.InstanceView, error) {
	c.t.init()
	c.t.mu.Lock()
	if _, ok := c.t.firstGet[id]; !ok {
		c.t.firstGet[id] = time.Now()
	}
	c.t.mu.Unlock()
	return c.Collector.GetInstance(ctx, id)
}

func (c timedCollector) UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error {
	err := c.Collector.UpdateInstance(ctx, req)
	if err == nil && req.State != nil && *req.State == proto.InstanceRunning {
		c.t.init()
		c.t.mu.Lock()
		if _, ok := c.t.running[req.InstanceID]; !ok {
			c.t.running[req.InstanceID] = time.Now()
		}
		c.t.mu.Unlock()
	}
	return err
}

// bootOnce creates one instance, waits for running (and the guest's boot
// line), deletes it and waits for terminated.
func (e *bootEnv) bootOnce(ctx context.Context, hc *http.Client, i int) (bootSample, error) {
	hostname := "vlbench" + strconv.Itoa(i)
	t0 := time.Now()
	body, err := expectOK(doRequest(ctx, hc, http.MethodPost, e.base+"/instances.json", url.Values{
		"image_id": {"wmi-vlbench"}, "hypervisor": {"qemu"}, "cpu_cores": {"1"}, "memory_size": {"128"},
		"hostname": {hostname}, "vifs": {"{}"},
	}))
	if err != nil {
		return bootSample{}, fmt.Errorf("POST /instances: %w", err)
	}
	var inst struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &inst); err != nil {
		return bootSample{}, err
	}
	state := func() (string, error) {
		var v struct {
			State string `json:"state"`
		}
		_, b, err := doRequest(ctx, hc, http.MethodGet, e.base+"/instances/"+inst.ID+".json", nil)
		if err == nil {
			err = json.Unmarshal(b, &v)
		}
		return v.State, err
	}
	var s bootSample
	if err := waitUntil(ctx, 5*time.Minute, func() error {
		st, err := state()
		if err != nil {
			return err
		}
		if st == proto.InstanceTerminated {
			return fmt.Errorf("instance %s was terminated: boot failed", inst.ID)
		}
		if st != proto.InstanceRunning {
			return fmt.Errorf("instance %s is %s", inst.ID, st)
		}
		return nil
	}); err != nil {
		return s, err
	}
	s.postToRunning = time.Since(t0)
	running := time.Now()
	console := libvirt.ConsoleLog(e.consoles, inst.ID)
	if err := waitUntil(ctx, 5*time.Minute, func() error {
		b, _ := os.ReadFile(console)
		if !strings.Contains(string(b), "vdc-guest: booted "+inst.ID+" hostname="+hostname+" ") {
			return fmt.Errorf("no boot line on %s yet", console)
		}
		return nil
	}); err != nil {
		return s, err
	}
	s.guestBoot = time.Since(running)
	if _, err := expectOK(doRequest(ctx, hc, http.MethodDelete, e.base+"/instances/"+inst.ID+".json", nil)); err != nil {
		return s, fmt.Errorf("DELETE: %w", err)
	}
	if err := waitUntil(ctx, 5*time.Minute, func() error {
		st, err := state()
		if err != nil {
			return err
		}
		if st != proto.InstanceTerminated {
			return fmt.Errorf("instance %s is %s", inst.ID, st)
		}
		return nil
	}); err != nil {
		return s, err
	}
	t := e.timing
	t.mu.Lock()
	defer t.mu.Unlock()
	s.hvaJob = t.running[inst.ID].Sub(t.firstGet[inst.ID])
	s.define, s.start, s.prepare = t.define[inst.ID], t.start[inst.ID], t.prepare[inst.ID]
	return s, nil
}
