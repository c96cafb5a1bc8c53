package tlsutil_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/tlsutil"
	"github.com/vdc-project/vdc/common/tlsutil/tlstest"
	"github.com/vdc-project/vdc/proto"
)

func TestNewCertCarriesRoleKeyAndSANs(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	certPEM, keyPEM, err := tlsutil.NewCert(ca.CertPEM, ca.KeyPEM, tlsutil.CertRequest{
		Role: proto.RoleHva, Name: "hva.demo1", Hosts: []string{"10.0.0.5", "hva1.example"},
	}, time.Now())
	if err != nil {
		t.Fatalf("NewCert: %v", err)
	}
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", c.PublicKey)
	}
	p, err := tlsutil.RoleOf(c)
	if err != nil || p.Role != proto.RoleHva || p.Name != "hva.demo1" {
		t.Errorf("RoleOf = %+v, %v", p, err)
	}
	if len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != "10.0.0.5" || len(c.DNSNames) != 1 || c.DNSNames[0] != "hva1.example" {
		t.Errorf("SANs = %v %v", c.IPAddresses, c.DNSNames)
	}
	if _, err := tlsutil.New(ca.CertPEM, certPEM, keyPEM); err != nil {
		t.Errorf("New: %v", err)
	}
}

func TestNewCertRejectsBadRequests(t *testing.T) {
	ca := tlstest.NewCA(t, "test CA")
	for _, r := range []tlsutil.CertRequest{
		{Role: "admin", Name: "x", Hosts: []string{"127.0.0.1"}},
		{Role: proto.RoleHva, Name: "", Hosts: []string{"127.0.0.1"}},
		{Role: proto.RoleHva, Name: "a/b", Hosts: []string{"127.0.0.1"}},
		{Role: proto.RoleHva, Name: "x"},
	} {
		if _, _, err := tlsutil.NewCert(ca.CertPEM, ca.KeyPEM, r, time.Now()); err == nil {
			t.Errorf("NewCert(%+v) succeeded", r)
		}
	}
	other := tlstest.NewCA(t, "other")
	if _, _, err := tlsutil.NewCert(ca.CertPEM, other.KeyPEM, tlsutil.CertRequest{
		Role: proto.RoleHva, Name: "x", Hosts: []string{"127.0.0.1"},
	}, time.Now()); err == nil {
		t.Error("NewCert with another CA's key succeeded")
	}
}

func TestNewRefusesCertificateOfAnotherCA(t *testing.T) {
	ca, other := tlstest.NewCA(t, "ours"), tlstest.NewCA(t, "theirs")
	c, k := other.Cert(t, proto.RoleManager, "m1")
	if _, err := tlsutil.New(ca.CertPEM, c, k); err == nil {
		t.Fatal("New accepted a certificate of another CA")
	}
}

// handshake runs a TLS handshake between the two configs over loopback and
// returns the client's and the server's error.
func handshake(t *testing.T, server, client *tls.Config, serverName string) (clientErr, serverErr error) {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the client
			// finished; read once so the client sees a rejection.
			_, err = c.Write([]byte("x"))
		}
		done <- err
	}()
	client = client.Clone()
	client.ServerName = serverName
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), client)
	if err == nil {
		buf := make([]byte, 1)
		_, err = c.Read(buf)
		c.Close()
	}
	return err, <-done
}

func TestMutualTLSChecksCAAndRoles(t *testing.T) {
	ca, other := tlstest.NewCA(t, "ours"), tlstest.NewCA(t, "theirs")
	mgr := ca.Identity(t, proto.RoleManager, "m1")
	hva := ca.Identity(t, proto.RoleHva, "hva.demo1")
	stranger := other.Identity(t, proto.RoleManager, "m9")

	if cErr, sErr := handshake(t, mgr.ServerConfig(proto.RoleHva), hva.ClientConfig(proto.RoleManager), "127.0.0.1"); cErr != nil || sErr != nil {
		t.Fatalf("hva -> manager: client %v, server %v", cErr, sErr)
	}
	cases := []struct {
		name           string
		server, client *tls.Config
		host           string
		want           string // in the server's or the client's error
	}{
		{"client of another CA", mgr.ServerConfig(), stranger.ClientConfig(), "127.0.0.1", "certificate"},
		{"server of another CA", stranger.ServerConfig(), hva.ClientConfig(), "127.0.0.1", "certificate"},
		{"client of the wrong role", mgr.ServerConfig(proto.RoleManager), hva.ClientConfig(), "127.0.0.1", "role hva"},
		{"server of the wrong role", hva.ServerConfig(), hva.ClientConfig(proto.RoleManager), "127.0.0.1", "role hva"},
		{"client without a certificate", mgr.ServerConfig(), &tls.Config{RootCAs: poolOf(t, ca.CertPEM), MinVersion: tls.VersionTLS13}, "127.0.0.1", "certificate"},
		{"address not in the SANs", mgr.ServerConfig(), hva.ClientConfig(), "10.9.9.9", "10.9.9.9"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cErr, sErr := handshake(t, tc.server, tc.client, tc.host)
			if cErr == nil && sErr == nil {
				t.Fatal("handshake succeeded")
			}
			msg := ""
			if cErr != nil {
				msg += cErr.Error()
			}
			if sErr != nil {
				msg += " | " + sErr.Error()
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("errors %q do not mention %q", msg, tc.want)
			}
		})
	}
}

func poolOf(t *testing.T, pemData []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		t.Fatal("bad CA PEM")
	}
	return p
}
