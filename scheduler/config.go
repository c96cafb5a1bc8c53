package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// ServiceTypeConfig is the scheduler part of a dcmgr.conf service_type, as
// JSON. Class names are the original's; options are fields.
//
//	{"host_node_scheduler": {"scheduler": "PipedRules", "rules": [
//	    {"rule": "RequestParamToGroup", "key": "host_node_group",
//	     "default": "hng-shhost", "pairs": {"local1": "hng-local1"}},
//	    {"rule": "LeastUsageBy", "key": "memory_size"}]},
//	 "host_node_ha_scheduler": {"scheduler": "LeastUsage"},
//	 "storage_node_scheduler": {"scheduler": "LeastUsage"},
//	 "network_scheduler": {"scheduler": "PerInstance", "default": "VifsRequestParam"},
//	 "mac_address_scheduler": {"scheduler": "ByHostNodeGroup",
//	     "default": "mr-demomacs", "pairs": {"hng-shhost": "mr-range1"}}}
type ServiceTypeConfig struct {
	HostNode    HostConfig    `json:"host_node_scheduler"`
	HostNodeHA  *HostConfig   `json:"host_node_ha_scheduler,omitempty"`
	StorageNode StorageConfig `json:"storage_node_scheduler"`
	Network     NetworkConfig `json:"network_scheduler"`
	MacAddress  MacConfig     `json:"mac_address_scheduler"`
	IPAddress   IPConfig      `json:"ip_address_scheduler"`
}

// HostConfig configures a host node scheduler: FindFirst, LeastUsage
// (sort_priority memory|cpu), ExcludeSame, SpecifyNode or PipedRules
// (max_results, rules).
type HostConfig struct {
	Scheduler    string           `json:"scheduler"`
	SortPriority string           `json:"sort_priority,omitempty"`
	MaxResults   int              `json:"max_results,omitempty"`
	Rules        []HostRuleConfig `json:"rules,omitempty"`
}

// HostRuleConfig is one PipedRules rule: LeastUsageBy (key cpu_cores|
// memory_size|quota_weight), ScatterBy (column account_id) or
// RequestParamToGroup (key, default, pairs).
type HostRuleConfig struct {
	Rule    string            `json:"rule"`
	Key     string            `json:"key,omitempty"`
	Column  string            `json:"column,omitempty"`
	Default string            `json:"default,omitempty"`
	Pairs   map[string]string `json:"pairs,omitempty"`
}

// StorageConfig configures a storage node scheduler: FindFirst or LeastUsage.
type StorageConfig struct {
	Scheduler string `json:"scheduler"`
}

// NetworkConfig configures a network scheduler. Options by class:
// VifTemplate template; NatOneToOne network_id, nat_network_id;
// RequestParamToGroup key, default, pairs; NetworkGroup network_group_id,
// algorithm (least_allocation); PerInstance default (a name of schedulers or
// a class name) and schedulers (name → config).
type NetworkConfig struct {
	Scheduler      string                   `json:"scheduler"`
	Template       map[string]string        `json:"template,omitempty"`
	NetworkID      string                   `json:"network_id,omitempty"`
	NatNetworkID   string                   `json:"nat_network_id,omitempty"`
	Key            string                   `json:"key,omitempty"`
	Default        string                   `json:"default,omitempty"`
	Pairs          map[string]string        `json:"pairs,omitempty"`
	NetworkGroupID string                   `json:"network_group_id,omitempty"`
	Algorithm      string                   `json:"algorithm,omitempty"`
	Schedulers     map[string]NetworkConfig `json:"schedulers,omitempty"`
}

// MacConfig configures the MAC address scheduler: Default (the default),
// ByHostNodeGroup (default range, pairs hng → range) or SpecifyMacAddress.
type MacConfig struct {
	Scheduler string            `json:"scheduler,omitempty"`
	Default   string            `json:"default,omitempty"`
	Pairs     map[string]string `json:"pairs,omitempty"`
}

// IPConfig configures the IP address scheduler: Incremental (the default)
// or SpecifyIP.
type IPConfig struct {
	Scheduler string `json:"scheduler,omitempty"`
}

// ParseServiceTypeConfig decodes JSON, rejecting unknown fields so that a
// misspelt option fails at load instead of being ignored.
func ParseServiceTypeConfig(data []byte) (ServiceTypeConfig, error) {
	var c ServiceTypeConfig
	err := decodeStrict(data, &c)
	return c, err
}

// ParseHostConfig decodes a host node scheduler configuration strictly.
func ParseHostConfig(data []byte) (HostConfig, error) {
	var c HostConfig
	err := decodeStrict(data, &c)
	return c, err
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("scheduler config: %w", err)
	}
	return nil
}

// Build makes the schedulers. rnd is the MAC schedulers' random source and
// macVendor dcmgr.conf's mac_address_vendor_id (0 for the default 525400).
func (c ServiceTypeConfig) Build(rnd Rand, macVendor uint32) (*Schedulers, error) {
	s := &Schedulers{IP: Incremental{}, SpecifyMAC: SpecifyMacAddress{Vendor: macVendor}}
	var err error
	if s.Host, err = c.HostNode.Build(); err != nil {
		return nil, fmt.Errorf("host_node_scheduler: %w", err)
	}
	if c.HostNodeHA != nil {
		if s.HostHA, err = c.HostNodeHA.Build(); err != nil {
			return nil, fmt.Errorf("host_node_ha_scheduler: %w", err)
		}
	} else {
		s.HostHA = DefaultHostHA()
	}
	if s.Storage, err = c.StorageNode.Build(); err != nil {
		return nil, fmt.Errorf("storage_node_scheduler: %w", err)
	}
	if s.Network, err = c.Network.Build(); err != nil {
		return nil, fmt.Errorf("network_scheduler: %w", err)
	}
	if s.MAC, err = c.MacAddress.Build(rnd, macVendor); err != nil {
		return nil, fmt.Errorf("mac_address_scheduler: %w", err)
	}
	if s.IP, err = c.IPAddress.Build(); err != nil {
		return nil, fmt.Errorf("ip_address_scheduler: %w", err)
	}
	return s, nil
}

func errConfig(format string, args ...any) error { return newErr(KindConfig, format, args...) }

// Build makes the host node scheduler.
func (c HostConfig) Build() (HostScheduler, error) {
	switch c.Scheduler {
	case "FindFirst":
		return FindFirst{}, nil
	case "LeastUsage":
		switch c.SortPriority {
		case "", "memory":
			return LeastUsage{SortPriority: SortMemory}, nil
		case "cpu":
			return LeastUsage{SortPriority: SortCPU}, nil
		}
		return nil, errConfig("unknown sort_priority %q (memory or cpu)", c.SortPriority)
	case "ExcludeSame":
		return ExcludeSame{}, nil
	case "SpecifyNode":
		return SpecifyNode{}, nil
	case "PipedRules":
		p := &PipedRules{MaxResults: c.MaxResults}
		for i, rc := range c.Rules {
			r, err := rc.Build()
			if err != nil {
				return nil, fmt.Errorf("rule %d: %w", i, err)
			}
			p.Rules = append(p.Rules, r)
		}
		return p, nil
	}
	return nil, errConfig("unknown host node scheduler %q", c.Scheduler)
}

// Build makes the PipedRules rule.
func (c HostRuleConfig) Build() (HostRule, error) {
	switch c.Rule {
	case "LeastUsageBy":
		switch c.Key {
		case "", "cpu_cores":
			return LeastUsageBy{Key: UsageCPUCores}, nil
		case "memory_size":
			return LeastUsageBy{Key: UsageMemorySize}, nil
		case "quota_weight":
			return LeastUsageBy{Key: UsageQuotaWeight}, nil
		}
		return nil, errConfig("LeastUsageBy: unknown key %q", c.Key)
	case "ScatterBy":
		if c.Column != "" && c.Column != "account_id" {
			return nil, errConfig("ScatterBy: unsupported column %q (account_id)", c.Column)
		}
		return ScatterBy{}, nil
	case "RequestParamToGroup":
		if c.Key == "" {
			return nil, errConfig("RequestParamToGroup: key is required")
		}
		return HostRequestParamToGroup{Key: c.Key, Default: c.Default, Pairs: c.Pairs}, nil
	}
	return nil, errConfig("unknown PipedRules rule %q", c.Rule)
}

// Build makes the storage node scheduler.
func (c StorageConfig) Build() (StorageScheduler, error) {
	switch c.Scheduler {
	case "FindFirst":
		return StorageFindFirst{}, nil
	case "LeastUsage":
		return StorageLeastUsage{}, nil
	}
	return nil, errConfig("unknown storage node scheduler %q", c.Scheduler)
}

// Build makes the network scheduler.
func (c NetworkConfig) Build() (NetworkScheduler, error) {
	switch c.Scheduler {
	case "FlatSingle":
		return FlatSingle{}, nil
	case "VifsRequestParam":
		return VifsRequestParam{}, nil
	case "SpecifyNetwork":
		return SpecifyNetwork{}, nil
	case "VifParamTemplate":
		return VifParamTemplate{}, nil
	case "VifTemplate":
		return VifTemplate{Template: c.Template}, nil
	case "NatOneToOne":
		if !validNetworkUUID(c.NetworkID) || !validNetworkUUID(c.NatNetworkID) {
			return nil, errConfig("NatOneToOne: network_id and nat_network_id must be network uuids")
		}
		return NatOneToOne{NetworkID: c.NetworkID, NatNetworkID: c.NatNetworkID}, nil
	case "RequestParamToGroup":
		if c.Key == "" {
			return nil, errConfig("RequestParamToGroup: key is required")
		}
		return NetworkRequestParamToGroup{Key: c.Key, Default: c.Default, Pairs: c.Pairs}, nil
	case "NetworkGroup":
		if c.Algorithm != "" && c.Algorithm != "least_allocation" {
			return nil, errConfig("NetworkGroup: unknown algorithm %q (least_allocation)", c.Algorithm)
		}
		return NetworkGroup{NetworkGroupID: c.NetworkGroupID}, nil
	case "PerInstance":
		p := PerInstance{Default: c.Default, Schedulers: make(map[string]NetworkScheduler)}
		for name, sc := range c.Schedulers {
			if sc.Scheduler == "PerInstance" {
				return nil, errConfig("PerInstance: %s: PerInstance cannot nest", name)
			}
			s, err := sc.Build()
			if err != nil {
				return nil, fmt.Errorf("PerInstance %s: %w", name, err)
			}
			p.Schedulers[name] = s
		}
		if c.Default == "" {
			return nil, errConfig("PerInstance: default is required")
		}
		if _, ok := p.Schedulers[c.Default]; !ok {
			// The original's `default :Class` names a class built without
			// options.
			if c.Default == "PerInstance" {
				return nil, errConfig("PerInstance: PerInstance cannot nest")
			}
			s, err := NetworkConfig{Scheduler: c.Default}.Build()
			if err != nil {
				return nil, fmt.Errorf("PerInstance default: %w", err)
			}
			p.Schedulers[c.Default] = s
		}
		return p, nil
	}
	return nil, errConfig("unknown network scheduler %q", c.Scheduler)
}

// Build makes the MAC address scheduler.
func (c MacConfig) Build(rnd Rand, vendor uint32) (MacScheduler, error) {
	switch c.Scheduler {
	case "", "Default":
		if rnd == nil {
			return nil, errConfig("Default MAC scheduler needs a random source")
		}
		return DefaultMAC{Rand: rnd}, nil
	case "ByHostNodeGroup":
		if rnd == nil {
			return nil, errConfig("ByHostNodeGroup needs a random source")
		}
		if c.Default == "" {
			return nil, errConfig("ByHostNodeGroup: default MAC range is required")
		}
		return ByHostNodeGroup{Default: c.Default, Pairs: c.Pairs, Rand: rnd}, nil
	case "SpecifyMacAddress":
		return SpecifyMacAddress{Vendor: vendor}, nil
	}
	return nil, errConfig("unknown MAC address scheduler %q", c.Scheduler)
}

// Build makes the IP address scheduler.
func (c IPConfig) Build() (IPScheduler, error) {
	switch c.Scheduler {
	case "", "Incremental":
		return Incremental{}, nil
	case "SpecifyIP":
		return SpecifyIP{}, nil
	}
	return nil, errConfig("unknown IP address scheduler %q", c.Scheduler)
}
