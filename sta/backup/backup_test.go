package backup_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backup"
	"github.com/vdc-project/vdc/sta/backup/backuptest"
)

func data(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		if i%3 == 0 {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

func md5hex(b []byte) string { s := md5.Sum(b); return hex.EncodeToString(s[:]) }

// TestContainerRoundTrip: every format decodes to what was encoded, and a
// Verify under Decode checks the whole stored object.
func TestContainerRoundTrip(t *testing.T) {
	content := data(300_000)
	for _, f := range []string{"", backup.FormatRaw, backup.FormatNone, backup.FormatGz, backup.FormatTar, backup.FormatTgz} {
		t.Run("format="+f, func(t *testing.T) {
			var stored bytes.Buffer
			w, err := backup.Encode(&stored, f, "vol-a.raw", int64(len(content)))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(content); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if backup.Plain(f) != bytes.Equal(stored.Bytes(), content) {
				t.Errorf("Plain(%q) = %v, but the stored bytes are %s the content", f, backup.Plain(f), map[bool]string{true: "", false: "not"}[bytes.Equal(stored.Bytes(), content)])
			}
			sum := md5hex(stored.Bytes())
			r, err := backup.Decode(backup.Verify(bytes.NewReader(stored.Bytes()), sum), f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content) {
				t.Fatalf("decoded %d bytes, not the content", len(got))
			}
			// One flipped bit in the stored object: the checksum catches it
			// even where the format would not (raw), or it breaks the format.
			bad := bytes.Clone(stored.Bytes())
			bad[len(bad)/2] ^= 1
			r, err = backup.Decode(backup.Verify(bytes.NewReader(bad), sum), f)
			if err == nil {
				_, err = io.ReadAll(r)
			}
			if err == nil {
				t.Error("a corrupt object decoded without error")
			}
		})
	}
	if _, err := backup.Encode(io.Discard, "zip", "x", 0); !errs.Is(err, errs.InvalidParameter) {
		t.Errorf("Encode(zip) = %v", err)
	}
	if _, err := backup.Decode(bytes.NewReader(nil), "zip"); !errs.Is(err, errs.InvalidParameter) {
		t.Errorf("Decode(zip) = %v", err)
	}
}

// TestVerifyEmptyChecksum: no checksum, nothing to verify.
func TestVerifyEmptyChecksum(t *testing.T) {
	if _, err := io.ReadAll(backup.Verify(bytes.NewReader([]byte("abc")), "")); err != nil {
		t.Error(err)
	}
	_, err := io.ReadAll(backup.Verify(bytes.NewReader([]byte("abc")), md5hex([]byte("abd"))))
	if !errs.Is(err, errs.InvalidBackupObjectState) {
		t.Errorf("mismatch = %v", err)
	}
}

func clientRoundTrip(t *testing.T, c *backup.Client, uri string) {
	ctx := context.Background()
	if _, _, err := c.Open(ctx, uri); !errs.Is(err, errs.NotFound) {
		t.Fatalf("Open of an absent object = %v, want NotFound", err)
	}
	content := data(200_000)
	if err := c.Put(ctx, uri, bytes.NewReader(content), -1); err != nil {
		t.Fatal(err)
	}
	rc, _, err := c.Open(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read back %d bytes (%v)", len(got), err)
	}
	// A failed upload leaves the previous object as it was.
	boom := errors.New("source broke")
	if err := c.Put(ctx, uri, io.MultiReader(bytes.NewReader([]byte("partial")), errReader{boom}), -1); err == nil {
		t.Fatal("Put of a failing source succeeded")
	}
	rc, _, err = c.Open(ctx, uri)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, content) {
		t.Error("a failed Put changed the object")
	}
	for i := range 2 {
		if err := c.Delete(ctx, uri); err != nil {
			t.Fatalf("Delete #%d = %v", i+1, err)
		}
	}
	if _, _, err := c.Open(ctx, uri); !errs.Is(err, errs.NotFound) {
		t.Errorf("Open after Delete = %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestLocalObjects(t *testing.T) {
	dir := t.TempDir()
	clientRoundTrip(t, &backup.Client{}, "file://"+filepath.Join(dir, "sub", "bo-1"))
	left, _ := filepath.Glob(filepath.Join(dir, "sub", ".*"))
	if len(left) != 0 {
		t.Errorf("partial files left: %q", left)
	}
}

func TestHTTPObjects(t *testing.T) {
	srv := backuptest.Start(t)
	clientRoundTrip(t, &backup.Client{}, srv.URL+"bo-1")
	srv.FailPuts(http.StatusInsufficientStorage)
	err := (&backup.Client{}).Put(context.Background(), srv.URL+"bo-2", bytes.NewReader([]byte("x")), 1)
	if !errs.Is(err, errs.Unavailable) {
		t.Errorf("Put answered 507 = %v, want Unavailable", err)
	}
}

func TestBadURIs(t *testing.T) {
	c := &backup.Client{}
	for _, uri := range []string{"ftp://x/y", "s3://bucket/key", "::"} {
		if _, _, err := c.Open(context.Background(), uri); err == nil {
			t.Errorf("Open(%q) succeeded", uri)
		}
	}
}

func TestLocate(t *testing.T) {
	bs := &proto.BackupStorage{ID: "bkst-web", StorageType: backup.StorageWebDAV, BaseURI: "http://h/b/"}
	for _, c := range []struct {
		name string
		bo   proto.BackupObjectView
		want string
		err  errs.Kind
	}{
		{"uri from the manager", proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1", ObjectKey: "k1", BackupStorageID: "bkst-web"}, BackupStorage: bs, URI: "http://h/b/k1"}, "http://h/b/k1", 0},
		{"base uri + key", proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1", ObjectKey: "k1", BackupStorageID: "bkst-web"}, BackupStorage: bs}, "http://h/b/k1", 0},
		{"local storage of the node", proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1", ObjectKey: "k1", BackupStorageID: "bkst-local"}, URI: "/elsewhere/k1"}, "file:///srv/bk/k1", 0},
		{"no storage: the node's local one", proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1"}}, "file:///srv/bk/bo-1", 0},
		{"plain directory base", proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1", ObjectKey: "k1", BackupStorageID: "bkst-dir"}, BackupStorage: &proto.BackupStorage{BaseURI: "/data/"}}, "file:///data/k1", 0},
		{"key escaping", proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1", ObjectKey: "../etc/passwd", BackupStorageID: "bkst-local"}}, "", errs.InvalidParameter},
	} {
		got, err := backup.Locate(&c.bo, "bkst-local", "/srv/bk")
		if c.err != 0 {
			if !errs.Is(err, c.err) {
				t.Errorf("%s: Locate = %q, %v; want %s", c.name, got, err, c.err.Name())
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: Locate = %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	_, err := backup.Locate(&proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-1", BackupStorageID: "bkst-x"}}, "", "")
	if !errs.Is(err, errs.InvalidBackupStorage) {
		t.Errorf("Locate without any storage = %v", err)
	}
}

func TestFileSum(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	content := data(12345)
	if err := os.WriteFile(p, content, 0o600); err != nil {
		t.Fatal(err)
	}
	sum, n, err := backup.FileSum(context.Background(), p)
	if err != nil || sum != md5hex(content) || n != int64(len(content)) {
		t.Errorf("FileSum = %s, %d, %v", sum, n, err)
	}
}
