package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// ClockOffsetEnv names a file holding a Go duration ("90s", "-10m") that
// dcmgr adds to its wall clock; it is re-read when it changes. It exists for
// clock-jump tests (e2e/chaos), which run several managers on one machine:
// one process's CLOCK_REALTIME cannot be moved alone (time namespaces offset
// only the monotonic and boot clocks), and Go reads the clock through the
// vDSO, out of reach of LD_PRELOAD tools such as faketime. The offset moves
// exactly what a real jump moves in a Go process: wall-clock readings
// (timestamps, job deadlines), not the monotonic timers of raft and serf.
const ClockOffsetEnv = "VDC_TEST_CLOCK_OFFSET_FILE"

// offsetClock is time.Now plus an offset that a file sets.
type offsetClock struct {
	path   string
	offset atomic.Int64
}

// newOffsetClock reads path now and then every poll until ctx ends. A
// missing or empty file is offset 0; a malformed one is an error at start
// and keeps the last offset later.
func newOffsetClock(ctx context.Context, path string, poll time.Duration) (*offsetClock, error) {
	c := &offsetClock{path: path}
	if err := c.load(); err != nil {
		return nil, err
	}
	go func() {
		t := time.NewTicker(poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = c.load()
			}
		}
	}()
	return c, nil
}

func (c *offsetClock) load() error {
	b, err := os.ReadFile(c.path)
	if os.IsNotExist(err) {
		c.offset.Store(0)
		return nil
	}
	if err != nil {
		return fmt.Errorf("clock offset file: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		c.offset.Store(0)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("clock offset file %s: %w", c.path, err)
	}
	c.offset.Store(int64(d))
	return nil
}

// Now is the system clock moved by the offset.
func (c *offsetClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }
