package localstore_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/hva/localstore"
	"github.com/vdc-project/vdc/proto"
)

// needTools skips where the host tools the store runs are missing (they are
// Debian packages qemu-utils, dosfstools, mtools).
func needTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "mkfs.vfat", "mcopy", "mdir", "mtype"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
}

// image is a small raw disk image with data and a hole.
func image() []byte {
	b := make([]byte, 1<<20)
	copy(b, "boot sector")
	copy(b[900<<10:], "the end")
	return b
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newStore(t *testing.T) (*localstore.Store, string) {
	t.Helper()
	needTools(t)
	dir := t.TempDir()
	s, err := localstore.New(localstore.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func ptr[T any](v T) *T { return &v }

// view is an instance with a local boot volume from bo, a blank local data
// volume, a shared iSCSI volume and two vnics.
func view(id string, bo *proto.BackupObjectView) *proto.InstanceView {
	return &proto.InstanceView{
		ID: id, AccountID: "a-shpoolxx", Hostname: "web1", CPUCores: 1, MemorySize: 128,
		UserData: "#!/bin/sh\necho hi\n", SshPublicKey: "ssh-rsa AAAA test@vdc",
		Image:        &proto.ImageView{Image: proto.Image{ID: "wmi-t", FileFormat: "raw"}, BackupObject: bo},
		BootVolumeID: "vol-boot",
		Volumes: []proto.VolumeView{
			{ID: "vol-boot", StoreType: proto.VolumeLocal, Size: 10 << 30},
			{ID: "vol-data", StoreType: proto.VolumeLocal, Size: 64 << 20},
			{ID: "vol-san", StoreType: proto.VolumeShared, Size: 1 << 30,
				Device: &proto.VolumeDevice{IQN: "iqn.2010-09.jp.wakame:vol-san", LUN: 1, StorageIP: "127.0.0.1"}},
		},
		Vifs: []proto.VifView{
			{ID: "vif-b", DeviceIndex: 1, MacAddr: "525400ABCDEF", IPv4Address: ptr("10.1.0.5"),
				Network: &proto.Network{IPv4Network: "10.1.0.0", Prefix: 16, Metric: 100}},
			{ID: "vif-a", DeviceIndex: 0, MacAddr: "5254000A0B0C", IPv4Address: ptr("192.168.3.10"),
				Network: &proto.Network{IPv4Network: "192.168.3.0", Prefix: 24, IPv4Gw: ptr("192.168.3.1"),
					DNSServer: ptr("192.168.3.2"), Metric: 0}},
		},
		Metadata: json.RawMessage(`{"x-role": "web", "../escape": "no"}`),
	}
}

// specOf is what the handlers hand Prepare (boot volume first).
func specOf(v *proto.InstanceView) hypervisor.Spec {
	spec := hypervisor.Spec{ID: v.ID, CPUCores: v.CPUCores, MemoryMB: v.MemorySize}
	for _, vol := range v.Volumes {
		d := hypervisor.Disk{VolumeID: vol.ID, Boot: vol.ID == v.BootVolumeID}
		if dev := vol.Device; dev != nil {
			d.IQN, d.LUN, d.StorageIP = dev.IQN, dev.LUN, dev.StorageIP
		}
		spec.Disks = append(spec.Disks, d)
	}
	return spec
}

func fileBO(t *testing.T, data []byte, format string) *proto.BackupObjectView {
	p := filepath.Join(t.TempDir(), "image.obj")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return &proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-file", Checksum: md5hex(data),
		ContainerFormat: format}, URI: "file://" + p}
}

// mtype reads a file of a vfat image.
func mtype(t *testing.T, img, name string) (string, bool) {
	t.Helper()
	cmd := exec.Command("mtype", "-i", img, "::/"+name)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.Output()
	return string(out), err == nil
}

func TestPrepareDeploysOverlayBlankVolumeAndMetadataDrive(t *testing.T) {
	s, dir := newStore(t)
	ctx := context.Background()
	img := image()
	v := view("i-vlprep", fileBO(t, img, "raw"))
	spec := specOf(v)
	if err := s.Prepare(ctx, v, &spec, true); err != nil {
		t.Fatalf("Prepare = %v", err)
	}
	idir := filepath.Join(dir, "i-vlprep")
	meta := filepath.Join(idir, "metadata.img")
	want := []hypervisor.Disk{
		{VolumeID: "vol-boot", Path: filepath.Join(idir, "vol-boot.qcow2"), Format: "qcow2", Boot: true},
		{VolumeID: "metadata", Path: meta, Format: "raw", ReadOnly: true},
		{VolumeID: "vol-data", Path: filepath.Join(idir, "vol-data.qcow2"), Format: "qcow2"},
		{VolumeID: "vol-san", IQN: "iqn.2010-09.jp.wakame:vol-san", LUN: 1, StorageIP: "127.0.0.1"},
	}
	if !slices.Equal(spec.Disks, want) {
		t.Fatalf("disks =\n%+v\nwant\n%+v", spec.Disks, want)
	}

	// The boot volume is an overlay on the cached image, which holds the
	// object's bytes (holes kept).
	base := filepath.Join(dir, "_base", "bo-file")
	info := qemuImgInfo(t, want[0].Path)
	if info.Format != "qcow2" || info.BackingFilename != base || info.BackingFormat != "raw" {
		t.Errorf("boot volume = %+v, want a qcow2 overlay on %s (raw)", info, base)
	}
	if got, err := os.ReadFile(base); err != nil || !bytes.Equal(got, img) {
		t.Errorf("cached image differs from the backup object (%v)", err)
	}
	if sum, _ := os.ReadFile(base + ".md5"); string(sum) != md5hex(img) {
		t.Errorf("sidecar = %q, want %s", sum, md5hex(img))
	}
	if info := qemuImgInfo(t, want[2].Path); info.Format != "qcow2" || info.VirtualSize != 64<<20 || info.BackingFilename != "" {
		t.Errorf("blank volume = %+v, want a 64 MiB qcow2 without backing", info)
	}

	// The metadata drive: 10 MiB, vfat over the whole disk, label METADATA.
	if st, err := os.Stat(meta); err != nil || st.Size() != 10<<20 {
		t.Fatalf("metadata drive: %v, want 10 MiB", err)
	}
	if out, err := exec.Command("fsck.fat", "-n", meta).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat -n: %v: %s", err, out)
	}
	if out, err := exec.Command("blkid", "-o", "export", meta).Output(); err == nil &&
		(!strings.Contains(string(out), "LABEL=METADATA") || !strings.Contains(string(out), "TYPE=vfat") || strings.Contains(string(out), "PTTYPE")) {
		t.Errorf("blkid %s:\n%s\nwant a vfat filesystem labelled METADATA and no partition table", meta, out)
	}
	files := map[string]string{
		"meta-data/instance-id":               "i-vlprep",
		"meta-data/local-hostname":            "web1",
		"meta-data/hostname":                  "web1",
		"meta-data/x-account-id":              "a-shpoolxx",
		"meta-data/public-keys/0/openssh-key": "ssh-rsa AAAA test@vdc",
		"meta-data/first-boot":                "",
		"meta-data/x-role":                    "web",
		"user-data":                           "#!/bin/sh\necho hi\n",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/device-number": "0",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/local-ipv4s":   "192.168.3.10",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/x-netmask":     "255.255.255.0",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/x-prefix":      "24",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/x-network":     "192.168.3.0",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/x-broadcast":   "192.168.3.255",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/x-gateway":     "192.168.3.1",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/x-dns":         "192.168.3.2",
		"meta-data/network/interfaces/macs/52-54-00-0a-0b-0c/x-metric":      "0",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/device-number": "1",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/local-ipv4s":   "10.1.0.5",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/x-netmask":     "255.255.0.0",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/x-prefix":      "16",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/x-network":     "10.1.0.0",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/x-broadcast":   "10.1.255.255",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/x-gateway":     "",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/x-dns":         "",
		"meta-data/network/interfaces/macs/52-54-00-ab-cd-ef/x-metric":      "100",
	}
	for name, value := range files {
		got, ok := mtype(t, meta, name)
		if !ok || got != value {
			t.Errorf("metadata drive %s = %q (found %v), want %q", name, got, ok, value)
		}
	}
	if _, ok := mtype(t, meta, "escape"); ok {
		t.Errorf("an extra metadata key with .. reached the drive")
	}
	yml, _ := mtype(t, meta, "metadata.yml")
	var items map[string]string
	if err := yaml.Unmarshal([]byte(yml), &items); err != nil {
		t.Fatalf("metadata.yml: %v\n%s", err, yml)
	}
	for name, value := range files {
		if items[name] != value {
			t.Errorf("metadata.yml %s = %q, want %q", name, items[name], value)
		}
	}

	// Powered on again: the volumes stay as they are, the drive is
	// rewritten without the first-boot marker.
	before, _ := os.Stat(want[0].Path)
	v.Hostname = "web2"
	spec = specOf(v)
	if err := s.Prepare(ctx, v, &spec, false); err != nil {
		t.Fatalf("Prepare(again) = %v", err)
	}
	if !slices.Equal(spec.Disks, want) {
		t.Errorf("disks on the second boot = %+v, want %+v", spec.Disks, want)
	}
	if after, _ := os.Stat(want[0].Path); !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the boot volume was made again on a later boot")
	}
	if _, ok := mtype(t, meta, "meta-data/first-boot"); ok {
		t.Errorf("first-boot marker on a later boot")
	}
	if got, _ := mtype(t, meta, "meta-data/hostname"); got != "web2" {
		t.Errorf("hostname on a later boot = %q, want the current web2", got)
	}

	// Remove takes the instance's directory and keeps the cache.
	for range 2 {
		if err := s.Remove(ctx, "i-vlprep"); err != nil {
			t.Fatalf("Remove = %v", err)
		}
	}
	if _, err := os.Stat(idir); !os.IsNotExist(err) {
		t.Errorf("instance dir after Remove: %v", err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Errorf("cached image after Remove: %v", err)
	}
}

type imgInfo struct {
	Format          string `json:"format"`
	VirtualSize     int64  `json:"virtual-size"`
	BackingFilename string `json:"backing-filename"`
	BackingFormat   string `json:"backing-filename-format"`
}

func qemuImgInfo(t *testing.T, path string) imgInfo {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info imgInfo
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info
}

// server serves one object over HTTP and counts the requests.
func server(t *testing.T, body []byte) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestConcurrentPreparesFetchOnceOverHTTPGzip(t *testing.T) {
	s, dir := newStore(t)
	img := image()
	obj := gz(t, img)
	srv, requests := server(t, obj)
	bo := &proto.BackupObjectView{BackupObject: proto.BackupObject{ID: "bo-http", Checksum: md5hex(obj),
		ContainerFormat: "gz"}, URI: srv.URL + "/images/tiny.raw.gz"}
	var wg sync.WaitGroup
	errCh := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			v := view(fmt.Sprintf("i-vlconc%d", i), bo)
			spec := specOf(v)
			errCh <- s.Prepare(context.Background(), v, &spec, true)
		})
	}
	wg.Wait()
	close(errCh)
	for err := range errCh {
		if err != nil {
			t.Fatalf("Prepare = %v", err)
		}
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("the image was fetched %d times for 4 concurrent instances, want once", n)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "_base", "bo-http")); !bytes.Equal(got, img) {
		t.Errorf("cached image is not the gunzipped object")
	}
	// A later instance uses the cache too.
	v := view("i-vllater", bo)
	spec := specOf(v)
	if err := s.Prepare(context.Background(), v, &spec, true); err != nil {
		t.Fatal(err)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("fetched %d times after a later instance, want once", n)
	}
}

func TestBadChecksumCachesNothing(t *testing.T) {
	s, dir := newStore(t)
	img := image()
	for name, bo := range map[string]*proto.BackupObjectView{
		"wrong md5": func() *proto.BackupObjectView {
			bo := fileBO(t, img, "raw")
			bo.Checksum = md5hex([]byte("something else"))
			return bo
		}(),
		"no md5": func() *proto.BackupObjectView {
			bo := fileBO(t, img, "raw")
			bo.Checksum = "0"
			return bo
		}(),
	} {
		v := view("i-vlbad", bo)
		spec := specOf(v)
		err := s.Prepare(context.Background(), v, &spec, true)
		if !errs.Is(err, errs.InvalidBackupObjectState) || (name == "wrong md5" && !strings.Contains(err.Error(), "md5")) {
			t.Errorf("%s: Prepare = %v, want InvalidBackupObjectState naming the md5", name, err)
		}
		entries, _ := os.ReadDir(filepath.Join(dir, "_base"))
		if len(entries) != 0 {
			t.Errorf("%s: _base holds %v after a failed fetch, want nothing", name, entries)
		}
		if _, err := os.Stat(filepath.Join(dir, "i-vlbad", "vol-boot.qcow2")); !os.IsNotExist(err) {
			t.Errorf("%s: boot volume exists after a failed fetch: %v", name, err)
		}
	}
}

func TestRefusesIDsOutsideTheDataDir(t *testing.T) {
	s, _ := newStore(t)
	for _, id := range []string{"", "..", "_base", "a/b"} {
		if err := s.Remove(context.Background(), id); !errs.Is(err, errs.InvalidParameter) {
			t.Errorf("Remove(%q) = %v, want InvalidParameter", id, err)
		}
	}
}
