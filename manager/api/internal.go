package api

import (
	"net/http"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/cluster"
)

// serveInternal answers the operator routes vdc-manage uses for cluster
// introspection. They describe the manager that answers (no forwarding).
//
//	GET /internal/v1/members  serf members with tags
//	GET /internal/v1/peers    raft servers, with the leader marked
//	GET /internal/v1/status   raft state of this manager
//	GET /internal/v1/gossip/keyring                     gossip keys and who holds them
//	POST /internal/v1/gossip/keyring op=install|use|remove key=BASE64
//
// Only trusted frontends and operator tokens reach them (access.go); the
// gossip keyring also needs the caller to name no account.
func (a *API) serveInternal(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/internal/v1/gossip/keyring" {
		a.serveKeyring(w, r)
		return
	}
	if r.Method != http.MethodGet {
		a.writeError(w, "json", errs.New(errs.NotFound, "no such route"))
		return
	}
	switch r.URL.Path {
	case "/internal/v1/members":
		var out []any
		for _, m := range a.b.Members() {
			tags := map[string]any{}
			for k, v := range m.Tags {
				tags[k] = v
			}
			out = append(out, format.NewMap(4).Set("name", m.Name).Set("addr", m.Addr).
				Set("status", m.Status).Set("tags", tags))
		}
		if out == nil {
			out = []any{}
		}
		a.render(w, "json", http.StatusOK, out)
	case "/internal/v1/peers":
		peers, err := a.b.Peers()
		if err != nil {
			a.writeError(w, "json", err)
			return
		}
		out := []any{}
		for _, p := range peers {
			out = append(out, format.NewMap(4).Set("id", p.ID).Set("address", p.Address).
				Set("suffrage", p.Suffrage).Set("leader", p.Leader))
		}
		a.render(w, "json", http.StatusOK, out)
	case "/internal/v1/status":
		st := map[string]any{}
		for k, v := range a.b.Stats() {
			st[k] = v
		}
		a.render(w, "json", http.StatusOK, st)
	default:
		a.writeError(w, "json", errs.New(errs.NotFound, "no such route"))
	}
}

// keyringBackend is the part of the backend that runs gossip keyring
// operations (cluster.Server).
type keyringBackend interface {
	GossipKeyring(op, key string) (cluster.KeyringResult, error)
}

func (a *API) serveKeyring(w http.ResponseWriter, r *http.Request) {
	kb, ok := a.b.(keyringBackend)
	if !ok {
		a.writeError(w, "json", errs.New(errs.NotFound, "no gossip keyring here"))
		return
	}
	op := cluster.KeyringList
	var key string
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		p, err := params.FromRequest(r, a.cfg.MaxBodyBytes)
		if err != nil {
			a.writeError(w, "json", mapParamsError(err))
			return
		}
		op, key = p.Str("op"), p.Str("key")
	default:
		a.writeError(w, "json", errs.New(errs.NotFound, "no such route"))
		return
	}
	res, err := kb.GossipKeyring(op, key)
	if err != nil && errs.KindOf(err) != errs.Internal {
		a.writeError(w, "json", err)
		return
	}
	// A partial failure still reports which members answered what: the
	// operator must see who is missing a key before going on.
	doc := format.NewMap(8).Set("op", op).Set("members", res.Members).Set("responses", res.Responses).
		Set("errors", res.Errors).Set("messages", stringMap(res.Messages)).
		Set("keys", intMap(res.Keys)).Set("primary_keys", intMap(res.PrimaryKeys))
	status := http.StatusOK
	if err != nil {
		doc.Set("error", err.Error())
		status = http.StatusBadGateway
	}
	a.render(w, "json", status, doc)
}

func stringMap(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func intMap(m map[string]int) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}
