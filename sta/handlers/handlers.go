// Package handlers is the sta's work: the job verbs of sta-handle.<node>
// (spec/agents.md §2.6) over a backing store (sta/backing), a storage
// target (sta/target) and the backup storages (sta/backup), reporting to
// the managers' collector endpoints; and the re-export of the node's
// volumes when the sta starts.
//
// A handler reads the volume (backup object, image) from the managers when
// it runs, never from the job's arguments, and moves it to the verb's goal
// from wherever an earlier delivery left it: jobs are delivered at least
// once, and an agent restart forgets which jobs it ran. Creates are atomic
// in the store, exports idempotent in the target, so a redelivered create
// finds either nothing or the finished volume. A create that fails leaves
// no file and no target behind; one that is interrupted (shutdown) leaves
// the volume creating for the redelivery. The one exception: when the
// update to available fails and the managers cannot say whether it was
// applied, the volume is kept rather than risk removing one they show as
// available.
package handlers

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/keylock"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/backing"
	"github.com/vdc-project/vdc/sta/backup"
	"github.com/vdc-project/vdc/sta/target"
)

// Defaults of Config fields left zero.
const (
	// DefaultProgressInterval is how often a backup reports its progress.
	DefaultProgressInterval = 2 * time.Second
	// DefaultCleanupTimeout bounds the work a failed job does after its
	// context ended (undo, report the failure).
	DefaultCleanupTimeout = 30 * time.Second
)

// Collector is what the handlers need of the managers (sta/collector.Client
// implements it; sta/collector/collectortest.Fake stands in for tests).
type Collector interface {
	GetVolume(ctx context.Context, id string) (*proto.VolumeView, error)
	UpdateVolume(ctx context.Context, req proto.UpdateVolumeRequest) error
	AvailableVolumes(ctx context.Context, nodeID string) ([]proto.VolumeView, error)
	GetBackupObject(ctx context.Context, id string) (*proto.BackupObjectView, error)
	UpdateBackupObject(ctx context.Context, req proto.UpdateBackupObjectRequest) error
	GetImage(ctx context.Context, id string) (*proto.ImageView, error)
	UpdateImage(ctx context.Context, req proto.UpdateImageRequest) error
	PostProcessBackupImage(ctx context.Context, imageID string) (bool, error)
	GetInstance(ctx context.Context, id string) (*proto.InstanceView, error)
	UpdateInstance(ctx context.Context, req proto.UpdateInstanceRequest) error
	SubmitJob(ctx context.Context, parentID, key, endpoint, verb, resourceID string, args any) (string, error)
}

// Registrar is where verbs are registered (*agent.Agent).
type Registrar interface {
	HandleJob(endpoint, verb string, h agent.JobHandler)
	Handle(endpoint, verb string, h rpc.Handler)
}

// Config configures the handlers.
type Config struct {
	// NodeID is the sta's node id (sta.demo1); it names the endpoint and
	// is the node a volume must be placed on for this sta to touch it.
	NodeID    string
	Store     backing.Store
	Target    target.Target
	Collector Collector
	Backups   *backup.Client
	// IQNPrefix names the targets: <prefix>:<volume id>.
	IQNPrefix string
	// PortalIP is the address initiators reach the target at (the
	// volume_device storage_ip); "" takes the storage node's ip_address.
	PortalIP string
	// LocalBackupStorageID and LocalBackupPath: backup objects on that
	// backup storage (or on none) are files under that directory (sta.conf
	// local_backup_storage_id, local_backup_path).
	LocalBackupStorageID string
	LocalBackupPath      string
	// TmpDir holds snapshots on their way to a backup storage (sta.conf
	// snapshot_tmp_dir).
	TmpDir string
	Logger *slog.Logger
	// ProgressInterval: see DefaultProgressInterval.
	ProgressInterval time.Duration
	// CleanupTimeout: see DefaultCleanupTimeout.
	CleanupTimeout time.Duration
}

// Handlers serves the verbs of one sta node.
type Handlers struct {
	cfg    Config
	store  backing.Store
	tg     target.Target
	coll   Collector
	logger *slog.Logger
	locks  *keylock.Map
}

// New checks cfg and returns the handlers.
func New(cfg Config) (*Handlers, error) {
	switch {
	case cfg.NodeID == "":
		return nil, errors.New("sta handlers: node id is empty")
	case cfg.Store == nil || cfg.Target == nil || cfg.Collector == nil:
		return nil, errors.New("sta handlers: backing store, target and collector are required")
	case cfg.TmpDir == "":
		return nil, errors.New("sta handlers: tmp dir is empty")
	case cfg.ProgressInterval < 0 || cfg.CleanupTimeout < 0:
		return nil, errors.New("sta handlers: intervals must not be negative")
	}
	if err := target.CheckPrefix(cfg.IQNPrefix); err != nil {
		return nil, err
	}
	if cfg.Backups == nil {
		cfg.Backups = &backup.Client{}
	}
	cfg.ProgressInterval = cmp.Or(cfg.ProgressInterval, DefaultProgressInterval)
	cfg.CleanupTimeout = cmp.Or(cfg.CleanupTimeout, DefaultCleanupTimeout)
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Handlers{
		cfg: cfg, store: cfg.Store, tg: cfg.Target, coll: cfg.Collector,
		logger: logger.With("component", "sta"),
		locks:  keylock.New(),
	}, nil
}

// Verb is one job verb the handlers serve.
type Verb struct {
	Endpoint string // full endpoint ("sta-handle.sta.demo1")
	Verb     string
	handler  agent.JobHandler
}

// Verbs lists the job verbs Register registers: every sta-handle verb of
// spec §2.6.
func (h *Handlers) Verbs() []Verb {
	ep := proto.StaHandle(h.cfg.NodeID)
	return []Verb{
		{ep, proto.VerbCreateVolume, agent.JobFunc(h.createVolume)},
		{ep, proto.VerbCreateVolumeAndRunInstance, agent.JobFunc(h.createVolumeAndRunInstance)},
		{ep, proto.VerbDeleteVolume, agent.JobFunc(h.deleteVolume)},
		{ep, proto.VerbBackupVolume, agent.JobFunc(h.backupVolume)},
		{ep, proto.VerbBackupImage, agent.JobFunc(h.backupImage)},
		{ep, proto.VerbCreateSnapshot, agent.JobFunc(h.createSnapshot)},
		{ep, proto.VerbDeleteSnapshot, agent.JobFunc(h.deleteSnapshot)},
	}
}

// Register registers the job verbs and the capacity call on r (before the
// agent starts).
func (h *Handlers) Register(r Registrar) {
	for _, v := range h.Verbs() {
		r.HandleJob(v.Endpoint, v.Verb, v.handler)
	}
	r.Handle(proto.StaHandle(h.cfg.NodeID), proto.VerbStaCapacity, rpc.Func(h.capacity))
}

// capacity answers the plain RPC verb capacity.
func (h *Handlers) capacity(ctx context.Context, _ proto.StaCapacityRequest) (proto.StaCapacityResponse, error) {
	c, err := h.store.Capacity(ctx)
	if err != nil {
		return proto.StaCapacityResponse{}, err
	}
	vols, err := h.store.List(ctx)
	if err != nil {
		return proto.StaCapacityResponse{}, err
	}
	return proto.StaCapacityResponse{BackingDriver: h.store.Driver(), TargetDriver: h.tg.Driver(),
		TotalBytes: c.Total, FreeBytes: c.Free, Volumes: len(vols)}, nil
}

// ---- helpers ----

// annotate adds what was being done to err, keeping its kind.
func annotate(err error, what string) error {
	return &errs.Error{Kind: errs.KindOf(err), Msg: what, Err: err}
}

// interrupted reports whether the job's context was cancelled rather than
// timed out: the agent is shutting down (the job will be delivered again)
// or the job was cancelled. The handler then leaves the states as they are.
func interrupted(ctx context.Context) bool { return errors.Is(ctx.Err(), context.Canceled) }

// afterwards is a context for the work a failing job still does (undo,
// report) when its own context may have ended: the deadline passed.
func (h *Handlers) afterwards(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), h.cfg.CleanupTimeout)
}

// checkNode refuses a volume placed on another storage node.
func (h *Handlers) checkNode(v *proto.VolumeView) error {
	if v.StorageNode != nil && v.StorageNode.NodeID != "" && v.StorageNode.NodeID != h.cfg.NodeID {
		return errs.New(errs.StorageNodeNotPermitted, "volume %s is on storage node %s (%s), not on this node %s",
			v.ID, v.StorageNode.ID, v.StorageNode.NodeID, h.cfg.NodeID)
	}
	if v.StoreType == proto.VolumeLocal {
		return errs.New(errs.InvalidVolumeState, "volume %s is a local volume of its hypervisor, not a storage node's", v.ID)
	}
	return nil
}

func (h *Handlers) iqn(volumeID string) string { return target.IQN(h.cfg.IQNPrefix, volumeID) }

// updateVolumeState sends update_volume with a state.
func (h *Handlers) updateVolumeState(ctx context.Context, id, state string) error {
	if err := h.coll.UpdateVolume(ctx, proto.UpdateVolumeRequest{VolumeID: id, State: &state}); err != nil {
		return annotate(err, "update volume "+id+" to "+state)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
