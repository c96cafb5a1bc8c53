package tgt_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/sta/command"
	"github.com/vdc-project/vdc/sta/target"
	"github.com/vdc-project/vdc/sta/target/targettest"
	"github.com/vdc-project/vdc/sta/target/tgt"
)

// fakeTgtd answers tgtadm command lines like tgtd 1.0.85 does (show
// output, error messages), so that the driver's parsing and retries are
// tested without root. stealNext, when set, makes the next "new target"
// find its id taken by another process first.
type fakeTgtd struct {
	mu        sync.Mutex
	targets   map[int]*fakeTarget
	stealNext int // how many new-target calls lose their id to a stranger
	failLUN   bool
	calls     []string
}

type fakeTarget struct {
	iqn  string
	luns map[int]string
	acls []string
}

func newFake() *fakeTgtd { return &fakeTgtd{targets: map[int]*fakeTarget{}} }

func (f *fakeTgtd) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, strings.Join(args, " "))
	opt := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--force" {
			opt[a] = "1"
			continue
		}
		if !strings.HasPrefix(a, "--") || i+1 >= len(args) {
			return nil, fail(name, args, "tgtadm: unrecognized option '"+a+"'")
		}
		opt[a] = args[i+1]
		i++
	}
	if opt["--lld"] != "iscsi" {
		return nil, fail(name, args, "tgtadm: driver is not specified")
	}
	tid, _ := strconv.Atoi(opt["--tid"])
	switch opt["--op"] + " " + opt["--mode"] {
	case "show sys":
		return []byte("System:\n    State: ready\n"), nil
	case "show target":
		return f.show(), nil
	case "new target":
		if f.stealNext > 0 {
			f.stealNext--
			f.targets[tid] = &fakeTarget{iqn: "iqn.2026-01.other:" + strconv.Itoa(tid), luns: map[int]string{}}
			return nil, fail(name, args, "tgtadm: this target already exists")
		}
		if f.targets[tid] != nil {
			return nil, fail(name, args, "tgtadm: this target already exists")
		}
		for _, t := range f.targets {
			if t.iqn == opt["--targetname"] {
				return nil, fail(name, args, "tgtadm: this target already exists")
			}
		}
		f.targets[tid] = &fakeTarget{iqn: opt["--targetname"], luns: map[int]string{}}
	case "new logicalunit":
		t := f.targets[tid]
		lun, _ := strconv.Atoi(opt["--lun"])
		switch {
		case t == nil:
			return nil, fail(name, args, "tgtadm: can't find the target")
		case t.luns[lun] != "":
			return nil, fail(name, args, "tgtadm: this logical unit number already exists")
		case f.failLUN:
			return nil, fail(name, args, "tgtadm: invalid request")
		}
		if _, err := os.Stat(opt["--backing-store"]); err != nil {
			return nil, fail(name, args, "tgtadm: invalid request")
		}
		t.luns[lun] = opt["--backing-store"]
	case "bind target":
		t := f.targets[tid]
		if t == nil {
			return nil, fail(name, args, "tgtadm: can't find the target")
		}
		if slices.Contains(t.acls, opt["--initiator-address"]) {
			return nil, fail(name, args, "tgtadm: this access control rule already exists")
		}
		t.acls = append(t.acls, opt["--initiator-address"])
	case "delete target":
		if f.targets[tid] == nil {
			return nil, fail(name, args, "tgtadm: can't find the target")
		}
		delete(f.targets, tid)
	default:
		return nil, fail(name, args, "tgtadm: invalid request")
	}
	return nil, nil
}

func fail(name string, args []string, msg string) error {
	return &command.Error{Name: name, Args: args, ExitCode: 22, Stderr: msg + "\n"}
}

// show prints the targets the way tgtadm --op show --mode target does.
func (f *fakeTgtd) show() []byte {
	var tids []int
	for tid := range f.targets {
		tids = append(tids, tid)
	}
	slices.Sort(tids)
	var b bytes.Buffer
	for _, tid := range tids {
		t := f.targets[tid]
		fmt.Fprintf(&b, "Target %d: %s\n    System information:\n        Driver: iscsi\n        State: ready\n", tid, t.iqn)
		fmt.Fprintf(&b, "    I_T nexus information:\n        I_T nexus: 1\n            Initiator: iqn.2008-11.org.linux-kvm: alias: none\n            Connection: 0\n                IP Address: 127.0.0.1\n")
		fmt.Fprintf(&b, "    LUN information:\n        LUN: 0\n            Type: controller\n            Backing store type: null\n            Backing store path: None\n            Backing store flags: \n")
		var luns []int
		for l := range t.luns {
			luns = append(luns, l)
		}
		slices.Sort(luns)
		for _, l := range luns {
			fmt.Fprintf(&b, "        LUN: %d\n            Type: disk\n            Size: 67 MB, Block size: 512\n            Backing store type: rdwr\n            Backing store path: %s\n            Backing store flags: \n", l, t.luns[l])
		}
		b.WriteString("    Account information:\n    ACL information:\n")
		for _, a := range t.acls {
			fmt.Fprintf(&b, "        %s\n", a)
		}
	}
	return b.Bytes()
}

// TestConformanceFakeTgtadm runs the suite on the driver over the fake
// tgtadm (no root needed).
func TestConformanceFakeTgtadm(t *testing.T) {
	targettest.Run(t, targettest.Options{
		New:    func(t *testing.T) target.Target { return tgt.New(tgt.Config{Runner: newFake()}) },
		Prefix: "iqn.2026-01.test.st",
	})
}

// TestConformanceRealTgtd runs the suite on the tgtd of this machine.
func TestConformanceRealTgtd(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedTgt)
	targettest.Run(t, targettest.Options{
		New:    func(t *testing.T) target.Target { return tgt.New(tgt.Config{}) },
		Prefix: "iqn.2026-01.test.st",
	})
}

func tempFile(t *testing.T, size int64) string {
	p := filepath.Join(t.TempDir(), "v.raw")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRetryWhenIDTaken: another process takes the id between the show and
// the create, twice; the export still gets an id of its own.
func TestRetryWhenIDTaken(t *testing.T) {
	f := newFake()
	f.targets[7] = &fakeTarget{iqn: "iqn.2026-01.other:x", luns: map[int]string{}}
	f.stealNext = 2
	tg := tgt.New(tgt.Config{Runner: f})
	e, err := tg.Export(context.Background(), "iqn.2026-01.test.st:vol-r", tempFile(t, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if e.TID != 10 {
		t.Errorf("tid = %d, want 10 (7 existed, 8 and 9 were taken meanwhile)", e.TID)
	}
}

// TestRetriesBounded: ids taken forever end in Conflict, not a loop.
func TestRetriesBounded(t *testing.T) {
	f := newFake()
	f.stealNext = 1000
	tg := tgt.New(tgt.Config{Runner: f, Retries: 3})
	_, err := tg.Export(context.Background(), "iqn.2026-01.test.st:vol-r", tempFile(t, 1<<20))
	if !errs.Is(err, errs.Conflict) {
		t.Errorf("Export = %v, want Conflict", err)
	}
}

// TestHalfMadeTargetCompleted: a target left without its LUN and binding
// (a crash between the tgtadm calls) is completed, keeping its id.
func TestHalfMadeTargetCompleted(t *testing.T) {
	f := newFake()
	f.targets[3] = &fakeTarget{iqn: "iqn.2026-01.test.st:vol-h", luns: map[int]string{}}
	tg := tgt.New(tgt.Config{Runner: f, Initiators: []string{"10.0.0.1", "10.0.0.2"}})
	p := tempFile(t, 1<<20)
	e, err := tg.Export(context.Background(), "iqn.2026-01.test.st:vol-h", p)
	if err != nil {
		t.Fatal(err)
	}
	if e.TID != 3 || e.Path != p || !slices.Equal(e.Initiators, []string{"10.0.0.1", "10.0.0.2"}) {
		t.Errorf("Export = %+v", e)
	}
	if got := f.targets[3]; got.luns[1] != p || len(got.acls) != 2 {
		t.Errorf("target 3 = %+v", got)
	}
}

// TestFailedLUNRemovesTarget: a LUN tgtd refuses leaves no target behind.
func TestFailedLUNRemovesTarget(t *testing.T) {
	f := newFake()
	f.failLUN = true
	tg := tgt.New(tgt.Config{Runner: f})
	if _, err := tg.Export(context.Background(), "iqn.2026-01.test.st:vol-f", tempFile(t, 1<<20)); err == nil {
		t.Fatal("Export succeeded")
	}
	if len(f.targets) != 0 {
		t.Errorf("targets left: %+v", f.targets)
	}
}

// TestTgtdDown: tgtadm cannot reach tgtd; the error says so.
func TestTgtdDown(t *testing.T) {
	tg := tgt.New(tgt.Config{Runner: runnerFunc(func(ctx context.Context, name string, args ...string) ([]byte, error) {
		return nil, &command.Error{Name: name, Args: args, ExitCode: 107, Stderr: "tgtadm: failed to send request hdr to tgt daemon, Transport endpoint is not connected\n"}
	})})
	if err := tg.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("Ping = %v", err)
	}
}

type runnerFunc func(ctx context.Context, name string, args ...string) ([]byte, error)

func (f runnerFunc) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	return f(ctx, name, args...)
}

// TestRealExportReachable exports a file through the real tgtd and reaches
// it the way an hva does, with QEMU's iSCSI initiator: qemu-img sees the
// size, and bytes written through iSCSI land in the file.
func TestRealExportReachable(t *testing.T) {
	testutil.Real(t, testutil.NeedRoot, testutil.NeedTgt)
	ctx := context.Background()
	tg := tgt.New(tgt.Config{})
	p := tempFile(t, 32<<20)
	iqn := target.IQN("iqn.2026-01.test.st-reach", "vol-reach")
	t.Cleanup(func() {
		if err := tg.Unexport(context.Background(), iqn); err != nil {
			t.Errorf("unexport: %v", err)
		}
	})
	if _, err := tg.Export(ctx, iqn, p); err != nil {
		t.Fatal(err)
	}
	url := "iscsi://127.0.0.1/" + iqn + "/1"
	out, err := exec.Command("qemu-img", "info", url).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v: %s", url, err, out)
	}
	if !regexp.MustCompile(`virtual size: 32 MiB \(33554432 bytes\)`).Match(out) {
		t.Errorf("qemu-img info: %s", out)
	}
	if out, err := exec.Command("qemu-io", "-f", "raw", "-c", "write -P 0x5a 1M 64k", url).CombinedOutput(); err != nil {
		t.Fatalf("qemu-io: %v: %s", err, out)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0x5a}, 64<<10)
	if md5.Sum(b[1<<20:1<<20+64<<10]) != md5.Sum(want) {
		t.Error("bytes written through iSCSI are not in the backing file")
	}
	// Unexport with the initiator gone leaves the name free for a re-export.
	if err := tg.Unexport(ctx, iqn); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("qemu-img", "info", url).Run(); err == nil {
		t.Error("the target still answers after Unexport")
	}
}
