package chaos

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// StaleRead is a `?stale=true` read of group Key from one manager: that
// manager answers from its own copy, which may lag the leader's. What it
// still promises:
//
//  1. a value it returns was written: by a create or put called before the
//     read returned, and not refused;
//  2. per manager, reads that follow each other never go back: not to a
//     value whose write completed before the write of a value already seen
//     began, not to "absent" unless a delete was called, and never to a
//     value once the group was seen deleted (ids are never reused).
type StaleRead struct {
	Manager      string
	Key          string
	Call, Return int64
	Found        bool
	Value        string
}

// CheckStale returns the violations of those promises in reads, given the
// security-group history kv (whose writes carry unique values).
func CheckStale(kv []porcupine.Operation, reads []StaleRead) []string {
	writes := map[string]porcupine.Operation{} // by value written
	deletes := map[string][]porcupine.Operation{}
	for _, op := range kv {
		in, out := op.Input.(KVInput), op.Output.(KVOutput)
		if out.Outcome == Refused || out.Outcome == Failed || out.Outcome == NotFound {
			continue
		}
		switch in.Op {
		case KVCreate, KVPut:
			writes[in.Key+"\x00"+in.Value] = op
		case KVDelete:
			deletes[in.Key] = append(deletes[in.Key], op)
		}
	}
	var bad []string
	type stream struct{ manager, key string }
	streams := map[stream][]StaleRead{}
	for _, r := range reads {
		if r.Found {
			w, ok := writes[r.Key+"\x00"+r.Value]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: stale read of %s at %s returned %q, which no create or put wrote",
					r.Manager, r.Key, ms(r.Call), r.Value))
				continue
			}
			if w.Call > r.Return {
				bad = append(bad, fmt.Sprintf("%s: stale read of %s [%s, %s] returned %q, written later (call %s)",
					r.Manager, r.Key, ms(r.Call), ms(r.Return), r.Value, ms(w.Call)))
				continue
			}
		}
		s := stream{r.Manager, r.Key}
		streams[s] = append(streams[s], r)
	}
	deleteBefore := func(key string, t int64) bool {
		for _, d := range deletes[key] {
			if d.Call <= t {
				return true
			}
		}
		return false
	}
	for s, rs := range streams {
		sort.Slice(rs, func(i, j int) bool { return rs[i].Call < rs[j].Call })
		for j, r2 := range rs {
			for _, r1 := range rs[:j] {
				if r1.Return >= r2.Call {
					continue // overlapping: no order between them
				}
				switch {
				case r1.Found && r2.Found && r1.Value != r2.Value:
					w1 := writes[s.key+"\x00"+r1.Value]
					w2 := writes[s.key+"\x00"+r2.Value]
					if w2.Return != EndOfTime && w2.Return < w1.Call {
						bad = append(bad, fmt.Sprintf("%s: stale reads of %s went back: %q at %s, then %q at %s "+
							"(whose write ended at %s, before the write of %q began at %s)",
							s.manager, s.key, r1.Value, ms(r1.Call), r2.Value, ms(r2.Call), ms(w2.Return), r1.Value, ms(w1.Call)))
					}
				case r1.Found && !r2.Found:
					if !deleteBefore(s.key, r2.Return) {
						bad = append(bad, fmt.Sprintf("%s: stale reads of %s went back: %q at %s, then absent at %s with no delete called",
							s.manager, s.key, r1.Value, ms(r1.Call), ms(r2.Call)))
					}
				case !r1.Found && r2.Found:
					// Absent after present is a delete; present again is a
					// resurrection.
					for _, r0 := range rs[:j] {
						if r0.Found && r0.Return < r1.Call {
							bad = append(bad, fmt.Sprintf("%s: stale reads of %s: %q at %s, absent at %s, then %q at %s (back from deletion)",
								s.manager, s.key, r0.Value, ms(r0.Call), ms(r1.Call), r2.Value, ms(r2.Call)))
							break
						}
					}
				}
			}
		}
	}
	sort.Strings(bad)
	return dedupe(bad)
}

func dedupe(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func ms(t int64) string {
	if t == EndOfTime {
		return "∞"
	}
	return fmt.Sprintf("%.1fms", float64(t)/1e6)
}
