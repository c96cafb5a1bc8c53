package api

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/cluster"
	"github.com/vdc-project/vdc/proto"
)

// Who may call the API (README "API access"). The 12.03 server trusted the
// account header from anyone, and a request without it was the operator's:
// whoever reached the port could act as any account or as the operator. Here
// that trust is given only to the configured frontends:
//
//   - a request from a trusted frontend (api.trusted_frontends, default
//     loopback) is as in the original: the account header names the
//     account, no header is an operator call;
//   - a request with "Authorization: Bearer <token>" of a configured token
//     (api.tokens) is made as that token's account, from any address, and
//     may not change the operator's infrastructure (host and storage nodes,
//     DC networks, backup storages, groups, accounts); an operator token (no
//     account) may name an account in the header;
//   - anything else is refused with 403/105 OperationNotPermitted — also
//     when it carries an account header, because ignoring the header would
//     turn the caller into the operator.
//
// A request a follower forwards to the leader is judged by the client
// address the follower saw (headerClientAddr), which the leader believes
// only when the connection comes from a manager's address in serf.

// headerClientAddr carries the client address across a forward.
const headerClientAddr = "X-Vdc-Client-Addr"

// DefaultTrustedFrontends trusts the manager's own host only: the quick
// start, mussel and vdc-manage on the manager host keep working unchanged.
func DefaultTrustedFrontends() []string { return []string{"127.0.0.0/8", "::1/128"} }

// Token is an API token (api.tokens): the bearer acts as Account, or as the
// operator when Account is empty.
type Token struct {
	Token   string `json:"token"`
	Account string `json:"account"`
}

// caller is who a request acts as, decided before any route runs.
type caller struct {
	addr netip.Addr // the client, across a forward
	// account is the account the request acts as; "" = the operator.
	account string
	// viaManager: forwarded by another manager, which already counted it
	// against the rate limit.
	viaManager bool
	// tenant: authenticated by an account's API token. Such a caller talks
	// to the API without a frontend, so nothing else keeps it away from the
	// operator's infrastructure routes.
	tenant bool
}

type ctxCaller struct{}

func callerFrom(ctx context.Context) (caller, bool) {
	c, ok := ctx.Value(ctxCaller{}).(caller)
	return c, ok
}

// accessRules is the parsed access configuration.
type accessRules struct {
	trusted []netip.Prefix
	tokens  map[[sha256.Size]byte]string // sha256(token) -> account
}

func parsePrefixes(cidrs []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range cidrs {
		c = strings.TrimSpace(c)
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return nil, fmt.Errorf("trusted frontend %q: want an address or a CIDR", c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func newAccess(cfg Config) (accessRules, error) {
	frontends := cfg.TrustedFrontends
	if frontends == nil {
		frontends = DefaultTrustedFrontends()
	}
	trusted, err := parsePrefixes(frontends)
	if err != nil {
		return accessRules{}, err
	}
	ac := accessRules{trusted: trusted, tokens: map[[sha256.Size]byte]string{}}
	for i, t := range cfg.Tokens {
		if len(t.Token) < 16 {
			return accessRules{}, fmt.Errorf("api token #%d is shorter than 16 characters", i+1)
		}
		if t.Account != "" && (!strings.HasPrefix(t.Account, proto.PrefixAccount+"-") || !validUUIDPart(t.Account[2:])) {
			return accessRules{}, fmt.Errorf("api token #%d: account %q is not an account id", i+1, t.Account)
		}
		ac.tokens[sha256.Sum256([]byte(t.Token))] = t.Account
	}
	return ac, nil
}

func (ac *accessRules) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ac.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// isManager reports whether a is an address a live manager advertises.
func (a *API) isManager(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	for _, m := range a.b.Members() {
		if m.Tags[cluster.TagRole] != cluster.RoleManager || m.Status != "alive" {
			continue
		}
		for _, hp := range []string{m.Addr, m.Tags[cluster.TagAPI], m.Tags[cluster.TagRaft], m.Tags[cluster.TagRPC]} {
			host, _, err := net.SplitHostPort(hp)
			if err != nil {
				continue
			}
			if h, err := netip.ParseAddr(host); err == nil && h.Unmap() == addr {
				return true
			}
		}
	}
	return false
}

func forbidden(format string, args ...any) error {
	return errs.New(errs.OperationNotPermitted, format, args...)
}

// infrastructure are the resources the operator manages: public by the
// spec and driven by mussel with its account header through a trusted
// frontend, but not changed by an account's API token.
var infrastructure = map[string]bool{
	"host_nodes": true, "storage_nodes": true, "dc_networks": true, "backup_storages": true,
	"host_node_groups": true, "storage_node_groups": true, "network_groups": true, "accounts": true,
}

// checkTenant refuses a tenant's change to the infrastructure (403/105);
// reads stay open, as for every account.
func checkTenant(c caller, r *http.Request) error {
	if !c.tenant || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	rest := strings.TrimPrefix(r.URL.Path, Prefix+"/")
	res, _, _ := strings.Cut(rest, "/")
	if infrastructure[res] {
		return forbidden("%s are the operator's: an account token may only read them", res)
	}
	return nil
}

// identify decides who r acts as (see the comment at the top).
func (a *API) identify(r *http.Request) (caller, error) {
	c := caller{addr: remoteAddr(r)}
	if r.Header.Get(headerForwarded) != "" && a.isManager(c.addr) {
		c.viaManager = true
		if fwd, err := netip.ParseAddr(r.Header.Get(headerClientAddr)); err == nil {
			c.addr = fwd.Unmap()
		}
	}
	hdr := strings.TrimSpace(accountHeader(r.Header))
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && len(a.rules.tokens) > 0 {
		account, known := a.rules.tokens[sha256.Sum256([]byte(strings.TrimSpace(bearer)))]
		switch {
		case !known:
			return c, forbidden("Invalid API token")
		case account == "":
			c.account = hdr // an operator token may act as any account
		case hdr != "" && hdr != account:
			return c, forbidden("The API token is not for account %s", hdr)
		default:
			c.account, c.tenant = account, true
		}
		return c, nil
	}
	if !a.rules.isTrusted(c.addr) {
		if len(a.rules.tokens) > 0 {
			return c, forbidden("Requests from %s need an API token", c.addr)
		}
		return c, forbidden("%s is not a trusted frontend", c.addr)
	}
	c.account = hdr
	return c, nil
}
