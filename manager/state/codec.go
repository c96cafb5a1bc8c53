package state

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Txns travel through raft in a compact binary form: JSON encoding of the
// embedded record values (json.RawMessage) was a third of the write path's
// CPU in the raft benchmark, and the records are JSON already.
//
//	uvarint op count, then per op:
//	verb byte | uvarint len, kind | uvarint len, id | uvarint index | uvarint len, value

var verbCodes = map[Verb]byte{
	Create: 1, Update: 2, Put: 3, Delete: 4, DeleteIfExists: 5, Check: 6, CheckAbsent: 7, CheckKind: 8,
}

var codeVerbs = func() [9]Verb {
	var out [9]Verb
	for v, c := range verbCodes {
		out[c] = v
	}
	return out
}()

// MarshalBinary encodes the txn for a raft log entry.
func (t *Txn) MarshalBinary() ([]byte, error) {
	n := binary.MaxVarintLen64
	for _, op := range t.Ops {
		n += 1 + 4*binary.MaxVarintLen64 + len(op.Kind) + len(op.ID) + len(op.Value)
	}
	out := make([]byte, 0, n)
	out = binary.AppendUvarint(out, uint64(len(t.Ops)))
	for _, op := range t.Ops {
		c, ok := verbCodes[op.Verb]
		if !ok {
			return nil, fmt.Errorf("encode txn: unknown verb %q", op.Verb)
		}
		out = append(out, c)
		out = appendBytes(out, []byte(op.Kind))
		out = appendBytes(out, []byte(op.ID))
		out = binary.AppendUvarint(out, op.Index)
		out = appendBytes(out, op.Value)
	}
	return out, nil
}

func appendBytes(out, b []byte) []byte {
	out = binary.AppendUvarint(out, uint64(len(b)))
	return append(out, b...)
}

var errShortTxn = errors.New("decode txn: truncated")

// UnmarshalBinary decodes a txn; values alias b.
func (t *Txn) UnmarshalBinary(b []byte) error {
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return errShortTxn
	}
	b = b[n:]
	t.Ops = make([]Op, count)
	for i := range t.Ops {
		if len(b) == 0 || int(b[0]) >= len(codeVerbs) || codeVerbs[b[0]] == "" {
			return fmt.Errorf("decode txn: bad verb at op %d", i)
		}
		op := &t.Ops[i]
		op.Verb = codeVerbs[b[0]]
		b = b[1:]
		var kind, id, val []byte
		var err error
		if kind, b, err = readBytes(b); err != nil {
			return err
		}
		if id, b, err = readBytes(b); err != nil {
			return err
		}
		idx, n := binary.Uvarint(b)
		if n <= 0 {
			return errShortTxn
		}
		b = b[n:]
		if val, b, err = readBytes(b); err != nil {
			return err
		}
		op.Kind, op.ID, op.Index = string(kind), string(id), idx
		if len(val) > 0 {
			op.Value = val
		}
	}
	if len(b) != 0 {
		return errors.New("decode txn: trailing bytes")
	}
	return nil
}

func readBytes(b []byte) (field, rest []byte, err error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, errShortTxn
	}
	return b[n : n+int(l)], b[n+int(l):], nil
}
