package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.etcd.io/bbolt"
)

// Secondary indexes. A lookup such as "the instances on host X" or "the vifs
// of instance Y" walked every record of the kind and decoded each one; with
// thousands of instances that made every agent call and every plan O(n) and
// was most of the manager's CPU. An index maps a value derived from a record
// (its host, its instance, its state …) to the records that have it, and
// the FSM maintains it in the same bbolt transaction as the record, so it is
// never out of step with the records and replicas stay identical.
//
//	x/<index>   <key> 0x00 <seq, 8 bytes BE>  ->  id
//
// Entries of one key are in creation order (the record's seq), like Each.
// Keys are derived in Apply from the record's JSON, so they must be pure
// functions of it.

// Index derives the keys a record of Kind is found under in the index Name.
type Index struct {
	Name string
	Kind string
	// Keys returns the record's keys (none: not indexed). Keys must not
	// contain a NUL byte.
	Keys func(value []byte) ([]string, error)
}

// indexSchemaKey records, in the meta bucket, which indexes state.db holds;
// a different table (a new version) rebuilds them when the file is opened.
var indexSchemaKey = []byte("index_schema")

func indexBucket(name string) []byte { return []byte("x/" + name) }

// indexSet is the index table of a store, by kind.
type indexSet struct {
	all    []Index
	byKind map[string][]Index
	schema []byte
}

func newIndexSet(defs []Index) *indexSet {
	s := &indexSet{all: defs, byKind: map[string][]Index{}}
	var names []string
	for _, d := range defs {
		s.byKind[d.Kind] = append(s.byKind[d.Kind], d)
		names = append(names, d.Name+"@"+d.Kind)
	}
	s.schema = []byte(strings.Join(names, ","))
	return s
}

// indexEntryKey is key 0x00 seq.
func indexEntryKey(key string, seq uint64) []byte {
	out := make([]byte, 0, len(key)+9)
	out = append(out, key...)
	out = append(out, 0)
	return binary.BigEndian.AppendUint64(out, seq)
}

// update changes the index entries of record kind/id (seq) from its old value
// (nil: new record) to its new value (nil: deleted).
func (s *indexSet) update(btx *bbolt.Tx, kind, id string, seq uint64, oldVal, newVal []byte) error {
	for _, ix := range s.byKind[kind] {
		var oldKeys, newKeys []string
		var err error
		if oldVal != nil {
			if oldKeys, err = ix.Keys(oldVal); err != nil {
				return fmt.Errorf("index %s of old %s/%s: %w", ix.Name, kind, id, err)
			}
		}
		if newVal != nil {
			if newKeys, err = ix.Keys(newVal); err != nil {
				return fmt.Errorf("index %s of %s/%s: %w", ix.Name, kind, id, err)
			}
		}
		if slices.Equal(oldKeys, newKeys) {
			continue
		}
		b, err := btx.CreateBucketIfNotExists(indexBucket(ix.Name))
		if err != nil {
			return err
		}
		// Entries of one key append in seq order, like records (recordFill).
		b.FillPercent = recordFill
		for _, k := range oldKeys {
			if !slices.Contains(newKeys, k) {
				if err := b.Delete(indexEntryKey(k, seq)); err != nil {
					return err
				}
			}
		}
		for _, k := range newKeys {
			if strings.IndexByte(k, 0) >= 0 {
				return fmt.Errorf("index %s of %s/%s: key %q has a NUL byte", ix.Name, kind, id, k)
			}
			if !slices.Contains(oldKeys, k) {
				if err := b.Put(indexEntryKey(k, seq), []byte(id)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ensure rebuilds every index from the records when state.db was written
// with another index table (or none).
func (s *indexSet) ensure(db *bbolt.DB) error {
	current := true
	if err := db.View(func(tx *bbolt.Tx) error {
		current = bytes.Equal(tx.Bucket(bucketMeta).Get(indexSchemaKey), s.schema)
		return nil
	}); err != nil || current {
		return err
	}
	return db.Update(func(tx *bbolt.Tx) error {
		var old [][]byte
		_ = tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
			if bytes.HasPrefix(name, []byte("x/")) {
				old = append(old, append([]byte(nil), name...))
			}
			return nil
		})
		for _, name := range old {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		for kind := range s.byKind {
			rb := tx.Bucket(recBucket(kind))
			ib := tx.Bucket(idxBucket(kind))
			if rb == nil || ib == nil {
				continue
			}
			err := ib.ForEach(func(id, sk []byte) error {
				v := rb.Get(sk)
				if v == nil {
					return nil
				}
				return s.update(tx, kind, string(id), binary.BigEndian.Uint64(sk), nil, v[16:])
			})
			if err != nil {
				return fmt.Errorf("rebuild indexes of %s: %w", kind, err)
			}
		}
		return tx.Bucket(bucketMeta).Put(indexSchemaKey, s.schema)
	})
}

// EachIn calls fn for every record whose index entry is key, in creation
// order (newest first when reverse). Returning ErrStop ends the walk.
func (t *Tx) EachIn(index, key string, reverse bool, fn func(id string, e Entry) error) error {
	xb := t.btx.Bucket(indexBucket(index))
	if xb == nil {
		return nil
	}
	kind := t.indexKind(index)
	rb := t.btx.Bucket(recBucket(kind))
	if rb == nil {
		return nil
	}
	prefix := append([]byte(key), 0)
	c := xb.Cursor()
	var k, v []byte
	if reverse {
		// Past the last entry of key (entries are key 0x00 + 8 bytes),
		// then back one.
		end := append(append([]byte(nil), prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		if k, _ = c.Seek(end); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
	} else {
		k, v = c.Seek(prefix)
	}
	for k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8 {
		sk := k[len(prefix):]
		if rv := rb.Get(sk); rv != nil {
			if err := fn(string(v), decodeEntry(binary.BigEndian.Uint64(sk), rv)); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if reverse {
			k, v = c.Prev()
		} else {
			k, v = c.Next()
		}
	}
	return nil
}

// CountIn is the number of records whose index entry is key.
func (t *Tx) CountIn(index, key string) int {
	xb := t.btx.Bucket(indexBucket(index))
	if xb == nil {
		return 0
	}
	prefix := append([]byte(key), 0)
	n := 0
	c := xb.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(k) == len(prefix)+8; k, _ = c.Next() {
		n++
	}
	return n
}

func (t *Tx) indexKind(name string) string {
	for _, ix := range t.ix.all {
		if ix.Name == name {
			return ix.Kind
		}
	}
	panic("state: unknown index " + name)
}

// EachOf decodes every record of kind into a T, in creation order (newest
// first when reverse). Returning ErrStop ends the walk.
func EachOf[T any](tx *Tx, kind string, reverse bool, fn func(v *T, m Meta) error) error {
	return tx.Each(kind, reverse, func(e Entry) error {
		v := new(T)
		if err := json.Unmarshal(e.Value, v); err != nil {
			return fmt.Errorf("decode %s: %w", kind, err)
		}
		return fn(v, e.Meta)
	})
}

// EachOfIn decodes every record found under key in index into a T, in
// creation order (newest first when reverse).
func EachOfIn[T any](tx *Tx, index, key string, reverse bool, fn func(v *T, m Meta) error) error {
	return tx.EachIn(index, key, reverse, func(id string, e Entry) error {
		v := new(T)
		if err := json.Unmarshal(e.Value, v); err != nil {
			return fmt.Errorf("decode %s %s: %w", index, id, err)
		}
		return fn(v, e.Meta)
	})
}

// keysOf builds an Index.Keys function: the value is decoded into a T and
// pick returns its keys.
func keysOf[T any](pick func(v *T) []string) func([]byte) ([]string, error) {
	return func(b []byte) ([]string, error) {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, err
		}
		return pick(&v), nil
	}
}

// one is a key list of s, none when s is nil or empty.
func one(s *string) []string {
	if s == nil || *s == "" {
		return nil
	}
	return []string{*s}
}

// EachIDWithPrefix calls fn with every id of kind starting with prefix, in
// id order, without reading the records (uniqueness claims carry their
// value in the id: "mac/525400000001").
func (t *Tx) EachIDWithPrefix(kind, prefix string, fn func(id string) error) error {
	ib := t.btx.Bucket(idxBucket(kind))
	if ib == nil {
		return nil
	}
	p := []byte(prefix)
	c := ib.Cursor()
	for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		if err := fn(string(k)); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// EachAfter calls fn for every record of kind created after seq (Meta.Seq
// greater than seq; sequence numbers only grow), in creation order: what is
// new since a previous walk.
func (t *Tx) EachAfter(kind string, seq uint64, fn func(Entry) error) error {
	rb := t.btx.Bucket(recBucket(kind))
	if rb == nil {
		return nil
	}
	c := rb.Cursor()
	for k, v := c.Seek(u64Key(seq + 1)); k != nil; k, v = c.Next() {
		if err := fn(decodeEntry(binary.BigEndian.Uint64(k), v)); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// CountsIn counts the entries of index by key, without reading records.
func (t *Tx) CountsIn(index string) map[string]int {
	out := map[string]int{}
	xb := t.btx.Bucket(indexBucket(index))
	if xb == nil {
		return out
	}
	c := xb.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) >= 9 {
			out[string(k[:len(k)-9])]++
		}
	}
	return out
}
