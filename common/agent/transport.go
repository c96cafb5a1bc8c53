package agent

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// packetTransport is memberlist's transport over UDP packets and TCP
// streams, like memberlist.NetTransport, except that a received packet is
// copied out of one read buffer into a slice of its own size. NetTransport
// hands every packet a fresh 64 KiB buffer; gossip packets are a few hundred
// bytes, so with many members in one process (the simulated datacenter)
// those buffers were half of all allocations and drove the garbage
// collector.
type packetTransport struct {
	udp      *net.UDPConn
	tcp      *net.TCPListener
	packets  chan *memberlist.Packet
	streams  chan net.Conn
	shutdown atomic.Bool
	wg       sync.WaitGroup
}

// maxPacket is the largest UDP datagram.
const maxPacket = 65536

// newPacketTransport listens for UDP and TCP on the same address (port 0:
// a port free for both).
func newPacketTransport(host string, port int) (*packetTransport, error) {
	var lastErr error
	for range 10 {
		t, err := listenPair(host, port)
		if err == nil {
			t.wg.Add(2)
			go t.readPackets()
			go t.acceptStreams()
			return t, nil
		}
		lastErr = err
		if port != 0 {
			break
		}
	}
	return nil, fmt.Errorf("gossip transport on %s: %w", net.JoinHostPort(host, strconv.Itoa(port)), lastErr)
}

func listenPair(host string, port int) (*packetTransport, error) {
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.ParseIP(host), Port: port})
	if err != nil {
		return nil, err
	}
	port = tcp.Addr().(*net.TCPAddr).Port
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host), Port: port})
	if err != nil {
		tcp.Close()
		return nil, err
	}
	// Bursts of gossip to one member must not be dropped by a small
	// socket buffer while its goroutine waits for the CPU.
	_ = udp.SetReadBuffer(2 << 20)
	return &packetTransport{udp: udp, tcp: tcp,
		packets: make(chan *memberlist.Packet), streams: make(chan net.Conn)}, nil
}

// port is the bound port (UDP and TCP).
func (t *packetTransport) port() int { return t.tcp.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *packetTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if port == 0 {
		port = t.port()
	}
	if ip != "" {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, 0, fmt.Errorf("advertise address %q is not an IP", ip)
		}
		if v4 := a.To4(); v4 != nil {
			a = v4
		}
		return a, port, nil
	}
	a := t.tcp.Addr().(*net.TCPAddr).IP
	if a.IsUnspecified() {
		return nil, 0, errors.New("gossip transport bound to an unspecified address needs an advertise address")
	}
	return a, port, nil
}

// WriteTo implements memberlist.Transport.
func (t *packetTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return time.Time{}, err
	}
	_, err = t.udp.WriteTo(b, ua)
	return time.Now(), err
}

// PacketCh implements memberlist.Transport.
func (t *packetTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout implements memberlist.Transport.
func (t *packetTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.Dial("tcp", addr)
}

// StreamCh implements memberlist.Transport.
func (t *packetTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown implements memberlist.Transport.
func (t *packetTransport) Shutdown() error {
	t.shutdown.Store(true)
	t.tcp.Close()
	t.udp.Close()
	t.wg.Wait()
	return nil
}

func (t *packetTransport) readPackets() {
	defer t.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, addr, err := t.udp.ReadFrom(buf)
		ts := time.Now()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			continue
		}
		if n < 1 {
			continue
		}
		t.packets <- &memberlist.Packet{Buf: append([]byte(nil), buf[:n]...), From: addr, Timestamp: ts}
	}
}

func (t *packetTransport) acceptStreams() {
	defer t.wg.Done()
	delay := 5 * time.Millisecond
	for {
		c, err := t.tcp.AcceptTCP()
		if err != nil {
			if t.shutdown.Load() {
				return
			}
			time.Sleep(delay)
			delay = min(2*delay, time.Second)
			continue
		}
		delay = 5 * time.Millisecond
		t.streams <- c
	}
}
