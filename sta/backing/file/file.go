// Package file keeps volumes as files in one directory (sta.conf
// export_path), in one of three layouts:
//
//   - raw: a sparse file per volume (<id>.raw), the source's raw driver;
//     snapshots and clones are sparse copies.
//   - reflink: raw files on a filesystem that shares blocks between files
//     (XFS with reflink=1, btrfs); snapshots, clones and restores from a
//     local backup on the same filesystem are FICLONE ioctls, instant and
//     free until written. On hosts without device-mapper (no LVM) this is
//     how the sta gets LVM-like cheap snapshots.
//   - qcow2: a qcow2 image per volume (<id>.qcow2) made with qemu-img, with
//     its metadata preallocated so that the file never grows: tgt exports a
//     fixed-size LUN and an initiator opening it as qcow2 (QEMU's iSCSI
//     driver probes the format) can write every cluster. Snapshots are raw
//     conversions (qemu-img convert).
//
// A volume is created under a hidden partial name and linked to its final
// name only when complete (link(2) does not overwrite, so of two creates of
// one id exactly one wins); partial files left by a crash are removed when
// the store is opened.
package file

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/command"
	"github.com/vdc-project/vdc/sta/sparse"
)

// Layouts (Store.Driver values).
const (
	Raw     = "raw"
	Reflink = "reflink"
	Qcow2   = "qcow2"
)

// Config configures a file store.
type Config struct {
	// Dir holds the volumes (sta.conf export_path); it must exist.
	Dir string
	// QemuImg is the qemu-img program of the qcow2 layout (default "qemu-img").
	QemuImg string
	// Runner runs qemu-img (default command.Exec{}).
	Runner command.Runner
}

// Store is a file store.
type Store struct {
	layout string
	dir    string
	ext    string
	qimg   string
	run    command.Runner
}

// New opens a store of the given layout in cfg.Dir and removes the partial
// files a crash left there (so only one sta may use a directory). A reflink
// store checks that the directory's filesystem can share blocks.
func New(layout string, cfg Config) (*Store, error) {
	s := &Store{layout: layout, dir: cfg.Dir, qimg: cfg.QemuImg, run: cfg.Runner}
	switch layout {
	case Raw, Reflink:
		s.ext = ".raw"
	case Qcow2:
		s.ext = ".qcow2"
	default:
		return nil, fmt.Errorf("file store layout %q: want raw, reflink or qcow2", layout)
	}
	if s.qimg == "" {
		s.qimg = "qemu-img"
	}
	if s.run == nil {
		s.run = command.Exec{}
	}
	if cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) {
		return nil, fmt.Errorf("%s store: export path %q: want an absolute directory", layout, cfg.Dir)
	}
	if fi, err := os.Stat(cfg.Dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s store: export path %q is not a directory (%v)", layout, cfg.Dir, err)
	}
	if err := s.removePartials(); err != nil {
		return nil, err
	}
	if layout == Reflink {
		if err := s.checkReflink(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Driver implements backing.Store.
func (s *Store) Driver() string { return s.layout }

// Dir is the directory the volumes are in.
func (s *Store) Dir() string { return s.dir }

// Shares implements backing.Sharer: a reflink store shares the blocks of
// files in its own filesystem.
func (s *Store) Shares(path string) bool {
	if s.layout != Reflink {
		return false
	}
	var a, b syscall.Stat_t
	return syscall.Stat(s.dir, &a) == nil && syscall.Stat(path, &b) == nil && a.Dev == b.Dev
}

func (s *Store) path(id string) string { return filepath.Join(s.dir, id+s.ext) }

func (s *Store) format() string {
	if s.layout == Qcow2 {
		return backing.FormatQcow2
	}
	return backing.FormatRaw
}

const partialSuffix = ".partial"

// Leftovers lists the hidden files in the directory: partial volumes and
// the reflink probe, which only a crash (or a bug) leaves behind.
func (s *Store) Leftovers() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (s *Store) removePartials() error {
	left, err := s.Leftovers()
	if err != nil {
		return fmt.Errorf("%s store: %w", s.layout, err)
	}
	for _, name := range left {
		if strings.HasSuffix(name, partialSuffix) {
			if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("%s store: remove a partial file: %w", s.layout, err)
			}
		}
	}
	return nil
}

func (s *Store) checkReflink() error {
	src, err := os.CreateTemp(s.dir, ".reflink-probe-*"+partialSuffix)
	if err != nil {
		return fmt.Errorf("reflink store: %w", err)
	}
	defer os.Remove(src.Name())
	defer src.Close()
	if _, err := src.Write(make([]byte, sparse.BlockSize)); err != nil {
		return fmt.Errorf("reflink store: %w", err)
	}
	dst, err := os.CreateTemp(s.dir, ".reflink-probe-*"+partialSuffix)
	if err != nil {
		return fmt.Errorf("reflink store: %w", err)
	}
	defer os.Remove(dst.Name())
	defer dst.Close()
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err != nil {
		return fmt.Errorf("reflink store: %s cannot share blocks between files (FICLONE: %w); "+
			"use XFS made with -m reflink=1 or btrfs, or the raw driver", s.dir, err)
	}
	return nil
}

// ---- creating ----

// partial creates a new hidden file in dir for the content of name.
func partial(dir, name string) (*os.File, error) {
	return os.CreateTemp(dir, "."+name+".*"+partialSuffix)
}

// commit gives the complete partial file its final name, unless that name
// exists (Conflict), and removes the partial name either way.
func commit(tmp, final string) error {
	err := os.Link(tmp, final)
	os.Remove(tmp)
	if errors.Is(err, os.ErrExist) {
		return errs.Wrap(errs.Conflict, err, filepath.Base(final)+" exists")
	}
	if err != nil {
		return err
	}
	// The new name must survive a crash as surely as the data.
	if d, err := os.Open(filepath.Dir(final)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// build makes a volume's file under a partial name with fill, then commits
// it; on any error the partial file is removed.
func (s *Store) build(ctx context.Context, id string, fill func(tmp *os.File) error) (backing.Volume, error) {
	if _, err := os.Lstat(s.path(id)); err == nil {
		return backing.Volume{}, backing.Exists(id)
	}
	tmp, err := partial(s.dir, id)
	if err != nil {
		return backing.Volume{}, fmt.Errorf("create volume %s: %w", id, err)
	}
	name := tmp.Name()
	err = fill(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = commit(name, s.path(id))
		if errs.Is(err, errs.Conflict) {
			return backing.Volume{}, backing.Exists(id)
		}
	}
	if err != nil {
		os.Remove(name)
		return backing.Volume{}, backing.Interrupted(ctx, annotate(err, "create volume "+id), "create volume "+id)
	}
	return s.Get(ctx, id)
}

func annotate(err error, what string) error {
	return &errs.Error{Kind: errs.KindOf(err), Msg: what, Err: err}
}

// Create implements backing.Store.
func (s *Store) Create(ctx context.Context, id string, size int64) (backing.Volume, error) {
	size, err := backing.CheckCreate(id, size)
	if err != nil {
		return backing.Volume{}, err
	}
	return s.build(ctx, id, func(tmp *os.File) error {
		if s.layout == Qcow2 {
			return s.qemuImg(ctx, "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", tmp.Name(), strconv.FormatInt(size, 10))
		}
		return tmp.Truncate(size)
	})
}

// CreateFrom implements backing.Store.
func (s *Store) CreateFrom(ctx context.Context, id string, size int64, src backing.Source) (backing.Volume, error) {
	if err := backing.CheckCreateFrom(id, size, src); err != nil {
		return backing.Volume{}, err
	}
	if src.Path != "" {
		return s.createFromFile(ctx, id, size, src.Path)
	}
	if s.layout == Qcow2 {
		// qemu-img reads files: land the stream in a raw file first.
		raw, err := partial(s.dir, id+".src")
		if err != nil {
			return backing.Volume{}, fmt.Errorf("create volume %s: %w", id, err)
		}
		defer os.Remove(raw.Name())
		defer raw.Close()
		if err := s.fillFromReader(ctx, id, raw, size, src.Reader); err != nil {
			return backing.Volume{}, backing.Interrupted(ctx, err, "create volume "+id)
		}
		return s.createFromFile(ctx, id, size, raw.Name())
	}
	return s.build(ctx, id, func(tmp *os.File) error {
		return s.fillFromReader(ctx, id, tmp, size, src.Reader)
	})
}

// fillFromReader writes r into f sparsely and sizes f: size, or r's length
// rounded up when size is 0.
func (s *Store) fillFromReader(ctx context.Context, id string, f *os.File, size int64, r io.Reader) error {
	limit := size + 1
	if size == 0 {
		limit = 1<<63 - 1
	}
	n, err := sparse.WriteAt(ctx, f, 0, io.LimitReader(r, limit))
	if err != nil {
		return fmt.Errorf("read the source of volume %s: %w", id, err)
	}
	size, err = fitSize(id, size, n)
	if err != nil {
		return err
	}
	return f.Truncate(size)
}

// fitSize is the volume size for content of n bytes.
func fitSize(id string, size, n int64) (int64, error) {
	if size == 0 {
		if n == 0 {
			return 0, errs.New(errs.InvalidVolumeSize, "volume %s: the source is empty", id)
		}
		return backing.RoundSize(n), nil
	}
	size = backing.RoundSize(size)
	if n > size {
		return 0, backing.TooLarge(id, size)
	}
	return size, nil
}

func (s *Store) createFromFile(ctx context.Context, id string, size int64, path string) (backing.Volume, error) {
	in, err := os.Open(path)
	if err != nil {
		return backing.Volume{}, errs.Wrap(errs.NotFound, err, "open the source of volume "+id)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return backing.Volume{}, err
	}
	size, err = fitSize(id, size, fi.Size())
	if err != nil {
		return backing.Volume{}, err
	}
	return s.build(ctx, id, func(tmp *os.File) error {
		switch s.layout {
		case Qcow2:
			if err := s.qemuImg(ctx, "convert", "-q", "-f", "raw", "-O", "qcow2", "-o", "preallocation=metadata", path, tmp.Name()); err != nil {
				return err
			}
			if size == fi.Size() {
				return nil
			}
			return s.qemuImg(ctx, "resize", "-q", "-f", "qcow2", "--preallocation=metadata", tmp.Name(), strconv.FormatInt(size, 10))
		case Reflink:
			if err := unix.IoctlFileClone(int(tmp.Fd()), int(in.Fd())); err == nil {
				return tmp.Truncate(size)
			}
			// Another filesystem (or a file FICLONE refuses): copy it.
		}
		if _, err := sparse.CopyFile(ctx, tmp, in); err != nil {
			return err
		}
		return tmp.Truncate(size)
	})
}

func (s *Store) qemuImg(ctx context.Context, args ...string) error {
	if _, err := s.run.Run(ctx, s.qimg, args...); err != nil {
		return backing.Interrupted(ctx, err, "qemu-img "+args[0])
	}
	return nil
}

// ---- reading ----

// Get implements backing.Store.
func (s *Store) Get(ctx context.Context, id string) (backing.Volume, error) {
	if err := backing.CheckID(id); err != nil {
		return backing.Volume{}, err
	}
	return s.stat(id)
}

func (s *Store) stat(id string) (backing.Volume, error) {
	p := s.path(id)
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return backing.Volume{}, backing.Absent(id)
	}
	if err != nil {
		return backing.Volume{}, err
	}
	v := backing.Volume{ID: id, Size: fi.Size(), Path: p, Format: s.format()}
	if s.layout == Qcow2 {
		if v.Size, err = qcow2Size(p); err != nil {
			return backing.Volume{}, fmt.Errorf("volume %s: %w", id, err)
		}
	}
	return v, nil
}

// qcow2Size reads the virtual size from a qcow2 header (big-endian: magic
// "QFI\xfb" at 0, size at 24).
func qcow2Size(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var h [32]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, fmt.Errorf("read qcow2 header: %w", err)
	}
	if string(h[:4]) != "QFI\xfb" {
		return 0, errors.New("not a qcow2 image")
	}
	return int64(binary.BigEndian.Uint64(h[24:32])), nil
}

// List implements backing.Store.
func (s *Store) List(ctx context.Context) ([]backing.Volume, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	out := []backing.Volume{}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), s.ext)
		if !ok || backing.CheckID(id) != nil || !e.Type().IsRegular() {
			continue
		}
		v, err := s.stat(id)
		if errs.Is(err, errs.NotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b backing.Volume) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Delete implements backing.Store.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := backing.CheckID(id); err != nil {
		return err
	}
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete volume %s: %w", id, err)
	}
	return nil
}

// Snapshot implements backing.Store.
func (s *Store) Snapshot(ctx context.Context, id, dst string) (int64, error) {
	v, err := s.Get(ctx, id)
	if err != nil {
		return 0, err
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, errs.New(errs.Conflict, "snapshot of volume %s: %s exists", id, dst)
	}
	in, err := os.Open(v.Path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, backing.Absent(id)
	}
	if err != nil {
		return 0, err
	}
	defer in.Close()
	tmp, err := partial(filepath.Dir(dst), filepath.Base(dst))
	if err != nil {
		return 0, fmt.Errorf("snapshot of volume %s: %w", id, err)
	}
	name := tmp.Name()
	err = s.copyRaw(ctx, v, in, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = commit(name, dst)
	}
	if err != nil {
		os.Remove(name)
		return 0, backing.Interrupted(ctx, annotate(err, "snapshot of volume "+id), "snapshot of volume "+id)
	}
	return v.Size, nil
}

// copyRaw writes the raw disk bytes of v (open as in) into tmp.
func (s *Store) copyRaw(ctx context.Context, v backing.Volume, in, tmp *os.File) error {
	switch s.layout {
	case Qcow2:
		// -U: tgtd (or a QEMU on this host) may have the image open.
		return s.qemuImg(ctx, "convert", "-q", "-U", "-f", "qcow2", "-O", "raw", v.Path, tmp.Name())
	case Reflink:
		err := unix.IoctlFileClone(int(tmp.Fd()), int(in.Fd()))
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EOPNOTSUPP) && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("FICLONE: %w", err)
		}
		// dst is on another filesystem: copy.
	}
	if _, err := sparse.CopyFile(ctx, tmp, in); err != nil {
		return err
	}
	if err := tmp.Truncate(v.Size); err != nil {
		return err
	}
	return tmp.Sync()
}

// Capacity implements backing.Store: the directory's filesystem.
func (s *Store) Capacity(ctx context.Context) (backing.Capacity, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.dir, &st); err != nil {
		return backing.Capacity{}, fmt.Errorf("statfs %s: %w", s.dir, err)
	}
	return backing.Capacity{Total: int64(st.Blocks) * st.Bsize, Free: int64(st.Bavail) * st.Bsize}, nil
}
