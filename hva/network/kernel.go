package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/common/errs"
)

// Kernel is Links over netlink, in one network namespace.
type Kernel struct {
	h  *netlink.Handle
	ns netns.NsHandle // -1: the process's namespace
}

// NewKernel opens netlink in namespace ns; netns.None() is the namespace the
// process runs in. The caller keeps ns open while the Kernel is used.
func NewKernel(ns netns.NsHandle) (*Kernel, error) {
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Kernel{h: h, ns: ns}, nil
}

// Close releases the netlink sockets.
func (k *Kernel) Close() { k.h.Close() }

// kernelErr gives netlink's errors their kinds.
func kernelErr(err error, what string) error {
	var nf netlink.LinkNotFoundError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nf), errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.ENOENT):
		return errs.Wrap(errs.NotFound, err, what)
	case errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.EBUSY):
		return errs.Wrap(errs.Conflict, err, what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (k *Kernel) link(ctx context.Context, name string) (netlink.Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, errs.Wrap(errs.Timeout, err, "link "+name)
	}
	l, err := k.h.LinkByName(name)
	return l, kernelErr(err, "link "+name)
}

func (k *Kernel) toLink(l netlink.Link) Link {
	a := l.Attrs()
	out := Link{Name: a.Name, Kind: l.Type(), MTU: a.MTU, Up: a.Flags&net.FlagUp != 0}
	if len(a.HardwareAddr) > 0 {
		out.MAC = append(net.HardwareAddr(nil), a.HardwareAddr...)
	}
	if t, ok := l.(*netlink.Tuntap); ok && t.Mode == netlink.TUNTAP_MODE_TAP {
		out.Kind = KindTap
	}
	if a.MasterIndex != 0 {
		if m, err := k.h.LinkByIndex(a.MasterIndex); err == nil {
			out.Master = m.Attrs().Name
		}
	}
	return out
}

// Get implements Links.
func (k *Kernel) Get(ctx context.Context, name string) (Link, error) {
	l, err := k.link(ctx, name)
	if err != nil {
		return Link{}, err
	}
	return k.toLink(l), nil
}

// List implements Links.
func (k *Kernel) List(ctx context.Context) ([]Link, error) {
	if err := ctx.Err(); err != nil {
		return nil, errs.Wrap(errs.Timeout, err, "list links")
	}
	ls, err := k.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		out = append(out, k.toLink(l))
	}
	return out, nil
}

// AddBridge implements Links.
func (k *Kernel) AddBridge(ctx context.Context, name string, mtu int) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, "add bridge "+name)
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	return kernelErr(k.h.LinkAdd(br), "add bridge "+name)
}

// AddTap implements Links. A tap is made through /dev/net/tun, which puts it
// in the namespace of the calling thread, so the call runs on a thread
// switched into the Kernel's namespace. IFF_TUN_EXCL makes an existing name
// an error instead of attaching to that device; the flags are those QEMU
// (through libvirt's managed='no') opens the tap with, single queue.
func (k *Kernel) AddTap(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return errs.Wrap(errs.Timeout, err, "add tap "+name)
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_TUN_EXCL,
	}
	// TUNSETIFF reports a taken name as a bare EBUSY in a formatted
	// error; look first so that the answer is a Conflict.
	if _, err := k.h.LinkByName(name); err == nil {
		return errs.New(errs.Conflict, "add tap %s: the name is taken", name)
	}
	add := func() error { return netlink.LinkAdd(tap) }
	var err error
	if k.ns.IsOpen() {
		err = InNetNS(k.ns, add)
	} else {
		err = add()
	}
	return kernelErr(err, "add tap "+name)
}

// SetMaster implements Links.
func (k *Kernel) SetMaster(ctx context.Context, name, master string) error {
	l, err := k.link(ctx, name)
	if err != nil {
		return err
	}
	m, err := k.link(ctx, master)
	if err != nil {
		return err
	}
	return kernelErr(k.h.LinkSetMasterByIndex(l, m.Attrs().Index), "set master of "+name+" to "+master)
}

// SetMAC implements Links.
func (k *Kernel) SetMAC(ctx context.Context, name string, mac net.HardwareAddr) error {
	l, err := k.link(ctx, name)
	if err != nil {
		return err
	}
	return kernelErr(k.h.LinkSetHardwareAddr(l, mac), "set mac of "+name)
}

// SetMTU implements Links.
func (k *Kernel) SetMTU(ctx context.Context, name string, mtu int) error {
	l, err := k.link(ctx, name)
	if err != nil {
		return err
	}
	return kernelErr(k.h.LinkSetMTU(l, mtu), "set mtu of "+name)
}

// SetUp implements Links.
func (k *Kernel) SetUp(ctx context.Context, name string) error {
	l, err := k.link(ctx, name)
	if err != nil {
		return err
	}
	return kernelErr(k.h.LinkSetUp(l), "set "+name+" up")
}

// Delete implements Links.
func (k *Kernel) Delete(ctx context.Context, name string) error {
	l, err := k.link(ctx, name)
	if err != nil {
		return err
	}
	return kernelErr(k.h.LinkDel(l), "delete "+name)
}
