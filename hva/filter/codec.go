package filter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// How matches become nftables expressions and back. Every match loads its
// field into register 1 and compares; the kernel's rules are read back by
// recognising the same shapes, so what Installed reports is what the kernel
// holds, not what was asked.

// valueKind is how a field's value is written.
type valueKind int

const (
	vIfname valueKind = iota
	vIPv4
	vMAC
	vU8
	vU16
	vHex16
	vCtState
	vNFProto
)

// fieldSpec says where a field is and how its value is written.
type fieldSpec struct {
	meta   expr.MetaKey
	isMeta bool
	ct     bool
	base   expr.PayloadBase
	offset uint32
	size   uint32
	kind   valueKind
	key    KeyType // keys of sets the field is looked up in ("" = none)
	family Family  // only in tables of this family ("" = any)
}

// fieldSpecs is the constant table of fields (offsets of Ethernet, IPv4, and
// ARP for Ethernet/IPv4; th is the transport header).
var fieldSpecs = map[Field]fieldSpec{
	FieldIIFName:   {isMeta: true, meta: expr.MetaKeyIIFNAME, size: 16, kind: vIfname, key: KeyIfname},
	FieldOIFName:   {isMeta: true, meta: expr.MetaKeyOIFNAME, size: 16, kind: vIfname, key: KeyIfname},
	FieldNFProto:   {isMeta: true, meta: expr.MetaKeyNFPROTO, size: 1, kind: vNFProto, family: FamilyInet},
	FieldCtState:   {ct: true, size: 4, kind: vCtState, family: FamilyInet},
	FieldEtherSrc:  {base: expr.PayloadBaseLLHeader, offset: 6, size: 6, kind: vMAC, family: FamilyBridge},
	FieldEtherType: {base: expr.PayloadBaseLLHeader, offset: 12, size: 2, kind: vHex16, family: FamilyBridge},
	FieldIPProto:   {base: expr.PayloadBaseNetworkHeader, offset: 9, size: 1, kind: vU8},
	FieldIPSrc:     {base: expr.PayloadBaseNetworkHeader, offset: 12, size: 4, kind: vIPv4, key: KeyIPv4},
	FieldIPDst:     {base: expr.PayloadBaseNetworkHeader, offset: 16, size: 4, kind: vIPv4, key: KeyIPv4},
	FieldTHSport:   {base: expr.PayloadBaseTransportHeader, offset: 0, size: 2, kind: vU16},
	FieldTHDport:   {base: expr.PayloadBaseTransportHeader, offset: 2, size: 2, kind: vU16},
	FieldICMPType:  {base: expr.PayloadBaseTransportHeader, offset: 0, size: 1, kind: vU8},
	FieldICMPCode:  {base: expr.PayloadBaseTransportHeader, offset: 1, size: 1, kind: vU8},
	FieldARPOp:     {base: expr.PayloadBaseNetworkHeader, offset: 6, size: 2, kind: vU16, family: FamilyBridge},
	FieldARPSha:    {base: expr.PayloadBaseNetworkHeader, offset: 8, size: 6, kind: vMAC, family: FamilyBridge},
	FieldARPSpa:    {base: expr.PayloadBaseNetworkHeader, offset: 14, size: 4, kind: vIPv4, key: KeyIPv4, family: FamilyBridge},
	FieldARPTpa:    {base: expr.PayloadBaseNetworkHeader, offset: 24, size: 4, kind: vIPv4, key: KeyIPv4, family: FamilyBridge},
}

// ctStates names conntrack's state bits, in the order they are written.
var ctStates = []struct {
	name string
	bit  uint32
}{
	{"invalid", expr.CtStateBitINVALID},
	{"established", expr.CtStateBitESTABLISHED},
	{"related", expr.CtStateBitRELATED},
	{"new", expr.CtStateBitNEW},
	{"untracked", expr.CtStateBitUNTRACKED},
}

func (s fieldSpec) load() expr.Any {
	switch {
	case s.isMeta:
		return &expr.Meta{Key: s.meta, Register: 1}
	case s.ct:
		return &expr.Ct{Key: expr.CtKeySTATE, Register: 1}
	}
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: 1, Base: s.base, Offset: s.offset, Len: s.size}
}

// encodeValue writes a value of the field's kind.
func (s fieldSpec) encodeValue(v string) ([]byte, error) {
	switch s.kind {
	case vIfname:
		if v == "" || len(v) > 15 {
			return nil, fmt.Errorf("interface name %q", v)
		}
		b := make([]byte, 16)
		copy(b, v)
		return b, nil
	case vIPv4:
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			return nil, fmt.Errorf("ipv4 address %q", v)
		}
		b := a.As4()
		return b[:], nil
	case vMAC:
		m, err := net.ParseMAC(v)
		if err != nil || len(m) != 6 || m.String() != v {
			return nil, fmt.Errorf("mac %q (want lower-case colon form)", v)
		}
		return m, nil
	case vU8, vNFProto:
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil || strconv.FormatUint(n, 10) != v {
			return nil, fmt.Errorf("8-bit number %q", v)
		}
		return []byte{byte(n)}, nil
	case vU16:
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || strconv.FormatUint(n, 10) != v {
			return nil, fmt.Errorf("16-bit number %q", v)
		}
		return binaryutil.BigEndian.PutUint16(uint16(n)), nil
	case vHex16:
		n, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 16)
		if err != nil || fmt.Sprintf("0x%04x", n) != v {
			return nil, fmt.Errorf("ether type %q (want 0x%%04x)", v)
		}
		return binaryutil.BigEndian.PutUint16(uint16(n)), nil
	case vCtState:
		bits, err := ctBits(v)
		if err != nil {
			return nil, err
		}
		return binaryutil.NativeEndian.PutUint32(bits), nil
	}
	return nil, fmt.Errorf("unknown value kind %d", s.kind)
}

func ctBits(v string) (uint32, error) {
	var bits uint32
	for _, name := range strings.Split(v, ",") {
		i := slices.IndexFunc(ctStates, func(s struct {
			name string
			bit  uint32
		}) bool {
			return s.name == name
		})
		if i < 0 {
			return 0, fmt.Errorf("ct state %q", name)
		}
		bits |= ctStates[i].bit
	}
	if want := ctString(bits); want != v {
		return 0, fmt.Errorf("ct state %q (want %q)", v, want)
	}
	return bits, nil
}

func ctString(bits uint32) string {
	var names []string
	for _, s := range ctStates {
		if bits&s.bit != 0 {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ",")
}

// decodeValue is encodeValue's reverse.
func (s fieldSpec) decodeValue(b []byte) (string, error) {
	if uint32(len(b)) != s.size {
		return "", fmt.Errorf("%d bytes of a %d-byte field", len(b), s.size)
	}
	switch s.kind {
	case vIfname:
		return string(bytes.TrimRight(b, "\x00")), nil
	case vIPv4:
		return netip.AddrFrom4([4]byte(b)).String(), nil
	case vMAC:
		return net.HardwareAddr(b).String(), nil
	case vU8, vNFProto:
		return strconv.Itoa(int(b[0])), nil
	case vU16:
		return strconv.Itoa(int(binary.BigEndian.Uint16(b))), nil
	case vHex16:
		return fmt.Sprintf("0x%04x", binary.BigEndian.Uint16(b)), nil
	case vCtState:
		return ctString(binaryutil.NativeEndian.Uint32(b)), nil
	}
	return "", fmt.Errorf("unknown value kind %d", s.kind)
}

func encodeKey(k KeyType, v string) ([]byte, error) {
	switch k {
	case KeyIPv4:
		return fieldSpecs[FieldIPSrc].encodeValue(v)
	case KeyIfname:
		return fieldSpecs[FieldIIFName].encodeValue(v)
	}
	return nil, fmt.Errorf("unknown key type %q", k)
}

func decodeKey(k KeyType, b []byte) (string, error) {
	switch k {
	case KeyIPv4:
		return fieldSpecs[FieldIPSrc].decodeValue(b)
	case KeyIfname:
		// Keys come back padded to 16 bytes or as sent; both decode alike.
		if len(b) < 16 {
			b = append(b, make([]byte, 16-len(b))...)
		}
		return fieldSpecs[FieldIIFName].decodeValue(b)
	}
	return "", fmt.Errorf("unknown key type %q", k)
}

// encodeMatch is the expressions of one match. Set lookups carry the set's
// name only; the caller fills in the id of the set in its batch.
func encodeMatch(f Family, m Match) ([]expr.Any, error) {
	s, ok := fieldSpecs[m.Field]
	if !ok {
		return nil, fmt.Errorf("unknown field %q", m.Field)
	}
	if s.family != "" && s.family != f {
		return nil, fmt.Errorf("%s is not a field of %s tables", m.Field, f)
	}
	load := s.load()
	switch m.Op {
	case OpEq, OpNeq:
		if s.kind == vCtState {
			return nil, fmt.Errorf("%s: compare ct state with %s", m, OpAny)
		}
		v, err := s.encodeValue(m.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Field, err)
		}
		op := expr.CmpOpEq
		if m.Op == OpNeq {
			op = expr.CmpOpNeq
		}
		return []expr.Any{load, &expr.Cmp{Op: op, Register: 1, Data: v}}, nil
	case OpPrefix:
		if s.kind != vIfname || m.Value == "" || len(m.Value) > 15 {
			return nil, fmt.Errorf("%s: a prefix match needs an interface name field and a short prefix", m)
		}
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(m.Value)}}, nil
	case OpCIDR:
		p, err := netip.ParsePrefix(m.Value)
		if s.kind != vIPv4 || err != nil || !p.Addr().Is4() || p.Masked() != p {
			return nil, fmt.Errorf("%s: want an ipv4 field and a masked network", m)
		}
		mask := net.CIDRMask(p.Bits(), 32)
		a := p.Addr().As4()
		return []expr.Any{load,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
		}, nil
	case OpRange:
		from, err := s.encodeValue(m.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Field, err)
		}
		to, err := s.encodeValue(m.To)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Field, err)
		}
		if s.kind != vU16 && s.kind != vU8 || bytes.Compare(from, to) >= 0 {
			return nil, fmt.Errorf("%s: want a numeric field and from < to", m)
		}
		return []expr.Any{load, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: from, ToData: to}}, nil
	case OpInSet:
		if s.key == "" || m.Set == "" {
			return nil, fmt.Errorf("%s: the field cannot be looked up in a set", m)
		}
		return []expr.Any{load, &expr.Lookup{SourceRegister: 1, SetName: m.Set}}, nil
	case OpAny:
		if s.kind != vCtState {
			return nil, fmt.Errorf("%s: only ct state has bits", m)
		}
		v, err := s.encodeValue(m.Value)
		if err != nil {
			return nil, err
		}
		return []expr.Any{load,
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: v, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}, nil
	}
	return nil, fmt.Errorf("unknown op %q", m.Op)
}

// encodeRule is the expressions of a rule.
func encodeRule(f Family, r Rule) ([]expr.Any, error) {
	var out []expr.Any
	for _, m := range r.Matches {
		es, err := encodeMatch(f, m)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	if r.Counter {
		out = append(out, &expr.Counter{})
	}
	switch v := r.Verdict; v.Kind {
	case Accept:
		out = append(out, &expr.Verdict{Kind: expr.VerdictAccept})
	case Drop:
		out = append(out, &expr.Verdict{Kind: expr.VerdictDrop})
	case Return:
		out = append(out, &expr.Verdict{Kind: expr.VerdictReturn})
	case Jump:
		out = append(out, &expr.Verdict{Kind: expr.VerdictJump, Chain: v.Chain})
	case Goto:
		out = append(out, &expr.Verdict{Kind: expr.VerdictGoto, Chain: v.Chain})
	case VMap:
		s, ok := fieldSpecs[v.Key]
		if !ok || s.key == "" {
			return nil, fmt.Errorf("vmap on %q", v.Key)
		}
		out = append(out, s.load(), &expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: v.Map})
	default:
		return nil, fmt.Errorf("unknown verdict %q", v.Kind)
	}
	return out, nil
}

// fieldOf recognises a load into register 1.
func fieldOf(e expr.Any) (Field, fieldSpec, bool) {
	for f, s := range fieldSpecs {
		switch x := e.(type) {
		case *expr.Meta:
			if s.isMeta && x.Key == s.meta && x.Register == 1 && !x.SourceRegister {
				return f, s, true
			}
		case *expr.Ct:
			if s.ct && x.Key == expr.CtKeySTATE && x.Register == 1 && !x.SourceRegister {
				return f, s, true
			}
		case *expr.Payload:
			if !s.isMeta && !s.ct && x.OperationType == expr.PayloadLoad && x.DestRegister == 1 &&
				x.Base == s.base && x.Offset == s.offset && x.Len == s.size {
				return f, s, true
			}
		}
	}
	return "", fieldSpec{}, false
}

// decodeRule reads back the shapes encodeRule writes. Anything else is an
// error: the table is vdc's, so a rule it cannot read was not written by it.
func decodeRule(es []expr.Any) (Rule, error) {
	var r Rule
	for i := 0; i < len(es); i++ {
		switch x := es[i].(type) {
		case *expr.Counter:
			r.Counter = true
			continue
		case *expr.Verdict:
			if i != len(es)-1 {
				return r, fmt.Errorf("verdict before the end of the rule")
			}
			switch x.Kind {
			case expr.VerdictAccept:
				r.Verdict = Verdict{Kind: Accept}
			case expr.VerdictDrop:
				r.Verdict = Verdict{Kind: Drop}
			case expr.VerdictReturn:
				r.Verdict = Verdict{Kind: Return}
			case expr.VerdictJump:
				r.Verdict = Verdict{Kind: Jump, Chain: x.Chain}
			case expr.VerdictGoto:
				r.Verdict = Verdict{Kind: Goto, Chain: x.Chain}
			default:
				return r, fmt.Errorf("verdict %d", x.Kind)
			}
			return r, nil
		}
		field, spec, ok := fieldOf(es[i])
		if !ok || i+1 >= len(es) {
			return r, fmt.Errorf("expression %d (%T) is not a field load vdc writes", i, es[i])
		}
		i++
		switch x := es[i].(type) {
		case *expr.Cmp:
			m := Match{Field: field, Op: OpEq}
			if x.Op == expr.CmpOpNeq {
				m.Op = OpNeq
			} else if x.Op != expr.CmpOpEq {
				return r, fmt.Errorf("%s: cmp op %d", field, x.Op)
			}
			if spec.kind == vIfname && len(x.Data) < 16 && m.Op == OpEq {
				m.Op, m.Value = OpPrefix, string(x.Data)
			} else {
				v, err := spec.decodeValue(x.Data)
				if err != nil {
					return r, fmt.Errorf("%s: %w", field, err)
				}
				m.Value = v
			}
			r.Matches = append(r.Matches, m)
		case *expr.Bitwise:
			if i+1 >= len(es) {
				return r, fmt.Errorf("%s: bitwise at the end", field)
			}
			c, ok := es[i+1].(*expr.Cmp)
			if !ok {
				return r, fmt.Errorf("%s: bitwise not followed by cmp", field)
			}
			i++
			switch {
			case spec.kind == vIPv4 && c.Op == expr.CmpOpEq && len(x.Mask) == 4 && len(c.Data) == 4:
				bits, total := net.IPMask(x.Mask).Size()
				if total != 32 {
					return r, fmt.Errorf("%s: mask %x is not a prefix", field, x.Mask)
				}
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte(c.Data)), bits)
				r.Matches = append(r.Matches, Match{Field: field, Op: OpCIDR, Value: p.String()})
			case spec.kind == vCtState && c.Op == expr.CmpOpNeq:
				v, err := spec.decodeValue(x.Mask)
				if err != nil {
					return r, fmt.Errorf("%s: %w", field, err)
				}
				r.Matches = append(r.Matches, Match{Field: field, Op: OpAny, Value: v})
			default:
				return r, fmt.Errorf("%s: bitwise shape vdc does not write", field)
			}
		case *expr.Range:
			from, err := spec.decodeValue(x.FromData)
			if err != nil {
				return r, fmt.Errorf("%s: %w", field, err)
			}
			to, err := spec.decodeValue(x.ToData)
			if err != nil {
				return r, fmt.Errorf("%s: %w", field, err)
			}
			r.Matches = append(r.Matches, Match{Field: field, Op: OpRange, Value: from, To: to})
		case *expr.Lookup:
			if x.IsDestRegSet {
				if i != len(es)-1 {
					return r, fmt.Errorf("%s: verdict map lookup before the end of the rule", field)
				}
				r.Verdict = Verdict{Kind: VMap, Key: field, Map: x.SetName}
				return r, nil
			}
			if x.Invert {
				return r, fmt.Errorf("%s: inverted lookup", field)
			}
			r.Matches = append(r.Matches, Match{Field: field, Op: OpInSet, Set: x.SetName})
		default:
			return r, fmt.Errorf("%s: %T after the load", field, es[i])
		}
	}
	return r, fmt.Errorf("rule without a verdict")
}
