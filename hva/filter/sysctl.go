package filter

import (
	"bytes"
	"fmt"
	"os"
)

// BridgeNFCallIptables is the sysctl that hands bridged IPv4 to the inet
// hooks (br_netfilter). Without it the inet table never sees traffic
// between vnics on a bridge: their IPv4 would be filtered by nothing.
const BridgeNFCallIptables = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// EnsureBridgeNetfilter turns the sysctl at path (BridgeNFCallIptables) on
// if it is off, and reports whether it changed it. It reads the namespace
// of the calling process.
func EnsureBridgeNetfilter(path string) (changed bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("bridged IPv4 cannot be filtered: read %s (is br_netfilter in the kernel?): %w", path, err)
	}
	if string(bytes.TrimSpace(b)) == "1" {
		return false, nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return false, fmt.Errorf("bridged IPv4 cannot be filtered: turn on %s: %w", path, err)
	}
	return true, nil
}
