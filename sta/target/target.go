// Package target holds the sta's storage targets: what makes a volume
// reachable from the hypervisors (spec/agents.md §6). One interface,
// Target, with target/tgt (the Linux SCSI target framework's tgtd, driven
// through tgtadm; hvas reach it through QEMU's own iSCSI initiator) and
// target/memory (a fake for tests). Both pass target/targettest.
package target

import (
	"context"
	"regexp"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
)

// LUN is the logical unit a volume is exported as (spec §6: LUN 1; tgt
// keeps LUN 0 for its controller).
const LUN = 1

// Export is a volume exported by a target.
type Export struct {
	IQN string `json:"iqn"`
	// TID is the target's id in tgtd (a fake numbers its targets too).
	TID  int    `json:"tid"`
	LUN  int    `json:"lun"`
	Path string `json:"path"` // the backing file or device
	// Initiators are the initiator addresses allowed ("ALL" = anyone).
	Initiators []string `json:"initiators"`
}

// Target exports volumes. Implementations are safe for concurrent use.
type Target interface {
	// Driver names the implementation ("tgt", "memory").
	Driver() string
	// Export makes iqn serve the file or device at path as LUN 1 to the
	// configured initiators. It is idempotent: an iqn already exported with
	// path is returned as it is, a half-made one (a crash between the steps)
	// is completed. Errors: InvalidParameter (malformed iqn), NotFound (no
	// such path), Conflict (iqn exports another path). A failed Export
	// leaves no target behind that it created.
	Export(ctx context.Context, iqn, path string) (Export, error)
	// Unexport removes iqn's target, disconnecting its initiators; an absent
	// target is removed already.
	Unexport(ctx context.Context, iqn string) error
	// List returns the exports whose IQN is prefix:… ("" = all), by IQN.
	List(ctx context.Context, prefix string) ([]Export, error)
}

// DefaultIQNPrefix is sta.conf's default iqn_prefix.
const DefaultIQNPrefix = "iqn.2010-09.jp.wakame"

// IQN is the target name of a volume: <prefix>:<volume id> (spec §6).
func IQN(prefix, volumeID string) string { return prefix + ":" + volumeID }

// HasPrefix reports whether iqn is named under prefix.
func HasPrefix(iqn, prefix string) bool {
	return prefix == "" || strings.HasPrefix(iqn, prefix+":")
}

// iqnPattern: "iqn." yyyy-mm "." reversed domain, then ":" and a unique
// part (RFC 3720 §3.2.6.3.1), in the lower case iSCSI names normalise to.
var iqnPattern = regexp.MustCompile(`^iqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9][a-z0-9.-]*(:[a-z0-9._:-]+)?$`)

// CheckIQN checks that iqn is an iSCSI qualified name.
func CheckIQN(iqn string) error {
	if len(iqn) > 223 || !iqnPattern.MatchString(iqn) {
		return errs.New(errs.InvalidParameter, "target name %q: want iqn.yyyy-mm.<reversed domain>[:<name>] in lower case", iqn)
	}
	return nil
}

// CheckPrefix checks an IQN prefix (sta.conf iqn_prefix).
func CheckPrefix(prefix string) error {
	if strings.Contains(prefix, ":") {
		return errs.New(errs.InvalidParameter, "iqn prefix %q: the volume id follows after a ':' of its own", prefix)
	}
	return CheckIQN(prefix)
}
