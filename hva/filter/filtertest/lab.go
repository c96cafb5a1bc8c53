package filtertest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/network"
)

// A Lab is a host in a network namespace of the test's own: a bridge with
// no uplink and guests, each a namespace joined to the bridge by a veth
// whose host end is named like a vnic's tap (vif-…). It stands in for
// guest VMs on taps with real packets. Everything is removed at cleanup.
type Lab struct {
	t      testing.TB
	Host   netns.NsHandle
	Name   string // the host namespace's name
	Bridge string
	h      *netlink.Handle
}

var labSeq atomic.Int64

// nsName is unique among the tests running on the machine (prefix nf-).
func nsName(kind string) string {
	return fmt.Sprintf("nf-%s%d-%d", kind, labSeq.Add(1), time.Now().UnixNano()%1_000_000)
}

// NewNS makes a network namespace removed at cleanup.
func NewNS(t testing.TB, kind string) (netns.NsHandle, string) {
	t.Helper()
	name := nsName(kind)
	ns, err := network.NewNamedNS(name)
	if err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := network.DeleteNamedNS(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return ns, name
}

// NewLab makes the host namespace with bridge (up, no address). It is a
// real-component test: it skips (or fails under VDC_REAL=1) off-root.
func NewLab(t testing.TB, bridge string) *Lab {
	t.Helper()
	testutil.Real(t, testutil.NeedRoot)
	ns, name := NewNS(t, "h")
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	t.Cleanup(h.Close)
	l := &Lab{t: t, Host: ns, Name: name, Bridge: bridge, h: h}
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}); err != nil {
		t.Fatalf("add bridge: %v", err)
	}
	l.up(h, bridge)
	l.up(h, "lo")
	return l
}

func (l *Lab) up(h *netlink.Handle, name string) {
	l.t.Helper()
	lk, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(lk)
	}
	if err != nil {
		l.t.Fatalf("set %s up: %v", name, err)
	}
}

// NFT is the nftables Filter of the host namespace.
func (l *Lab) NFT() *filter.NFT { return filter.NewNFT(int(l.Host)) }

// Guest is a namespace on the lab's bridge.
type Guest struct {
	lab    *Lab
	NS     netns.NsHandle
	Name   string
	HostIf string // the veth end on the bridge (the "tap")
	MAC    string // colon form
	IP     string
	h      *netlink.Handle
}

// AddGuest joins a new namespace to the bridge: its eth0 has mac and
// ip/24 (none if ip is ""), the host end is called hostIf.
func (l *Lab) AddGuest(hostIf, mac, ip string) *Guest {
	l.t.Helper()
	g, err := l.NewGuest(hostIf, mac, ip)
	if err != nil {
		l.t.Fatal(err)
	}
	return g
}

// NewGuest is AddGuest returning its error, for goroutines other than the
// test's (a host network plugging vnics for jobs).
func (l *Lab) NewGuest(hostIf, mac, ip string) (*Guest, error) {
	name := nsName("g")
	ns, err := network.NewNamedNS(name)
	if err != nil {
		return nil, fmt.Errorf("create netns %s: %w", name, err)
	}
	l.t.Cleanup(func() {
		ns.Close()
		if err := network.DeleteNamedNS(name); err != nil {
			l.t.Errorf("cleanup: %v", err)
		}
	})
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	l.t.Cleanup(h.Close)
	g := &Guest{lab: l, NS: ns, Name: name, HostIf: hostIf, MAC: mac, IP: ip, h: h}
	peer := "nfpeer" + strconv.FormatInt(labSeq.Add(1), 10)
	if err := l.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostIf}, PeerName: peer}); err != nil {
		return nil, fmt.Errorf("add veth %s: %w", hostIf, err)
	}
	steps := []func() error{
		func() error { return moveLink(l.h, peer, int(ns)) },
		func() error { return setMaster(l.h, hostIf, l.Bridge) },
		func() error { return setUp(l.h, hostIf) },
		func() error { return rename(h, peer, "eth0") },
		func() error { return g.setMAC(mac) },
		func() error {
			if ip == "" {
				return nil
			}
			return g.addAddr(ip)
		},
		func() error { return setUp(h, "eth0") },
		func() error { return setUp(h, "lo") },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("guest %s: %w", hostIf, err)
		}
	}
	return g, nil
}

func moveLink(h *netlink.Handle, name string, nsFD int) error {
	lk, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetNsFd(lk, nsFD)
	}
	return err
}

func setMaster(h *netlink.Handle, name, master string) error {
	br, err := h.LinkByName(master)
	if err != nil {
		return err
	}
	lk, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetMaster(lk, br)
	}
	return err
}

func setUp(h *netlink.Handle, name string) error {
	lk, err := h.LinkByName(name)
	if err == nil {
		err = h.LinkSetUp(lk)
	}
	return err
}

func rename(h *netlink.Handle, from, to string) error {
	lk, err := h.LinkByName(from)
	if err == nil {
		err = h.LinkSetName(lk, to)
	}
	return err
}

func (g *Guest) setMAC(mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	lk, err := g.h.LinkByName("eth0")
	if err == nil {
		err = g.h.LinkSetHardwareAddr(lk, hw)
	}
	return err
}

func (g *Guest) addAddr(ip string) error {
	a, err := netlink.ParseAddr(ip + "/24")
	if err != nil {
		return err
	}
	lk, err := g.h.LinkByName("eth0")
	if err == nil {
		err = g.h.AddrAdd(lk, a)
	}
	return err
}

// Remove deletes the guest's veth (both ends), as an unplugged tap.
func (g *Guest) Remove() error {
	lk, err := g.lab.h.LinkByName(g.HostIf)
	if err != nil {
		return err
	}
	return g.lab.h.LinkDel(lk)
}

// SetMAC changes the guest's MAC (as a spoofing guest would).
func (g *Guest) SetMAC(mac string) {
	g.lab.t.Helper()
	if err := g.setMAC(mac); err != nil {
		g.lab.t.Fatalf("set mac of %s: %v", g.Name, err)
	}
}

// StaticNeighbor pins ip to mac in the guest's neighbour table, so that it
// sends without ARP (a MAC change flushes learned entries).
func (g *Guest) StaticNeighbor(ip, mac string) {
	g.lab.t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		g.lab.t.Fatal(err)
	}
	lk, err := g.h.LinkByName("eth0")
	if err == nil {
		err = g.h.NeighSet(&netlink.Neigh{LinkIndex: lk.Attrs().Index, Family: netlink.FAMILY_V4,
			State: netlink.NUD_PERMANENT, IP: net.ParseIP(ip), HardwareAddr: hw})
	}
	if err != nil {
		g.lab.t.Fatalf("pin %s to %s in %s: %v", ip, mac, g.Name, err)
	}
}

// AddAddr adds ip/24 to the guest's eth0 (and makes it the guest's IP if
// it had none).
func (g *Guest) AddAddr(ip string) {
	g.lab.t.Helper()
	if err := g.addAddr(ip); err != nil {
		g.lab.t.Fatalf("add %s to %s: %v", ip, g.Name, err)
	}
	if g.IP == "" {
		g.IP = ip
	}
}

// Serve runs a TCP echo server on the guest's port (every address) until
// cleanup.
func (g *Guest) Serve(port int) {
	g.lab.t.Helper()
	var l net.Listener
	err := network.InNetNS(g.NS, func() error {
		var err error
		l, err = net.Listen("tcp4", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		g.lab.t.Fatalf("listen on %s:%d: %v", g.Name, port, err)
	}
	var wg sync.WaitGroup
	g.lab.t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// UDPSink records the datagrams a guest receives on a port, by source
// address and payload.
type UDPSink struct {
	mu   sync.Mutex
	seen map[[2]string]int
}

// Count is how many datagrams with payload came from ip.
func (u *UDPSink) Count(ip, payload string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[[2]string{ip, payload}]
}

// ServeUDP records datagrams to the guest's port until cleanup.
func (g *Guest) ServeUDP(port int) *UDPSink {
	g.lab.t.Helper()
	var pc net.PacketConn
	err := network.InNetNS(g.NS, func() error {
		var err error
		pc, err = net.ListenPacket("udp4", ":"+strconv.Itoa(port))
		return err
	})
	if err != nil {
		g.lab.t.Fatalf("listen udp on %s:%d: %v", g.Name, port, err)
	}
	sink := &UDPSink{seen: map[[2]string]int{}}
	done := make(chan struct{})
	g.lab.t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			sink.mu.Lock()
			sink.seen[[2]string{from.(*net.UDPAddr).IP.String(), string(buf[:n])}]++
			sink.mu.Unlock()
		}
	}()
	return sink
}

// SendUDP sends one datagram with payload from the guest (from src if
// set) to addr.
func (g *Guest) SendUDP(addr, src, payload string) error {
	return network.InNetNS(g.NS, func() error {
		var laddr *net.UDPAddr
		if src != "" {
			laddr = &net.UDPAddr{IP: net.ParseIP(src)}
		}
		raddr, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err := net.DialUDP("udp4", laddr, raddr)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
}

// Dial opens a TCP connection from the guest (from its address, or from
// src if set) within timeout.
func (g *Guest) Dial(addr, src string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := network.InNetNS(g.NS, func() error {
		d := net.Dialer{Timeout: timeout}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		var err error
		c, err = d.Dial("tcp4", addr)
		return err
	})
	return c, err
}

// Echo sends a line on c and reads it back within timeout.
func Echo(c net.Conn, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("vdc\n")); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if line != "vdc\n" {
		return fmt.Errorf("echo %q", line)
	}
	return nil
}

// Connect dials addr from the guest and checks an echo round trip.
func (g *Guest) Connect(addr, src string, timeout time.Duration) error {
	c, err := g.Dial(addr, src, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return Echo(c, timeout)
}

// Ping sends one ICMP echo request from the guest and waits for the reply.
func (g *Guest) Ping(ctx context.Context, ip string, timeout time.Duration) error {
	secs := strconv.Itoa(max(1, int(timeout/time.Second)))
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", g.Name, "ping", "-n", "-c", "1", "-W", secs, ip).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s from %s: %v: %s", ip, g.Name, err, out)
	}
	return nil
}

// Addr is ip:port.
func Addr(ip string, port int) string {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)).String()
}
