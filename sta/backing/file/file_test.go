package file_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/backing/backingtest"
	"github.com/vdc-project/vdc/sta/backing/file"
	"github.com/vdc-project/vdc/sta/backing/file/xfstest"
)

func leftovers(t *testing.T, s backing.Store) []string {
	left, err := s.(*file.Store).Leftovers()
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// writeRaw writes into a raw volume file, as tgtd does for an initiator.
func writeRaw(t *testing.T, _ backing.Store, v backing.Volume, off int64, p []byte) {
	f, err := os.OpenFile(v.Path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

// writeQcow2 writes a run of one byte value into a qcow2 volume with qemu-io.
func writeQcow2(t *testing.T, _ backing.Store, v backing.Volume, off int64, p []byte) {
	if len(p) == 0 || !bytes.Equal(p, bytes.Repeat(p[:1], len(p))) {
		t.Fatal("writeQcow2 writes runs of one byte value only")
	}
	cmd := fmt.Sprintf("write -P 0x%x %d %d", p[0], off, len(p))
	if out, err := exec.Command("qemu-io", "-f", "qcow2", "-c", cmd, v.Path).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io %s: %v: %s", cmd, err, out)
	}
}

func open(t *testing.T, layout, dir string) backing.Store {
	s, err := file.New(layout, file.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRawConformance(t *testing.T) {
	backingtest.Run(t, backingtest.Options{
		New:       func(t *testing.T) backing.Store { return open(t, file.Raw, t.TempDir()) },
		WriteAt:   writeRaw,
		Leftovers: leftovers,
	})
}

func needQemuImg(t *testing.T) {
	for _, p := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv(testutil.RealEnv) == "1" {
				t.Fatalf("%s is missing (apt-get install qemu-utils)", p)
			}
			t.Skipf("%s is missing (apt-get install qemu-utils)", p)
		}
	}
}

func TestQcow2Conformance(t *testing.T) {
	needQemuImg(t)
	backingtest.Run(t, backingtest.Options{
		New:       func(t *testing.T) backing.Store { return open(t, file.Qcow2, t.TempDir()) },
		WriteAt:   writeQcow2,
		Leftovers: leftovers,
	})
}

// TestReflinkConformance runs the suite on a real reflink XFS (root).
func TestReflinkConformance(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	mnt := xfstest.Mount(t, 512<<20)
	n := 0
	backingtest.Run(t, backingtest.Options{
		New: func(t *testing.T) backing.Store {
			n++
			dir := filepath.Join(mnt, fmt.Sprint("s", n))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			return open(t, file.Reflink, dir)
		},
		WriteAt:   writeRaw,
		Leftovers: leftovers,
	})
}

// TestReflinkSharesBlocks checks what the reflink layout is for: a snapshot
// in the same filesystem and a clone from a local file take no space.
func TestReflinkSharesBlocks(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot)
	mnt := xfstest.Mount(t, 512<<20)
	dir := filepath.Join(mnt, "vols")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := open(t, file.Reflink, dir)
	ctx := context.Background()
	const size = 64 << 20
	if _, err := s.CreateFrom(ctx, "vol-big", 0, backing.Source{Reader: bytes.NewReader(bytes.Repeat([]byte{7}, size))}); err != nil {
		t.Fatal(err)
	}
	if !s.(backing.Sharer).Shares(filepath.Join(mnt, "vols")) || s.(backing.Sharer).Shares(t.TempDir()) {
		t.Error("Shares: want true on the store's filesystem only")
	}
	if open(t, file.Raw, t.TempDir()).(backing.Sharer).Shares(t.TempDir()) {
		t.Error("a raw store says it shares blocks")
	}
	before := free(t, s)
	if _, err := s.Snapshot(ctx, "vol-big", filepath.Join(mnt, "snap")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateFrom(ctx, "vol-clone", 0, backing.Source{Path: filepath.Join(mnt, "snap")}); err != nil {
		t.Fatal(err)
	}
	// A copy would take 2 × 64 MiB; shared blocks take (almost) nothing.
	if used := before - free(t, s); used > 8<<20 {
		t.Errorf("a snapshot and a clone of a 64 MiB volume used %d bytes", used)
	}
}

func free(t *testing.T, s backing.Store) int64 {
	c, err := s.Capacity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c.Free
}

// TestReflinkNeedsSharingFilesystem: a directory that cannot share blocks
// is refused with a message that says what to use instead.
func TestReflinkRefusedWithoutSharing(t *testing.T) {
	dir := t.TempDir()
	if _, err := file.New(file.Reflink, file.Config{Dir: dir}); err == nil {
		// tmpfs and ext4 cannot; btrfs or XFS in TMPDIR could.
		t.Skipf("%s supports reflink", dir)
	}
}

func TestNewChecksDirectory(t *testing.T) {
	for _, dir := range []string{"", "relative", filepath.Join(t.TempDir(), "absent")} {
		if _, err := file.New(file.Raw, file.Config{Dir: dir}); err == nil {
			t.Errorf("New(%q) succeeded", dir)
		}
	}
	if _, err := file.New("zfs", file.Config{Dir: t.TempDir()}); err == nil {
		t.Error("New(zfs) succeeded")
	}
}

// TestNewRemovesPartials: the partial files a crash left are removed when
// the store is opened; volumes stay.
func TestNewRemovesPartials(t *testing.T) {
	dir := t.TempDir()
	s := open(t, file.Raw, dir)
	if _, err := s.Create(context.Background(), "vol-keep", 4096); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".vol-x.123.partial"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = open(t, file.Raw, dir)
	if left, _ := s.(*file.Store).Leftovers(); len(left) != 0 {
		t.Errorf("leftovers after reopening: %q", left)
	}
	if _, err := s.Get(context.Background(), "vol-keep"); err != nil {
		t.Errorf("Get(vol-keep) = %v", err)
	}
}
