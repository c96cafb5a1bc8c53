package api

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/proto"
)

// eventLog records what the API publishes (and still publishes it).
type eventLog struct {
	Backend
	mu  sync.Mutex
	evs []string
}

func (r *eventLog) Publish(ctx context.Context, ev proto.Event) error {
	r.mu.Lock()
	r.evs = append(r.evs, ev.Name+" "+strings.Join(ev.Args, ","))
	r.mu.Unlock()
	return r.Backend.Publish(ctx, ev)
}

// take returns the events published since the last take.
func (r *eventLog) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.evs
	r.evs = nil
	return out
}

func recordEvents(e *env) *eventLog {
	r := &eventLog{Backend: e.api.b}
	e.api.b = r
	return r
}

func wantEvents(t *testing.T, r *eventLog, what string, want ...string) {
	t.Helper()
	got := r.take()
	if !slices.Equal(got, want) {
		t.Errorf("%s: events\n  %s\nwant\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestSecurityGroupEvents: creates and updates tell the groups' hosts
// (spec §2.6): rules_updated on every update, referencer events for the
// references a rule text adds and drops, nothing for a refused change.
func TestSecurityGroupEvents(t *testing.T) {
	e := newEnv(t)
	r := recordEvents(e)
	a := e.post("/security_groups.json", nil).ok().obj()["id"].(string)
	c := e.post("/security_groups.json", nil).ok().obj()["id"].(string)
	wantEvents(t, r, "groups without rules")
	b := e.post("/security_groups.json", url.Values{"rule": {"tcp:22,22," + a + "\ntcp:23,23," + a}}).ok().obj()["id"].(string)
	wantEvents(t, r, "group naming another", proto.EventReferencerAdded(a)+" "+b)

	updated := []string{proto.EventSecurityGroupUpdated + " " + b, proto.EventRulesUpdated(b) + " "}
	e.put("/security_groups/"+b+".json", url.Values{"rule": {"tcp:22,22," + a + "\nicmp:-1,-1,ip4:0.0.0.0"}}).ok()
	wantEvents(t, r, "rule change keeping the reference", updated...)
	e.put("/security_groups/"+b+".json", url.Values{"rule": {"tcp:80,80," + c + "\ntcp:81,81," + b}}).ok()
	wantEvents(t, r, "rule change moving the reference", append(slices.Clone(updated),
		proto.EventReferencerRemoved(a)+" "+b, proto.EventReferencerAdded(c)+" "+b)...)
	e.put("/security_groups/"+b+".json", url.Values{"description": {"web"}}).ok()
	wantEvents(t, r, "description only", updated...)
	e.rejects(400, "142", req{method: "PUT", path: "/security_groups/" + b + ".json", form: url.Values{"rule": {"bogus"}}})
	wantEvents(t, r, "refused update")
}

// TestVifGroupEvents: a vif joining or leaving a group tells the group's
// hosts, the vif's host, and the hosts of groups naming the group (§2.9).
func TestVifGroupEvents(t *testing.T) {
	e := newEnv(t)
	dcn := e.dcNetwork("public")
	nw := e.network(dcn, url.Values{"dhcp_range": {"default"}})["id"].(string)
	vif, _ := e.newVif(nw)
	x := e.post("/security_groups.json", nil).ok().obj()["id"].(string)
	ref := e.post("/security_groups.json", url.Values{"rule": {"tcp:22,22," + x}}).ok().obj()["id"].(string)
	r := recordEvents(e)
	e.put("/network_vifs/"+vif+"/add_security_group.json", url.Values{"security_group_id": {x}}).ok()
	wantEvents(t, r, "add",
		proto.EventVnicJoined(x)+" "+vif, proto.EventJoinedGroup(vif)+" "+x, proto.EventReferencerAdded(ref)+" "+x)
	e.rejects(400, "135", req{method: "PUT", path: "/network_vifs/" + vif + "/add_security_group.json",
		form: url.Values{"security_group_id": {x}}})
	wantEvents(t, r, "refused add")
	e.put("/network_vifs/"+vif+"/remove_security_group.json", url.Values{"security_group_id": {x}}).ok()
	wantEvents(t, r, "remove",
		proto.EventVnicLeft(x)+" "+vif, proto.EventLeftGroup(vif)+" "+x, proto.EventReferencerRemoved(ref)+" "+x)
}

// TestInstanceGroupEvents: PUT /instances/:id security_groups publishes
// the membership changes of each vif (§2.1 item 10).
func TestInstanceGroupEvents(t *testing.T) {
	f := newInstEnv(t)
	inst := f.placed(proto.InstanceRunning)
	vif := f.attachVif(inst, f.nw, "10.0.0.5", 0, f.sg)
	sg2 := f.post("/security_groups.json", nil).ok().obj()["id"].(string)
	r := recordEvents(f.env)
	f.put("/instances/"+inst+".json", url.Values{"security_groups": {sg2}}).ok()
	wantEvents(t, r, "replace the groups",
		proto.EventVnicLeft(f.sg)+" "+vif, proto.EventLeftGroup(vif)+" "+f.sg,
		proto.EventVnicJoined(sg2)+" "+vif, proto.EventJoinedGroup(vif)+" "+sg2)
	f.put("/instances/"+inst+".json", url.Values{"security_groups": {sg2}}).ok()
	wantEvents(t, r, "same groups again")
	f.put("/instances/"+inst+".json", url.Values{"display_name": {"x"}}).ok()
	wantEvents(t, r, "no group change")
}
