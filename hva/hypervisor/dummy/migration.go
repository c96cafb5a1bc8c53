package dummy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/hva/hypervisor"
)

// Live migration between dummies: the destination's waiting domain listens
// on a TCP port, and the source sends it the domain (its spec, standing for
// memory and disks) over a real connection. Two dummies, in one process or
// in two hva processes, thus migrate the way QEMU does: the source cannot
// succeed unless the destination took the domain, and a destination that
// gave up (its domain stopped) refuses the connection.

// streamTimeout bounds one transfer, so a source that connects and then
// hangs does not hold the destination forever.
const streamTimeout = 30 * time.Second

var _ hypervisor.Migrator = (*Driver)(nil)

// waiter is a domain waiting for its migration stream.
type waiter struct {
	id     string
	l      net.Listener
	target hypervisor.MigrationTarget
}

// migrationMsg is what the source sends.
type migrationMsg struct {
	ID       string `json:"id"`
	CPUCores int    `json:"cpu_cores"`
	MemoryMB int64  `json:"memory_mb"`
}

// endIncomingLocked stops the wait of domain id, if it waits.
func (d *Driver) endIncomingLocked(id string) {
	if w := d.incoming[id]; w != nil {
		_ = w.l.Close()
		delete(d.incoming, id)
	}
}

// Incoming implements hypervisor.Migrator.
func (d *Driver) Incoming(ctx context.Context, spec hypervisor.Spec) (hypervisor.MigrationTarget, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.begin(ctx, Call{Op: OpIncoming, ID: spec.ID}); err != nil {
		return hypervisor.MigrationTarget{}, err
	}
	if w := d.incoming[spec.ID]; w != nil {
		return w.target, nil
	}
	if dom := d.domains[spec.ID]; dom != nil && dom.state.Alive() {
		return hypervisor.MigrationTarget{}, hypervisor.WrongState(spec.ID, dom.state, "receive a migration into")
	}
	if err := spec.Validate(); err != nil {
		return hypervisor.MigrationTarget{}, err
	}
	cores, mem := d.usedLocked(spec.ID)
	if cores+spec.CPUCores > d.cfg.CPUCores || mem+spec.MemoryMB > d.cfg.MemoryMB {
		return hypervisor.MigrationTarget{}, errs.New(errs.OutOfHostCapacity,
			"incoming domain %s needs %d cores and %d MiB; the host has %d of %d cores and %d of %d MiB free",
			spec.ID, spec.CPUCores, spec.MemoryMB, d.cfg.CPUCores-cores, d.cfg.CPUCores, d.cfg.MemoryMB-mem, d.cfg.MemoryMB)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(d.cfg.MigrationHost, "0"))
	if err != nil {
		return hypervisor.MigrationTarget{}, fmt.Errorf("listen for the migration of domain %s: %w", spec.ID, err)
	}
	w := &waiter{id: spec.ID, l: l,
		target: hypervisor.MigrationTarget{Host: d.cfg.MigrationHost, Port: l.Addr().(*net.TCPAddr).Port}}
	spec.Disks = append([]hypervisor.Disk(nil), spec.Disks...)
	spec.NICs = append([]hypervisor.NIC(nil), spec.NICs...)
	dom := d.domains[spec.ID]
	if dom == nil {
		dom = &domain{spec: spec, state: hypervisor.Shutoff, changed: make(chan struct{})}
		d.domains[spec.ID] = dom
	}
	dom.spec = spec
	dom.assignTargets()
	dom.setState(hypervisor.Paused)
	d.incoming[spec.ID] = w
	go d.serveIncoming(w)
	return w.target, nil
}

// serveIncoming takes connections until one delivers the domain or the
// wait ends.
func (d *Driver) serveIncoming(w *waiter) {
	for {
		conn, err := w.l.Accept()
		if err != nil {
			return // the wait ended
		}
		done := d.receive(w, conn)
		_ = conn.Close()
		if done {
			return
		}
	}
}

// receive reads one migration stream and answers "ok" once the domain runs
// here, or the reason it does not (written after the driver's lock is let
// go: a slow peer must not hold the driver).
func (d *Driver) receive(w *waiter, conn net.Conn) bool {
	_ = conn.SetDeadline(time.Now().Add(streamTimeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return false
	}
	answer, done := d.take(w, line)
	_, _ = conn.Write([]byte(answer + "\n"))
	return done
}

// take lets the waiting domain run if line is its stream; it returns the
// answer for the source and whether the wait is over.
func (d *Driver) take(w *waiter, line string) (string, bool) {
	var msg migrationMsg
	if err := json.Unmarshal([]byte(line), &msg); err != nil {
		return "error: bad migration stream", false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dom := d.domains[w.id]
	switch {
	case d.incoming[w.id] != w || dom == nil || dom.state != hypervisor.Paused:
		return "error: domain " + w.id + " no longer waits for a migration", true
	case msg.ID != w.id || msg.CPUCores != dom.spec.CPUCores || msg.MemoryMB != dom.spec.MemoryMB:
		return fmt.Sprintf("error: stream of domain %s (%d cores, %d MiB) does not fit domain %s (%d cores, %d MiB)",
			msg.ID, msg.CPUCores, msg.MemoryMB, w.id, dom.spec.CPUCores, dom.spec.MemoryMB), false
	}
	d.endIncomingLocked(w.id)
	dom.setState(hypervisor.Running)
	return "ok", true
}

// MigrateOut implements hypervisor.Migrator.
func (d *Driver) MigrateOut(ctx context.Context, id string, target hypervisor.MigrationTarget) error {
	d.mu.Lock()
	dom, err := d.lookupLocked(ctx, Call{Op: OpMigrate, ID: id})
	if err != nil {
		d.mu.Unlock()
		return err
	}
	if dom.state != hypervisor.Running {
		d.mu.Unlock()
		return hypervisor.WrongState(id, dom.state, "migrate")
	}
	msg := migrationMsg{ID: id, CPUCores: dom.spec.CPUCores, MemoryMB: dom.spec.MemoryMB}
	d.mu.Unlock()

	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", target.Addr())
	if err != nil {
		return errs.Wrap(errs.Unavailable, err, "migrate domain "+id+" to "+target.Addr())
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	_ = conn.SetDeadline(time.Now().Add(streamTimeout))
	raw, _ := json.Marshal(msg)
	if _, err := conn.Write(append(raw, '\n')); err != nil {
		return errs.Wrap(errs.Unavailable, err, "send domain "+id+" to "+target.Addr())
	}
	answer, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		if cerr := hypervisor.CtxErr(ctx, "migrate domain "+id); cerr != nil {
			return cerr
		}
		return errs.Wrap(errs.Unavailable, err, "migrate domain "+id+": no answer from "+target.Addr())
	}
	if answer = strings.TrimSpace(answer); answer != "ok" {
		return errs.New(errs.InvalidInstanceState, "migrate domain %s: the destination refused it: %s", id,
			strings.TrimPrefix(answer, "error: "))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.domains[id] == dom {
		dom.setState(hypervisor.Shutoff)
	}
	return nil
}
