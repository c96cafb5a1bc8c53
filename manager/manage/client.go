package manage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// apiPrefix is where the manager mounts the 12.03 API.
const apiPrefix = "/api/12.03/"

// maxRetries bounds how often a 503 (leader election in progress) is retried.
const maxRetries = 5

// maxBody bounds how much of a response is read; lists are paged, so a
// legitimate page stays far below this.
const maxBody = 64 << 20

// APIError is a failed API call: the manager's error document
// {"error","message","code"} and the HTTP status, or for bodies that are not
// an error document (plain text, HTML from a proxy) the body's first line.
type APIError struct {
	Status  int
	Name    string
	Message string
	Code    string
}

func (e *APIError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	}
	return fmt.Sprintf("%s (code %s, HTTP %d)", e.Message, e.Code, e.Status)
}

// client sends form-encoded requests to one manager and decodes its answers.
type client struct {
	base    string
	account string
	token   string
	http    *http.Client
	timeout time.Duration
	sleep   func(ctx context.Context, d time.Duration) error
}

// response is a successful answer: the raw body as received.
type response struct {
	status int
	body   []byte
}

// api calls /api/12.03/<resource>.json. For GET and DELETE the form goes into
// the query string; for POST and PUT it is the x-www-form-urlencoded body,
// which is how mussel talks to the API (spec §1.3).
func (c *client) api(ctx context.Context, method, resource string, form url.Values) (*response, error) {
	return c.do(ctx, method, c.base+apiPrefix+resource+".json", form)
}

// internal calls the manager's /internal/v1/<path> routes (no suffix).
func (c *client) internal(ctx context.Context, path string) (*response, error) {
	return c.do(ctx, http.MethodGet, c.base+"/internal/v1/"+path, nil)
}

// do runs one call, retrying while the cluster has no leader. A 503 carrying
// Retry-After is what a manager answers during an election or while a
// forwarded write finds the leader gone; nothing was applied, so repeating the
// request is safe even for writes.
func (c *client) do(ctx context.Context, method, u string, form url.Values) (*response, error) {
	for attempt := 0; ; attempt++ {
		resp, retryAfter, err := c.once(ctx, method, u, form)
		if err == nil {
			return resp, nil
		}
		var ae *APIError
		if attempt >= maxRetries || retryAfter < 0 || !errors.As(err, &ae) {
			return nil, err
		}
		if serr := c.sleep(ctx, backoff(attempt, retryAfter)); serr != nil {
			return nil, err
		}
	}
}

// backoff waits at least what the server asked for, doubling from 250ms so a
// long election is not hammered, and never more than 10s per wait.
func backoff(attempt int, retryAfter time.Duration) time.Duration {
	d := 250 * time.Millisecond << attempt
	if retryAfter > d {
		d = retryAfter
	}
	return min(d, 10*time.Second)
}

// once sends one request under the per-request timeout. retryAfter is >= 0
// only for a retryable 503.
func (c *client) once(ctx context.Context, method, u string, form url.Values) (_ *response, retryAfter time.Duration, _ error) {
	retryAfter = -1
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var body io.Reader
	enc := form.Encode()
	switch method {
	case http.MethodPost, http.MethodPut:
		body = strings.NewReader(enc)
	default:
		if enc != "" {
			u += "?" + enc
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, retryAfter, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	if c.account != "" {
		req.Header.Set("X-VDC-Account-UUID", c.account)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return nil, retryAfter, fmt.Errorf("%s %s: no answer within %s", method, u, c.timeout)
		}
		// *url.Error repeats method and URL; keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, retryAfter, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		if ctx.Err() != nil {
			return nil, retryAfter, fmt.Errorf("%s %s: no complete answer within %s", method, u, c.timeout)
		}
		return nil, retryAfter, fmt.Errorf("%s %s: read response: %w", method, u, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return &response{status: resp.StatusCode, body: data}, retryAfter, nil
	}
	// 503: an election; 429: over the rate limit. Nothing was applied.
	if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusTooManyRequests {
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			retryAfter = 0
			if n, err := strconv.Atoi(strings.TrimSpace(ra)); err == nil && n > 0 {
				retryAfter = time.Duration(n) * time.Second
			}
		}
	}
	return nil, retryAfter, decodeError(resp.StatusCode, data)
}

// decodeError turns a non-2xx answer into an APIError.
func decodeError(status int, data []byte) error {
	var doc struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Code    any    `json:"code"`
	}
	if json.Unmarshal(data, &doc) == nil && (doc.Error != "" || doc.Message != "") {
		code := ""
		if doc.Code != nil {
			code = fmt.Sprint(doc.Code)
		}
		msg := doc.Message
		if msg == "" {
			msg = doc.Error
		}
		return &APIError{Status: status, Name: doc.Error, Message: msg, Code: code}
	}
	msg, _, _ := bytes.Cut(bytes.TrimSpace(data), []byte("\n"))
	text := strings.TrimSpace(string(msg))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	if text == "" {
		text = http.StatusText(status)
	}
	return &APIError{Status: status, Message: text}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// escape makes an id safe as one path segment.
func escape(id string) string { return url.PathEscape(id) }
