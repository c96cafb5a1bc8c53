package keylock

import (
	"context"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/errs"
)

func TestLockSerialisesOneKeyOnly(t *testing.T) {
	l := New()
	unlock, err := l.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.TryLock("a"); ok {
		t.Fatal("TryLock of a held key succeeded")
	}
	other, ok := l.TryLock("b")
	if !ok {
		t.Fatal("TryLock of another key failed")
	}
	other()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx, "a"); !errs.Is(err, errs.Timeout) {
		t.Fatalf("Lock of a held key until ctx ends = %v, want Timeout", err)
	}

	got := make(chan func())
	go func() {
		u, err := l.Lock(context.Background(), "a")
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	select {
	case <-got:
		t.Fatal("a waiter got a held key")
	case <-time.After(5 * time.Millisecond):
	}
	unlock()
	(<-got)()

	if len(l.m) != 0 {
		t.Errorf("entries left after every holder and waiter is gone: %v", l.m)
	}
}
