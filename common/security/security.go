// Package security is what every vdc daemon's config file says about cluster
// security — the "security" section shared by dcmgr, scheduler, hva and sta —
// and how it is loaded: the RPC token(s), the mutual TLS files, and the
// serf gossip keyring. README "Cluster security" describes the procedures.
package security

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/tlsutil"
)

// GossipKeySize is the key size of the gossip keyring: 32 bytes selects
// AES-256-GCM in memberlist.
const GossipKeySize = 32

// Config is the "security" section of a daemon's JSON config file. Every
// field is optional; the zero value is the quick start's open cluster.
type Config struct {
	// RPCToken is sent to peers and accepted from them.
	RPCToken string `json:"rpc_token,omitempty"`
	// RPCAcceptTokens are accepted besides RPCToken (token rotation).
	RPCAcceptTokens []string `json:"rpc_accept_tokens,omitempty"`
	// TLSCAFile, TLSCertFile and TLSKeyFile turn on mutual TLS for RPC
	// (and raft, on managers): all three or none.
	TLSCAFile   string `json:"tls_ca_file,omitempty"`
	TLSCertFile string `json:"tls_cert_file,omitempty"`
	TLSKeyFile  string `json:"tls_key_file,omitempty"`
	// GossipKeyringFile is serf's keyring file: a JSON list of base64 keys,
	// the first being the one messages are encrypted with. It must be
	// writable: serf rewrites it when keys are installed, used or removed
	// (vdc-manage gossip keys ...), so a restart keeps the rotated keyring.
	GossipKeyringFile string `json:"gossip_keyring_file,omitempty"`
}

// Settings are a loaded Config.
type Settings struct {
	RPC rpc.Security
	// Keyring encrypts and authenticates gossip; nil = clear-text gossip.
	Keyring     *memberlist.Keyring
	KeyringFile string
}

// Load reads the files the config names. role is the daemon's own role: a
// certificate of another role is a configuration error, found at start.
func (c Config) Load(role string) (Settings, error) {
	s := Settings{RPC: rpc.Security{Token: c.RPCToken, AcceptTokens: c.RPCAcceptTokens}}
	n := 0
	for _, f := range []string{c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile} {
		if f != "" {
			n++
		}
	}
	switch n {
	case 0:
	case 3:
		id, err := tlsutil.Load(c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return s, fmt.Errorf("tls: %w", err)
		}
		if id.Role != role {
			return s, fmt.Errorf("tls: certificate %s is for role %s, this daemon is a %s", c.TLSCertFile, id.Role, role)
		}
		s.RPC.TLS = id
	default:
		return s, errors.New("tls: tls_ca_file, tls_cert_file and tls_key_file go together")
	}
	if c.GossipKeyringFile != "" {
		kr, err := ReadKeyring(c.GossipKeyringFile)
		if err != nil {
			return s, err
		}
		s.Keyring, s.KeyringFile = kr, c.GossipKeyringFile
	}
	return s, nil
}

// ConfigureSerf makes serf encrypt gossip with the keyring (and refuse
// clear-text or foreign-key messages), persisting key changes to the file.
func (s Settings) ConfigureSerf(sc *serf.Config) {
	if s.Keyring == nil {
		return
	}
	sc.MemberlistConfig.Keyring = s.Keyring
	sc.MemberlistConfig.GossipVerifyIncoming = true
	sc.MemberlistConfig.GossipVerifyOutgoing = true
	sc.KeyringFile = s.KeyringFile
}

// NewGossipKey returns a random gossip key, base64-encoded.
func NewGossipKey() (string, error) {
	k := make([]byte, GossipKeySize)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}

// DecodeGossipKey checks and decodes a base64 gossip key.
func DecodeGossipKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("gossip key is not base64: %w", err)
	}
	if len(k) != GossipKeySize {
		return nil, fmt.Errorf("gossip key has %d bytes, want %d", len(k), GossipKeySize)
	}
	return k, nil
}

// ReadKeyring reads a keyring file: serf's JSON list of base64 keys (the
// first is the primary), or a single bare base64 key.
func ReadKeyring(path string) (*memberlist.Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	var encoded []string
	if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, "[") {
		if err := json.Unmarshal(b, &encoded); err != nil {
			return nil, fmt.Errorf("gossip keyring %s: %w", path, err)
		}
	} else {
		encoded = []string{t}
	}
	if len(encoded) == 0 {
		return nil, fmt.Errorf("gossip keyring %s holds no key", path)
	}
	keys := make([][]byte, 0, len(encoded))
	for _, e := range encoded {
		k, err := DecodeGossipKey(e)
		if err != nil {
			return nil, fmt.Errorf("gossip keyring %s: %w", path, err)
		}
		keys = append(keys, k)
	}
	kr, err := memberlist.NewKeyring(keys, keys[0])
	if err != nil {
		return nil, fmt.Errorf("gossip keyring %s: %w", path, err)
	}
	return kr, nil
}

// WriteKeyring writes keys (base64, primary first) as serf's keyring file,
// readable by its owner only.
func WriteKeyring(path string, keys ...string) error {
	for _, k := range keys {
		if _, err := DecodeGossipKey(k); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(keys, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write gossip keyring: %w", err)
	}
	return nil
}
