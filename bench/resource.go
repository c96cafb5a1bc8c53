package bench

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/vdc-project/vdc/manager/api"
	"github.com/vdc-project/vdc/proto"
)

// Account is the account header every benchmark request carries. The brief
// asked for "a-bench0001", but the manager accepts only 1–8 characters of
// [a-z0-9] after "a-" (spec §1.9: ids are <prefix>-<8 chars>) and answers that
// value with 400/103 on every request, so the benchmark uses an id it accepts.
const Account = "a-bench01"

// Resource names the API resource the api and failover benchmarks create.
const (
	ResourceAuto           = "auto"
	ResourceSshKeyPairs    = "ssh_key_pairs"
	ResourceBackupStorages = "backup_storages"
)

// resource is how to create and find one kind of API resource.
type resource struct {
	name string // path segment below /api/12.03
	kind string // state kind of its records
	form func(n int) url.Values
}

func newResource(name string) (resource, error) {
	switch name {
	case ResourceSshKeyPairs:
		key := benchPublicKey()
		return resource{name: name, kind: proto.KindSshKeyPair, form: func(n int) url.Values {
			return url.Values{
				"public_key":   {key},
				"display_name": {fmt.Sprintf("bench-%d", n)},
				"description":  {"vdcbench"},
			}
		}}, nil
	case ResourceBackupStorages:
		return resource{name: name, kind: proto.KindBackupStorage, form: func(n int) url.Values {
			return url.Values{
				"storage_type": {"local"},
				"base_uri":     {fmt.Sprintf("file:///var/lib/vdc/bench/%d/", n)},
				"display_name": {fmt.Sprintf("bench-%d", n)},
				"description":  {"vdcbench"},
			}
		}}, nil
	}
	return resource{}, fmt.Errorf("unknown resource %q (want %s, %s or %s)",
		name, ResourceAuto, ResourceSshKeyPairs, ResourceBackupStorages)
}

// resolveResource turns "auto" into ssh_key_pairs when base serves that
// route (it is being written on another branch) and backup_storages otherwise.
func resolveResource(ctx context.Context, c *http.Client, base, name string) (resource, error) {
	if name != ResourceAuto {
		return newResource(name)
	}
	status, _, err := doRequest(ctx, c, http.MethodGet, base+"/"+ResourceSshKeyPairs+".json?limit=1", nil)
	if err != nil {
		return resource{}, err
	}
	if status == http.StatusOK {
		return newResource(ResourceSshKeyPairs)
	}
	return newResource(ResourceBackupStorages)
}

// benchPublicKey is a fixed ed25519 public key in authorized_keys form,
// built by hand so the benchmark needs no ssh library.
func benchPublicKey() string {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "vdcbench fixed ed25519 key seed!")
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " vdcbench"
}

// requestTimeout bounds one HTTP request; the manager's ApplyTimeout is 10 s.
const requestTimeout = 15 * time.Second

// newHTTPClient is one keep-alive client shared by conns goroutines.
func newHTTPClient(conns int) *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: &http.Transport{
			MaxIdleConns:        2 * conns,
			MaxIdleConnsPerHost: 2 * conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// doRequest sends one request with the account header (form-encoded body
// when form is set, like mussel) and reads the whole response.
func doRequest(ctx context.Context, c *http.Client, method, u string, form url.Values) (int, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("X-VDC-Account-UUID", Account)
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, b, err
}

// statusError is a response other than 200.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d: %.200s", e.status, e.body)
}

// expectOK turns a non-200 response into an error.
func expectOK(status int, body []byte, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, &statusError{status: status, body: string(body)}
	}
	return body, nil
}

// create POSTs one resource to base and returns its id.
func (r resource) create(ctx context.Context, c *http.Client, base string, n int) (string, error) {
	body, err := expectOK(doRequest(ctx, c, http.MethodPost, base+"/"+r.name+".json", r.form(n)))
	if err != nil {
		return "", err
	}
	var doc struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.ID == "" {
		return "", fmt.Errorf("create %s: no id in %.200s", r.name, body)
	}
	return doc.ID, nil
}

// apiBase is the 12.03 prefix on a manager's URL.
func apiBase(u string) string { return u + api.Prefix }
