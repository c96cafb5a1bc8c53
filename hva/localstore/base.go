package localstore

import (
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
)

// Base returns the cached image of a backup object, fetching it first when
// the cache does not hold it with the object's checksum. The object is
// verified against its md5 before it is cached; concurrent calls for one
// object fetch it once.
func (s *Store) Base(ctx context.Context, bo *proto.BackupObjectView) (string, error) {
	if err := checkID("backup object id", bo.ID); err != nil {
		return "", err
	}
	want := strings.ToLower(strings.TrimSpace(bo.Checksum))
	if len(want) != 2*md5.Size {
		return "", errs.New(errs.InvalidBackupObjectState,
			"backup object %s has checksum %q, want an md5 in hex to verify it by", bo.ID, bo.Checksum)
	}
	path := filepath.Join(s.dataDir, BaseDir, bo.ID)
	unlock, err := s.keys.lock(ctx, bo.ID)
	if err != nil {
		return "", err
	}
	defer unlock()
	if cached(path, want) {
		return path, nil
	}
	s.logger.InfoContext(ctx, "fetching image", "backup_object_id", bo.ID, "uri", bo.URI, "format", bo.ContainerFormat)
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+bo.ID+".*")
	if err != nil {
		return "", fmt.Errorf("cache backup object %s: %w", bo.ID, err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	got, err := s.fetch(ctx, bo, tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("fetch backup object %s from %s: %w", bo.ID, bo.URI, err)
	}
	if got != want {
		return "", errs.New(errs.InvalidBackupObjectState,
			"backup object %s from %s: checksum mismatch: md5 is %s, the backup object says %s; nothing cached",
			bo.ID, bo.URI, got, want)
	}
	// The image first, then its sidecar: a sidecar always vouches for a
	// complete file.
	_ = os.Remove(path + ".md5")
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("cache backup object %s: %w", bo.ID, err)
	}
	if err := writeFileAtomic(path+".md5", []byte(want)); err != nil {
		return "", fmt.Errorf("cache backup object %s: %w", bo.ID, err)
	}
	s.logger.InfoContext(ctx, "image cached", "backup_object_id", bo.ID, "path", path)
	return path, nil
}

// cached reports whether path holds the image whose md5 is want.
func cached(path, want string) bool {
	sum, err := os.ReadFile(path + ".md5")
	if err != nil || strings.TrimSpace(string(sum)) != want {
		return false
	}
	_, err = os.Stat(path)
	return err == nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fetch copies the object into f, unpacked per its container format, and
// returns the md5 of the object as stored.
func (s *Store) fetch(ctx context.Context, bo *proto.BackupObjectView, f *os.File) (string, error) {
	src, err := s.open(ctx, bo.URI)
	if err != nil {
		return "", err
	}
	defer src.Close()
	h := md5.New()
	r := io.TeeReader(src, h)
	switch strings.ToLower(bo.ContainerFormat) {
	case "", "none", "raw":
	case "gz", "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return "", fmt.Errorf("gunzip: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return "", errs.New(errs.InvalidParameter, "container format %q: want none, raw or gz", bo.ContainerFormat)
	}
	w := &sparseWriter{f: f}
	if _, err := io.CopyBuffer(w, ctxReader{ctx, r}, make([]byte, 1<<16)); err != nil {
		return "", err
	}
	// Read what the decompressor left (a gzip trailer) so the md5 covers
	// the whole object.
	if _, err := io.Copy(io.Discard, io.TeeReader(src, h)); err != nil {
		return "", err
	}
	if err := f.Truncate(w.off); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// open opens a backup object URI: file:// or http(s)://.
func (s *Store) open(ctx context.Context, uri string) (io.ReadCloser, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, errs.Wrap(errs.InvalidParameter, err, "backup object uri")
	}
	switch u.Scheme {
	case "file", "":
		return os.Open(u.Path)
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
		if err != nil {
			return nil, err
		}
		resp, err := s.cfg.HTTP.Do(req)
		if err != nil {
			return nil, errs.Wrap(errs.Unavailable, err, "GET "+uri)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, errs.New(errs.Unavailable, "GET %s: %s", uri, resp.Status)
		}
		return resp.Body, nil
	}
	return nil, errs.New(errs.InvalidParameter, "backup object uri %q: want file://, http:// or https://", uri)
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, errs.Wrap(errs.Timeout, err, "fetch")
	}
	return c.r.Read(p)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// sparseWriter skips runs of zeroes (cp --sparse=always): a raw image
// keeps its holes in the cache.
type sparseWriter struct {
	f   *os.File
	off int64
}

// sparseChunk is the granularity of the holes sparseWriter leaves.
const sparseChunk = 1 << 16

func (w *sparseWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		chunk := p[:min(len(p), sparseChunk)]
		if !allZero(chunk) {
			if _, err := w.f.WriteAt(chunk, w.off); err != nil {
				return 0, err
			}
		}
		w.off += int64(len(chunk))
		p = p[len(chunk):]
	}
	return n, nil
}
