package backup

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	"github.com/vdc-project/vdc/common/errs"
)

// Container formats of backup objects (backup_objects.container_format).
// raw and none store the disk bytes as they are; gz compresses them; tar
// and tgz hold them as the one file of a (gzip-compressed) tar archive.
const (
	FormatRaw  = "raw"
	FormatNone = "none"
	FormatGz   = "gz"
	FormatTar  = "tar"
	FormatTgz  = "tgz"
)

// Plain reports whether format stores the disk bytes as they are (so a
// local object can be cloned or copied without decoding).
func Plain(format string) bool { return format == "" || format == FormatRaw || format == FormatNone }

func checkFormat(format string) error {
	switch format {
	case "", FormatRaw, FormatNone, FormatGz, FormatTar, FormatTgz:
		return nil
	}
	return errs.New(errs.InvalidParameter, "container format %q: want raw, none, gz, tar or tgz", format)
}

// Encode returns a writer that stores size bytes of disk content into w in
// format; name is the file name inside tar formats. Close it to flush the
// format's trailer (it does not close w).
func Encode(w io.Writer, format, name string, size int64) (io.WriteCloser, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	switch format {
	case FormatGz:
		return gzip.NewWriterLevel(w, gzip.BestSpeed)
	case FormatTar, FormatTgz:
		var gz *gzip.Writer
		if format == FormatTgz {
			var err error
			if gz, err = gzip.NewWriterLevel(w, gzip.BestSpeed); err != nil {
				return nil, err
			}
			w = gz
		}
		tw := tar.NewWriter(w)
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		return &tarWriter{tw: tw, gz: gz}, nil
	}
	return nopCloser{w}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

type tarWriter struct {
	tw *tar.Writer
	gz *gzip.Writer
}

func (t *tarWriter) Write(p []byte) (int, error) { return t.tw.Write(p) }

func (t *tarWriter) Close() error {
	err := t.tw.Close()
	if t.gz != nil {
		err = errors.Join(err, t.gz.Close())
	}
	return err
}

// Decode returns the disk content of an object read from r in format. The
// returned reader reads r to its very end before it reports io.EOF, so a
// Verify under it checks the whole object, trailer included.
func Decode(r io.Reader, format string) (io.Reader, error) {
	if err := checkFormat(format); err != nil {
		return nil, err
	}
	var content io.Reader = r
	switch format {
	case FormatGz, FormatTgz:
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("%s backup object: %w", format, err)
		}
		content = gz
	}
	if format == FormatTar || format == FormatTgz {
		tr := tar.NewReader(content)
		for {
			h, err := tr.Next()
			if err != nil {
				return nil, fmt.Errorf("%s backup object: no file in the archive: %w", format, err)
			}
			if h.Typeflag == tar.TypeReg {
				break
			}
		}
		content = tr
	}
	return &drain{content: content, raw: r}, nil
}

// drain reads content, then whatever of raw the decoder left unread.
type drain struct {
	content, raw io.Reader
	done         bool
}

func (d *drain) Read(p []byte) (int, error) {
	if !d.done {
		n, err := d.content.Read(p)
		if !errors.Is(err, io.EOF) {
			return n, err
		}
		d.done = true
		if n > 0 {
			return n, nil
		}
	}
	if _, err := io.Copy(io.Discard, d.raw); err != nil {
		return 0, err
	}
	return 0, io.EOF
}
