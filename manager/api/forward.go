package api

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/vdc-project/vdc/common/errs"
)

// Forwarding bounds. A leader cut off from this manager (a partition, a
// host gone) must cost the client a prompt 503 to retry elsewhere, not the
// minutes the kernel takes to give up on a connection.
const (
	// ForwardDialTimeout bounds connecting to the leader: on a LAN a
	// connection takes well under a millisecond, and 2 s still allows one
	// lost SYN to be sent again (after 1 s).
	ForwardDialTimeout = 2 * time.Second
	// ForwardWait bounds how long a forwarded request waits for the
	// leader's answer to begin (its status and headers), counted from when
	// it was forwarded. It is longer than the leader's own bound on a write
	// (cluster ApplyTimeout, 10 s), so that a slow leader answers for itself.
	ForwardWait = 15 * time.Second
	// forwardPoll is how often a forwarded request waiting for its answer
	// checks that the leader it went to is still the leader this manager
	// knows.
	forwardPoll = 200 * time.Millisecond
)

// forwarder proxies requests a follower cannot answer to the leader's API.
type forwarder struct {
	b         Backend
	transport *http.Transport
	dial      time.Duration
	wait      time.Duration
	poll      time.Duration
}

func newForwarder(b Backend, dialTimeout, wait time.Duration) *forwarder {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}
	return &forwarder{b: b, dial: dialTimeout, wait: wait, poll: forwardPoll, transport: &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// A backstop only: watch bounds the wait, from the start of the
		// request (this timer starts once it is written).
		ResponseHeaderTimeout: 2 * wait,
	}}
}

// Outcomes of a forwarded request's wait for its answer (forwardWatch).
const (
	waiting int32 = iota
	answered
	abandoned
)

// forward sends r to the leader. A request that was already forwarded once is
// not forwarded again (leadership moved mid-flight): the client gets 503 and
// retries, instead of the request bouncing between managers. A leader that
// cannot be reached within ForwardDialTimeout, does not begin its answer
// within ForwardWait, or stops being the leader this manager knows while the
// request waits, also gets the client a 503 (NoLeader): the request may or
// may not have been applied, as with any write that timed out.
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
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	var outcome atomic.Int32
	go a.proxy.watch(ctx, addr, &outcome, cancel)

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
			// The answer has begun: from here on the leader's body streams
			// to the client unbounded (unless the watch gave up first).
			if !outcome.CompareAndSwap(waiting, answered) {
				return errForwardAbandoned
			}
			// The leader's request id would be a second one; keep ours.
			resp.Header.Del("X-Vdc-Request-Id")
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			var e *errs.Error
			if cause := context.Cause(ctx); errors.As(cause, &e) && e.Kind == errs.NoLeader {
				a.writeError(w, format, cause)
				return
			}
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" && op.Timeout() {
				a.writeError(w, format, errs.Wrap(errs.NoLeader, err,
					"the leader could not be reached within "+a.proxy.dial.String()+"; retry"))
				return
			}
			a.writeError(w, format, errs.Wrap(errs.NoLeader, err, "leader unreachable; retry"))
		},
	}
	rp.ServeHTTP(w, r.WithContext(ctx))
}

var errForwardAbandoned = errors.New("forwarded request abandoned")

// watch gives up a forwarded request (cancel, with a NoLeader cause) that
// has no answer from the leader at addr after f.wait, or whose leader is no
// longer the one this manager knows; it returns once the answer begins
// (outcome answered) or ctx ends.
func (f *forwarder) watch(ctx context.Context, addr string, outcome *atomic.Int32, cancel context.CancelCauseFunc) {
	timer := time.NewTimer(f.wait)
	defer timer.Stop()
	tick := time.NewTicker(f.poll)
	defer tick.Stop()
	for {
		var why error
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			why = errs.New(errs.NoLeader, "the leader did not answer within %s; retry", f.wait)
		case <-tick.C:
			if outcome.Load() != waiting {
				return
			}
			if now, err := f.b.LeaderAPI(); err != nil || now != addr {
				why = errs.New(errs.NoLeader, "leadership changed while the request waited for the leader; retry")
			}
		}
		if why != nil {
			if outcome.CompareAndSwap(waiting, abandoned) {
				cancel(why)
			}
			return
		}
	}
}
