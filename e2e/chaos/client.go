package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Account is the account every workload request acts as.
const Account = "a-chaos001"

// API calls the 12.03 API of one manager or another.
type API struct {
	HTTP *http.Client
}

// Response is one answer, or why there was none.
type Response struct {
	Status int
	Code   string // the error document's code
	Doc    any
	Err    error
	// Sent is false when the request certainly did not reach the server
	// (the connection could not be made).
	Sent bool
}

// Do sends one request to base (a manager's API URL) as account (none for
// "").
func (a *API) Do(ctx context.Context, base, method, path string, form url.Values, account string) Response {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return Response{Err: err}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if account != "" {
		req.Header.Set("X-VDC-Account-UUID", account)
	}
	res, err := a.HTTP.Do(req)
	if err != nil {
		var op *net.OpError
		return Response{Err: err, Sent: !(errors.As(err, &op) && op.Op == "dial")}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return Response{Status: res.StatusCode, Err: err, Sent: true}
	}
	out := Response{Status: res.StatusCode, Sent: true}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out.Doc); err != nil {
			out.Err = fmt.Errorf("decode %s: %w", b, err)
			return out
		}
	}
	if res.StatusCode != http.StatusOK {
		if m, ok := out.Doc.(map[string]any); ok {
			out.Code = fmt.Sprint(m["code"])
		}
		out.Err = fmt.Errorf("%s %s: HTTP %d %s", method, path, res.StatusCode, b)
	}
	return out
}

// Outcome classifies a write's response: 200 ok; 404 not found (when the
// route can answer it); 400/125 refused (wrong instance state); another
// 4xx, or no connection, failed; a lost connection, a timeout or a 5xx
// unknown.
func (r Response) Outcome(notFound bool) Outcome {
	switch {
	case r.Err != nil && r.Status == 0:
		if !r.Sent {
			return Failed
		}
		return Unknown
	case r.Status == http.StatusOK && r.Err == nil:
		return OK
	case r.Status == http.StatusNotFound && notFound:
		return NotFound
	case r.Status == http.StatusBadRequest && r.Code == "125":
		return Refused
	case r.Status >= 400 && r.Status < 500:
		return Failed
	default:
		return Unknown
	}
}

// Map is the response document as an object.
func (r Response) Map() map[string]any {
	m, _ := r.Doc.(map[string]any)
	return m
}

// Must fails with the response's error.
func (r Response) Must() (any, error) {
	if r.Err != nil {
		return nil, r.Err
	}
	return r.Doc, nil
}

// listResults is the results array of a list envelope ([{total, results}]).
func listResults(doc any) ([]map[string]any, int, error) {
	arr, ok := doc.([]any)
	if !ok || len(arr) == 0 {
		return nil, 0, fmt.Errorf("not a list envelope: %v", doc)
	}
	env, ok := arr[0].(map[string]any)
	if !ok {
		return nil, 0, fmt.Errorf("not a list envelope: %v", doc)
	}
	total, _ := env["total"].(float64)
	rs, _ := env["results"].([]any)
	var out []map[string]any
	for _, r := range rs {
		if m, ok := r.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out, int(total), nil
}

// errorClass names a transport error briefly ("timeout", "connection
// refused", ...) for counts.
func errorClass(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "connection reset"
	case strings.Contains(err.Error(), "EOF"):
		return "connection closed"
	}
	return err.Error()
}
