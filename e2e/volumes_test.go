package e2e

// In-process volume flow: a real manager (raft, bbolt, serf, RPC, job
// dispatcher, node health), a real scheduler daemon, a real hva over the
// dummy hypervisor, and fake storage agents registered on common/agent that
// keep their "disks" in memory but talk to the managers exactly as the sta
// does (sta-handle verbs delivered by the dispatcher, sta-collector calls
// back). It shows the volume states of spec §3.2 as clients see them.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/manager/server"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
	schedd "github.com/vdc-project/vdc/scheduler/daemon"
)

const volWait = 30 * time.Second

// volCluster is one in-process manager with a scheduler and an hva.
type volCluster struct {
	t    *testing.T
	m    *server.Manager
	api  string // 12.03 base URL
	serf string // the manager's serf address, which agents join
}

func startVolCluster(t *testing.T) *volCluster {
	t.Helper()
	logger := logging.NewTest(t)
	cfg := cluster.TestConfig(t)
	apiL, rpcL, err := server.Listen("127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m, err := server.Start(server.Config{Cluster: cfg, API: api.DefaultConfig(), APIListener: apiL, RPCListener: rpcL,
		HealthInterval: 100 * time.Millisecond}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	cluster.WaitForLeader(t, m.Cluster)
	c := &volCluster{t: t, m: m, api: "http://" + apiL.Addr().String() + api.Prefix, serf: cfg.SerfAddr}

	sc := schedd.DefaultConfig()
	sc.NodeID, sc.SerfAddr, sc.RPCAddr = "scheduler.vo", "127.0.0.1:0", "127.0.0.1:0"
	sc.Join, sc.FastGossip = []string{c.serf}, true
	d, err := schedd.New(sc, logger)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	})
	return c
}

// call sends a form request as the e2e account and decodes the answer.
func (c *volCluster) call(method, path string, form url.Values) (int, any) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r, err := http.NewRequest(method, c.api+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	r.Header["X_VDC_ACCOUNT_UUID"] = []string{account}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		c.t.Fatalf("%s %s: %d %s", method, path, res.StatusCode, b)
	}
	return res.StatusCode, doc
}

// ok calls and requires 200, returning the document as an object (or the
// first element of an array answer).
func (c *volCluster) ok(method, path string, form url.Values) map[string]any {
	c.t.Helper()
	st, doc := c.call(method, path, form)
	if st != http.StatusOK {
		c.t.Fatalf("%s %s = %d %v", method, path, st, doc)
	}
	if m, ok := doc.(map[string]any); ok {
		return m
	}
	return map[string]any{"array": doc}
}

// apiError requires an error document with status and code.
func (c *volCluster) apiError(status int, code, method, path string, form url.Values) {
	c.t.Helper()
	st, doc := c.call(method, path, form)
	if m, _ := doc.(map[string]any); st != status || m["code"] != code {
		c.t.Fatalf("%s %s = %d %v, want %d/%s", method, path, st, doc, status, code)
	}
}

func (c *volCluster) volume(id string) map[string]any {
	c.t.Helper()
	return c.ok("GET", "/volumes/"+id+".json", nil)
}

// waitVolume polls until the volume's state is want.
func (c *volCluster) waitVolume(id, want string) map[string]any {
	c.t.Helper()
	var doc map[string]any
	testutil.WaitFor(c.t, volWait, func() error {
		doc = c.volume(id)
		if doc["state"] != want {
			return fmt.Errorf("volume %s is %v, want %s", id, doc["state"], want)
		}
		return nil
	})
	return doc
}

// job reads a stored job of the resource (the one of endpoint.verb).
func (c *volCluster) job(resource, endpoint, verb string) proto.Job {
	c.t.Helper()
	var found []proto.Job
	_ = c.m.Cluster.Store().View(func(tx *state.Tx) error {
		return tx.Each(proto.KindJob, false, func(e state.Entry) error {
			var j proto.Job
			if json.Unmarshal(e.Value, &j) == nil && j.ResourceID == resource && j.QueueName == endpoint && j.Verb == verb {
				found = append(found, j)
			}
			return nil
		})
	})
	if len(found) != 1 {
		c.t.Fatalf("%d jobs %s.%s for %s, want 1", len(found), endpoint, verb, resource)
	}
	return found[0]
}

func (c *volCluster) waitJob(resource, endpoint, verb, status string) proto.Job {
	c.t.Helper()
	var j proto.Job
	testutil.WaitFor(c.t, volWait, func() error {
		j = c.job(resource, endpoint, verb)
		if j.FinishStatus == nil || *j.FinishStatus != status {
			return fmt.Errorf("job %s is %s %v", j.ID, j.State, j.FinishStatus)
		}
		return nil
	})
	return j
}

func (c *volCluster) waitNodeStatus(path, want string) {
	c.t.Helper()
	testutil.WaitFor(c.t, volWait, func() error {
		if st := c.ok("GET", path, nil)["status"]; st != want {
			return fmt.Errorf("%s status %v, want %s", path, st, want)
		}
		return nil
	})
}

// ---- fake storage agent ----

// disk is a storage server's volumes in memory; it outlives agent
// restarts, as files do. objects is the backup storage all nodes share.
type disk struct {
	mu      sync.Mutex
	vols    map[string][]byte
	objects *objectStore
}

type objectStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (o *objectStore) get(key string) ([]byte, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	b, ok := o.m[key]
	return slices.Clone(b), ok
}

func (o *objectStore) put(key string, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m[key] = slices.Clone(b)
}

func newDisk(objects *objectStore) *disk { return &disk{vols: map[string][]byte{}, objects: objects} }

func (d *disk) volume(id string) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.vols[id]
	return slices.Clone(b), ok
}

// write stands for a guest writing to the volume.
func (d *disk) write(id string, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.vols[id] = slices.Clone(data)
}

// fakeSta serves sta-handle.<node> create_volume, delete_volume and
// backup_volume with the spec's steps (§2.6) against a disk.
type fakeSta struct {
	t    *testing.T
	node string
	a    *agent.Agent
	cc   *collector.Client
	disk *disk

	// hold: create_volume of a volume of holdSize bytes waits on it after
	// reporting creating, so that the test sees that state.
	holdSize int64
	hold     chan struct{}

	mu       sync.Mutex
	runs     map[string]int // verb/volume → handler runs
	exported []string       // volumes listed at start (get_available_volumes)
}

func startSta(t *testing.T, c *volCluster, node string, d *disk, holdSize int64, hold chan struct{}) *fakeSta {
	t.Helper()
	logger := logging.NewTest(t)
	s := &fakeSta{t: t, node: node, disk: d, runs: map[string]int{}, holdSize: holdSize, hold: hold}
	a, err := agent.New(agent.Config{NodeID: node, Role: proto.RoleSta, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0",
		Join: []string{c.serf}, FastGossip: true, Logger: logger,
		Concurrency: map[string]int{proto.EndpointStaHandle: 4},
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_ = s.cc.JobFinished(ctx, node, res)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.a = a
	s.cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logger,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	ep := proto.StaHandle(node)
	a.HandleJob(ep, proto.VerbCreateVolume, agent.JobFunc(s.createVolume))
	a.HandleJob(ep, proto.VerbDeleteVolume, agent.JobFunc(s.deleteVolume))
	a.HandleJob(ep, proto.VerbBackupVolume, agent.JobFunc(s.backupVolume))
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	// At start the sta exports again every volume the managers list for it.
	ctx, cancel := context.WithTimeout(context.Background(), volWait)
	defer cancel()
	var list proto.GetAvailableVolumesResponse
	if err := s.cc.Call(ctx, proto.EndpointStaCollector, proto.VerbGetAvailableVolumes,
		proto.GetAvailableVolumesRequest{NodeID: node}, &list); err != nil {
		t.Fatalf("get_available_volumes: %v", err)
	}
	for _, v := range list.Volumes {
		if _, ok := d.volume(v.ID); !ok || v.Device == nil || v.Device.IQN == "" {
			t.Errorf("%s lists %s (device %+v) but it is not on its disk", node, v.ID, v.Device)
		}
		s.exported = append(s.exported, v.ID)
	}
	return s
}

func (s *fakeSta) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = s.a.Shutdown(ctx)
}

func (s *fakeSta) count(verb, vol string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runs[verb+"/"+vol]
}

func (s *fakeSta) ran(verb, vol string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runs[verb+"/"+vol]++
}

func (s *fakeSta) getVolume(ctx context.Context, id string) (proto.VolumeView, error) {
	var v proto.VolumeView
	err := s.cc.Call(ctx, proto.EndpointStaCollector, proto.VerbGetVolume, proto.GetVolumeRequest{VolumeID: id}, &v)
	return v, err
}

func (s *fakeSta) updateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error {
	return s.cc.Call(ctx, proto.EndpointStaCollector, proto.VerbUpdateVolume, req, nil)
}

func (s *fakeSta) updateBO(ctx context.Context, req proto.UpdateBackupObjectRequest) error {
	return s.cc.Call(ctx, proto.EndpointStaCollector, proto.VerbUpdateBackupObject, req, nil)
}

func ptr[T any](v T) *T { return &v }

func (s *fakeSta) createVolume(ctx context.Context, req proto.StaCreateVolumeRequest) (resp proto.StaCreateVolumeResponse, err error) {
	s.ran(proto.VerbCreateVolume, req.VolumeID)
	v, err := s.getVolume(ctx, req.VolumeID)
	if err != nil {
		return resp, err
	}
	if v.State != proto.VolumePending {
		return resp, errs.New(errs.InvalidVolumeState, "%s is %s, not pending", v.ID, v.State)
	}
	defer func() {
		if err != nil { // the fail block: the volume ends deleted
			_ = s.updateVolume(context.WithoutCancel(ctx), proto.UpdateVolumeRequest{VolumeID: v.ID, State: ptr(proto.VolumeDeleted)})
		}
	}()
	if err := s.updateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: v.ID, State: ptr(proto.VolumeCreating)}); err != nil {
		return resp, err
	}
	if s.hold != nil && v.Size == s.holdSize {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return resp, ctx.Err()
		}
	}
	var data []byte
	if bo := v.BackupObject; bo != nil {
		if bo.State != "available" {
			return resp, errs.New(errs.InvalidBackupObjectState, "%s is %s", bo.ID, bo.State)
		}
		obj, ok := s.disk.objects.get(bo.ObjectKey)
		if !ok || checksum(obj) != bo.Checksum {
			return resp, fmt.Errorf("backup object %s: missing or checksum mismatch", bo.ID)
		}
		data = obj
	}
	s.disk.write(v.ID, data)
	dev := &proto.VolumeDevice{IQN: "iqn.2010-09.jp.wakame:" + v.ID, LUN: 1, Path: v.ID}
	if err := s.updateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: v.ID, State: ptr(proto.VolumeAvailable), Device: dev}); err != nil {
		return resp, err
	}
	return proto.StaCreateVolumeResponse{Device: dev}, nil
}

func (s *fakeSta) deleteVolume(ctx context.Context, req proto.StaDeleteVolumeRequest) (proto.StaDeleteVolumeResponse, error) {
	s.ran(proto.VerbDeleteVolume, req.VolumeID)
	v, err := s.getVolume(ctx, req.VolumeID)
	if err != nil {
		return proto.StaDeleteVolumeResponse{}, err
	}
	if v.State == proto.VolumeDeleted {
		return proto.StaDeleteVolumeResponse{}, errs.New(errs.InvalidVolumeState, "%s is deleted already", v.ID)
	}
	if err := s.updateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: v.ID, State: ptr(proto.VolumeDeleting)}); err != nil {
		return proto.StaDeleteVolumeResponse{}, err
	}
	s.disk.mu.Lock()
	delete(s.disk.vols, v.ID)
	s.disk.mu.Unlock()
	return proto.StaDeleteVolumeResponse{}, s.updateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: v.ID, State: ptr(proto.VolumeDeleted)})
}

func checksum(b []byte) string {
	h := md5.Sum(b)
	return hex.EncodeToString(h[:])
}

func (s *fakeSta) backupVolume(ctx context.Context, req proto.StaBackupVolumeRequest) (proto.StaBackupVolumeResponse, error) {
	s.ran(proto.VerbBackupVolume, req.VolumeID)
	var bo proto.BackupObjectView
	if err := s.cc.Call(ctx, proto.EndpointStaCollector, proto.VerbGetBackupObject,
		proto.GetBackupObjectRequest{BackupObjectID: req.BackupObjectID}, &bo); err != nil {
		return proto.StaBackupVolumeResponse{}, err
	}
	if err := s.updateBO(ctx, proto.UpdateBackupObjectRequest{BackupObjectID: bo.ID, State: ptr("creating")}); err != nil {
		return proto.StaBackupVolumeResponse{}, err
	}
	data, ok := s.disk.volume(req.VolumeID)
	if !ok {
		_ = s.updateBO(ctx, proto.UpdateBackupObjectRequest{BackupObjectID: bo.ID, State: ptr("deleted")})
		return proto.StaBackupVolumeResponse{}, fmt.Errorf("volume %s is not on this node", req.VolumeID)
	}
	key := bo.ID + ".raw"
	s.disk.objects.put(key, data)
	return proto.StaBackupVolumeResponse{ObjectKey: key}, s.updateBO(ctx, proto.UpdateBackupObjectRequest{
		BackupObjectID: bo.ID, State: ptr("available"), Checksum: ptr(checksum(data)),
		AllocationSize: ptr(int64(len(data))), ObjectKey: &key,
	})
}

// ---- dummy hva ----

// startHva runs the hva handlers over the dummy hypervisor (attach and
// detach hot-plug into its domains).
func startHva(t *testing.T, c *volCluster, node string) {
	t.Helper()
	logger := logging.NewTest(t)
	var cc *collector.Client
	a, err := agent.New(agent.Config{NodeID: node, Role: proto.RoleHva, SerfAddr: "127.0.0.1:0", RPCAddr: "127.0.0.1:0",
		Join: []string{c.serf}, FastGossip: true, Logger: logger,
		OnJobFinished: func(ctx context.Context, res proto.JobResult) {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_ = cc.JobFinished(ctx, node, res)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cc = collector.New(collector.Config{Members: a, RPC: a.Client(), Logger: logger,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	hv, err := dummy.New(dummy.Config{CPUCores: 4, MemoryMB: 4096, ShutdownDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h, err := handlers.New(handlers.Config{NodeID: node, Hypervisor: hv, Collector: cc, Events: a, Logger: logger,
		MonitorInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(a)
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
}

// TestVolumesInProcess walks the volume life cycle through the API with
// every daemon in process.
func TestVolumesInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := startVolCluster(t)
	objects := &objectStore{m: map[string][]byte{}}
	disk1, disk2 := newDisk(objects), newDisk(objects)
	startHva(t, c, "hva.vo1")
	op := func(path string, form url.Values) {
		t.Helper()
		r, _ := http.NewRequest("POST", c.api+path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("POST %s = %d %s", path, res.StatusCode, b)
		}
	}
	op("/host_nodes.json", url.Values{"uuid": {"hn-vo1"}, "node_id": {"hva.vo1"}, "arch": {"x86_64"}, "hypervisor": {"dummy"},
		"offering_cpu_cores": {"4"}, "offering_memory_size": {"4096"}, "offering_disk_space_mb": {"100000"}})
	op("/storage_nodes.json", url.Values{"uuid": {"sn-vo1"}, "node_id": {"sta.vo1"}, "storage_type": {"iscsi"},
		"ip_address": {"127.0.0.1"}, "offering_disk_space_mb": {"2000"}})
	op("/storage_nodes.json", url.Values{"uuid": {"sn-vo2"}, "node_id": {"sta.vo2"}, "storage_type": {"iscsi"},
		"ip_address": {"127.0.0.1"}, "offering_disk_space_mb": {"1000"}})
	op("/backup_storages.json", url.Values{"uuid": {"bkst-vo1"}, "storage_type": {"local"}, "base_uri": {"file:///tmp/vo-backups/"}})
	op("/backup_objects.json", url.Values{"uuid": {"bo-vo1"}, "backup_storage_id": {"bkst-vo1"}, "size": {"33554432"},
		"state": {"available"}, "account_id": {account}})
	op("/images.json", url.Values{"uuid": {"wmi-vo1"}, "backup_object_id": {"bo-vo1"}, "arch": {"x86_64"},
		"boot_dev_type": {"2"}, "is_public": {"true"}, "account_id": {account}})
	c.waitNodeStatus("/host_nodes/hn-vo1.json", "online")

	// 1. The storage agent is down when the create job is dispatched: the
	// job waits, then runs once when the agent is up.
	pinned := c.ok("POST", "/volumes.json", url.Values{"volume_size": {"100"}, "storage_node_id": {"sn-vo1"}})["id"].(string)
	if st := c.volume(pinned)["state"]; st != "pending" {
		t.Fatalf("pinned volume = %v", st)
	}
	if j := c.job(pinned, "sta-handle.sta.vo1", proto.VerbCreateVolume); j.State != "pending" || j.WorkerID != nil {
		t.Fatalf("job with no agent = %+v", j)
	}
	// Illegal while pending: delete, attach; bad sizes.
	c.apiError(400, "140", "DELETE", "/volumes/"+pinned+".json", nil)
	c.apiError(400, "119", "POST", "/volumes.json", url.Values{"volume_size": {"9"}})
	c.apiError(400, "119", "POST", "/volumes.json", url.Values{"volume_size": {"3001"}})
	c.apiError(400, "118", "POST", "/volumes.json", url.Values{})
	// No storage node online yet: nothing can hold a volume.
	c.apiError(400, "109", "POST", "/volumes.json", url.Values{"volume_size": {"10"}})

	hold := make(chan struct{})
	sta1 := startSta(t, c, "sta.vo1", disk1, 1500<<20, hold)
	c.waitNodeStatus("/storage_nodes/sn-vo1.json", "online")
	doc := c.waitVolume(pinned, "available")
	if dev, _ := doc["volume_device"].(map[string]any); dev["iqn"] != "iqn.2010-09.jp.wakame:"+pinned || dev["lun"] != 1.0 ||
		dev["iscsi_storage_node_id"] != "sn-vo1" {
		t.Fatalf("device = %v", doc["volume_device"])
	}
	if j := c.waitJob(pinned, "sta-handle.sta.vo1", proto.VerbCreateVolume, "success"); j.RetryCount != 1 {
		t.Fatalf("create job = %+v", j)
	}
	if n := sta1.count(proto.VerbCreateVolume, pinned); n != 1 {
		t.Fatalf("create ran %d times", n)
	}

	// 2. Scheduled: scheduling → pending → creating → available. The
	// storage agent holds the volume in creating until the test lets go,
	// so each state is seen.
	sta2 := startSta(t, c, "sta.vo2", disk2, 0, nil)
	c.waitNodeStatus("/storage_nodes/sn-vo2.json", "online")
	doc = c.ok("POST", "/volumes.json", url.Values{"volume_size": {"1500"}, "display_name": {"big"}})
	big := doc["id"].(string)
	if doc["state"] != "scheduling" {
		t.Fatalf("created = %v", doc["state"])
	}
	doc = c.waitVolume(big, "creating")
	if doc["volume_type"] != "Dcmgr::Models::IscsiVolume" {
		t.Fatalf("placed volume = %v", doc)
	}
	if sj := c.waitJob(big, proto.EndpointScheduler, proto.VerbScheduleVolume, "success"); sj.Result["storage_node_id"] != "sn-vo1" {
		t.Fatalf("schedule job = %+v", sj)
	}
	c.apiError(400, "140", "PUT", "/volumes/"+big+"/backup.json", url.Values{})
	close(hold)
	c.waitVolume(big, "available")
	if n := sta1.count(proto.VerbCreateVolume, big) + sta2.count(proto.VerbCreateVolume, big); n != 1 {
		t.Fatalf("create of %s ran %d times", big, n)
	}

	// 3. No storage node fits (sn-vo1 has 400 MB left, sn-vo2 1000 MB; the
	// sum passes the API's check): the volume ends deleted and the job says
	// why.
	nofit := c.ok("POST", "/volumes.json", url.Values{"volume_size": {"1200"}})["id"].(string)
	doc = c.waitVolume(nofit, "deleted")
	if doc["deleted_at"] == nil {
		t.Fatalf("deleted volume = %v", doc)
	}
	fj := c.waitJob(nofit, proto.EndpointScheduler, proto.VerbScheduleVolume, "fail")
	if msg, _ := fj.FinishMessage["message"].(string); !strings.Contains(msg, "Unable to find a suitable storage node for volume "+nofit) {
		t.Fatalf("failed job message = %v", fj.FinishMessage)
	}

	// 4. Backup of a written volume, and a new volume from that backup with
	// the same bytes.
	disk1.write(pinned, []byte("marker written by a guest"))
	bo := c.ok("PUT", "/volumes/"+pinned+"/backup.json", url.Values{"backup_storage_id": {"bkst-vo1"}})["backup_object_id"].(string)
	testutil.WaitFor(t, volWait, func() error {
		if st := c.ok("GET", "/backup_objects/"+bo+".json", nil)["state"]; st != "available" {
			return fmt.Errorf("backup object is %v", st)
		}
		return nil
	})
	bodoc := c.ok("GET", "/backup_objects/"+bo+".json", nil)
	if bodoc["checksum"] != checksum([]byte("marker written by a guest")) || bodoc["progress"] != 100.0 {
		t.Fatalf("backup object = %v", bodoc)
	}
	restored := c.ok("POST", "/volumes.json", url.Values{"backup_object_id": {bo}})["id"].(string)
	c.waitVolume(restored, "available")
	d1, _ := disk1.volume(restored)
	d2, _ := disk2.volume(restored)
	if got := string(append(d1, d2...)); got != "marker written by a guest" {
		t.Fatalf("restored volume holds %q", got)
	}

	// 5. Attach and detach on a running instance through its hva.
	inst := c.ok("POST", "/instances.json", url.Values{"image_id": {"wmi-vo1"}, "hypervisor": {"dummy"}, "cpu_cores": {"1"},
		"memory_size": {"256"}, "service_type": {"std"}, "vifs": {"{}"}})["id"].(string)
	testutil.WaitFor(t, volWait, func() error {
		if st := c.ok("GET", "/instances/"+inst+".json", nil)["state"]; st != "running" {
			return fmt.Errorf("instance is %v", st)
		}
		return nil
	})
	c.apiError(404, "139", "PUT", "/volumes/"+pinned+"/attach.json", url.Values{})
	doc = c.ok("PUT", "/volumes/"+pinned+"/attach.json", url.Values{"instance_id": {inst}})
	if doc["instance_id"] != inst {
		t.Fatalf("attach = %v", doc)
	}
	c.apiError(400, "124", "PUT", "/volumes/"+pinned+"/attach.json", url.Values{"instance_id": {inst}})
	doc = c.waitVolume(pinned, "attached")
	if doc["attached_at"] == nil || doc["guest_device_name"] != "vdb" {
		t.Fatalf("attached = %v", doc)
	}
	c.apiError(400, "140", "DELETE", "/volumes/"+pinned+".json", nil)
	c.ok("PUT", "/volumes/"+pinned+"/detach.json", url.Values{})
	doc = c.waitVolume(pinned, "available")
	if doc["instance_id"] != nil || doc["detached_at"] == nil {
		t.Fatalf("detached = %v", doc)
	}
	c.apiError(400, "123", "PUT", "/volumes/"+pinned+"/detach.json", url.Values{})

	// 6. Delete: deleting → deleted by the storage agent, space given back.
	c.ok("DELETE", "/volumes/"+restored+".json", nil)
	c.waitVolume(restored, "deleted")
	if _, ok := disk1.volume(restored); ok {
		t.Fatalf("deleted volume still on disk")
	}
	if _, ok := disk2.volume(restored); ok {
		t.Fatalf("deleted volume still on disk")
	}

	// 7. The storage agent restarts: it lists every volume still exported;
	// a delete dispatched while it is down waits and runs once.
	sta1.stop()
	c.waitNodeStatus("/storage_nodes/sn-vo1.json", "offline")
	c.ok("DELETE", "/volumes/"+big+".json", nil)
	if st := c.volume(big)["state"]; st != "deleting" {
		t.Fatalf("volume being deleted = %v", st)
	}
	sta1 = startSta(t, c, "sta.vo1", disk1, 0, nil)
	if !slices.Contains(sta1.exported, pinned) || slices.Contains(sta1.exported, restored) {
		t.Fatalf("exported at restart = %v (want %s, not the deleted %s)", sta1.exported, pinned, restored)
	}
	c.waitVolume(big, "deleted")
	c.waitJob(big, "sta-handle.sta.vo1", proto.VerbDeleteVolume, "success")
	if n := sta1.count(proto.VerbDeleteVolume, big); n != 1 {
		t.Fatalf("delete ran %d times", n)
	}
	var u proto.StorageUsage
	_ = c.m.Cluster.Store().View(func(tx *state.Tx) error {
		_, err := tx.Get(proto.KindStorageUsage, "sn-vo1", &u)
		return err
	})
	if u.UsedBytes != 100<<20 || len(u.Volumes) != 1 {
		t.Fatalf("sn-vo1 usage = %+v, want only %s", u, pinned)
	}
}
