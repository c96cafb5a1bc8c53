package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Resource labels (spec §2.1 items 22–29). Labels live in the labelled
// record's `labels` array, so a label write is an update of that record and
// races with other writes to it are settled by its ModifyIndex.
//
// The helper works on the record's JSON (account_id, service_type, labels)
// rather than on a Go type, so any kind whose record has those fields gets the
// eight routes with one registerLabels call.

// Label value types: values up to 255 bytes are strings, longer ones blobs.
const (
	labelTypeString = 1
	labelTypeBlob   = 2
	labelStringMax  = 255
	labelNameMax    = 255
)

func labelValueType(v string) int {
	if len(v) <= labelStringMax {
		return labelTypeString
	}
	return labelTypeBlob
}

// labelDoc is {resource_uuid, name, value_type, value, created_at, updated_at}.
func labelDoc(resourceID string, l proto.Label) *format.Map {
	return format.NewMap(6).
		Set("resource_uuid", resourceID).
		Set("name", l.Name).
		Set("value_type", l.ValueType).
		Set("value", l.Value).
		Set("created_at", l.CreatedAt).
		Set("updated_at", l.UpdatedAt)
}

// labelDocs renders a record's labels; never nil, so documents show [].
func labelDocs(resourceID string, ls []proto.Label) []any {
	out := make([]any, 0, len(ls))
	for _, l := range ls {
		out = append(out, labelDoc(resourceID, l))
	}
	return out
}

// labelPair is one name/value a request sets.
type labelPair struct{ name, value string }

func checkLabelName(name, key string) error {
	if name == "" || len(name) > labelNameMax {
		return errs.New(errs.InvalidParameter, "%s", key)
	}
	return nil
}

// checkLabelValue rejects a missing or blank value, as the create routes'
// `labels` parameter does; an empty label is better expressed by deleting it.
func checkLabelValue(value string, ok bool, key string) error {
	if !ok || value == "" {
		return errs.New(errs.InvalidParameter, "%s", key)
	}
	return nil
}

// labelList reads an array of {name, value} hashes: `key[][name]=…&key[][value]=…`
// (an array) or `key[0][name]=…` (a hash with index keys).
func labelList(v any, key string) ([]labelPair, error) {
	var items []any
	switch t := v.(type) {
	case []any:
		items = t
	case map[string]any:
		idx, ok := params.Params{"x": indexKeys(t)}.Strings("x")
		if !ok {
			return nil, errs.New(errs.InvalidParameter, "%s", key)
		}
		for _, k := range idx {
			items = append(items, t[k])
		}
	default:
		return nil, errs.New(errs.InvalidParameter, "%s", key)
	}
	out := make([]labelPair, 0, len(items))
	for _, it := range items {
		var h params.Params
		switch m := it.(type) {
		case map[string]any:
			h = m
		case params.Params:
			h = m
		default:
			return nil, errs.New(errs.InvalidParameter, "%s", key)
		}
		name, _ := h.StrOK("name")
		if err := checkLabelName(name, key); err != nil {
			return nil, err
		}
		value, ok := h.StrOK("value")
		if err := checkLabelValue(value, ok, key); err != nil {
			return nil, err
		}
		out = append(out, labelPair{name, value})
	}
	return out, nil
}

// indexKeys maps each key of an index-keyed hash to itself, so that
// params' numeric ordering of {"0":…, "10":…, "2":…} can be reused.
func indexKeys(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k := range m {
		out[k] = k
	}
	return out
}

// createLabels reads the optional `labels` parameter of a create route.
func createLabels(p params.Params, now time.Time) ([]proto.Label, error) {
	v, ok := p["labels"]
	if !ok || v == nil {
		return []proto.Label{}, nil
	}
	pairs, err := labelList(v, "labels")
	if err != nil {
		return nil, err
	}
	return setLabels(nil, pairs, now), nil
}

// setLabels sets each pair on ls (a later pair with the same name wins) and
// returns the new slice; existing labels keep their position and created_at.
func setLabels(ls []proto.Label, pairs []labelPair, now time.Time) []proto.Label {
	out := append([]proto.Label{}, ls...)
	for _, p := range pairs {
		l := proto.Label{Name: p.name, Value: p.value, ValueType: labelValueType(p.value), CreatedAt: now, UpdatedAt: now}
		replaced := false
		for i := range out {
			if out[i].Name == p.name {
				l.CreatedAt = out[i].CreatedAt
				out[i] = l
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, l)
		}
	}
	return out
}

// labeledRecord is what the label routes read from any labelled record.
type labeledRecord struct {
	AccountID   string        `json:"account_id"`
	ServiceType string        `json:"service_type"`
	Labels      []proto.Label `json:"labels"`
}

// labelRoutes serves the label routes of one kind.
type labelRoutes struct {
	a      *API
	kind   string
	prefix string
}

// registerLabels mounts the eight label routes under base/{id}/labels.
func (a *API) registerLabels(base, kind, prefix string) {
	l := &labelRoutes{a: a, kind: kind, prefix: prefix}
	a.route("GET "+base+"/{id}/labels", read, l.list)
	a.route("GET "+base+"/{id}/labels/{name}", read, l.show)
	a.route("POST "+base+"/{id}/labels", write, l.setMany)
	a.route("PUT "+base+"/{id}/labels", write, l.setMany)
	a.route("POST "+base+"/{id}/labels/{name}", write, l.setOne)
	a.route("PUT "+base+"/{id}/labels/{name}", write, l.setOne)
	a.route("DELETE "+base+"/{id}/labels", write, l.deleteMany)
	a.route("DELETE "+base+"/{id}/labels/{name}", write, l.deleteOne)
}

// get looks the labelled record up. Upstream the label routes skipped the
// account check and crashed (500) on an unknown id; here they apply the
// ownership rules of every other member route: bad syntax 400/143, unknown
// id or another account's record (or another service_type) 404/100.
func (l *labelRoutes) get(tx *state.Tx, req *Request) (string, labeledRecord, state.Entry, error) {
	var r labeledRecord
	id := req.ID("id")
	if err := checkUUID(id, l.prefix); err != nil {
		return id, r, state.Entry{}, err
	}
	e, ok := tx.Raw(l.kind, id)
	if !ok {
		return id, r, e, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return id, r, e, fmt.Errorf("decode %s %s: %w", l.kind, id, err)
	}
	if req.Account != "" && r.AccountID != req.Account {
		return id, r, e, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	if st := req.Params.Str("service_type"); st != "" && r.ServiceType != st {
		return id, r, e, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	return id, r, e, nil
}

// list: GET /:id/labels — bare array; `name` is a prefix match.
func (l *labelRoutes) list(_ context.Context, req *Request) (any, error) {
	return l.a.view(func(tx *state.Tx) (any, error) {
		id, r, _, err := l.get(tx, req)
		if err != nil {
			return nil, err
		}
		prefix := req.Params.Str("name")
		out := []any{}
		for _, lb := range r.Labels {
			if strings.HasPrefix(lb.Name, prefix) {
				out = append(out, labelDoc(id, lb))
			}
		}
		return out, nil
	})
}

func findLabel(ls []proto.Label, name string) (proto.Label, bool) {
	for _, l := range ls {
		if l.Name == name {
			return l, true
		}
	}
	return proto.Label{}, false
}

func unknownLabel(name string) error {
	return errs.New(errs.UnknownResourceLabel, "%s", name)
}

// show: GET /:id/labels/:name — 404/187 when the label is missing.
func (l *labelRoutes) show(_ context.Context, req *Request) (any, error) {
	return l.a.view(func(tx *state.Tx) (any, error) {
		id, r, _, err := l.get(tx, req)
		if err != nil {
			return nil, err
		}
		lb, ok := findLabel(r.Labels, req.ID("name"))
		if !ok {
			return nil, unknownLabel(req.ID("name"))
		}
		return labelDoc(id, lb), nil
	})
}

// update rewrites the record's labels with change. change returns the new
// labels and whether anything changed (nothing is written otherwise); done
// renders the response from the committed labels.
func (l *labelRoutes) update(ctx context.Context, req *Request,
	change func(ls []proto.Label) ([]proto.Label, bool, error),
	done func(id string, ls []proto.Label) (any, error)) (any, error) {
	return l.a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		id, r, e, err := l.get(tx, req)
		if err != nil {
			return nil, err
		}
		ls, changed, err := change(r.Labels)
		if err != nil {
			return nil, err
		}
		if changed {
			// Rewrite only the labels key and keep every other field as stored,
			// whatever the record's Go type.
			var rec map[string]json.RawMessage
			if err := json.Unmarshal(e.Value, &rec); err != nil {
				return nil, fmt.Errorf("decode %s %s: %w", l.kind, id, err)
			}
			raw, err := json.Marshal(ls)
			if err != nil {
				return nil, err
			}
			rec["labels"] = raw
			b.Update(l.kind, id, e.ModifyIndex, rec)
		}
		return func(tx *state.Tx) (any, error) {
			var cur labeledRecord
			if _, err := tx.Get(l.kind, id, &cur); err != nil {
				return nil, err
			}
			return done(id, cur.Labels)
		}, nil
	})
}

// setOne: POST/PUT /:id/labels/:name with `value` → the label document.
func (l *labelRoutes) setOne(ctx context.Context, req *Request) (any, error) {
	name := req.ID("name")
	if err := checkLabelName(name, "name"); err != nil {
		return nil, err
	}
	value, ok := req.Params.StrOK("value")
	if err := checkLabelValue(value, ok, "value"); err != nil {
		return nil, err
	}
	now := l.a.now()
	return l.update(ctx, req, func(ls []proto.Label) ([]proto.Label, bool, error) {
		return setLabels(ls, []labelPair{{name, value}}, now), true, nil
	}, func(id string, ls []proto.Label) (any, error) {
		lb, _ := findLabel(ls, name)
		return labelDoc(id, lb), nil
	})
}

// bulkPairs reads `name[]`+`value[]` (equal length) or `label[][name]`+
// `label[][value]`; anything else is 400/143.
func bulkPairs(p params.Params) ([]labelPair, error) {
	if p.Has("name") || p.Has("value") {
		names, ok1 := p.Strings("name")
		values, ok2 := p.Strings("value")
		if !ok1 || !ok2 || len(names) != len(values) || len(names) == 0 {
			return nil, errs.New(errs.InvalidParameter, "name and value must be arrays of equal length")
		}
		out := make([]labelPair, len(names))
		for i := range names {
			if err := checkLabelName(names[i], "name"); err != nil {
				return nil, err
			}
			if err := checkLabelValue(values[i], true, "value"); err != nil {
				return nil, err
			}
			out[i] = labelPair{names[i], values[i]}
		}
		return out, nil
	}
	if v, ok := p["label"]; ok {
		pairs, err := labelList(v, "label")
		if err == nil && len(pairs) == 0 {
			err = errs.New(errs.InvalidParameter, "label")
		}
		return pairs, err
	}
	return nil, errs.New(errs.InvalidParameter, "name[] and value[], or label[][name] and label[][value], are required")
}

// setMany: POST/PUT /:id/labels — sets every given label; both verbs upsert
// (labels not named are kept). Response: the set labels' documents in request
// order, one per distinct name.
func (l *labelRoutes) setMany(ctx context.Context, req *Request) (any, error) {
	pairs, err := bulkPairs(req.Params)
	if err != nil {
		return nil, err
	}
	now := l.a.now()
	return l.update(ctx, req, func(ls []proto.Label) ([]proto.Label, bool, error) {
		return setLabels(ls, pairs, now), true, nil
	}, func(id string, ls []proto.Label) (any, error) {
		out := []any{}
		seen := map[string]bool{}
		for _, p := range pairs {
			if seen[p.name] {
				continue
			}
			seen[p.name] = true
			lb, _ := findLabel(ls, p.name)
			out = append(out, labelDoc(id, lb))
		}
		return out, nil
	})
}

// removeLabels drops the named labels (all when names is nil).
func removeLabels(ls []proto.Label, names []string) ([]proto.Label, bool) {
	if names == nil {
		return []proto.Label{}, len(ls) > 0
	}
	drop := map[string]bool{}
	for _, n := range names {
		drop[n] = true
	}
	out := make([]proto.Label, 0, len(ls))
	for _, l := range ls {
		if !drop[l.Name] {
			out = append(out, l)
		}
	}
	return out, len(out) != len(ls)
}

func emptyBody(string, []proto.Label) (any, error) { return Empty{}, nil }

// deleteOne: DELETE /:id/labels/:name — 200 with an empty body. Deleting a
// label that is not there is a no-op success, as upstream.
func (l *labelRoutes) deleteOne(ctx context.Context, req *Request) (any, error) {
	name := req.ID("name")
	return l.update(ctx, req, func(ls []proto.Label) ([]proto.Label, bool, error) {
		out, changed := removeLabels(ls, []string{name})
		return out, changed, nil
	}, emptyBody)
}

// deleteMany: DELETE /:id/labels. Upstream meant "clear all" but removed only
// the label named by `name`; here no `name` clears every label and `name`
// (one value or an array) removes just those.
func (l *labelRoutes) deleteMany(ctx context.Context, req *Request) (any, error) {
	var names []string
	if req.Params.Has("name") {
		ns, ok := req.Params.Strings("name")
		if !ok {
			return nil, errs.New(errs.InvalidParameter, "name")
		}
		names = append([]string{}, ns...)
	}
	return l.update(ctx, req, func(ls []proto.Label) ([]proto.Label, bool, error) {
		out, changed := removeLabels(ls, names)
		return out, changed, nil
	}, emptyBody)
}
