package api

import (
	"context"
	"errors"
	"slices"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/common/sgrule"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Security groups (spec §2.6). The rule text is stored as written and parsed
// with common/sgrule, the parser the host agents use, so the API accepts
// exactly what the agents enforce.
func (a *API) registerSecurityGroups() {
	a.route("GET /security_groups", read, a.listSecurityGroups)
	a.route("GET /security_groups/{id}", read, a.showSecurityGroup)
	a.route("POST /security_groups", write, a.createSecurityGroup)
	a.route("PUT /security_groups/{id}", write, a.updateSecurityGroup)
	a.route("DELETE /security_groups/{id}", write, a.deleteSecurityGroup)
	a.registerLabels("/security_groups", proto.KindSecurityGroup, proto.PrefixSecurityGroup)
}

// ruleDocs renders parsed rules as §2.6 `rules`: tcp/udp {ip_protocol,
// ip_fport, ip_tport, protocol, ip_source}, icmp {ip_protocol, icmp_type,
// icmp_code, protocol, ip_source}; protocol is null for group references.
func ruleDocs(rules []sgrule.Rule) []any {
	out := make([]any, 0, len(rules))
	for _, r := range rules {
		m := format.NewMap(5).Set("ip_protocol", r.Protocol)
		if r.Protocol == sgrule.ICMP {
			m.Set("icmp_type", r.ICMPType).Set("icmp_code", r.ICMPCode)
		} else {
			m.Set("ip_fport", r.FromPort).Set("ip_tport", r.ToPort)
		}
		var ipver any
		if r.IPVersion != "" {
			ipver = r.IPVersion
		}
		out = append(out, m.Set("protocol", ipver).Set("ip_source", r.Source))
	}
	return out
}

func securityGroupDoc(_ *state.Tx, v *proto.SecurityGroup, _ state.Meta) (*format.Map, error) {
	// Stored text was validated when it was saved; should a parser change
	// ever reject it, the group still renders (without rules) rather than
	// failing every list it appears in.
	rules, _ := sgrule.Parse(v.Rule)
	return format.NewMap(11).
		Set("id", v.ID).
		Set("account_id", v.AccountID).
		Set("uuid", v.ID).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("description", v.Description).
		Set("rule", v.Rule).
		Set("service_type", v.ServiceType).
		Set("display_name", v.DisplayName).
		Set("rules", ruleDocs(rules)).
		Set("labels", labelDocs(v.ID, v.Labels)), nil
}

func (a *API) listSecurityGroups(_ context.Context, req *Request) (any, error) {
	p := req.Params
	of, err := a.ownerFilterOf(p, false)
	if err != nil {
		return nil, err
	}
	return list(a, req, proto.KindSecurityGroup, func(v *proto.SecurityGroup) bool {
		return of.match(v.AccountID, v.ServiceType, v.DisplayName)
	}, securityGroupDoc)
}

func (a *API) showSecurityGroup(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getOwned[proto.SecurityGroup](tx, req, proto.KindSecurityGroup, proto.PrefixSecurityGroup, req.ID("id"))
		if err != nil {
			return nil, err
		}
		return securityGroupDoc(tx, v, m)
	})
}

// parseRules validates rule text for a group of account (self = the group's
// own id, "" for a new one) and returns the groups it references. A
// referenced group must exist and belong to the same account: upstream
// stored dangling references; here they are 400/142 naming the group, the
// same answer for a group of another account so as not to reveal it.
func parseRules(tx *state.Tx, text, account, self string) ([]string, error) {
	rules, err := sgrule.Parse(text)
	if err != nil {
		var se *sgrule.SyntaxError
		if errors.As(err, &se) {
			return nil, errs.New(errs.InvalidSecurityGroupRule, "%s", se.Error())
		}
		return nil, errs.New(errs.InvalidSecurityGroupRule, "%v", err)
	}
	refs := sgrule.References(rules)
	for _, ref := range refs {
		if ref == self {
			continue
		}
		var g proto.SecurityGroup
		if _, err := tx.Get(proto.KindSecurityGroup, ref, &g); err != nil || g.AccountID != account {
			if err != nil && !errs.Is(err, errs.NotFound) {
				return nil, err
			}
			return nil, errs.New(errs.InvalidSecurityGroupRule, "unknown security group %s", ref)
		}
	}
	return refs, nil
}

// ruleParam reads `rule`, which must be text when present.
func ruleParam(req *Request) (string, bool, error) {
	if !req.Params.Has("rule") {
		return "", false, nil
	}
	if req.Params.Get("rule") == nil {
		return "", true, nil
	}
	s, ok := req.Params.StrOK("rule")
	if !ok {
		return "", false, errs.New(errs.InvalidParameter, "rule")
	}
	return s, true, nil
}

// checkRefs guards the commit on the referenced groups still existing, so a
// concurrent delete of one of them cannot leave a dangling reference.
func checkRefs(b *state.Builder, refs []string, self string) {
	for _, ref := range refs {
		if ref != self {
			b.Check(proto.KindSecurityGroup, ref, 0)
		}
	}
}

func (a *API) createSecurityGroup(ctx context.Context, req *Request) (any, error) {
	id := newID(proto.PrefixSecurityGroup)
	now := a.now()
	owner := req.Owner()
	var evs []proto.Event
	doc, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		// Quotas are evaluated before parameter validation, as upstream.
		if err := a.guardQuota(tx, b, req, QuotaSecurityGroupCount, 0, proto.KindSecurityGroup); err != nil {
			return nil, err
		}
		if err := checkUUID(owner, proto.PrefixAccount); err != nil {
			return nil, errs.New(errs.InvalidParameter, "account_id")
		}
		st, err := a.serviceTypeParam(req)
		if err != nil {
			return nil, err
		}
		rule, _, err := ruleParam(req)
		if err != nil {
			return nil, err
		}
		refs, err := parseRules(tx, rule, owner, id)
		if err != nil {
			return nil, err
		}
		labels, err := createLabels(req.Params, now)
		if err != nil {
			return nil, err
		}
		v := proto.SecurityGroup{
			ID:          id,
			Timestamps:  proto.Timestamps{CreatedAt: now, UpdatedAt: now},
			AccountID:   owner,
			Description: req.Params.Str("description"),
			Rule:        rule,
			ServiceType: st,
			DisplayName: req.Params.Str("display_name"),
			Labels:      labels,
		}
		checkRefs(b, refs, id)
		b.Create(proto.KindSecurityGroup, id, v)
		evs = referencerEvents(id, nil, refs)
		return func(tx *state.Tx) (any, error) { return securityGroupDoc(tx, &v, state.Meta{}) }, nil
	})
	if err == nil {
		a.publish(ctx, evs...)
	}
	return doc, err
}

// referencerEvents tell the groups group's rules stop naming (was) and
// start naming (now): <ref>/referencer_removed(group) and
// <ref>/referencer_added(group), spec §2.6.
func referencerEvents(group string, was, now []string) []proto.Event {
	var evs []proto.Event
	for _, ref := range was {
		if ref != group && !slices.Contains(now, ref) {
			evs = append(evs, proto.Event{Name: proto.EventReferencerRemoved(ref), Args: []string{group}})
		}
	}
	for _, ref := range now {
		if ref != group && !slices.Contains(was, ref) {
			evs = append(evs, proto.Event{Name: proto.EventReferencerAdded(ref), Args: []string{group}})
		}
	}
	return evs
}

func (a *API) updateSecurityGroup(ctx context.Context, req *Request) (any, error) {
	now := a.now()
	var evs []proto.Event
	doc, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.SecurityGroup](tx, req, proto.KindSecurityGroup, proto.PrefixSecurityGroup, req.ID("id"))
		if err != nil {
			return nil, err
		}
		p := req.Params
		if st, ok := p.StrOK("service_type"); ok {
			if err := a.checkServiceType(st); err != nil {
				return nil, err
			}
			v.ServiceType = st
		}
		rule, hasRule, err := ruleParam(req)
		if err != nil {
			return nil, err
		}
		// Every update tells the group's hosts to reload its rules, and a
		// new rule text tells the groups it stops or starts naming.
		evs = []proto.Event{
			{Name: proto.EventSecurityGroupUpdated, Args: []string{v.ID}},
			{Name: proto.EventRulesUpdated(v.ID)},
		}
		if hasRule {
			refs, err := parseRules(tx, rule, v.AccountID, v.ID)
			if err != nil {
				return nil, err
			}
			checkRefs(b, refs, v.ID)
			if rule != v.Rule {
				old, _ := sgrule.Parse(v.Rule)
				evs = append(evs, referencerEvents(v.ID, sgrule.References(old), refs)...)
			}
			v.Rule = rule
		}
		if s, ok := p.StrOK("description"); ok {
			v.Description = s
		}
		if s, ok := p.StrOK("display_name"); ok {
			v.DisplayName = s
		}
		v.UpdatedAt = now
		b.Update(proto.KindSecurityGroup, v.ID, m.ModifyIndex, v)
		return func(tx *state.Tx) (any, error) {
			cur, cm, err := getPub[proto.SecurityGroup](tx, proto.KindSecurityGroup, proto.PrefixSecurityGroup, v.ID)
			if err != nil {
				return nil, err
			}
			return securityGroupDoc(tx, cur, cm)
		}, nil
	})
	if err == nil {
		a.publish(ctx, evs...)
	}
	return doc, err
}

// deleteSecurityGroup is a hard delete, refused with 403/105 while another
// group's rules reference the group or a network vif is in it. Both scans are
// guarded with CheckKind so a reference or vif added concurrently makes the
// delete re-run and see it.
func (a *API) deleteSecurityGroup(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getOwned[proto.SecurityGroup](tx, req, proto.KindSecurityGroup, proto.PrefixSecurityGroup, req.ID("id"))
		if err != nil {
			return nil, err
		}
		sgIdx := tx.KindIndex(proto.KindSecurityGroup)
		vifIdx := tx.KindIndex(proto.KindNetworkVif)
		var refBy string
		err = tx.Each(proto.KindSecurityGroup, false, func(e state.Entry) error {
			var g proto.SecurityGroup
			if err := decodeInto(e, &g); err != nil {
				return err
			}
			if g.ID == v.ID {
				return nil
			}
			rules, _ := sgrule.Parse(g.Rule)
			if slices.Contains(sgrule.References(rules), v.ID) {
				refBy = g.ID
				return state.ErrStop
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if refBy != "" {
			return nil, errs.New(errs.OperationNotPermitted, "%s is referenced by %s", v.ID, refBy)
		}
		var inVif string
		err = tx.Each(proto.KindNetworkVif, false, func(e state.Entry) error {
			var vif proto.NetworkVif
			if err := decodeInto(e, &vif); err != nil {
				return err
			}
			if vif.DeletedAt == nil && slices.Contains(vif.SecurityGroups, v.ID) {
				inVif = vif.ID
				return state.ErrStop
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if inVif != "" {
			return nil, errs.New(errs.OperationNotPermitted, "%s has network vif %s", v.ID, inVif)
		}
		b.CheckKind(proto.KindSecurityGroup, sgIdx)
		b.CheckKind(proto.KindNetworkVif, vifIdx)
		b.Delete(proto.KindSecurityGroup, v.ID, m.ModifyIndex)
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// guardQuota checks one quota key and, when the check applied, guards the
// commit on no record of the counted kind changing since the count, so that
// concurrent creates cannot all pass a check that only one of them may.
func (a *API) guardQuota(tx *state.Tx, b *state.Builder, req *Request, key string, amount float64, kind string) error {
	if a.cfg.SkipQuotaEvaluation || req.Account == "" || req.Quota == nil {
		return nil
	}
	if _, ok := req.Quota[key]; !ok {
		return nil
	}
	idx := tx.KindIndex(kind)
	if err := a.checkQuota(tx, req, key, amount); err != nil {
		return err
	}
	b.CheckKind(kind, idx)
	return nil
}
