package collector

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/common/sgrule"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// filteredStates are the states in which an instance's vnics are filtered
// on its host and count as members of their groups: from placement (the
// rules can be in before the guest starts) until its host begins to take
// it down. A vnic of an instance shutting down, stopping or stopped is
// nobody's friend any more, so remote hosts drop its address as soon as
// its host unplugs it.
func filteredState(s string) bool {
	switch s {
	case proto.InstancePending, proto.InstanceStarting, proto.InstanceRunning,
		proto.InstanceHalting, proto.InstanceHalted, proto.InstanceMigrating:
		return true
	}
	return false
}

// netfilterData answers hva-collector get_netfilter_data: what one host's
// packet filter needs (spec/agents.md §2.0, §5 "Netfilter"): its vnics (of
// instances placed on it, in a filtered state) with their groups, and every
// group those vnics are in, whose members their rules name, or whose rules
// name their groups, with the rule text, the members' addresses anywhere in
// the cluster, and the references between groups.
func (s *Service) netfilterData(ctx context.Context, req proto.GetNetfilterDataRequest) (proto.GetNetfilterDataResponse, error) {
	out := proto.GetNetfilterDataResponse{Vnics: []proto.VifView{}, SecurityGroups: []proto.NetfilterSecurityGroup{}}
	err := s.read(ctx, func(tx *state.Tx) error {
		host, err := hostByNodeID(tx, req.NodeID)
		if err != nil {
			return err
		}
		type instInfo struct {
			local, filtered bool
		}
		insts := map[string]instInfo{}
		err = tx.Each(proto.KindInstance, false, func(e state.Entry) error {
			var inst proto.Instance
			if err := json.Unmarshal(e.Value, &inst); err != nil {
				return err
			}
			f := filteredState(inst.State)
			insts[inst.ID] = instInfo{local: f && inst.HostNodeID != nil && *inst.HostNodeID == host.ID, filtered: f}
			return nil
		})
		if err != nil {
			return err
		}
		members := map[string][]proto.NetfilterMember{}
		wanted := map[string]bool{}
		err = tx.Each(proto.KindNetworkVif, false, func(e state.Entry) error {
			var vif proto.NetworkVif
			if err := json.Unmarshal(e.Value, &vif); err != nil {
				return err
			}
			if vif.DeletedAt != nil {
				return nil
			}
			// A vif on no instance (a service vif) is a member as it stands.
			info, onInstance := insts[derefOr(vif.InstanceID)]
			if vif.InstanceID != nil && (!onInstance || !info.filtered) {
				return nil
			}
			for _, sg := range vif.SecurityGroups {
				members[sg] = append(members[sg], proto.NetfilterMember{
					VifID: vif.ID, MacAddr: vif.MacAddr, IPv4Address: vif.IPv4Address})
			}
			if info.local {
				out.Vnics = append(out.Vnics, VifView(tx, vif))
				for _, sg := range vif.SecurityGroups {
					wanted[sg] = true
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		groups := map[string]*proto.SecurityGroup{}
		refs := map[string][]string{}
		err = tx.Each(proto.KindSecurityGroup, false, func(e state.Entry) error {
			var g proto.SecurityGroup
			if err := json.Unmarshal(e.Value, &g); err != nil {
				return err
			}
			groups[g.ID] = &g
			// Stored rules were validated when saved; a text that no longer
			// parses names nothing (the hva reports it).
			rules, _ := sgrule.Parse(g.Rule)
			refs[g.ID] = sgrule.References(rules)
			return nil
		})
		if err != nil {
			return err
		}
		// The local vnics' groups, the groups their rules name (whose members
		// they let in), and the groups whose rules name them (whose members
		// may ARP them: those answer the local vnics).
		local := maps.Clone(wanted)
		for sg := range local {
			for _, ref := range refs[sg] {
				wanted[ref] = true
			}
		}
		for other, named := range refs {
			if slices.ContainsFunc(named, func(n string) bool { return local[n] }) {
				wanted[other] = true
			}
		}
		ids := make([]string, 0, len(wanted))
		for sg := range wanted {
			ids = append(ids, sg)
		}
		slices.Sort(ids)
		for _, id := range ids {
			g := proto.NetfilterSecurityGroup{ID: id, Members: members[id], Referencees: refs[id]}
			if sg := groups[id]; sg != nil {
				g.Rule = sg.Rule
			}
			for other, named := range refs {
				if slices.Contains(named, id) {
					g.Referencers = append(g.Referencers, other)
				}
			}
			slices.Sort(g.Referencers)
			out.SecurityGroups = append(out.SecurityGroups, g)
		}
		slices.SortFunc(out.Vnics, func(a, b proto.VifView) int { return strings.Compare(a.ID, b.ID) })
		return nil
	})
	return out, err
}

func derefOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
