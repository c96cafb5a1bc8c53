// Package hva will hold the hypervisor agent: handlers for the hva-handle and
// local-store-handle verbs over hypervisor, host-network and packet-filter
// drivers (DESIGN.md "Node agents"). It arrives with the instances issue.
package hva
