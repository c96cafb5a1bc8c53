// Package sta will hold the storage agent: volume backing stores, iSCSI
// export through tgt, snapshots and backups (DESIGN.md "Node agents"). It
// arrives with the volumes issue.
package sta
