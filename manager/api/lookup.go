package api

import (
	"crypto/rand"
	"encoding/json"
	"strings"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

const uuidAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newID returns "<prefix>-" and 8 characters drawn uniformly from a-z0-9 (§1.9).
func newID(prefix string) string {
	var raw [8]byte
	out := make([]byte, 0, len(prefix)+9)
	out = append(out, prefix...)
	out = append(out, '-')
	for i := 0; i < 8; {
		_, _ = rand.Read(raw[:])
		for _, c := range raw {
			// 252 = 7*36: reject the tail so every character is equally likely.
			if c < 252 && i < 8 {
				out = append(out, uuidAlphabet[int(c)%36])
				i++
			}
		}
	}
	return string(out)
}

func isWordChar(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// checkUUID is the API's syntax check `^<prefix>-\w+` → 400/143.
func checkUUID(id, prefix string) error {
	rest, ok := strings.CutPrefix(id, prefix+"-")
	if !ok || rest == "" || !isWordChar(rest[0]) {
		return errs.New(errs.InvalidParameter, "Invalid UUID Syntax: %s", id)
	}
	return nil
}

// validUUIDPart is the stored uuid column's rule: 1–8 of a-z0-9.
func validUUIDPart(s string) bool {
	if s == "" || len(s) > 8 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// chosenUUID turns a caller-chosen uuid (with or without prefix) into a
// canonical id; a malformed one is a model error, 400/110 (§1.9).
func chosenUUID(prefix, v string) (string, error) {
	part := strings.TrimPrefix(v, prefix+"-")
	if !validUUIDPart(part) {
		return "", errs.New(errs.DatabaseError, "Sequel::ValidationFailed: uuid %q is invalid", v)
	}
	return prefix + "-" + part, nil
}

// createID is the id of a record being created: the caller's `uuid`
// parameter when given (§1.9: with or without prefix), else a fresh one.
func createID(p params.Params, prefix string) (string, error) {
	if !p.Has("uuid") || p.Get("uuid") == nil {
		return newID(prefix), nil
	}
	u, ok := p.StrOK("uuid")
	if !ok {
		return "", errs.New(errs.InvalidParameter, "uuid")
	}
	if u == "" {
		return newID(prefix), nil
	}
	return chosenUUID(prefix, u)
}

// getPub looks a record up with the syntax and existence checks only
// (find_by_public_uuid: host nodes, storage nodes, DC networks).
func getPub[T any](tx *state.Tx, kind, prefix, id string) (*T, state.Meta, error) {
	if err := checkUUID(id, prefix); err != nil {
		return nil, state.Meta{}, err
	}
	v := new(T)
	m, err := tx.Get(kind, id, v)
	if errs.Is(err, errs.NotFound) {
		return nil, m, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	return v, m, err
}

// getOwned is find_by_uuid (§1.4): syntax, existence, then another account's
// record (or another service_type when the param is given) is not found.
func getOwned[T any, PT interface {
	*T
	proto.Owned
}](tx *state.Tx, req *Request, kind, prefix, id string) (PT, state.Meta, error) {
	v, m, err := getPub[T](tx, kind, prefix, id)
	if err != nil {
		return nil, m, err
	}
	p := PT(v)
	if req.Account != "" && p.OwnerID() != req.Account {
		return nil, m, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	if st := req.Params.Str("service_type"); st != "" && p.ServiceTypeName() != st {
		return nil, m, errs.New(errs.UnknownUUIDResource, "%s", id)
	}
	return p, m, nil
}

// checkServiceType validates a `service_type` value against the config.
func (a *API) checkServiceType(v string) error {
	for _, s := range a.cfg.ServiceTypes {
		if s == v {
			return nil
		}
	}
	return errs.New(errs.InvalidParameter, "service_type")
}

// serviceTypeParam returns the validated `service_type` param or the default.
func (a *API) serviceTypeParam(req *Request) (string, error) {
	v, ok := req.Params.StrOK("service_type")
	if !ok || v == "" {
		return a.cfg.DefaultServiceType, nil
	}
	return v, a.checkServiceType(v)
}

// decodeInto decodes a stored record.
func decodeInto(e state.Entry, v any) error { return json.Unmarshal(e.Value, v) }

// ownerFilter is the list filter most resources share: account_id,
// service_type (one of the configured types) and display_name, each
// applied when the request gives it.
type ownerFilter struct {
	account, serviceType, displayName       string
	byAccount, byServiceType, byDisplayName bool
}

// ownerFilterOf reads the filter; a service_type that is not configured is
// refused. Networks (emptyServiceTypeIsAny) read an empty one as no filter.
func (a *API) ownerFilterOf(p params.Params, emptyServiceTypeIsAny bool) (ownerFilter, error) {
	var f ownerFilter
	f.account, f.byAccount = p.StrOK("account_id")
	f.displayName, f.byDisplayName = p.StrOK("display_name")
	f.serviceType, f.byServiceType = p.StrOK("service_type")
	if f.byServiceType && f.serviceType == "" && emptyServiceTypeIsAny {
		f.byServiceType = false
	}
	if f.byServiceType {
		if err := a.checkServiceType(f.serviceType); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (f ownerFilter) match(account, serviceType, displayName string) bool {
	return (!f.byAccount || account == f.account) &&
		(!f.byServiceType || serviceType == f.serviceType) &&
		(!f.byDisplayName || displayName == f.displayName)
}

// updateOwnerFields applies the service_type (one of the configured
// types), description and display_name a PUT gives.
func (a *API) updateOwnerFields(p params.Params, serviceType, description, displayName *string) error {
	if st, ok := p.StrOK("service_type"); ok {
		if err := a.checkServiceType(st); err != nil {
			return err
		}
		*serviceType = st
	}
	if s, ok := p.StrOK("description"); ok {
		*description = s
	}
	if s, ok := p.StrOK("display_name"); ok {
		*displayName = s
	}
	return nil
}
