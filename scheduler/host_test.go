package scheduler

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestHostSchedulers(t *testing.T) {
	offline := testHost("hn-off", 100, 100000)
	offline.Online = false
	disabled := testHost("hn-dis", 100, 100000)
	disabled.SchedulingEnabled = false
	arm := testHost("hn-arm", 100, 100000)
	arm.Arch = "arm64"
	lxc := testHost("hn-lxc", 100, 100000)
	lxc.Hypervisor = "lxc"
	full := testHost("hn-full", 4, 4096)
	full.UsedCPU, full.UsedMemoryMB = 4, 4096
	small := testHost("hn-small", 2, 1024)
	bigMem := testHost("hn-bigmem", 4, 16384)
	bigCPU := testHost("hn-bigcpu", 32, 8192)
	bigMem2 := testHost("hn-bigmem2", 4, 16384)
	noDisk := testHost("hn-nodisk", 64, 65536)
	noDisk.OfferingDiskMB = 1

	all := []Host{offline, disabled, arm, lxc, full, small, bigMem, bigCPU, bigMem2}
	req := testReq("i-1", 1, 512, nil)
	big := testReq("i-big", 8, 512, nil)
	huge := testReq("i-huge", 1000, 1, nil)
	withDisk := testReq("i-disk", 1, 512, nil)
	withDisk.Volumes = []VolumeRequest{{ID: "vol-1", SizeBytes: 10 << 20, Local: true}}
	evac := testReq("i-evac", 1, 512, nil)
	evac.CurrentHostID = "hn-full"

	noHost := "Unable to find a suitable host node for x86_64 kvm"
	tests := []struct {
		name    string
		sched   HostScheduler
		over    bool // call ScheduleOverCommit
		hosts   []Host
		req     Request
		want    string
		wantErr ErrorKind
		msg     string
	}{
		// FindFirst: spec §9 quirk fixed: offline, disabled, wrong arch and
		// full hosts are passed over.
		{"FindFirst skips offline, disabled, arch, hypervisor, full", FindFirst{}, false, all, req, "hn-small", 0, ""},
		{"FindFirst skips host too small", FindFirst{}, false, all, big, "hn-bigcpu", 0, ""},
		{"FindFirst no host", FindFirst{}, false, []Host{offline, full}, req, "", KindHostNode, noHost},
		{"FindFirst empty", FindFirst{}, false, nil, req, "", KindHostNode, noHost},

		{"LeastUsage memory first", LeastUsage{}, false, all, req, "hn-bigmem", 0, ""},
		{"LeastUsage tie keeps record order", LeastUsage{}, false, []Host{small, bigMem2, bigMem}, req, "hn-bigmem2", 0, ""},
		{"LeastUsage cpu priority", LeastUsage{SortPriority: SortCPU}, false, all, req, "hn-bigcpu", 0, ""},
		{"LeastUsage first that fits", LeastUsage{}, false, all, big, "hn-bigcpu", 0, ""},
		{"LeastUsage arch mismatch only", LeastUsage{}, false, []Host{arm, lxc, offline, disabled}, req, "", KindHostNode, noHost},
		{"LeastUsage no fit", LeastUsage{}, false, all, huge, "", KindHostNode, noHost},
		{"LeastUsage empty", LeastUsage{}, false, nil, req, "", KindHostNode, noHost},
		{"LeastUsage local disk must fit", LeastUsage{}, false, []Host{noDisk, small}, withDisk, "hn-small", 0, ""},
		{"LeastUsage over-commit ignores capacity", LeastUsage{}, true, []Host{full}, huge, "hn-full", 0, ""},
		{"LeastUsage over-commit keeps the order", LeastUsage{}, true, []Host{full, small}, huge, "hn-small", 0, ""},
		{"LeastUsage over-commit still needs a candidate", LeastUsage{}, true, []Host{offline, arm}, huge, "", KindHostNode, noHost},

		{"ExcludeSame skips current host", ExcludeSame{}, false, []Host{offline, full, small}, evac, "hn-small", 0, ""},
		{"ExcludeSame only current host", ExcludeSame{}, false, []Host{full}, evac, "", KindHostNode, noHost},

		{"SpecifyNode host_node_id", SpecifyNode{}, false, all, testReq("i", 1, 1, map[string]any{"host_node_id": "hn-small"}), "hn-small", 0, ""},
		{"SpecifyNode host_id wins", SpecifyNode{}, false, all, testReq("i", 1, 1, map[string]any{"host_id": "hn-bigcpu", "host_node_id": "hn-small"}), "hn-bigcpu", 0, ""},
		{"SpecifyNode host_pool_id", SpecifyNode{}, false, all, testReq("i", 1, 1, map[string]any{"host_pool_id": "hn-bigmem"}), "hn-bigmem", 0, ""},
		{"SpecifyNode missing", SpecifyNode{}, false, all, req, "", KindHostNode, ""},
		{"SpecifyNode unknown", SpecifyNode{}, false, all, testReq("i", 1, 1, map[string]any{"host_node_id": "hn-nope"}), "", KindHostNode, "Unknown host node: hn-nope"},
		{"SpecifyNode offline", SpecifyNode{}, false, all, testReq("i", 1, 1, map[string]any{"host_node_id": "hn-off"}), "", KindHostNode, ""},
		{"SpecifyNode full", SpecifyNode{}, false, all, testReq("i", 1, 1, map[string]any{"host_node_id": "hn-full"}), "", KindHostNode, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &View{Hosts: tt.hosts}
			var h *Host
			var err error
			if tt.over {
				h, err = tt.sched.(OverCommitScheduler).ScheduleOverCommit(v, &tt.req)
			} else {
				h, err = tt.sched.ScheduleHost(v, &tt.req)
			}
			if checkErr(t, err, tt.wantErr, tt.msg) && h.ID != tt.want {
				t.Errorf("host = %s, want %s", h.ID, tt.want)
			}
		})
	}
}

// pipedSpecConfig is the configuration of the original's piped_rules_spec.rb.
const pipedSpecConfig = `{"scheduler": "PipedRules", "rules": [
	{"rule": "RequestParamToGroup", "key": "host_node_group", "default": "hng-shhost",
	 "pairs": {"local1": "hng-local1", "local2": "hng-local2"}},
	{"rule": "LeastUsageBy", "key": "memory_size"}]}`

func pipedSpecSchedulers(t *testing.T) *Schedulers {
	t.Helper()
	c, err := ParseHostConfig([]byte(pipedSpecConfig))
	if err != nil {
		t.Fatal(err)
	}
	hs, err := c.Build()
	if err != nil {
		t.Fatal(err)
	}
	return &Schedulers{Host: hs}
}

// TestPipedRulesSpec covers piped_rules_spec.rb: instances are placed one
// after another through Plan, as the spec's scheduler job runs one after
// another against the database.
func TestPipedRulesSpec(t *testing.T) {
	groups := map[string]bool{"hng-shhost": true, "hng-local1": true, "hng-local2": true}
	tests := []struct {
		name  string
		hosts []Host
		reqs  []Request
		want  []string
	}{
		{
			name:  "one group, one host, one instance",
			hosts: []Host{testHost("hn-kvm1", 8, 8192, "hng-local1")},
			reqs:  []Request{testReq("i-1", 1, 1024, map[string]any{"host_node_group": "local1"})},
			want:  []string{"hn-kvm1"},
		},
		{
			name:  "one group with two hosts, two instances one after another",
			hosts: []Host{testHost("hn-kvm1", 8, 8192, "hng-local1"), testHost("hn-kvm2", 8, 8192, "hng-local1")},
			reqs: []Request{
				testReq("i-1", 1, 1024, map[string]any{"host_node_group": "local1"}),
				testReq("i-2", 1, 1024, map[string]any{"host_node_group": "local1"}),
			},
			want: []string{"hn-kvm1", "hn-kvm2"},
		},
		{
			name:  "two groups, one host each",
			hosts: []Host{testHost("hn-kvm1", 8, 8192, "hng-local1"), testHost("hn-kvm2", 8, 8192, "hng-local2")},
			reqs: []Request{
				testReq("i-1", 1, 1024, map[string]any{"host_node_group": "local1"}),
				testReq("i-2", 1, 1024, map[string]any{"host_node_group": "local2"}),
			},
			want: []string{"hn-kvm1", "hn-kvm2"},
		},
		{
			name:  "no host_node_group param uses the default group",
			hosts: []Host{testHost("hn-kvm1", 8, 8192, "hng-local1"), testHost("hn-shared", 8, 8192, "hng-shhost")},
			reqs:  []Request{testReq("i-1", 1, 1024, nil), testReq("i-2", 1, 1024, map[string]any{"host_node_group": "other"})},
			want:  []string{"hn-shared", "hn-shared"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := pipedSpecSchedulers(t)
			v := &View{Hosts: tt.hosts, Groups: groups}
			p := s.Place(v, tt.reqs)
			for i, pl := range p.Placements {
				if pl.Err != nil {
					t.Fatalf("request %d: %v", i, pl.Err)
				}
				if pl.HostID != tt.want[i] {
					t.Errorf("request %d on %s, want %s", i, pl.HostID, tt.want[i])
				}
			}
		})
	}
}

func TestPipedRules(t *testing.T) {
	groups := map[string]bool{"hng-a": true, "hng-empty": true}
	h1 := testHost("hn-1", 8, 8192, "hng-a")
	h1.UsedCPU, h1.UsedMemoryMB = 4, 1024
	h1.Instances = []InstanceUsage{{AccountID: "a-x", CPU: 4, MemoryMB: 1024, QuotaWeight: 3}}
	h2 := testHost("hn-2", 8, 8192, "hng-a")
	h2.UsedCPU, h2.UsedMemoryMB = 2, 4096
	h2.Instances = []InstanceUsage{{AccountID: "a-y", CPU: 1, MemoryMB: 2048, QuotaWeight: 1}, {AccountID: "a-y", CPU: 1, MemoryMB: 2048, QuotaWeight: 1}}
	h3 := testHost("hn-3", 8, 8192, "hng-a")
	h3.UsedCPU, h3.UsedMemoryMB = 2, 2048
	h3.Instances = []InstanceUsage{{AccountID: "a-x", CPU: 2, MemoryMB: 2048, QuotaWeight: 0.5}}
	arm := testHost("hn-arm", 64, 65536, "hng-a")
	arm.Arch = "arm64"
	full := testHost("hn-full", 1, 512, "hng-a")

	rtg := HostRequestParamToGroup{Key: "host_node_group", Default: "hng-a", Pairs: map[string]string{"e": "hng-empty", "u": "hng-unknown"}}
	noDefault := HostRequestParamToGroup{Key: "host_node_group"}
	req := testReq("i-1", 1, 1024, nil)
	req.AccountID = "a-x"
	withParam := func(v string) Request {
		r := req
		r.RequestParams = map[string]any{"host_node_group": v}
		return r
	}
	noSuitable := "No suitable host node found after piping through all rules."
	tests := []struct {
		name    string
		rules   []HostRule
		max     int
		hosts   []Host
		req     Request
		want    string
		wantErr ErrorKind
		msg     string
	}{
		{"no rules: first fitting host", nil, 0, []Host{full, h1, h2}, req, "hn-1", 0, ""},
		{"LeastUsageBy cpu_cores", []HostRule{LeastUsageBy{}}, 0, []Host{h1, h2, h3}, req, "hn-2", 0, ""},
		{"LeastUsageBy memory_size", []HostRule{LeastUsageBy{Key: UsageMemorySize}}, 0, []Host{h2, h1, h3}, req, "hn-1", 0, ""},
		{"LeastUsageBy quota_weight", []HostRule{LeastUsageBy{Key: UsageQuotaWeight}}, 0, []Host{h1, h2, h3}, req, "hn-3", 0, ""},
		{"LeastUsageBy stable on ties", []HostRule{LeastUsageBy{}}, 0, []Host{h3, h2}, req, "hn-3", 0, ""},
		{"ScatterBy account", []HostRule{ScatterBy{}}, 0, []Host{h1, h3, h2}, req, "hn-2", 0, ""},
		{"ScatterBy then reorder keeps later rule last", []HostRule{ScatterBy{}, LeastUsageBy{Key: UsageMemorySize}}, 0, []Host{h1, h2, h3}, req, "hn-1", 0, ""},
		// spec §9 quirk fixed: PipedRules checks arch.
		{"arch is checked", nil, 0, []Host{arm, h1}, req, "hn-1", 0, ""},
		{"arch only", nil, 0, []Host{arm}, req, "", KindHostNode, noSuitable},
		// Capacity is checked before the max_results limit, so a full host
		// at the front does not hide a free one.
		{"capacity before max_results", nil, 1, []Host{full, h1}, req, "hn-1", 0, ""},
		{"max_results bounds reorder", []HostRule{LeastUsageBy{}}, 1, []Host{h1, h2}, req, "hn-1", 0, ""},
		{"RequestParamToGroup default", []HostRule{rtg}, 0, []Host{h1}, req, "hn-1", 0, ""},
		{"RequestParamToGroup empty group", []HostRule{rtg}, 0, []Host{h1}, withParam("e"), "", KindHostNode, noSuitable},
		{"RequestParamToGroup unknown group", []HostRule{rtg}, 0, []Host{h1}, withParam("u"), "", KindHostNode, "Unknown host node group: hng-unknown"},
		{"RequestParamToGroup no default", []HostRule{noDefault}, 0, []Host{h1}, req, "", KindHostNode, "No default host node group set"},
		{"nothing fits", nil, 0, []Host{full}, req, "", KindHostNode, noSuitable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hosts := (&View{Hosts: tt.hosts}).Clone().Hosts
			v := &View{Hosts: hosts, Groups: groups}
			h, err := (&PipedRules{MaxResults: tt.max, Rules: tt.rules}).ScheduleHost(v, &tt.req)
			if checkErr(t, err, tt.wantErr, tt.msg) && h.ID != tt.want {
				t.Errorf("host = %s, want %s", h.ID, tt.want)
			}
		})
	}
}

func TestHostConfig(t *testing.T) {
	tests := []struct {
		json    string
		want    HostScheduler
		wantErr string
	}{
		{`{"scheduler":"FindFirst"}`, FindFirst{}, ""},
		{`{"scheduler":"LeastUsage"}`, LeastUsage{}, ""},
		{`{"scheduler":"LeastUsage","sort_priority":"cpu"}`, LeastUsage{SortPriority: SortCPU}, ""},
		{`{"scheduler":"LeastUsage","sort_priority":"disk"}`, nil, "sort_priority"},
		{`{"scheduler":"ExcludeSame"}`, ExcludeSame{}, ""},
		{`{"scheduler":"SpecifyNode"}`, SpecifyNode{}, ""},
		{`{"scheduler":"PipedRules","max_results":5,"rules":[{"rule":"ScatterBy","column":"account_id"},{"rule":"LeastUsageBy","key":"quota_weight"}]}`,
			&PipedRules{MaxResults: 5, Rules: []HostRule{ScatterBy{}, LeastUsageBy{Key: UsageQuotaWeight}}}, ""},
		{`{"scheduler":"PipedRules","rules":[{"rule":"Nope"}]}`, nil, "unknown PipedRules rule"},
		{`{"scheduler":"PipedRules","rules":[{"rule":"LeastUsageBy","key":"disk"}]}`, nil, "unknown key"},
		{`{"scheduler":"PipedRules","rules":[{"rule":"ScatterBy","column":"user_id"}]}`, nil, "unsupported column"},
		{`{"scheduler":"PipedRules","rules":[{"rule":"RequestParamToGroup"}]}`, nil, "key is required"},
		{`{"scheduler":"Random"}`, nil, "unknown host node scheduler"},
		{`{"scheduler":"LeastUsage","sort_prio":"cpu"}`, nil, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			c, err := ParseHostConfig([]byte(tt.json))
			var got HostScheduler
			if err == nil {
				got, err = c.Build()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("built %#v, want %#v", got, tt.want)
			}
		})
	}
}

// leastUsageReference is the original's algorithm, literally: candidates
// sorted by available memory (or cores) descending, the first that fits.
func leastUsageReference(v *View, r *Request, byCPU, checkFit bool) *Host {
	var cands []*Host
	for i := range v.Hosts {
		if compatible(&v.Hosts[i], r) {
			cands = append(cands, &v.Hosts[i])
		}
	}
	key := func(h *Host) int64 {
		if byCPU {
			return h.AvailableCPU()
		}
		return h.AvailableMemoryMB()
	}
	sort.SliceStable(cands, func(i, j int) bool { return key(cands[i]) > key(cands[j]) })
	for _, h := range cands {
		if !checkFit || h.fits(needOf(r)) {
			return h
		}
	}
	return nil
}

// TestLeastUsageMatchesReference compares the two-pass scan with the sort of
// the original on random clusters, including ties and mixed hypervisors.
func TestLeastUsageMatchesReference(t *testing.T) {
	rnd := newRand()
	for round := range 2000 {
		v := &View{}
		for i := range 1 + rnd.IntN(30) {
			h := testHost(fmt.Sprintf("hn-%d", i), 8, 64)
			h.UsedCPU, h.UsedMemoryMB = rnd.Int64N(10), rnd.Int64N(70)
			h.Online, h.SchedulingEnabled = rnd.IntN(8) != 0, rnd.IntN(8) != 0
			if rnd.IntN(4) == 0 {
				h.Hypervisor = "lxc"
			}
			if rnd.IntN(6) == 0 {
				h.Arch = "arm64"
			}
			v.Hosts = append(v.Hosts, h)
		}
		r := testReq("i", rnd.Int64N(4), rnd.Int64N(40), nil)
		for _, byCPU := range []bool{false, true} {
			for _, checkFit := range []bool{false, true} {
				s := LeastUsage{}
				if byCPU {
					s.SortPriority = SortCPU
				}
				got, want := s.best(v, &r, checkFit), leastUsageReference(v, &r, byCPU, checkFit)
				if got != want {
					t.Fatalf("round %d cpu=%v fit=%v: got %v, want %v", round, byCPU, checkFit, hostID(got), hostID(want))
				}
			}
		}
	}
}

func hostID(h *Host) string {
	if h == nil {
		return "<nil>"
	}
	return h.ID
}
