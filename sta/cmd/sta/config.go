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
	"github.com/vdc-project/vdc/sta/backing/file"
	"github.com/vdc-project/vdc/sta/target"
)

// Backing store drivers (sta.conf backing_store_driver).
const (
	backingRaw     = file.Raw
	backingQcow2   = file.Qcow2
	backingReflink = file.Reflink
	backingLVM     = "lvm"
	backingMemory  = "memory"
)

// Target drivers (sta.conf target_driver).
const (
	targetTgt    = "tgt"
	targetMemory = "memory"
)

// Config is the sta's configuration: defaults, then a JSON file, then
// flags. Durations are milliseconds in the file and Go durations ("5s") as
// flags.
type Config struct {
	// NodeID is the agent's identity, "sta.<name>" (spec §1.1); the storage
	// node record's node_id must equal it.
	NodeID        string   `json:"node_id"`
	SerfAddr      string   `json:"serf_addr"`
	RPCAddr       string   `json:"rpc_addr"`
	AdvertiseHost string   `json:"advertise_host"`
	Join          []string `json:"join"`
	FastGossip    bool     `json:"fast_gossip"`
	// Token is the cluster's shared RPC token (prefer the file to the flag:
	// flags show in ps).
	Token string `json:"token"`
	// Security: RPC token(s), mutual TLS files, gossip keyring (common/security).
	Security  security.Config `json:"security"`
	LogLevel  string          `json:"log_level"`
	LogFormat string          `json:"log_format"`

	Backing BackingConfig `json:"backing_store"`
	Target  TargetConfig  `json:"target"`

	// Concurrency is how many sta-handle jobs run at once (one volume is
	// worked on by one job at a time whatever this is).
	Concurrency int `json:"concurrency"`
	// ReexportIntervalMS is how often the node's volumes are exported again
	// from the managers' state (besides at start), which repairs a tgtd
	// restart; 0 = only at start.
	ReexportIntervalMS int `json:"reexport_interval_ms"`
	// ShutdownTimeoutMS is how long running jobs may take to finish on SIGTERM.
	ShutdownTimeoutMS int `json:"shutdown_timeout_ms"`
	// JobsFile is the table of finished jobs' results (common/jobtable),
	// which a restarted sta answers redeliveries from instead of running
	// the jobs again. Default: <export_path>/_jobs.db with the file drivers
	// (raw, qcow2, reflink); none with lvm or memory (results are then kept
	// in memory only).
	JobsFile string `json:"jobs_file"`
}

// BackingConfig is sta.conf backing_store_driver(type){…}.
type BackingConfig struct {
	// Driver is raw, qcow2, reflink, lvm or memory (tests, quick start).
	Driver string `json:"driver"`
	// ExportPath is the directory of the volume files (file drivers).
	ExportPath string `json:"export_path"`
	// LocalBackupStorageID names the backup storage whose objects are files
	// under LocalBackupPath on this node (backups and restores there are
	// local copies, reflink clones on the reflink driver in the same
	// filesystem). Objects of no backup storage go there too.
	LocalBackupStorageID string `json:"local_backup_storage_id"`
	LocalBackupPath      string `json:"local_backup_path"`
	// SnapshotTmpDir holds snapshots on their way to a remote backup storage.
	SnapshotTmpDir string `json:"snapshot_tmp_dir"`
	// QemuImgPath is qemu-img (qcow2 driver).
	QemuImgPath string `json:"qemu_img_path"`
	// VolumeGroup and ThinPool place LVM volumes (lvm driver).
	VolumeGroup string `json:"volume_group"`
	ThinPool    string `json:"thin_pool"`
	// MemoryBytes is the size the memory driver claims.
	MemoryBytes int64 `json:"memory_bytes"`
}

// TargetConfig is sta.conf target_driver(type){…}.
type TargetConfig struct {
	// Driver is tgt or memory (tests, quick start).
	Driver string `json:"driver"`
	// IQNPrefix names the targets: <iqn_prefix>:<volume uuid>.
	IQNPrefix  string `json:"iqn_prefix"`
	TgtadmPath string `json:"tgtadm_path"`
	// InitiatorAddress lists the initiator addresses bound to every target
	// (sta.conf initiator_address; ALL = any).
	InitiatorAddress []string `json:"initiator_address"`
	// PortalIP is the address hypervisors reach the target at, reported in
	// volume_device.storage_ip ("" = the storage node's ip_address).
	PortalIP string `json:"portal_ip"`
}

// DefaultConfig is an sta named after the host, with raw volume files in
// /var/lib/vdc/volumes exported by tgt, gossiping on 9040 and serving RPC
// on 9041 (managers use 9010/9011, hvas 9020/9021).
func DefaultConfig() Config {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	return Config{
		NodeID:    "sta." + name,
		SerfAddr:  "0.0.0.0:9040",
		RPCAddr:   "0.0.0.0:9041",
		LogLevel:  "info",
		LogFormat: "text",
		Backing: BackingConfig{
			Driver:         backingRaw,
			ExportPath:     "/var/lib/vdc/volumes",
			SnapshotTmpDir: "/var/tmp",
			QemuImgPath:    "qemu-img",
			MemoryBytes:    100 << 30,
		},
		Target: TargetConfig{
			Driver:           targetTgt,
			IQNPrefix:        target.DefaultIQNPrefix,
			TgtadmPath:       "tgtadm",
			InitiatorAddress: []string{"ALL"},
		},
		Concurrency:        4,
		ReexportIntervalMS: 60000,
		ShutdownTimeoutMS:  30000,
	}
}

// loadConfig builds the config from args: -config FILE is read first, then
// the other flags override it.
func loadConfig(args []string, stderr io.Writer) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("sta", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "JSON config file (flags override it)")
	agentFlags := config.NewAgentFlags(fs, "agent node id, sta.<name> (default sta.<host name>)", "0.0.0.0:9040", "0.0.0.0:9041")
	backingDriver := fs.String("backing-driver", "", "backing store: raw, qcow2, reflink, lvm or memory")
	exportPath := fs.String("export-path", "", "directory of the volume files (default /var/lib/vdc/volumes)")
	localBackupPath := fs.String("local-backup-path", "", "directory of this node's local backup storage")
	localBackupID := fs.String("local-backup-storage-id", "", "backup storage id (bkst-…) whose objects are in -local-backup-path")
	tmpDir := fs.String("snapshot-tmp-dir", "", "directory of snapshots on their way to a backup storage (default /var/tmp)")
	vg := fs.String("volume-group", "", "LVM volume group (lvm driver)")
	targetDriver := fs.String("target-driver", "", "storage target: tgt or memory")
	iqnPrefix := fs.String("iqn-prefix", "", "IQN prefix of the targets (default "+target.DefaultIQNPrefix+")")
	portal := fs.String("portal-ip", "", "address hypervisors reach the iSCSI target at (default: the storage node's ip_address)")
	conc := fs.Int("concurrency", 0, "sta-handle jobs run at once (default 4)")
	reexport := fs.Duration("reexport-interval", 0, "re-export the node's volumes this often (default 1m)")
	jobsFile := fs.String("jobs-file", "", "table of finished jobs kept across restarts (default <export-path>/_jobs.db with the file drivers)")
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
	set(&c.Backing.Driver, *backingDriver)
	set(&c.Backing.ExportPath, *exportPath)
	set(&c.Backing.LocalBackupPath, *localBackupPath)
	set(&c.Backing.LocalBackupStorageID, *localBackupID)
	set(&c.Backing.SnapshotTmpDir, *tmpDir)
	set(&c.Backing.VolumeGroup, *vg)
	set(&c.Target.Driver, *targetDriver)
	set(&c.Target.IQNPrefix, *iqnPrefix)
	set(&c.Target.PortalIP, *portal)
	set(&c.JobsFile, *jobsFile)
	if *conc != 0 {
		c.Concurrency = *conc
	}
	if *reexport != 0 {
		c.ReexportIntervalMS = int(*reexport / time.Millisecond)
	}
	return c, c.Validate()
}

// Validate checks what the libraries would otherwise reject late.
func (c *Config) Validate() error {
	if !strings.HasPrefix(c.NodeID, "sta.") || len(c.NodeID) == len("sta.") {
		return fmt.Errorf("node id %q: want sta.<name>", c.NodeID)
	}
	b := c.Backing
	switch b.Driver {
	case backingRaw, backingQcow2, backingReflink:
		if !filepath.IsAbs(b.ExportPath) {
			return fmt.Errorf("backing store %s: export_path %q must be an absolute directory", b.Driver, b.ExportPath)
		}
	case backingLVM:
		if b.VolumeGroup == "" {
			return errors.New("backing store lvm: volume_group is required")
		}
	case backingMemory:
		if b.MemoryBytes < 1 {
			return errors.New("backing store memory: memory_bytes must be positive")
		}
	default:
		return fmt.Errorf("backing store driver %q: want raw, qcow2, reflink, lvm or memory", b.Driver)
	}
	for name, p := range map[string]string{"snapshot_tmp_dir": b.SnapshotTmpDir, "local_backup_path": b.LocalBackupPath} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("backing store: %s %q must be absolute", name, p)
		}
	}
	if b.SnapshotTmpDir == "" {
		return errors.New("backing store: snapshot_tmp_dir is required")
	}
	if b.LocalBackupStorageID != "" && b.LocalBackupPath == "" {
		return errors.New("backing store: local_backup_storage_id needs local_backup_path")
	}
	switch c.Target.Driver {
	case targetTgt, targetMemory:
	default:
		return fmt.Errorf("target driver %q: want tgt or memory", c.Target.Driver)
	}
	if err := target.CheckPrefix(c.Target.IQNPrefix); err != nil {
		return err
	}
	if c.Concurrency < 1 {
		return errors.New("concurrency must be at least 1")
	}
	if c.ReexportIntervalMS < 0 || c.ShutdownTimeoutMS < 1 {
		return errors.New("reexport interval must not be negative, shutdown timeout must be positive")
	}
	if c.JobsFile != "" && !filepath.IsAbs(c.JobsFile) {
		return fmt.Errorf("jobs_file %q must be absolute", c.JobsFile)
	}
	return nil
}

// jobsFile is the finished-job table's path ("" for none): jobs_file, else
// <export_path>/_jobs.db with a file driver (the directory is this node's).
func (c *Config) jobsFile() string {
	if c.JobsFile != "" {
		return c.JobsFile
	}
	switch c.Backing.Driver {
	case backingRaw, backingQcow2, backingReflink:
		return filepath.Join(c.Backing.ExportPath, "_jobs.db")
	}
	return ""
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }
