// Package state is the manager's state machine: a bbolt file with one bucket
// per resource kind, changed only by typed commands applied through raft.
//
// Layout of state.db:
//
//	meta                 "last_index" -> last applied raft index; "seq" -> last sequence number;
//	                     "kidx/<kind>" -> raft index of the last write to <kind>
//	r/<kind>             seq (8 bytes BE) -> record (8B create index, 8B modify index, JSON)
//	i/<kind>             id -> seq
//	x/<index>            secondary indexes (index.go, indexes.go)
//
// Records are keyed by a sequence number so that lists come out in creation
// order without sorting (the 12.03 default order is newest first), and by id
// through the index bucket for point reads.
package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"github.com/vdc-project/vdc/common/errs"
)

var (
	bucketMeta   = []byte("meta")
	keyLastIndex = []byte("last_index")
	keySeq       = []byte("seq")
)

func recBucket(kind string) []byte { return []byte("r/" + kind) }
func idxBucket(kind string) []byte { return []byte("i/" + kind) }
func kindIndexKey(kind string) []byte {
	return []byte("kidx/" + kind)
}

// Store owns state.db. Reads run in bbolt read transactions; writes come only
// from the FSM. Restore swaps the file, so the db pointer is guarded.
type Store struct {
	path string
	ix   *indexSet
	mu   sync.RWMutex
	db   *bbolt.DB
}

// Open opens (creating if needed) the state file at path.
func Open(path string) (*Store, error) {
	ix := newIndexSet(Indexes())
	db, err := openDB(path, ix)
	if err != nil {
		return nil, err
	}
	return &Store{path: path, ix: ix, db: db}, nil
}

func openDB(path string, ix *indexSet) (*bbolt.DB, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 5 * time.Second, FreelistType: bbolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init state %s: %w", path, err)
	}
	if err := ix.ensure(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("build indexes of state %s: %w", path, err)
	}
	return db, nil
}

// Close closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.db.Close()
}

// Path is the file's location.
func (s *Store) Path() string { return s.path }

// View runs fn in a consistent read transaction.
func (s *Store) View(fn func(*Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.View(func(btx *bbolt.Tx) error { return fn(&Tx{btx: btx, ix: s.ix}) })
}

// LastIndex is the raft index of the last applied command.
func (s *Store) LastIndex() uint64 {
	var idx uint64
	_ = s.View(func(tx *Tx) error { idx = tx.LastIndex(); return nil })
	return idx
}

// update runs fn in a write transaction; only the FSM calls it.
func (s *Store) update(fn func(*bbolt.Tx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.db.Update(fn)
}

// Meta is the bookkeeping the store keeps for every record.
type Meta struct {
	Seq         uint64 // creation order, unique across kinds
	CreateIndex uint64 // raft index of the create
	ModifyIndex uint64 // raft index of the last write; the compare-and-set token
}

// Entry is one stored record.
type Entry struct {
	Meta
	Value []byte // JSON; valid only inside the transaction
}

// Tx is a read transaction.
type Tx struct {
	btx *bbolt.Tx
	ix  *indexSet
}

// LastIndex is the raft index of the last applied command.
func (t *Tx) LastIndex() uint64 { return getU64(t.btx.Bucket(bucketMeta), keyLastIndex) }

// KindIndex is the raft index of the last write to any record of kind.
func (t *Tx) KindIndex(kind string) uint64 {
	return getU64(t.btx.Bucket(bucketMeta), kindIndexKey(kind))
}

// Raw returns the record kind/id.
func (t *Tx) Raw(kind, id string) (Entry, bool) {
	ib := t.btx.Bucket(idxBucket(kind))
	if ib == nil {
		return Entry{}, false
	}
	seq := ib.Get([]byte(id))
	if seq == nil {
		return Entry{}, false
	}
	v := t.btx.Bucket(recBucket(kind)).Get(seq)
	if v == nil {
		return Entry{}, false
	}
	return decodeEntry(binary.BigEndian.Uint64(seq), v), true
}

// Get decodes the record kind/id into v. A missing record is errs.NotFound.
func (t *Tx) Get(kind, id string, v any) (Meta, error) {
	e, ok := t.Raw(kind, id)
	if !ok {
		return Meta{}, errs.New(errs.NotFound, "%s %s not found", kind, id)
	}
	if err := json.Unmarshal(e.Value, v); err != nil {
		return Meta{}, fmt.Errorf("decode %s %s: %w", kind, id, err)
	}
	return e.Meta, nil
}

// Exists reports whether kind/id is stored.
func (t *Tx) Exists(kind, id string) bool {
	ib := t.btx.Bucket(idxBucket(kind))
	return ib != nil && ib.Get([]byte(id)) != nil
}

// Count is the number of records of kind.
func (t *Tx) Count(kind string) int {
	ib := t.btx.Bucket(idxBucket(kind))
	if ib == nil {
		return 0
	}
	return ib.Stats().KeyN
}

// ErrStop ends an Each iteration early without an error.
var ErrStop = errors.New("stop iteration")

// Each calls fn for every record of kind in creation order (newest first when
// reverse). Returning ErrStop ends the walk.
func (t *Tx) Each(kind string, reverse bool, fn func(Entry) error) error {
	rb := t.btx.Bucket(recBucket(kind))
	if rb == nil {
		return nil
	}
	c := rb.Cursor()
	var k, v []byte
	if reverse {
		k, v = c.Last()
	} else {
		k, v = c.First()
	}
	for k != nil {
		if err := fn(decodeEntry(binary.BigEndian.Uint64(k), v)); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
		if reverse {
			k, v = c.Prev()
		} else {
			k, v = c.Next()
		}
	}
	return nil
}

// Buckets lists every bucket with its keys and values, for tests comparing
// two stores byte for byte.
func (t *Tx) Buckets() map[string]map[string]string {
	out := map[string]map[string]string{}
	_ = t.btx.ForEach(func(name []byte, b *bbolt.Bucket) error {
		m := map[string]string{}
		_ = b.ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil })
		out[string(name)] = m
		return nil
	})
	return out
}

func decodeEntry(seq uint64, v []byte) Entry {
	return Entry{
		Meta: Meta{
			Seq:         seq,
			CreateIndex: binary.BigEndian.Uint64(v[0:8]),
			ModifyIndex: binary.BigEndian.Uint64(v[8:16]),
		},
		Value: v[16:],
	}
}

func encodeEntry(createIdx, modIdx uint64, val []byte) []byte {
	out := make([]byte, 16+len(val))
	binary.BigEndian.PutUint64(out[0:8], createIdx)
	binary.BigEndian.PutUint64(out[8:16], modIdx)
	copy(out[16:], val)
	return out
}

func getU64(b *bbolt.Bucket, k []byte) uint64 {
	if b == nil {
		return 0
	}
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putU64(b *bbolt.Bucket, k []byte, n uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], n)
	return b.Put(k, buf[:])
}

func u64Key(n uint64) []byte {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], n)
	return buf[:]
}

// replaceFile swaps the store's file for the one at tmp (already verified).
func (s *Store) replaceFile(tmp string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state for restore: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		// Reopen the old file so the store stays usable.
		db, oerr := openDB(s.path, s.ix)
		if oerr == nil {
			s.db = db
		}
		return fmt.Errorf("swap state file: %w", err)
	}
	db, err := openDB(s.path, s.ix)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}
