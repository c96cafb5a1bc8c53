// Package tlsutil is the cluster's mutual TLS: a cluster CA, one certificate
// per daemon carrying the daemon's role, and the tls.Configs that make both
// ends of a connection prove who they are (internal RPC, raft).
//
// A daemon certificate is an ECDSA P-256 key signed by the cluster CA, with
// Subject O=vdc, OU=<role> (manager, hva, sta, scheduler), CN=<name>, the
// DNS names and IP addresses it is reached at as SANs, and both server and
// client key usage (every daemon serves RPC and calls its peers). The role
// is read from the OU of a verified chain only, so a certificate from another
// CA never gets as far as having a role.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/proto"
)

// File names vdc-manage writes in a TLS directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// CertFile and KeyFile are the file names of a daemon's certificate and key.
func CertFile(name string) string { return name + ".pem" }

// KeyFile is the file name of a daemon's private key.
func KeyFile(name string) string { return name + "-key.pem" }

// Organization is the Subject O of every certificate the cluster CA signs.
const Organization = "vdc"

// knownRoles are the roles a certificate may carry.
var knownRoles = []string{proto.RoleManager, proto.RoleHva, proto.RoleSta, proto.RoleScheduler}

// Default validities.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 2 * 365 * 24 * time.Hour
)

// clockSkew back-dates NotBefore so that a peer whose clock runs a little
// behind accepts a certificate made a moment ago.
const clockSkew = 5 * time.Minute

// NewCA returns a self-signed CA certificate and its key, PEM-encoded.
func NewCA(commonName string, validity time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{Organization}, CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // the CA signs daemon certificates only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// CertRequest describes a daemon certificate.
type CertRequest struct {
	Role string // manager, hva, sta or scheduler
	Name string // CN; the daemon's node name or node id
	// Hosts are the DNS names and IP addresses peers reach the daemon at;
	// a peer checks the address it dialled against them.
	Hosts    []string
	Validity time.Duration
}

// NewCert signs a daemon certificate with the CA and returns it with its
// new key, PEM-encoded.
func NewCert(caCertPEM, caKeyPEM []byte, req CertRequest, now time.Time) (certPEM, keyPEM []byte, err error) {
	if !slices.Contains(knownRoles, req.Role) {
		return nil, nil, fmt.Errorf("role %q: want one of %s", req.Role, strings.Join(knownRoles, ", "))
	}
	if req.Name == "" || strings.ContainsAny(req.Name, "/\\ \t\n") {
		return nil, nil, fmt.Errorf("certificate name %q: want a non-empty name without slashes or spaces", req.Name)
	}
	if len(req.Hosts) == 0 {
		return nil, nil, errors.New("a certificate needs at least one host (DNS name or IP address) peers reach it at")
	}
	if req.Validity <= 0 {
		req.Validity = DefaultCertValidity
	}
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization:       []string{Organization},
			OrganizationalUnit: []string{req.Role},
			CommonName:         req.Name,
		},
		NotBefore:   now.Add(-clockSkew),
		NotAfter:    now.Add(req.Validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, h := range req.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, errors.New("CA certificate: no PEM certificate")
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("CA certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, errors.New("CA key: no PEM block")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	if !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, errors.New("CA key does not belong to the CA certificate")
	}
	return ca, key, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return n, nil
}

// Peer is who is at the other end of a verified connection.
type Peer struct {
	Role string
	Name string
}

// RoleOf reads the role of a certificate that chains to the cluster CA.
func RoleOf(c *x509.Certificate) (Peer, error) {
	if !slices.Contains(c.Subject.Organization, Organization) || len(c.Subject.OrganizationalUnit) != 1 {
		return Peer{}, fmt.Errorf("certificate %q carries no vdc role", c.Subject.CommonName)
	}
	role := c.Subject.OrganizationalUnit[0]
	if !slices.Contains(knownRoles, role) {
		return Peer{}, fmt.Errorf("certificate %q has unknown role %q", c.Subject.CommonName, role)
	}
	return Peer{Role: role, Name: c.Subject.CommonName}, nil
}

// PeerOf is the verified peer of a TLS connection state: the role of the
// leaf of the first verified chain.
func PeerOf(cs *tls.ConnectionState) (Peer, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Peer{}, errors.New("no verified peer certificate")
	}
	return RoleOf(cs.VerifiedChains[0][0])
}

// Identity is a daemon's certificate and the cluster CA it trusts.
type Identity struct {
	Peer // this daemon's own role and name
	cert tls.Certificate
	ca   *x509.CertPool
}

// Load reads the CA certificate, the daemon's certificate and its key.
func Load(caFile, certFile, keyFile string) (*Identity, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	cert, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	id, err := New(ca, cert, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	return id, nil
}

// New builds an Identity from PEM data. The certificate must chain to the
// CA and carry a role: a daemon started with a certificate its peers would
// refuse fails at start, not at its first call.
func New(caPEM, certPEM, keyPEM []byte) (*Identity, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA file holds no PEM certificate")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("certificate does not verify against the CA: %w", err)
	}
	p, err := RoleOf(leaf)
	if err != nil {
		return nil, err
	}
	return &Identity{Peer: p, cert: pair, ca: pool}, nil
}

// ServerConfig is the config of a listener: clients must present a
// certificate of the cluster CA; with roles given, its role must be one of
// them (otherwise any role, and the caller checks per request).
func (id *Identity) ServerConfig(roles ...string) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{id.cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        id.ca,
		VerifyConnection: checkRole("client", roles),
	}
}

// ClientConfig is the config of a dialer: the server must present a
// certificate of the cluster CA for the address dialled (its SANs) and, with
// roles given, of one of those roles.
func (id *Identity) ClientConfig(roles ...string) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{id.cert},
		RootCAs:          id.ca,
		VerifyConnection: checkRole("server", roles),
	}
}

// RoleError is a verified peer certificate refused for its role (or for
// carrying none).
type RoleError struct {
	Side string // "client" or "server": whose certificate was refused
	Msg  string
}

func (e *RoleError) Error() string { return e.Side + " " + e.Msg }

// checkRole runs after the chain (and, on clients, the host name) verified.
func checkRole(side string, roles []string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		p, err := PeerOf(&cs)
		if err != nil {
			return &RoleError{Side: side, Msg: "certificate: " + err.Error()}
		}
		if len(roles) > 0 && !slices.Contains(roles, p.Role) {
			return &RoleError{Side: side, Msg: fmt.Sprintf("%q has role %s, want %s", p.Name, p.Role, strings.Join(roles, " or "))}
		}
		return nil
	}
}
