// Package filter turns security groups into packet filtering on an hva
// (spec/agents.md §5 "Netfilter"; notes/real-components.md §8).
//
// Compile builds the desired rule set of the host from the managers' data
// (the host's vnics, their groups' rules, the members of every group those
// rules name). The rule set is a small model of nftables (Ruleset: tables,
// sets, verdict maps, chains, rules of typed matches) that a Filter
// installs: NFT in the kernel through netlink, filtertest.Recorder in
// memory. Apply replaces the host's tables whole in one transaction, so a
// reconcile is idempotent and the kernel never holds half of a rule set.
//
// Design, and why (this kernel has no conntrack in the bridge family):
//   - a bridge-family table checks frames per tap: from a vnic (prerouting,
//     by ingress tap) they must carry its MAC and IPv4 address, ARP too;
//     to a vnic (forward, by egress tap) IPv4 must be addressed to it and
//     ARP requests must come from a source its groups allow. A tap named
//     like a vnic (vif-…) that has no chains yet drops everything, so a new
//     vnic is closed until its rules are in.
//   - an inet-family table filters IPv4 to each vnic with conntrack: bridged
//     packets reach it through br_netfilter, where the interfaces are the
//     bridge, so the vnic is found by bridge and destination address (the
//     bridge table guarantees both). Replies pass as established/related;
//     friends (vnics sharing a group) pass; each rule of the vnic's groups
//     accepts its protocol, ports or icmp type/code from its CIDR or from
//     the addresses of the group it names; the rest is dropped.
//   - ARP to a vnic (requests included) passes from its friends, from the
//     sources its rules allow, from its network's services, and from the
//     members of the groups whose rules name its groups (the referencers):
//     a peer that answers this vnic must be able to resolve it again.
package filter

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Family of a table.
type Family string

// Table families vdc uses.
const (
	FamilyBridge Family = "bridge"
	FamilyInet   Family = "inet"
)

// Hook of a base chain ("" for a regular chain).
type Hook string

// Hooks vdc uses.
const (
	HookPrerouting Hook = "prerouting"
	HookInput      Hook = "input"
	HookForward    Hook = "forward"
	HookOutput     Hook = "output"
)

// Ruleset is the content of some tables. Apply replaces each of them.
type Ruleset struct {
	Tables []Table
}

// Table is one nftables table.
type Table struct {
	Family Family
	Name   string
	Sets   []Set
	Chains []Chain
}

// KeyType is the type of a set's keys.
type KeyType string

// Set key types.
const (
	KeyIPv4   KeyType = "ipv4_addr"
	KeyIfname KeyType = "ifname"
)

// Set is a named set of keys, or with Map a verdict map whose elements go
// to a chain.
type Set struct {
	Name     string
	Key      KeyType
	Map      bool
	Elements []Element
}

// Element is a set element: a key (dotted IPv4 or interface name) and, in a
// verdict map, the chain it goes to.
type Element struct {
	Key  string
	Goto string
}

// Chain is a chain; a base chain has a Hook and a Priority and accepts what
// its rules do not decide (vdc never drops by policy: drops are per vnic).
type Chain struct {
	Name     string
	Hook     Hook
	Priority int
	Rules    []Rule
}

// Rule is matches (all must hold), an optional counter, and a verdict.
type Rule struct {
	Matches []Match
	Counter bool
	Verdict Verdict
}

// VerdictKind is what a rule does when it matches.
type VerdictKind string

// Verdicts.
const (
	Accept VerdictKind = "accept"
	Drop   VerdictKind = "drop"
	Return VerdictKind = "return"
	Jump   VerdictKind = "jump"
	Goto   VerdictKind = "goto"
	// VMap looks Key up in verdict map Map and does what the element says;
	// no element: the rule does not match.
	VMap VerdictKind = "vmap"
)

// Verdict of a rule.
type Verdict struct {
	Kind  VerdictKind
	Chain string // Jump, Goto
	Key   Field  // VMap
	Map   string // VMap
}

// Field is a packet field a match loads.
type Field string

// Fields. Payload fields are read at fixed offsets (Ethernet, IPv4, ARP for
// Ethernet/IPv4); a rule that reads IPv4 or ARP fields matches the ether
// type or the protocol first.
const (
	FieldIIFName   Field = "iifname"
	FieldOIFName   Field = "oifname"
	FieldNFProto   Field = "meta nfproto"
	FieldEtherSrc  Field = "ether saddr"
	FieldEtherType Field = "ether type"
	FieldIPProto   Field = "ip protocol"
	FieldIPSrc     Field = "ip saddr"
	FieldIPDst     Field = "ip daddr"
	FieldTHSport   Field = "th sport"
	FieldTHDport   Field = "th dport"
	FieldICMPType  Field = "icmp type"
	FieldICMPCode  Field = "icmp code"
	FieldARPOp     Field = "arp operation"
	FieldARPSha    Field = "arp saddr ether"
	FieldARPSpa    Field = "arp saddr ip"
	FieldARPTpa    Field = "arp daddr ip"
	FieldCtState   Field = "ct state"
)

// Op is how a match compares.
type Op string

// Ops. Values are text in the field's canonical form: interface names,
// dotted IPv4 ("10.0.0.0/8" for CIDR), colon MACs, decimal numbers (ether
// types as 0x%04x), ct states as a comma list.
const (
	OpEq     Op = "=="
	OpNeq    Op = "!="
	OpPrefix Op = "prefix" // interface name starts with Value ("vif-*")
	OpCIDR   Op = "cidr"   // address is in network Value
	OpRange  Op = "range"  // Value <= field <= To
	OpInSet  Op = "in"     // field is a key of set Set
	OpAny    Op = "any"    // some bit of Value is set (ct state)
)

// Match is one condition.
type Match struct {
	Field Field
	Op    Op
	Value string
	To    string // OpRange
	Set   string // OpInSet
}

// Well-known values.
const (
	EtherTypeIPv4 = "0x0800"
	EtherTypeARP  = "0x0806"
	ProtoICMP     = "1"
	ProtoTCP      = "6"
	ProtoUDP      = "17"
	NFProtoIPv4   = "2"
	ARPRequest    = "1"
	ARPReply      = "2"
)

// String renders a match in nft's syntax (for tests and logs).
func (m Match) String() string {
	switch m.Op {
	case OpEq:
		return fmt.Sprintf("%s %s", m.Field, m.quoted())
	case OpNeq:
		return fmt.Sprintf("%s != %s", m.Field, m.quoted())
	case OpPrefix:
		return fmt.Sprintf("%s %q", m.Field, m.Value+"*")
	case OpCIDR:
		return fmt.Sprintf("%s %s", m.Field, m.Value)
	case OpRange:
		return fmt.Sprintf("%s %s-%s", m.Field, m.Value, m.To)
	case OpInSet:
		return fmt.Sprintf("%s @%s", m.Field, m.Set)
	case OpAny:
		return fmt.Sprintf("%s %s", m.Field, m.Value)
	}
	return fmt.Sprintf("%s %s %s", m.Field, m.Op, m.Value)
}

func (m Match) quoted() string {
	if m.Field == FieldIIFName || m.Field == FieldOIFName {
		return fmt.Sprintf("%q", m.Value)
	}
	return m.Value
}

// String renders a verdict in nft's syntax.
func (v Verdict) String() string {
	switch v.Kind {
	case Jump, Goto:
		return string(v.Kind) + " " + v.Chain
	case VMap:
		return fmt.Sprintf("%s vmap @%s", v.Key, v.Map)
	}
	return string(v.Kind)
}

// String renders a rule in nft's syntax.
func (r Rule) String() string {
	parts := make([]string, 0, len(r.Matches)+2)
	for _, m := range r.Matches {
		parts = append(parts, m.String())
	}
	if r.Counter {
		parts = append(parts, "counter")
	}
	return strings.Join(append(parts, r.Verdict.String()), " ")
}

// Table returns the table of that family and name, or nil.
func (rs *Ruleset) Table(f Family, name string) *Table {
	for i := range rs.Tables {
		if rs.Tables[i].Family == f && rs.Tables[i].Name == name {
			return &rs.Tables[i]
		}
	}
	return nil
}

// Chain returns the chain of that name, or nil.
func (t *Table) Chain(name string) *Chain {
	for i := range t.Chains {
		if t.Chains[i].Name == name {
			return &t.Chains[i]
		}
	}
	return nil
}

// Set returns the set of that name, or nil.
func (t *Table) Set(name string) *Set {
	for i := range t.Sets {
		if t.Sets[i].Name == name {
			return &t.Sets[i]
		}
	}
	return nil
}

// RuleCount is the number of rules in all tables.
func (rs Ruleset) RuleCount() int {
	n := 0
	for _, t := range rs.Tables {
		for _, c := range t.Chains {
			n += len(c.Rules)
		}
	}
	return n
}

// Sorted returns a copy in canonical order: tables by family and name, sets
// and chains by name, elements by key. Rules keep their order (it is the
// chain's meaning). Two rule sets with the same content are equal (by
// reflect.DeepEqual) once sorted.
func (rs Ruleset) Sorted() Ruleset {
	out := Ruleset{Tables: make([]Table, 0, len(rs.Tables))}
	for _, t := range rs.Tables {
		nt := Table{Family: t.Family, Name: t.Name}
		for _, s := range t.Sets {
			ns := s
			ns.Elements = slices.Clone(s.Elements)
			slices.SortFunc(ns.Elements, func(a, b Element) int { return cmp.Compare(a.Key, b.Key) })
			if len(ns.Elements) == 0 {
				ns.Elements = nil
			}
			nt.Sets = append(nt.Sets, ns)
		}
		for _, c := range t.Chains {
			nc := c
			nc.Rules = nil
			for _, r := range c.Rules {
				nr := r
				nr.Matches = slices.Clone(r.Matches)
				nc.Rules = append(nc.Rules, nr)
			}
			nt.Chains = append(nt.Chains, nc)
		}
		slices.SortFunc(nt.Sets, func(a, b Set) int { return cmp.Compare(a.Name, b.Name) })
		slices.SortFunc(nt.Chains, func(a, b Chain) int { return cmp.Compare(a.Name, b.Name) })
		out.Tables = append(out.Tables, nt)
	}
	slices.SortFunc(out.Tables, func(a, b Table) int {
		return cmp.Or(cmp.Compare(a.Family, b.Family), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Validate checks what the kernel would refuse: names, duplicate objects,
// references to sets and chains of the same table, verdict maps used as
// maps, values that do not encode.
func (rs Ruleset) Validate() error {
	seen := map[string]bool{}
	for _, t := range rs.Tables {
		if t.Family != FamilyBridge && t.Family != FamilyInet {
			return fmt.Errorf("table %s: unknown family %q", t.Name, t.Family)
		}
		if t.Name == "" {
			return fmt.Errorf("%s table without a name", t.Family)
		}
		key := string(t.Family) + " " + t.Name
		if seen[key] {
			return fmt.Errorf("table %s appears twice", key)
		}
		seen[key] = true
		if err := t.validate(); err != nil {
			return fmt.Errorf("table %s: %w", key, err)
		}
	}
	return nil
}

func (t *Table) validate() error {
	names := map[string]bool{}
	for _, c := range t.Chains {
		if c.Name == "" || names["chain "+c.Name] {
			return fmt.Errorf("chain name %q is empty or taken", c.Name)
		}
		names["chain "+c.Name] = true
		if c.Hook == "" && c.Priority != 0 {
			return fmt.Errorf("chain %s: a regular chain has no priority", c.Name)
		}
	}
	sets := map[string]*Set{}
	for i, s := range t.Sets {
		if s.Name == "" || sets[s.Name] != nil {
			return fmt.Errorf("set name %q is empty or taken", s.Name)
		}
		sets[s.Name] = &t.Sets[i]
		keys := map[string]bool{}
		for _, e := range s.Elements {
			if _, err := encodeKey(s.Key, e.Key); err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
			if keys[e.Key] {
				return fmt.Errorf("set %s: element %s appears twice", s.Name, e.Key)
			}
			keys[e.Key] = true
			if s.Map != (e.Goto != "") {
				return fmt.Errorf("set %s: element %s: a verdict map element needs a chain, a set element none", s.Name, e.Key)
			}
			if s.Map && !names["chain "+e.Goto] {
				return fmt.Errorf("map %s: element %s goes to missing chain %s", s.Name, e.Key, e.Goto)
			}
		}
	}
	for _, c := range t.Chains {
		for i, r := range c.Rules {
			if err := r.validate(t.Family, sets, names); err != nil {
				return fmt.Errorf("chain %s rule %d (%s): %w", c.Name, i, r, err)
			}
		}
	}
	return t.checkLoops(sets)
}

// checkLoops refuses chains that reach themselves by jump, goto or verdict
// map, as the kernel does.
func (t *Table) checkLoops(sets map[string]*Set) error {
	next := map[string][]string{}
	for _, c := range t.Chains {
		for _, r := range c.Rules {
			switch r.Verdict.Kind {
			case Jump, Goto:
				next[c.Name] = append(next[c.Name], r.Verdict.Chain)
			case VMap:
				for _, e := range sets[r.Verdict.Map].Elements {
					next[c.Name] = append(next[c.Name], e.Goto)
				}
			}
		}
	}
	const (
		unseen = iota
		onPath
		done
	)
	state := map[string]int{}
	var visit func(string) error
	visit = func(c string) error {
		switch state[c] {
		case onPath:
			return fmt.Errorf("chain %s reaches itself", c)
		case done:
			return nil
		}
		state[c] = onPath
		for _, n := range next[c] {
			if err := visit(n); err != nil {
				return err
			}
		}
		state[c] = done
		return nil
	}
	for _, c := range t.Chains {
		if err := visit(c.Name); err != nil {
			return err
		}
	}
	return nil
}

func (r Rule) validate(f Family, sets map[string]*Set, names map[string]bool) error {
	for _, m := range r.Matches {
		if _, err := encodeMatch(f, m); err != nil {
			return err
		}
		if m.Op == OpInSet {
			s := sets[m.Set]
			if s == nil || s.Map {
				return fmt.Errorf("set %s is missing or is a map", m.Set)
			}
			if s.Key != fieldSpecs[m.Field].key {
				return fmt.Errorf("set %s holds %s keys, not %s", m.Set, s.Key, m.Field)
			}
		}
	}
	switch v := r.Verdict; v.Kind {
	case Accept, Drop, Return:
	case Jump, Goto:
		if !names["chain "+v.Chain] {
			return fmt.Errorf("%s to missing chain %s", v.Kind, v.Chain)
		}
	case VMap:
		s := sets[v.Map]
		if s == nil || !s.Map {
			return fmt.Errorf("verdict map %s is missing or not a map", v.Map)
		}
		spec, ok := fieldSpecs[v.Key]
		if !ok || spec.key != s.Key {
			return fmt.Errorf("verdict map %s holds %s keys, not %s", v.Map, s.Key, v.Key)
		}
		if spec.family != "" && spec.family != f {
			return fmt.Errorf("%s is not a field of %s tables", v.Key, f)
		}
	default:
		return fmt.Errorf("unknown verdict %q", v.Kind)
	}
	return nil
}
