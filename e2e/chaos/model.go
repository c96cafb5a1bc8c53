// Package chaos checks a vdc cluster under faults (see the rig
// subpackage): concurrent API clients record a history of operations on
// security groups (a register per group) and on instances (a state
// machine whose agent-driven moves the model allows), a nemesis injects
// faults, and porcupine decides whether the history is linearizable.
// Stale reads, which promise less, are checked on their own (stale.go).
package chaos

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Outcome is how an operation ended, as far as the client can tell.
type Outcome int

const (
	// OK: the server answered 200.
	OK Outcome = iota
	// NotFound: 404, the resource does not exist (a definite answer).
	NotFound
	// Refused: 400/125, the instance's state does not allow the action
	// (nothing was applied, and the state is one that refuses it).
	Refused
	// Failed: certainly not applied, and saying nothing about the state:
	// the connection could not be made, or another 4xx (validation, a
	// conflict that outlasted the retries).
	Failed
	// Unknown: timeout, a connection lost after the request was sent, or a
	// 5xx: the write may or may not have been applied, now or later.
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case NotFound:
		return "404"
	case Refused:
		return "refused"
	case Failed:
		return "failed"
	default:
		return "unknown"
	}
}

// ---- security groups: one register per group ----

// KV operation kinds.
const (
	KVCreate = "create"
	KVPut    = "put"
	KVGet    = "get"
	KVDelete = "delete"
)

// KVInput is one operation on the group named Key (its display_name,
// unique per run, so that a create whose answer was lost can still be
// found).
type KVInput struct {
	Op    string
	Key   string
	Value string // description written by create and put
}

// KVOutput is its result. Value is what a get read.
type KVOutput struct {
	Outcome Outcome
	Value   string
}

// kvState is one group as the model sees it.
type kvState struct {
	Exists bool
	Value  string
}

// KVModel is a register per key with create-once, put, get and delete.
// An operation with an Unknown outcome is applied as if it succeeded: one
// that never took effect is linearized after the last read, where it
// changes nothing observed (its return time is the end of time).
var KVModel = porcupine.Model{
	Partition: partitionBy(func(in any) string { return in.(KVInput).Key }),
	Init:      func() any { return kvState{} },
	Step: func(st, in, out any) (bool, any) {
		s, i, o := st.(kvState), in.(KVInput), out.(KVOutput)
		if o.Outcome == Failed || o.Outcome == Refused {
			return true, s // not applied; says nothing about the state
		}
		switch i.Op {
		case KVCreate:
			switch o.Outcome {
			case OK:
				return !s.Exists, kvState{Exists: true, Value: i.Value}
			case Unknown:
				if s.Exists {
					return true, s
				}
				return true, kvState{Exists: true, Value: i.Value}
			}
			return false, s
		case KVPut:
			switch o.Outcome {
			case OK:
				return s.Exists, kvState{Exists: true, Value: i.Value}
			case NotFound:
				return !s.Exists, s
			case Unknown:
				if s.Exists {
					return true, kvState{Exists: true, Value: i.Value}
				}
				return true, s
			}
		case KVDelete:
			switch o.Outcome {
			case OK:
				return s.Exists, kvState{}
			case NotFound:
				return !s.Exists, s
			case Unknown:
				return true, kvState{}
			}
		case KVGet:
			switch o.Outcome {
			case OK:
				return s.Exists && s.Value == o.Value, s
			case NotFound:
				return !s.Exists, s
			}
		}
		return false, s
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(KVInput), out.(KVOutput)
		switch {
		case i.Op == KVGet && o.Outcome == OK:
			return fmt.Sprintf("get(%s) -> %q", i.Key, o.Value)
		case i.Op == KVGet || i.Op == KVDelete:
			return fmt.Sprintf("%s(%s) -> %s", i.Op, i.Key, o.Outcome)
		default:
			return fmt.Sprintf("%s(%s, %q) -> %s", i.Op, i.Key, i.Value, o.Outcome)
		}
	},
	DescribeState: func(st any) string {
		s := st.(kvState)
		if !s.Exists {
			return "absent"
		}
		return fmt.Sprintf("%q", s.Value)
	},
}

// partitionBy splits a history by a key of its inputs (porcupine checks
// each part on its own: operations on different keys commute).
func partitionBy(key func(in any) string) func([]porcupine.Operation) [][]porcupine.Operation {
	return func(h []porcupine.Operation) [][]porcupine.Operation {
		parts := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := key(op.Input)
			if _, ok := parts[k]; !ok {
				keys = append(keys, k)
			}
			parts[k] = append(parts[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, parts[k])
		}
		return out
	}
}

// ---- instances: a state machine with agent-driven moves ----

// Instance operation kinds.
const (
	InstCreate   = "create"
	InstPoweroff = "poweroff"
	InstPoweron  = "poweron"
	InstDelete   = "delete"
	InstGet      = "get"
	// InstHvaLost is not a request: it marks when the instance's hva was
	// killed, or (an interval) when it was cut off the managers long enough
	// for HA to act. The dummy hypervisor keeps its domains in memory, so
	// the monitor of the restarted hva may find the instance's domain gone
	// and mark it halted, once; a later poweron defines the domain anew.
	// HA may evacuate the host of an hva that stays away: the workload's
	// instances have no HA, so the evacuation halts them (lostMoves).
	InstHvaLost = "hva-lost"
)

// InstInput is one operation on instance ID.
type InstInput struct {
	Op string
	ID string
}

// InstOutput is its result; State is what a get read.
type InstOutput struct {
	Outcome Outcome
	State   string
}

// instStates are the states this workload can reach (no stop/start).
var instStates = []string{"none", "scheduling", "pending", "starting", "running", "halting", "halted",
	"shuttingdown", "terminated"}

func stateIndex(s string) int {
	for i, v := range instStates {
		if v == s {
			return i
		}
	}
	return -1
}

// instSet is a set of (state, flags) pairs, bit 4*state+flags, where the
// flags say whether a DELETE is outstanding (termFlag) and whether the
// instance's domain may have been lost with its hva (lostFlag). The model
// state is
// the set of states the instance may be in, closed under the moves agents
// make on their own; a read narrows it to what was seen.
type instSet uint64

const (
	termFlag = 1
	lostFlag = 2
)

func bit(state, flags int) instSet { return 1 << uint(4*state+flags) }

func (s instSet) each(fn func(state, flags int)) {
	for v := uint64(s); v != 0; v &= v - 1 {
		b := bits.TrailingZeros64(v)
		fn(b/4, b%4)
	}
}

// agentMoves are the moves agents and leader loops make without a client
// request: placement or its failure, boot, boot failure, a halt
// completing, poweron failing, a terminate completing.
var agentMoves = map[string][]string{
	"scheduling":   {"pending", "terminated"},
	"pending":      {"starting", "running", "terminated"},
	"starting":     {"running", "halted", "terminated"},
	"halting":      {"halted"},
	"shuttingdown": {"terminated"},
}

// lostMoves are the moves made once, after an hva was lost (the flag goes
// with the domain): the monitor halts a running instance whose domain is
// gone, and so does an HA evacuation of the host (the workload's instances
// have no HA). The evacuation's other moves are agent moves already:
// pending, starting and halting instances may end halted, shutting-down
// ones terminated.
var lostMoves = map[string][]string{
	"running": {"halted"},
}

// domainStates are the states in which an instance may have a domain that
// a killed hva loses.
var domainStates = map[string]bool{"pending": true, "starting": true, "running": true, "halting": true}

// terminateMoves are the moves an outstanding terminate job may make (the
// hva refuses it in transitional states, so they are allowed, not
// required).
var terminateMoves = []string{"shuttingdown", "terminated"}

// closure adds every state reachable by agent moves.
func (s instSet) closure() instSet {
	for {
		next := s
		s.each(func(st, flags int) {
			for _, to := range agentMoves[instStates[st]] {
				next |= bit(stateIndex(to), flags)
			}
			if flags&lostFlag != 0 {
				for _, to := range lostMoves[instStates[st]] {
					next |= bit(stateIndex(to), flags&^lostFlag)
				}
			}
			if flags&termFlag != 0 && instStates[st] != "terminated" && instStates[st] != "none" {
				for _, to := range terminateMoves {
					next |= bit(stateIndex(to), flags)
				}
			}
		})
		if next == s {
			return s
		}
		s = next
	}
}

// instAction is what the API does for one action: pre says whether state
// allows it (else 400/125), post is the state and flags after it.
type instAction struct {
	pre  func(state string) bool
	post func(state string, flags int) (string, int)
}

var instActions = map[string]instAction{
	InstCreate: {
		pre:  func(s string) bool { return s == "none" },
		post: func(string, int) (string, int) { return "scheduling", 0 },
	},
	InstPoweroff: {
		pre:  func(s string) bool { return s == "running" || s == "halting" },
		post: func(_ string, f int) (string, int) { return "halting", f },
	},
	InstPoweron: {
		pre:  func(s string) bool { return s == "halted" },
		post: func(_ string, f int) (string, int) { return "starting", f &^ lostFlag },
	},
	// DELETE leaves the state to the hva's terminate job.
	InstDelete: {
		pre:  func(s string) bool { return s != "none" && s != "terminated" && s != "scheduling" },
		post: func(s string, f int) (string, int) { return s, f | termFlag },
	},
}

// stepInst is the instance model's step over sets of states.
func stepInst(s instSet, in InstInput, out InstOutput) instSet {
	switch in.Op {
	case InstGet:
		if out.Outcome != OK {
			return 0
		}
		var seen instSet
		idx := stateIndex(out.State)
		s.each(func(st, flags int) {
			if st == idx {
				seen |= bit(st, flags)
			}
		})
		return seen.closure()
	case InstHvaLost:
		var lost instSet
		s.each(func(st, flags int) {
			if domainStates[instStates[st]] {
				flags |= lostFlag
			}
			lost |= bit(st, flags)
		})
		return lost.closure()
	}
	act, ok := instActions[in.Op]
	if !ok {
		return 0
	}
	var allowed, refused instSet
	s.each(func(st, flags int) {
		if act.pre(instStates[st]) {
			to, f := act.post(instStates[st], flags)
			allowed |= bit(stateIndex(to), f)
		} else {
			refused |= bit(st, flags)
		}
	})
	switch out.Outcome {
	case OK:
		return allowed.closure()
	case Refused:
		return refused.closure()
	case Failed:
		return s
	case Unknown:
		return (s | allowed).closure()
	}
	return 0
}

// InstModel checks instance histories: actions must find the state the
// API requires (or be refused when it is not there), reads must see a
// state reachable from the last one by agent moves, and no acknowledged
// transition may be undone.
var InstModel = porcupine.Model{
	Partition: partitionBy(func(in any) string { return in.(InstInput).ID }),
	Init:      func() any { return bit(stateIndex("none"), 0) },
	Step: func(st, in, out any) (bool, any) {
		s := stepInst(st.(instSet), in.(InstInput), out.(InstOutput))
		return s != 0, s
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(InstInput), out.(InstOutput)
		switch i.Op {
		case InstGet:
			return fmt.Sprintf("get(%s) -> %s", i.ID, o.State)
		case InstHvaLost:
			return "(an hva was killed)"
		}
		return fmt.Sprintf("%s(%s) -> %s", i.Op, i.ID, o.Outcome)
	},
	DescribeState: func(st any) string {
		var names []string
		st.(instSet).each(func(s, flags int) {
			n := instStates[s]
			if flags&termFlag != 0 {
				n += "+del"
			}
			if flags&lostFlag != 0 {
				n += "+lost"
			}
			names = append(names, n)
		})
		return "{" + strings.Join(names, " ") + "}"
	},
}
