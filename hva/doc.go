// Package hva is the hypervisor agent, one per virtualisation host
// (DESIGN.md "Node agents"; spec/agents.md §2.2, §2.3, §5). The code lives
// in sub-packages:
//
//   - hypervisor: the Hypervisor driver interface (define, start, stop,
//     reboot, ACPI shutdown, undefine, get, list, capacity) and the
//     optional Migrator and DiskAttacher (hot-plug of volumes), with
//     hypervisor/libvirt (QEMU/KVM domains over libvirtd's socket),
//     hypervisor/dummy (an in-memory host) and hypervisor/hypervisortest (the
//     conformance suite every driver passes);
//   - localstore: an instance's files on the host (boot volume as a qcow2
//     overlay on the cached image, blank volumes, the metadata drive);
//   - collector: the client of the managers' hva-collector and job-collector
//     RPC endpoints, which finds the managers through serf and retries until
//     one accepts; collector/collectortest is an in-memory stand-in manager;
//   - handlers: the job verbs on instances of hva-handle.<node> (boot,
//     SAN boot from shared volumes, attach/detach of iSCSI volumes through
//     QEMU's own initiator, power, terminate) and local-store-handle.<node>,
//     and the instance monitor;
//   - cmd/hva: the daemon (config, wiring on common/agent, signals).
package hva
