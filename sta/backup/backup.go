// Package backup moves volume bytes to and from backup storages
// (spec/agents.md §6 "Backup objects", api §2.12–2.13): where a backup
// object lives (Locate), reading, writing and deleting it on a local
// directory or an HTTP(S)/WebDAV server (Client), its container format
// (Encode, Decode), and the md5 checksum backups are verified with
// (Verify).
package backup

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
)

// Storage types (backup_storages.storage_type) the sta reads and writes.
const (
	StorageLocal  = "local"
	StorageWebDAV = "webdav"
)

// Locate returns the URI of a backup object: a file under localPath when
// the object is on the node's local backup storage (sta.conf
// local_backup_storage_id), else the URI the manager gave (base_uri +
// object_key). A local storage's base_uri may be a plain directory.
func Locate(bo *proto.BackupObjectView, localStorageID, localPath string) (string, error) {
	key := bo.ObjectKey
	if key == "" {
		key = bo.ID
	}
	if key == "" || strings.Contains(key, "..") {
		return "", errs.New(errs.InvalidParameter, "backup object %s: object key %q", bo.ID, key)
	}
	if localPath != "" && (localStorageID != "" && bo.BackupStorageID == localStorageID || bo.BackupStorageID == "") {
		return "file://" + filepath.Join(localPath, key), nil
	}
	uri := bo.URI
	if uri == "" && bo.BackupStorage != nil {
		uri = bo.BackupStorage.BaseURI + key
	}
	if uri == "" {
		return "", errs.New(errs.InvalidBackupStorage, "backup object %s has no backup storage this node can reach "+
			"(no uri, and no local_backup_path for storage %q)", bo.ID, bo.BackupStorageID)
	}
	if strings.HasPrefix(uri, "/") {
		uri = "file://" + uri
	}
	return uri, nil
}

// LocalPath is the file of a file:// URI.
func LocalPath(uri string) (string, bool) {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" || u.Path == "" {
		return "", false
	}
	return u.Path, true
}

// Client reads and writes backup objects. HTTP servers are used the WebDAV
// way: GET, PUT (the collection must exist) and DELETE.
type Client struct {
	HTTP *http.Client // nil: http.DefaultClient
}

func (c *Client) http() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func scheme(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", errs.Wrap(errs.InvalidParameter, err, "backup object uri")
	}
	switch u.Scheme {
	case "file", "http", "https":
		return u.Scheme, nil
	}
	return "", errs.New(errs.InvalidBackupStorage, "backup object uri %q: want file://, http:// or https://", uri)
}

// Open reads an object (NotFound if it is not there). The size is -1 when
// the server does not say.
func (c *Client) Open(ctx context.Context, uri string) (io.ReadCloser, int64, error) {
	sch, err := scheme(uri)
	if err != nil {
		return nil, 0, err
	}
	if sch == "file" {
		p, _ := LocalPath(uri)
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, errs.Wrap(errs.NotFound, err, "backup object "+uri)
		}
		if err != nil {
			return nil, 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		return f, fi.Size(), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, 0, errs.Wrap(errs.InvalidParameter, err, "backup object uri")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return nil, 0, errs.Wrap(errs.Unavailable, err, "GET "+uri)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, 0, statusError("GET", uri, resp.StatusCode)
	}
	return resp.Body, resp.ContentLength, nil
}

func statusError(method, uri string, code int) error {
	k := errs.Internal
	switch {
	case code == http.StatusNotFound:
		k = errs.NotFound
	case code >= 500:
		k = errs.Unavailable
	}
	return errs.New(k, "%s %s: %d %s", method, uri, code, http.StatusText(code))
}

// Put writes an object from r (size bytes, -1 if not known). A local
// object appears complete or not at all (written under a partial name,
// then renamed); an HTTP object is one PUT.
func (c *Client) Put(ctx context.Context, uri string, r io.Reader, size int64) error {
	sch, err := scheme(uri)
	if err != nil {
		return err
	}
	if sch == "file" {
		p, _ := LocalPath(uri)
		return putFile(ctx, p, r)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, uri, r)
	if err != nil {
		return errs.Wrap(errs.InvalidParameter, err, "backup object uri")
	}
	req.ContentLength = size // -1: chunked
	if size == 0 {
		req.Body = http.NoBody
	}
	resp, err := c.http().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return errs.Wrap(errs.Timeout, err, "PUT "+uri)
		}
		return errs.Wrap(errs.Unavailable, err, "PUT "+uri)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated, http.StatusNoContent:
		return nil
	}
	return statusError("PUT", uri, resp.StatusCode)
}

func putFile(ctx context.Context, path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("backup object %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.partial")
	if err != nil {
		return fmt.Errorf("backup object %s: %w", path, err)
	}
	name := tmp.Name()
	_, err = io.Copy(tmp, ctxReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		if ctx.Err() != nil {
			return errs.Wrap(errs.Timeout, err, "write backup object "+path)
		}
		return fmt.Errorf("write backup object %s: %w", path, err)
	}
	return nil
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

// Delete removes an object; an absent one is removed already.
func (c *Client) Delete(ctx context.Context, uri string) error {
	sch, err := scheme(uri)
	if err != nil {
		return err
	}
	if sch == "file" {
		p, _ := LocalPath(uri)
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete backup object %s: %w", p, err)
		}
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, uri, nil)
	if err != nil {
		return errs.Wrap(errs.InvalidParameter, err, "backup object uri")
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "DELETE "+uri)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted, http.StatusNoContent, http.StatusNotFound:
		return nil
	}
	return statusError("DELETE", uri, resp.StatusCode)
}

// Sum counts and hashes (md5, the checksum backup objects carry) what
// passes through it.
type Sum struct {
	h hash.Hash
	n int64
}

// NewSum returns an empty Sum.
func NewSum() *Sum { return &Sum{h: md5.New()} }

// Write implements io.Writer.
func (s *Sum) Write(p []byte) (int, error) {
	s.h.Write(p)
	s.n += int64(len(p))
	return len(p), nil
}

// Hex is the md5 in hex.
func (s *Sum) Hex() string { return hex.EncodeToString(s.h.Sum(nil)) }

// Len is the number of bytes.
func (s *Sum) Len() int64 { return s.n }

// FileSum is the md5 and length of a file.
func FileSum(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	s := NewSum()
	if _, err := io.Copy(s, ctxReader{ctx, f}); err != nil {
		return "", 0, err
	}
	return s.Hex(), s.Len(), nil
}

// Verify returns r, which fails at its end (instead of io.EOF) when what
// was read does not have the md5 want (hex; "" checks nothing). Read it to
// the end: VerifyTail does so when a decoder stops short.
func Verify(r io.Reader, want string) io.Reader {
	return &verifier{r: r, want: strings.ToLower(want), sum: NewSum()}
}

type verifier struct {
	r    io.Reader
	want string
	sum  *Sum
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.sum.Write(p[:n])
	if errors.Is(err, io.EOF) && v.want != "" && v.sum.Hex() != v.want {
		return n, errs.New(errs.InvalidBackupObjectState, "backup object checksum mismatch: md5 %s over %d bytes, want %s",
			v.sum.Hex(), v.sum.Len(), v.want)
	}
	return n, err
}
