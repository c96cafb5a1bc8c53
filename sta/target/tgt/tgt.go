// Package tgt exports volumes through tgtd, the Linux SCSI target
// framework's user-space daemon, driven with tgtadm (spec/agents.md §6):
// one target per volume named <iqn_prefix>:<volume id>, the volume as LUN
// 1, bound to the configured initiator addresses (ALL by default).
//
// tgtd keeps no configuration of its own across restarts; the sta
// re-exports its volumes from the managers' state when it starts (and
// periodically), and Export is idempotent for that.
//
// Target ids: tgtd wants the caller to choose them. Export takes the
// highest id in use plus one, under a mutex for this process; another
// process (another sta, an operator) may take the same id between the read
// and the create, which tgtadm reports as "this target already exists":
// Export then reads the targets again and retries with the next id.
package tgt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/sta/command"
	"github.com/vdc-project/vdc/sta/target"
)

// DefaultRetries bounds the target id retries of one Export.
const DefaultRetries = 16

// tgtadm messages (tgt 1.0.85).
const (
	msgTargetExists = "this target already exists"
	msgNoTarget     = "can't find the target"
	msgLUNExists    = "this logical unit number already exists"
	msgACLExists    = "this access control rule already exists"
)

// Config configures the tgt target.
type Config struct {
	// Tgtadm is the tgtadm program (sta.conf tgtadm_path; default "tgtadm").
	Tgtadm string
	// Initiators are the initiator addresses bound to each target
	// (sta.conf initiator_address; default ALL).
	Initiators []string
	// Retries bounds the target id retries of one Export (default DefaultRetries).
	Retries int
	// Runner runs tgtadm (default command.Exec{}).
	Runner command.Runner
}

// Target is the tgt target.
type Target struct {
	cfg Config
	run command.Runner
	// mu serialises this process's changes, so that two Exports do not pick
	// the same id (other processes are handled by the retry).
	mu sync.Mutex
}

// New returns a tgt target. It does not contact tgtd (Ping does).
func New(cfg Config) *Target {
	if cfg.Tgtadm == "" {
		cfg.Tgtadm = "tgtadm"
	}
	if len(cfg.Initiators) == 0 {
		cfg.Initiators = []string{"ALL"}
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	t := &Target{cfg: cfg, run: cfg.Runner}
	if t.run == nil {
		t.run = command.Exec{}
	}
	return t
}

// Driver implements target.Target.
func (t *Target) Driver() string { return "tgt" }

// Ping checks that tgtd answers.
func (t *Target) Ping(ctx context.Context) error {
	_, err := t.tgtadm(ctx, "--op", "show", "--mode", "sys")
	return err
}

func (t *Target) tgtadm(ctx context.Context, args ...string) ([]byte, error) {
	out, err := t.run.Run(ctx, t.cfg.Tgtadm, append([]string{"--lld", "iscsi"}, args...)...)
	if err != nil && ctx.Err() != nil {
		return out, errs.Wrap(errs.Timeout, err, "tgtadm")
	}
	if err != nil && errs.KindOf(err) == errs.Internal {
		var ce *command.Error
		if errors.As(err, &ce) && ce.ExitCode < 0 {
			// tgtadm itself did not run (or was killed).
			return out, errs.Wrap(errs.Unavailable, err, "tgtadm")
		}
	}
	return out, err
}

// tgtTarget is one target of tgtadm's show output.
type tgtTarget struct {
	tid  int
	iqn  string
	luns map[int]string // LUN -> backing store path
	acls []string
}

var (
	reTarget  = regexp.MustCompile(`^Target (\d+): (\S+)$`)
	reLUN     = regexp.MustCompile(`^\s+LUN: (\d+)$`)
	reBacking = regexp.MustCompile(`^\s+Backing store path: (.*)$`)
	reSection = regexp.MustCompile(`^    (\S.*):$`)
	reACL     = regexp.MustCompile(`^        (\S+)$`)
)

// parseShow parses `tgtadm --lld iscsi --op show --mode target`.
func parseShow(out []byte) ([]tgtTarget, error) {
	var list []tgtTarget
	var cur *tgtTarget
	section, lun := "", -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := reTarget.FindStringSubmatch(line); m != nil {
			tid, err := strconv.Atoi(m[1])
			if err != nil {
				return nil, fmt.Errorf("tgtadm show: %q: %w", line, err)
			}
			list = append(list, tgtTarget{tid: tid, iqn: m[2], luns: map[int]string{}})
			cur, section, lun = &list[len(list)-1], "", -1
			continue
		}
		if cur == nil {
			continue
		}
		if m := reSection.FindStringSubmatch(line); m != nil {
			section, lun = m[1], -1
			continue
		}
		switch section {
		case "LUN information":
			if m := reLUN.FindStringSubmatch(line); m != nil {
				lun, _ = strconv.Atoi(m[1])
			} else if m := reBacking.FindStringSubmatch(line); m != nil && lun >= 0 {
				cur.luns[lun] = m[1]
			}
		case "ACL information":
			if m := reACL.FindStringSubmatch(line); m != nil {
				cur.acls = append(cur.acls, m[1])
			}
		}
	}
	return list, sc.Err()
}

func (t *Target) show(ctx context.Context) ([]tgtTarget, error) {
	out, err := t.tgtadm(ctx, "--op", "show", "--mode", "target")
	if err != nil {
		return nil, fmt.Errorf("list targets: %w", err)
	}
	return parseShow(out)
}

func find(list []tgtTarget, iqn string) *tgtTarget {
	for i := range list {
		if list[i].iqn == iqn {
			return &list[i]
		}
	}
	return nil
}

func exportOf(tt *tgtTarget) target.Export {
	return target.Export{IQN: tt.iqn, TID: tt.tid, LUN: target.LUN, Path: tt.luns[target.LUN], Initiators: slices.Clone(tt.acls)}
}

// Export implements target.Target.
func (t *Target) Export(ctx context.Context, iqn, path string) (target.Export, error) {
	if err := target.CheckIQN(iqn); err != nil {
		return target.Export{}, err
	}
	if _, err := os.Stat(path); err != nil {
		// tgtadm only says "invalid request".
		return target.Export{}, errs.Wrap(errs.NotFound, err, "export "+iqn)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	list, err := t.show(ctx)
	if err != nil {
		return target.Export{}, err
	}
	tt := find(list, iqn)
	created := false
	for attempt := 0; tt == nil; attempt++ {
		if attempt == t.cfg.Retries {
			return target.Export{}, errs.New(errs.Conflict, "export %s: every target id tried was taken meanwhile (%d tries)", iqn, attempt)
		}
		tid := 1
		for _, x := range list {
			tid = max(tid, x.tid+1)
		}
		_, err := t.tgtadm(ctx, "--op", "new", "--mode", "target", "--tid", strconv.Itoa(tid), "--targetname", iqn)
		if err == nil {
			tt, created = &tgtTarget{tid: tid, iqn: iqn, luns: map[int]string{}}, true
			break
		}
		if !command.StderrContains(err, msgTargetExists) {
			return target.Export{}, fmt.Errorf("export %s: new target %d: %w", iqn, tid, err)
		}
		// The id (or the name) was taken since the show: look again.
		if list, err = t.show(ctx); err != nil {
			return target.Export{}, err
		}
		tt = find(list, iqn)
	}
	if p, ok := tt.luns[target.LUN]; ok && p != path {
		return target.Export{}, errs.New(errs.Conflict, "%s exports %s, not %s", iqn, p, path)
	}
	if err := t.complete(ctx, tt, path); err != nil {
		if created {
			if derr := t.delete(context.WithoutCancel(ctx), tt.tid); derr != nil {
				err = errors.Join(err, fmt.Errorf("remove the half-made target: %w", derr))
			}
		}
		return target.Export{}, fmt.Errorf("export %s: %w", iqn, err)
	}
	return exportOf(tt), nil
}

// complete adds what tt lacks: LUN 1 on path and the initiator bindings.
func (t *Target) complete(ctx context.Context, tt *tgtTarget, path string) error {
	tid := strconv.Itoa(tt.tid)
	if _, ok := tt.luns[target.LUN]; !ok {
		_, err := t.tgtadm(ctx, "--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", strconv.Itoa(target.LUN), "--backing-store", path)
		if err != nil && !command.StderrContains(err, msgLUNExists) {
			return fmt.Errorf("new LUN on %s: %w", path, err)
		}
		tt.luns[target.LUN] = path
	}
	for _, addr := range t.cfg.Initiators {
		if slices.Contains(tt.acls, addr) {
			continue
		}
		_, err := t.tgtadm(ctx, "--op", "bind", "--mode", "target", "--tid", tid, "--initiator-address", addr)
		if err != nil && !command.StderrContains(err, msgACLExists) {
			return fmt.Errorf("bind initiator %s: %w", addr, err)
		}
		tt.acls = append(tt.acls, addr)
	}
	return nil
}

// delete removes a target with its LUNs, disconnecting initiators (--force).
func (t *Target) delete(ctx context.Context, tid int) error {
	_, err := t.tgtadm(ctx, "--op", "delete", "--force", "--mode", "target", "--tid", strconv.Itoa(tid))
	if command.StderrContains(err, msgNoTarget) {
		return nil
	}
	return err
}

// Unexport implements target.Target.
func (t *Target) Unexport(ctx context.Context, iqn string) error {
	if err := target.CheckIQN(iqn); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	list, err := t.show(ctx)
	if err != nil {
		return err
	}
	tt := find(list, iqn)
	if tt == nil {
		return nil
	}
	if err := t.delete(ctx, tt.tid); err != nil {
		return fmt.Errorf("unexport %s: %w", iqn, err)
	}
	return nil
}

// List implements target.Target.
func (t *Target) List(ctx context.Context, prefix string) ([]target.Export, error) {
	list, err := t.show(ctx)
	if err != nil {
		return nil, err
	}
	out := []target.Export{}
	for i := range list {
		if target.HasPrefix(list[i].iqn, prefix) {
			out = append(out, exportOf(&list[i]))
		}
	}
	slices.SortFunc(out, func(a, b target.Export) int { return strings.Compare(a.IQN, b.IQN) })
	return out, nil
}
