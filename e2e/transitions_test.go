package e2e

import (
	"net/url"
	"testing"
)

// TestIllegalTransitionsEndToEnd walks an instance through running, halted,
// stopped and terminated on a real manager and hvas, and in each state
// makes every action the state forbids: each is answered 400/125 and
// changes nothing (state, host, jobs: none is enqueued).
func TestIllegalTransitionsEndToEnd(t *testing.T) {
	c := newInProcess(t, hvaOpts{node: ip1, cores: 8}, hvaOpts{node: ip2, cores: 8})
	c.seed()
	id := c.runningOn(hn1, 1)
	p := "/instances/" + id
	refuse := func(actions ...string) {
		t.Helper()
		c.waitJobsIdle()
		jobs := len(c.jobs())
		host := c.instance(id)["host_node"]
		for _, a := range actions {
			method, path := "PUT", p+"/"+a+".json"
			if a == "delete" {
				method, path = "DELETE", p+".json"
			}
			c.rejects(method, path, id, 400, "125")
		}
		if st := c.instance(id)["state"]; st != "running" {
			// move needs a destination to get past its parameter checks.
			_, err := c.call("PUT", p+"/move.json", url.Values{"host_node_id": {hn2}}, account)
			if ae, ok := err.(*apiError); !ok || ae.status != 400 || ae.code != "125" {
				t.Fatalf("move in state %v = %v, want 400/125", st, err)
			}
		}
		if n := len(c.jobs()); n != jobs {
			t.Fatalf("refused actions enqueued %d jobs", n-jobs)
		}
		if h := c.instance(id)["host_node"]; h != host {
			t.Fatalf("refused actions moved the instance %v -> %v", host, h)
		}
	}

	refuse("poweron", "start", "backup") // running
	c.must("PUT", p+"/poweroff.json", url.Values{}, account)
	c.waitState(id, "halted")
	refuse("reboot", "stop", "start", "poweroff")
	c.must("PUT", p+"/poweron.json", url.Values{}, account)
	c.waitState(id, "running")
	c.must("PUT", p+"/stop.json", url.Values{}, account)
	c.waitState(id, "stopped")
	refuse("reboot", "stop", "poweroff", "poweron", "backup")
	c.must("DELETE", p+".json", nil, account)
	c.waitState(id, "terminated")
	refuse("reboot", "stop", "start", "poweroff", "poweron", "backup", "delete")
}
