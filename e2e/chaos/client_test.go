package chaos

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestOutcomes: how a response is classified decides what the models may
// assume; a connection never made is not an ambiguous write, a 5xx is.
func TestOutcomes(t *testing.T) {
	var status int
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	api := &API{HTTP: &http.Client{Timeout: 100 * time.Millisecond}}
	cases := []struct {
		status   int
		body     string
		notFound bool
		want     Outcome
	}{
		{200, `{"id":"sg-1"}`, true, OK},
		{404, `{"code":"100"}`, true, NotFound},
		{404, `{"code":"100"}`, false, Failed},
		{400, `{"code":"125"}`, false, Refused},
		{400, `{"code":"143"}`, false, Failed},
		{409, `{"code":"conflict"}`, true, Failed},
		{503, `{"code":"901"}`, true, Unknown},
		{500, `{"code":"900"}`, true, Unknown},
	}
	for _, c := range cases {
		status, body = c.status, c.body
		res := api.Do(context.Background(), srv.URL, "PUT", "/x", nil, Account)
		if got := res.Outcome(c.notFound); got != c.want {
			t.Errorf("HTTP %d %s (notFound %v): %v, want %v", c.status, c.body, c.notFound, got, c.want)
		}
	}
	status, body = 200, "{}"
	if got := api.Do(context.Background(), srv.URL, "PUT", "/slow", nil, "").Outcome(true); got != Unknown {
		t.Errorf("timeout after sending: %v, want unknown", got)
	}
	// A port nobody listens on: the request never left.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	res := api.Do(context.Background(), "http://"+addr, "PUT", "/x", nil, "")
	if got := res.Outcome(true); got != Failed || res.Sent {
		t.Errorf("connection refused: %v (sent %v), want failed", got, res.Sent)
	}
}
