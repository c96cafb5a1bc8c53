package filter

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	mnl "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/common/errs"
)

// Filter installs rule sets (NFT in the kernel, filtertest.Recorder in
// memory; filtertest.Run is the suite both pass).
type Filter interface {
	// Apply replaces the tables of rs, each deleted (when present) and made
	// again with rs's content, all in one transaction: it is applied whole
	// or not at all. Tables not in rs are not touched.
	Apply(ctx context.Context, rs Ruleset) error
	// Installed reads back the tables called name (of every family).
	Installed(ctx context.Context, name string) (Ruleset, error)
	// Remove deletes the tables called name; absent tables are removed.
	Remove(ctx context.Context, name string) error
}

// NFT is Filter over nftables' netlink interface.
type NFT struct {
	netns int // fd of the namespace, 0 = the process's

	// mu serialises Apply and Remove: their transactions replace whole
	// tables, and two at once would fail each other's delete-and-create.
	mu sync.Mutex
}

// NewNFT returns an NFT acting in the namespace whose fd is netnsFD (0: the
// namespace the process runs in). The caller keeps the fd open.
func NewNFT(netnsFD int) *NFT { return &NFT{netns: netnsFD} }

func (n *NFT) conn(bufBytes int) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{}
	if n.netns != 0 {
		opts = append(opts, nftables.WithNetNSFd(n.netns))
	}
	if bufBytes > 0 {
		opts = append(opts, nftables.WithSockOptions(func(c *mnl.Conn) error { return setBuffers(c, bufBytes) }))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink: %w", err)
	}
	return c, nil
}

// setBuffers sizes the socket for one large transaction: the batch is one
// sendmsg, which the kernel refuses beyond the send buffer, and every
// message is acknowledged into the receive buffer before the library reads
// any. The *FORCE options (root) go past the sysctl limits.
func setBuffers(c *mnl.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, n); e != nil && serr == nil {
				serr = fmt.Errorf("set netlink socket buffer to %d bytes: %w", n, e)
			}
		}
	})
	return cmp.Or(err, serr)
}

func family(f Family) (nftables.TableFamily, error) {
	switch f {
	case FamilyBridge:
		return nftables.TableFamilyBridge, nil
	case FamilyInet:
		return nftables.TableFamilyINet, nil
	}
	return 0, fmt.Errorf("unknown family %q", f)
}

var hooks = map[Hook]*nftables.ChainHook{
	HookPrerouting: nftables.ChainHookPrerouting,
	HookInput:      nftables.ChainHookInput,
	HookForward:    nftables.ChainHookForward,
	HookOutput:     nftables.ChainHookOutput,
}

func keyType(k KeyType) nftables.SetDatatype {
	if k == KeyIfname {
		return nftables.TypeIFName
	}
	return nftables.TypeIPAddr
}

// Apply implements Filter.
func (n *NFT) Apply(ctx context.Context, rs Ruleset) error {
	if err := rs.Validate(); err != nil {
		return errs.Wrap(errs.InvalidParameter, err, "invalid rule set")
	}
	return n.apply(ctx, rs)
}

// apply sends rs in one transaction, unchecked.
func (n *NFT) apply(ctx context.Context, rs Ruleset) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, "apply rule set")
	}
	n.mu.Lock()
	defer n.mu.Unlock()

	objects, elements := 0, 0
	for _, t := range rs.Tables {
		objects += 3 + len(t.Chains) + 2*len(t.Sets)
		for _, c := range t.Chains {
			objects += len(c.Rules)
		}
		for _, s := range t.Sets {
			elements += len(s.Elements)
		}
	}
	c, err := n.conn(1<<20 + objects*2048 + elements*128)
	if err != nil {
		return err
	}
	for _, t := range rs.Tables {
		if err := addTable(c, t); err != nil {
			return fmt.Errorf("table %s %s: %w", t.Family, t.Name, err)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("apply rule set (%d objects): %w", objects, kernelErr(err))
	}
	return nil
}

// addTable queues "create (if absent), delete, create" and the content: in
// one transaction that replaces the table, whether it existed or not.
func addTable(c *nftables.Conn, t Table) error {
	fam, err := family(t.Family)
	if err != nil {
		return err
	}
	tbl := &nftables.Table{Family: fam, Name: t.Name}
	c.AddTable(tbl)
	c.DelTable(tbl)
	c.AddTable(tbl)
	chains := map[string]*nftables.Chain{}
	for _, ch := range t.Chains {
		nc := &nftables.Chain{Name: ch.Name, Table: tbl}
		if ch.Hook != "" {
			h, ok := hooks[ch.Hook]
			if !ok {
				return fmt.Errorf("chain %s: unknown hook %q", ch.Name, ch.Hook)
			}
			prio := nftables.ChainPriority(ch.Priority)
			policy := nftables.ChainPolicyAccept
			nc.Hooknum, nc.Priority, nc.Type, nc.Policy = h, &prio, nftables.ChainTypeFilter, &policy
		}
		chains[ch.Name] = c.AddChain(nc)
	}
	sets := map[string]*nftables.Set{}
	for _, s := range t.Sets {
		ns := &nftables.Set{Table: tbl, Name: s.Name, KeyType: keyType(s.Key), KeyByteOrder: binaryutil.BigEndian}
		if s.Key == KeyIfname {
			// nft lists interface names right only when told they are
			// host-order strings (the kernel compares bytes either way).
			ns.KeyByteOrder = binaryutil.NativeEndian
		}
		if s.Map {
			ns.IsMap, ns.DataType = true, nftables.TypeVerdict
		}
		elems := make([]nftables.SetElement, 0, len(s.Elements))
		for _, e := range s.Elements {
			k, err := encodeKey(s.Key, e.Key)
			if err != nil {
				return fmt.Errorf("set %s: %w", s.Name, err)
			}
			el := nftables.SetElement{Key: k}
			if s.Map {
				el.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: e.Goto}
			}
			elems = append(elems, el)
		}
		if err := c.AddSet(ns, elems); err != nil {
			return fmt.Errorf("set %s: %w", s.Name, err)
		}
		sets[s.Name] = ns
	}
	for _, ch := range t.Chains {
		for i, r := range ch.Rules {
			es, err := encodeRule(t.Family, r)
			if err != nil {
				return fmt.Errorf("chain %s rule %d: %w", ch.Name, i, err)
			}
			for _, e := range es {
				if l, ok := e.(*expr.Lookup); ok {
					l.SetID = sets[l.SetName].ID
				}
			}
			c.AddRule(&nftables.Rule{Table: tbl, Chain: chains[ch.Name], Exprs: es})
		}
	}
	return nil
}

// kernelErr classifies a failed transaction.
func kernelErr(err error) error {
	switch {
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return errs.Wrap(errs.Unauthorized, err, "nftables needs CAP_NET_ADMIN")
	case errors.Is(err, syscall.ENOBUFS), errors.Is(err, syscall.EMSGSIZE):
		return errs.Wrap(errs.Unavailable, err, "netlink buffer too small for the transaction")
	}
	return err
}

// Installed implements Filter.
func (n *NFT) Installed(ctx context.Context, name string) (Ruleset, error) {
	if err := ctx.Err(); err != nil {
		return Ruleset{}, errs.Wrap(errs.Timeout, err, "read rule set")
	}
	c, err := n.conn(0)
	if err != nil {
		return Ruleset{}, err
	}
	tables, err := c.ListTables()
	if err != nil {
		return Ruleset{}, fmt.Errorf("list tables: %w", err)
	}
	var rs Ruleset
	for _, tbl := range tables {
		if tbl.Name != name || !ours(tbl) {
			continue
		}
		t, err := readTable(c, tbl)
		if err != nil {
			return Ruleset{}, fmt.Errorf("read table %s: %w", name, err)
		}
		rs.Tables = append(rs.Tables, t)
	}
	return rs.Sorted(), nil
}

// ours: vdc writes bridge and inet tables only; an ip or arp table of the
// same name is someone else's.
func ours(t *nftables.Table) bool {
	return t.Family == nftables.TableFamilyBridge || t.Family == nftables.TableFamilyINet
}

func readTable(c *nftables.Conn, tbl *nftables.Table) (Table, error) {
	var t Table
	switch tbl.Family {
	case nftables.TableFamilyBridge:
		t.Family = FamilyBridge
	case nftables.TableFamilyINet:
		t.Family = FamilyInet
	default:
		return t, fmt.Errorf("family %d is not one vdc writes", tbl.Family)
	}
	t.Name = tbl.Name
	chains, err := c.ListChainsOfTableFamily(tbl.Family)
	if err != nil {
		return t, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != tbl.Name {
			continue
		}
		nc := Chain{Name: ch.Name}
		if ch.Hooknum != nil {
			for h, num := range hooks {
				if *num == *ch.Hooknum {
					nc.Hook = h
				}
			}
			if ch.Priority != nil {
				nc.Priority = int(*ch.Priority)
			}
		}
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			return t, fmt.Errorf("rules of chain %s: %w", ch.Name, err)
		}
		for i, r := range rules {
			dr, err := decodeRule(r.Exprs)
			if err != nil {
				return t, fmt.Errorf("chain %s rule %d: %w", ch.Name, i, err)
			}
			nc.Rules = append(nc.Rules, dr)
		}
		t.Chains = append(t.Chains, nc)
	}
	sets, err := c.GetSets(tbl)
	if err != nil {
		return t, fmt.Errorf("list sets: %w", err)
	}
	// The library reads a verdict map's key type wrongly (it overwrites it
	// with the data type), so a map's key type is told by the length of its
	// keys or, when it is empty, by the field its vmap rule looks up.
	mapKeys := map[string]KeyType{}
	for _, ch := range t.Chains {
		for _, r := range ch.Rules {
			if r.Verdict.Kind == VMap {
				mapKeys[r.Verdict.Map] = fieldSpecs[r.Verdict.Key].key
			}
		}
	}
	for _, s := range sets {
		ns := Set{Name: s.Name, Map: s.IsMap, Key: KeyIPv4}
		elems, err := c.GetSetElements(s)
		if err != nil {
			return t, fmt.Errorf("elements of set %s: %w", s.Name, err)
		}
		switch {
		case !s.IsMap:
			if s.KeyType.GetNFTMagic() == nftables.TypeIFName.GetNFTMagic() {
				ns.Key = KeyIfname
			}
		case len(elems) > 0:
			if len(elems[0].Key) == int(nftables.TypeIFName.Bytes) {
				ns.Key = KeyIfname
			}
		case mapKeys[s.Name] != "":
			ns.Key = mapKeys[s.Name]
		}
		for _, e := range elems {
			k, err := decodeKey(ns.Key, e.Key)
			if err != nil {
				return t, fmt.Errorf("set %s: %w", s.Name, err)
			}
			el := Element{Key: k}
			if s.IsMap {
				if el.Goto, err = gotoOf(e.Val); err != nil {
					return t, fmt.Errorf("map %s element %s: %w", s.Name, k, err)
				}
			}
			ns.Elements = append(ns.Elements, el)
		}
		t.Sets = append(t.Sets, ns)
	}
	return t, nil
}

// gotoOf decodes a verdict map element's data (NFTA_DATA_VERDICT: code and
// chain), which the library hands over undecoded.
func gotoOf(b []byte) (string, error) {
	ad, err := mnl.NewAttributeDecoder(b)
	if err != nil {
		return "", err
	}
	ad.ByteOrder = binary.BigEndian
	var code int32
	var chain string
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			code = int32(ad.Uint32())
		case unix.NFTA_VERDICT_CHAIN:
			chain = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return "", err
	}
	if code != int32(expr.VerdictGoto) || chain == "" {
		return "", fmt.Errorf("verdict %d %q is not a goto", code, chain)
	}
	return chain, nil
}

// Remove implements Filter.
func (n *NFT) Remove(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, "remove tables "+name)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	c, err := n.conn(0)
	if err != nil {
		return err
	}
	tables, err := c.ListTables()
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	found := slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == name && ours(t) })
	if !found {
		return nil
	}
	for _, t := range tables {
		if t.Name == name && ours(t) {
			c.DelTable(t)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("remove tables %s: %w", name, kernelErr(err))
	}
	return nil
}

// ChainRules reads back the rules of one chain: a cheap look at the kernel
// for a caller waiting for a change (Installed reads every table).
func (n *NFT) ChainRules(ctx context.Context, f Family, table, chain string) ([]Rule, error) {
	if err := ctx.Err(); err != nil {
		return nil, errs.Wrap(errs.Timeout, err, "read chain "+chain)
	}
	fam, err := family(f)
	if err != nil {
		return nil, err
	}
	c, err := n.conn(0)
	if err != nil {
		return nil, err
	}
	tbl := &nftables.Table{Family: fam, Name: table}
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: chain, Table: tbl})
	if err == nil && len(rules) == 0 {
		// A dump of a missing chain is empty, not an error.
		_, err = c.ListChain(tbl, chain)
	}
	if err != nil {
		return nil, errs.Wrap(errs.NotFound, err, fmt.Sprintf("rules of %s %s chain %s", f, table, chain))
	}
	out := make([]Rule, 0, len(rules))
	for i, r := range rules {
		dr, err := decodeRule(r.Exprs)
		if err != nil {
			return nil, fmt.Errorf("chain %s rule %d: %w", chain, i, err)
		}
		out = append(out, dr)
	}
	return out, nil
}
