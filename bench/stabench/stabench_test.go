package stabench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vdc-project/vdc/bench"
	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/backing/file"
	"github.com/vdc-project/vdc/sta/backing/file/xfstest"
	"github.com/vdc-project/vdc/sta/backup"
	"github.com/vdc-project/vdc/sta/backup/backuptest"
	"github.com/vdc-project/vdc/sta/collector/collectortest"
	"github.com/vdc-project/vdc/sta/handlers"
	"github.com/vdc-project/vdc/sta/target/tgt"
)

const node = "sta.bench"

// sta is the storage agent's handlers over a real store and tgtd.
type sta struct {
	b       *testing.B
	coll    *collectortest.Fake
	store   backing.Store
	prefix  string
	vols    string // export path
	backups string // local backup path
	web     *backuptest.Server
	jobs    map[string]agent.JobHandler
}

func (s *sta) HandleJob(endpoint, verb string, h agent.JobHandler) { s.jobs[verb] = h }
func (s *sta) Handle(string, string, rpc.Handler)                  {}

var sn = &proto.StorageNode{ID: "sn-bench", NodeID: node, IPAddress: "127.0.0.1"}

func machine(b *testing.B) {
	m := bench.Probe(context.Background())
	b.Logf("machine: %d cores, %s, %s, kernel %s", m.Cores, m.CPUModel, m.GoVersion, m.Kernel)
}

// newSta sets an sta up with the driver's store; a reflink store and its
// local backups share one XFS, the others live under /var/tmp.
func newSta(b *testing.B, driver string) *sta {
	testutil.Real(b, testutil.NeedRoot, testutil.NeedTgt)
	base, err := os.MkdirTemp("/var/tmp", xfstest.Prefix+"bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(base) })
	root := base
	if driver == file.Reflink {
		root = xfstest.Mount(b, 2<<30)
	}
	s := &sta{b: b, coll: collectortest.New(), vols: filepath.Join(root, "vols"), backups: filepath.Join(root, "backups"),
		web: backuptest.Start(b), jobs: map[string]agent.JobHandler{}}
	tmp := filepath.Join(base, "tmp")
	for _, d := range []string{s.vols, s.backups, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if s.store, err = file.New(driver, file.Config{Dir: s.vols}); err != nil {
		b.Fatal(err)
	}
	var r [3]byte
	_, _ = rand.Read(r[:])
	s.prefix = "iqn.2026-01.test.st-bench-" + hex.EncodeToString(r[:])
	tg := tgt.New(tgt.Config{})
	b.Cleanup(func() {
		list, _ := tg.List(context.Background(), s.prefix)
		for _, e := range list {
			if err := tg.Unexport(context.Background(), e.IQN); err != nil {
				b.Errorf("cleanup: %v", err)
			}
		}
	})
	h, err := handlers.New(handlers.Config{NodeID: node, Store: s.store, Target: tg, Collector: s.coll, IQNPrefix: s.prefix,
		LocalBackupStorageID: "bkst-local", LocalBackupPath: s.backups, TmpDir: tmp})
	if err != nil {
		b.Fatal(err)
	}
	h.Register(s)
	return s
}

func (s *sta) run(verb string, req any) {
	s.b.Helper()
	args, _ := json.Marshal(req)
	if _, err := s.jobs[verb](context.Background(), proto.JobEnvelope{ID: "job-bench", Verb: verb, Args: args}); err != nil {
		s.b.Fatalf("%s: %v", verb, err)
	}
}

func (s *sta) putVolume(id, state string, size int64, bo string) {
	v := proto.VolumeView{ID: id, State: state, Size: size, StoreType: proto.VolumeShared, StorageNode: sn}
	if bo != "" {
		v.BackupObject = &proto.BackupObjectView{BackupObject: proto.BackupObject{ID: bo}}
	}
	s.coll.PutVolume(v)
}

var drivers = []string{file.Raw, file.Qcow2, file.Reflink}

// BenchmarkCreateExport: create_volume of a blank 1 GiB volume — the file
// and the tgt target (tgtadm show, new target, new LUN, bind) — per second.
func BenchmarkCreateExport(b *testing.B) {
	for _, d := range drivers {
		b.Run(d, func(b *testing.B) {
			machine(b)
			s := newSta(b, d)
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("vol-c%d", i)
				s.putVolume(id, proto.VolumePending, 1<<30, "")
				s.run(proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: id})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}

// BenchmarkDelete: delete_volume (unexport, remove the file) per second.
func BenchmarkDelete(b *testing.B) {
	for _, d := range drivers {
		b.Run(d, func(b *testing.B) {
			machine(b)
			s := newSta(b, d)
			for i := range b.N {
				id := fmt.Sprintf("vol-d%d", i)
				s.putVolume(id, proto.VolumePending, 1<<30, "")
				s.run(proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: id})
				v, _ := s.coll.Volume(id)
				v.State = proto.VolumeDeleting
				s.coll.PutVolume(v)
			}
			b.ResetTimer()
			for i := range b.N {
				s.run(proto.VerbDeleteVolume, proto.StaDeleteVolumeRequest{VolumeID: fmt.Sprintf("vol-d%d", i)})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deletes/s")
		})
	}
}

// volumeSize is the size of the volume backed up and restored: every byte
// written (nothing sparse), so the figures are of moving data.
const volumeSize = 256 << 20

// source makes vol-src full of data.
func (s *sta) source() backing.Volume {
	s.b.Helper()
	buf := make([]byte, 1<<20)
	_, _ = rand.Read(buf)
	f, err := os.CreateTemp(s.b.TempDir(), "src")
	if err != nil {
		s.b.Fatal(err)
	}
	for i := range volumeSize >> 20 {
		buf[0] = byte(i) | 1
		if _, err := f.Write(buf); err != nil {
			s.b.Fatal(err)
		}
	}
	f.Close()
	v, err := s.store.CreateFrom(context.Background(), "vol-src", volumeSize, backing.Source{Path: f.Name()})
	if err != nil {
		s.b.Fatal(err)
	}
	s.putVolume("vol-src", proto.VolumeAvailable, volumeSize, "")
	return v
}

// cpMBps is the median of three runs of `cp` (with args) of the volume
// file into dir, synced to disk like the sta's files.
func cpMBps(b *testing.B, src, dir string, args ...string) float64 {
	b.Helper()
	dst := filepath.Join(dir, "cp-copy")
	var runs []float64
	for range 3 {
		os.Remove(dst)
		start := time.Now()
		if out, err := exec.Command("cp", append(args, src, dst)...).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v: %s", err, out)
		}
		if out, err := exec.Command("sync", dst).CombinedOutput(); err != nil {
			b.Fatalf("sync: %v: %s", err, out)
		}
		runs = append(runs, float64(volumeSize)/(1<<20)/time.Since(start).Seconds())
	}
	os.Remove(dst)
	slices.Sort(runs)
	return runs[1]
}

// reportRatios reports the throughput against a plain cp of the volume
// file (coreutils 9.1 clones on a reflink filesystem, as cp does by
// default there) and, on reflink, against cp --reflink=never too.
func reportRatios(b *testing.B, driver, src, dir string) func() {
	cp := cpMBps(b, src, dir)
	var copyCp float64
	if driver == file.Reflink {
		copyCp = cpMBps(b, src, dir, "--reflink=never")
	}
	return func() {
		mbps := float64(b.N) * volumeSize / (1 << 20) / b.Elapsed().Seconds()
		b.ReportMetric(cp, "cp_MB/s")
		b.ReportMetric(mbps/cp, "x_cp")
		if copyCp > 0 {
			b.ReportMetric(copyCp, "cp_noreflink_MB/s")
			b.ReportMetric(mbps/copyCp, "x_cp_noreflink")
		}
	}
}

type storage struct {
	name, bkst, format string
}

var storages = []storage{{"local-raw", "bkst-local", "raw"}, {"webdav-raw", "bkst-web", "raw"}, {"webdav-gz", "bkst-web", "gz"}}

func (s *sta) backupObject(id string, st storage, state string) {
	bo := proto.BackupObjectView{BackupObject: proto.BackupObject{ID: id, State: state, BackupStorageID: st.bkst,
		ObjectKey: id, ContainerFormat: st.format, Size: volumeSize}}
	if st.bkst == "bkst-web" {
		bo.BackupStorage = &proto.BackupStorage{ID: "bkst-web", StorageType: backup.StorageWebDAV, BaseURI: s.web.URL}
		bo.URI = s.web.URL + id
	}
	s.coll.PutBackupObject(bo)
}

// BenchmarkBackup: backup_volume of a 256 MiB volume (snapshot, container
// format, md5, store); MB/s and the ratio to a plain cp of the volume file.
func BenchmarkBackup(b *testing.B) {
	for _, d := range drivers {
		for _, st := range storages {
			b.Run(d+"/"+st.name, func(b *testing.B) {
				machine(b)
				s := newSta(b, d)
				v := s.source()
				report := reportRatios(b, d, v.Path, s.backups)
				b.SetBytes(volumeSize)
				b.ResetTimer()
				for i := range b.N {
					id := fmt.Sprintf("bo-%d", i)
					s.backupObject(id, st, proto.BackupObjectPending)
					s.run(proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-src", BackupObjectID: id})
					b.StopTimer()
					os.Remove(filepath.Join(s.backups, id))
					b.StartTimer()
				}
				report()
			})
		}
	}
}

// BenchmarkRestore: create_volume from a 256 MiB backup (fetch, md5
// check, decode, write); MB/s and the ratio to a plain cp.
func BenchmarkRestore(b *testing.B) {
	for _, d := range drivers {
		for _, st := range storages {
			b.Run(d+"/"+st.name, func(b *testing.B) {
				machine(b)
				s := newSta(b, d)
				v := s.source()
				s.backupObject("bo-src", st, proto.BackupObjectPending)
				s.run(proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-src", BackupObjectID: "bo-src"})
				report := reportRatios(b, d, v.Path, s.vols)
				b.SetBytes(volumeSize)
				b.ResetTimer()
				for i := range b.N {
					id := fmt.Sprintf("vol-r%d", i)
					s.putVolume(id, proto.VolumePending, volumeSize, "bo-src")
					s.run(proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: id})
					b.StopTimer()
					vv, _ := s.coll.Volume(id)
					vv.State = proto.VolumeDeleting
					s.coll.PutVolume(vv)
					s.run(proto.VerbDeleteVolume, proto.StaDeleteVolumeRequest{VolumeID: id})
					b.StartTimer()
				}
				report()
			})
		}
	}
}
