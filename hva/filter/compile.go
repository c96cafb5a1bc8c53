package filter

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/common/sgrule"
	"github.com/vdc-project/vdc/proto"
)

// TapPrefix starts every vnic's tap name (its vif id). A tap with this
// prefix and no chains drops all it sends and all sent to it.
const TapPrefix = "vif-"

// Priorities of the base chains. The bridge chains run before
// br_netfilter hands bridged IPv4 to the inet hooks (priority 0).
const (
	BridgePriority = -200
	InetPriority   = 0
)

// Chain, set and map names.
const (
	chainPrerouting = "prerouting"
	chainForward    = "forward"
	mapFromVnic     = "from_vnic" // ingress tap -> out_<vif>
	mapToVnic       = "to_vnic"   // egress tap -> in_<vif>
)

// OutChain is the bridge chain of frames a vnic sends.
func OutChain(vif string) string { return "out_" + vif }

// InChain is the chain of what is sent to a vnic (in both tables).
func InChain(vif string) string { return "in_" + vif }

// MembersSet is the set of the IPv4 addresses of a group's members.
func MembersSet(sg string) string { return "m_" + sg }

// AddrMap is the inet verdict map from a destination address on a bridge
// to the vnic's chain.
func AddrMap(bridge string) string { return "ip_" + bridge }

// Options of Compile.
type Options struct {
	// Table names the tables (one bridge, one inet); "vdc" in production.
	Table string
	// Bridges maps a DC network's name to its bridge on this host.
	Bridges map[string]string
}

// Compile builds the rule set of a host from its netfilter data (the host's
// vnics, the groups they are in or name in their rules). What cannot be
// compiled is reported in problems and left out so as to fail closed: a
// vnic left out has no chains, and its tap drops everything.
func Compile(data *proto.GetNetfilterDataResponse, o Options) (Ruleset, []error) {
	c := compiler{
		opts:    o,
		groups:  map[string]*group{},
		bridge:  Table{Family: FamilyBridge, Name: o.Table},
		inet:    Table{Family: FamilyInet, Name: o.Table},
		sets:    map[string]bool{},
		ipMaps:  map[string]*Set{},
		fromMap: &Set{Name: mapFromVnic, Key: KeyIfname, Map: true},
		toMap:   &Set{Name: mapToVnic, Key: KeyIfname, Map: true},
	}
	for i := range data.SecurityGroups {
		c.addGroup(&data.SecurityGroups[i])
	}
	vnics := slices.Clone(data.Vnics)
	slices.SortFunc(vnics, func(a, b proto.VifView) int { return cmp.Compare(a.ID, b.ID) })
	seen := map[string]string{}
	for _, v := range vnics {
		vn, err := c.vnic(v)
		if err != nil {
			c.problems = append(c.problems, fmt.Errorf("vnic %s left out: %w", v.ID, err))
			continue
		}
		if vn.addr.IsValid() && vn.bridge != "" {
			key := vn.bridge + "/" + vn.addr.String()
			if other, dup := seen[key]; dup {
				c.problems = append(c.problems, fmt.Errorf("vnic %s left out: %s on bridge %s is %s's address too",
					v.ID, vn.addr, vn.bridge, other))
				continue
			}
			seen[key] = v.ID
		}
		c.compileVnic(vn)
	}
	return c.finish(), c.problems
}

type group struct {
	members []string // dotted IPv4, sorted, unique
	rules   []sgrule.Rule
	// referencers are the groups whose rules name this one.
	referencers []string
}

type compiler struct {
	opts     Options
	groups   map[string]*group
	bridge   Table
	inet     Table
	sets     map[string]bool // member sets needed
	ipMaps   map[string]*Set // by bridge
	fromMap  *Set
	toMap    *Set
	problems []error
}

func (c *compiler) addGroup(g *proto.NetfilterSecurityGroup) {
	rules, err := sgrule.Parse(g.Rule)
	if err != nil {
		c.problems = append(c.problems, fmt.Errorf("security group %s: rules not applied: %w", g.ID, err))
		rules = nil
	}
	var ips []string
	for _, m := range g.Members {
		if m.IPv4Address == nil {
			continue
		}
		a, err := netip.ParseAddr(*m.IPv4Address)
		if err != nil || !a.Is4() {
			c.problems = append(c.problems, fmt.Errorf("security group %s: member %s: bad address %q", g.ID, m.VifID, *m.IPv4Address))
			continue
		}
		ips = append(ips, a.String())
	}
	slices.Sort(ips)
	c.groups[g.ID] = &group{members: slices.Compact(ips), rules: rules, referencers: g.Referencers}
}

// vnicSpec is a local vnic, checked.
type vnicSpec struct {
	id       string
	mac      string // colon form
	addr     netip.Addr
	bridge   string
	groups   []string
	services []string // network service addresses that may ARP it
	dhcp     string
}

func (c *compiler) vnic(v proto.VifView) (vnicSpec, error) {
	vn := vnicSpec{id: v.ID}
	if !strings.HasPrefix(v.ID, TapPrefix) || len(v.ID) > 15 || strings.ContainsAny(v.ID, "/ :") {
		return vn, fmt.Errorf("the id cannot name a tap")
	}
	mac, err := colonMAC(v.MacAddr)
	if err != nil {
		return vn, err
	}
	vn.mac = mac
	if v.IPv4Address != nil {
		a, err := netip.ParseAddr(*v.IPv4Address)
		if err != nil || !a.Is4() {
			return vn, fmt.Errorf("bad address %q", *v.IPv4Address)
		}
		vn.addr = a
	}
	if v.DcNetwork != nil {
		vn.bridge = c.opts.Bridges[v.DcNetwork.Name]
	}
	if vn.bridge == "" && vn.addr.IsValid() {
		// Its IPv4 cannot be told from others' in the inet table: drop it.
		c.problems = append(c.problems, fmt.Errorf("vnic %s: its dc network has no bridge on this host; its IPv4 is dropped", v.ID))
	}
	for _, g := range v.SecurityGroups {
		if !slices.Contains(vn.groups, g) {
			vn.groups = append(vn.groups, g)
		}
	}
	if nw := v.Network; nw != nil {
		for _, s := range []*string{nw.IPv4Gw, nw.DNSServer, nw.DHCPServer, nw.MetadataServer} {
			if s == nil {
				continue
			}
			if a, err := netip.ParseAddr(*s); err == nil && a.Is4() && !slices.Contains(vn.services, a.String()) {
				vn.services = append(vn.services, a.String())
			}
		}
		if nw.DHCPServer != nil {
			if a, err := netip.ParseAddr(*nw.DHCPServer); err == nil && a.Is4() {
				vn.dhcp = a.String()
			}
		}
	}
	return vn, nil
}

// colonMAC turns the managers' 12 hex digits (or a colon form) into nft's.
func colonMAC(s string) (string, error) {
	if len(s) == 12 && !strings.Contains(s, ":") {
		parts := make([]string, 6)
		for i := range parts {
			parts[i] = s[2*i : 2*i+2]
		}
		s = strings.Join(parts, ":")
	}
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return "", fmt.Errorf("bad mac %q", s)
	}
	return m.String(), nil
}

func eq(f Field, v string) Match   { return Match{Field: f, Op: OpEq, Value: v} }
func in(f Field, set string) Match { return Match{Field: f, Op: OpInSet, Set: set} }
func accept(ms ...Match) Rule      { return Rule{Matches: ms, Verdict: Verdict{Kind: Accept}} }
func countDrop(ms ...Match) Rule {
	return Rule{Matches: ms, Counter: true, Verdict: Verdict{Kind: Drop}}
}
func gotoElem(key, chain string) Element  { return Element{Key: key, Goto: chain} }
func vmap(key Field, name string) Verdict { return Verdict{Kind: VMap, Key: key, Map: name} }
func members(f Field, sg string) Match    { return in(f, MembersSet(sg)) }
func etherType(t string) Match            { return eq(FieldEtherType, t) }

// sourceMatch is "from network p": nothing for 0.0.0.0/0.
func sourceMatch(f Field, p netip.Prefix) []Match {
	if p.Bits() == 0 {
		return nil
	}
	return []Match{{Field: f, Op: OpCIDR, Value: p.String()}}
}

// chainRules collects a chain's rules without duplicates (two groups of a
// vnic may allow the same thing).
type chainRules struct {
	rules []Rule
	seen  map[string]bool
}

func (cr *chainRules) add(r Rule) {
	if cr.seen == nil {
		cr.seen = map[string]bool{}
	}
	if k := r.String(); !cr.seen[k] {
		cr.seen[k] = true
		cr.rules = append(cr.rules, r)
	}
}

func (c *compiler) compileVnic(v vnicSpec) {
	c.fromMap.Elements = append(c.fromMap.Elements, gotoElem(v.id, OutChain(v.id)))
	c.toMap.Elements = append(c.toMap.Elements, gotoElem(v.id, InChain(v.id)))

	// Frames from the vnic: its MAC, its address (or DHCP's 0.0.0.0).
	var out chainRules
	out.add(countDrop(Match{Field: FieldEtherSrc, Op: OpNeq, Value: v.mac}))
	if v.addr.IsValid() {
		out.add(accept(etherType(EtherTypeIPv4), eq(FieldIPSrc, v.addr.String())))
	}
	out.add(accept(etherType(EtherTypeIPv4), eq(FieldIPSrc, "0.0.0.0"), eq(FieldIPDst, "255.255.255.255"),
		eq(FieldIPProto, ProtoUDP), eq(FieldTHSport, "68"), eq(FieldTHDport, "67")))
	if v.addr.IsValid() {
		out.add(accept(etherType(EtherTypeARP), eq(FieldARPSha, v.mac), eq(FieldARPSpa, v.addr.String())))
	}
	out.add(accept(etherType(EtherTypeARP), eq(FieldARPSha, v.mac), eq(FieldARPSpa, "0.0.0.0")))
	out.add(countDrop())

	// Frames to the vnic: IPv4 addressed to it goes on to the inet table;
	// ARP requests only from who may reach it.
	var brIn, ipIn chainRules
	ipIn.add(accept(Match{Field: FieldCtState, Op: OpAny, Value: "established,related"}))
	if v.addr.IsValid() && v.bridge != "" {
		brIn.add(accept(etherType(EtherTypeIPv4), eq(FieldIPDst, v.addr.String())))
	}
	if v.dhcp != "" {
		brIn.add(accept(etherType(EtherTypeIPv4), eq(FieldIPSrc, v.dhcp), eq(FieldIPProto, ProtoUDP),
			eq(FieldTHSport, "67"), eq(FieldTHDport, "68")))
	}
	var arp []Rule
	if v.addr.IsValid() {
		brIn.add(accept(etherType(EtherTypeARP), eq(FieldARPOp, ARPReply), eq(FieldARPTpa, v.addr.String())))
	}
	for _, g := range v.groups {
		// Friends: members of a group of the vnic reach it.
		c.needSet(g)
		arp = append(arp, accept(etherType(EtherTypeARP), members(FieldARPSpa, g)))
		ipIn.add(accept(members(FieldIPSrc, g)))
	}
	if v.dhcp != "" {
		ipIn.add(accept(eq(FieldIPSrc, v.dhcp), eq(FieldIPProto, ProtoUDP), eq(FieldTHSport, "67"), eq(FieldTHDport, "68")))
	}
	for _, g := range v.groups {
		grp := c.groups[g]
		if grp == nil {
			c.problems = append(c.problems, fmt.Errorf("vnic %s: security group %s is not in the data", v.id, g))
			continue
		}
		for _, r := range grp.rules {
			var src []Match
			var arpSrc []Match
			if r.IsReference() {
				c.needSet(r.Source)
				src = []Match{members(FieldIPSrc, r.Source)}
				arpSrc = []Match{members(FieldARPSpa, r.Source)}
			} else {
				p, err := netip.ParsePrefix(r.Source)
				if err != nil || !p.Addr().Is4() {
					c.problems = append(c.problems, fmt.Errorf("security group %s: rule %s: bad source", g, r))
					continue
				}
				src, arpSrc = sourceMatch(FieldIPSrc, p), sourceMatch(FieldARPSpa, p)
			}
			ipIn.add(accept(append(protoMatches(r), src...)...))
			arp = append(arp, accept(append([]Match{etherType(EtherTypeARP)}, arpSrc...)...))
		}
	}
	// Referencers: a group whose rules let this vnic in may ARP it, or its
	// members could not send the replies (a vnic's neighbour entry for a
	// peer expires and is re-resolved by the side that answers; only TCP's
	// confirmations hide that). Groups not in the data have no members to
	// name.
	for _, g := range v.groups {
		if grp := c.groups[g]; grp != nil {
			for _, r := range grp.referencers {
				if c.groups[r] != nil {
					c.needSet(r)
					arp = append(arp, accept(etherType(EtherTypeARP), members(FieldARPSpa, r)))
				}
			}
		}
	}
	for _, s := range v.services {
		arp = append(arp, accept(etherType(EtherTypeARP), eq(FieldARPSpa, s)))
	}
	if v.addr.IsValid() {
		for _, r := range arp {
			brIn.add(r)
		}
	}
	brIn.add(countDrop())
	ipIn.add(countDrop())

	c.bridge.Chains = append(c.bridge.Chains,
		Chain{Name: OutChain(v.id), Rules: out.rules},
		Chain{Name: InChain(v.id), Rules: brIn.rules})
	if v.addr.IsValid() && v.bridge != "" {
		c.inet.Chains = append(c.inet.Chains, Chain{Name: InChain(v.id), Rules: ipIn.rules})
		m := c.ipMaps[v.bridge]
		if m == nil {
			m = &Set{Name: AddrMap(v.bridge), Key: KeyIPv4, Map: true}
			c.ipMaps[v.bridge] = m
		}
		m.Elements = append(m.Elements, gotoElem(v.addr.String(), InChain(v.id)))
	}
}

// protoMatches is a rule's protocol part: tcp/udp with the destination
// port or range, icmp with its type and code (-1: any).
func protoMatches(r sgrule.Rule) []Match {
	switch r.Protocol {
	case sgrule.TCP, sgrule.UDP:
		p := ProtoTCP
		if r.Protocol == sgrule.UDP {
			p = ProtoUDP
		}
		port := eq(FieldTHDport, strconv.Itoa(r.FromPort))
		if r.ToPort != r.FromPort {
			port = Match{Field: FieldTHDport, Op: OpRange, Value: strconv.Itoa(r.FromPort), To: strconv.Itoa(r.ToPort)}
		}
		return []Match{eq(FieldIPProto, p), port}
	}
	ms := []Match{eq(FieldIPProto, ProtoICMP)}
	if r.ICMPType >= 0 {
		ms = append(ms, eq(FieldICMPType, strconv.Itoa(r.ICMPType)))
		if r.ICMPCode >= 0 {
			ms = append(ms, eq(FieldICMPCode, strconv.Itoa(r.ICMPCode)))
		}
	}
	return ms
}

func (c *compiler) needSet(sg string) { c.sets[sg] = true }

// finish adds the base chains, sets and maps.
func (c *compiler) finish() Ruleset {
	prefix := Match{Field: FieldIIFName, Op: OpPrefix, Value: TapPrefix}
	oprefix := Match{Field: FieldOIFName, Op: OpPrefix, Value: TapPrefix}
	c.bridge.Chains = append(c.bridge.Chains,
		Chain{Name: chainPrerouting, Hook: HookPrerouting, Priority: BridgePriority, Rules: []Rule{
			{Verdict: vmap(FieldIIFName, mapFromVnic)},
			countDrop(prefix),
		}},
		Chain{Name: chainForward, Hook: HookForward, Priority: BridgePriority, Rules: []Rule{
			{Verdict: vmap(FieldOIFName, mapToVnic)},
			countDrop(oprefix),
		}})
	c.bridge.Sets = append(c.bridge.Sets, *c.fromMap, *c.toMap)

	fwd := Chain{Name: chainForward, Hook: HookForward, Priority: InetPriority}
	bridges := make([]string, 0, len(c.ipMaps))
	for b := range c.ipMaps {
		bridges = append(bridges, b)
	}
	slices.Sort(bridges)
	for _, b := range bridges {
		fwd.Rules = append(fwd.Rules, Rule{
			Matches: []Match{eq(FieldNFProto, NFProtoIPv4), eq(FieldOIFName, b)},
			Verdict: vmap(FieldIPDst, AddrMap(b)),
		})
		c.inet.Sets = append(c.inet.Sets, *c.ipMaps[b])
	}
	c.inet.Chains = append(c.inet.Chains, fwd)

	sgs := make([]string, 0, len(c.sets))
	for sg := range c.sets {
		sgs = append(sgs, sg)
	}
	slices.Sort(sgs)
	for _, sg := range sgs {
		var elems []Element
		if g := c.groups[sg]; g != nil {
			for _, ip := range g.members {
				elems = append(elems, Element{Key: ip})
			}
		} else {
			c.problems = append(c.problems, fmt.Errorf("security group %s is named but not in the data: no member addresses", sg))
		}
		s := Set{Name: MembersSet(sg), Key: KeyIPv4, Elements: elems}
		c.bridge.Sets = append(c.bridge.Sets, s)
		c.inet.Sets = append(c.inet.Sets, s)
	}
	return Ruleset{Tables: []Table{c.bridge, c.inet}}.Sorted()
}
