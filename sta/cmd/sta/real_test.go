package main

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backing/file/xfstest"
	"github.com/vdc-project/vdc/sta/backup"
	"github.com/vdc-project/vdc/sta/backup/backuptest"
	"github.com/vdc-project/vdc/sta/collector/collectortest"
	"github.com/vdc-project/vdc/sta/target"
	"github.com/vdc-project/vdc/sta/target/tgt"
)

// realPrefix is a fresh IQN prefix under the sta's host prefix; every
// target under it is removed when the test ends.
func realPrefix(t *testing.T) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	p := "iqn.2026-01.test.st-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx := context.Background()
		tg := tgt.New(tgt.Config{})
		list, err := tg.List(ctx, p)
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, e := range list {
			if err := tg.Unexport(ctx, e.IQN); err != nil {
				t.Errorf("cleanup: unexport %s: %v", e.IQN, err)
			}
		}
	})
	return p
}

func iscsiURL(iqn string) string { return "iscsi://127.0.0.1/" + iqn + "/1" }

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// readISCSI reads a whole LUN the way a hypervisor sees it (QEMU's iSCSI
// initiator; format qcow2 when the sta keeps qcow2 images) and returns the
// md5 of the disk.
func readISCSI(t *testing.T, iqn, format string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "disk.raw")
	sh(t, "qemu-img", "convert", "-f", format, "-O", "raw", iscsiURL(iqn), out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestRealVolumeLifecycle runs the sta daemon on each file backing store
// with the machine's tgtd against a fake manager: create exports a volume
// a QEMU initiator reads and writes, backups to a local directory and to an
// HTTP storage restore to the same bytes, delete removes the target and
// the file, and after a restart (with a target lost as if tgtd restarted)
// every volume is exported again.
func TestRealVolumeLifecycle(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedTgt)
	for _, driver := range []string{backingRaw, backingQcow2, backingReflink} {
		t.Run(driver, func(t *testing.T) { realLifecycle(t, driver) })
	}
}

func realLifecycle(t *testing.T, driver string) {
	base, err := os.MkdirTemp("/var/tmp", xfstest.Prefix+"sta-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	root := base
	if driver == backingReflink {
		// Volumes and local backups on one reflink XFS: backups and
		// restores there are clones.
		root = xfstest.Mount(t, 512<<20)
	}
	vols, backups, tmp := filepath.Join(root, "vols"), filepath.Join(root, "backups"), filepath.Join(base, "tmp")
	for _, d := range []string{vols, backups, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	prefix := realPrefix(t)
	format := "raw"
	if driver == backingQcow2 {
		format = "qcow2"
	}
	web := backuptest.Start(t)
	const node, token = "sta.real", "tok"
	coll := collectortest.New()
	m := collectortest.StartManager(t, coll, token)
	sn := &proto.StorageNode{ID: "sn-real", NodeID: node, IPAddress: "127.0.0.1"}
	putVol := func(id string, size int64, bo string) {
		v := proto.VolumeView{ID: id, State: proto.VolumePending, Size: size, StoreType: proto.VolumeShared, StorageNode: sn}
		if bo != "" {
			v.BackupObject = &proto.BackupObjectView{BackupObject: proto.BackupObject{ID: bo}}
		}
		coll.PutVolume(v)
	}
	args := []string{"-backing-driver", driver, "-export-path", vols, "-local-backup-path", backups,
		"-local-backup-storage-id", "bkst-local", "-snapshot-tmp-dir", tmp, "-target-driver", "tgt", "-iqn-prefix", prefix,
		"-reexport-interval", "0s"}
	d := startDaemon(t, m, node, token, args...)

	// Create: a blank 64 MiB volume, exported, reachable with the right size.
	putVol("vol-a", 64<<20, "")
	d.mustJob(proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-a"})
	va, _ := coll.Volume("vol-a")
	if va.State != proto.VolumeAvailable || va.Device == nil || va.Device.IQN != target.IQN(prefix, "vol-a") ||
		va.Device.LUN != 1 || va.Device.StorageIP != "127.0.0.1" || (driver == backingQcow2) != (va.Device.Format == "qcow2") {
		t.Fatalf("vol-a = %s %+v", va.State, va.Device)
	}
	info := sh(t, "qemu-img", "info", iscsiURL(va.Device.IQN))
	if !strings.Contains(info, "virtual size: 64 MiB (67108864 bytes)") || !strings.Contains(info, "file format: "+format) {
		t.Errorf("qemu-img info over iSCSI:\n%s", info)
	}
	// A guest writes to it through the target.
	sh(t, "qemu-io", "-f", format, "-c", "write -P 0x5a 0 4M", "-c", "write -P 0xa5 40M 1M", iscsiURL(va.Device.IQN))
	want := readISCSI(t, va.Device.IQN, format)

	// Backups: raw to the node's local storage, gz to an HTTP storage.
	coll.PutBackupObject(proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-local", State: proto.BackupObjectPending,
		BackupStorageID: "bkst-local", ObjectKey: "bo-local", ContainerFormat: "raw", Size: 64 << 20}})
	coll.PutBackupObject(proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-web", State: proto.BackupObjectPending,
		BackupStorageID: "bkst-web", ObjectKey: "bo-web", ContainerFormat: "gz", Size: 64 << 20},
		BackupStorage: &proto.BackupStorage{ID: "bkst-web", StorageType: backup.StorageWebDAV, BaseURI: web.URL}, URI: web.URL + "bo-web"})
	d.mustJob(proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-a", BackupObjectID: "bo-local"})
	d.mustJob(proto.VerbBackupVolume, proto.StaBackupVolumeRequest{VolumeID: "vol-a", BackupObjectID: "bo-web"})
	for _, id := range []string{"bo-local", "bo-web"} {
		if bo, _ := coll.BackupObject(id); bo.State != proto.BackupObjectAvailable || bo.Checksum == "" {
			t.Fatalf("%s = %+v", id, bo)
		}
	}
	if sum, _, err := backup.FileSum(context.Background(), filepath.Join(backups, "bo-local")); err != nil {
		t.Fatal(err)
	} else if bo, _ := coll.BackupObject("bo-local"); sum != bo.Checksum {
		t.Errorf("bo-local checksum %s, the stored file's md5 is %s", bo.Checksum, sum)
	}

	// Restores: the same bytes, read through the target.
	putVol("vol-b", 64<<20, "bo-local")
	putVol("vol-c", 64<<20, "bo-web")
	d.mustJob(proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-b"})
	d.mustJob(proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-c"})
	for _, id := range []string{"vol-b", "vol-c"} {
		if got := readISCSI(t, target.IQN(prefix, id), format); got != want {
			t.Errorf("%s read over iSCSI has md5 %s, the backed up volume %s", id, got, want)
		}
	}

	// A failed create leaves no file and no target: a corrupt backup.
	coll.PutBackupObject(proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-bad", State: proto.BackupObjectAvailable,
		BackupStorageID: "bkst-local", ObjectKey: "bo-local", ContainerFormat: "raw", Checksum: strings.Repeat("0", 32)}})
	putVol("vol-bad", 64<<20, "bo-bad")
	if res := d.job(proto.VerbCreateVolume, proto.StaCreateVolumeRequest{VolumeID: "vol-bad"}); res.Status != proto.JobFailed {
		t.Errorf("create from a corrupt backup = %s", res.Status)
	}
	if v, _ := coll.Volume("vol-bad"); v.State != proto.VolumeDeleted {
		t.Errorf("vol-bad is %s, want deleted", v.State)
	}
	wantNoVolume(t, vols, prefix, "vol-bad")

	// Delete vol-c: target and file gone.
	vc, _ := coll.Volume("vol-c")
	vc.State = proto.VolumeDeleting
	coll.PutVolume(vc)
	d.mustJob(proto.VerbDeleteVolume, proto.StaDeleteVolumeRequest{VolumeID: "vol-c"})
	if v, _ := coll.Volume("vol-c"); v.State != proto.VolumeDeleted {
		t.Errorf("vol-c is %s, want deleted", v.State)
	}
	wantNoVolume(t, vols, prefix, "vol-c")

	// Restart, with vol-a's target gone meanwhile (tgtd restarted): both
	// remaining volumes are exported again, vol-a with the guest's bytes.
	d.stop()
	if err := tgt.New(tgt.Config{}).Unexport(context.Background(), target.IQN(prefix, "vol-a")); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, m, node, token, args...)
	testutil.WaitFor(t, time.Minute, func() error {
		list, err := tgt.New(tgt.Config{}).List(context.Background(), prefix)
		if err != nil {
			return err
		}
		if len(list) != 2 || list[0].IQN != target.IQN(prefix, "vol-a") || list[1].IQN != target.IQN(prefix, "vol-b") {
			return fmt.Errorf("exports after the restart: %+v", list)
		}
		return nil
	})
	if got := readISCSI(t, target.IQN(prefix, "vol-a"), format); got != want {
		t.Errorf("vol-a after the restart has md5 %s, want %s", got, want)
	}
	d.stop()
}

// wantNoVolume checks that a volume has neither a file nor a target.
func wantNoVolume(t *testing.T, dir, prefix, id string) {
	t.Helper()
	if m, _ := filepath.Glob(filepath.Join(dir, id+".*")); len(m) != 0 {
		t.Errorf("files of %s left: %q", id, m)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*")); len(m) != 0 {
		t.Errorf("partial files left: %q", m)
	}
	list, err := tgt.New(tgt.Config{}).List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.IQN == target.IQN(prefix, id) {
			t.Errorf("%s is still exported", id)
		}
	}
	if err := exec.Command("qemu-img", "info", iscsiURL(target.IQN(prefix, id))).Run(); err == nil {
		t.Errorf("%s still answers over iSCSI", id)
	}
}
