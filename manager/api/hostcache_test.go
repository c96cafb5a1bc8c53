package api

import (
	"testing"

	"github.com/vdc-project/vdc/proto"
)

// The create's capacity check keeps host reads between requests; every
// change to a host's usage, a node's state or a host node must show in the
// next create's answer.
func TestCapacityCheckFollowsChanges(t *testing.T) {
	f := newInstEnv(t)
	f.create() // the hosts are read (and kept) once
	full := func(host string, cores int) {
		f.seed(proto.KindHostUsage, host, proto.HostUsage{ID: host, CPUCores: cores, MemorySize: 512, Instances: []string{"i-filler"}})
	}
	// Online hosts: hn-demo1 and hn-demo3, 8 cores each; one already used.
	full("hn-demo1", 8)
	full("hn-demo3", 7)
	f.create() // the last core
	full("hn-demo3", 8)
	f.rejects(400, "120", req{method: "POST", path: "/instances.json", form: f.form()})

	full("hn-demo1", 4) // usage given back
	f.create("cpu_cores", "4")
	full("hn-demo1", 8)
	f.rejects(400, "120", req{method: "POST", path: "/instances.json", form: f.form()})

	// The offline host comes online: its cores count.
	f.seed(proto.KindNodeState, "hva.demo2", proto.NodeState{NodeID: "hva.demo2", State: "online"})
	f.create("cpu_cores", "8")
	// And goes offline again.
	f.seed(proto.KindNodeState, "hva.demo2", proto.NodeState{NodeID: "hva.demo2", State: "offline"})
	f.rejects(400, "120", req{method: "POST", path: "/instances.json", form: f.form()})
}
