package jobtable

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/vdc-project/vdc/proto"
)

var bucket = []byte("finished_jobs")

// lockWait is how long Open waits for another process to let go of the
// file (two agents configured with one table) before it fails.
const lockWait = 2 * time.Second

// File is a Table in a bbolt file. Every Put is one fsynced transaction:
// a result an agent answered with is on disk.
type File struct {
	db *bbolt.DB
}

// Open opens the table at path, creating it (and its directory) if need
// be.
func Open(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open job table: %w", err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockWait})
	if err != nil {
		return nil, fmt.Errorf("open job table %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open job table %s: %w", path, err)
	}
	return &File{db: db}, nil
}

// Put implements Table.
func (f *File) Put(rec Record) error {
	if err := check(rec); err != nil {
		return err
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode job %s: %w", rec.Result.JobID, err)
	}
	err = f.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(rec.Result.JobID), v)
	})
	if err != nil {
		return fmt.Errorf("store job %s: %w", rec.Result.JobID, err)
	}
	return nil
}

// Load implements Table.
func (f *File) Load() ([]Record, error) {
	var out []Record
	err := f.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("job %s: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load job table: %w", err)
	}
	sortOldestFirst(out)
	return out, nil
}

// Prune implements Table.
func (f *File) Prune(cutoff time.Time, keep int) (int, error) {
	n := 0
	err := f.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucket)
		var recs []Record
		err := b.ForEach(func(k, v []byte) error {
			var r Record
			if json.Unmarshal(v, &r) != nil {
				// Unreadable: nothing could answer from it.
				r = Record{Result: proto.JobResult{JobID: string(k)}}
			}
			recs = append(recs, r)
			return nil
		})
		if err != nil {
			return err
		}
		gone := pruned(recs, cutoff, keep)
		for _, id := range gone {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		n = len(gone)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune job table: %w", err)
	}
	return n, nil
}

// Close implements Table.
func (f *File) Close() error { return f.db.Close() }

func check(rec Record) error {
	if rec.Result.JobID == "" {
		return errors.New("job table: record without a job id")
	}
	return nil
}

func sortOldestFirst(recs []Record) {
	slices.SortStableFunc(recs, func(a, b Record) int {
		if c := a.StoredAt.Compare(b.StoredAt); c != 0 {
			return c
		}
		// Equal times (a coarse clock): a stable order all the same.
		switch {
		case a.Result.JobID < b.Result.JobID:
			return -1
		case a.Result.JobID > b.Result.JobID:
			return 1
		}
		return 0
	})
}

// pruned lists the job ids Prune deletes from recs.
func pruned(recs []Record, cutoff time.Time, keep int) []string {
	sortOldestFirst(recs)
	var gone []string
	kept := recs[:0:0]
	for _, r := range recs {
		if r.StoredAt.Before(cutoff) {
			gone = append(gone, r.Result.JobID)
		} else {
			kept = append(kept, r)
		}
	}
	if over := len(kept) - max(keep, 0); over > 0 {
		for _, r := range kept[:over] {
			gone = append(gone, r.Result.JobID)
		}
	}
	return gone
}
