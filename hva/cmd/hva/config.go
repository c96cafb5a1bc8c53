package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/config"
	"github.com/vdc-project/vdc/common/security"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/hypervisor/dummy"
	"github.com/vdc-project/vdc/hva/hypervisor/libvirt"
	"github.com/vdc-project/vdc/hva/netfilter"
	"github.com/vdc-project/vdc/hva/network"
)

// Hypervisor drivers: auto picks libvirt when its socket answers.
const (
	hypervisorAuto    = "auto"
	hypervisorLibvirt = "libvirt"
	hypervisorDummy   = "dummy"
)

// DefaultDataDir is hva.conf vm_data_dir's default here.
const DefaultDataDir = "/var/lib/vdc/instances"

// Config is the hva's configuration: defaults, then a JSON file, then flags.
// Durations are milliseconds in the file and Go durations ("5s") as flags.
type Config struct {
	// NodeID is the agent's identity, "hva.<name>" (spec §1.1); the host
	// node record's node_id must equal it.
	NodeID        string   `json:"node_id"`
	SerfAddr      string   `json:"serf_addr"`
	RPCAddr       string   `json:"rpc_addr"`
	AdvertiseHost string   `json:"advertise_host"`
	Join          []string `json:"join"`
	FastGossip    bool     `json:"fast_gossip"`
	// Token is the cluster's shared RPC token (prefer the file to the flag:
	// flags show in ps).
	Token     string `json:"token"`
	LogLevel  string `json:"log_level"`
	LogFormat string `json:"log_format"`

	// Security: RPC token(s), mutual TLS files, gossip keyring (common/security).
	Security security.Config `json:"security"`

	// Hypervisor is the driver: "libvirt", "dummy", or "auto" (libvirt
	// when its socket answers, else dummy).
	Hypervisor string `json:"hypervisor"`
	// LibvirtSocket is libvirtd's read-write socket.
	LibvirtSocket string `json:"libvirt_socket"`
	// VirtType is the libvirt domain type: qemu (TCG) or kvm.
	VirtType string `json:"virt_type"`
	// DataDir is hva.conf vm_data_dir: instance files and the image cache
	// (libvirt only).
	DataDir string `json:"data_dir"`
	// ConsoleDir holds the serial console logs, <id>.log (default
	// <data_dir>/_console).
	ConsoleDir string `json:"console_dir"`
	// JobsFile is the table of finished jobs' results (common/jobtable),
	// which a restarted hva answers redeliveries from instead of running
	// the jobs again. Default: <data_dir>/_jobs.db with libvirt; none with
	// the dummy hypervisor, whose data dir is not this host's own (results
	// are then kept in memory only).
	JobsFile string `json:"jobs_file"`
	// CPUCores and MemoryMB size the dummy host.
	CPUCores int   `json:"cpu_cores"`
	MemoryMB int64 `json:"memory_mb"`
	// DummyShutdownDelayMS is how long a dummy guest takes to act on an
	// ACPI power-down (negative: never).
	DummyShutdownDelayMS int `json:"dummy_shutdown_delay_ms"`

	MonitorIntervalMS     int `json:"monitor_interval_ms"`
	SoftPoweroffTimeoutMS int `json:"soft_poweroff_timeout_ms"`
	// ForceTerminateAfterMS is hva.conf
	// wait_sec_until_force_terminate_from_shuttingdown, in milliseconds.
	ForceTerminateAfterMS int `json:"force_terminate_after_ms"`
	// LocalStoreConcurrency is hva.conf local_store.thread_concurrency:
	// local-store-handle jobs run at once (hva-handle runs one at a time).
	LocalStoreConcurrency int `json:"local_store_concurrency"`
	// ShutdownTimeoutMS is how long running jobs may take to finish on SIGTERM.
	ShutdownTimeoutMS int `json:"shutdown_timeout_ms"`
	// FenceAfterMS is fence_after: with no heartbeat answered by the
	// managers for this long the hva stops every domain and starts none
	// until it is back in contact (README "HA"); 0 turns self-fencing off,
	// and the managers then never evacuate this host on their own.
	FenceAfterMS int `json:"fence_after_ms"`
	// HeartbeatMS is the heartbeat period (0: fence_after/6 within
	// 100 ms–5 s, 5 s without fencing).
	HeartbeatMS int `json:"heartbeat_ms"`

	// DcNetworks maps a DC network's name to its bridge on this host
	// (hva.conf dc_network(name){bridge, interface}, plus the taps' mtu).
	// Empty: vnics get no taps (the dummy hypervisor needs none).
	DcNetworks map[string]network.DCNetwork `json:"dc_networks"`
	// Netfilter turns on security groups with nftables (needs root).
	Netfilter bool `json:"netfilter"`
	// NetfilterTable names the host's nftables tables (bridge and inet).
	NetfilterTable string `json:"netfilter_table"`
	// NetfilterIntervalMS is the period of the full netfilter pass.
	NetfilterIntervalMS int `json:"netfilter_interval_ms"`
}

// DefaultConfig is an hva named after the host on a dummy hypervisor of
// 8 cores and 16 GiB, gossiping on 9020 and serving RPC on 9021 (the
// manager uses 9010/9011, so both fit on one machine).
func DefaultConfig() Config {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	d := dummy.DefaultConfig()
	return Config{
		NodeID:                "hva." + name,
		SerfAddr:              "0.0.0.0:9020",
		RPCAddr:               "0.0.0.0:9021",
		LogLevel:              "info",
		LogFormat:             "text",
		Hypervisor:            hypervisorDummy,
		LibvirtSocket:         libvirt.DefaultSocket,
		VirtType:              libvirt.DefaultVirtType,
		DataDir:               DefaultDataDir,
		CPUCores:              d.CPUCores,
		MemoryMB:              d.MemoryMB,
		DummyShutdownDelayMS:  int(d.ShutdownDelay / time.Millisecond),
		MonitorIntervalMS:     int(handlers.DefaultMonitorInterval / time.Millisecond),
		SoftPoweroffTimeoutMS: int(handlers.DefaultSoftPoweroffTimeout / time.Millisecond),
		ForceTerminateAfterMS: int(handlers.DefaultForceTerminateAfter / time.Millisecond),
		LocalStoreConcurrency: 2,
		ShutdownTimeoutMS:     30000,
		FenceAfterMS:          int(handlers.DefaultFenceAfter / time.Millisecond),
		NetfilterTable:        netfilter.DefaultTable,
		NetfilterIntervalMS:   int(netfilter.DefaultInterval / time.Millisecond),
	}
}

// loadConfig builds the config from args: -config FILE is read first, then
// the other flags override it.
func loadConfig(args []string, stderr io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("hva", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "JSON config file (flags override it)")
	agentFlags := config.NewAgentFlags(fs, "agent node id, hva.<name> (default hva.<host name>)", "0.0.0.0:9020", "0.0.0.0:9021")
	hv := fs.String("hypervisor", "", "hypervisor driver: libvirt, dummy or auto (libvirt if libvirtd answers)")
	socket := fs.String("libvirt-socket", "", "libvirtd's socket (default "+libvirt.DefaultSocket+")")
	virtType := fs.String("virt-type", "", "libvirt domain type: qemu (TCG, default) or kvm")
	dataDir := fs.String("data-dir", "", "instance files and image cache (default "+DefaultDataDir+")")
	consoleDir := fs.String("console-dir", "", "serial console logs (default <data-dir>/_console)")
	jobsFile := fs.String("jobs-file", "", "table of finished jobs kept across restarts (default <data-dir>/_jobs.db with libvirt, none with dummy)")
	cores := fs.Int("cpu-cores", 0, "cores of the dummy host")
	mem := fs.Int64("memory-mb", 0, "memory of the dummy host in MiB")
	monitor := fs.Duration("monitor-interval", 0, "instance monitor period (default 5s)")
	softOff := fs.Duration("soft-poweroff-timeout", 0, "wait for an ACPI power-down before forcing it (default 2m)")
	fenceAfter := fs.Duration("fence-after", 0, "fence this host after so long without the managers (default 30s, 0 = never)")
	nf := fs.Bool("netfilter", false, "security groups with nftables (root; DC networks come from the config file)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *path != "" {
		if err := config.LoadFile(*path, &c); err != nil {
			return c, err
		}
	}
	agentFlags.Apply(config.AgentFields{
		NodeID: &c.NodeID, SerfAddr: &c.SerfAddr, RPCAddr: &c.RPCAddr, AdvertiseHost: &c.AdvertiseHost,
		Token: &c.Token, LogLevel: &c.LogLevel, LogFormat: &c.LogFormat, Join: &c.Join, FastGossip: &c.FastGossip,
	})
	set := config.Set
	set(&c.Hypervisor, *hv)
	set(&c.LibvirtSocket, *socket)
	set(&c.VirtType, *virtType)
	set(&c.DataDir, *dataDir)
	set(&c.ConsoleDir, *consoleDir)
	set(&c.JobsFile, *jobsFile)
	c.Netfilter = c.Netfilter || *nf
	if *cores != 0 {
		c.CPUCores = *cores
	}
	if *mem != 0 {
		c.MemoryMB = *mem
	}
	if *monitor != 0 {
		c.MonitorIntervalMS = int(*monitor / time.Millisecond)
	}
	if *softOff != 0 {
		c.SoftPoweroffTimeoutMS = int(*softOff / time.Millisecond)
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "fence-after" {
			c.FenceAfterMS = int(*fenceAfter / time.Millisecond)
		}
	})
	return c, c.Validate()
}

// Validate checks what the libraries would otherwise reject late.
func (c *Config) Validate() error {
	if !strings.HasPrefix(c.NodeID, "hva.") || len(c.NodeID) == len("hva.") {
		return fmt.Errorf("node id %q: want hva.<name>", c.NodeID)
	}
	switch c.Hypervisor {
	case hypervisorAuto, hypervisorLibvirt, hypervisorDummy:
	default:
		return fmt.Errorf("hypervisor %q: want libvirt, dummy or auto", c.Hypervisor)
	}
	if c.VirtType != "qemu" && c.VirtType != "kvm" {
		return fmt.Errorf("virt_type %q: want qemu or kvm", c.VirtType)
	}
	if c.Hypervisor != hypervisorDummy && (c.DataDir == "" || c.LibvirtSocket == "") {
		return errors.New("data_dir and libvirt_socket must be set for libvirt")
	}
	if c.ConsoleDir == "" {
		c.ConsoleDir = filepath.Join(c.DataDir, "_console")
	}
	if c.JobsFile != "" && !filepath.IsAbs(c.JobsFile) {
		return fmt.Errorf("jobs_file %q must be absolute", c.JobsFile)
	}
	if c.CPUCores < 1 || c.MemoryMB < 1 {
		return errors.New("cpu_cores and memory_mb must be at least 1")
	}
	if c.MonitorIntervalMS < 1 || c.SoftPoweroffTimeoutMS < 1 || c.ForceTerminateAfterMS < 1 || c.ShutdownTimeoutMS < 1 {
		return errors.New("monitor interval, soft poweroff timeout, force terminate wait and shutdown timeout must be positive")
	}
	if c.FenceAfterMS < 0 || c.HeartbeatMS < 0 {
		return errors.New("fence_after_ms and heartbeat_ms must not be negative")
	}
	if c.FenceAfterMS > 0 && c.HeartbeatMS >= c.FenceAfterMS {
		return errors.New("heartbeat_ms must be shorter than fence_after_ms")
	}
	if c.LocalStoreConcurrency < 1 {
		return errors.New("local_store_concurrency must be at least 1")
	}
	for name, d := range c.DcNetworks {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("dc network %q: %w", name, err)
		}
	}
	if c.Netfilter && (c.NetfilterTable == "" || c.NetfilterIntervalMS < 1) {
		return errors.New("netfilter needs a table name and a positive interval")
	}
	return nil
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }
