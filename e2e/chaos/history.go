package chaos

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// EndOfTime is the return time of an operation whose outcome is unknown:
// it may take effect at any point after its call.
const EndOfTime = math.MaxInt64 / 4

// History records operations with call and return times on one monotonic
// clock (nanoseconds since the history started).
type History struct {
	start time.Time

	mu    sync.Mutex
	kv    []porcupine.Operation
	inst  []porcupine.Operation
	stale []StaleRead
}

// NewHistory starts an empty history.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the current time on the history's clock.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// ret is the recorded return time: the end of time when the outcome is
// unknown.
func ret(o Outcome, t int64) int64 {
	if o == Unknown {
		return EndOfTime
	}
	return t
}

// AddKV records a security group operation.
func (h *History) AddKV(client int, in KVInput, call int64, out KVOutput, end int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kv = append(h.kv, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out,
		Return: ret(out.Outcome, end)})
}

// AddInst records an instance operation.
func (h *History) AddInst(client int, in InstInput, call int64, out InstOutput, end int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inst = append(h.inst, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out,
		Return: ret(out.Outcome, end)})
}

// AddStale records a stale read.
func (h *History) AddStale(r StaleRead) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stale = append(h.stale, r)
}

// KV, Inst and Stale return copies of what was recorded.
func (h *History) KV() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.kv...)
}

// Inst returns the instance operations.
func (h *History) Inst() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.inst...)
}

// Stale returns the stale reads.
func (h *History) Stale() []StaleRead {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]StaleRead(nil), h.stale...)
}

// Counts summarises operations by kind and outcome ("put/ok": 12).
func Counts(ops []porcupine.Operation) map[string]int {
	out := map[string]int{}
	for _, op := range ops {
		var kind string
		var o Outcome
		switch in := op.Input.(type) {
		case KVInput:
			kind, o = in.Op, op.Output.(KVOutput).Outcome
		case InstInput:
			kind, o = in.Op, op.Output.(InstOutput).Outcome
		}
		out[kind+"/"+o.String()]++
	}
	return out
}

// FormatCounts prints Counts sorted.
func FormatCounts(c map[string]int) string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%d", k, c[k])
	}
	return s
}

// Describe prints one partition of a history, in call order, for a
// report: times in ms since the start. The operation that makes the
// shortest non-linearizable prefix (by call time) is marked: the violation
// shows there or just before.
func Describe(m porcupine.Model, ops []porcupine.Operation) string {
	ops = append([]porcupine.Operation(nil), ops...)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	lo, hi := 0, len(ops) // ops[:lo] linearizable, ops[:hi] not (if the whole is not)
	for lo+1 < hi {
		mid := (lo + hi) / 2
		if porcupine.CheckOperations(m, ops[:mid]) {
			lo = mid
		} else {
			hi = mid
		}
	}
	s := ""
	for i, op := range ops {
		mark := ""
		if i == hi-1 && !porcupine.CheckOperations(m, ops) {
			mark = "   <-- shortest non-linearizable prefix ends here"
		}
		r := "∞"
		if op.Return != EndOfTime {
			r = fmt.Sprintf("%.1f", float64(op.Return)/1e6)
		}
		s += fmt.Sprintf("  c%d [%.1f, %s] %s%s\n", op.ClientId, float64(op.Call)/1e6, r,
			m.DescribeOperation(op.Input, op.Output), mark)
	}
	return s
}
