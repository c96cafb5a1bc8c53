package handlers_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/backing/memory"
	"github.com/vdc-project/vdc/sta/backup"
	"github.com/vdc-project/vdc/sta/backup/backuptest"
	"github.com/vdc-project/vdc/sta/collector/collectortest"
	"github.com/vdc-project/vdc/sta/handlers"
	tmem "github.com/vdc-project/vdc/sta/target/memory"
)

const (
	node      = "sta.test"
	prefix    = "iqn.2026-01.test.st"
	localBkst = "bkst-local"
	webBkst   = "bkst-web"
	mib       = 1 << 20
)

// env is an sta over fakes: in-memory store and target, a fake collector,
// a local backup directory and an HTTP backup storage.
type env struct {
	t     *testing.T
	coll  *collectortest.Fake
	store *memory.Store
	tg    *tmem.Target
	h     *handlers.Handlers
	dir   string // local backup path
	web   *backuptest.Server
	reg   *registry
}

func newEnv(t *testing.T) *env { return newEnvTmp(t, t.TempDir()) }

// newEnvTmp is newEnv with snapshots on their way to a backup storage in tmp.
func newEnvTmp(t *testing.T, tmp string) *env {
	e := &env{t: t, coll: collectortest.New(), store: memory.New(1 << 30), tg: tmem.New(nil),
		dir: t.TempDir(), web: backuptest.Start(t), reg: &registry{jobs: map[string]agent.JobHandler{}}}
	h, err := handlers.New(handlers.Config{
		NodeID: node, Store: e.store, Target: e.tg, Collector: e.coll, IQNPrefix: prefix,
		LocalBackupStorageID: localBkst, LocalBackupPath: e.dir, TmpDir: tmp,
		Logger: logging.NewTest(t), ProgressInterval: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	h.Register(e.reg)
	return e
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return agent.ContextWithJob(ctx, agent.JobInfo{ID: "job-" + t.Name()})
}

var storageNode = &proto.StorageNode{ID: "sn-test", NodeID: node, IPAddress: "192.0.2.10", StorageType: "iscsi"}

// volume puts a shared volume of this node in the fake.
func (e *env) volume(id, state string, size int64, bo string) {
	v := proto.VolumeView{ID: id, State: state, Size: size, StoreType: proto.VolumeShared,
		StorageNode: storageNode, Device: &proto.VolumeDevice{StorageNodeID: storageNode.ID}}
	if bo != "" {
		v.BackupObject = &proto.BackupObjectView{BackupObject: proto.BackupObject{ID: bo}}
	}
	e.coll.PutVolume(v)
}

// backupObject puts a backup object in the fake.
func (e *env) backupObject(id, state, storage, format, checksum string, size int64) {
	bo := proto.BackupObjectView{BackupObject: proto.BackupObject{ID: id, State: state, BackupStorageID: storage,
		ObjectKey: id, ContainerFormat: format, Checksum: checksum, Size: size}}
	if storage == webBkst {
		bo.BackupStorage = &proto.BackupStorage{ID: webBkst, StorageType: backup.StorageWebDAV, BaseURI: e.web.URL}
		bo.URI = e.web.URL + id
	}
	e.coll.PutBackupObject(bo)
}

// content is n bytes of data with zero runs.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i < n; i++ {
		if (i/65536)%3 != 1 {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

func md5hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// data returns a volume's bytes from the store.
func (e *env) data(id string) []byte {
	e.t.Helper()
	dst := filepath.Join(e.t.TempDir(), "snap")
	if _, err := e.store.Snapshot(context.Background(), id, dst); err != nil {
		e.t.Fatalf("read volume %s: %v", id, err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// writeVolume makes a volume with content in the store.
func (e *env) writeVolume(id string, b []byte) {
	e.t.Helper()
	if _, err := e.store.CreateFrom(context.Background(), id, 0, backing.Source{Reader: bytes.NewReader(b)}); err != nil {
		e.t.Fatal(err)
	}
}

// wantGone checks that nothing of a volume is left on the node.
func (e *env) wantGone(id string) {
	e.t.Helper()
	if _, err := e.store.Get(context.Background(), id); err == nil {
		e.t.Errorf("volume %s is still in the store", id)
	}
	exports, _ := e.tg.List(context.Background(), prefix)
	for _, x := range exports {
		if x.IQN == prefix+":"+id {
			e.t.Errorf("volume %s is still exported", id)
		}
	}
}

// wantExported checks that a volume is exported on its data.
func (e *env) wantExported(id string) {
	e.t.Helper()
	v, err := e.store.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("volume %s is not in the store: %v", id, err)
	}
	exports, _ := e.tg.List(context.Background(), prefix)
	for _, x := range exports {
		if x.IQN == prefix+":"+id {
			if x.Path != v.Path || x.LUN != 1 {
				e.t.Errorf("export of %s = %+v, want LUN 1 on %s", id, x, v.Path)
			}
			return
		}
	}
	e.t.Errorf("volume %s is not exported", id)
}

// registry records what Register registers.
type registry struct {
	jobs  map[string]agent.JobHandler
	plain map[string]rpc.Handler
}

func (r *registry) HandleJob(endpoint, verb string, h agent.JobHandler) {
	r.jobs[endpoint+"/"+verb] = h
}

func (r *registry) Handle(endpoint, verb string, h rpc.Handler) {
	if r.plain == nil {
		r.plain = map[string]rpc.Handler{}
	}
	r.plain[endpoint+"/"+verb] = h
}

// run runs a job verb of this node the way the agent does (args through
// JSON) and decodes its result into resp (if not nil).
func (e *env) run(ctx context.Context, verb string, req, resp any) error {
	e.t.Helper()
	h := e.reg.jobs[proto.StaHandle(node)+"/"+verb]
	if h == nil {
		e.t.Fatalf("verb %s is not registered", verb)
	}
	args, err := json.Marshal(req)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := h(ctx, proto.JobEnvelope{ID: "job-x", Endpoint: proto.StaHandle(node), Verb: verb, Args: args})
	if err != nil {
		return err
	}
	if resp != nil {
		b, _ := json.Marshal(out)
		if err := json.Unmarshal(b, resp); err != nil {
			e.t.Fatal(err)
		}
	}
	return nil
}
