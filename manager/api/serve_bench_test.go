package api

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/manager/cluster"
)

// The server half of a request, without sockets: what the API itself costs
// per request over net/http's parsing and writing (vdcbench api measures
// the whole). Run with -benchmem; compare ns/op and allocs/op.

// benchAPI is an API over a single manager with n key pairs of one account.
func benchAPI(b *testing.B, n int) (*API, []string) {
	b.Helper()
	srv := cluster.TestServer(b, nil)
	a := New(DefaultConfig(), srv, logging.Discard())
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "serve bench fixed ed25519 seed!!")
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	key := "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " bench"
	ids := make([]string, 0, n)
	for i := range n {
		form := url.Values{"public_key": {key}, "display_name": {fmt.Sprintf("k%d", i)}, "description": {"bench"}}
		w := serveBench(a, http.MethodPost, "/ssh_key_pairs.json", form)
		if w.Code != http.StatusOK {
			b.Fatalf("create: %d %s", w.Code, w.Body)
		}
		var doc struct{ ID string }
		if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, doc.ID)
	}
	return a, ids
}

func serveBench(a *API, method, path string, form url.Values) *httptest.ResponseRecorder {
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, Prefix+path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, Prefix+path, nil)
	}
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("X-VDC-Account-UUID", "a-bench01")
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	return w
}

func BenchmarkServeShow(b *testing.B) {
	for _, q := range []string{"", "?stale=true"} {
		b.Run("stale="+fmt.Sprint(q != ""), func(b *testing.B) {
			a, ids := benchAPI(b, 100)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				w := serveBench(a, http.MethodGet, "/ssh_key_pairs/"+ids[i%len(ids)]+".json"+q, nil)
				if w.Code != http.StatusOK {
					b.Fatalf("show: %d %s", w.Code, w.Body)
				}
			}
		})
	}
}

func BenchmarkServeList(b *testing.B) {
	a, _ := benchAPI(b, 1000)
	for _, q := range []string{"?limit=10", ""} {
		b.Run("q="+q, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				w := serveBench(a, http.MethodGet, "/ssh_key_pairs.json"+q, nil)
				if w.Code != http.StatusOK {
					b.Fatalf("list: %d %s", w.Code, w.Body)
				}
			}
		})
	}
}
