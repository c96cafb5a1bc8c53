package format

import (
	"testing"
	"time"
)

// benchDoc is a 20-key instance document of the shape the API serves most.
func benchDoc() *Map {
	t := time.Date(2013, 5, 15, 6, 21, 36, 0, time.UTC)
	return m(
		"id", "i-abcd1234", "account_id", "a-shpoolxx", "host_node", "hn-demo1",
		"cpu_cores", 1, "memory_size", 256, "arch", "x86_64", "image_id", "wmi-centos1d",
		"created_at", t, "updated_at", t, "terminated_at", nil,
		"state", "running", "status", "online",
		"ssh_key_pair", m("uuid", "ssh-demo1234", "display_name", ""),
		"volume", []any{m("vol_id", "vol-abcd1234", "state", "attached")},
		"vif", []any{m("vif_id", "vif-abcd1234", "network_id", "nw-demo1", "index", 0,
			"ipv4", m("address", "10.0.2.100", "nat_address", nil), "security_groups", []string{"sg-abcd1234"})},
		"hostname", "abcd1234", "ha_enabled", 0, "hypervisor", "kvm",
		"display_name", "web server: front #1", "load", 0.75,
	)
}

func BenchmarkJSON(b *testing.B) {
	d := benchDoc()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := JSON(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkYAML(b *testing.B) {
	d := benchDoc()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := YAML(d); err != nil {
			b.Fatal(err)
		}
	}
}
