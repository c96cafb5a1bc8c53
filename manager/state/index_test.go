package state

import (
	"path/filepath"
	"reflect"
	"testing"

	"go.etcd.io/bbolt"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/proto"
)

type inst struct {
	ID    string  `json:"id"`
	Host  *string `json:"host_node_id"`
	State string  `json:"state"`
}

func ptr(s string) *string { return &s }

// ids walks index/key and returns the ids found, checking that each entry
// leads to the record with that id.
func ids(t *testing.T, s *Store, index, key string, reverse bool) []string {
	t.Helper()
	out := []string{}
	err := s.View(func(tx *Tx) error {
		return EachOfIn(tx, index, key, reverse, func(v *inst, _ Meta) error {
			out = append(out, v.ID)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_ = s.View(func(tx *Tx) error { n = tx.CountIn(index, key); return nil })
	if n != len(out) {
		t.Fatalf("CountIn(%s, %s) = %d, walk found %d", index, key, n, len(out))
	}
	return out
}

func TestIndexFollowsWrites(t *testing.T) {
	f := newFSM(t)
	s := f.store
	k := proto.KindInstance
	f.Apply(txnLog(t, 1, new(Builder).
		Create(k, "i-1", inst{ID: "i-1", Host: ptr("hn-a"), State: "running"}).
		Create(k, "i-2", inst{ID: "i-2", State: "scheduling"}).
		Create(k, "i-3", inst{ID: "i-3", Host: ptr("hn-a"), State: "running"}).
		Create(k, "i-4", inst{ID: "i-4", Host: ptr("hn-ab"), State: "running"})))

	if got := ids(t, s, IdxInstancesByHost, "hn-a", false); !reflect.DeepEqual(got, []string{"i-1", "i-3"}) {
		t.Fatalf("hn-a = %v", got)
	}
	if got := ids(t, s, IdxInstancesByHost, "hn-a", true); !reflect.DeepEqual(got, []string{"i-3", "i-1"}) {
		t.Fatalf("hn-a reversed = %v", got)
	}
	if got := ids(t, s, IdxInstancesByState, "running", true); !reflect.DeepEqual(got, []string{"i-4", "i-3", "i-1"}) {
		t.Fatalf("running reversed = %v", got)
	}
	if got := ids(t, s, IdxInstancesByHost, "hn-", false); len(got) != 0 {
		t.Fatalf("a key prefix matched %v", got)
	}

	// Placing, moving, clearing and deleting move the entries; a rejected
	// txn moves none.
	f.Apply(txnLog(t, 2, new(Builder).
		Update(k, "i-2", 0, inst{ID: "i-2", Host: ptr("hn-a"), State: "pending"}).
		Update(k, "i-1", 0, inst{ID: "i-1", Host: ptr("hn-ab"), State: "running"}).
		Update(k, "i-3", 0, inst{ID: "i-3", State: "stopped"}).
		Delete(k, "i-4", 0)))
	if res := f.Apply(txnLog(t, 3, new(Builder).
		Update(k, "i-2", 0, inst{ID: "i-2", Host: ptr("hn-z"), State: "running"}).
		Create(k, "i-1", inst{ID: "i-1"}))); res == nil {
		t.Fatal("conflicting txn applied")
	}
	for _, c := range []struct {
		index, key string
		want       []string
	}{
		{IdxInstancesByHost, "hn-a", []string{"i-2"}},
		{IdxInstancesByHost, "hn-ab", []string{"i-1"}},
		{IdxInstancesByHost, "hn-z", []string{}},
		{IdxInstancesByState, "running", []string{"i-1"}},
		{IdxInstancesByState, "scheduling", []string{}},
		{IdxInstancesByState, "pending", []string{"i-2"}},
		{IdxInstancesByState, "stopped", []string{"i-3"}},
	} {
		if got := ids(t, s, c.index, c.key, false); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %s = %v, want %v", c.index, c.key, got, c.want)
		}
	}
}

// An existing state.db without the current index table (an older version,
// or a snapshot from one) gets its indexes rebuilt when opened, equal to the
// ones the FSM maintains write by write.
func TestIndexesRebuiltOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f := NewFSM(s, logging.NewTest(t))
	k := proto.KindInstance
	for i, h := range []string{"hn-a", "hn-b", "hn-a", "", "hn-b"} {
		id := "i-" + string(rune('1'+i))
		v := inst{ID: id, State: "running"}
		if h != "" {
			v.Host = ptr(h)
		}
		f.Apply(txnLog(t, uint64(i+1), new(Builder).Create(k, id, v)))
	}
	f.Apply(txnLog(t, 6, new(Builder).Delete(k, "i-3", 0)))
	want := dumpAll(t, f)
	if len(want["x/"+IdxInstancesByHost]) != 3 {
		t.Fatalf("host index = %v", want["x/"+IdxInstancesByHost])
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Make it an old file: no index buckets, no schema.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, ix := range Indexes() {
			if tx.Bucket(indexBucket(ix.Name)) == nil {
				continue
			}
			if err := tx.DeleteBucket(indexBucket(ix.Name)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Delete(indexSchemaKey)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	var got map[string]map[string]string
	_ = s2.View(func(tx *Tx) error { got = tx.Buckets(); return nil })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rebuilt state differs:\n got %v\nwant %v", got, want)
	}
}

func TestWalksWithoutDecoding(t *testing.T) {
	f := newFSM(t)
	k := proto.KindInstance
	f.Apply(txnLog(t, 1, new(Builder).
		Create(k, "i-1", inst{ID: "i-1", State: "running"}).
		Create(k, "i-2", inst{ID: "i-2", State: "scheduling"}).
		Create(proto.KindUniqueName, "mac/525400000001", rec{ID: "mac/525400000001"}).
		Create(proto.KindUniqueName, "hostname/a/x", rec{ID: "hostname/a/x"}).
		Create(proto.KindUniqueName, "mac/525400000002", rec{ID: "mac/525400000002"})))
	f.Apply(txnLog(t, 2, new(Builder).Create(k, "i-3", inst{ID: "i-3", State: "running"}).Delete(k, "i-1", 0)))
	_ = f.store.View(func(tx *Tx) error {
		var macs []string
		_ = tx.EachIDWithPrefix(proto.KindUniqueName, "mac/", func(id string) error {
			macs = append(macs, id)
			return nil
		})
		if !reflect.DeepEqual(macs, []string{"mac/525400000001", "mac/525400000002"}) {
			t.Errorf("mac ids = %v", macs)
		}
		var after []uint64
		_ = tx.EachAfter(k, 2, func(e Entry) error {
			after = append(after, e.Seq)
			return nil
		})
		// Seqs: i-1 1, i-2 2, claims 3-5, i-3 6; i-1 is gone.
		if !reflect.DeepEqual(after, []uint64{6}) {
			t.Errorf("records after seq 2 = %v", after)
		}
		if got := tx.CountsIn(IdxInstancesByState); !reflect.DeepEqual(got, map[string]int{"running": 1, "scheduling": 1}) {
			t.Errorf("counts by state = %v", got)
		}
		return nil
	})
}
