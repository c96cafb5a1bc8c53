package state

import (
	"encoding"
	"encoding/json"
	"fmt"
)

// CommandType is the first byte of every raft log entry. Values are never reused.
type CommandType uint8

const (
	// CmdTxn is a transaction of record operations with compare-and-set checks.
	CmdTxn CommandType = 1
)

// Encode builds a log entry: one type byte, then the body in its binary form
// when it has one (Txn), else JSON.
func Encode(t CommandType, body any) ([]byte, error) {
	var (
		b   []byte
		err error
	)
	if bm, ok := body.(encoding.BinaryMarshaler); ok {
		b, err = bm.MarshalBinary()
	} else {
		b, err = json.Marshal(body)
	}
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", t, err)
	}
	out := make([]byte, 1+len(b))
	out[0] = byte(t)
	copy(out[1:], b)
	return out, nil
}

// Verb is what one Op does.
type Verb string

const (
	// Create writes a new record; the id must not exist.
	Create Verb = "create"
	// Update replaces an existing record; Index, when set, must equal its ModifyIndex.
	Update Verb = "update"
	// Put creates or replaces without conditions (agent reports, node state).
	Put Verb = "put"
	// Delete removes an existing record; Index, when set, must equal its ModifyIndex.
	Delete Verb = "delete"
	// DeleteIfExists removes the record if present.
	DeleteIfExists Verb = "delete_if_exists"
	// Check asserts the record exists (and, with Index set, is unchanged).
	Check Verb = "check"
	// CheckAbsent asserts the record does not exist.
	CheckAbsent Verb = "check_absent"
	// CheckKind asserts no record of Kind was written after Index. It lets a
	// handler that decided on a scan of a kind (is this group still referenced?)
	// commit only if the scan is still true.
	CheckKind Verb = "check_kind"
)

// Op is one operation of a transaction.
type Op struct {
	Verb  Verb            `json:"v"`
	Kind  string          `json:"k"`
	ID    string          `json:"id,omitempty"`
	Index uint64          `json:"i,omitempty"`
	Value json.RawMessage `json:"val,omitempty"`
}

// Txn is applied all-or-nothing: every op is validated against the state
// before any is written.
type Txn struct {
	Ops []Op `json:"ops"`
}

// TxnResult is what a successful Txn returns from Apply.
type TxnResult struct {
	Index uint64   // raft index the txn was applied at
	Seqs  []uint64 // sequence number per op (creates and puts of new records), 0 otherwise
}

// Reasons a Txn is rejected.
const (
	ReasonExists  = "exists"
	ReasonMissing = "missing"
	ReasonStale   = "stale"
	ReasonInvalid = "invalid"
)

// TxnError says which op failed its precondition and why.
type TxnError struct {
	Op     int
	Verb   Verb
	Kind   string
	ID     string
	Reason string
}

func (e *TxnError) Error() string {
	return fmt.Sprintf("txn op %d (%s %s/%s): %s", e.Op, e.Verb, e.Kind, e.ID, e.Reason)
}

// Builder accumulates ops for one Txn.
type Builder struct {
	ops []Op
	err error
}

func (b *Builder) add(v Verb, kind, id string, index uint64, value any) *Builder {
	op := Op{Verb: v, Kind: kind, ID: id, Index: index}
	if value != nil {
		raw, err := json.Marshal(value)
		if err != nil && b.err == nil {
			b.err = fmt.Errorf("encode %s %s: %w", kind, id, err)
		}
		op.Value = raw
	}
	b.ops = append(b.ops, op)
	return b
}

// Create adds a create of kind/id with value.
func (b *Builder) Create(kind, id string, value any) *Builder {
	return b.add(Create, kind, id, 0, value)
}

// Update adds an update guarded by the record's ModifyIndex (0 = unguarded).
func (b *Builder) Update(kind, id string, index uint64, value any) *Builder {
	return b.add(Update, kind, id, index, value)
}

// Put adds an unconditional upsert.
func (b *Builder) Put(kind, id string, value any) *Builder { return b.add(Put, kind, id, 0, value) }

// Delete adds a delete guarded by the record's ModifyIndex (0 = unguarded).
func (b *Builder) Delete(kind, id string, index uint64) *Builder {
	return b.add(Delete, kind, id, index, nil)
}

// DeleteIfExists adds a delete that is a no-op when the record is gone.
func (b *Builder) DeleteIfExists(kind, id string) *Builder {
	return b.add(DeleteIfExists, kind, id, 0, nil)
}

// Check asserts kind/id exists with ModifyIndex index (0 = any).
func (b *Builder) Check(kind, id string, index uint64) *Builder {
	return b.add(Check, kind, id, index, nil)
}

// CheckAbsent asserts kind/id does not exist.
func (b *Builder) CheckAbsent(kind, id string) *Builder {
	return b.add(CheckAbsent, kind, id, 0, nil)
}

// CheckKind asserts kind was not written after index.
func (b *Builder) CheckKind(kind string, index uint64) *Builder {
	return b.add(CheckKind, kind, "", index, nil)
}

// Len is the number of ops so far.
func (b *Builder) Len() int { return len(b.ops) }

// Txn returns the transaction or the first encoding error.
func (b *Builder) Txn() (*Txn, error) {
	if b.err != nil {
		return nil, b.err
	}
	return &Txn{Ops: b.ops}, nil
}

// Append adds the ops of o (and its encoding error, if any) to b.
func (b *Builder) Append(o *Builder) *Builder {
	if o.err != nil && b.err == nil {
		b.err = o.err
	}
	b.ops = append(b.ops, o.ops...)
	return b
}
