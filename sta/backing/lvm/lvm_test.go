package lvm_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/backing/backingtest"
	"github.com/vdc-project/vdc/sta/backing/lvm"
	"github.com/vdc-project/vdc/sta/backing/lvm/lvmfake"
)

// This kernel has no device-mapper: the store runs against the fake LVM
// commands only (package comment of lvm).

type fixture struct {
	store *lvm.Store
	fake  *lvmfake.Runner
}

func newStore(t *testing.T, pool string) fixture {
	dev := t.TempDir()
	fake, err := lvmfake.New("stvg", 1<<30, dev, pool, 512<<20)
	if err != nil {
		t.Fatal(err)
	}
	s, err := lvm.New(context.Background(), lvm.Config{VolumeGroup: "stvg", ThinPool: pool, DevDir: dev, TmpDir: t.TempDir(), Runner: fake})
	if err != nil {
		t.Fatal(err)
	}
	return fixture{s, fake}
}

func options(pool string) backingtest.Options {
	return backingtest.Options{
		New: func(t *testing.T) backing.Store { return newStore(t, pool).store },
		WriteAt: func(t *testing.T, _ backing.Store, v backing.Volume, off int64, p []byte) {
			f, err := os.OpenFile(v.Path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
		},
		Leftovers: func(t *testing.T, s backing.Store) []string {
			left, err := s.(*lvm.Store).Leftovers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return left
		},
	}
}

func TestThickConformance(t *testing.T) { backingtest.Run(t, options("")) }

func TestThinConformance(t *testing.T) { backingtest.Run(t, options("pool0")) }

// TestThickVolumesAreZeroed: a thick LV comes up holding old data; the
// store zeroes it, so a blank volume never shows another tenant's bytes.
func TestThickVolumesAreZeroed(t *testing.T) {
	f := newStore(t, "")
	ctx := context.Background()
	v, err := f.store.Create(ctx, "vol-blank", 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(v.Path)
	if err != nil {
		t.Fatal(err)
	}
	if i := bytes.IndexByte(b, lvmfake.Garbage); i >= 0 {
		t.Errorf("byte %d of a blank volume holds old data", i)
	}
	if !slices.ContainsFunc(f.fake.Calls(), func(c []string) bool { return c[0] == "blkdiscard" }) {
		t.Error("no blkdiscard -z ran")
	}
}

// TestSizeKeptAcrossExtents: LVM rounds to 4 MiB extents; the volume keeps
// the size asked for.
func TestSizeKeptAcrossExtents(t *testing.T) {
	f := newStore(t, "")
	ctx := context.Background()
	v, err := f.store.Create(ctx, "vol-odd", 5<<20+512)
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != 5<<20+512 {
		t.Errorf("size = %d, want %d", v.Size, 5<<20+512)
	}
	fi, err := os.Stat(v.Path)
	if err != nil || fi.Size() != 8<<20 {
		t.Errorf("the LV is %v bytes (%v), want 2 extents", fi.Size(), err)
	}
	dst := filepath.Join(t.TempDir(), "snap")
	n, err := f.store.Snapshot(ctx, "vol-odd", dst)
	if err != nil || n != v.Size {
		t.Errorf("Snapshot = %d, %v; want %d", n, err, v.Size)
	}
}

// TestOutOfSpace: a full group fails the create and leaves no LV.
func TestOutOfSpace(t *testing.T) {
	f := newStore(t, "")
	ctx := context.Background()
	if _, err := f.store.Create(ctx, "vol-huge", 2<<30); err == nil || !strings.Contains(err.Error(), "insufficient free space") {
		t.Fatalf("Create beyond the group = %v", err)
	}
	if lvs := f.fake.LVs(); len(lvs) != 0 {
		t.Errorf("LVs left: %q", lvs)
	}
}

// TestNewRemovesLeftovers: LVs a crash left half made are removed at start.
func TestNewRemovesLeftovers(t *testing.T) {
	dev := t.TempDir()
	fake, err := lvmfake.New("stvg", 1<<30, dev, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"vol-a.part-0000", "vol-b.snap-0000", "vol-c"} {
		if _, err := fake.Run(ctx, "lvcreate", "-q", "-y", "-n", n, "-L", "4194304b", "stvg"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lvm.New(ctx, lvm.Config{VolumeGroup: "stvg", DevDir: dev, Runner: fake}); err != nil {
		t.Fatal(err)
	}
	if lvs := fake.LVs(); !slices.Equal(lvs, []string{"vol-c"}) {
		t.Errorf("LVs = %q, want only vol-c", lvs)
	}
}

func TestNewNeedsGroup(t *testing.T) {
	fake, err := lvmfake.New("stvg", 1<<30, t.TempDir(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, vg := range []string{"", "othervg"} {
		if _, err := lvm.New(context.Background(), lvm.Config{VolumeGroup: vg, Runner: fake}); err == nil {
			t.Errorf("New(%q) succeeded", vg)
		}
	}
}
