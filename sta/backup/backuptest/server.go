// Package backuptest has an in-memory HTTP backup storage for tests: the
// subset of WebDAV the sta uses (GET, PUT, DELETE) on paths under one
// collection, with chunked uploads accepted as WebDAV servers do.
package backuptest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is the storage.
type Server struct {
	// URL is the collection's base URI, ending in "/" (a backup storage's base_uri).
	URL string

	mu      sync.Mutex
	objects map[string][]byte
	failPut int // status for the next PUTs (0 = none)
	hold    chan struct{}
	onGet   func()
}

// Start serves an empty storage until the test ends.
func Start(t testing.TB) *Server {
	s := &Server{objects: map[string][]byte{}}
	hs := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(hs.Close)
	s.URL = hs.URL + "/backups/"
	return s
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.URL.Path, "/backups/")
	if !ok || key == "" || strings.Contains(key, "/") {
		http.Error(w, "no such collection", http.StatusConflict)
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.mu.Lock()
		b, ok := s.objects[key]
		onGet := s.onGet
		s.mu.Unlock()
		if onGet != nil {
			onGet()
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, key, time.Time{}, bytes.NewReader(b))
	case http.MethodPut:
		s.mu.Lock()
		code, hold := s.failPut, s.hold
		s.mu.Unlock()
		if hold != nil {
			<-hold
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			// the upload was cut: a WebDAV server keeps nothing
			return
		}
		if code != 0 {
			http.Error(w, "injected failure", code)
			return
		}
		s.mu.Lock()
		_, existed := s.objects[key]
		s.objects[key] = b
		s.mu.Unlock()
		if existed {
			w.WriteHeader(http.StatusNoContent)
		} else {
			w.WriteHeader(http.StatusCreated)
		}
	case http.MethodDelete:
		s.mu.Lock()
		_, ok := s.objects[key]
		delete(s.objects, key)
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// Object returns a stored object.
func (s *Server) Object(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[key]
	return b, ok
}

// Put stores an object.
func (s *Server) Put(key string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[key] = slices.Clone(b)
}

// Keys lists the stored keys, sorted.
func (s *Server) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.objects {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// FailPuts makes every later PUT answer code (0 = succeed again).
func (s *Server) FailPuts(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPut = code
}

// HoldPuts makes later PUTs wait before reading their body until release
// is called (a slow storage, for progress reports).
func (s *Server) HoldPuts() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.hold = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

// OnGet runs fn when a GET is served, before the body is sent (nil: nothing).
func (s *Server) OnGet(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onGet = fn
}
