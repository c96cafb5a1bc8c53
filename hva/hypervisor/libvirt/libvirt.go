// Package libvirt is the hypervisor driver over libvirtd (QEMU/KVM): it
// speaks libvirt's RPC protocol on the daemon's unix socket
// (github.com/digitalocean/go-libvirt, no cgo) and defines domains from
// libvirtxml structs. A domain is named after its instance and carries a
// vdc metadata element with the hva's node id, so one hva only sees (and
// never touches) the domains it made. The connection is re-made when
// libvirtd restarts.
package libvirt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	lv "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// Defaults of Config fields left zero.
const (
	DefaultSocket   = "/run/libvirt/libvirt-sock"
	DefaultURI      = "qemu:///system"
	DefaultVirtType = "qemu"
	// DefaultPollInterval is how often a graceful Stop looks at the domain.
	DefaultPollInterval = 100 * time.Millisecond
	// DefaultDialTimeout bounds connecting to the socket.
	DefaultDialTimeout = 5 * time.Second
	// DefaultRepressInterval is how often a graceful Stop presses the
	// power button again while it waits, and DetachDisk repeats its
	// unplug request.
	DefaultRepressInterval = 3 * time.Second
	// DefaultDetachTimeout bounds how long DetachDisk waits for the guest
	// to release a hot-unplugged disk.
	DefaultDetachTimeout = time.Minute
)

// Config configures the driver.
type Config struct {
	// NodeID is the hva's node id, written into every domain it defines.
	NodeID string
	// Socket is libvirtd's read-write socket; URI the driver to open.
	Socket string
	URI    string
	// VirtType is the domain type: "qemu" (TCG, works everywhere) or
	// "kvm" (hardware virtualisation).
	VirtType string
	// ConsoleDir is where each domain's serial console is logged, as
	// <ConsoleDir>/<id>.log ("" = not logged).
	ConsoleDir   string
	PollInterval time.Duration
	// RepressInterval: a press that came while the guest was still booting
	// (before it listens for the button) is lost, so a graceful Stop
	// presses again at this interval while it waits.
	RepressInterval time.Duration
	// DetachTimeout: see DefaultDetachTimeout.
	DetachTimeout time.Duration
	DialTimeout   time.Duration
	Logger        *slog.Logger
}

func (c *Config) setDefaults() error {
	c.Socket = cmp.Or(c.Socket, DefaultSocket)
	c.URI = cmp.Or(c.URI, DefaultURI)
	c.VirtType = cmp.Or(c.VirtType, DefaultVirtType)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.DialTimeout = cmp.Or(c.DialTimeout, DefaultDialTimeout)
	c.RepressInterval = cmp.Or(c.RepressInterval, DefaultRepressInterval)
	c.DetachTimeout = cmp.Or(c.DetachTimeout, DefaultDetachTimeout)
	if c.Logger == nil {
		c.Logger = logging.Discard()
	}
	switch {
	case c.NodeID == "":
		return errs.New(errs.InvalidParameter, "libvirt driver: node id is empty")
	case c.VirtType != "qemu" && c.VirtType != "kvm":
		return errs.New(errs.InvalidParameter, "libvirt driver: virt type %q, want qemu or kvm", c.VirtType)
	}
	return nil
}

// Driver is the libvirt hypervisor. It is safe for concurrent use.
type Driver struct {
	cfg Config

	mu   sync.Mutex // guards conn
	conn *lv.Libvirt
}

var _ hypervisor.Hypervisor = (*Driver)(nil)

// New returns a driver; it connects on first use (and after libvirtd
// restarts), so a daemon started before libvirtd works once it is up.
func New(cfg Config) (*Driver, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Driver{cfg: cfg}, nil
}

// Ping connects to libvirtd (if not connected) and asks for its version:
// whether the daemon answers.
func (d *Driver) Ping(ctx context.Context) error {
	return d.do(ctx, "ping libvirtd", func(l *lv.Libvirt) error {
		_, err := l.ConnectGetLibVersion()
		return err
	})
}

// Close drops the connection.
func (d *Driver) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return nil
	}
	err := d.conn.Disconnect()
	d.conn = nil
	return err
}

// client returns a live connection, connecting first if there is none or
// the last one was lost (libvirtd restarted).
func (d *Driver) client() (*lv.Libvirt, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil && d.conn.IsConnected() {
		return d.conn, nil
	}
	l := lv.NewWithDialer(dialers.NewLocal(dialers.WithSocket(d.cfg.Socket), dialers.WithLocalTimeout(d.cfg.DialTimeout)))
	if err := l.ConnectToURI(lv.ConnectURI(d.cfg.URI)); err != nil {
		return nil, errs.Wrap(errs.Unavailable, err, "connect to libvirtd at "+d.cfg.Socket)
	}
	if d.conn != nil {
		d.cfg.Logger.Info("reconnected to libvirtd", "socket", d.cfg.Socket)
	}
	d.conn = l
	return l, nil
}

// do runs op on a live connection. go-libvirt calls take no context: op
// runs aside and an ended ctx returns at once (errs.Timeout; the call still
// completes in libvirtd). An op that failed because the connection was
// lost is run once more on a new one; every op re-reads the domain first,
// so running it again is safe.
func (d *Driver) do(ctx context.Context, what string, op func(l *lv.Libvirt) error) error {
	for attempt := 0; ; attempt++ {
		if err := hypervisor.CtxErr(ctx, what); err != nil {
			return err
		}
		l, err := d.client()
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- op(l) }()
		select {
		case err = <-done:
		case <-ctx.Done():
			return errs.Wrap(errs.Timeout, ctx.Err(), what)
		}
		if err != nil && !l.IsConnected() {
			if attempt == 0 {
				d.cfg.Logger.Warn("lost the libvirtd connection; retrying", "op", what, "error", err)
				continue
			}
			return errs.Wrap(errs.Unavailable, err, what+": libvirtd connection lost")
		}
		return err
	}
}

// libvirtErr maps a libvirt error to an errs kind, saying what was done.
func libvirtErr(err error, what string) error {
	if err == nil {
		return nil
	}
	if e := errs.As(err); e != nil {
		return err
	}
	var le lv.Error
	if errors.As(err, &le) {
		switch lv.ErrorNumber(le.Code) {
		case lv.ErrNoDomain:
			return errs.Wrap(errs.NotFound, err, what)
		case lv.ErrOperationInvalid:
			return errs.Wrap(errs.InvalidInstanceState, err, what)
		case lv.ErrOperationTimeout:
			return errs.Wrap(errs.Timeout, err, what)
		}
	}
	return errs.Wrap(errs.Internal, err, what)
}

// domainRef is one of this hva's domains.
type domainRef struct {
	dom lv.Domain
}

// lookup finds the domain named id if this hva made it; any other domain
// of that name is absent as far as vdc is concerned (errs.NotFound), and
// foreign reports that it exists.
func (d *Driver) lookup(l *lv.Libvirt, id string) (ref domainRef, foreign bool, err error) {
	dom, err := l.DomainLookupByName(id)
	if err != nil {
		if lv.IsNotFound(err) {
			return ref, false, hypervisor.NotFound(id)
		}
		return ref, false, libvirtErr(err, "look up domain "+id)
	}
	ok, err := d.ours(l, dom)
	if err != nil {
		return ref, false, err
	}
	if !ok {
		return ref, true, hypervisor.NotFound(id)
	}
	return domainRef{dom: dom}, false, nil
}

// ours reports whether dom carries this hva's metadata.
func (d *Driver) ours(l *lv.Libvirt, dom lv.Domain) (bool, error) {
	s, err := l.DomainGetMetadata(dom, int32(lv.DomainMetadataElement), lv.OptString{MetadataURI}, 0)
	if err != nil {
		var le lv.Error
		if errors.As(err, &le) && (lv.ErrorNumber(le.Code) == lv.ErrNoDomainMetadata || lv.ErrorNumber(le.Code) == lv.ErrNoDomain) {
			return false, nil
		}
		return false, libvirtErr(err, "read the metadata of domain "+dom.Name)
	}
	m, err := parseMetadata(s)
	if err != nil {
		return false, nil
	}
	return m.NodeID == d.cfg.NodeID, nil
}

// info reads the domain's state and size.
func info(l *lv.Libvirt, dom lv.Domain) (hypervisor.Domain, error) {
	st, maxMem, _, vcpus, _, err := l.DomainGetInfo(dom)
	if err != nil {
		return hypervisor.Domain{}, libvirtErr(err, "get domain "+dom.Name)
	}
	return hypervisor.Domain{ID: dom.Name, State: stateOf(lv.DomainState(st)), CPUCores: int(vcpus),
		MemoryMB: int64(maxMem / 1024)}, nil
}

// stateOf maps libvirt's states to the three the handlers know.
func stateOf(s lv.DomainState) hypervisor.State {
	switch s {
	case lv.DomainRunning, lv.DomainBlocked, lv.DomainShutdown:
		// DomainShutdown: the guest is shutting down; its process lives.
		return hypervisor.Running
	case lv.DomainPaused, lv.DomainPmsuspended:
		return hypervisor.Paused
	}
	return hypervisor.Shutoff
}

func (d *Driver) state(l *lv.Libvirt, ref domainRef) (hypervisor.State, error) {
	st, _, err := l.DomainGetState(ref.dom, 0)
	if err != nil {
		return "", libvirtErr(err, "get the state of domain "+ref.dom.Name)
	}
	return stateOf(lv.DomainState(st)), nil
}

// Define implements hypervisor.Hypervisor. There is no capacity check: the
// scheduler places by the host node's declared offering, and TCG hosts
// are routinely overcommitted.
func (d *Driver) Define(ctx context.Context, spec hypervisor.Spec) error {
	if err := spec.Validate(); err != nil {
		return err
	}
	if d.cfg.ConsoleDir != "" {
		if err := os.MkdirAll(d.cfg.ConsoleDir, 0o750); err != nil {
			return fmt.Errorf("create the console log directory: %w", err)
		}
	}
	return d.do(ctx, "define domain "+spec.ID, func(l *lv.Libvirt) error {
		uuid := ""
		ref, foreign, err := d.lookup(l, spec.ID)
		switch {
		case foreign:
			return errs.New(errs.IncompatibleHostNode, "a domain %s exists on this host that hva %s did not define",
				spec.ID, d.cfg.NodeID)
		case err == nil:
			// Keep the uuid: libvirt refuses a definition that reuses a
			// name with another one.
			uuid = formatUUID(ref.dom.UUID)
		case !errs.Is(err, errs.NotFound):
			return err
		}
		x, err := domainXML(d.cfg, spec, uuid)
		if err != nil {
			return err
		}
		if _, err := l.DomainDefineXMLFlags(x, 0); err != nil {
			return libvirtErr(err, "define domain "+spec.ID)
		}
		return nil
	})
}

func formatUUID(u lv.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Start implements hypervisor.Hypervisor; a paused domain is resumed.
func (d *Driver) Start(ctx context.Context, id string) error {
	return d.do(ctx, "start domain "+id, func(l *lv.Libvirt) error {
		ref, _, err := d.lookup(l, id)
		if err != nil {
			return err
		}
		st, err := d.state(l, ref)
		if err != nil {
			return err
		}
		switch st {
		case hypervisor.Running:
			return nil
		case hypervisor.Paused:
			return libvirtErr(l.DomainResume(ref.dom), "resume domain "+id)
		}
		if err := l.DomainCreate(ref.dom); err != nil {
			if st, serr := d.state(l, ref); serr == nil && st == hypervisor.Running {
				return nil // started meanwhile by another call
			}
			return libvirtErr(err, "start domain "+id)
		}
		return nil
	})
}

// Stop implements hypervisor.Hypervisor.
func (d *Driver) Stop(ctx context.Context, id string, force bool) error {
	var ref domainRef
	err := d.do(ctx, "stop domain "+id, func(l *lv.Libvirt) error {
		var err error
		ref, _, err = d.lookup(l, id)
		if err != nil {
			return err
		}
		st, err := d.state(l, ref)
		if err != nil || st == hypervisor.Shutoff {
			return err
		}
		if force {
			return d.destroy(l, ref)
		}
		return d.acpiShutdown(l, ref)
	})
	if err != nil || force {
		return err
	}
	return d.waitShutoff(ctx, id)
}

// destroy pulls the plug; a domain that is off already is fine.
func (d *Driver) destroy(l *lv.Libvirt, ref domainRef) error {
	if err := l.DomainDestroyFlags(ref.dom, lv.DomainDestroyDefault); err != nil {
		if st, serr := d.state(l, ref); serr == nil && st == hypervisor.Shutoff {
			return nil
		}
		return libvirtErr(err, "destroy domain "+ref.dom.Name)
	}
	return nil
}

// acpiShutdown presses the ACPI power button.
func (d *Driver) acpiShutdown(l *lv.Libvirt, ref domainRef) error {
	if err := l.DomainShutdownFlags(ref.dom, lv.DomainShutdownAcpiPowerBtn); err != nil {
		if st, serr := d.state(l, ref); serr == nil && st == hypervisor.Shutoff {
			return nil
		}
		return libvirtErr(err, "shut down domain "+ref.dom.Name)
	}
	return nil
}

// waitShutoff polls until the domain is off (or gone) or ctx ends,
// pressing the power button again every RepressInterval.
func (d *Driver) waitShutoff(ctx context.Context, id string) error {
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	lastPress := time.Now()
	for {
		if time.Since(lastPress) >= d.cfg.RepressInterval {
			lastPress = time.Now()
			if err := d.Shutdown(ctx, id); err != nil && !errs.Is(err, errs.NotFound) {
				return err
			}
		}
		dom, err := d.Get(ctx, id)
		switch {
		case errs.Is(err, errs.NotFound):
			return nil
		case errs.Is(err, errs.Timeout):
			return errs.Wrap(errs.Timeout, err, "domain "+id+" did not shut down")
		case err != nil:
			return err
		case dom.State == hypervisor.Shutoff:
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return errs.Wrap(errs.Timeout, ctx.Err(), "domain "+id+" did not shut down")
		}
	}
}

// Reboot implements hypervisor.Hypervisor: a hard reset, as the source's
// system_reset.
func (d *Driver) Reboot(ctx context.Context, id string) error {
	return d.do(ctx, "reboot domain "+id, func(l *lv.Libvirt) error {
		ref, _, err := d.lookup(l, id)
		if err != nil {
			return err
		}
		st, err := d.state(l, ref)
		if err != nil {
			return err
		}
		if st != hypervisor.Running {
			return hypervisor.WrongState(id, st, "reboot")
		}
		return libvirtErr(l.DomainReset(ref.dom, 0), "reset domain "+id)
	})
}

// Shutdown implements hypervisor.Hypervisor.
func (d *Driver) Shutdown(ctx context.Context, id string) error {
	return d.do(ctx, "shut down domain "+id, func(l *lv.Libvirt) error {
		ref, _, err := d.lookup(l, id)
		if err != nil {
			return err
		}
		st, err := d.state(l, ref)
		if err != nil || st == hypervisor.Shutoff {
			return err
		}
		return d.acpiShutdown(l, ref)
	})
}

// Undefine implements hypervisor.Hypervisor. A domain of that name this
// hva did not define is left alone.
func (d *Driver) Undefine(ctx context.Context, id string) error {
	return d.do(ctx, "undefine domain "+id, func(l *lv.Libvirt) error {
		ref, _, err := d.lookup(l, id)
		if errs.Is(err, errs.NotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		st, err := d.state(l, ref)
		if err != nil {
			return err
		}
		if st.Alive() {
			return hypervisor.WrongState(id, st, "undefine")
		}
		if err := l.DomainUndefineFlags(ref.dom, lv.DomainUndefineManagedSave|lv.DomainUndefineSnapshotsMetadata); err != nil {
			if lv.IsNotFound(err) {
				return nil
			}
			return libvirtErr(err, "undefine domain "+id)
		}
		return nil
	})
}

// Get implements hypervisor.Hypervisor.
func (d *Driver) Get(ctx context.Context, id string) (hypervisor.Domain, error) {
	var out hypervisor.Domain
	err := d.do(ctx, "get domain "+id, func(l *lv.Libvirt) error {
		ref, _, err := d.lookup(l, id)
		if err != nil {
			return err
		}
		out, err = info(l, ref.dom)
		if errs.Is(err, errs.NotFound) {
			return hypervisor.NotFound(id)
		}
		return err
	})
	return out, err
}

// List implements hypervisor.Hypervisor: the persistent domains this hva
// defined.
func (d *Driver) List(ctx context.Context) ([]hypervisor.Domain, error) {
	var out []hypervisor.Domain
	err := d.do(ctx, "list domains", func(l *lv.Libvirt) error {
		out = nil
		doms, _, err := l.ConnectListAllDomains(1, lv.ConnectListDomainsPersistent)
		if err != nil {
			return libvirtErr(err, "list domains")
		}
		for _, dom := range doms {
			ok, err := d.ours(l, dom)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			di, err := info(l, dom)
			if errs.Is(err, errs.NotFound) {
				continue // undefined since the listing
			}
			if err != nil {
				return err
			}
			out = append(out, di)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b hypervisor.Domain) int { return cmp.Compare(a.ID, b.ID) })
	return out, err
}

// Capacity implements hypervisor.Hypervisor: the host's cpus and memory,
// and what this hva's defined domains take of them.
func (d *Driver) Capacity(ctx context.Context) (hypervisor.Capacity, error) {
	var c hypervisor.Capacity
	err := d.do(ctx, "read the host's capacity", func(l *lv.Libvirt) error {
		_, memKiB, cpus, _, _, _, _, _, err := l.NodeGetInfo()
		if err != nil {
			return libvirtErr(err, "get node info")
		}
		c = hypervisor.Capacity{CPUCores: int(cpus), MemoryMB: int64(memKiB / 1024)}
		return nil
	})
	if err != nil {
		return c, err
	}
	doms, err := d.List(ctx)
	if err != nil {
		return c, err
	}
	for _, dom := range doms {
		c.UsedCPUCores += dom.CPUCores
		c.UsedMemoryMB += dom.MemoryMB
	}
	return c, nil
}
