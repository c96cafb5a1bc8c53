// Package scheduler holds placement: pure functions that choose host nodes,
// storage nodes, networks, IP addresses and MAC addresses for requests, over an
// in-memory View of the cluster (spec/agents.md §4).
//
// Nothing here does I/O or keeps global state. The scheduler daemon builds a
// View from the manager's records, runs Schedulers.Place for a batch of
// requests and hands the resulting Plan to the raft leader, which re-checks
// every placement against its current state before applying it; the view is
// therefore only a snapshot, and a placement that no longer fits is rejected
// there rather than here.
//
// Algorithms keep the names of dcmgr.conf (LeastUsage, PipedRules,
// VifsRequestParam, Incremental, …) so that configurations translate
// one-to-one, and the original's error messages. Where the original behaves
// in a way that only ever worked by accident, the Go version fixes it and the
// type's comment says so:
//
//   - FindFirst (host) takes the first online, compatible host with room, not
//     the first row; StorageFindFirst likewise skips offline and full nodes.
//   - PipedRules checks arch, and checks capacity before its max_results
//     limit rather than after it.
//   - Host capacity includes local disk, so a host that cannot hold the local
//     volumes is passed over instead of failing the instance afterwards.
//   - SpecifyNode checks capacity; SpecifyIP refuses the network's reserved
//     addresses even before Incremental has recorded them.
//   - A vif's mac_addr and ipv4_addr are honoured by every network
//     scheduler, since the API validates them for the client.
//
// Errors are *SchedulingError values whose Kind names the original's
// exception class (HostNodeSchedulingError, OutOfIpRange, …).
package scheduler
