package netfilter

import (
	"context"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/hypervisor"
	"github.com/vdc-project/vdc/proto"
)

// HostNetwork is what the handlers plug vnics with (handlers.HostNetwork).
type HostNetwork interface {
	Plug(ctx context.Context, nics []hypervisor.NIC) error
	Unplug(ctx context.Context, vifIDs []string) error
}

// Vnics is a HostNetwork that says when the host's vnics come and go: after
// Plug it publishes <node>/vnic_created(vif) for each vnic, after Unplug
// <node>/vnic_destroyed(vif) (spec §3), and calls Changed (the netfilter
// service's Trigger), so that the host's rules follow without waiting for
// the event to come back through serf.
type Vnics struct {
	Inner     HostNetwork
	NodeID    string
	Publisher Publisher // nil: no events
	Changed   func()    // nil: nothing to tell
	Logger    *slog.Logger
}

// Plug implements HostNetwork.
func (v *Vnics) Plug(ctx context.Context, nics []hypervisor.NIC) error {
	if err := v.Inner.Plug(ctx, nics); err != nil {
		return err
	}
	ids := make([]string, 0, len(nics))
	for _, n := range nics {
		ids = append(ids, n.VifID)
	}
	v.tell(ctx, proto.EventVnicCreated(v.NodeID), ids)
	return nil
}

// Unplug implements HostNetwork. The events go out even when part of the
// unplugging failed: the managers' state decides the rules, not the taps.
func (v *Vnics) Unplug(ctx context.Context, vifIDs []string) error {
	err := v.Inner.Unplug(ctx, vifIDs)
	v.tell(ctx, proto.EventVnicDestroyed(v.NodeID), vifIDs)
	return err
}

func (v *Vnics) tell(ctx context.Context, name string, ids []string) {
	if v.Changed != nil {
		v.Changed()
	}
	if v.Publisher == nil {
		return
	}
	logger := v.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	// Best effort and short: a publish must not hold a boot.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, id := range ids {
		if err := v.Publisher.Publish(ctx, proto.Event{Name: name, Args: []string{id}}); err != nil {
			logger.WarnContext(ctx, "publish event", "event", name, "vif_id", id, "error", err)
		}
	}
}

// LocalVifs reads the vifs the managers place on node (those Reconcile of
// hva/network keeps).
func LocalVifs(src Source, node string) func(context.Context) ([]string, error) {
	return func(ctx context.Context) ([]string, error) {
		d, err := src.NetfilterData(ctx, node)
		if err != nil {
			return nil, err
		}
		ids := make([]string, 0, len(d.Vnics))
		for _, v := range d.Vnics {
			ids = append(ids, v.ID)
		}
		return ids, nil
	}
}
