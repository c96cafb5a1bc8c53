// Package stabench measures the storage agent on this machine (root, tgtd
// running: the real tier): volume create+export and delete operations per
// second, and backup and restore throughput compared with a plain cp of
// the same volume file. The sta's handlers run in-process over a fake
// manager, so the figures are the sta's own work (backing store, tgtadm,
// checksums, uploads), not the managers'.
//
//	sudo VDC_REAL=1 go test -run '^$' -bench . -benchtime 20x ./bench/stabench/
//
// Each benchmark logs the machine (cores, CPU model, Go version) it ran on.
package stabench
