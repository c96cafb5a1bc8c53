// Package logging builds the slog loggers of every daemon and bridges them to
// the loggers hashicorp libraries want (hclog for raft, *log.Logger for serf).
package logging

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// New returns a logger writing to w in the given format ("json" or "text").
func New(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// Discard is a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// NewTest logs through t.Log, shown only when the test fails. Lines written
// after the test ended (a library goroutine still winding down) are dropped:
// t.Log would panic on them.
func NewTest(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// StdLog returns a *log.Logger whose lines go to l. hashicorp libraries prefix
// lines with "[LEVEL]"; the level is mapped so that chatty debug lines stay out
// of production logs.
func StdLog(l *slog.Logger, component string) *log.Logger {
	return log.New(&levelWriter{l: l.With("component", component)}, "", 0)
}

// HCLog returns an hclog.Logger for raft whose lines go to l.
func HCLog(l *slog.Logger, component string, level string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:        component,
		Level:       hclog.LevelFromString(level),
		Output:      &levelWriter{l: l.With("component", component)},
		DisableTime: true,
	})
}

type levelWriter struct{ l *slog.Logger }

func (w *levelWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	lv := slog.LevelInfo
	switch {
	case strings.Contains(line, "[ERR"):
		lv = slog.LevelError
	case strings.Contains(line, "[WARN"):
		lv = slog.LevelWarn
	case strings.Contains(line, "[DEBUG"), strings.Contains(line, "[TRACE"):
		lv = slog.LevelDebug
	}
	w.l.Log(context.Background(), lv, line)
	return len(p), nil
}
