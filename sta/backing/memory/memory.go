// Package memory is an in-memory backing store for tests: volumes are byte
// slices, Path is a made-up name. It passes the conformance suite
// (backing/backingtest) like the real stores, so handler tests over it see
// the same behaviour.
package memory

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/sparse"
)

// Store is the in-memory store.
type Store struct {
	total int64

	mu   sync.Mutex
	vols map[string][]byte
	// fail makes the next operations of a kind fail (tests of failure paths).
	fail map[string]error
}

// New returns an empty store that says it holds total bytes.
func New(total int64) *Store {
	return &Store{total: total, vols: map[string][]byte{}, fail: map[string]error{}}
}

// Fail makes every later call of op ("create", "delete", "snapshot") fail
// with err; nil clears it.
func (s *Store) Fail(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.fail, op)
		return
	}
	s.fail[op] = err
}

// Driver implements backing.Store.
func (s *Store) Driver() string { return "memory" }

func path(id string) string { return "memory:" + id }

func (s *Store) volume(id string, b []byte) backing.Volume {
	return backing.Volume{ID: id, Size: int64(len(b)), Path: path(id), Format: backing.FormatRaw}
}

// Create implements backing.Store.
func (s *Store) Create(ctx context.Context, id string, size int64) (backing.Volume, error) {
	size, err := backing.CheckCreate(id, size)
	if err != nil {
		return backing.Volume{}, err
	}
	return s.put(ctx, id, make([]byte, size))
}

func (s *Store) put(ctx context.Context, id string, b []byte) (backing.Volume, error) {
	if err := ctx.Err(); err != nil {
		return backing.Volume{}, backing.Interrupted(ctx, err, "create volume "+id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail["create"]; err != nil {
		return backing.Volume{}, err
	}
	if _, ok := s.vols[id]; ok {
		return backing.Volume{}, backing.Exists(id)
	}
	s.vols[id] = b
	return s.volume(id, b), nil
}

// CreateFrom implements backing.Store.
func (s *Store) CreateFrom(ctx context.Context, id string, size int64, src backing.Source) (backing.Volume, error) {
	if err := backing.CheckCreateFrom(id, size, src); err != nil {
		return backing.Volume{}, err
	}
	r := src.Reader
	if src.Path != "" {
		f, err := os.Open(src.Path)
		if err != nil {
			return backing.Volume{}, errs.Wrap(errs.NotFound, err, "open the source of volume "+id)
		}
		defer f.Close()
		r = f
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, ctxReader{ctx, r}); err != nil {
		return backing.Volume{}, backing.Interrupted(ctx, err, "read the source of volume "+id)
	}
	b := buf.Bytes()
	if size == 0 {
		size = int64(len(b))
		if size == 0 {
			return backing.Volume{}, errs.New(errs.InvalidVolumeSize, "volume %s: the source is empty", id)
		}
	}
	size = backing.RoundSize(size)
	if int64(len(b)) > size {
		return backing.Volume{}, backing.TooLarge(id, size)
	}
	out := make([]byte, size)
	copy(out, b)
	return s.put(ctx, id, out)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Get implements backing.Store.
func (s *Store) Get(ctx context.Context, id string) (backing.Volume, error) {
	if err := backing.CheckID(id); err != nil {
		return backing.Volume{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.vols[id]
	if !ok {
		return backing.Volume{}, backing.Absent(id)
	}
	return s.volume(id, b), nil
}

// List implements backing.Store.
func (s *Store) List(ctx context.Context) ([]backing.Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []backing.Volume{}
	for id, b := range s.vols {
		out = append(out, s.volume(id, b))
	}
	slices.SortFunc(out, func(a, b backing.Volume) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// Delete implements backing.Store.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := backing.CheckID(id); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail["delete"]; err != nil {
		return err
	}
	delete(s.vols, id)
	return nil
}

// Snapshot implements backing.Store.
func (s *Store) Snapshot(ctx context.Context, id, dst string) (int64, error) {
	if err := backing.CheckID(id); err != nil {
		return 0, err
	}
	s.mu.Lock()
	b, ok := s.vols[id]
	err := s.fail["snapshot"]
	b = slices.Clone(b)
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, backing.Absent(id)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return 0, errs.Wrap(errs.Conflict, err, "snapshot of volume "+id)
	}
	if err != nil {
		return 0, err
	}
	if _, err := sparse.WriteAt(ctx, f, 0, bytes.NewReader(b)); err != nil {
		f.Close()
		os.Remove(dst)
		return 0, backing.Interrupted(ctx, err, "snapshot of volume "+id)
	}
	if err := errors.Join(f.Truncate(int64(len(b))), f.Close()); err != nil {
		os.Remove(dst)
		return 0, err
	}
	return int64(len(b)), nil
}

// Capacity implements backing.Store.
func (s *Store) Capacity(ctx context.Context) (backing.Capacity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var used int64
	for _, b := range s.vols {
		used += int64(len(b))
	}
	return backing.Capacity{Total: s.total, Free: max(s.total-used, 0)}, nil
}

// WriteAt writes into a volume, as an initiator would through the target.
func (s *Store) WriteAt(id string, off int64, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.vols[id]
	if !ok {
		return backing.Absent(id)
	}
	if off < 0 || off+int64(len(p)) > int64(len(b)) {
		return errs.New(errs.InvalidParameter, "write beyond the end of volume %s", id)
	}
	copy(b[off:], p)
	return nil
}
