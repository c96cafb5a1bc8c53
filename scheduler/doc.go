// Package scheduler will hold placement: pure functions choosing hosts,
// storage nodes, networks, IPs and MACs from a cluster view, and the daemon
// that hands plans to the leader. It arrives with the instances issue.
package scheduler
