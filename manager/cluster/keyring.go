package cluster

import (
	"fmt"

	"github.com/hashicorp/serf/serf"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/security"
)

// Gossip keyring operations (serf's key manager): each is a serf query that
// every member — managers and agents — answers by changing its own keyring
// and rewriting its keyring file.
const (
	KeyringList    = "list"
	KeyringInstall = "install"
	KeyringUse     = "use"
	KeyringRemove  = "remove"
)

// KeyringResult is how the members answered a keyring operation.
type KeyringResult struct {
	Members   int `json:"members"`
	Responses int `json:"responses"`
	Errors    int `json:"errors"`
	// Messages are the members' error messages, by member name.
	Messages map[string]string `json:"messages,omitempty"`
	// Keys (list only) counts, per base64 key, the members holding it;
	// PrimaryKeys the members encrypting with it.
	Keys        map[string]int `json:"keys,omitempty"`
	PrimaryKeys map[string]int `json:"primary_keys,omitempty"`
}

// GossipKeyring runs a keyring operation across the cluster. It fails with
// InvalidParameter for a bad operation or key, and reports members that
// did not apply it as an error (with the result, so that the operator sees
// who): the rotation procedure must not go on past a member still missing a key.
func (s *Server) GossipKeyring(op, key string) (KeyringResult, error) {
	if s.cfg.Security.Keyring == nil {
		return KeyringResult{}, errs.New(errs.InvalidParameter, "gossip encryption is off on this manager (no gossip_keyring_file)")
	}
	km := s.serf.KeyManager()
	var (
		resp *serf.KeyResponse
		err  error
	)
	switch op {
	case KeyringList:
		resp, err = km.ListKeys()
	case KeyringInstall, KeyringUse, KeyringRemove:
		if _, derr := security.DecodeGossipKey(key); derr != nil {
			return KeyringResult{}, errs.Wrap(errs.InvalidParameter, derr, "key")
		}
		switch op {
		case KeyringInstall:
			resp, err = km.InstallKey(key)
		case KeyringUse:
			resp, err = km.UseKey(key)
		default:
			resp, err = km.RemoveKey(key)
		}
	default:
		return KeyringResult{}, errs.New(errs.InvalidParameter, "keyring operation %q: want list, install, use or remove", op)
	}
	var out KeyringResult
	if resp != nil {
		out = KeyringResult{
			Members: resp.NumNodes, Responses: resp.NumResp, Errors: resp.NumErr,
			Messages: resp.Messages, Keys: resp.Keys, PrimaryKeys: resp.PrimaryKeys,
		}
	}
	if err != nil {
		return out, fmt.Errorf("gossip keyring %s: %w", op, err)
	}
	return out, nil
}
