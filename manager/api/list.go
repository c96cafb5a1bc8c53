package api

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
)

// defaultLimit is what a missing or < 1 `limit` becomes (§1.8).
const defaultLimit = 250

type nilFilter struct {
	key     string
	wantNil bool
}

type dateRange struct {
	key          string // document key, e.g. created_at
	since, until *time.Time
}

// listOpts are the envelope parameters of §1.8.
type listOpts struct {
	start, limit int
	sortKey      string
	desc         bool
	nils         []nilFilter
	ranges       []dateRange
}

// needDocs says whether filtering or sorting must look at rendered documents.
func (o *listOpts) needDocs() bool {
	return o.sortKey != "" || len(o.nils) > 0 || len(o.ranges) > 0
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isWordChar(s[i]) {
			return false
		}
	}
	return true
}

// parseListOpts reads start, limit, sort_by, filter and the date ranges.
func parseListOpts(req *Request) (listOpts, error) {
	o := listOpts{limit: defaultLimit}
	p := req.Params
	if p.Has("start") {
		v := p.Str("start")
		if !digits(v) || len(v) > 9 {
			return o, errs.New(errs.InvalidParameter, "start")
		}
		o.start, _ = strconv.Atoi(v)
	}
	if p.Has("limit") {
		v := p.Str("limit")
		if !digits(v) || len(v) > 9 {
			return o, errs.New(errs.InvalidParameter, "limit")
		}
		if n, _ := strconv.Atoi(v); n >= 1 {
			o.limit = n
		}
	}
	if req.maxLimit > 0 && o.limit > req.maxLimit {
		o.limit = req.maxLimit
	}
	if p.Has("sort_by") {
		v := p.Str("sort_by")
		col, dir, hasDir := strings.Cut(v, ".")
		if !isWord(col) || (hasDir && dir != "asc" && dir != "desc") {
			return o, errs.New(errs.InvalidParameter, "sort_by")
		}
		// A bare column crashed upstream; it sorts ascending here.
		o.sortKey, o.desc = col, dir == "desc"
	}
	if p.Has("filter") {
		fs, ok := p.Strings("filter")
		if !ok {
			return o, errs.New(errs.InvalidParameter, "filter")
		}
		for _, f := range fs {
			col, op, hasOp := strings.Cut(f, ".")
			if !isWord(col) || (hasOp && op != "nil" && op != "not_nil") {
				return o, errs.New(errs.InvalidParameter, "filter")
			}
			if hasOp {
				// A bare column is accepted and ignored, as upstream.
				o.nils = append(o.nils, nilFilter{key: col, wantNil: op == "nil"})
			}
		}
	}
	for _, name := range []string{"created", "terminated", "deleted"} {
		var r dateRange
		for _, end := range []string{"since", "until"} {
			key := name + "_" + end
			if !p.Has(key) {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, p.Str(key))
			if err != nil {
				return o, errs.New(errs.InvalidParameter, "%s", key)
			}
			t = t.UTC()
			if end == "since" {
				r.since = &t
			} else {
				r.until = &t
			}
		}
		if r.since == nil && r.until == nil {
			continue
		}
		if r.since != nil && r.until != nil && !r.since.Before(*r.until) {
			return o, errs.New(errs.InvalidParameter, "%s_since is not before %s_until", name, name)
		}
		r.key = name + "_at"
		o.ranges = append(o.ranges, r)
	}
	return o, nil
}

// envelope is the list document of §1.8.
func envelope(total int, o listOpts, results []any) []any {
	if results == nil {
		results = []any{}
	}
	return []any{format.NewMap(4).
		Set("total", total).
		Set("start", o.start).
		Set("limit", o.limit).
		Set("results", results)}
}

// docFn renders one record.
type docFn[T any] func(tx *state.Tx, v *T, m state.Meta) (*format.Map, error)

// list answers a list route over kind: records are filtered with match (nil =
// all), newest first, then the envelope parameters apply.
func list[T any](a *API, req *Request, kind string, match func(*T) bool, doc docFn[T]) (any, error) {
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	return a.view(func(tx *state.Tx) (any, error) {
		return listTx(tx, o, kind, match, doc)
	})
}

func listTx[T any](tx *state.Tx, o listOpts, kind string, match func(*T) bool, doc docFn[T]) (any, error) {
	return listWalk(tx, o, kind, walkKind(tx, kind), match, doc)
}

// walkKind walks every record of kind, newest first.
func walkKind(tx *state.Tx, kind string) func(func(state.Entry) error) error {
	return func(fn func(state.Entry) error) error { return tx.Each(kind, true, fn) }
}

// walkIndex walks the records index finds under key, newest first (a
// filter that an index answers, such as the instances in one state: the
// others are never read).
func walkIndex(tx *state.Tx, index, key string) func(func(state.Entry) error) error {
	return func(fn func(state.Entry) error) error {
		return tx.EachIn(index, key, true, func(_ string, e state.Entry) error { return fn(e) })
	}
}

// listWalk is the list over the records walk yields, newest first.
func listWalk[T any](tx *state.Tx, o listOpts, kind string, walk func(func(state.Entry) error) error, match func(*T) bool, doc docFn[T]) (any, error) {
	return listCore(tx, o, kind, walk, func(e state.Entry) (*T, bool, error) {
		v := new(T)
		if err := json.Unmarshal(e.Value, v); err != nil {
			return nil, false, fmt.Errorf("decode %s: %w", kind, err)
		}
		return v, match == nil || match(v), nil
	}, doc)
}

// listWalkLite is listWalk for a filter that reads only a few fields: match
// sees the projection L of each record, kept in c across requests, and
// only the records on the page are decoded whole. A list must decode every
// record of its filter to count them (the envelope's total), and with
// thousands of instances that JSON decoding was the list's whole cost.
func listWalkLite[T, L any](tx *state.Tx, o listOpts, kind string, walk func(func(state.Entry) error) error, c *liteCache[L], match func(*L) bool, doc docFn[T]) (any, error) {
	return listCore(tx, o, kind, walk, func(e state.Entry) (*T, bool, error) {
		l, err := c.get(e)
		if err != nil {
			return nil, false, fmt.Errorf("decode %s: %w", kind, err)
		}
		return nil, match(&l), nil
	}, doc)
}

// listCore walks the records newest first. pick says whether a record is
// listed and may return it decoded (nil: it is decoded when its document
// is needed).
func listCore[T any](tx *state.Tx, o listOpts, kind string, walk func(func(state.Entry) error) error, pick func(state.Entry) (*T, bool, error), doc docFn[T]) (any, error) {
	var (
		total   int
		results []any
		docs    []*format.Map
	)
	render := func(v *T, e state.Entry) (*format.Map, error) {
		if v == nil {
			v = new(T)
			if err := json.Unmarshal(e.Value, v); err != nil {
				return nil, fmt.Errorf("decode %s: %w", kind, err)
			}
		}
		return doc(tx, v, e.Meta)
	}
	err := walk(func(e state.Entry) error {
		v, ok, err := pick(e)
		if err != nil || !ok {
			return err
		}
		if o.needDocs() {
			d, err := render(v, e)
			if err != nil {
				return err
			}
			ok, err := o.keep(d)
			if err != nil || !ok {
				return err
			}
			docs = append(docs, d)
			return nil
		}
		if total >= o.start && total < o.start+o.limit {
			d, err := render(v, e)
			if err != nil {
				return err
			}
			results = append(results, d)
		}
		total++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !o.needDocs() {
		return envelope(total, o, results), nil
	}
	if o.sortKey != "" {
		if err := sortDocs(docs, o.sortKey, o.desc); err != nil {
			return nil, err
		}
	}
	total = len(docs)
	for i := o.start; i < total && i < o.start+o.limit; i++ {
		results = append(results, docs[i])
	}
	return envelope(total, o, results), nil
}

// liteCache keeps a projection L of records (the fields a list filter
// reads) by seq, each valid for the ModifyIndex it was decoded at: a
// record's content at a given ModifyIndex (a raft index) never changes,
// so an entry is never stale, only unused.
type liteCache[L any] struct {
	mu sync.Mutex
	m  map[uint64]liteEntry[L]
}

type liteEntry[L any] struct {
	mod uint64
	v   L
}

// maxLiteEntries bounds a liteCache; past it, it starts over (deleted
// records' entries go then).
const maxLiteEntries = 200_000

// get returns the projection of e.
func (c *liteCache[L]) get(e state.Entry) (L, error) {
	c.mu.Lock()
	le, ok := c.m[e.Seq]
	c.mu.Unlock()
	if ok && le.mod == e.ModifyIndex {
		return le.v, nil
	}
	var v L
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxLiteEntries {
		c.m = map[uint64]liteEntry[L]{}
	}
	c.m[e.Seq] = liteEntry[L]{mod: e.ModifyIndex, v: v}
	c.mu.Unlock()
	return v, nil
}

func noColumn(key string) error {
	return errs.New(errs.DatabaseError, "Sequel::DatabaseError: no such column: %s", key)
}

// keep applies the nil filters and date ranges to a rendered document.
func (o *listOpts) keep(d *format.Map) (bool, error) {
	for _, f := range o.nils {
		v, ok := d.Get(f.key)
		if !ok {
			return false, noColumn(f.key)
		}
		if isNil(v) != f.wantNil {
			return false, nil
		}
	}
	for _, r := range o.ranges {
		v, ok := d.Get(r.key)
		if !ok {
			return false, noColumn(r.key)
		}
		t, ok := asTime(v)
		if !ok {
			return false, nil
		}
		if (r.since != nil && t.Before(*r.since)) || (r.until != nil && t.After(*r.until)) {
			return false, nil
		}
	}
	return true, nil
}

func isNil(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case *time.Time:
		return t == nil
	case *string:
		return t == nil
	}
	return false
}

func asTime(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t, true
	case *time.Time:
		if t != nil {
			return *t, true
		}
	}
	return time.Time{}, false
}

// sortDocs orders documents by key; nil sorts first, as NULL does in MySQL.
func sortDocs(docs []*format.Map, key string, desc bool) error {
	if len(docs) > 0 {
		if _, ok := docs[0].Get(key); !ok {
			return noColumn(key)
		}
	}
	sort.SliceStable(docs, func(i, j int) bool {
		vi, _ := docs[i].Get(key)
		vj, _ := docs[j].Get(key)
		c := compareValues(vi, vj)
		if desc {
			return c > 0
		}
		return c < 0
	})
	return nil
}

func compareValues(a, b any) int {
	an, bn := isNil(a), isNil(b)
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	}
	if ta, ok := asTime(a); ok {
		if tb, ok := asTime(b); ok {
			return ta.Compare(tb)
		}
	}
	if fa, ok := asFloat(a); ok {
		if fb, ok := asFloat(b); ok {
			switch {
			case fa < fb:
				return -1
			case fa > fb:
				return 1
			}
			return 0
		}
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func asFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	case bool:
		if n {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}
