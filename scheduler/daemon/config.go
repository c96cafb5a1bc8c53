package daemon

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/vdc-project/vdc/common/security"

	"github.com/vdc-project/vdc/scheduler"
)

// Config configures a scheduler daemon. Its JSON form is the daemon's
// config file (scheduler/cmd/scheduler).
type Config struct {
	// NodeID is the agent id (serf name, node_id tag); default
	// "scheduler.<host name>".
	NodeID        string   `json:"node_id"`
	SerfAddr      string   `json:"serf_addr"`
	RPCAddr       string   `json:"rpc_addr"`
	AdvertiseHost string   `json:"advertise_host"`
	Join          []string `json:"join"` // serf addresses of cluster members
	FastGossip    bool     `json:"fast_gossip"`
	// CrowdGossip selects agent.CrowdGossip's serf timers (hundreds of
	// members on one machine); SerfTune, when set, adjusts the serf
	// configuration last.
	CrowdGossip bool               `json:"crowd_gossip"`
	SerfTune    func(*serf.Config) `json:"-"`
	Token       string             `json:"token"` // shared RPC token
	// Security: RPC token(s), mutual TLS files, gossip keyring (common/security).
	Security security.Config `json:"security"`

	// Managers, when set, are the managers' RPC addresses to use instead of
	// those found in serf (members with role manager and an rpc tag).
	Managers []string `json:"managers"`

	// Concurrency is how many scheduler jobs run at once. The
	// schedule_instance jobs running at one moment are placed together (up
	// to BatchSize per view and plan), so it is also the most a batch can
	// hold.
	Concurrency int `json:"concurrency"`
	// BatchSize caps the instances placed on one view and submitted in one
	// plan; 1 places every job on its own view.
	BatchSize int `json:"batch_size"`
	// ViewMaxAgeMS is how long the daemon places batches on the view it
	// keeps (recording its own placements in it) before it reads a whole
	// view again; 0 reads one for every batch.
	ViewMaxAgeMS int `json:"view_max_age_ms"`
	// PlanAttempts bounds how often an instance is planned again after the
	// leader rejected its plan as stale, before it is failed. Contending
	// schedulers all pick the same next host and address, so losses are
	// normal under load (a 1,000-instance race needed up to 10 attempts).
	PlanAttempts int `json:"plan_attempts"`
	// CallTimeoutMS bounds one RPC to a manager.
	CallTimeoutMS int `json:"call_timeout_ms"`

	// MacVendorID is dcmgr.conf's mac_address_vendor_id (6 hex digits).
	MacVendorID string `json:"mac_address_vendor_id"`
	// MacRanges are the MAC address ranges (the mac_ranges rows of the
	// original): the Default MAC scheduler uses the first.
	MacRanges []MacRangeConfig `json:"mac_ranges"`
	// ServiceTypes are the schedulers of each service type (dcmgr.conf
	// service_type); instances of a type not listed use DefaultServiceType's.
	ServiceTypes       map[string]scheduler.ServiceTypeConfig `json:"service_types"`
	DefaultServiceType string                                 `json:"default_service_type"`

	LogLevel  string `json:"log_level"`
	LogFormat string `json:"log_format"`
}

// MacRangeConfig is a MAC range: the low 24 bits, as 6 hex digits, of the
// first and last address under the vendor id (Vendor overrides it).
type MacRangeConfig struct {
	ID     string `json:"id"`
	Vendor string `json:"vendor,omitempty"`
	Begin  string `json:"begin"`
	End    string `json:"end"`
}

// DefaultMacRangeID names the MAC range of the default configuration.
const DefaultMacRangeID = "mr-default"

// DefaultServiceTypeConfig is the std service type of the example
// dcmgr.conf, with the network scheduler every instance create can use:
// LeastUsage hosts and storage, VifsRequestParam networks, Default MACs,
// Incremental addresses.
func DefaultServiceTypeConfig() scheduler.ServiceTypeConfig {
	return scheduler.ServiceTypeConfig{
		HostNode:    scheduler.HostConfig{Scheduler: "LeastUsage"},
		HostNodeHA:  &scheduler.HostConfig{Scheduler: "LeastUsage"},
		StorageNode: scheduler.StorageConfig{Scheduler: "LeastUsage"},
		Network:     scheduler.NetworkConfig{Scheduler: "VifsRequestParam"},
		MacAddress:  scheduler.MacConfig{Scheduler: "Default"},
		IPAddress:   scheduler.IPConfig{Scheduler: "Incremental"},
	}
}

// DefaultConfig is one scheduler on 0.0.0.0:9030 (serf) and 9031 (RPC), beside an hva (9020/9021) and a manager (9010-9012)
// with the std service type and vendor 52:54:00, MACs 52:54:00:00:00:01 to
// 52:54:00:ff:ff:fe.
func DefaultConfig() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return Config{
		NodeID:             "scheduler." + host,
		SerfAddr:           "0.0.0.0:9030",
		RPCAddr:            "0.0.0.0:9031",
		Concurrency:        256,
		BatchSize:          256,
		ViewMaxAgeMS:       1000,
		PlanAttempts:       32,
		CallTimeoutMS:      30000,
		MacVendorID:        "525400",
		MacRanges:          []MacRangeConfig{{ID: DefaultMacRangeID, Begin: "000001", End: "fffffe"}},
		ServiceTypes:       map[string]scheduler.ServiceTypeConfig{"std": DefaultServiceTypeConfig()},
		DefaultServiceType: "std",
		LogLevel:           "info",
		LogFormat:          "text",
	}
}

// Validate checks the placement settings (the agent checks its own when it
// is built) by building every service type's schedulers once, so that a
// misconfiguration fails at start and not at the first job.
func (c *Config) Validate() error {
	if c.Concurrency < 1 {
		return errors.New("concurrency must be at least 1")
	}
	if c.BatchSize < 1 {
		return errors.New("batch_size must be at least 1")
	}
	if c.ViewMaxAgeMS < 0 {
		return errors.New("view_max_age_ms must not be negative")
	}
	if c.PlanAttempts < 1 {
		return errors.New("plan_attempts must be at least 1")
	}
	if c.CallTimeoutMS < 1 {
		return errors.New("call_timeout_ms must be positive")
	}
	if len(c.Join) == 0 && len(c.Managers) == 0 {
		return errors.New("neither join nor managers is set: the scheduler could never find a manager")
	}
	if _, err := c.macVendor(); err != nil {
		return err
	}
	if _, err := c.macRanges(); err != nil {
		return err
	}
	if _, ok := c.ServiceTypes[c.DefaultServiceType]; !ok {
		return fmt.Errorf("default_service_type %q is not among service_types", c.DefaultServiceType)
	}
	for name, st := range c.ServiceTypes {
		if _, err := st.Build(fixedRand{}, 0); err != nil {
			return fmt.Errorf("service type %s: %w", name, err)
		}
	}
	return nil
}

func (c *Config) viewMaxAge() time.Duration {
	return time.Duration(c.ViewMaxAgeMS) * time.Millisecond
}

func (c *Config) callTimeout() time.Duration {
	return time.Duration(c.CallTimeoutMS) * time.Millisecond
}

func (c *Config) macVendor() (uint32, error) {
	if c.MacVendorID == "" {
		return scheduler.DefaultMacVendor, nil
	}
	return parseHex24("mac_address_vendor_id", c.MacVendorID)
}

func (c *Config) macRanges() ([]scheduler.MacRange, error) {
	vendor, err := c.macVendor()
	if err != nil {
		return nil, err
	}
	out := make([]scheduler.MacRange, 0, len(c.MacRanges))
	for i, r := range c.MacRanges {
		what := fmt.Sprintf("mac_ranges[%d]", i)
		if r.ID == "" {
			return nil, fmt.Errorf("%s: id is empty", what)
		}
		v := vendor
		if r.Vendor != "" {
			if v, err = parseHex24(what+" vendor", r.Vendor); err != nil {
				return nil, err
			}
		}
		b, err := parseHex24(what+" begin", r.Begin)
		if err != nil {
			return nil, err
		}
		e, err := parseHex24(what+" end", r.End)
		if err != nil {
			return nil, err
		}
		if b > e {
			return nil, fmt.Errorf("%s: begin %s is after end %s", what, r.Begin, r.End)
		}
		out = append(out, scheduler.MacRange{ID: r.ID, Vendor: v, Begin: b, End: e})
	}
	return out, nil
}

func parseHex24(what, s string) (uint32, error) {
	if len(s) != 6 {
		return 0, fmt.Errorf("%s %q: want 6 hex digits", what, s)
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want 6 hex digits", what, s)
	}
	return uint32(n), nil
}

// fixedRand satisfies scheduler.Rand for building schedulers only to
// validate the configuration.
type fixedRand struct{}

func (fixedRand) Uint64N(uint64) uint64 { return 0 }
