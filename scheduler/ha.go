package scheduler

// DefaultHostHA is the host_node_ha_scheduler of a service type that
// configures none. The original had no default, so evacuation failed on
// every setup that forgot the setting (spec §9); the host scheduler most
// setups use is the sensible choice.
func DefaultHostHA() HostScheduler { return LeastUsage{} }

// PlaceEvacuee is the host part of evacuate_from for one instance of a
// failed (or evacuated) host: the HA scheduler's choice among the other
// online hosts with scheduling enabled, charged with the request in v so
// that the next instance of the same evacuation sees it. Unlike PlaceHA it
// never over-commits: the leader re-checks every move against the host's
// offering, and piling a dead host's instances onto a full one would put
// that host's own instances at risk. An instance that fits nowhere is
// halted by the caller with the error as its reason. On error v is
// unchanged.
func (s *Schedulers) PlaceEvacuee(v *View, r *Request) (*Host, error) {
	hs := s.HostHA
	if hs == nil {
		hs = DefaultHostHA()
	}
	h, err := hs.ScheduleHost(v, r)
	if err != nil {
		return nil, err
	}
	switch {
	case h.ID == r.CurrentHostID:
		return nil, newErr(KindHostNode, "the HA scheduler chose the evacuated host %s itself", h.ID)
	case !h.schedulable() || h.Arch != r.Arch || h.Hypervisor != r.Hypervisor:
		return nil, newErr(KindHostNode, "the HA scheduler chose host %s, which cannot run the instance", h.ID)
	case !h.fits(needOf(r)):
		// ExcludeSame and other capacity-blind HA schedulers.
		return nil, newErr(KindHostNode, "Host node %s has not enough capacity for the instance", h.ID)
	}
	var log undoLog
	if err := charge(h, r, &log); err != nil {
		return nil, err
	}
	return h, nil
}
