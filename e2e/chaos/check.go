package chaos

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// LostWrites names the acknowledged writes the last read of their group
// does not show, where that read is certain: the write followed every
// other write of the group in real time (each had returned before it was
// called), and the read followed it. The linearizability check covers this
// too; this count is the direct answer to "was an acknowledged write
// lost?".
func LostWrites(kv []porcupine.Operation) []string {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range kv {
		k := op.Input.(KVInput).Key
		byKey[k] = append(byKey[k], op)
	}
	var lost []string
	for key, ops := range byKey {
		var writes []porcupine.Operation
		var final *porcupine.Operation
		for i, op := range ops {
			in, out := op.Input.(KVInput), op.Output.(KVOutput)
			if in.Op == KVGet {
				if final == nil || op.Call > final.Call {
					final = &ops[i]
				}
				continue
			}
			if out.Outcome != Refused && out.Outcome != Failed {
				writes = append(writes, op)
			}
		}
		if final == nil || len(writes) == 0 {
			continue
		}
		sort.Slice(writes, func(i, j int) bool { return writes[i].Call < writes[j].Call })
		last := writes[len(writes)-1]
		if last.Output.(KVOutput).Outcome != OK || final.Call <= last.Return {
			continue
		}
		certain := true
		for _, w := range writes[:len(writes)-1] {
			certain = certain && w.Return < last.Call
		}
		if !certain {
			continue
		}
		in, got := last.Input.(KVInput), final.Output.(KVOutput)
		switch {
		case in.Op == KVDelete && got.Outcome != NotFound:
			lost = append(lost, fmt.Sprintf("%s: delete acknowledged at %s, last read at %s finds %q",
				key, ms(last.Return), ms(final.Call), got.Value))
		case in.Op != KVDelete && (got.Outcome != OK || got.Value != in.Value):
			lost = append(lost, fmt.Sprintf("%s: %s of %q acknowledged at %s, last read at %s finds %s %q",
				key, in.Op, in.Value, ms(last.Return), ms(final.Call), got.Outcome, got.Value))
		}
	}
	sort.Strings(lost)
	return lost
}
