// Package lvm keeps volumes as LVM logical volumes of one volume group,
// driven through the LVM commands (lvcreate, lvrename, lvremove, lvs, vgs)
// and blkdiscard. Thick LVs are zeroed when created (blkdiscard -z) so a new
// volume never shows a deleted one's data; with a thin pool configured,
// volumes are thin LVs (reading zeros until written) and snapshots are thin
// snapshots.
//
// The kernels of the development machines have no device-mapper (no
// CONFIG_BLK_DEV_DM, no modules: lvcreate fails with "striped: Required
// device-mapper target(s) not detected in your kernel"), so this store is
// tested only against a fake of those commands (lvm/lvmfake), which keeps
// the logical volumes as files; notes/real-components.md §4.
//
// LVM allocates whole extents (4 MiB by default): an LV may be larger than
// the volume. The volume's size is kept in an LV tag (vdc_size_<bytes>);
// snapshots have that size, the exported LUN is the whole LV.
package lvm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/command"
	"github.com/vdc-project/vdc/sta/sparse"
)

// Config configures an LVM store.
type Config struct {
	// VolumeGroup holds the volumes (required).
	VolumeGroup string
	// ThinPool, if set, is a thin pool LV of the group in which volumes are
	// thin LVs.
	ThinPool string
	// DevDir is where the LV device nodes are (/dev: /dev/<vg>/<lv>).
	DevDir string
	// TmpDir spools a stream of unknown length before the LV is made
	// (default os.TempDir()).
	TmpDir string
	// Runner runs the LVM commands (default: command.Exec with
	// LVM_SUPPRESS_FD_WARNINGS=1, which stops the "File descriptor leaked"
	// noise of non-interactive runs).
	Runner command.Runner
}

// Store is an LVM store.
type Store struct {
	cfg Config
	run command.Runner
}

// Hidden LV name parts: an LV being made, a snapshot being read.
const (
	partPart = ".part-"
	snapPart = ".snap-"
	sizeTag  = "vdc_size_"
)

// LVM messages the store recognises (lvm2 2.03).
const (
	msgNotFound = "Failed to find logical volume"
	msgExists   = "already exists in volume group"
)

// New opens the store: the volume group must exist; LVs a crash left half
// made are removed.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.VolumeGroup == "" {
		return nil, errors.New("lvm store: volume_group is required")
	}
	if cfg.DevDir == "" {
		cfg.DevDir = "/dev"
	}
	if cfg.TmpDir == "" {
		cfg.TmpDir = os.TempDir()
	}
	s := &Store{cfg: cfg, run: cfg.Runner}
	if s.run == nil {
		s.run = command.Exec{Env: []string{"LVM_SUPPRESS_FD_WARNINGS=1"}}
	}
	if _, err := s.Capacity(ctx); err != nil {
		return nil, fmt.Errorf("lvm store: %w", err)
	}
	left, err := s.Leftovers(ctx)
	if err != nil {
		return nil, fmt.Errorf("lvm store: %w", err)
	}
	for _, name := range left {
		if err := s.remove(ctx, name); err != nil {
			return nil, fmt.Errorf("lvm store: remove a leftover LV: %w", err)
		}
	}
	return s, nil
}

// Driver implements backing.Store.
func (s *Store) Driver() string { return "lvm" }

func (s *Store) lvm(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := s.run.Run(ctx, name, args...)
	if err != nil {
		return out, backing.Interrupted(ctx, err, name)
	}
	return out, nil
}

func (s *Store) ref(lv string) string { return s.cfg.VolumeGroup + "/" + lv }

func (s *Store) dev(lv string) string { return filepath.Join(s.cfg.DevDir, s.cfg.VolumeGroup, lv) }

// lv is one line of lvs.
type lv struct {
	name string
	size int64 // the LV's size
	tags []string
}

// volSize is the volume's size: from its tag, else the LV's.
func (l lv) volSize() int64 {
	for _, t := range l.tags {
		if n, ok := strings.CutPrefix(t, sizeTag); ok {
			if v, err := strconv.ParseInt(n, 10, 64); err == nil {
				return v
			}
		}
	}
	return l.size
}

// lvs lists the LVs of the group (what == "") or one LV (NotFound if absent).
func (s *Store) lvs(ctx context.Context, what string) ([]lv, error) {
	target := s.cfg.VolumeGroup
	if what != "" {
		target = s.ref(what)
	}
	out, err := s.lvm(ctx, "lvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
		"-o", "lv_name,lv_size,lv_tags", target)
	if command.StderrContains(err, msgNotFound) {
		return nil, backing.Absent(what)
	}
	if err != nil {
		return nil, err
	}
	var list []lv
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 3 {
			return nil, fmt.Errorf("lvs: unexpected line %q", line)
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("lvs: size of %s: %w", f[0], err)
		}
		l := lv{name: f[0], size: size}
		if f[2] != "" {
			l.tags = strings.Split(f[2], ",")
		}
		list = append(list, l)
	}
	return list, nil
}

func (s *Store) volume(l lv) backing.Volume {
	return backing.Volume{ID: l.name, Size: l.volSize(), Path: s.dev(l.name), Format: backing.FormatRaw}
}

// Leftovers lists the LVs a create or snapshot in progress (or cut by a
// crash) holds.
func (s *Store) Leftovers(ctx context.Context) ([]string, error) {
	list, err := s.lvs(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range list {
		if strings.Contains(l.name, partPart) || strings.Contains(l.name, snapPart) {
			out = append(out, l.name)
		}
	}
	return out, nil
}

func randomSuffix() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Get implements backing.Store.
func (s *Store) Get(ctx context.Context, id string) (backing.Volume, error) {
	if err := backing.CheckID(id); err != nil {
		return backing.Volume{}, err
	}
	list, err := s.lvs(ctx, id)
	if err != nil {
		return backing.Volume{}, err
	}
	if len(list) != 1 {
		return backing.Volume{}, backing.Absent(id)
	}
	return s.volume(list[0]), nil
}

// List implements backing.Store: the LVs named like volumes (not the
// thin pool, partial LVs or snapshots).
func (s *Store) List(ctx context.Context) ([]backing.Volume, error) {
	list, err := s.lvs(ctx, "")
	if err != nil {
		return nil, err
	}
	out := []backing.Volume{}
	for _, l := range list {
		if l.name == s.cfg.ThinPool || backing.CheckID(l.name) != nil {
			continue
		}
		out = append(out, s.volume(l))
	}
	slices.SortFunc(out, func(a, b backing.Volume) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Create implements backing.Store.
func (s *Store) Create(ctx context.Context, id string, size int64) (backing.Volume, error) {
	size, err := backing.CheckCreate(id, size)
	if err != nil {
		return backing.Volume{}, err
	}
	return s.build(ctx, id, size, nil)
}

// build makes an LV of size under a partial name, zeroed, lets fill write
// it, then renames it to id; on any error the partial LV is removed.
func (s *Store) build(ctx context.Context, id string, size int64, fill func(dev *os.File) error) (backing.Volume, error) {
	if _, err := s.Get(ctx, id); err == nil {
		return backing.Volume{}, backing.Exists(id)
	} else if !errs.Is(err, errs.NotFound) {
		return backing.Volume{}, err
	}
	tmp := id + partPart + randomSuffix()
	args := []string{"-q", "-y", "--addtag", sizeTag + strconv.FormatInt(size, 10), "-n", tmp}
	if s.cfg.ThinPool != "" {
		// Thin LVs read zeros until written.
		args = append(args, "-V", strconv.FormatInt(size, 10)+"b", "-T", s.ref(s.cfg.ThinPool))
	} else {
		args = append(args, "-W", "y", "-Z", "y", "-L", strconv.FormatInt(size, 10)+"b", s.cfg.VolumeGroup)
	}
	if _, err := s.lvm(ctx, "lvcreate", args...); err != nil {
		return backing.Volume{}, annotate(err, "create volume "+id)
	}
	err := s.fill(ctx, tmp, fill)
	if err == nil {
		_, err = s.lvm(ctx, "lvrename", s.cfg.VolumeGroup, tmp, id)
		if command.StderrContains(err, msgExists) {
			err = backing.Exists(id)
		}
	}
	if err != nil {
		// The context may be over: the cleanup gets its own.
		if rerr := s.remove(context.WithoutCancel(ctx), tmp); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if errs.Is(err, errs.Conflict) {
			return backing.Volume{}, backing.Exists(id)
		}
		return backing.Volume{}, backing.Interrupted(ctx, annotate(err, "create volume "+id), "create volume "+id)
	}
	return s.Get(ctx, id)
}

// fill zeroes a thick LV, then runs fill on its device.
func (s *Store) fill(ctx context.Context, lvName string, fill func(dev *os.File) error) error {
	if s.cfg.ThinPool == "" {
		// A thick LV holds whatever its extents held: a deleted volume's data.
		if _, err := s.lvm(ctx, "blkdiscard", "-z", s.dev(lvName)); err != nil {
			return err
		}
	}
	if fill == nil {
		return nil
	}
	dev, err := os.OpenFile(s.dev(lvName), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = fill(dev)
	if err == nil {
		err = dev.Sync()
	}
	if cerr := dev.Close(); err == nil {
		err = cerr
	}
	return err
}

func annotate(err error, what string) error {
	return &errs.Error{Kind: errs.KindOf(err), Msg: what, Err: err}
}

// CreateFrom implements backing.Store.
func (s *Store) CreateFrom(ctx context.Context, id string, size int64, src backing.Source) (backing.Volume, error) {
	if err := backing.CheckCreateFrom(id, size, src); err != nil {
		return backing.Volume{}, err
	}
	if src.Path == "" && size == 0 {
		// The LV is made before the data is written: learn the length first.
		spool, err := os.CreateTemp(s.cfg.TmpDir, ".lvm-"+id+"-*")
		if err != nil {
			return backing.Volume{}, err
		}
		defer os.Remove(spool.Name())
		defer spool.Close()
		n, err := sparse.WriteAt(ctx, spool, 0, src.Reader)
		if err == nil {
			err = spool.Truncate(n)
		}
		if err != nil {
			return backing.Volume{}, backing.Interrupted(ctx, fmt.Errorf("read the source of volume %s: %w", id, err), "create volume "+id)
		}
		src = backing.Source{Path: spool.Name()}
	}
	if src.Path != "" {
		in, err := os.Open(src.Path)
		if err != nil {
			return backing.Volume{}, errs.Wrap(errs.NotFound, err, "open the source of volume "+id)
		}
		defer in.Close()
		fi, err := in.Stat()
		if err != nil {
			return backing.Volume{}, err
		}
		if size, err = fitSize(id, size, fi.Size()); err != nil {
			return backing.Volume{}, err
		}
		return s.build(ctx, id, size, func(dev *os.File) error {
			_, err := sparse.CopyFile(ctx, dev, in)
			return err
		})
	}
	size = backing.RoundSize(size)
	return s.build(ctx, id, size, func(dev *os.File) error {
		n, err := sparse.WriteAt(ctx, dev, 0, io.LimitReader(src.Reader, size+1))
		if err != nil {
			return fmt.Errorf("read the source of volume %s: %w", id, err)
		}
		if n > size {
			return backing.TooLarge(id, size)
		}
		return nil
	})
}

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

// remove removes an LV; an absent one is removed already.
func (s *Store) remove(ctx context.Context, name string) error {
	_, err := s.lvm(ctx, "lvremove", "-q", "-y", s.ref(name))
	if command.StderrContains(err, msgNotFound) {
		return nil
	}
	return err
}

// Delete implements backing.Store.
func (s *Store) Delete(ctx context.Context, id string) error {
	if err := backing.CheckID(id); err != nil {
		return err
	}
	if err := s.remove(ctx, id); err != nil {
		return annotate(err, "delete volume "+id)
	}
	return nil
}

// Snapshot implements backing.Store: an LVM snapshot (thin, or thick with
// room for the whole volume to change while it is read) is copied to dst
// and removed.
func (s *Store) Snapshot(ctx context.Context, id, dst string) (int64, error) {
	list, err := func() ([]lv, error) {
		if err := backing.CheckID(id); err != nil {
			return nil, err
		}
		return s.lvs(ctx, id)
	}()
	if err != nil {
		return 0, err
	}
	if len(list) != 1 {
		return 0, backing.Absent(id)
	}
	if _, err := os.Lstat(dst); err == nil {
		return 0, errs.New(errs.Conflict, "snapshot of volume %s: %s exists", id, dst)
	}
	snap := id + snapPart + randomSuffix()
	args := []string{"-q", "-y", "-s", "-n", snap}
	if s.cfg.ThinPool != "" {
		// -K: thin snapshots skip activation unless told.
		args = append(args, "-K")
	} else {
		args = append(args, "-L", strconv.FormatInt(list[0].size, 10)+"b")
	}
	if _, err := s.lvm(ctx, "lvcreate", append(args, s.ref(id))...); err != nil {
		return 0, annotate(err, "snapshot of volume "+id)
	}
	size := list[0].volSize()
	err = copyDevice(ctx, s.dev(snap), dst, size)
	// A snapshot LV left behind keeps taking copy-on-write space: a failure
	// to remove it fails the snapshot (New removes it at the next start).
	if rerr := s.remove(context.WithoutCancel(ctx), snap); rerr != nil {
		if err == nil {
			os.Remove(dst)
		}
		err = errors.Join(err, annotate(rerr, "remove snapshot LV "+snap))
	}
	if err != nil {
		return 0, backing.Interrupted(ctx, annotate(err, "snapshot of volume "+id), "snapshot of volume "+id)
	}
	return size, nil
}

// copyDevice copies the first size bytes of a device to the new file dst.
func copyDevice(ctx context.Context, dev, dst string, size int64) error {
	in, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.partial")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = sparse.WriteAt(ctx, tmp, 0, io.LimitReader(in, size))
	if err == nil {
		err = tmp.Truncate(size)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(name, dst)
		if errors.Is(err, os.ErrExist) {
			err = errs.Wrap(errs.Conflict, err, dst+" exists")
		}
	}
	os.Remove(name)
	return err
}

// Capacity implements backing.Store: the thin pool's data space, else the
// volume group's.
func (s *Store) Capacity(ctx context.Context) (backing.Capacity, error) {
	if s.cfg.ThinPool != "" {
		out, err := s.lvm(ctx, "lvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
			"-o", "lv_size,data_percent", s.ref(s.cfg.ThinPool))
		if err != nil {
			return backing.Capacity{}, err
		}
		f := strings.Split(strings.TrimSpace(string(out)), "|")
		if len(f) != 2 {
			return backing.Capacity{}, fmt.Errorf("lvs %s: unexpected output %q", s.cfg.ThinPool, out)
		}
		total, err1 := strconv.ParseInt(f[0], 10, 64)
		pct, err2 := strconv.ParseFloat(f[1], 64)
		if err := errors.Join(err1, err2); err != nil {
			return backing.Capacity{}, fmt.Errorf("lvs %s: %w", s.cfg.ThinPool, err)
		}
		return backing.Capacity{Total: total, Free: total - int64(float64(total)*pct/100)}, nil
	}
	out, err := s.lvm(ctx, "vgs", "--noheadings", "--nosuffix", "--units", "b", "--separator", "|",
		"-o", "vg_size,vg_free", s.cfg.VolumeGroup)
	if err != nil {
		return backing.Capacity{}, err
	}
	f := strings.Split(strings.TrimSpace(string(out)), "|")
	if len(f) != 2 {
		return backing.Capacity{}, fmt.Errorf("vgs %s: unexpected output %q", s.cfg.VolumeGroup, out)
	}
	total, err1 := strconv.ParseInt(f[0], 10, 64)
	free, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return backing.Capacity{}, fmt.Errorf("vgs %s: %w", s.cfg.VolumeGroup, err)
	}
	return backing.Capacity{Total: total, Free: free}, nil
}
