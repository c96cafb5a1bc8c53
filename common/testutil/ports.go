package testutil

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// FreePort returns a loopback port free for both TCP and UDP a moment ago,
// for daemons that must know their port before they start (serf binds both
// protocols to one port). Prefer port 0 where the caller can read the bound
// address back. Ports come from 20000–32767, below Linux's ephemeral range,
// so a port handed out here is not also given to some other port-0 bind.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12768)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port
	}
	t.Fatalf("no free tcp+udp port")
	return 0
}
