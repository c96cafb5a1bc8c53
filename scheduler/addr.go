package scheduler

import (
	"fmt"
	"strconv"
	"strings"
)

// IPv4 is an IPv4 address as a number, so that ranges, windows and
// "next address" are integer arithmetic. Zero stands for "not set" in optional
// fields (a gateway or DNS server is never 0.0.0.0).
type IPv4 uint32

// ParseIPv4 parses dotted-quad notation strictly: four decimal octets 0–255,
// no leading '+', no empty parts.
func ParseIPv4(s string) (IPv4, error) {
	var v uint32
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return 0, fmt.Errorf("invalid IPv4 address %q", s)
	}
	for _, p := range parts {
		if p == "" || len(p) > 3 || strings.TrimLeft(p, "0123456789") != "" {
			return 0, fmt.Errorf("invalid IPv4 address %q", s)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n > 255 {
			return 0, fmt.Errorf("invalid IPv4 address %q", s)
		}
		v = v<<8 | uint32(n)
	}
	return IPv4(v), nil
}

// MustIPv4 is ParseIPv4 for literals in tests and fixtures; it panics on a bad
// literal because that is a programming error, never input.
func MustIPv4(s string) IPv4 {
	a, err := ParseIPv4(s)
	if err != nil {
		panic(err)
	}
	return a
}

func (a IPv4) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", byte(a>>24), byte(a>>16), byte(a>>8), byte(a))
}

// mask returns the netmask of a prefix length.
func mask(prefix int) IPv4 {
	if prefix <= 0 {
		return 0
	}
	if prefix >= 32 {
		return ^IPv4(0)
	}
	return ^IPv4(0) << (32 - prefix)
}

// MAC is a 48-bit MAC address: vendor id in the top 24 bits.
type MAC uint64

// String is the form the manager stores: 12 lower-case hex digits.
func (m MAC) String() string { return fmt.Sprintf("%012x", uint64(m)) }

// Vendor is the top 24 bits (the OUI).
func (m MAC) Vendor() uint32 { return uint32(m >> 24) }

// Addr is the low 24 bits, the part MAC ranges are expressed in.
func (m MAC) Addr() uint32 { return uint32(m) & 0xffffff }

func makeMAC(vendor, addr uint32) MAC {
	return MAC(uint64(vendor&0xffffff)<<24 | uint64(addr&0xffffff))
}

// ParseMAC parses 12 hex digits, with or without ':' or '-' separators.
// It allocates nothing: a scheduler round parses every MAC in use.
func ParseMAC(s string) (MAC, error) {
	var v uint64
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		var d byte
		switch {
		case c == ':' || c == '-':
			continue
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("invalid MAC address %q", s)
		}
		if digits++; digits > 12 {
			return 0, fmt.Errorf("invalid MAC address %q", s)
		}
		v = v<<4 | uint64(d)
	}
	if digits != 12 {
		return 0, fmt.Errorf("invalid MAC address %q", s)
	}
	return MAC(v), nil
}
