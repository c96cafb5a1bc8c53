package api

import (
	"net/http"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
)

// serveInternal answers the operator routes vdc-manage uses for cluster
// introspection. They describe the manager that answers (no forwarding).
//
//	GET /internal/v1/members  serf members with tags
//	GET /internal/v1/peers    raft servers, with the leader marked
//	GET /internal/v1/status   raft state of this manager
func (a *API) serveInternal(w http.ResponseWriter, r *http.Request) {
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
