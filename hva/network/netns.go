package network

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// InNetNS runs fn on an OS thread switched into namespace ns, for the few
// kernel interfaces that act in the caller's namespace instead of taking
// one (/dev/net/tun, socket creation). Sockets made there stay in ns.
//
// fn runs on its own goroutine locked to its thread. Should switching back
// fail, the thread stays locked and is discarded when the goroutine ends,
// so no other goroutine ever runs in the wrong namespace.
func InNetNS(ns netns.NsHandle, fn func() error) error {
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- result{fmt.Errorf("read the thread's network namespace: %w", err)}
			return // still locked: the thread is discarded
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			done <- result{fmt.Errorf("enter network namespace: %w", err)}
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			done <- result{fmt.Errorf("leave network namespace: %w (after: %v)", err, ferr)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{ferr}
	}()
	return (<-done).err
}

// NewNamedNS creates network namespace name (bound at /run/netns/name, as
// `ip netns add` does) and returns a handle to it; the caller closes the
// handle and removes the namespace with DeleteNamedNS. Tests and benchmarks
// use it to work in a namespace of their own.
func NewNamedNS(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- result{netns.None(), fmt.Errorf("read the thread's network namespace: %w", err)}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name) // creates and enters it
		if err != nil {
			if serr := netns.Set(orig); serr != nil {
				done <- result{netns.None(), fmt.Errorf("create netns %s: %w", name, err)}
				return
			}
			runtime.UnlockOSThread()
			done <- result{netns.None(), fmt.Errorf("create netns %s: %w", name, err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			ns.Close()
			done <- result{netns.None(), fmt.Errorf("leave netns %s: %w", name, err)}
			return
		}
		runtime.UnlockOSThread()
		done <- result{ns, nil}
	}()
	r := <-done
	return r.ns, r.err
}

// DeleteNamedNS removes a namespace made by NewNamedNS. Links in it go with
// it once no handle or process holds it.
func DeleteNamedNS(name string) error {
	if err := netns.DeleteNamed(name); err != nil {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}
