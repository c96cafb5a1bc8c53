// Package testutil has helpers shared by tests of every package.
package testutil

import (
	"testing"
	"time"
)

// WaitFor polls fn until it returns nil or timeout passes, then fails the test
// with fn's last error. Tests poll; they never sleep for an outcome.
func WaitFor(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 5 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(delay)
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}
