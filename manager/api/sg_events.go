package api

import (
	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/sgrule"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// groupEvents are the events of a vif leaving the groups left and joining
// the groups joined (spec §2.1 item 10, spec/agents.md §3): per group
// <sg>/vnic_left|vnic_joined [vif] and <vif>/left_group|joined_group [sg],
// and on every group the group's rules reference,
// <referenced sg>/referencer_removed|referencer_added [sg] (the events
// table's reading: a vif joining X, whose rules reference Y, is announced
// on Y). Receivers reconcile from the state, so the events only need to
// name what changed.
func groupEvents(tx *state.Tx, vifID string, joined, left []string) ([]proto.Event, error) {
	var out []proto.Event
	for _, c := range []struct {
		groups          []string
		vnic, vif, refs func(string) string
	}{
		{left, proto.EventVnicLeft, proto.EventLeftGroup, proto.EventReferencerRemoved},
		{joined, proto.EventVnicJoined, proto.EventJoinedGroup, proto.EventReferencerAdded},
	} {
		for _, sg := range c.groups {
			out = append(out,
				proto.Event{Name: c.vnic(sg), Args: []string{vifID}},
				proto.Event{Name: c.vif(vifID), Args: []string{sg}})
			refs, err := referencedGroups(tx, sg)
			if err != nil {
				return nil, err
			}
			for _, ref := range refs {
				out = append(out, proto.Event{Name: c.refs(ref), Args: []string{sg}})
			}
		}
	}
	return out, nil
}

// referencedGroups are the groups sg's rules name (none when sg is gone or
// its stored rules do not parse: nothing to announce then).
func referencedGroups(tx *state.Tx, sg string) ([]string, error) {
	var g proto.SecurityGroup
	if _, err := tx.Get(proto.KindSecurityGroup, sg, &g); err != nil {
		if errs.Is(err, errs.NotFound) {
			return nil, nil
		}
		return nil, err
	}
	rules, err := sgrule.Parse(g.Rule)
	if err != nil {
		return nil, nil
	}
	return sgrule.References(rules), nil
}
