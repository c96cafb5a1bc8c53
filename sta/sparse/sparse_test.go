package sparse_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vdc-project/vdc/sta/sparse"
)

func allocated(t *testing.T, path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestHolesKept: zero blocks are not written, by WriteAt nor CopyFile, and
// the bytes read back are the source's.
func TestHolesKept(t *testing.T) {
	const size = 8 << 20
	data := make([]byte, size)
	for _, off := range []int{0, 3 << 20, size - 100} { // three small islands of data
		copy(data[off:], bytes.Repeat([]byte{0x42}, 100))
	}
	dir := t.TempDir()
	a, err := os.Create(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := sparse.WriteAt(context.Background(), a, 0, bytes.NewReader(data))
	if err != nil || n != size {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	if err := a.Truncate(size); err != nil {
		t.Fatal(err)
	}
	b, err := os.Create(filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := sparse.CopyFile(context.Background(), b, a); err != nil || n != size {
		t.Fatalf("CopyFile = %d, %v", n, err)
	}
	if err := b.Truncate(size); err != nil {
		t.Fatal(err)
	}
	a.Close()
	b.Close()
	for _, name := range []string{"a", "b"} {
		p := filepath.Join(dir, name)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s does not read back as the source (%v)", name, err)
		}
		// three islands take a few filesystem blocks, not 8 MiB
		if alloc := allocated(t, p); alloc > 256<<10 {
			t.Errorf("%s has %d bytes allocated for 300 bytes of data", name, alloc)
		}
	}
}

// TestCancelled: a cancelled context stops the copy.
func TestCancelled(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "x"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := sparse.WriteAt(ctx, f, 0, bytes.NewReader(make([]byte, 1<<20))); err == nil {
		t.Error("WriteAt with a cancelled context succeeded")
	}
}
