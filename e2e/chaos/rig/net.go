package rig

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Network faults. Partitions are nftables rules inside the hosts'
// namespaces (inet family, input and output); a host cut off entirely has
// its switch port down; a one-way cut is a bridge-family forward rule in the
// switch namespace. Heal removes all of them. (No netem on this kernel:
// delay and loss are not offered.)

const (
	partitionTable = "rig_partition"
	oneWayTable    = "rig_oneway"
)

// Partition splits hosts into groups that cannot reach each other: a host
// of one group drops every packet from and to the hosts of the other
// groups. Hosts in no group, and the client host, still reach everyone
// (with only some hosts grouped this is a bridged, partial partition). It
// replaces an earlier partition.
func (r *Rig) Partition(ctx context.Context, groups ...[]*Host) error {
	var desc []string
	for _, g := range groups {
		var names []string
		for _, h := range g {
			names = append(names, h.Name)
		}
		desc = append(desc, strings.Join(names, ","))
	}
	r.logf("rig: partition %s", strings.Join(desc, " | "))
	for i, g := range groups {
		var cut []string
		for j, other := range groups {
			if j == i {
				continue
			}
			for _, h := range other {
				cut = append(cut, h.Addr)
			}
		}
		for _, h := range g {
			script := fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	set cut { type ipv4_addr; elements = { %[2]s } }
	chain in { type filter hook input priority 0; policy accept; ip saddr @cut drop; }
	chain out { type filter hook output priority 0; policy accept; ip daddr @cut drop; }
}
`, partitionTable, strings.Join(cut, ", "))
			if len(cut) == 0 {
				continue
			}
			if err := runInput(ctx, script, "ip", "netns", "exec", h.NS, "nft", "-f", "-"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Isolate cuts host h off the switch (its port down): nothing reaches it,
// the client included.
func (r *Rig) Isolate(ctx context.Context, h *Host) error {
	r.logf("rig: isolate %s (switch port down)", h.Name)
	return run(ctx, "ip", "-n", r.sw, "link", "set", h.Port, "down")
}

// DropOneWay drops IPv4 frames from one host to another at the switch; the
// other direction, and ARP, still pass. Calls add up.
func (r *Rig) DropOneWay(ctx context.Context, from, to *Host) error {
	r.logf("rig: drop %s -> %s (one way)", from.Name, to.Name)
	script := fmt.Sprintf(`table bridge %[1]s {
	chain forward_c { type filter hook forward priority 0; policy accept; }
}
add rule bridge %[1]s forward_c iifname "%[2]s" oifname "%[3]s" ether type ip drop
`, oneWayTable, from.Port, to.Port)
	return runInput(ctx, script, "ip", "netns", "exec", r.sw, "nft", "-f", "-")
}

// Heal removes every network fault: partitions, isolated hosts, one-way
// cuts.
func (r *Rig) Heal(ctx context.Context) error {
	r.logf("rig: heal network")
	var errList []string
	for _, h := range r.Hosts {
		script := fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", partitionTable)
		if err := runInput(ctx, script, "ip", "netns", "exec", h.NS, "nft", "-f", "-"); err != nil {
			errList = append(errList, err.Error())
		}
		if err := run(ctx, "ip", "-n", r.sw, "link", "set", h.Port, "up"); err != nil {
			errList = append(errList, err.Error())
		}
	}
	script := fmt.Sprintf("table bridge %[1]s\ndelete table bridge %[1]s\n", oneWayTable)
	if err := runInput(ctx, script, "ip", "netns", "exec", r.sw, "nft", "-f", "-"); err != nil {
		errList = append(errList, err.Error())
	}
	if len(errList) > 0 {
		return fmt.Errorf("heal: %s", strings.Join(errList, "; "))
	}
	return nil
}

// HTTPClient is an HTTP client whose connections start in the client
// host's namespace (the test process itself stays in its own).
func (r *Rig) HTTPClient(timeout time.Duration) (*http.Client, error) {
	return r.HTTPClientFrom(r.Client, timeout)
}

// HTTPClientFrom is an HTTP client whose connections start in host h's
// namespace.
func (r *Rig) HTTPClientFrom(h *Host, timeout time.Duration) (*http.Client, error) {
	d, err := r.dialer(h)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}}, nil
}

// nsDialer opens sockets in a network namespace.
type nsDialer struct {
	ns *os.File
	d  net.Dialer
}

func (r *Rig) dialer(h *Host) (*nsDialer, error) {
	f, err := os.Open("/run/netns/" + h.NS)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		f.Close()
		return nil, fmt.Errorf("rig closed")
	}
	r.netFiles = append(r.netFiles, f)
	return &nsDialer{ns: f, d: net.Dialer{Timeout: 3 * time.Second}}, nil
}

// DialContext connects from the namespace (see inNamespace).
func (d *nsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNamespace(d.ns, func() error {
		var err error
		conn, err = d.d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil && conn != nil {
		conn.Close()
		conn = nil
	}
	return conn, err
}

// InNamespace runs fn with its goroutine in host h's network namespace:
// sockets fn creates stay there.
func (r *Rig) InNamespace(h *Host, fn func() error) error {
	f, err := os.Open("/run/netns/" + h.NS)
	if err != nil {
		return err
	}
	defer f.Close()
	return inNamespace(f, fn)
}

// inNamespace switches its locked OS thread into namespace ns, runs fn (a
// socket stays in the namespace it was made in), and switches back. A
// thread that cannot switch back stays locked, so that the runtime retires
// it with the goroutine.
func inNamespace(ns *os.File, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace: %w", err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("leave namespace: %w (after %v)", err, fnErr)
	}
	runtime.UnlockOSThread()
	return fnErr
}
