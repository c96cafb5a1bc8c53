// Package sgrule parses the rule text of a security group, the format the
// 12.03 API stores in the group's `rule` column and hva turns into packet
// filter rules:
//
//	# comment
//	tcp:22,22,ip4:0.0.0.0
//	udp:53,53,ip4:10.0.0.0/8
//	icmp:-1,-1,ip4:0.0.0.0/0
//	tcp:80,80,sg-abcd1234
//
// The API and the agents share this package so that what the API accepts and
// reports is exactly what the agents enforce.
package sgrule

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Rule is one parsed line.
type Rule struct {
	Protocol         string // "tcp", "udp", "icmp"
	FromPort, ToPort int    // tcp/udp
	ICMPType         int    // icmp; -1 = any type
	ICMPCode         int    // icmp; -1 = any code
	IPVersion        string // "ip4" for CIDR sources, "" for group references
	Source           string // "a.b.c.d/n" or "sg-xxxx"
}

// SyntaxError reports the first line that does not parse. The API answers
// 400/142 InvalidSecurityGroupRule with it.
type SyntaxError struct {
	Line   string // the offending line, surrounding whitespace trimmed
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s: %q", e.Reason, e.Line)
}

// Protocol names.
const (
	TCP  = "tcp"
	UDP  = "udp"
	ICMP = "icmp"
)

// IPv4 is the IPVersion of CIDR sources.
const IPv4 = "ip4"

const refPrefix = "sg-"

// Parse parses rule text. Per line all whitespace is removed; blank lines
// and lines starting with '#' are skipped. Lines with an ip6 source, and icmp
// lines with type -1 but a specific code, are dropped without error as the
// original did. Any other malformed line fails the whole text with a
// *SyntaxError, so a group never holds half of what its owner wrote.
//
// Decisions beyond the original format:
//   - an ip4 source is masked to its network ("10.1.2.3/8" → "10.0.0.0/8"):
//     the packet filter matches networks, and showing the masked form tells
//     the user what is enforced;
//   - ports and icmp numbers are plain decimal integers ("-" allowed for icmp
//     only); "+22", "0x16", "22.0" are errors;
//   - every field of an icmp line is validated before the "type -1 with a
//     code" drop applies, so a bad code is reported rather than swallowed.
func Parse(text string) ([]Rule, error) {
	var rules []Rule
	for _, raw := range strings.Split(text, "\n") {
		line := stripSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		r, keep, err := parseLine(line)
		if err != nil {
			return nil, &SyntaxError{Line: strings.Trim(raw, asciiSpace), Reason: err.Error()}
		}
		if keep {
			rules = append(rules, r)
		}
	}
	return rules, nil
}

// asciiSpace is Ruby's \s; the original removed whitespace with that class,
// so other Unicode spaces stay and make the line invalid.
const asciiSpace = " \t\r\n\f\v"

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 && strings.ContainsRune(asciiSpace, r) {
			return -1
		}
		return r
	}, s)
}

// parseLine parses one whitespace-free line; keep=false drops it silently.
func parseLine(line string) (r Rule, keep bool, err error) {
	proto, rest, ok := strings.Cut(line, ":")
	if !ok {
		return r, false, fmt.Errorf("missing protocol")
	}
	switch proto {
	case TCP, UDP, ICMP:
	default:
		return r, false, fmt.Errorf("unknown protocol %q", proto)
	}
	fields := strings.Split(rest, ",")
	if len(fields) != 3 {
		return r, false, fmt.Errorf("expected %s:FROM,TO,SOURCE, got %d field(s) after the protocol", proto, len(fields))
	}
	r.Protocol = proto

	if proto == ICMP {
		// Quirk kept from the original: the first number is the code and
		// the second the type, although the documented form is type,code.
		code, err := parseInt(fields[0], true)
		if err != nil {
			return r, false, fmt.Errorf("icmp code: %v", err)
		}
		typ, err := parseInt(fields[1], true)
		if err != nil {
			return r, false, fmt.Errorf("icmp type: %v", err)
		}
		if !validICMPType(typ) {
			return r, false, fmt.Errorf("unsupported icmp type %d", typ)
		}
		if code < -1 || code > 15 {
			return r, false, fmt.Errorf("unsupported icmp code %d", code)
		}
		r.ICMPType, r.ICMPCode = typ, code
	} else {
		from, err := parseInt(fields[0], false)
		if err != nil {
			return r, false, fmt.Errorf("from port: %v", err)
		}
		to, err := parseInt(fields[1], false)
		if err != nil {
			return r, false, fmt.Errorf("to port: %v", err)
		}
		if from < 1 || from > 65535 || to < 1 || to > 65535 {
			return r, false, fmt.Errorf("port out of range 1-65535")
		}
		if from > to {
			return r, false, fmt.Errorf("from port %d is greater than to port %d", from, to)
		}
		r.FromPort, r.ToPort = from, to
	}

	src := fields[2]
	switch {
	case strings.HasPrefix(src, "ip4:"):
		cidr, err := parseIPv4(src[len("ip4:"):])
		if err != nil {
			return r, false, err
		}
		r.IPVersion, r.Source = IPv4, cidr
	case strings.HasPrefix(src, "ip6:"):
		// The original ignored IPv6 sources; so do we, without validating.
		return r, false, nil
	case isGroupRef(src):
		r.Source = src
	default:
		return r, false, fmt.Errorf("invalid source %q (want ip4:CIDR or sg-xxxx)", src)
	}

	if r.Protocol == ICMP && r.ICMPType == -1 && r.ICMPCode != -1 {
		// A code without a type cannot be matched; the original dropped it.
		return r, false, nil
	}
	return r, true, nil
}

// parseInt accepts decimal digits, with a leading '-' only when signed.
func parseInt(s string, signed bool) (int, error) {
	digits := s
	if signed && strings.HasPrefix(digits, "-") {
		digits = digits[1:]
	}
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return n, nil
}

// validICMPType lists the types the original accepted.
func validICMPType(t int) bool {
	switch t {
	case -1, 0, 3, 5, 8:
		return true
	}
	return t >= 11 && t <= 18
}

// parseIPv4 returns the masked network in CIDR form. An address without a
// prefix length is a host (/32), except 0.0.0.0, which users write for
// "anywhere" and the original turned into 0.0.0.0/0.
func parseIPv4(s string) (string, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil || !p.Addr().Is4() {
			return "", fmt.Errorf("invalid ip4 network %q", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return "", fmt.Errorf("invalid ip4 address %q", s)
		}
		bits := 32
		if a.IsUnspecified() {
			bits = 0
		}
		p = netip.PrefixFrom(a, bits)
	}
	return p.Masked().String(), nil
}

// isGroupRef matches ^sg-\w+$ with Ruby's ASCII \w.
func isGroupRef(s string) bool {
	if !strings.HasPrefix(s, refPrefix) || len(s) == len(refPrefix) {
		return false
	}
	for _, c := range []byte(s[len(refPrefix):]) {
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// IsReference reports whether the rule's source is another security group.
func (r Rule) IsReference() bool {
	return r.IPVersion == "" && isGroupRef(r.Source)
}

// References returns the distinct group uuids the rules reference, in the
// order they first appear (the order referencer events are published in).
func References(rules []Rule) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range rules {
		if r.IsReference() && !seen[r.Source] {
			seen[r.Source] = true
			out = append(out, r.Source)
		}
	}
	return out
}

// String renders the canonical line; Parse(r.String()) gives r back. For
// icmp that means "icmp:CODE,TYPE,…", mirroring the quirk in Parse.
func (r Rule) String() string {
	src := r.Source
	if r.IPVersion != "" {
		src = r.IPVersion + ":" + r.Source
	}
	if r.Protocol == ICMP {
		return fmt.Sprintf("%s:%d,%d,%s", r.Protocol, r.ICMPCode, r.ICMPType, src)
	}
	return fmt.Sprintf("%s:%d,%d,%s", r.Protocol, r.FromPort, r.ToPort, src)
}
