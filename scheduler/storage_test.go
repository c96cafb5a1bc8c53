package scheduler

import "testing"

func TestStorageSchedulers(t *testing.T) {
	const gib = 1 << 30
	nodes := []StorageNode{
		{ID: "sn-off", Online: false, FreeBytes: 100 * gib},
		{ID: "sn-small", Online: true, FreeBytes: 5 * gib},
		{ID: "sn-mid", Online: true, FreeBytes: 20 * gib},
		{ID: "sn-big", Online: true, FreeBytes: 50 * gib},
		{ID: "sn-big2", Online: true, FreeBytes: 50 * gib},
	}
	vol := func(size int64, snap string) VolumeRequest {
		return VolumeRequest{ID: "vol-1", SizeBytes: size, SnapshotStorageNodeID: snap}
	}
	tests := []struct {
		name    string
		sched   StorageScheduler
		vol     VolumeRequest
		want    string
		wantErr ErrorKind
	}{
		// FindFirst: offline nodes and nodes without room are passed over
		// (the original took the first row).
		{"FindFirst first online with room", StorageFindFirst{}, vol(1*gib, ""), "sn-small", 0},
		{"FindFirst skips full", StorageFindFirst{}, vol(10*gib, ""), "sn-mid", 0},
		{"FindFirst snapshot node", StorageFindFirst{}, vol(1*gib, "sn-big2"), "sn-big2", 0},
		{"FindFirst unknown snapshot node", StorageFindFirst{}, vol(1*gib, "sn-nope"), "", KindStorageNode},
		{"FindFirst nothing fits", StorageFindFirst{}, vol(60*gib, ""), "", KindStorageNode},
		{"LeastUsage largest free, offline excluded, tie to first", StorageLeastUsage{}, vol(1*gib, ""), "sn-big", 0},
		{"LeastUsage exact fit", StorageLeastUsage{}, vol(50*gib, ""), "sn-big", 0},
		{"LeastUsage ignores snapshot rule", StorageLeastUsage{}, vol(1*gib, "sn-small"), "sn-big", 0},
		{"LeastUsage nothing fits", StorageLeastUsage{}, vol(51*gib, ""), "", KindStorageNode},
		{"FindFirst exact fit", StorageFindFirst{}, vol(5*gib, ""), "sn-small", 0},
		{"FindFirst offline node not used even when it alone fits", StorageFindFirst{}, vol(80*gib, ""), "", KindStorageNode},
		{"LeastUsage offline node not used even when it alone fits", StorageLeastUsage{}, vol(80*gib, ""), "", KindStorageNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{StorageNodes: nodes}
			sn, err := tt.sched.ScheduleStorage(v, &tt.vol)
			if checkErr(t, err, tt.wantErr, "") && sn.ID != tt.want {
				t.Errorf("node = %s, want %s", sn.ID, tt.want)
			}
		})
	}
	// No nodes, and an overcommitted node (negative free space, an offering
	// shrunk below its volumes), place nothing.
	for _, sched := range []StorageScheduler{StorageFindFirst{}, StorageLeastUsage{}} {
		for _, ns := range [][]StorageNode{nil, {{ID: "sn-over", Online: true, FreeBytes: -gib}}} {
			if sn, err := sched.ScheduleStorage(&View{StorageNodes: ns}, &VolumeRequest{ID: "vol-0"}); !IsKind(err, KindStorageNode) {
				t.Errorf("%T on %v = %v, %v", sched, ns, sn, err)
			}
		}
	}
	_, err := StorageLeastUsage{}.ScheduleStorage(&View{StorageNodes: nodes}, &VolumeRequest{ID: "vol-x", SizeBytes: 100 * gib})
	checkErr(t, err, KindStorageNode, "Unable to find a suitable storage node for volume vol-x (107374182400 bytes)")
}
