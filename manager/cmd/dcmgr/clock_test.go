package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/testutil"
)

func TestOffsetClockFollowsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "offset")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := newOffsetClock(ctx, path, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// No file: the system clock.
	if d := time.Until(c.Now()); d > time.Second || d < -time.Second {
		t.Fatalf("offset without a file is %v", d)
	}
	for _, want := range []time.Duration{time.Hour, -10 * time.Minute, 0} {
		if err := os.WriteFile(path, []byte(want.String()+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 5*time.Second, func() error {
			if got := time.Duration(c.offset.Load()); got != want {
				return fmt.Errorf("offset %v, want %v", got, want)
			}
			return nil
		})
		if d := time.Until(c.Now()) - want; d > time.Second || d < -time.Second {
			t.Fatalf("clock with offset %v is off by %v", want, d)
		}
	}
	if err := os.WriteFile(path, []byte("soon"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := newOffsetClock(ctx, path, time.Hour); err == nil {
		t.Fatal("a malformed offset file was accepted at start")
	}
}
