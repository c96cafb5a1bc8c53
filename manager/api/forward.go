package api

import (
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/vdc-project/vdc/common/errs"
)

// forwarder proxies requests a follower cannot answer to the leader's API.
type forwarder struct {
	b         Backend
	transport *http.Transport
}

func newForwarder(b Backend) *forwarder {
	return &forwarder{b: b, transport: &http.Transport{
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
	}}
}

// forward sends r to the leader. A request that was already forwarded once is
// not forwarded again (leadership moved mid-flight): the client gets 503 and
// retries, instead of the request bouncing between managers.
func (a *API) forward(w http.ResponseWriter, r *http.Request, format string) {
	if r.Header.Get(headerForwarded) != "" {
		a.writeError(w, format, errs.New(errs.NoLeader, "leadership is changing; retry"))
		return
	}
	addr, err := a.b.LeaderAPI()
	if err != nil {
		a.writeError(w, format, err)
		return
	}
	target := &url.URL{Scheme: "http", Host: addr}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = pr.In.URL.Path
			pr.Out.URL.RawPath = pr.In.URL.RawPath
			// The suffix was stripped for routing; the leader needs it back.
			if format == "yml" {
				pr.Out.URL.Path += ".yml"
			}
			pr.Out.Header.Set(headerForwarded, "1")
			// The leader judges the request by the client this manager saw.
			if c, ok := callerFrom(pr.In.Context()); ok {
				pr.Out.Header.Set(headerClientAddr, c.addr.String())
			} else {
				pr.Out.Header.Del(headerClientAddr)
			}
			pr.Out.Header.Del("X-Vdc-Request-Id")
		},
		Transport: a.proxy.transport,
		ModifyResponse: func(resp *http.Response) error {
			// The leader's request id would be a second one; keep ours.
			resp.Header.Del("X-Vdc-Request-Id")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			a.writeError(w, format, errs.Wrap(errs.NoLeader, err, "leader unreachable; retry"))
		},
	}
	rp.ServeHTTP(w, r)
}
