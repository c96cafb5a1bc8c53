package api

import (
	"encoding/json"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Quota keys (spec §4).
const (
	QuotaInstanceCount          = "instance.count"
	QuotaInstanceWeight         = "instance.quota_weight"
	QuotaInstanceBackupsPerHour = "instance.backup_operations_per_hour"
	QuotaVolumeCount            = "volume.count"
	QuotaVolumeSizeMB           = "volume.size_mb"
	QuotaImageCount             = "image.count"
	QuotaBackupObjectCount      = "backup_object.count"
	QuotaBackupObjectSizeMB     = "backup_object.size_mb"
	QuotaSecurityGroupCount     = "security_group.count"
	QuotaSshKeyPairCount        = "ssh_key_pair.count"
	QuotaLoadBalancerCount      = "load_balancer.count"
	QuotaNetworkCount           = "network.count"
)

// QuotaKeys lists every key in the order GET /accounts/:id/usage shows them.
var QuotaKeys = []string{
	QuotaInstanceCount, QuotaInstanceWeight, QuotaInstanceBackupsPerHour,
	QuotaVolumeCount, QuotaVolumeSizeMB, QuotaImageCount,
	QuotaBackupObjectCount, QuotaBackupObjectSizeMB, QuotaSecurityGroupCount,
	QuotaSshKeyPairCount, QuotaLoadBalancerCount, QuotaNetworkCount,
}

// checkQuota applies one quota key of §4 to a request: no quota header, no
// account, or a key absent from the header means no check. Count-style keys
// (amount 0) reject when limit ≤ usage; amount keys when limit < usage+amount.
func (a *API) checkQuota(tx *state.Tx, req *Request, key string, amount float64) error {
	if a.cfg.SkipQuotaEvaluation || req.Account == "" || req.Quota == nil {
		return nil
	}
	limit, ok := req.Quota[key]
	if !ok {
		return nil
	}
	usage, err := quotaUsage(tx, req.Account, req.Params.Str("service_type"), key, a.now())
	if err != nil {
		return err
	}
	var over bool
	if key == QuotaInstanceWeight {
		over = limit < usage+amount
	} else {
		limit = float64(int64(limit)) // limits are integers except quota_weight (to_i)
		if amount == 0 {
			over = limit <= usage
		} else {
			over = limit < usage+amount
		}
	}
	if over {
		return errs.New(errs.ExceedQuotaLimit, "Exceeds quota limitation: %s %s %s",
			req.HTTP.Method, req.HTTP.URL.Path, key)
	}
	return nil
}

// usageRecord has the fields usage computations read from any kind.
type usageRecord struct {
	AccountID   string   `json:"account_id"`
	ServiceType string   `json:"service_type"`
	DeletedAt   *string  `json:"deleted_at"`
	Size        int64    `json:"size"`
	State       string   `json:"state"`
	QuotaWeight *float64 `json:"quota_weight"`
}

// quotaUsage computes the "usage" column of §4 for one key. Kinds that later
// issues add (instances, volumes, load balancers) count as 0 until they exist.
func quotaUsage(tx *state.Tx, account, serviceType, key string, now time.Time) (float64, error) {
	var kind string
	alive := true
	sum := func(r *usageRecord) float64 { return 1 }
	switch key {
	case QuotaInstanceCount:
		kind = proto.KindInstance
	case QuotaInstanceWeight:
		kind = proto.KindInstance
		sum = func(r *usageRecord) float64 {
			if r.QuotaWeight == nil {
				return 0
			}
			return *r.QuotaWeight
		}
	case QuotaVolumeCount:
		kind = proto.KindVolume
	case QuotaVolumeSizeMB:
		kind = proto.KindVolume
		sum = func(r *usageRecord) float64 { return float64(r.Size) }
	case QuotaImageCount, QuotaInstanceBackupsPerHour:
		kind = proto.KindImage
	case QuotaBackupObjectCount:
		kind = proto.KindBackupObject
	case QuotaBackupObjectSizeMB:
		kind = proto.KindBackupObject
		sum = func(r *usageRecord) float64 { return float64(r.Size) }
	case QuotaSecurityGroupCount:
		kind, alive = proto.KindSecurityGroup, false
	case QuotaSshKeyPairCount:
		kind = proto.KindSshKeyPair
	case QuotaLoadBalancerCount:
		kind, serviceType = proto.KindLoadBalancer, ""
	case QuotaNetworkCount:
		kind, alive = proto.KindNetwork, false
	default:
		return 0, errs.New(errs.InvalidParameter, "unknown quota key %s", key)
	}
	var total float64
	hourAgo := now.Unix() - 3600
	err := tx.Each(kind, false, func(e state.Entry) error {
		var r usageRecord
		if err := json.Unmarshal(e.Value, &r); err != nil {
			return err
		}
		if r.AccountID != account || (serviceType != "" && r.ServiceType != serviceType) {
			return nil
		}
		if alive && (r.DeletedAt != nil || r.State == "terminated" || r.State == "deleted") {
			return nil
		}
		if key == QuotaInstanceBackupsPerHour {
			var ts struct {
				CreatedAt time.Time `json:"created_at"`
			}
			if json.Unmarshal(e.Value, &ts) != nil || ts.CreatedAt.Unix() < hourAgo {
				return nil
			}
		}
		total += sum(&r)
		return nil
	})
	if key == QuotaVolumeSizeMB || key == QuotaBackupObjectSizeMB {
		total = float64(int64(total) / (1 << 20))
	}
	return total, err
}
