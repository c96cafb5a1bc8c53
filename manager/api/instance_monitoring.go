package api

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Instance monitoring (spec §2.1 items 15–19 and the `monitoring` parameter
// of POST/PUT /instances). Upstream kept it in resource labels
// (monitoring.enabled, monitoring.items.<id>.title, …); here it is the
// instance record's `monitoring` field with the shape of instMonitoring, so
// it changes under the instance's ModifyIndex like every other field.
//
// Every change publishes instance.monitoring.refreshed [instance_id] after
// commit ([instance_id, monitor_id] for a deleted item, as upstream).

// instMonitoring is the stored shape of Instance.Monitoring.
type instMonitoring struct {
	Enabled     bool          `json:"enabled"`
	MailAddress []string      `json:"mail_address"`
	Items       []monitorItem `json:"items"`
	// Seq numbers the items: ids are imon-<instance uuid part><seq>.
	Seq int `json:"seq"`
}

// monitorItem is one monitoring item.
type monitorItem struct {
	ID      string         `json:"id"`
	Title   string         `json:"title"`
	Enabled bool           `json:"enabled"`
	Params  map[string]any `json:"params"`
}

// instanceMonitoring decodes the instance's monitoring (empty when unset).
func instanceMonitoring(v *proto.Instance) *instMonitoring {
	m := &instMonitoring{}
	if v.Monitoring != nil {
		if raw, err := json.Marshal(v.Monitoring); err == nil {
			_ = json.Unmarshal(raw, m)
		}
	}
	if m.MailAddress == nil {
		m.MailAddress = []string{}
	}
	if m.Items == nil {
		m.Items = []monitorItem{}
	}
	return m
}

// store encodes m for Instance.Monitoring.
func (m *instMonitoring) store() map[string]any {
	raw, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

func (m *instMonitoring) nextID(instanceID string) string {
	m.Seq++
	return "imon-" + strings.TrimPrefix(instanceID, proto.PrefixInstance+"-") + strconv.Itoa(m.Seq)
}

func (m *instMonitoring) find(id string) int {
	for i := range m.Items {
		if m.Items[i].ID == id {
			return i
		}
	}
	return -1
}

// setFromParams applies a `monitoring` hash: enabled ("true"), mail_address
// (a string, an array or an index hash; "" clears) and, when withItems,
// items (an array or a hash of {title, enabled, params}; ids are assigned by
// the caller).
func (m *instMonitoring) setFromParams(p params.Params, withItems bool) error {
	if p.Has("enabled") {
		m.Enabled = p.IsTrue("enabled")
	}
	if p.Has("mail_address") {
		addrs, ok := p.Strings("mail_address")
		if !ok {
			return errs.New(errs.InvalidParameter, "monitoring.mail_address")
		}
		m.MailAddress = []string{}
		for _, s := range addrs {
			if s = strings.TrimSpace(s); s != "" {
				m.MailAddress = append(m.MailAddress, s)
			}
		}
	}
	if !withItems || !p.Has("items") {
		return nil
	}
	var raw []any
	switch x := p.Get("items").(type) {
	case []any:
		raw = x
	case nil:
	default:
		h, ok := asParams(x)
		if !ok {
			return errs.New(errs.InvalidParameter, "monitoring.items")
		}
		keys, ok := params.Params{"x": indexKeys(h)}.Strings("x")
		if !ok {
			return errs.New(errs.InvalidParameter, "monitoring.items")
		}
		for _, k := range keys {
			raw = append(raw, h[k])
		}
	}
	for _, it := range raw {
		ip, ok := asParams(it)
		if !ok {
			return errs.New(errs.InvalidParameter, "monitoring.items")
		}
		item, err := newMonitorItem(ip)
		if err != nil {
			return err
		}
		m.Items = append(m.Items, item)
	}
	return nil
}

// newMonitorItem reads {title, enabled, params}: title and enabled are
// required (400/143 "Invalid parameter combination"), params a hash.
func newMonitorItem(p params.Params) (monitorItem, error) {
	if !p.Has("title") || !p.Has("enabled") {
		return monitorItem{}, errs.New(errs.InvalidParameter, "Invalid parameter combination")
	}
	item := monitorItem{Title: p.Str("title"), Enabled: p.IsTrue("enabled"), Params: map[string]any{}}
	if p.Has("params") {
		mp, err := itemParams(p)
		if err != nil {
			return item, err
		}
		item.Params = mp
	}
	return item, nil
}

func itemParams(p params.Params) (map[string]any, error) {
	if s, ok := p.StrOK("params"); ok && s == "" {
		return map[string]any{}, nil
	}
	mp, ok := p.Map("params")
	if !ok {
		return nil, errs.New(errs.InvalidParameter, "params")
	}
	return map[string]any(mp), nil
}

// itemBody is {enabled, title, params}.
func itemBody(it *monitorItem) *format.Map {
	ps := it.Params
	if ps == nil {
		ps = map[string]any{}
	}
	return format.NewMap(3).Set("enabled", it.Enabled).Set("title", it.Title).Set("params", ps)
}

// itemDoc is {uuid, title, enabled, params}.
func itemDoc(it *monitorItem) *format.Map {
	ps := it.Params
	if ps == nil {
		ps = map[string]any{}
	}
	return format.NewMap(4).Set("uuid", it.ID).Set("title", it.Title).Set("enabled", it.Enabled).Set("params", ps)
}

func itemsDoc(m *instMonitoring) *format.Map {
	out := format.NewMap(len(m.Items))
	for i := range m.Items {
		out.Set(m.Items[i].ID, itemBody(&m.Items[i]))
	}
	return out
}

// monitoringDoc is the instance document's monitoring.
func monitoringDoc(v *proto.Instance) *format.Map {
	m := instanceMonitoring(v)
	return format.NewMap(3).
		Set("enabled", m.Enabled).
		Set("mail_address", m.MailAddress).
		Set("items", itemsDoc(m))
}

func (a *API) listInstanceMonitoring(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getInstance(tx, req, "instance_id")
		if err != nil {
			return nil, err
		}
		return itemsDoc(instanceMonitoring(v)), nil
	})
}

func unknownMonitor(id string) error { return errs.New(errs.UnknownUUIDResource, "%s", id) }

func (a *API) showInstanceMonitoring(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getInstance(tx, req, "instance_id")
		if err != nil {
			return nil, err
		}
		m := instanceMonitoring(v)
		i := m.find(req.ID("monitor_id"))
		if i < 0 {
			return nil, unknownMonitor(req.ID("monitor_id"))
		}
		return itemBody(&m.Items[i]), nil
	})
}

// changeMonitoring rewrites the instance's monitoring with change, which
// returns the response, and publishes instance.monitoring.refreshed with the
// instance's id followed by extra.
func (a *API) changeMonitoring(ctx context.Context, req *Request, change func(v *proto.Instance, m *instMonitoring) (any, error), extra ...string) (any, error) {
	var id string
	out, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, vm, err := getInstance(tx, req, "instance_id")
		if err != nil {
			return nil, err
		}
		m := instanceMonitoring(v)
		out, err := change(v, m)
		if err != nil {
			return nil, err
		}
		v.Monitoring = m.store()
		v.UpdatedAt = a.now()
		b.Update(proto.KindInstance, v.ID, vm.ModifyIndex, v)
		id = v.ID
		return func(*state.Tx) (any, error) { return out, nil }, nil
	})
	if err != nil {
		return nil, err
	}
	a.publish(ctx, proto.Event{Name: proto.EventInstanceMonitorRefresh, Args: append([]string{id}, extra...)})
	return out, nil
}

func (a *API) createInstanceMonitoring(ctx context.Context, req *Request) (any, error) {
	item, err := newMonitorItem(req.Params)
	if err != nil {
		return nil, err
	}
	return a.changeMonitoring(ctx, req, func(v *proto.Instance, m *instMonitoring) (any, error) {
		it := item
		it.ID = m.nextID(v.ID)
		m.Items = append(m.Items, it)
		return itemDoc(&it), nil
	})
}

func (a *API) updateInstanceMonitoring(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	var ps map[string]any
	if p.Has("params") && p.Get("params") != nil {
		var err error
		if ps, err = itemParams(p); err != nil {
			return nil, err
		}
	}
	return a.changeMonitoring(ctx, req, func(_ *proto.Instance, m *instMonitoring) (any, error) {
		i := m.find(req.ID("monitor_id"))
		if i < 0 {
			return nil, unknownMonitor(req.ID("monitor_id"))
		}
		it := &m.Items[i]
		// Only non-blank values change the item, as upstream.
		if s := p.Str("enabled"); s != "" {
			it.Enabled = s == "true"
		}
		if s := p.Str("title"); s != "" {
			it.Title = s
		}
		if len(ps) > 0 {
			it.Params = ps
		}
		return itemDoc(it), nil
	})
}

func (a *API) deleteInstanceMonitoring(ctx context.Context, req *Request) (any, error) {
	return a.changeMonitoring(ctx, req, func(_ *proto.Instance, m *instMonitoring) (any, error) {
		id := req.ID("monitor_id")
		i := m.find(id)
		if i < 0 {
			return nil, unknownMonitor(id)
		}
		m.Items = append(m.Items[:i:i], m.Items[i+1:]...)
		return []any{id}, nil
	}, req.ID("monitor_id"))
}
