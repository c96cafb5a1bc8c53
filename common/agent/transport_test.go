package agent

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

// The gossip transport carries packets (each in a buffer of its own size)
// and streams between two members on loopback, and shuts down cleanly.
func TestPacketTransport(t *testing.T) {
	a, err := newPacketTransport("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := newPacketTransport("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	ip, port, err := b.FinalAdvertiseAddr("", 0)
	if err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) || port != b.port() {
		t.Fatalf("advertise = %v:%d, %v", ip, port, err)
	}
	addrB := net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port()))

	msg := []byte("ping from a")
	if _, err := a.WriteTo(msg, addrB); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-b.PacketCh():
		if !bytes.Equal(p.Buf, msg) || cap(p.Buf) > 64 || p.From.String() != net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port())) {
			t.Errorf("packet = %q (cap %d) from %v", p.Buf, cap(p.Buf), p.From)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no packet")
	}

	c, err := a.DialTimeout(addrB, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("stream")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-b.StreamCh():
		buf := make([]byte, 6)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "stream" {
			t.Errorf("stream read %q, %v", buf, err)
		}
		s.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("no stream")
	}
	if err := b.Shutdown(); err != nil {
		t.Fatal(err)
	}
}
