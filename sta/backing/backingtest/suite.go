// Package backingtest is the conformance suite of backing stores (house
// style §10.3): the in-memory store's unit tests and the real stores' tests
// run the same cases, so the fake the handler tests use cannot drift from
// the stores the sta runs on.
package backingtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/sta/backing"
)

// Options tune the suite to a store.
type Options struct {
	// New returns a store for one subtest (each subtest gets its own).
	New func(t *testing.T) backing.Store
	// WriteAt writes into a volume the way an initiator would through the
	// target (the suite checks that snapshots do not see later writes).
	WriteAt func(t *testing.T, s backing.Store, v backing.Volume, off int64, p []byte)
	// Leftovers lists what a store holds besides its volumes (partial
	// files, temporary LVs); after a failed create it must be empty. Nil:
	// the store cannot hold anything else.
	Leftovers func(t *testing.T, s backing.Store) []string
}

// Run runs the suite.
func Run(t *testing.T, o Options) {
	if o.New == nil || o.WriteAt == nil {
		t.Fatal("backingtest: Options.New and Options.WriteAt are required")
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"CreateBlank", testCreateBlank},
		{"CreateBadArguments", testCreateBad},
		{"CreateExisting", testCreateExisting},
		{"CreateFromReader", testCreateFromReader},
		{"CreateFromPath", testCreateFromPath},
		{"CreateFromTooLarge", testCreateFromTooLarge},
		{"CreateFromFailingSource", testCreateFromFailing},
		{"CreateFromCancelled", testCreateFromCancelled},
		{"DeleteIdempotent", testDelete},
		{"ListSorted", testList},
		{"SnapshotPointInTime", testSnapshot},
		{"SnapshotErrors", testSnapshotErrors},
		{"Capacity", testCapacity},
		{"ConcurrentCreateOneWins", testConcurrentSameID},
		{"ConcurrentDistinct", testConcurrentDistinct},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, &suite{t: t, s: o.New(t), o: o})
		})
	}
}

type suite struct {
	t *testing.T
	s backing.Store
	o Options
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

const mib = 1 << 20

// content is size bytes of random data with zero runs in it (holes for
// the sparse paths), the same for the same seed.
func content(seed uint64, size int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	// zero the second 64 KiB of every 256 KiB
	for off := 64 << 10; off < size; off += 256 << 10 {
		clear(b[off:min(off+64<<10, size)])
	}
	return b
}

// read returns a volume's bytes, through a snapshot.
func (s *suite) read(id string) []byte {
	s.t.Helper()
	dst := filepath.Join(s.t.TempDir(), "read")
	n, err := s.s.Snapshot(ctxT(s.t), id, dst)
	if err != nil {
		s.t.Fatalf("Snapshot(%s) = %v", id, err)
	}
	b, err := os.ReadFile(dst)
	if err != nil {
		s.t.Fatal(err)
	}
	if int64(len(b)) != n {
		s.t.Fatalf("Snapshot(%s) said %d bytes, the file has %d", id, n, len(b))
	}
	return b
}

func (s *suite) wantBytes(id string, want []byte) {
	s.t.Helper()
	got := s.read(id)
	if len(got) != len(want) {
		s.t.Fatalf("volume %s has %d bytes, want %d", id, len(got), len(want))
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		s.t.Fatalf("volume %s differs from what was written, first at byte %d", id, i)
	}
}

// wantAbsent checks that a volume is not there and nothing else was left.
func (s *suite) wantAbsent(id string) {
	s.t.Helper()
	ctx := ctxT(s.t)
	if _, err := s.s.Get(ctx, id); !errs.Is(err, errs.NotFound) {
		s.t.Errorf("Get(%s) = %v, want NotFound", id, err)
	}
	vols, err := s.s.List(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, v := range vols {
		if v.ID == id {
			s.t.Errorf("List has %s", id)
		}
	}
	if s.o.Leftovers != nil {
		if left := s.o.Leftovers(s.t, s.s); len(left) > 0 {
			s.t.Errorf("the store holds leftovers: %q", left)
		}
	}
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(err, k) {
		t.Errorf("%s = %v (kind %s), want %s", what, err, errs.KindOf(err).Name(), k.Name())
	}
}

func testCreateBlank(t *testing.T, s *suite) {
	ctx := ctxT(t)
	for _, c := range []struct {
		id         string
		size, want int64
	}{{"vol-one", 1, 512}, {"vol-mib", mib + 1, mib + 512}, {"vol-4m", 4 * mib, 4 * mib}} {
		v, err := s.s.Create(ctx, c.id, c.size)
		if err != nil {
			t.Fatalf("Create(%s, %d) = %v", c.id, c.size, err)
		}
		if v.ID != c.id || v.Size != c.want || v.Path == "" || (v.Format != backing.FormatRaw && v.Format != backing.FormatQcow2) {
			t.Errorf("Create(%s, %d) = %+v, want size %d, a path and a format", c.id, c.size, v, c.want)
		}
		got, err := s.s.Get(ctx, c.id)
		if err != nil || got != v {
			t.Errorf("Get(%s) = %+v, %v; want %+v", c.id, got, err, v)
		}
		s.wantBytes(c.id, make([]byte, c.want))
	}
}

func testCreateBad(t *testing.T, s *suite) {
	ctx := ctxT(t)
	for _, id := range []string{"", "../x", "a/b", ".hidden", "a.b", "-x", string(make([]byte, 129))} {
		_, err := s.s.Create(ctx, id, mib)
		wantKind(t, fmt.Sprintf("Create(%q)", id), err, errs.InvalidParameter)
		_, err = s.s.CreateFrom(ctx, id, 0, backing.Source{Reader: bytes.NewReader(make([]byte, 512))})
		wantKind(t, fmt.Sprintf("CreateFrom(%q)", id), err, errs.InvalidParameter)
	}
	for _, size := range []int64{0, -1} {
		_, err := s.s.Create(ctx, "vol-bad", size)
		wantKind(t, fmt.Sprintf("Create(size %d)", size), err, errs.InvalidVolumeSize)
	}
	_, err := s.s.CreateFrom(ctx, "vol-bad", -1, backing.Source{Reader: bytes.NewReader(nil)})
	wantKind(t, "CreateFrom(size -1)", err, errs.InvalidVolumeSize)
	_, err = s.s.CreateFrom(ctx, "vol-bad", mib, backing.Source{})
	wantKind(t, "CreateFrom(no source)", err, errs.InvalidParameter)
	s.wantAbsent("vol-bad")
}

func testCreateExisting(t *testing.T, s *suite) {
	ctx := ctxT(t)
	data := content(1, mib)
	if _, err := s.s.CreateFrom(ctx, "vol-x", 0, backing.Source{Reader: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	_, err := s.s.Create(ctx, "vol-x", 2*mib)
	wantKind(t, "Create of an existing id", err, errs.Conflict)
	_, err = s.s.CreateFrom(ctx, "vol-x", 0, backing.Source{Reader: bytes.NewReader(make([]byte, mib))})
	wantKind(t, "CreateFrom of an existing id", err, errs.Conflict)
	s.wantBytes("vol-x", data)
}

func testCreateFromReader(t *testing.T, s *suite) {
	ctx := ctxT(t)
	data := content(2, 3*mib+100)
	v, err := s.s.CreateFrom(ctx, "vol-own", 0, backing.Source{Reader: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != backing.RoundSize(int64(len(data))) {
		t.Errorf("size = %d, want the source's %d rounded up", v.Size, len(data))
	}
	s.wantBytes("vol-own", append(slices.Clone(data), make([]byte, v.Size-int64(len(data)))...))

	v, err = s.s.CreateFrom(ctx, "vol-pad", 8*mib, backing.Source{Reader: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	if v.Size != 8*mib {
		t.Errorf("size = %d, want %d", v.Size, 8*mib)
	}
	s.wantBytes("vol-pad", append(slices.Clone(data), make([]byte, 8*mib-len(data))...))
}

func testCreateFromPath(t *testing.T, s *suite) {
	ctx := ctxT(t)
	data := content(3, 2*mib)
	src := filepath.Join(t.TempDir(), "src.raw")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.s.CreateFrom(ctx, "vol-file", 4*mib, backing.Source{Path: src}); err != nil {
		t.Fatal(err)
	}
	// The source stays as it was, and the volume does not change with it.
	if err := os.WriteFile(src, content(4, 2*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	s.wantBytes("vol-file", append(slices.Clone(data), make([]byte, 2*mib)...))
	_, err := s.s.CreateFrom(ctx, "vol-nosrc", 0, backing.Source{Path: filepath.Join(t.TempDir(), "absent")})
	if err == nil {
		t.Error("CreateFrom an absent file succeeded")
	}
	s.wantAbsent("vol-nosrc")
}

func testCreateFromTooLarge(t *testing.T, s *suite) {
	ctx := ctxT(t)
	_, err := s.s.CreateFrom(ctx, "vol-big", mib, backing.Source{Reader: bytes.NewReader(content(5, mib+512))})
	wantKind(t, "CreateFrom(a source longer than the size)", err, errs.InvalidVolumeSize)
	s.wantAbsent("vol-big")
}

// failingReader returns data, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, f.err
	}
	return n, err
}

func testCreateFromFailing(t *testing.T, s *suite) {
	ctx := ctxT(t)
	boom := errors.New("source broke")
	_, err := s.s.CreateFrom(ctx, "vol-fail", 4*mib, backing.Source{Reader: &failingReader{bytes.NewReader(content(6, 2*mib)), boom}})
	if !errors.Is(err, boom) {
		t.Errorf("CreateFrom = %v, want the source's error", err)
	}
	s.wantAbsent("vol-fail")
}

// cancellingReader cancels the context after the first read.
type cancellingReader struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.cancel()
	return n, err
}

func testCreateFromCancelled(t *testing.T, s *suite) {
	ctx, cancel := context.WithCancel(ctxT(t))
	_, err := s.s.CreateFrom(ctx, "vol-cancel", 0, backing.Source{Reader: &cancellingReader{io.LimitReader(zeroReader{}, 64*mib), cancel}})
	wantKind(t, "CreateFrom with the context cancelled", err, errs.Timeout)
	s.wantAbsent("vol-cancel")
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func testDelete(t *testing.T, s *suite) {
	ctx := ctxT(t)
	if _, err := s.s.Create(ctx, "vol-del", mib); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.s.Delete(ctx, "vol-del"); err != nil {
			t.Fatalf("Delete #%d = %v", i+1, err)
		}
		s.wantAbsent("vol-del")
	}
	wantKind(t, "Delete(../x)", s.s.Delete(ctx, "../x"), errs.InvalidParameter)
	// The id can be used again.
	if _, err := s.s.Create(ctx, "vol-del", 2*mib); err != nil {
		t.Fatalf("Create after Delete = %v", err)
	}
	s.wantBytes("vol-del", make([]byte, 2*mib))
}

func testList(t *testing.T, s *suite) {
	ctx := ctxT(t)
	vols, err := s.s.List(ctx)
	if err != nil || len(vols) != 0 {
		t.Fatalf("List of a new store = %v, %v", vols, err)
	}
	for _, id := range []string{"vol-c", "vol-a", "vol-b"} {
		if _, err := s.s.Create(ctx, id, mib); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.s.Delete(ctx, "vol-b"); err != nil {
		t.Fatal(err)
	}
	vols, err = s.s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, v := range vols {
		ids = append(ids, v.ID)
		if v.Size != mib {
			t.Errorf("List: %s has size %d, want %d", v.ID, v.Size, mib)
		}
	}
	if !slices.Equal(ids, []string{"vol-a", "vol-c"}) {
		t.Errorf("List = %q, want [vol-a vol-c]", ids)
	}
}

func testSnapshot(t *testing.T, s *suite) {
	ctx := ctxT(t)
	data := content(7, 2*mib)
	v, err := s.s.CreateFrom(ctx, "vol-snap", 0, backing.Source{Reader: bytes.NewReader(data)})
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "snap")
	if _, err := s.s.Snapshot(ctx, "vol-snap", dst); err != nil {
		t.Fatal(err)
	}
	mark := bytes.Repeat([]byte{0xab}, 8192)
	s.o.WriteAt(t, s.s, v, 4096, mark)
	got, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("a write to the volume changed the snapshot taken before it")
	}
	want := slices.Clone(data)
	copy(want[4096:], mark)
	s.wantBytes("vol-snap", want)
}

func testSnapshotErrors(t *testing.T, s *suite) {
	ctx := ctxT(t)
	dir := t.TempDir()
	_, err := s.s.Snapshot(ctx, "vol-absent", filepath.Join(dir, "a"))
	wantKind(t, "Snapshot of an absent volume", err, errs.NotFound)
	if _, err := s.s.Create(ctx, "vol-s", mib); err != nil {
		t.Fatal(err)
	}
	taken := filepath.Join(dir, "taken")
	if err := os.WriteFile(taken, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.s.Snapshot(ctx, "vol-s", taken)
	wantKind(t, "Snapshot onto an existing file", err, errs.Conflict)
	if b, _ := os.ReadFile(taken); string(b) != "keep" {
		t.Errorf("Snapshot overwrote an existing file: %q", b)
	}
}

func testCapacity(t *testing.T, s *suite) {
	c, err := s.s.Capacity(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Total <= 0 || c.Free < 0 || c.Free > c.Total {
		t.Errorf("Capacity = %+v, want 0 ≤ free ≤ total, total > 0", c)
	}
}

func testConcurrentSameID(t *testing.T, s *suite) {
	ctx := ctxT(t)
	const n = 6
	var wg sync.WaitGroup
	errList := make([]error, n)
	for i := range n {
		wg.Go(func() {
			if i%2 == 0 {
				_, errList[i] = s.s.Create(ctx, "vol-race", mib)
			} else {
				_, errList[i] = s.s.CreateFrom(ctx, "vol-race", mib, backing.Source{Reader: bytes.NewReader(content(uint64(i), mib))})
			}
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errList {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("creates #%d and #%d of one id both succeeded", winner, i)
		case err == nil:
			winner = i
		default:
			wantKind(t, fmt.Sprintf("losing create #%d", i), err, errs.Conflict)
		}
	}
	if winner < 0 {
		t.Fatal("no create succeeded")
	}
	want := make([]byte, mib)
	if winner%2 == 1 {
		want = content(uint64(winner), mib)
	}
	s.wantBytes("vol-race", want)
	if s.o.Leftovers != nil {
		if left := s.o.Leftovers(t, s.s); len(left) > 0 {
			t.Errorf("leftovers after the race: %q", left)
		}
	}
}

func testConcurrentDistinct(t *testing.T, s *suite) {
	ctx := ctxT(t)
	const n = 6
	var wg sync.WaitGroup
	errList := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errList[i] = s.s.CreateFrom(ctx, fmt.Sprintf("vol-%d", i), 0, backing.Source{Reader: bytes.NewReader(content(uint64(100+i), mib))})
		})
	}
	wg.Wait()
	for i, err := range errList {
		if err != nil {
			t.Fatalf("create #%d = %v", i, err)
		}
	}
	for i := range n {
		s.wantBytes(fmt.Sprintf("vol-%d", i), content(uint64(100+i), mib))
	}
}
