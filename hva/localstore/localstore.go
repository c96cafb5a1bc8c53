// Package localstore keeps an instance's files on its hva (spec/agents.md
// §5 "Image deployment", "Metadata drive"): the boot volume deployed from
// its image's backup object into a per-host cache and booted through a
// qcow2 overlay, blank local volumes as qcow2 files, and the metadata drive
// the guest configures itself from. Everything of an instance lives in
// <data_dir>/<instance id>/; cached images in <data_dir>/_base/. It
// implements handlers.LocalStore.
package localstore

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

// Names inside the data directory.
const (
	// BaseDir holds the cached images, <bo id> with a <bo id>.md5 sidecar.
	BaseDir = "_base"
	// MetadataImage is the metadata drive in an instance's directory.
	MetadataImage = "metadata.img"
	// MetadataVolumeID is the serial the guest sees on the metadata drive.
	MetadataVolumeID = "metadata"
)

// Config configures the store.
type Config struct {
	// DataDir is hva.conf vm_data_dir.
	DataDir string
	// QemuImg, MkfsVfat, Mcopy and Mdir are the tools run (default: found
	// in PATH).
	QemuImg  string
	MkfsVfat string
	Mcopy    string
	Mdir     string
	// HTTP fetches http(s) backup objects (default: a plain client).
	HTTP   *http.Client
	Logger *slog.Logger
}

// Store is the local store of one hva. It is safe for concurrent use.
type Store struct {
	cfg     Config
	dataDir string
	logger  *slog.Logger
	keys    keyLocks
}

// New checks cfg and makes the data directory.
func New(cfg Config) (*Store, error) {
	if cfg.DataDir == "" {
		return nil, errs.New(errs.InvalidParameter, "local store: data_dir is empty")
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, BaseDir), 0o750); err != nil {
		return nil, fmt.Errorf("local store: create %s: %w", dir, err)
	}
	cfg.QemuImg = cmp.Or(cfg.QemuImg, "qemu-img")
	cfg.MkfsVfat = cmp.Or(cfg.MkfsVfat, "mkfs.vfat")
	cfg.Mcopy = cmp.Or(cfg.Mcopy, "mcopy")
	cfg.Mdir = cmp.Or(cfg.Mdir, "mdir")
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Store{cfg: cfg, dataDir: dir, logger: logger.With("component", "localstore"),
		keys: keyLocks{m: map[string]*keyLock{}}}, nil
}

// InstanceDir is where an instance's files live.
func (s *Store) InstanceDir(id string) string { return filepath.Join(s.dataDir, id) }

// checkID refuses ids that would name something outside the data directory.
func checkID(what, id string) error {
	if id == "" || id == "." || id == ".." || id == BaseDir || strings.ContainsAny(id, `/\`) {
		return errs.New(errs.InvalidParameter, "local store: %s %q cannot name a file", what, id)
	}
	return nil
}

// Prepare implements handlers.LocalStore: each local volume of spec gets
// its file (made once; a poweron finds them), and the metadata drive is
// written anew and attached after the boot disk.
func (s *Store) Prepare(ctx context.Context, v *proto.InstanceView, spec *hypervisor.Spec, firstBoot bool) error {
	if err := checkID("instance id", v.ID); err != nil {
		return err
	}
	dir := s.InstanceDir(v.ID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	vols := make(map[string]*proto.VolumeView, len(v.Volumes))
	for i := range v.Volumes {
		vols[v.Volumes[i].ID] = &v.Volumes[i]
	}
	bootAt := -1
	for i := range spec.Disks {
		d := &spec.Disks[i]
		if d.Boot && bootAt < 0 {
			bootAt = i
		}
		vol := vols[d.VolumeID]
		if vol == nil || vol.StoreType == proto.VolumeShared {
			continue // an iSCSI volume: the spec has its target
		}
		path, err := s.volume(ctx, v, vol, d.Boot, dir)
		if err != nil {
			return err
		}
		d.Path, d.Format, d.IQN, d.LUN, d.StorageIP = path, hypervisor.FormatQcow2, "", 0, ""
	}
	meta := filepath.Join(dir, MetadataImage)
	if err := s.writeMetadataDrive(ctx, meta, Items(v, firstBoot)); err != nil {
		return fmt.Errorf("write the metadata drive of %s: %w", v.ID, err)
	}
	md := hypervisor.Disk{VolumeID: MetadataVolumeID, Path: meta, Format: hypervisor.FormatRaw, ReadOnly: true}
	spec.Disks = append(spec.Disks[:bootAt+1], append([]hypervisor.Disk{md}, spec.Disks[bootAt+1:]...)...)
	return nil
}

// volume makes the file of a local volume unless it exists: an overlay on
// the cached image for one deployed from a backup object, else a blank
// qcow2 file of the volume's size.
func (s *Store) volume(ctx context.Context, v *proto.InstanceView, vol *proto.VolumeView, boot bool, dir string) (string, error) {
	if err := checkID("volume id", vol.ID); err != nil {
		return "", err
	}
	path := filepath.Join(dir, vol.ID+".qcow2")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	bo := vol.BackupObject
	format := hypervisor.FormatRaw
	if boot && v.Image != nil {
		if bo == nil {
			bo = v.Image.BackupObject
		}
		if f := v.Image.FileFormat; f != "" {
			format = f
		}
	}
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	switch {
	case bo != nil:
		if format != hypervisor.FormatRaw && format != hypervisor.FormatQcow2 {
			return "", errs.New(errs.InvalidParameter, "image of %s: file format %q, want raw or qcow2", v.ID, format)
		}
		base, err := s.Base(ctx, bo)
		if err != nil {
			return "", fmt.Errorf("deploy volume %s: %w", vol.ID, err)
		}
		if err := s.run(ctx, s.cfg.QemuImg, "create", "-q", "-f", "qcow2", "-F", format, "-b", base, tmp); err != nil {
			return "", fmt.Errorf("create the overlay of volume %s: %w", vol.ID, err)
		}
	case boot:
		return "", errs.New(errs.UndefinedBackupObject, "boot volume %s of %s has no backup object to deploy", vol.ID, v.ID)
	default:
		if vol.Size <= 0 {
			return "", errs.New(errs.InvalidVolumeSize, "blank volume %s has size %d", vol.ID, vol.Size)
		}
		if err := s.run(ctx, s.cfg.QemuImg, "create", "-q", "-f", "qcow2", tmp, strconv.FormatInt(vol.Size, 10)); err != nil {
			return "", fmt.Errorf("create blank volume %s: %w", vol.ID, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("volume %s: %w", vol.ID, err)
	}
	s.logger.InfoContext(ctx, "volume created", "instance_id", v.ID, "volume_id", vol.ID, "path", path)
	return path, nil
}

// Remove implements handlers.LocalStore: the instance's directory goes.
func (s *Store) Remove(ctx context.Context, instanceID string) error {
	if err := checkID("instance id", instanceID); err != nil {
		return err
	}
	if err := hypervisor.CtxErr(ctx, "remove the files of "+instanceID); err != nil {
		return err
	}
	if err := os.RemoveAll(s.InstanceDir(instanceID)); err != nil {
		return fmt.Errorf("remove the files of %s: %w", instanceID, err)
	}
	return nil
}

// run runs a tool, with its output in the error.
func (s *Store) run(ctx context.Context, name string, args ...string) error {
	_, err := s.output(ctx, name, args...)
	return err
}

// output runs a tool and returns its standard output.
func (s *Store) output(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "LC_ALL=C")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if ctx.Err() != nil {
			return "", errs.Wrap(errs.Timeout, ctx.Err(), name)
		}
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// keyLocks serialises work on one key (a cached image) with waits that end
// with their context.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	e := l.m[key]
	if e == nil {
		e = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, errs.Wrap(errs.Timeout, ctx.Err(), "wait for another download of "+key)
	}
}
