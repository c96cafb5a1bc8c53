package api

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// sshKeyBits is the size of server-generated keys (ssh-keygen -t rsa's default).
const sshKeyBits = 2048

// SSH key pairs (spec §2.7).
func (a *API) registerSshKeyPairs() {
	a.route("GET /ssh_key_pairs", read, a.listSshKeyPairs)
	a.route("GET /ssh_key_pairs/{id}", read, a.showSshKeyPair)
	a.route("POST /ssh_key_pairs", write, a.createSshKeyPair)
	a.route("PUT /ssh_key_pairs/{id}", write, a.updateSshKeyPair)
	a.route("DELETE /ssh_key_pairs/{id}", write, a.deleteSshKeyPair)
	a.registerLabels("/ssh_key_pairs", proto.KindSshKeyPair, proto.PrefixSshKeyPair)
}

func sshKeyPairDoc(_ *state.Tx, v *proto.SshKeyPair, _ state.Meta) (*format.Map, error) {
	return format.NewMap(13).
		Set("id", v.ID).
		Set("account_id", v.AccountID).
		Set("uuid", v.ID).
		Set("finger_print", v.FingerPrint).
		Set("public_key", v.PublicKey).
		Set("description", v.Description).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("service_type", v.ServiceType).
		Set("display_name", v.DisplayName).
		Set("deleted_at", v.DeletedAt).
		Set("labels", labelDocs(v.ID, v.Labels)), nil
}

// listSshKeyPairs shows alive key pairs only.
func (a *API) listSshKeyPairs(_ context.Context, req *Request) (any, error) {
	p := req.Params
	of, err := a.ownerFilterOf(p, false)
	if err != nil {
		return nil, err
	}
	return list(a, req, proto.KindSshKeyPair, func(v *proto.SshKeyPair) bool {
		if v.DeletedAt != nil {
			return false
		}
		if !of.match(v.AccountID, v.ServiceType, v.DisplayName) {
			return false
		}
		return true
	}, sshKeyPairDoc)
}

// showSshKeyPair also shows deleted key pairs.
func (a *API) showSshKeyPair(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getOwned[proto.SshKeyPair](tx, req, proto.KindSshKeyPair, proto.PrefixSshKeyPair, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return sshKeyPairDoc(tx, v, m)
	})
}

// parsePublicKey accepts one OpenSSH public key line ("type base64 [comment]")
// and returns it trimmed with its MD5 fingerprint. authorized_keys options
// and further keys are refused: the value must be a public key, nothing else.
func parsePublicKey(text string) (string, string, error) {
	text = strings.TrimSpace(text)
	pub, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(text))
	if err != nil || len(options) > 0 || strings.TrimSpace(string(rest)) != "" {
		return "", "", errs.New(errs.InvalidSshPublicKey, "invalid public key")
	}
	return text, ssh.FingerprintLegacyMD5(pub), nil
}

// generateKeyPair makes an RSA key pair like `ssh-keygen -t rsa -C comment`
// did: the private key as PKCS#1 PEM ("BEGIN RSA PRIVATE KEY") and the public
// key as an authorized_keys line.
func generateKeyPair(comment string) (priv, pub, fingerprint string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, sshKeyBits)
	if err != nil {
		return "", "", "", fmt.Errorf("generate rsa key: %w", err)
	}
	sp, err := ssh.NewPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", "", fmt.Errorf("ssh public key: %w", err)
	}
	priv = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	pub = strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(sp)), "\n") + " " + comment
	return priv, pub, ssh.FingerprintLegacyMD5(sp), nil
}

func (a *API) createSshKeyPair(ctx context.Context, req *Request) (any, error) {
	// Quotas come before parameter validation (upstream order), and before
	// spending a key generation on a request that is refused anyway; the
	// commit repeats the check race-free.
	if _, err := a.view(func(tx *state.Tx) (any, error) {
		return nil, a.checkQuota(tx, req, QuotaSshKeyPairCount, 0)
	}); err != nil {
		return nil, err
	}
	p := req.Params
	owner := req.Owner()
	if err := checkUUID(owner, proto.PrefixAccount); err != nil {
		return nil, errs.New(errs.InvalidParameter, "account_id")
	}
	st, err := a.serviceTypeParam(req)
	if err != nil {
		return nil, err
	}
	id := newID(proto.PrefixSshKeyPair)
	now := a.now()
	labels, err := createLabels(p, now)
	if err != nil {
		return nil, err
	}
	v := proto.SshKeyPair{
		ID:          id,
		Timestamps:  proto.Timestamps{CreatedAt: now, UpdatedAt: now},
		AccountID:   owner,
		Description: p.Str("description"),
		ServiceType: st,
		DisplayName: p.Str("display_name"),
		Labels:      labels,
	}
	if p.Has("public_key") && p.Get("public_key") != nil {
		text, ok := p.StrOK("public_key")
		if !ok {
			return nil, errs.New(errs.InvalidSshPublicKey, "invalid public key")
		}
		if strings.TrimSpace(text) != "" {
			if v.PublicKey, v.FingerPrint, err = parsePublicKey(text); err != nil {
				return nil, err
			}
		}
	}
	var private string
	if v.PublicKey == "" {
		// The private key is only in this response; it is never stored.
		if private, v.PublicKey, v.FingerPrint, err = generateKeyPair(strings.TrimPrefix(id, proto.PrefixSshKeyPair+"-")); err != nil {
			return nil, err
		}
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		if err := a.guardQuota(tx, b, req, QuotaSshKeyPairCount, 0, proto.KindSshKeyPair); err != nil {
			return nil, err
		}
		b.Create(proto.KindSshKeyPair, id, v)
		return func(tx *state.Tx) (any, error) {
			d, err := sshKeyPairDoc(tx, &v, state.Meta{})
			if err == nil && private != "" {
				d.Set("private_key", private)
			}
			return d, err
		}, nil
	})
}

func (a *API) updateSshKeyPair(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.SshKeyPair](tx, req, proto.KindSshKeyPair, proto.PrefixSshKeyPair, req.ID("id"))
		if err != nil {
			return nil, err
		}
		p := req.Params
		if err := a.updateOwnerFields(p, &v.ServiceType, &v.Description, &v.DisplayName); err != nil {
			return nil, err
		}
		v.UpdatedAt = now
		b.Update(proto.KindSshKeyPair, v.ID, m.ModifyIndex, v)
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// instanceKeyRef is the part of an instance record key pair deletion reads.
type instanceKeyRef struct {
	ID           string     `json:"id"`
	SshKeyPairID *string    `json:"ssh_key_pair_id"`
	State        string     `json:"state"`
	TerminatedAt *time.Time `json:"terminated_at"`
}

// deleteSshKeyPair is a logical delete (deleted_at), refused with 400/158
// while an alive instance uses the key unless force=true. Deleting a deleted
// key pair succeeds and keeps the first deleted_at.
func (a *API) deleteSshKeyPair(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.SshKeyPair](tx, req, proto.KindSshKeyPair, proto.PrefixSshKeyPair, req.ID("id"))
		if err != nil {
			return nil, err
		}
		done := func(*state.Tx) (any, error) { return []any{v.ID}, nil }
		if v.DeletedAt != nil {
			return done, nil
		}
		if !req.Params.IsTrue("force") {
			idx := tx.KindIndex(proto.KindInstance)
			var user string
			err := tx.Each(proto.KindInstance, false, func(e state.Entry) error {
				var inst instanceKeyRef
				if err := decodeInto(e, &inst); err != nil {
					return fmt.Errorf("decode instance: %w", err)
				}
				if inst.SshKeyPairID != nil && *inst.SshKeyPairID == v.ID &&
					inst.TerminatedAt == nil && inst.State != "terminated" {
					user = inst.ID
					return state.ErrStop
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			if user != "" {
				return nil, errs.New(errs.ExistsRegisteredInstance, "%s is used by %s", v.ID, user)
			}
			b.CheckKind(proto.KindInstance, idx)
		}
		v.DeletedAt = &now
		v.UpdatedAt = now
		b.Update(proto.KindSshKeyPair, v.ID, m.ModifyIndex, v)
		return done, nil
	})
}
