// Command dbstats prints where the bytes of a bbolt file go: per top-level
// bucket its keys, leaf and branch pages (allocated and in use), inline
// buckets and fill, and for raft-boltdb's "logs" bucket the entries kept
// (first and last index, total and largest entry). It opens the file
// read-only; copy a live manager's file first (bbolt locks it).
//
//	dbstats state.db [raft.db ...]
package main

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/vdc-project/vdc/manager/state"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dbstats FILE...")
		os.Exit(2)
	}
	for _, p := range os.Args[1:] {
		if err := stats(os.Stdout, p); err != nil {
			fmt.Fprintln(os.Stderr, "dbstats:", err)
			os.Exit(1)
		}
	}
}

type row struct {
	name string
	s    bbolt.BucketStats
	vals int64 // sum of value lengths (raw payload)
	keys int64 // sum of key lengths
}

func stats(w io.Writer, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		var rows []row
		err := tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			r := row{name: string(name), s: b.Stats()}
			_ = b.ForEach(func(k, v []byte) error {
				r.keys += int64(len(k))
				r.vals += int64(len(v))
				return nil
			})
			rows = append(rows, r)
			return nil
		})
		if err != nil {
			return err
		}
		sort.Slice(rows, func(i, j int) bool { return alloc(rows[i].s) > alloc(rows[j].s) })
		st := db.Stats()
		fmt.Fprintf(w, "%s: file %d B, page %d B, tx size %d B, free pages %d (%d B), pending %d\n",
			path, fi.Size(), db.Info().PageSize, tx.Size(), st.FreePageN, st.FreeAlloc, st.PendingPageN)
		fmt.Fprintf(w, "%-22s %9s %10s %10s %11s %11s %6s %10s %8s %8s\n",
			"bucket", "keys", "keyB", "valB", "leafAlloc", "leafInuse", "fill%", "branchAll", "inline", "depth")
		var total int
		for _, r := range rows {
			fill := 0.0
			if r.s.LeafAlloc > 0 {
				fill = 100 * float64(r.s.LeafInuse) / float64(r.s.LeafAlloc)
			}
			total += alloc(r.s)
			fmt.Fprintf(w, "%-22s %9d %10d %10d %11d %11d %6.1f %10d %8d %8d\n", r.name, r.s.KeyN, r.keys, r.vals,
				r.s.LeafAlloc, r.s.LeafInuse, fill, r.s.BranchAlloc, r.s.InlineBucketN, r.s.Depth)
		}
		fmt.Fprintf(w, "%-22s %54d (allocated to buckets)\n", "total", total)
		if b := tx.Bucket([]byte("logs")); b != nil {
			raftLogs(w, b)
		}
		return nil
	})
}

func alloc(s bbolt.BucketStats) int { return s.LeafAlloc + s.BranchAlloc }

// raftLogs summarises raft-boltdb's log bucket (key: 8-byte big-endian index).
func raftLogs(w io.Writer, b *bbolt.Bucket) {
	var n, total, largest int64
	var first, last uint64
	byKind := map[string]*[3]int64{} // ops, value bytes, largest value
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var l raft.Log
		if err := codec.NewDecoderBytes(v, &codec.MsgpackHandle{}).Decode(&l); err == nil &&
			l.Type == raft.LogCommand && len(l.Data) > 0 && state.CommandType(l.Data[0]) == state.CmdTxn {
			var t state.Txn
			if t.UnmarshalBinary(l.Data[1:]) == nil {
				for _, op := range t.Ops {
					s := byKind[op.Kind]
					if s == nil {
						s = new([3]int64)
						byKind[op.Kind] = s
					}
					s[0]++
					s[1] += int64(len(op.Value))
					s[2] = max(s[2], int64(len(op.Value)))
				}
			}
		}
		idx := binary.BigEndian.Uint64(k)
		if n == 0 {
			first = idx
		}
		last = idx
		n++
		total += int64(len(v))
		largest = max(largest, int64(len(v)))
	}
	avg := int64(0)
	if n > 0 {
		avg = total / n
	}
	fmt.Fprintf(w, "raft log: %d entries, index %d..%d, %d B (avg %d, largest %d)\n", n, first, last, total, avg, largest)
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return byKind[kinds[i]][1] > byKind[kinds[j]][1] })
	fmt.Fprintf(w, "%-22s %9s %12s %10s\n", "txn ops by kind", "ops", "value B", "largest")
	for _, k := range kinds {
		s := byKind[k]
		fmt.Fprintf(w, "%-22s %9d %12d %10d\n", k, s[0], s[1], s[2])
	}
}
