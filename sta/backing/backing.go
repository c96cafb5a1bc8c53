// Package backing holds the sta's backing stores: where volume data lives
// on a storage node (spec/agents.md §6, DESIGN.md "Node agents"). One
// interface, Store, with these implementations:
//
//   - backing/file: raw sparse files, qcow2 images (qemu-img) and reflink
//     copies (raw files on a filesystem that shares blocks between copies,
//     XFS with reflink=1 or btrfs, so snapshots and clones are instant);
//   - backing/lvm: logical volumes driven through the LVM commands;
//   - backing/memory: an in-memory store for tests.
//
// All of them pass the conformance suite in backing/backingtest.
//
// A Store only deals in volume bytes. Exporting them (tgt), downloading and
// uploading backups, and the volume states live elsewhere (sta/target,
// sta/backup, sta/handlers).
package backing

import (
	"context"
	"io"
	"regexp"

	"github.com/vdc-project/vdc/common/errs"
)

// Formats of the bytes a volume's Path holds (what an initiator finds on the
// exported LUN).
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

// SectorSize is the granularity of volume sizes: an iSCSI LUN and a qcow2
// image are whole 512-byte sectors, so sizes are rounded up to it.
const SectorSize = 512

// Volume is a volume in a store.
type Volume struct {
	ID string `json:"id"`
	// Size is the volume's size in bytes as a disk (the virtual size of a
	// qcow2 image), a multiple of SectorSize.
	Size int64 `json:"size"`
	// Path is what a storage target exports: a file or a block device.
	Path string `json:"path"`
	// Format is the format of the bytes at Path (FormatRaw or FormatQcow2).
	Format string `json:"format"`
}

// Source is the content of a volume created from existing data: a local
// file of raw disk bytes (a backup on this node; stores that can share its
// blocks, reflink, clone it instead of copying) or a stream of them.
type Source struct {
	Path   string
	Reader io.Reader
}

// Capacity is the space of the store, in bytes.
type Capacity struct {
	Total int64 `json:"total"`
	Free  int64 `json:"free"`
}

// Store keeps volumes. Implementations are safe for concurrent use; two
// calls on the same volume id may run at once, and exactly one Create of an
// id wins.
//
// Creates are atomic: a volume is either complete or absent, whatever
// fails (the source, the disk, the context), so a create that is retried
// after a crash finds either nothing or the finished volume.
type Store interface {
	// Driver names the implementation ("raw", "qcow2", "reflink", "lvm", "memory").
	Driver() string
	// Create makes a blank volume (reading as zeros) of size bytes, rounded
	// up to SectorSize. Errors: InvalidParameter (bad id), InvalidVolumeSize
	// (size < 1), Conflict (the id exists).
	Create(ctx context.Context, id string, size int64) (Volume, error)
	// CreateFrom makes a volume holding src's raw bytes, padded with zeros
	// to size (rounded up to SectorSize); size 0 means the source's length.
	// A source longer than size is InvalidVolumeSize. Other errors as Create;
	// an error reading the source fails the create.
	CreateFrom(ctx context.Context, id string, size int64, src Source) (Volume, error)
	// Get finds a volume (NotFound if absent).
	Get(ctx context.Context, id string) (Volume, error)
	// List returns every volume, sorted by id.
	List(ctx context.Context) ([]Volume, error)
	// Delete removes a volume; an absent volume is removed already.
	Delete(ctx context.Context, id string) error
	// Snapshot writes a point-in-time copy of the volume's raw disk bytes
	// to the new file dst (sparse where the volume reads zeros; Conflict if
	// dst exists; NotFound if the volume does not) and returns its size.
	// On a reflink store in the same filesystem it takes no time and no
	// space until the volume is written.
	Snapshot(ctx context.Context, id, dst string) (int64, error)
	// Capacity is the space the store has and has left.
	Capacity(ctx context.Context) (Capacity, error)
}

// Sharer is implemented by stores that can make a volume from a local
// file by sharing its blocks instead of copying them (reflink): a
// CreateFrom of a path it Shares takes no time and no space.
type Sharer interface {
	Shares(path string) bool
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

// CheckID checks that id can name a volume in every store: letters, digits,
// '-' and '_' (a volume uuid such as vol-abcd1234), so that it is a safe
// file name and LV name.
func CheckID(id string) error {
	if !idPattern.MatchString(id) {
		return errs.New(errs.InvalidParameter, "volume id %q: want letters, digits, '-' or '_' (at most 128)", id)
	}
	return nil
}

// RoundSize rounds a size up to whole sectors.
func RoundSize(size int64) int64 {
	return (size + SectorSize - 1) / SectorSize * SectorSize
}

// CheckCreate validates the arguments of Create and returns the rounded size.
func CheckCreate(id string, size int64) (int64, error) {
	if err := CheckID(id); err != nil {
		return 0, err
	}
	if size < 1 {
		return 0, errs.New(errs.InvalidVolumeSize, "volume %s: size %d: want at least 1 byte", id, size)
	}
	return RoundSize(size), nil
}

// CheckCreateFrom validates the arguments of CreateFrom.
func CheckCreateFrom(id string, size int64, src Source) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if size < 0 {
		return errs.New(errs.InvalidVolumeSize, "volume %s: size %d: want 0 (the source's) or more", id, size)
	}
	if (src.Path == "") == (src.Reader == nil) {
		return errs.New(errs.InvalidParameter, "volume %s: the source needs a path or a reader (one of them)", id)
	}
	return nil
}

// TooLarge is the error of a source longer than the volume.
func TooLarge(id string, size int64) error {
	return errs.New(errs.InvalidVolumeSize, "volume %s: the source is longer than the volume's %d bytes", id, size)
}

// Exists is the error of a Create whose id is taken.
func Exists(id string) error {
	return errs.New(errs.Conflict, "volume %s exists", id)
}

// Absent is the error of an operation on a volume that is not there.
func Absent(id string) error {
	return errs.New(errs.NotFound, "volume %s does not exist", id)
}

// Interrupted wraps the error of an operation whose context ended, as
// errs.Timeout (the job's deadline passed, it was cancelled or the agent is
// shutting down).
func Interrupted(ctx context.Context, err error, what string) error {
	if ctx.Err() != nil && !errs.Is(err, errs.Timeout) {
		return errs.Wrap(errs.Timeout, err, what)
	}
	return err
}
