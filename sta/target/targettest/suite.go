// Package targettest is the conformance suite of storage targets: the
// in-memory target's unit tests and tgt's real-tier tests run the same
// cases, so handler tests over the fake see tgt's behaviour.
package targettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/sta/target"
)

// Options tune the suite to a target.
type Options struct {
	// New returns a target for one subtest.
	New func(t *testing.T) target.Target
	// Prefix is the IQN prefix the suite names its targets under; each
	// subtest adds a random part, and removes what it exported under it at
	// cleanup (the target may be shared with other users of the machine).
	Prefix string
}

// Run runs the suite.
func Run(t *testing.T, o Options) {
	if o.New == nil || o.Prefix == "" {
		t.Fatal("targettest: Options.New and Options.Prefix are required")
	}
	cases := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"ExportIdempotent", testExportIdempotent},
		{"ExportOtherPathConflicts", testConflict},
		{"ExportMissingPath", testMissingPath},
		{"BadNames", testBadNames},
		{"UnexportIdempotent", testUnexport},
		{"ListByPrefix", testList},
		{"ConcurrentDistinctTIDs", testConcurrent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b [3]byte
			_, _ = rand.Read(b[:])
			s := &suite{t: t, tg: o.New(t), prefix: o.Prefix + "-" + hex.EncodeToString(b[:])}
			t.Cleanup(s.cleanup)
			c.fn(t, s)
		})
	}
}

type suite struct {
	t      *testing.T
	tg     target.Target
	prefix string
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) iqn(name string) string { return target.IQN(s.prefix, name) }

// file makes a backing file of size bytes.
func (s *suite) file(name string, size int64) string {
	p := filepath.Join(s.t.TempDir(), name)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *suite) cleanup() {
	ctx := context.Background()
	list, err := s.tg.List(ctx, s.prefix)
	if err != nil {
		s.t.Errorf("cleanup: list: %v", err)
		return
	}
	for _, e := range list {
		if err := s.tg.Unexport(ctx, e.IQN); err != nil {
			s.t.Errorf("cleanup: unexport %s: %v", e.IQN, err)
		}
	}
}

func (s *suite) list() []target.Export {
	s.t.Helper()
	list, err := s.tg.List(ctxT(s.t), s.prefix)
	if err != nil {
		s.t.Fatal(err)
	}
	return list
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(err, k) {
		t.Errorf("%s = %v (kind %s), want %s", what, err, errs.KindOf(err).Name(), k.Name())
	}
}

func testExportIdempotent(t *testing.T, s *suite) {
	ctx := ctxT(t)
	p := s.file("a.raw", 8<<20)
	e, err := s.tg.Export(ctx, s.iqn("vol-a"), p)
	if err != nil {
		t.Fatal(err)
	}
	if e.IQN != s.iqn("vol-a") || e.LUN != target.LUN || e.Path != p || e.TID < 1 || len(e.Initiators) == 0 {
		t.Errorf("Export = %+v", e)
	}
	again, err := s.tg.Export(ctx, s.iqn("vol-a"), p)
	if err != nil {
		t.Fatalf("second Export = %v", err)
	}
	if again.TID != e.TID || again.Path != p || again.LUN != e.LUN {
		t.Errorf("second Export = %+v, want %+v", again, e)
	}
	if list := s.list(); len(list) != 1 || list[0].IQN != e.IQN || list[0].Path != p || list[0].TID != e.TID {
		t.Errorf("List = %+v, want the one export", list)
	}
}

func testConflict(t *testing.T, s *suite) {
	ctx := ctxT(t)
	p, q := s.file("a.raw", 4<<20), s.file("b.raw", 4<<20)
	if _, err := s.tg.Export(ctx, s.iqn("vol-a"), p); err != nil {
		t.Fatal(err)
	}
	_, err := s.tg.Export(ctx, s.iqn("vol-a"), q)
	wantKind(t, "Export of an exported iqn with another path", err, errs.Conflict)
	if list := s.list(); len(list) != 1 || list[0].Path != p {
		t.Errorf("List = %+v, want vol-a on %s", list, p)
	}
}

func testMissingPath(t *testing.T, s *suite) {
	ctx := ctxT(t)
	_, err := s.tg.Export(ctx, s.iqn("vol-m"), filepath.Join(t.TempDir(), "absent.raw"))
	wantKind(t, "Export of a missing path", err, errs.NotFound)
	if list := s.list(); len(list) != 0 {
		t.Errorf("a failed export left %+v", list)
	}
}

func testBadNames(t *testing.T, s *suite) {
	ctx := ctxT(t)
	p := s.file("a.raw", 4<<20)
	for _, iqn := range []string{"", "vol-a", "iqn.2026-01.test:Vol-A", "iqn.x:vol", "iqn.2026-01.test:vol a"} {
		_, err := s.tg.Export(ctx, iqn, p)
		wantKind(t, fmt.Sprintf("Export(%q)", iqn), err, errs.InvalidParameter)
		wantKind(t, fmt.Sprintf("Unexport(%q)", iqn), s.tg.Unexport(ctx, iqn), errs.InvalidParameter)
	}
}

func testUnexport(t *testing.T, s *suite) {
	ctx := ctxT(t)
	p := s.file("a.raw", 4<<20)
	if _, err := s.tg.Export(ctx, s.iqn("vol-u"), p); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := s.tg.Unexport(ctx, s.iqn("vol-u")); err != nil {
			t.Fatalf("Unexport #%d = %v", i+1, err)
		}
		if list := s.list(); len(list) != 0 {
			t.Fatalf("after Unexport #%d: %+v", i+1, list)
		}
	}
	// The name can be exported again, with another path.
	q := s.file("b.raw", 4<<20)
	if e, err := s.tg.Export(ctx, s.iqn("vol-u"), q); err != nil || e.Path != q {
		t.Errorf("Export after Unexport = %+v, %v", e, err)
	}
}

func testList(t *testing.T, s *suite) {
	ctx := ctxT(t)
	p := s.file("a.raw", 4<<20)
	for _, n := range []string{"vol-c", "vol-a", "vol-b"} {
		if _, err := s.tg.Export(ctx, s.iqn(n), p); err != nil {
			t.Fatal(err)
		}
	}
	other := s.prefix + "x" // shares the characters, not the prefix
	if _, err := s.tg.Export(ctx, target.IQN(other, "vol-z"), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.tg.Unexport(context.Background(), target.IQN(other, "vol-z")) })
	var got []string
	for _, e := range s.list() {
		got = append(got, e.IQN)
	}
	want := []string{s.iqn("vol-a"), s.iqn("vol-b"), s.iqn("vol-c")}
	if !slices.Equal(got, want) {
		t.Errorf("List(%s) = %q, want %q", s.prefix, got, want)
	}
}

func testConcurrent(t *testing.T, s *suite) {
	ctx := ctxT(t)
	const n = 8
	var wg sync.WaitGroup
	exports := make([]target.Export, n)
	errList := make([]error, n)
	for i := range n {
		p := s.file(fmt.Sprintf("v%d.raw", i), 4<<20)
		wg.Go(func() { exports[i], errList[i] = s.tg.Export(ctx, s.iqn(fmt.Sprintf("vol-%d", i)), p) })
	}
	wg.Wait()
	tids := map[int]string{}
	for i, e := range exports {
		if errList[i] != nil {
			t.Fatalf("Export #%d = %v", i, errList[i])
		}
		if other, ok := tids[e.TID]; ok {
			t.Errorf("%s and %s share tid %d", other, e.IQN, e.TID)
		}
		tids[e.TID] = e.IQN
	}
	if list := s.list(); len(list) != n {
		t.Errorf("List has %d exports, want %d", len(list), n)
	}
}
