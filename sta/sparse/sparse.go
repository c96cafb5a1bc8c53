// Package sparse copies disk images without writing their zeros: blocks
// that read as zeros become holes (or, on a block device that reads zeros
// already, are skipped), so a 10 GiB blank volume costs no space and no
// write bandwidth to copy.
package sparse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"syscall"
)

// BlockSize is the granularity of hole detection: a filesystem cannot have
// a hole smaller than its block.
const BlockSize = 4096

// chunkSize is how much is read at a time.
const chunkSize = 1 << 20

var zeros = make([]byte, chunkSize)

// WriteAt copies r to f from offset off on, skipping blocks of zeros (f
// must read zeros there already: a new or truncated file, a zeroed
// device). It returns the bytes read from r. It does not set f's size:
// trailing zeros leave the file short, so callers Truncate files to the
// size they want.
func WriteAt(ctx context.Context, f *os.File, off int64, r io.Reader) (int64, error) {
	buf := make([]byte, chunkSize)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := io.ReadFull(r, buf)
		if m > 0 {
			if err := writeNonZero(f, off+n, buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		switch {
		case rerr == nil:
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			return n, nil
		default:
			return n, rerr
		}
	}
}

// writeNonZero writes the runs of non-zero blocks of b at off.
func writeNonZero(f *os.File, off int64, b []byte) error {
	start := -1 // start of the current run of data blocks
	for i := 0; i < len(b); i += BlockSize {
		end := min(i+BlockSize, len(b))
		zero := bytes.Equal(b[i:end], zeros[:end-i])
		switch {
		case !zero && start < 0:
			start = i
		case zero && start >= 0:
			if _, err := f.WriteAt(b[start:i], off+int64(start)); err != nil {
				return err
			}
			start = -1
		}
	}
	if start >= 0 {
		if _, err := f.WriteAt(b[start:], off+int64(start)); err != nil {
			return err
		}
	}
	return nil
}

// Whence values of lseek(2) that find data and holes (Linux ≥ 3.1).
const (
	seekData = 3
	seekHole = 4
)

// CopyFile copies the content of src (a file or a block device) to dst from
// offset 0, reading only the data extents of src where the filesystem can
// tell them and skipping zero blocks everywhere. dst must read zeros (see
// WriteAt). It returns src's size.
func CopyFile(ctx context.Context, dst, src *os.File) (int64, error) {
	size, err := src.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		data, err := src.Seek(off, seekData)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) {
				break // only a hole is left
			}
			if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EOPNOTSUPP) {
				data = off // no hole information (block device): read it all
			} else {
				return 0, err
			}
		}
		hole, err := src.Seek(data, seekHole)
		if err != nil {
			hole = size
		}
		if _, err := WriteAt(ctx, dst, data, io.NewSectionReader(src, data, hole-data)); err != nil {
			return 0, err
		}
		off = hole
	}
	return size, nil
}
