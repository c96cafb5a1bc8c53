package libvirt

import "testing"

// DropConnection closes the driver's connection under it, as a libvirtd
// restart does.
func DropConnection(t *testing.T, d *Driver) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		t.Fatal("no connection to drop")
	}
	if err := d.conn.Disconnect(); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
}
