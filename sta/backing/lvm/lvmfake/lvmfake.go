// Package lvmfake is a fake of the LVM commands the lvm store runs
// (lvcreate, lvrename, lvremove, lvs, vgs, blkdiscard) for machines without
// device-mapper: one volume group whose LVs are sparse files under a
// device directory, with LVM's observable behaviour — sizes rounded up to
// whole extents, the exact error messages, thick LVs that come up holding a
// previous volume's bytes until zeroed, thin LVs and thin snapshots that
// skip activation unless -K, copy-on-write snapshots, out-of-space. Options
// it does not know fail the command, so a store that builds a wrong
// command line fails its tests.
package lvmfake

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vdc-project/vdc/sta/command"
)

// ExtentSize is the group's extent size (LVM's default).
const ExtentSize = 4 << 20

// Garbage is the byte a new thick LV holds before it is zeroed (what a
// deleted volume left on the extents).
const Garbage = 0xee

// Runner is the fake; it implements command.Runner.
type Runner struct {
	vg     string
	size   int64
	devDir string
	pool   string // thin pool name, "" if none
	pSize  int64

	mu    sync.Mutex
	lvs   map[string]*lvol
	calls [][]string
}

type lvol struct {
	size int64
	tags []string
	thin bool
}

// New returns a fake group vg of size bytes whose device nodes are files
// in devDir/<vg>/. pool, if set, names a thin pool of poolSize bytes.
func New(vg string, size int64, devDir, pool string, poolSize int64) (*Runner, error) {
	if err := os.MkdirAll(filepath.Join(devDir, vg), 0o755); err != nil {
		return nil, err
	}
	r := &Runner{vg: vg, size: size, devDir: devDir, pool: pool, pSize: poolSize, lvs: map[string]*lvol{}}
	if pool != "" {
		r.lvs[pool] = &lvol{size: roundExtent(poolSize)}
	}
	return r, nil
}

// Calls returns the commands run so far.
func (r *Runner) Calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// LVs returns the names of the group's LVs (the pool included), sorted.
func (r *Runner) LVs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for n := range r.lvs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func roundExtent(n int64) int64 { return (n + ExtentSize - 1) / ExtentSize * ExtentSize }

func (r *Runner) dev(name string) string { return filepath.Join(r.devDir, r.vg, name) }

func fail(name string, args []string, code int, format string, a ...any) ([]byte, error) {
	return nil, &command.Error{Name: name, Args: args, ExitCode: code, Stderr: "  " + fmt.Sprintf(format, a...) + "\n"}
}

// flags parses args: valued options take the next argument; the rest are
// positional. Unknown options are an error.
func flags(args []string, valued, boolean []string) (map[string][]string, []string, error) {
	opts := map[string][]string{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case slices.Contains(valued, a):
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("option %s needs a value", a)
			}
			opts[a] = append(opts[a], args[i+1])
			i++
		case slices.Contains(boolean, a):
			opts[a] = append(opts[a], "")
		case strings.HasPrefix(a, "-"):
			return nil, nil, fmt.Errorf("unrecognised option %s", a)
		default:
			pos = append(pos, a)
		}
	}
	return opts, pos, nil
}

// Run implements command.Runner.
func (r *Runner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, &command.Error{Name: name, Args: args, ExitCode: -1, Err: err}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, append([]string{name}, args...))
	switch name {
	case "lvcreate":
		return r.lvcreate(name, args)
	case "lvrename":
		return r.lvrename(name, args)
	case "lvremove":
		return r.lvremove(name, args)
	case "lvs":
		return r.lvsCmd(name, args)
	case "vgs":
		return r.vgs(name, args)
	case "blkdiscard":
		return r.blkdiscard(name, args)
	}
	return fail(name, args, 127, "%s: command not found", name)
}

func parseBytes(s string) (int64, error) {
	n, ok := strings.CutSuffix(s, "b")
	if !ok {
		return 0, fmt.Errorf("size %q: the store passes bytes (<n>b)", s)
	}
	return strconv.ParseInt(n, 10, 64)
}

// lvName splits "vg/lv", checking the group.
func (r *Runner) lvName(ref string) (string, bool) {
	vg, lv, ok := strings.Cut(ref, "/")
	return lv, ok && vg == r.vg && lv != ""
}

func (r *Runner) used() int64 {
	var n int64
	for _, l := range r.lvs {
		if !l.thin {
			n += l.size
		}
	}
	return n
}

func (r *Runner) lvcreate(name string, args []string) ([]byte, error) {
	opts, pos, err := flags(args, []string{"-L", "-V", "-T", "-n", "--addtag", "-W", "-Z"}, []string{"-q", "-y", "-s", "-K"})
	if err != nil || len(opts["-n"]) != 1 {
		return fail(name, args, 3, "Invalid command line: %v", err)
	}
	// A thin LV names its pool with -T and takes no positional argument;
	// the others name the group (or the origin of a snapshot).
	if want := 1 - len(opts["-V"]); len(pos) != want {
		return fail(name, args, 3, "Invalid command line: %d positional arguments, want %d", len(pos), want)
	}
	lvn := opts["-n"][0]
	if _, ok := r.lvs[lvn]; ok {
		return fail(name, args, 5, "Logical Volume %q already exists in volume group %q", lvn, r.vg)
	}
	tags := opts["--addtag"]
	switch {
	case opts["-s"] != nil:
		origin, ok := r.lvName(pos[0])
		o := r.lvs[origin]
		if !ok || o == nil {
			return fail(name, args, 5, "Failed to find logical volume %q", pos[0])
		}
		l := &lvol{size: o.size, tags: slices.Clone(o.tags), thin: o.thin}
		if o.thin {
			if opts["-L"] != nil {
				return fail(name, args, 3, "a thin snapshot takes no -L in this store")
			}
		} else {
			if len(opts["-L"]) != 1 {
				return fail(name, args, 3, "Please specify either size or extents with snapshots.")
			}
			cow, err := parseBytes(opts["-L"][0])
			if err != nil {
				return fail(name, args, 3, "%v", err)
			}
			if r.used()+roundExtent(cow) > r.size {
				return fail(name, args, 5, "Volume group %q has insufficient free space.", r.vg)
			}
		}
		r.lvs[lvn] = l
		if o.thin && opts["-K"] == nil {
			return nil, nil // thin snapshots skip activation: no device node
		}
		b, err := os.ReadFile(r.dev(origin))
		if err != nil {
			return fail(name, args, 5, "%v", err)
		}
		return r.writeDev(name, args, lvn, l.size, b)
	case opts["-V"] != nil:
		if len(opts["-T"]) != 1 || r.pool == "" {
			return fail(name, args, 3, "-V needs -T <vg>/<thin pool>")
		}
		if p, ok := r.lvName(opts["-T"][0]); !ok || p != r.pool {
			return fail(name, args, 5, "Failed to find logical volume %q", opts["-T"][0])
		}
		size, err := parseBytes(opts["-V"][0])
		if err != nil {
			return fail(name, args, 3, "%v", err)
		}
		r.lvs[lvn] = &lvol{size: roundExtent(size), tags: tags, thin: true}
		return r.writeDev(name, args, lvn, roundExtent(size), nil)
	default:
		if pos[0] != r.vg || len(opts["-L"]) != 1 {
			return fail(name, args, 3, "Invalid command line")
		}
		size, err := parseBytes(opts["-L"][0])
		if err != nil {
			return fail(name, args, 3, "%v", err)
		}
		size = roundExtent(size)
		if r.used()+size > r.size {
			return fail(name, args, 5, "Volume group %q has insufficient free space (%d extents): %d required.",
				r.vg, (r.size-r.used())/ExtentSize, size/ExtentSize)
		}
		r.lvs[lvn] = &lvol{size: size, tags: tags}
		// -Z y zeroes the first 4 KiB only: the rest is what was there.
		b := bytes.Repeat([]byte{Garbage}, int(size))
		clear(b[:4096])
		return r.writeDev(name, args, lvn, size, b)
	}
}

func (r *Runner) writeDev(name string, args []string, lvn string, size int64, b []byte) ([]byte, error) {
	f, err := os.Create(r.dev(lvn))
	if err == nil {
		_, err = f.Write(b)
		if err == nil {
			err = f.Truncate(size)
		}
		f.Close()
	}
	if err != nil {
		delete(r.lvs, lvn)
		return fail(name, args, 5, "%v", err)
	}
	return nil, nil
}

func (r *Runner) lvrename(name string, args []string) ([]byte, error) {
	_, pos, err := flags(args, nil, []string{"-q"})
	if err != nil || len(pos) != 3 || pos[0] != r.vg {
		return fail(name, args, 3, "Invalid command line: %v", err)
	}
	from, to := pos[1], pos[2]
	l, ok := r.lvs[from]
	if !ok {
		return fail(name, args, 5, "Existing logical volume %q not found in volume group %q", from, r.vg)
	}
	if _, ok := r.lvs[to]; ok {
		return fail(name, args, 5, "Logical Volume %q already exists in volume group %q", to, r.vg)
	}
	if err := os.Rename(r.dev(from), r.dev(to)); err != nil && !os.IsNotExist(err) {
		return fail(name, args, 5, "%v", err)
	}
	delete(r.lvs, from)
	r.lvs[to] = l
	return nil, nil
}

func (r *Runner) lvremove(name string, args []string) ([]byte, error) {
	opts, pos, err := flags(args, nil, []string{"-q", "-y", "-f"})
	if err != nil || len(pos) != 1 || opts["-y"] == nil && opts["-f"] == nil {
		return fail(name, args, 3, "Invalid command line (without -y lvremove asks): %v", err)
	}
	lvn, ok := r.lvName(pos[0])
	if !ok || r.lvs[lvn] == nil || lvn == r.pool {
		return fail(name, args, 5, "Failed to find logical volume %q", pos[0])
	}
	delete(r.lvs, lvn)
	os.Remove(r.dev(lvn))
	return nil, nil
}

var reportFlags = []string{"-o", "--units", "--separator"}
var reportBools = []string{"--noheadings", "--nosuffix"}

func checkReport(opts map[string][]string) error {
	if len(opts["--units"]) != 1 || opts["--units"][0] != "b" || opts["--nosuffix"] == nil ||
		opts["--noheadings"] == nil || len(opts["--separator"]) != 1 || len(opts["-o"]) != 1 {
		return fmt.Errorf("the store asks for --noheadings --nosuffix --units b --separator X -o fields")
	}
	return nil
}

func (r *Runner) lvsCmd(name string, args []string) ([]byte, error) {
	opts, pos, err := flags(args, reportFlags, reportBools)
	if err == nil {
		err = checkReport(opts)
	}
	if err != nil || len(pos) != 1 {
		return fail(name, args, 3, "Invalid command line: %v", err)
	}
	sep := opts["--separator"][0]
	var names []string
	switch {
	case pos[0] == r.vg:
		for n := range r.lvs {
			names = append(names, n)
		}
		slices.Sort(names)
	default:
		lvn, ok := r.lvName(pos[0])
		if !ok || r.lvs[lvn] == nil {
			return fail(name, args, 5, "Failed to find logical volume %q", pos[0])
		}
		names = []string{lvn}
	}
	var out strings.Builder
	for _, n := range names {
		l := r.lvs[n]
		var fields []string
		for _, f := range strings.Split(opts["-o"][0], ",") {
			switch f {
			case "lv_name":
				fields = append(fields, n)
			case "lv_size":
				fields = append(fields, strconv.FormatInt(l.size, 10))
			case "lv_tags":
				fields = append(fields, strings.Join(l.tags, ","))
			case "data_percent":
				if n != r.pool {
					fields = append(fields, "")
					continue
				}
				var used int64
				for _, t := range r.lvs {
					if t.thin {
						used += t.size
					}
				}
				fields = append(fields, strconv.FormatFloat(min(100, float64(used)*100/float64(l.size)), 'f', 2, 64))
			default:
				return fail(name, args, 5, "Unrecognised field: %s", f)
			}
		}
		fmt.Fprintf(&out, "  %s\n", strings.Join(fields, sep))
	}
	return []byte(out.String()), nil
}

func (r *Runner) vgs(name string, args []string) ([]byte, error) {
	opts, pos, err := flags(args, reportFlags, reportBools)
	if err == nil {
		err = checkReport(opts)
	}
	if err != nil || len(pos) != 1 {
		return fail(name, args, 3, "Invalid command line: %v", err)
	}
	if pos[0] != r.vg {
		return fail(name, args, 5, "Volume group %q not found", pos[0])
	}
	var fields []string
	for _, f := range strings.Split(opts["-o"][0], ",") {
		switch f {
		case "vg_size":
			fields = append(fields, strconv.FormatInt(r.size, 10))
		case "vg_free":
			fields = append(fields, strconv.FormatInt(r.size-r.used(), 10))
		default:
			return fail(name, args, 5, "Unrecognised field: %s", f)
		}
	}
	return []byte("  " + strings.Join(fields, opts["--separator"][0]) + "\n"), nil
}

func (r *Runner) blkdiscard(name string, args []string) ([]byte, error) {
	opts, pos, err := flags(args, nil, []string{"-z"})
	if err != nil || len(pos) != 1 || opts["-z"] == nil {
		return fail(name, args, 1, "the store zeroes with blkdiscard -z <device>: %v", err)
	}
	fi, err := os.Stat(pos[0])
	if err != nil {
		return fail(name, args, 1, "cannot open %s: %v", pos[0], err)
	}
	if err := os.Truncate(pos[0], 0); err != nil {
		return fail(name, args, 1, "%v", err)
	}
	if err := os.Truncate(pos[0], fi.Size()); err != nil {
		return fail(name, args, 1, "%v", err)
	}
	return nil, nil
}
