package api

import (
	"encoding/json"
	"strings"

	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Cross-account references. The 12.03 server looked several references up
// without an ownership check (image_id, ssh_key_id, a vif's network, an IP
// pool's network_id), so an account could boot another account's private
// image or put its instance on another account's network. Here a reference
// must name a record of the caller's own, or of the system account (what
// the operator registers without an account: shared networks and images),
// or a public image; anything else is "not found" with the code the route
// uses for an unknown record. Operator calls (no account) may use anything.

// usableBy reports whether the caller account may reference a record owned
// by owner.
func usableBy(account, owner string) bool {
	return account == "" || owner == account || owner == proto.SystemAccount
}

// ownerKinds maps an id prefix to the kind of the account-owned record.
var ownerKinds = map[string]string{
	proto.PrefixInstance: proto.KindInstance, proto.PrefixVolume: proto.KindVolume, proto.PrefixImage: proto.KindImage,
	proto.PrefixBackupObject: proto.KindBackupObject, proto.PrefixNetwork: proto.KindNetwork,
	proto.PrefixNetworkVif: proto.KindNetworkVif, proto.PrefixSecurityGroup: proto.KindSecurityGroup,
	proto.PrefixSshKeyPair: proto.KindSshKeyPair, proto.PrefixIPPool: proto.KindIPPool,
	proto.PrefixIPHandle: proto.KindIPHandle,
}

// resourceOwner returns the account owning the record id names ("" for
// records of no account, such as host nodes, or records that are gone).
func resourceOwner(tx *state.Tx, id string) string {
	prefix, _, ok := strings.Cut(id, "-")
	kind := ownerKinds[prefix]
	if !ok || kind == "" {
		return ""
	}
	var rec struct {
		AccountID string `json:"account_id"`
	}
	var raw json.RawMessage
	if _, err := tx.Get(kind, id, &raw); err != nil || json.Unmarshal(raw, &rec) != nil {
		return ""
	}
	return rec.AccountID
}

// jobVisible: jobs are the operator's work queue (§2.14), public like the
// infrastructure they mostly work on; but an account does not see (nor
// cancel) the jobs working on another account's records, whose documents
// carry that record's id and parameters.
func jobVisible(tx *state.Tx, req *Request, j *proto.Job) bool {
	if req.Account == "" {
		return true
	}
	owner := resourceOwner(tx, j.ResourceID)
	return owner == "" || owner == proto.SystemAccount || owner == req.Account
}
