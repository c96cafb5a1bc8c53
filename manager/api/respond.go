package api

import (
	"net/http"
	"strconv"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
)

// Empty makes a route answer 200 with an empty body (label DELETE does).
type Empty struct{}

func (a *API) render(w http.ResponseWriter, f string, status int, v any) {
	if _, ok := v.(Empty); ok {
		w.WriteHeader(status)
		return
	}
	var (
		body []byte
		err  error
		ct   string
	)
	if f == "yml" {
		body, err = format.YAML(v)
		ct = "text/yaml; charset=utf-8"
	} else {
		body, err = format.JSON(v)
		ct = "application/json; charset=utf-8"
	}
	if err != nil {
		a.logger.Error("render response", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError is the only place an error becomes an HTTP response (§1.10):
// status and code from the error's kind, body
// {"error": "Dcmgr::Endpoints::<Name>", "message": …, "code": "NNN"}.
func (a *API) writeError(w http.ResponseWriter, f string, err error) {
	e := errs.As(err)
	status := e.Kind.Status()
	switch e.Kind {
	case errs.InvalidBody:
		// The original answers a body parse failure with a plain text body.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("Invalid request body."))
		return
	case errs.NoLeader:
		w.Header().Set("Retry-After", "1")
	case errs.Internal:
		a.logger.Error("internal error", "error", err)
	}
	msg := e.Message()
	if e.Kind == errs.Internal {
		msg = "internal error"
	}
	doc := format.NewMap(3).
		Set("error", "Dcmgr::Endpoints::"+e.Kind.Name()).
		Set("message", msg).
		Set("code", e.Kind.Code())
	a.render(w, f, status, doc)
}
