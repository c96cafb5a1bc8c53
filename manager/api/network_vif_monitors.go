package api

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Network vif monitors (spec §2.9 items 5–9): what an external monitoring
// gateway watches on a vif, as network_vif_monitors records deleted
// logically. Every change also writes the vif (its updated_at), so changes
// of one vif's monitors and the vif's destruction (which deletes them)
// serialize on the vif's ModifyIndex. After commit each change publishes
// vif.monitoring.created/updated/deleted [vif, monitor] and, when the vif
// belongs to an instance, instance.monitoring.refreshed [instance].

func (a *API) registerNetworkVifMonitors() {
	a.route("GET /network_vifs/{vif_id}/monitors", read, a.listVifMonitors)
	a.route("POST /network_vifs/{vif_id}/monitors", write, a.createVifMonitors)
	a.route("GET /network_vifs/{vif_id}/monitors/{monitor_id}", read, a.showVifMonitor)
	a.route("PUT /network_vifs/{vif_id}/monitors/{monitor_id}", write, a.updateVifMonitor)
	a.route("DELETE /network_vifs/{vif_id}/monitors/{monitor_id}", write, a.deleteVifMonitor)
}

// vifMonitorDoc is the raw row of network_vif_monitors. network_vif_id was
// the vif's integer key upstream; here it is the vif's uuid (there are no
// integer keys).
func vifMonitorDoc(v *proto.NetworkVifMonitor) *format.Map {
	ps := v.Params
	if ps == nil {
		ps = map[string]any{}
	}
	return format.NewMap(9).
		Set("id", v.ID).
		Set("uuid", v.ID).
		Set("network_vif_id", v.NetworkVifID).
		Set("enabled", v.Enabled).
		Set("title", v.Title).
		Set("params", ps).
		Set("deleted_at", v.DeletedAt).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt)
}

// vifMonitor is a monitor with the ModifyIndex it was read at.
type vifMonitor struct {
	proto.NetworkVifMonitor
	meta state.Meta
}

// aliveVifMonitors returns the vif's monitors that are not deleted, in
// creation order.
func aliveVifMonitors(tx *state.Tx, vifID string) ([]vifMonitor, error) {
	var out []vifMonitor
	err := tx.Each(proto.KindNetworkVifMonitor, false, func(e state.Entry) error {
		var m proto.NetworkVifMonitor
		if err := decodeInto(e, &m); err != nil {
			return err
		}
		if m.NetworkVifID == vifID && m.DeletedAt == nil {
			out = append(out, vifMonitor{m, e.Meta})
		}
		return nil
	})
	return out, err
}

// vifMonitorDocs are the documents of the vif's alive monitors (the vif
// document's network_monitors).
func vifMonitorDocs(tx *state.Tx, vifID string) ([]any, error) {
	ms, err := aliveVifMonitors(tx, vifID)
	out := make([]any, 0, len(ms))
	for i := range ms {
		out = append(out, vifMonitorDoc(&ms[i].NetworkVifMonitor))
	}
	return out, err
}

// getVifMonitor finds an alive monitor of vif: bad syntax 400/143, unknown,
// deleted or another vif's 404/100.
func getVifMonitor(tx *state.Tx, vif *proto.NetworkVif, id string) (*vifMonitor, error) {
	m, meta, err := getPub[proto.NetworkVifMonitor](tx, proto.KindNetworkVifMonitor, proto.PrefixNetworkVifMonitor, id)
	if err != nil {
		return nil, err
	}
	if m.NetworkVifID != vif.ID || m.DeletedAt != nil {
		return nil, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	return &vifMonitor{*m, meta}, nil
}

// setMonitorFields applies enabled ("true" is true), title and params (a
// hash, or "" for none; anything else 400/143) when given.
func setMonitorFields(p params.Params, m *proto.NetworkVifMonitor) error {
	if p.Has("enabled") {
		m.Enabled = p.Str("enabled") == "true"
	}
	if p.Has("title") {
		m.Title = p.Str("title")
	}
	if p.Has("params") {
		ps, err := itemParams(p)
		if err != nil {
			return err
		}
		m.Params = ps
	}
	if m.Params == nil {
		m.Params = map[string]any{}
	}
	return nil
}

// newVifMonitor reads a monitor to create: title and enabled are required
// (400/143 "Invalid parameter combination", as the instance monitoring items).
func newVifMonitor(p params.Params, vifID string, now time.Time) (proto.NetworkVifMonitor, error) {
	if !p.Has("title") || !p.Has("enabled") {
		return proto.NetworkVifMonitor{}, errs.New(errs.InvalidParameter, "Invalid parameter combination")
	}
	m := proto.NetworkVifMonitor{ID: newID(proto.PrefixNetworkVifMonitor), Timestamps: stamps(now), NetworkVifID: vifID}
	return m, setMonitorFields(p, &m)
}

// monitorEvents collects the events of one vif's monitor changes.
type monitorEvents struct {
	vif  *proto.NetworkVif
	list []proto.Event
}

func (e *monitorEvents) add(name, monitorID string) {
	e.list = append(e.list, proto.Event{Name: name, Args: []string{e.vif.ID, monitorID}})
}

// done adds instance.monitoring.refreshed when the vif is an instance's.
func (e *monitorEvents) done() []proto.Event {
	if e.vif.InstanceID != nil {
		e.list = append(e.list, proto.Event{Name: proto.EventInstanceMonitorRefresh, Args: []string{*e.vif.InstanceID}})
	}
	return e.list
}

// changeVifMonitors runs change on the caller's vif in one commit (the vif
// is written too, see the file comment) and publishes the events it
// collected once the change is committed.
func (a *API) changeVifMonitors(ctx context.Context, req *Request,
	change func(tx *state.Tx, b *state.Builder, vif *proto.NetworkVif, ev *monitorEvents, now time.Time) (renderFn, error)) (any, error) {
	var evs []proto.Event
	out, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		vif, m, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		now := a.now()
		ev := &monitorEvents{vif: vif}
		render, err := change(tx, b, vif, ev, now)
		if err != nil {
			return nil, err
		}
		vif.UpdatedAt = now
		b.Update(proto.KindNetworkVif, vif.ID, m.ModifyIndex, vif)
		evs = ev.done()
		return render, nil
	})
	if err != nil {
		return nil, err
	}
	a.publish(ctx, evs...)
	return out, nil
}

// renderMonitors renders the committed monitors with these ids.
func renderMonitors(tx *state.Tx, ids []string) ([]any, error) {
	out := make([]any, 0, len(ids))
	for _, id := range ids {
		var m proto.NetworkVifMonitor
		if _, err := tx.Get(proto.KindNetworkVifMonitor, id, &m); err != nil {
			return nil, err
		}
		out = append(out, vifMonitorDoc(&m))
	}
	return out, nil
}

func (a *API) listVifMonitors(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		vif, _, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		return vifMonitorDocs(tx, vif.ID)
	})
}

func (a *API) showVifMonitor(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		vif, _, err := getVif(tx, req)
		if err != nil {
			return nil, err
		}
		m, err := getVifMonitor(tx, vif, req.ID("monitor_id"))
		if err != nil {
			return nil, err
		}
		return vifMonitorDoc(&m.NetworkVifMonitor), nil
	})
}

// createVifMonitors: POST /network_vifs/:id/monitors. `monitors` (a hash or
// array of {uuid?, enabled, title, params}) replaces the vif's monitors:
// those listed by uuid are updated, those without one created, the others
// deleted → {deleted: [uuids], updated: [docs], created: [docs]}. `title`
// and `enabled` create one monitor → its document. Neither deletes every
// monitor (a bulk replace with nothing) → the bulk answer. Only one of
// title and enabled was a bulk delete upstream too; here it is 400/143
// "Invalid parameter combination", as a create missing the other.
func (a *API) createVifMonitors(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	hasTitle, hasEnabled := p.Has("title"), p.Has("enabled")
	if !p.Has("monitors") && hasTitle != hasEnabled {
		return nil, errs.New(errs.InvalidParameter, "Invalid parameter combination")
	}
	if !p.Has("monitors") && hasTitle {
		return a.changeVifMonitors(ctx, req, func(_ *state.Tx, b *state.Builder, vif *proto.NetworkVif, ev *monitorEvents, now time.Time) (renderFn, error) {
			m, err := newVifMonitor(p, vif.ID, now)
			if err != nil {
				return nil, err
			}
			b.Create(proto.KindNetworkVifMonitor, m.ID, m)
			ev.add(proto.EventVifMonitoringCreated, m.ID)
			return func(tx *state.Tx) (any, error) {
				docs, err := renderMonitors(tx, []string{m.ID})
				if err != nil {
					return nil, err
				}
				return docs[0], nil
			}, nil
		})
	}
	entries, err := monitorEntries(p)
	if err != nil {
		return nil, err
	}
	return a.changeVifMonitors(ctx, req, func(tx *state.Tx, b *state.Builder, vif *proto.NetworkVif, ev *monitorEvents, now time.Time) (renderFn, error) {
		alive, err := aliveVifMonitors(tx, vif.ID)
		if err != nil {
			return nil, err
		}
		var created, updated, deleted []string
		kept := map[string]bool{}
		for _, e := range entries {
			if !e.Has("uuid") {
				m, err := newVifMonitor(e, vif.ID, now)
				if err != nil {
					return nil, err
				}
				b.Create(proto.KindNetworkVifMonitor, m.ID, m)
				created = append(created, m.ID)
				continue
			}
			id := e.Str("uuid")
			m, err := getVifMonitor(tx, vif, id)
			if err != nil {
				return nil, err
			}
			if kept[id] {
				return nil, errs.New(errs.InvalidParameter, "monitor %s is listed twice", id)
			}
			kept[id] = true
			if err := setMonitorFields(e, &m.NetworkVifMonitor); err != nil {
				return nil, err
			}
			m.UpdatedAt = now
			b.Update(proto.KindNetworkVifMonitor, m.ID, m.meta.ModifyIndex, &m.NetworkVifMonitor)
			updated = append(updated, m.ID)
		}
		for i := range alive {
			m := &alive[i]
			if kept[m.ID] {
				continue
			}
			m.DeletedAt, m.UpdatedAt = &now, now
			b.Update(proto.KindNetworkVifMonitor, m.ID, m.meta.ModifyIndex, &m.NetworkVifMonitor)
			deleted = append(deleted, m.ID)
		}
		for _, l := range []struct {
			name string
			ids  []string
		}{{proto.EventVifMonitoringDeleted, deleted}, {proto.EventVifMonitoringUpdated, updated}, {proto.EventVifMonitoringCreated, created}} {
			for _, id := range l.ids {
				ev.add(l.name, id)
			}
		}
		return func(tx *state.Tx) (any, error) {
			up, err := renderMonitors(tx, updated)
			if err != nil {
				return nil, err
			}
			cr, err := renderMonitors(tx, created)
			if err != nil {
				return nil, err
			}
			del := make([]any, 0, len(deleted))
			for _, id := range deleted {
				del = append(del, id)
			}
			return format.NewMap(3).Set("deleted", del).Set("updated", up).Set("created", cr), nil
		}, nil
	})
}

// monitorEntries reads `monitors`: a hash keyed by index (in index order),
// an array, or "" for none; every entry a hash.
func monitorEntries(p params.Params) ([]params.Params, error) {
	if !p.Has("monitors") {
		return nil, nil
	}
	var raw []any
	switch x := p.Get("monitors").(type) {
	case []any:
		raw = x
	case string:
		if x != "" {
			return nil, errs.New(errs.InvalidParameter, "monitors")
		}
	default:
		h, ok := asParams(x)
		if !ok {
			return nil, errs.New(errs.InvalidParameter, "monitors")
		}
		keys, ok := params.Params{"x": indexKeys(h)}.Strings("x")
		if !ok {
			return nil, errs.New(errs.InvalidParameter, "monitors")
		}
		for _, k := range keys {
			raw = append(raw, h[k])
		}
	}
	out := make([]params.Params, 0, len(raw))
	for _, r := range raw {
		e, ok := asParams(r)
		if !ok {
			return nil, errs.New(errs.InvalidParameter, "monitors")
		}
		out = append(out, e)
	}
	return out, nil
}

func (a *API) updateVifMonitor(ctx context.Context, req *Request) (any, error) {
	return a.changeVifMonitors(ctx, req, func(tx *state.Tx, b *state.Builder, vif *proto.NetworkVif, ev *monitorEvents, now time.Time) (renderFn, error) {
		m, err := getVifMonitor(tx, vif, req.ID("monitor_id"))
		if err != nil {
			return nil, err
		}
		if err := setMonitorFields(req.Params, &m.NetworkVifMonitor); err != nil {
			return nil, err
		}
		m.UpdatedAt = now
		b.Update(proto.KindNetworkVifMonitor, m.ID, m.meta.ModifyIndex, &m.NetworkVifMonitor)
		ev.add(proto.EventVifMonitoringUpdated, m.ID)
		return func(tx *state.Tx) (any, error) {
			docs, err := renderMonitors(tx, []string{m.ID})
			if err != nil {
				return nil, err
			}
			return docs[0], nil
		}, nil
	})
}

func (a *API) deleteVifMonitor(ctx context.Context, req *Request) (any, error) {
	return a.changeVifMonitors(ctx, req, func(tx *state.Tx, b *state.Builder, vif *proto.NetworkVif, ev *monitorEvents, now time.Time) (renderFn, error) {
		m, err := getVifMonitor(tx, vif, req.ID("monitor_id"))
		if err != nil {
			return nil, err
		}
		m.DeletedAt, m.UpdatedAt = &now, now
		b.Update(proto.KindNetworkVifMonitor, m.ID, m.meta.ModifyIndex, &m.NetworkVifMonitor)
		ev.add(proto.EventVifMonitoringDeleted, m.ID)
		return func(*state.Tx) (any, error) { return []any{m.ID}, nil }, nil
	})
}

// deleteVifMonitors adds to o the deletion of a destroyed vif's monitors.
func deleteVifMonitors(tx *state.Tx, o *opSet, vifID string) error {
	return tx.Each(proto.KindNetworkVifMonitor, false, func(e state.Entry) error {
		var m proto.NetworkVifMonitor
		if err := decodeInto(e, &m); err != nil {
			return err
		}
		if m.NetworkVifID == vifID {
			o.del(proto.KindNetworkVifMonitor, m.ID, e.ModifyIndex)
		}
		return nil
	})
}
