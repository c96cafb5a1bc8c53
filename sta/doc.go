// Package sta is the storage agent, one per storage server (DESIGN.md
// "Node agents"; spec/agents.md §2.6, §6). The code lives in sub-packages:
//
//   - backing: the Store interface for volume bytes, with backing/file (raw
//     sparse files, qcow2 images, reflink copies), backing/lvm (LVM through
//     its commands; fake-tested only here, no device-mapper), backing/memory
//     and backing/backingtest (the conformance suite every store passes);
//   - target: the Target interface that exports volumes, with target/tgt
//     (tgtd through tgtadm), target/memory and target/targettest;
//   - backup: backup storages (local directories, HTTP/WebDAV), container
//     formats and md5 checksums;
//   - handlers: the sta-handle.<node> job verbs and the re-export of the
//     node's volumes;
//   - collector: the client of the managers' sta-collector (the wire
//     contract is proto/collector.go); collector/collectortest is an
//     in-memory stand-in manager;
//   - command: the runner the drivers use for tgtadm, qemu-img and LVM;
//   - sparse: copies that keep holes;
//   - cmd/sta: the daemon (config, wiring on common/agent, signals).
package sta
