// Package tlstest makes cluster CAs and daemon certificates for tests.
package tlstest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/tlsutil"
)

// CA is a throwaway cluster CA.
type CA struct {
	CertPEM, KeyPEM []byte
}

// NewCA makes a CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	c, k, err := tlsutil.NewCA(name, time.Hour, time.Now())
	if err != nil {
		t.Fatalf("new CA: %v", err)
	}
	return &CA{CertPEM: c, KeyPEM: k}
}

// Cert signs a certificate of role for loopback (127.0.0.1, ::1, localhost).
func (ca *CA) Cert(t testing.TB, role, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := tlsutil.NewCert(ca.CertPEM, ca.KeyPEM, tlsutil.CertRequest{
		Role: role, Name: name, Hosts: []string{"127.0.0.1", "::1", "localhost"}, Validity: time.Hour,
	}, time.Now())
	if err != nil {
		t.Fatalf("new %s certificate: %v", role, err)
	}
	return c, k
}

// Identity is a loaded identity of role.
func (ca *CA) Identity(t testing.TB, role, name string) *tlsutil.Identity {
	t.Helper()
	c, k := ca.Cert(t, role, name)
	id, err := tlsutil.New(ca.CertPEM, c, k)
	if err != nil {
		t.Fatalf("load %s identity: %v", role, err)
	}
	return id
}

// Files writes ca.pem, <name>.pem and <name>-key.pem into a temp dir and
// returns their paths.
func (ca *CA) Files(t testing.TB, role, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	c, k := ca.Cert(t, role, name)
	caFile = filepath.Join(dir, tlsutil.CAFile)
	certFile = filepath.Join(dir, tlsutil.CertFile(name))
	keyFile = filepath.Join(dir, tlsutil.KeyFile(name))
	for path, data := range map[string][]byte{caFile: ca.CertPEM, certFile: c, keyFile: k} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
	}
	return caFile, certFile, keyFile
}
