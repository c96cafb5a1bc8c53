// Package networktest has the in-memory Links of hva/network and the
// conformance suite that it and the netlink Links both pass.
package networktest

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/network"
)

// Fake is an in-memory interface table. It is safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	links  map[string]*network.Link
	faults map[string]error
	macs   int
}

// NewFake returns an empty table.
func NewFake() *Fake {
	return &Fake{links: map[string]*network.Link{}, faults: map[string]error{}}
}

// AddDevice adds a plain link (an uplink NIC, a veth …), down.
func (f *Fake) AddDevice(name, kind string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.links[name] = &network.Link{Name: name, Kind: kind, MTU: 1500, MAC: f.nextMAC()}
}

// InjectError makes the next call of op (a Links method name: "AddTap",
// "SetMaster" …) fail with err.
func (f *Fake) InjectError(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = err
}

func (f *Fake) fault(op string) error {
	if err, ok := f.faults[op]; ok {
		delete(f.faults, op)
		return err
	}
	return nil
}

// nextMAC is a locally administered address, as the kernel gives new links.
func (f *Fake) nextMAC() net.HardwareAddr {
	f.macs++
	return net.HardwareAddr{0x02, 0, 0, 0, byte(f.macs >> 8), byte(f.macs)}
}

func (f *Fake) get(name string) (*network.Link, error) {
	l, ok := f.links[name]
	if !ok {
		return nil, errs.New(errs.NotFound, "link %s: no such device", name)
	}
	return l, nil
}

func (f *Fake) begin(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, op)
	}
	return f.fault(op)
}

// Get implements network.Links.
func (f *Fake) Get(ctx context.Context, name string) (network.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, "Get"); err != nil {
		return network.Link{}, err
	}
	l, err := f.get(name)
	if err != nil {
		return network.Link{}, err
	}
	out := *l
	out.MAC = slices.Clone(l.MAC)
	return out, nil
}

// List implements network.Links.
func (f *Fake) List(ctx context.Context) ([]network.Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, "List"); err != nil {
		return nil, err
	}
	out := make([]network.Link, 0, len(f.links))
	for _, l := range f.links {
		c := *l
		c.MAC = slices.Clone(l.MAC)
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b network.Link) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (f *Fake) add(ctx context.Context, op string, l network.Link) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, op); err != nil {
		return err
	}
	if _, ok := f.links[l.Name]; ok {
		return errs.New(errs.Conflict, "%s %s: file exists", op, l.Name)
	}
	l.MAC = f.nextMAC()
	f.links[l.Name] = &l
	return nil
}

// AddBridge implements network.Links.
func (f *Fake) AddBridge(ctx context.Context, name string, mtu int) error {
	if mtu == 0 {
		mtu = 1500
	}
	return f.add(ctx, "AddBridge", network.Link{Name: name, Kind: network.KindBridge, MTU: mtu})
}

// AddTap implements network.Links.
func (f *Fake) AddTap(ctx context.Context, name string) error {
	return f.add(ctx, "AddTap", network.Link{Name: name, Kind: network.KindTap, MTU: 1500})
}

func (f *Fake) set(ctx context.Context, op, name string, fn func(l *network.Link) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin(ctx, op); err != nil {
		return err
	}
	l, err := f.get(name)
	if err != nil {
		return err
	}
	return fn(l)
}

// SetMaster implements network.Links.
func (f *Fake) SetMaster(ctx context.Context, name, master string) error {
	return f.set(ctx, "SetMaster", name, func(l *network.Link) error {
		m, err := f.get(master)
		if err != nil {
			return err
		}
		if m.Kind != network.KindBridge {
			return errs.New(errs.InvalidParameter, "set master of %s: %s is not a bridge", name, master)
		}
		l.Master = master
		return nil
	})
}

// SetMAC implements network.Links.
func (f *Fake) SetMAC(ctx context.Context, name string, mac net.HardwareAddr) error {
	return f.set(ctx, "SetMAC", name, func(l *network.Link) error {
		l.MAC = slices.Clone(mac)
		return nil
	})
}

// SetMTU implements network.Links.
func (f *Fake) SetMTU(ctx context.Context, name string, mtu int) error {
	return f.set(ctx, "SetMTU", name, func(l *network.Link) error {
		l.MTU = mtu
		return nil
	})
}

// SetUp implements network.Links.
func (f *Fake) SetUp(ctx context.Context, name string) error {
	return f.set(ctx, "SetUp", name, func(l *network.Link) error {
		l.Up = true
		return nil
	})
}

// Delete implements network.Links. Deleting a bridge releases its ports, as
// the kernel does.
func (f *Fake) Delete(ctx context.Context, name string) error {
	return f.set(ctx, "Delete", name, func(l *network.Link) error {
		delete(f.links, name)
		for _, o := range f.links {
			if o.Master == name {
				o.Master = ""
			}
		}
		return nil
	})
}
