package api

import (
	"context"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/format"
	"github.com/vdc-project/vdc/manager/jobs"
	"github.com/vdc-project/vdc/manager/scheduling"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// Instances (spec §2.1, §3.1). An instance is created in state scheduling
// with its volumes; the scheduler places it (host, vifs, addresses) and the
// agents drive it. The API only makes the transitions marked "API" in §3.1
// and hands every other change to an agent as a durable job, enqueued in the
// same raft transaction as the state change that needs it.
//
// Files: instances.go (documents, list, show, update, delete, finalize,
// password), instance_create.go (POST), instance_actions.go (power and
// backup actions), instance_volumes.go (volumes sub-routes),
// instance_monitoring.go (monitoring items).

func (a *API) registerInstances() {
	a.route("GET /instances", read, a.listInstances)
	a.route("GET /instances/{id}", read, a.showInstance)
	a.route("POST /instances", write, a.createInstance)
	a.route("PUT /instances/{id}", write, a.updateInstance)
	a.route("DELETE /instances/{id}", write, a.deleteInstance)
	a.route("GET /instances/{id}/password", read, a.showInstancePassword)
	a.route("DELETE /instances/{id}/password", write, a.deleteInstancePassword)
	a.route("PUT /instances/{id}/reboot", write, a.rebootInstance)
	a.route("PUT /instances/{id}/stop", write, a.stopInstance)
	a.route("PUT /instances/{id}/start", write, a.startInstance)
	a.route("PUT /instances/{id}/poweroff", write, a.poweroffInstance)
	a.route("PUT /instances/{id}/poweron", write, a.poweronInstance)
	a.route("PUT /instances/{id}/backup", write, a.backupInstance)
	a.route("PUT /instances/{id}/move", write, a.moveInstance)
	a.route("GET /instances/{instance_id}/volumes", read, a.listInstanceVolumes)
	a.route("PUT /instances/{instance_id}/volumes/{vol_id}/backup", write, a.backupInstanceVolume)
	a.route("GET /instances/{instance_id}/monitoring", read, a.listInstanceMonitoring)
	a.route("POST /instances/{instance_id}/monitoring", write, a.createInstanceMonitoring)
	a.route("GET /instances/{instance_id}/monitoring/{monitor_id}", read, a.showInstanceMonitoring)
	a.route("PUT /instances/{instance_id}/monitoring/{monitor_id}", write, a.updateInstanceMonitoring)
	a.route("DELETE /instances/{instance_id}/monitoring/{monitor_id}", write, a.deleteInstanceMonitoring)
	a.registerLabels("/instances", proto.KindInstance, proto.PrefixInstance)
}

// hostnameClaimScope prefixes hostname claims in unique_names:
// "hostname/<account>/<hostname>" (hostnames are unique per account).
const hostnameClaimScope = "hostname/"

func hostnameClaim(account, hostname string) string {
	return hostnameClaimScope + account + "/" + hostname
}

// instanceLinks reads the vifs and volumes of instances through the
// instances' indexes (state.IdxVifsByInstance, IdxVolumesByInstance), so
// rendering one instance costs its own records, not every vif and volume.
type instanceLinks struct {
	tx *state.Tx
}

// vifsOf returns the instance's vifs not deleted, by device index.
func (l *instanceLinks) vifsOf(id string) ([]*proto.NetworkVif, error) {
	var vs []*proto.NetworkVif
	err := state.EachOfIn(l.tx, state.IdxVifsByInstance, id, false, func(v *proto.NetworkVif, _ state.Meta) error {
		if v.DeletedAt == nil {
			vs = append(vs, v)
		}
		return nil
	})
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].DeviceIndex < vs[j].DeviceIndex })
	return vs, err
}

// volumesOf returns the instance's volumes, the boot volume first, the
// others in creation order.
func (l *instanceLinks) volumesOf(inst *proto.Instance) ([]*proto.Volume, error) {
	var vs []*proto.Volume
	err := state.EachOfIn(l.tx, state.IdxVolumesByInstance, inst.ID, false, func(v *proto.Volume, _ state.Meta) error {
		vs = append(vs, v)
		return nil
	})
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].ID == inst.BootVolumeID && vs[j].ID != inst.BootVolumeID })
	return vs, err
}

// instanceDocs returns the document renderer of one read transaction.
func instanceDocs() docFn[proto.Instance] {
	return func(tx *state.Tx, v *proto.Instance, m state.Meta) (*format.Map, error) {
		return instanceDoc(tx, &instanceLinks{tx: tx}, v)
	}
}

// instanceDoc is the instance document of §2.1, keys in the spec's order.
func instanceDoc(tx *state.Tx, links *instanceLinks, v *proto.Instance) (*format.Map, error) {
	var sshDoc any
	if v.SshKeyPairID != nil {
		var k proto.SshKeyPair
		_, err := tx.Get(proto.KindSshKeyPair, *v.SshKeyPairID, &k)
		switch {
		case err == nil:
			sshDoc = format.NewMap(2).Set("uuid", k.ID).Set("display_name", k.DisplayName)
		case !errs.Is(err, errs.NotFound):
			return nil, err
		}
	}
	vols := []any{}
	volsOf, err := links.volumesOf(v)
	if err != nil {
		return nil, err
	}
	for _, vol := range volsOf {
		vols = append(vols, format.NewMap(2).Set("vol_id", vol.ID).Set("state", vol.State))
	}
	vifs := []any{}
	vifsOf, err := links.vifsOf(v.ID)
	if err != nil {
		return nil, err
	}
	for _, vif := range vifsOf {
		d := format.NewMap(5).
			Set("vif_id", vif.ID).
			Set("network_id", strOrNil(vif.NetworkID)).
			Set("index", vif.DeviceIndex)
		// ipv4 is left out when the vif holds no address (no network, or
		// released by stop).
		if vif.NetworkID != nil && vif.IPv4Address != nil {
			d.Set("ipv4", format.NewMap(2).
				Set("address", *vif.IPv4Address).
				Set("nat_address", strOrNil(vif.NatIPv4Address)))
		}
		sgs := vif.SecurityGroups
		if sgs == nil {
			sgs = []string{}
		}
		vifs = append(vifs, d.Set("security_groups", sgs))
	}
	ha := 0
	if v.HaEnabled {
		ha = 1
	}
	return format.NewMap(25).
		Set("id", v.ID).
		Set("account_id", v.AccountID).
		Set("host_node", strOrNil(v.HostNodeID)).
		Set("cpu_cores", v.CPUCores).
		Set("memory_size", v.MemorySize).
		Set("arch", v.Arch).
		Set("image_id", v.ImageID).
		Set("created_at", v.CreatedAt).
		Set("updated_at", v.UpdatedAt).
		Set("terminated_at", v.TerminatedAt).
		Set("deleted_at", v.TerminatedAt).
		Set("state", v.State).
		Set("status", v.Status).
		Set("ssh_key_pair", sshDoc).
		Set("volume", vols).
		Set("vif", vifs).
		Set("hostname", v.Hostname).
		Set("ha_enabled", ha).
		Set("hypervisor", v.Hypervisor).
		Set("display_name", v.DisplayName).
		Set("service_type", v.ServiceType).
		Set("monitoring", monitoringDoc(v)).
		Set("labels", labelDocs(v.ID, v.Labels)).
		Set("boot_volume_id", v.BootVolumeID), nil
}

// renderInstance renders the committed instance.
func renderInstance(id string) renderFn {
	return func(tx *state.Tx) (any, error) {
		var v proto.Instance
		m, err := tx.Get(proto.KindInstance, id, &v)
		if err != nil {
			return nil, err
		}
		return instanceDocs()(tx, &v, m)
	}
}

func getInstance(tx *state.Tx, req *Request, param string) (*proto.Instance, state.Meta, error) {
	return getOwned[proto.Instance](tx, req, proto.KindInstance, proto.PrefixInstance, req.ID(param))
}

// Exact states of the list's `state` filter; the meta values are below.
var instanceListStates = []string{proto.InstanceRunning, proto.InstanceStopped, proto.InstanceHalted, proto.InstanceTerminated}

// instanceStateFilter reads the list's `state`: an exact state or alive,
// alive_with_terminated, without_terminated; anything else is 400/143.
func (a *API) instanceStateFilter(req *Request) (func(v *instanceListFields) bool, error) {
	if !req.Params.Has("state") {
		return func(*instanceListFields) bool { return true }, nil
	}
	s, _ := req.Params.StrOK("state")
	switch {
	case slices.Contains(instanceListStates, s):
		return func(v *instanceListFields) bool { return v.State == s }, nil
	case s == "alive":
		return func(v *instanceListFields) bool { return v.TerminatedAt == nil }, nil
	case s == "alive_with_terminated":
		since := a.now().Add(-a.cfg.RecentTerminatedPeriod)
		return func(v *instanceListFields) bool { return v.TerminatedAt == nil || !v.TerminatedAt.Before(since) }, nil
	case s == "without_terminated":
		return func(v *instanceListFields) bool {
			return v.State == proto.InstanceRunning || v.State == proto.InstanceStopped || v.State == proto.InstanceHalted
		}, nil
	}
	return nil, errs.New(errs.InvalidParameter, "state")
}

// instanceListFields are the fields of an instance GET /instances filters
// on (listWalkLite): every field its filters read must be here.
type instanceListFields struct {
	ID           string     `json:"id"`
	AccountID    string     `json:"account_id"`
	HostNodeID   *string    `json:"host_node_id"`
	State        string     `json:"state"`
	DisplayName  string     `json:"display_name"`
	ServiceType  string     `json:"service_type"`
	TerminatedAt *time.Time `json:"terminated_at"`
}

// listInstances: GET /instances. An unknown host_node_id crashed upstream
// (500); here it is 404/100 like any unknown uuid.
func (a *API) listInstances(_ context.Context, req *Request) (any, error) {
	p := req.Params
	o, err := parseListOpts(req)
	if err != nil {
		return nil, err
	}
	stateOK, err := a.instanceStateFilter(req)
	if err != nil {
		return nil, err
	}
	of, err := a.ownerFilterOf(p, false)
	if err != nil {
		return nil, err
	}
	return a.view(func(tx *state.Tx) (any, error) {
		host := ""
		if p.Has("host_node_id") {
			h, _, err := getPub[proto.HostNode](tx, proto.KindHostNode, proto.PrefixHostNode, p.Str("host_node_id"))
			if err != nil {
				return nil, err
			}
			host = h.ID
		}
		match := func(v *instanceListFields) bool {
			if id, ok := p.StrOK("id"); ok && !strings.HasPrefix(v.ID, uuidPrefixFilter(proto.PrefixInstance, id)) {
				return false
			}
			if !of.match(v.AccountID, v.ServiceType, v.DisplayName) {
				return false
			}
			if host != "" && (v.HostNodeID == nil || *v.HostNodeID != host) {
				return false
			}
			return stateOK(v)
		}
		// An exact state or a host is answered by an index (the state
		// filter still runs: it is the same test).
		walk := walkKind(tx, proto.KindInstance)
		switch s := p.Str("state"); {
		case slices.Contains(instanceListStates, s):
			walk = walkIndex(tx, state.IdxInstancesByState, s)
		case host != "":
			walk = walkIndex(tx, state.IdxInstancesByHost, host)
		}
		return listWalkLite(tx, o, proto.KindInstance, walk, &a.instanceList, match, instanceDocs())
	})
}

func (a *API) showInstance(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, m, err := getInstance(tx, req, "id")
		if err != nil {
			return nil, err
		}
		return instanceDocs()(tx, v, m)
	})
}

// --- password ---

func (a *API) showInstancePassword(_ context.Context, req *Request) (any, error) {
	return a.view(func(tx *state.Tx) (any, error) {
		v, _, err := getInstance(tx, req, "id")
		if err != nil {
			return nil, err
		}
		if v.EncryptedPassword == nil {
			return nil, errs.New(errs.PasswordNotInDatabase, "%s", v.ID)
		}
		return format.NewMap(2).Set("id", v.ID).Set("encrypted_password", *v.EncryptedPassword), nil
	})
}

func (a *API) deleteInstancePassword(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getInstance(tx, req, "id")
		if err != nil {
			return nil, err
		}
		if v.EncryptedPassword != nil {
			v.EncryptedPassword = nil
			v.UpdatedAt = a.now()
			b.Update(proto.KindInstance, v.ID, m.ModifyIndex, v)
		}
		return func(*state.Tx) (any, error) { return format.NewMap(0), nil }, nil
	})
}

// --- update ---

// updateInstance: PUT /instances/:id — display_name, ssh_key_id,
// security_groups (replaces the vifs' groups of the instance's service
// type), monitoring (enabled and mail_address; items have their own routes).
//
// After commit it publishes the security-group events of every vif whose
// groups changed (groupEvents) and, when the monitoring changed and the
// instance is past init, instance.monitoring.refreshed [instance].
func (a *API) updateInstance(ctx context.Context, req *Request) (any, error) {
	p := req.Params
	var evs []proto.Event
	doc, err := a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		evs = nil
		v, m, err := getInstance(tx, req, "id")
		if err != nil {
			return nil, err
		}
		now := a.now()
		if dn, ok := p.StrOK("display_name"); ok {
			v.DisplayName = dn
		}
		if p.Has("ssh_key_id") {
			k, km, err := sshKeyParam(tx, p.Str("ssh_key_id"))
			if err != nil {
				return nil, err
			}
			if k != nil && !usableBy(req.Account, k.AccountID) {
				return nil, errs.New(errs.UnknownSshKeyPair, "%s", k.ID) // another account's (ownership.go)
			}
			if k == nil {
				v.SshKeyPairID = nil
			} else {
				v.SshKeyPairID = &k.ID
				b.Check(proto.KindSshKeyPair, k.ID, km.ModifyIndex)
			}
		}
		if p.Has("security_groups") {
			if evs, err = a.replaceInstanceGroups(tx, b, req, v, now); err != nil {
				return nil, err
			}
		}
		if mp, ok := p.Map("monitoring"); ok {
			mon := instanceMonitoring(v)
			before := mon.store()
			if err := mon.setFromParams(mp, false); err != nil {
				return nil, err
			}
			v.Monitoring = mon.store()
			if v.State != proto.InstanceInit && !reflect.DeepEqual(before, v.Monitoring) {
				evs = append(evs, proto.Event{Name: proto.EventInstanceMonitorRefresh, Args: []string{v.ID}})
			}
		} else if p.Has("monitoring") {
			return nil, errs.New(errs.InvalidParameter, "monitoring")
		}
		v.UpdatedAt = now
		b.Update(proto.KindInstance, v.ID, m.ModifyIndex, v)
		return renderInstance(v.ID), nil
	})
	if err == nil {
		a.publish(ctx, evs...)
	}
	return doc, err
}

// replaceInstanceGroups sets the `security_groups` parameter on every vif of
// the instance: groups of the instance's service type are replaced, others
// kept. It returns the membership events to publish after the commit.
func (a *API) replaceInstanceGroups(tx *state.Tx, b *state.Builder, req *Request, inst *proto.Instance, now time.Time) ([]proto.Event, error) {
	want, err := securityGroupsParam(tx, newOpSet(b), req, req.Params.Get("security_groups"))
	if err != nil {
		return nil, err
	}
	var evs []proto.Event
	err = tx.EachIn(state.IdxVifsByInstance, inst.ID, false, func(_ string, e state.Entry) error {
		var vif proto.NetworkVif
		if err := decodeInto(e, &vif); err != nil {
			return err
		}
		if vif.DeletedAt != nil {
			return nil
		}
		var keep []string
		for _, sg := range vif.SecurityGroups {
			var g proto.SecurityGroup
			if _, err := tx.Get(proto.KindSecurityGroup, sg, &g); err == nil && g.ServiceType != inst.ServiceType {
				keep = append(keep, sg)
			}
		}
		groups := append(keep, want...)
		if groups == nil {
			groups = []string{}
		}
		if slices.Equal(groups, vif.SecurityGroups) {
			return nil
		}
		var added, removed []string
		for _, sg := range groups {
			if !slices.Contains(vif.SecurityGroups, sg) {
				added = append(added, sg)
			}
		}
		for _, sg := range vif.SecurityGroups {
			if !slices.Contains(groups, sg) {
				removed = append(removed, sg)
			}
		}
		ge, err := groupEvents(tx, vif.ID, added, removed)
		if err != nil {
			return err
		}
		evs = append(evs, ge...)
		vif.SecurityGroups, vif.UpdatedAt = groups, now
		b.Update(proto.KindNetworkVif, vif.ID, e.ModifyIndex, &vif)
		return nil
	})
	return evs, err
}

// --- delete and finalize ---

// invalidState is the 400/125 of every refused transition: the message is
// the current state.
func invalidState(v *proto.Instance) error {
	return errs.New(errs.InvalidInstanceState, "%s", v.State)
}

// backupsSettled reports whether every backup object made from the
// instance's alive volumes is available, deleted or purged.
func backupsSettled(tx *state.Tx, inst *proto.Instance) (bool, error) {
	var vols []string
	err := state.EachOfIn(tx, state.IdxVolumesByInstance, inst.ID, false, func(v *proto.Volume, _ state.Meta) error {
		if v.DeletedAt == nil {
			vols = append(vols, v.ID)
		}
		return nil
	})
	settled := true
	for _, vol := range vols {
		if err != nil || !settled {
			break
		}
		err = state.EachOfIn(tx, state.IdxBackupObjectsBySourceVolume, vol, false, func(bo *proto.BackupObject, _ state.Meta) error {
			switch bo.State {
			case boAvailable, boDeleted, boPurged:
			default:
				settled = false
				return state.ErrStop
			}
			return nil
		})
	}
	return settled, err
}

// hostOf returns the host node the instance is placed on, nil when none.
func hostOf(tx *state.Tx, inst *proto.Instance) (*proto.HostNode, error) {
	if inst.HostNodeID == nil {
		return nil, nil
	}
	var h proto.HostNode
	_, err := tx.Get(proto.KindHostNode, *inst.HostNodeID, &h)
	if errs.Is(err, errs.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &h, nil
}

// enqueueJob adds an agent job for endpoint.verb with args to the txn.
func enqueueJob(b *state.Builder, now time.Time, endpoint, verb, resourceID string, args any) error {
	j, err := jobs.New(now, endpoint, verb, resourceID, args)
	if err != nil {
		return err
	}
	jobs.Enqueue(b, j)
	return nil
}

// deleteInstance: DELETE /instances/:id (§2.1 item 6). A stopped instance
// (or one that never reached a host) is terminated at once; a placed one
// gets hva-handle.<node>.terminate and the agent drives shuttingdown →
// terminated.
func (a *API) deleteInstance(ctx context.Context, req *Request) (any, error) {
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		v, m, err := getInstance(tx, req, "id")
		if err != nil {
			return nil, err
		}
		settled, err := backupsSettled(tx, v)
		if err != nil {
			return nil, err
		}
		if !settled {
			return nil, invalidState(v)
		}
		now := a.now()
		switch v.State {
		case proto.InstanceTerminated, proto.InstanceScheduling:
			return nil, invalidState(v)
		case proto.InstanceMigrating:
			// Upstream sent terminate, which the hva refuses in this state;
			// the VM is on two hosts until the move ends: wait for it.
			return nil, invalidState(v)
		case proto.InstanceStopped:
			err = finalizeInstance(tx, b, v, now)
		default:
			var h *proto.HostNode
			if h, err = hostOf(tx, v); err != nil {
				return nil, err
			}
			if h == nil {
				// Upstream sent terminate to a host it did not have; with no
				// host there is nothing to stop, so the instance ends now.
				err = finalizeInstance(tx, b, v, now)
				break
			}
			// Written (not only checked) so that a backup started
			// concurrently conflicts with the terminate.
			v.UpdatedAt = now
			b.Update(proto.KindInstance, v.ID, m.ModifyIndex, v)
			// The hva terminates only running or halted instances unless
			// forced; upstream's delete of an instance still booting (pending,
			// starting) or halting therefore failed at the agent and was lost.
			// A delete in a transitional state forces it: the hva runs it
			// after the job working on the instance (one at a time per
			// instance), and a boot that comes after finds it terminated.
			force := v.State != proto.InstanceRunning && v.State != proto.InstanceHalted
			err = enqueueJob(b, now, proto.HvaHandle(h.NodeID), proto.VerbTerminate, v.ID,
				proto.HvaTerminateRequest{InstanceID: v.ID, Force: force})
		}
		if err != nil {
			return nil, err
		}
		return func(*state.Tx) (any, error) { return []any{v.ID}, nil }, nil
	})
}

// FinalizeInstance is finalizeInstance for the collector (hva-collector
// finalize_instance, update_instance to terminated, scheduling failures), so
// that every termination releases the same things in one place.
func FinalizeInstance(tx *state.Tx, b *state.Builder, inst *proto.Instance, now time.Time) error {
	return finalizeInstance(tx, b, inst, now)
}

// finalizeInstance adds to b the termination of inst (read in tx): its
// volumes go to deleting with their delete jobs (or straight to deleted when
// no agent holds them), its vifs are destroyed with their IP leases, NAT
// routes and MAC claims, its hostname claim is released, and the instance
// becomes terminated/offline with terminated_at = now. It is idempotent: a
// terminated instance keeps its terminated_at and only what is left is
// released.
//
// It writes *inst as given plus those fields, guarded by the ModifyIndex of
// the stored instance in tx, so a caller may set other fields first (for
// example LastError) but must not add its own op on the instance, its vifs
// or its volumes to the same txn.
//
// The instance's ModifyIndex is also what keeps the scans of volumes and
// vifs complete without guarding those whole kinds: whatever links a vif or
// a volume to an instance (plan apply, volume attach) or starts a backup of
// it must write the instance record in the same txn.
func finalizeInstance(tx *state.Tx, b *state.Builder, inst *proto.Instance, now time.Time) error {
	e, ok := tx.Raw(proto.KindInstance, inst.ID)
	if !ok {
		return errs.New(errs.UnknownInstance, "%s", inst.ID)
	}
	host, err := hostOf(tx, inst)
	if err != nil {
		return err
	}
	// Volumes: local ones are deleted by the host's local store, shared ones
	// by their storage node; a volume no agent holds (never placed, or its
	// host is gone) is deleted here.
	err = tx.EachIn(state.IdxVolumesByInstance, inst.ID, false, func(_ string, ve state.Entry) error {
		var vol proto.Volume
		if err := decodeInto(ve, &vol); err != nil {
			return err
		}
		if vol.State == proto.VolumeDeleting || vol.State == proto.VolumeDeleted {
			return nil
		}
		vol.UpdatedAt = now
		if vol.KeepOnTerminate {
			// Attached through PUT /volumes/:id/attach: detached (§3.2).
			vol.InstanceID, vol.DetachedAt, vol.State, vol.KeepOnTerminate = nil, &now, proto.VolumeAvailable, false
			b.Update(proto.KindVolume, vol.ID, ve.ModifyIndex, &vol)
			return nil
		}
		var endpoint string
		var args any
		switch {
		case vol.StoreType == proto.VolumeLocal && host != nil && vol.State != proto.VolumeScheduling:
			endpoint = proto.LocalStoreHandle(host.NodeID)
			args = proto.LocalStoreDeleteVolumeRequest{InstanceID: inst.ID, VolumeID: vol.ID}
		case vol.StoreType != proto.VolumeLocal && vol.StorageNodeID != nil:
			var sn proto.StorageNode
			if _, err := tx.Get(proto.KindStorageNode, *vol.StorageNodeID, &sn); err == nil {
				endpoint = proto.StaHandle(sn.NodeID)
				args = proto.StaDeleteVolumeRequest{VolumeID: vol.ID}
			} else if !errs.Is(err, errs.NotFound) {
				return err
			}
		}
		if endpoint == "" {
			vol.State, vol.DeletedAt = proto.VolumeDeleted, &now
		} else {
			vol.State = proto.VolumeDeleting
			if err := enqueueJob(b, now, endpoint, proto.VerbDeleteVolume, vol.ID, args); err != nil {
				return err
			}
		}
		b.Update(proto.KindVolume, vol.ID, ve.ModifyIndex, &vol)
		return nil
	})
	if err != nil {
		return err
	}

	o := newOpSet(b)
	err = tx.EachIn(state.IdxVifsByInstance, inst.ID, false, func(_ string, ve state.Entry) error {
		var vif proto.NetworkVif
		if err := decodeInto(ve, &vif); err != nil {
			return err
		}
		return destroyVif(tx, o, &vif, ve.Meta, now)
	})
	if err != nil {
		return err
	}
	if claim := hostnameClaim(inst.AccountID, inst.Hostname); inst.Hostname != "" {
		if ce, ok := tx.Raw(proto.KindUniqueName, claim); ok {
			var u proto.UniqueName
			if decodeInto(ce, &u) == nil && u.Owner == inst.ID {
				b.Delete(proto.KindUniqueName, claim, ce.ModifyIndex)
			}
		}
	}
	// The host's capacity comes back in the same txn.
	if err := scheduling.Release(tx, b, inst); err != nil {
		return err
	}

	if inst.State != proto.InstanceTerminated || inst.TerminatedAt == nil {
		inst.State = proto.InstanceTerminated
		if inst.TerminatedAt == nil {
			inst.TerminatedAt = &now
		}
	}
	inst.Status = proto.StatusOffline
	inst.UpdatedAt = now
	b.Update(proto.KindInstance, inst.ID, e.ModifyIndex, inst)
	return nil
}
