// Package network plugs vnics into the hva's host networks (spec/agents.md
// §5; DESIGN.md "Node agents"): a bridge per DC network, optionally with an
// uplink interface enslaved, and a persistent tap per vnic, named exactly
// the vif id, carrying a MAC derived from the guest's, the DC network's MTU,
// enslaved to the bridge and up.
//
// The taps are made before the domain is defined: the libvirt driver opens
// them as `<interface type='ethernet'><target dev='vif-…' managed='no'/>`,
// so they must exist and stay (persistent) when the hva is not holding them.
//
// The kernel sits behind Links (netlink in Kernel, an in-memory fake in
// networktest), and networktest.Run is the conformance suite both pass.
package network

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/logging"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// TapPrefix starts the name of every vnic tap (vif ids are vif-xxxxxxxx).
// Reconcile only ever removes taps with this prefix.
const TapPrefix = "vif-"

// MaxNameLen is the longest interface name the kernel takes (IFNAMSIZ-1).
const MaxNameLen = 15

// Link kinds. Others are reported with netlink's type name (veth, dummy …).
const (
	KindBridge = "bridge"
	KindTap    = "tap"
)

// Link is what the hva needs to know about a network interface.
type Link struct {
	Name string
	Kind string
	// Master is the bridge the link is enslaved to ("" = none).
	Master string
	MAC    net.HardwareAddr
	MTU    int
	// Up is the administrative state (IFF_UP); a tap no process holds is up
	// but has no carrier.
	Up bool
}

// Links is the kernel's interface table as the hva uses it. Every method
// works on the links of one network namespace. Missing links are
// errs.NotFound; creating a link whose name is taken is errs.Conflict.
type Links interface {
	Get(ctx context.Context, name string) (Link, error)
	List(ctx context.Context) ([]Link, error)
	// AddBridge creates a bridge, down; mtu 0 keeps the kernel's default.
	AddBridge(ctx context.Context, name string, mtu int) error
	// AddTap creates a persistent, single-queue tap, down.
	AddTap(ctx context.Context, name string) error
	// SetMaster enslaves name to the bridge master.
	SetMaster(ctx context.Context, name, master string) error
	SetMAC(ctx context.Context, name string, mac net.HardwareAddr) error
	SetMTU(ctx context.Context, name string, mtu int) error
	SetUp(ctx context.Context, name string) error
	Delete(ctx context.Context, name string) error
}

// DCNetwork is how one DC network is made on this host (hva.conf
// dc_network(name){bridge, interface}, plus the MTU of its taps).
type DCNetwork struct {
	// Bridge is the bridge's name; it is created when absent.
	Bridge string `json:"bridge"`
	// Interface, if set, is the uplink enslaved to the bridge; it must
	// exist (the hva does not create physical interfaces).
	Interface string `json:"interface,omitempty"`
	// MTU of the bridge (when created here) and of the taps; 0 = default.
	MTU int `json:"mtu,omitempty"`
}

// Validate checks the names and MTU.
func (d DCNetwork) Validate() error {
	if err := checkName(d.Bridge); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if d.Interface != "" {
		if err := checkName(d.Interface); err != nil {
			return fmt.Errorf("interface: %w", err)
		}
		if d.Interface == d.Bridge {
			return errors.New("interface and bridge are the same link")
		}
	}
	if d.MTU != 0 && (d.MTU < 68 || d.MTU > 65535) {
		return fmt.Errorf("mtu %d: want 68-65535 or 0 for the default", d.MTU)
	}
	return nil
}

func checkName(name string) error {
	if name == "" || len(name) > MaxNameLen || strings.ContainsAny(name, "/ \t\n:") {
		return fmt.Errorf("interface name %q: want 1-%d characters without '/', ':' or spaces", name, MaxNameLen)
	}
	return nil
}

// Config configures a Network.
type Config struct {
	// Networks maps a DC network's name to its bridge on this host.
	Networks map[string]DCNetwork
	Links    Links
	Logger   *slog.Logger
}

// Network plugs and unplugs vnics. It implements handlers.HostNetwork. Its
// operations are serialised: two boots plugging into one new bridge must
// not both try to create it.
type Network struct {
	cfg    Config
	logger *slog.Logger

	mu sync.Mutex
	// plugged are the taps Plug made or found since New: Reconcile leaves
	// them alone even when its list of wanted vifs was read before they were
	// plugged.
	plugged map[string]bool
}

// New checks cfg and returns a Network.
func New(cfg Config) (*Network, error) {
	if cfg.Links == nil {
		return nil, errors.New("network: links are required")
	}
	bridges := map[string]string{}
	for name, d := range cfg.Networks {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("network: dc network %q: %w", name, err)
		}
		if other, ok := bridges[d.Bridge]; ok {
			return nil, fmt.Errorf("network: dc networks %q and %q share bridge %s", other, name, d.Bridge)
		}
		bridges[d.Bridge] = name
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	return &Network{cfg: cfg, logger: logger.With("component", "network"), plugged: map[string]bool{}}, nil
}

// Bridge is the bridge of a DC network on this host ("" when it has none).
func (n *Network) Bridge(dcNetwork string) string { return n.cfg.Networks[dcNetwork].Bridge }

// TapMAC is the host side MAC of a vnic's tap: the guest's MAC with the
// first octet 0xfe, libvirt's convention, so that the bridge never learns
// the guest's address on the host side and the tap never becomes the
// bridge's lowest (and so its own) address. guestMAC is 12 hex digits or
// colon separated.
func TapMAC(guestMAC string) (net.HardwareAddr, error) {
	s := guestMAC
	if len(s) == 12 && !strings.Contains(s, ":") {
		var b strings.Builder
		for i := 0; i < 12; i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(s[i : i+2])
		}
		s = b.String()
	}
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, errs.New(errs.InvalidMacAddress, "mac address %q: want 12 hex digits", guestMAC)
	}
	mac[0] = 0xfe
	return mac, nil
}

// Plug makes each NIC's tap exist with its MAC and MTU, on its DC network's
// bridge (created if absent, with its uplink enslaved) and up, and fills in
// NIC.Bridge and NIC.MTU. A NIC without a DC network gets a tap on no
// bridge. Idempotent: a tap that exists is corrected, not recreated (the
// domain may hold it).
func (n *Network) Plug(ctx context.Context, nics []hypervisor.NIC) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range nics {
		nic := &nics[i]
		if err := n.plug(ctx, nic); err != nil {
			return fmt.Errorf("plug %s: %w", nic.VifID, err)
		}
	}
	return nil
}

func (n *Network) plug(ctx context.Context, nic *hypervisor.NIC) error {
	if err := checkTapName(nic.VifID); err != nil {
		return err
	}
	mac, err := TapMAC(nic.MAC)
	if err != nil {
		return err
	}
	var dcn DCNetwork
	if nic.DcNetwork != "" {
		var ok bool
		if dcn, ok = n.cfg.Networks[nic.DcNetwork]; !ok {
			return errs.New(errs.UnknownDcNetwork, "dc network %q is not configured on this host", nic.DcNetwork)
		}
		if err := n.ensureBridge(ctx, dcn); err != nil {
			return err
		}
	}
	if err := n.ensureTap(ctx, nic.VifID, mac, dcn); err != nil {
		return err
	}
	n.plugged[nic.VifID] = true
	nic.Bridge, nic.MTU = dcn.Bridge, dcn.MTU
	return nil
}

func checkTapName(vif string) error {
	if !strings.HasPrefix(vif, TapPrefix) || checkName(vif) != nil {
		return errs.New(errs.InvalidParameter, "vif id %q cannot name a tap: want %s… of at most %d characters",
			vif, TapPrefix, MaxNameLen)
	}
	return nil
}

// ensureBridge creates the bridge if absent, enslaves the uplink and brings
// both up.
func (n *Network) ensureBridge(ctx context.Context, d DCNetwork) error {
	br, err := n.cfg.Links.Get(ctx, d.Bridge)
	switch {
	case errs.Is(err, errs.NotFound):
		if err := n.cfg.Links.AddBridge(ctx, d.Bridge, d.MTU); err != nil {
			return fmt.Errorf("create bridge %s: %w", d.Bridge, err)
		}
		n.logger.InfoContext(ctx, "created bridge", "bridge", d.Bridge, "mtu", d.MTU)
		br = Link{Name: d.Bridge, Kind: KindBridge}
	case err != nil:
		return fmt.Errorf("read bridge %s: %w", d.Bridge, err)
	case br.Kind != KindBridge:
		return errs.New(errs.Conflict, "%s exists and is a %s, not a bridge", d.Bridge, br.Kind)
	}
	if d.Interface != "" {
		up, err := n.cfg.Links.Get(ctx, d.Interface)
		if err != nil {
			return fmt.Errorf("uplink %s of bridge %s: %w", d.Interface, d.Bridge, err)
		}
		if up.Master != d.Bridge {
			if err := n.cfg.Links.SetMaster(ctx, d.Interface, d.Bridge); err != nil {
				return fmt.Errorf("enslave uplink %s to %s: %w", d.Interface, d.Bridge, err)
			}
		}
		if !up.Up {
			if err := n.cfg.Links.SetUp(ctx, d.Interface); err != nil {
				return fmt.Errorf("bring uplink %s up: %w", d.Interface, err)
			}
		}
	}
	if !br.Up {
		if err := n.cfg.Links.SetUp(ctx, d.Bridge); err != nil {
			return fmt.Errorf("bring bridge %s up: %w", d.Bridge, err)
		}
	}
	return nil
}

// ensureTap makes the tap match: MAC, MTU, master, up.
func (n *Network) ensureTap(ctx context.Context, name string, mac net.HardwareAddr, d DCNetwork) error {
	l, err := n.cfg.Links.Get(ctx, name)
	switch {
	case errs.Is(err, errs.NotFound):
		if err := n.cfg.Links.AddTap(ctx, name); err != nil {
			return fmt.Errorf("create tap: %w", err)
		}
		l = Link{Name: name, Kind: KindTap}
	case err != nil:
		return fmt.Errorf("read tap: %w", err)
	case l.Kind != KindTap:
		return errs.New(errs.Conflict, "%s exists and is a %s, not a tap", name, l.Kind)
	}
	if !slices.Equal(l.MAC, mac) {
		if err := n.cfg.Links.SetMAC(ctx, name, mac); err != nil {
			return fmt.Errorf("set mac %s: %w", mac, err)
		}
	}
	if d.MTU != 0 && l.MTU != d.MTU {
		if err := n.cfg.Links.SetMTU(ctx, name, d.MTU); err != nil {
			return fmt.Errorf("set mtu %d: %w", d.MTU, err)
		}
	}
	if d.Bridge != "" && l.Master != d.Bridge {
		if err := n.cfg.Links.SetMaster(ctx, name, d.Bridge); err != nil {
			return fmt.Errorf("enslave to %s: %w", d.Bridge, err)
		}
	}
	if !l.Up {
		if err := n.cfg.Links.SetUp(ctx, name); err != nil {
			return fmt.Errorf("bring up: %w", err)
		}
	}
	return nil
}

// Unplug deletes the taps of these vifs. Absent taps are deleted already;
// a link of that name that is not a tap is not ours and is left (logged).
func (n *Network) Unplug(ctx context.Context, vifIDs []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errList []error
	for _, id := range vifIDs {
		delete(n.plugged, id)
		if checkTapName(id) != nil {
			continue // never made a tap of that name
		}
		if err := n.deleteTap(ctx, id); err != nil {
			errList = append(errList, fmt.Errorf("unplug %s: %w", id, err))
		}
	}
	return errors.Join(errList...)
}

func (n *Network) deleteTap(ctx context.Context, name string) error {
	l, err := n.cfg.Links.Get(ctx, name)
	if errs.Is(err, errs.NotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if l.Kind != KindTap {
		n.logger.WarnContext(ctx, "not deleting a link named like a vnic tap: it is not a tap", "link", name, "kind", l.Kind)
		return nil
	}
	if err := n.cfg.Links.Delete(ctx, name); err != nil && !errs.Is(err, errs.NotFound) {
		return err
	}
	return nil
}

// Reconcile deletes the vnic taps (vif-… taps) that are not in wanted and
// were not plugged since New: those of instances that ended while the hva
// was down. wanted is read from the managers before the call; a tap plugged
// meanwhile is kept because Plug recorded it. It returns the names deleted.
func (n *Network) Reconcile(ctx context.Context, wanted []string) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	keep := map[string]bool{}
	for _, id := range wanted {
		keep[id] = true
	}
	links, err := n.cfg.Links.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var removed []string
	var errList []error
	for _, l := range links {
		if l.Kind != KindTap || !strings.HasPrefix(l.Name, TapPrefix) || keep[l.Name] || n.plugged[l.Name] {
			continue
		}
		if err := n.cfg.Links.Delete(ctx, l.Name); err != nil && !errs.Is(err, errs.NotFound) {
			errList = append(errList, fmt.Errorf("delete stale tap %s: %w", l.Name, err))
			continue
		}
		n.logger.InfoContext(ctx, "deleted a tap no local instance owns", "tap", l.Name)
		removed = append(removed, l.Name)
	}
	slices.SortFunc(removed, cmp.Compare)
	return removed, errors.Join(errList...)
}

// ReconcileFrom is Reconcile with the wanted vifs read by wanted, which is
// retried (waiting retry, doubling up to a minute) until it answers or ctx
// ends: at start-up the managers may not answer yet.
func (n *Network) ReconcileFrom(ctx context.Context, wanted func(context.Context) ([]string, error), retry time.Duration) ([]string, error) {
	retry = max(retry, 10*time.Millisecond)
	for {
		ids, err := wanted(ctx)
		if err == nil {
			return n.Reconcile(ctx, ids)
		}
		n.logger.InfoContext(ctx, "cannot read the host's vnics yet; tap reconcile waits", "error", err, "retry_in", retry)
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("reconcile taps: %w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
		retry = min(2*retry, time.Minute)
	}
}
