package hypervisor

import (
	"context"
	"net"
	"strconv"
)

// MigrationTarget is where an incoming domain waits for its migration
// stream (QEMU's -incoming tcp:<host>:<port>).
type MigrationTarget struct {
	Host string `json:"host"`
	Port int    `json:"port"`
}

// Addr is host:port.
func (t MigrationTarget) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// Migrator is implemented by drivers that can live-migrate domains between
// hosts (spec/agents.md §2.4); the handlers refuse a migration on a driver
// without it. Disks are sent with the memory: a local volume's file must
// exist on the destination (the local store prepares it) before Incoming.
//
//   - Incoming defines the domain from spec on this host (the capacity
//     rules of Define apply) and starts it waiting for the source: the
//     domain is Paused until a MigrateOut to the returned target completes,
//     then Running. Called again for a domain still waiting it returns the
//     same target; a domain that runs here already is
//     errs.InvalidInstanceState. Stop or Undefine of the waiting domain
//     ends the wait (a later MigrateOut to it fails).
//   - MigrateOut sends a running domain to target and returns once the
//     destination runs it; the domain here is then shut off, still defined.
//     A domain that does not run is errs.InvalidInstanceState; a target
//     that does not take the domain is an error, and the domain keeps
//     running here.
type Migrator interface {
	Incoming(ctx context.Context, spec Spec) (MigrationTarget, error)
	MigrateOut(ctx context.Context, id string, target MigrationTarget) error
}
