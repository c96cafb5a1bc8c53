package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vdc-project/vdc/common/tlsutil"
	"github.com/vdc-project/vdc/proto"
)

// handshakeTimeout bounds the TLS handshake of an accepted raft connection,
// so that a peer that connects and says nothing does not hold a goroutine.
const handshakeTimeout = 10 * time.Second

// tlsStream is raft's stream layer over mutual TLS with the cluster CA: both
// ends must hold a manager certificate, and the dialler checks the address
// it dialled against the listener's certificate.
type tlsStream struct {
	net.Listener
	adv    net.Addr
	server *tls.Config
	client *tls.Config
}

func newTLSStream(bind string, adv net.Addr, id *tlsutil.Identity) (*tlsStream, error) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen %s: %w", bind, err)
	}
	return &tlsStream{
		Listener: l,
		adv:      adv,
		server:   id.ServerConfig(proto.RoleManager),
		client:   id.ClientConfig(proto.RoleManager),
	}, nil
}

// Accept returns the next connection; its handshake runs on its first read
// (in raft's per-connection goroutine), bounded by handshakeTimeout.
func (t *tlsStream) Accept() (net.Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, t.server)}, nil
}

// Addr is the advertised address (raft tells it to its peers).
func (t *tlsStream) Addr() net.Addr { return t.adv }

// Dial connects and completes the handshake within timeout.
func (t *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("raft peer address %q: %w", address, err)
	}
	cfg := t.client.Clone()
	cfg.ServerName = host
	return tls.DialWithDialer(&net.Dialer{Timeout: timeout}, "tcp", string(address), cfg)
}

// serverConn completes the server handshake before the first read.
type serverConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *serverConn) Read(b []byte) (int, error) {
	c.once.Do(func() {
		_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
		c.err = c.Handshake()
		_ = c.SetDeadline(time.Time{})
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(b)
}
