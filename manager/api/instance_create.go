package api

import (
	"context"
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/common/errs"
	"github.com/vdc-project/vdc/manager/api/params"
	"github.com/vdc-project/vdc/manager/state"
	"github.com/vdc-project/vdc/proto"
)

// POST /instances (spec §2.1 item 5).
//
// What is created now and what the scheduler creates: the request commits
// the instance (state scheduling, status init), its volumes (state
// scheduling), the hostname claim and the job scheduler.schedule_instance in
// one raft transaction. The vifs are NOT created here: the scheduler decides
// them (network scheduler, MACs, addresses) from request_params.vifs, which
// the instance keeps exactly as the client sent it, and the leader creates
// the vif, IP lease and MAC claim records when it applies the plan. Manual
// addresses (vifs.*.mac_addr, ipv4_addr, nat_ipv4_addr) are therefore
// validated here with the full 12.03 error codes and asserted free at
// commit (CheckAbsent on their lease and claim keys), but they are claimed
// when the plan applies: claiming them now would make the plan's own create
// of the same key fail and the scheduler see them as taken. A concurrent
// request for the same manual address between this commit and the plan makes
// that plan fail, and the instance ends terminated with last_error.

// Limits of the create parameters.
const (
	minCPUCores   = 1
	maxCPUCores   = 128
	minMemorySize = 128
	maxMemorySize = 999999
)

var hostnameRE = regexp.MustCompile(`^[0-9a-z][0-9a-z-]{0,31}$`)

// Image boot device types.
const bootDevLocal = 2

// Backup object state the API never writes but settles on.
const boPurged = "purged"

// Volume status default.
const volumeStatusInitialized = "initialized"

// opSet.check guards a record once per txn (a second op on the same record
// would make the FSM refuse the txn).
func (o *opSet) check(kind, id string, index uint64) {
	if o.first(kind, id) {
		o.b.Check(kind, id, index)
	}
}

func (o *opSet) checkAbsent(kind, id string) {
	if o.first(kind, id) {
		o.b.CheckAbsent(kind, id)
	}
}

// scalarStr renders a decoded scalar (form string, JSON number or boolean)
// as the string Ruby's to_s gave; maps and lists are "".
func scalarStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func asParams(v any) (params.Params, bool) {
	switch m := v.(type) {
	case map[string]any:
		return m, true
	case params.Params:
		return m, true
	}
	return nil, false
}

// decodeVifs reads `vifs`: JSON object text or a Rack nested hash, each
// value a hash. Names come in document order for JSON and sorted for hashes
// (validation order only; the scheduler reads the stored parameter).
func decodeVifs(raw any) ([]params.Params, error) {
	bad := errs.New(errs.InvalidParameter, "vifs")
	var vals []params.Params
	switch x := raw.(type) {
	case nil:
		return nil, nil
	case string:
		if strings.TrimSpace(x) == "" {
			return nil, nil
		}
		dec := json.NewDecoder(strings.NewReader(x))
		dec.UseNumber()
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return nil, bad
		}
		for dec.More() {
			if _, err := dec.Token(); err != nil {
				return nil, bad
			}
			var m map[string]any
			if err := dec.Decode(&m); err != nil || m == nil {
				return nil, bad
			}
			vals = append(vals, m)
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('}') {
			return nil, bad
		}
		if _, err := dec.Token(); err == nil {
			return nil, bad
		}
	default:
		m, ok := asParams(x)
		if !ok {
			return nil, bad
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			v, ok := asParams(m[k])
			if !ok {
				return nil, bad
			}
			vals = append(vals, v)
		}
	}
	return vals, nil
}

// groupList reads a security group list: one string (comma or space
// separated), an array, or an index hash; blanks are ignored.
func groupList(v any) ([]string, bool) {
	var raw []string
	switch x := v.(type) {
	case nil:
		return nil, true
	case []any:
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			raw = append(raw, s)
		}
	default:
		ss, ok := params.Params{"x": v}.Strings("x")
		if !ok {
			return nil, false
		}
		raw = ss
	}
	var out []string
	for _, s := range raw {
		for _, g := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
			if !slices.Contains(out, g) {
				out = append(out, g)
			}
		}
	}
	return out, true
}

// securityGroupsParam resolves a security group list through own lookups
// (404/100 for unknown or foreign groups) and guards each group.
func securityGroupsParam(tx *state.Tx, o *opSet, req *Request, v any) ([]string, error) {
	ids, ok := groupList(v)
	if !ok {
		return nil, errs.New(errs.InvalidParameter, "security_groups")
	}
	out := []string{}
	for _, id := range ids {
		sg, m, err := getOwned[proto.SecurityGroup](tx, req, proto.KindSecurityGroup, proto.PrefixSecurityGroup, id)
		if err != nil {
			return nil, err
		}
		o.check(proto.KindSecurityGroup, sg.ID, m.ModifyIndex)
		if !slices.Contains(out, sg.ID) {
			out = append(out, sg.ID)
		}
	}
	return out, nil
}

// sshKeyParam looks an ssh key pair up by uuid with no ownership check, as
// upstream; "" means none. A malformed, unknown or deleted key is 404/121.
func sshKeyParam(tx *state.Tx, id string) (*proto.SshKeyPair, state.Meta, error) {
	if id == "" {
		return nil, state.Meta{}, nil
	}
	if checkUUID(id, proto.PrefixSshKeyPair) != nil {
		return nil, state.Meta{}, errs.New(errs.UnknownSshKeyPair, "%s", id)
	}
	var k proto.SshKeyPair
	m, err := tx.Get(proto.KindSshKeyPair, id, &k)
	if errs.Is(err, errs.NotFound) || (err == nil && k.DeletedAt != nil) {
		return nil, m, errs.New(errs.UnknownSshKeyPair, "%s", id)
	}
	if err != nil {
		return nil, m, err
	}
	return &k, m, nil
}

// onlineHosts returns the host nodes open for scheduling: agent online and
// scheduling_enabled (§3.4).
func onlineHosts(tx *state.Tx) ([]*proto.HostNode, error) {
	var out []*proto.HostNode
	err := tx.Each(proto.KindHostNode, false, func(e state.Entry) error {
		h := new(proto.HostNode)
		if err := decodeInto(e, h); err != nil {
			return err
		}
		if !h.SchedulingEnabled {
			return nil
		}
		st, err := nodeStatus(tx, h.NodeID)
		if err != nil || st != nodeOnline {
			return err
		}
		out = append(out, h)
		return nil
	})
	return out, err
}

// hostUsage reads what the instances placed on a host take.
func hostUsage(tx *state.Tx, hostID string) (proto.HostUsage, error) {
	var u proto.HostUsage
	_, err := tx.Get(proto.KindHostUsage, hostID, &u)
	if errs.Is(err, errs.NotFound) {
		return proto.HostUsage{ID: hostID}, nil
	}
	return u, err
}

// checkCapacity is the aggregate check: what the online hosts offer minus
// what is placed on them, minus the stopped instances (which hold no host but
// come back) weighted by stopped_instance_usage_factor, must hold the request.
func (a *API) checkCapacity(tx *state.Tx, hosts []*proto.HostNode, cpu, mem int64) error {
	var freeCPU, freeMem float64
	for _, h := range hosts {
		ucpu, umem, err := a.hostCache.used(tx, h.ID)
		if err != nil {
			return err
		}
		freeCPU += float64(h.OfferingCPUCores - ucpu)
		freeMem += float64(h.OfferingMemorySize - umem)
	}
	err := state.EachOfIn(tx, state.IdxInstancesByState, proto.InstanceStopped, false, func(v *proto.Instance, _ state.Meta) error {
		freeCPU -= a.cfg.StoppedInstanceUsageFactor * float64(v.CPUCores)
		freeMem -= a.cfg.StoppedInstanceUsageFactor * float64(v.MemorySize)
		return nil
	})
	if err != nil {
		return err
	}
	if freeCPU < float64(cpu) || freeMem < float64(mem) {
		return errs.New(errs.OutOfHostCapacity, "no host capacity left for %d cores and %d MB", cpu, mem)
	}
	return nil
}

// rangedInt reads a required integer in [lo, hi]; missing counts as 0.
func rangedInt(p params.Params, key string, lo, hi int64) (int64, error) {
	n, _, err := p.Int(key)
	if err != nil || n < lo || n > hi {
		return 0, errs.New(errs.InvalidParameter, "%s", key)
	}
	return n, nil
}

// byteSize parses a byte-unit string: a number with an optional K/M/G/T
// suffix (binary multiples, optional trailing B or iB, any case); a bare
// number is bytes.
func byteSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	u := strings.ToUpper(s)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "IB"), "B")
	mult := float64(1)
	if n := len(u); n > 0 {
		switch u[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			u = u[:n-1]
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(u), 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult > math.MaxInt64/2 {
		return 0, false
	}
	return int64(f * mult), true
}

// volumeParams reads `volumes`: {idx: {backup_object_id?, size?,
// volume_type (local|shared), display_name?, description?,
// guest_device_name?}} (or an array of such hashes). Upstream raised plain
// errors (500) for everything but a bad size; those are 400/143 here.
func volumeParams(tx *state.Tx, req *Request, o *opSet) ([]proto.Volume, error) {
	raw := req.Params.Get("volumes")
	if raw == nil {
		return nil, nil
	}
	var items []params.Params
	switch x := raw.(type) {
	case []any:
		for _, it := range x {
			m, ok := asParams(it)
			if !ok {
				return nil, errs.New(errs.InvalidParameter, "volumes")
			}
			items = append(items, m)
		}
	default:
		m, ok := asParams(x)
		if !ok {
			if s, isStr := x.(string); isStr && s == "" {
				return nil, nil
			}
			return nil, errs.New(errs.InvalidParameter, "volumes")
		}
		keys, ok := params.Params{"x": indexKeys(m)}.Strings("x")
		if !ok {
			// Non-numeric keys: take them in name order.
			keys = keys[:0]
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
		}
		for _, k := range keys {
			it, ok := asParams(m[k])
			if !ok {
				return nil, errs.New(errs.InvalidParameter, "volumes")
			}
			items = append(items, it)
		}
	}
	var out []proto.Volume
	for _, it := range items {
		var v proto.Volume
		switch it.Str("volume_type") {
		case proto.VolumeLocal:
			v.StoreType = proto.VolumeLocal
		case proto.VolumeShared:
			v.StoreType = proto.VolumeShared
		default:
			return nil, errs.New(errs.InvalidParameter, "volumes.volume_type")
		}
		if boID := it.Str("backup_object_id"); boID != "" {
			bo, m, err := getOwned[proto.BackupObject](tx, req, proto.KindBackupObject, proto.PrefixBackupObject, boID)
			if err != nil {
				return nil, err
			}
			o.check(proto.KindBackupObject, bo.ID, m.ModifyIndex)
			v.BackupObjectID = &bo.ID
			v.Size = bo.Size
		}
		if it.Has("size") {
			n, ok := byteSize(it.Str("size"))
			if !ok {
				return nil, errs.New(errs.InvalidParameter, "volumes.size")
			}
			v.Size = n
		} else if v.BackupObjectID == nil {
			return nil, errs.New(errs.InvalidParameter, "volumes.size")
		}
		v.DisplayName = it.Str("display_name")
		v.GuestDeviceName = it.Str("guest_device_name")
		v.RequestParams = map[string]any(it)
		out = append(out, v)
	}
	return out, nil
}

func (a *API) createInstance(ctx context.Context, req *Request) (any, error) {
	// Upstream crashed (500) on an instance without an owner; the account
	// header is required (400/102).
	if req.Account == "" {
		return nil, errs.New(errs.InvalidCredentialHeaders, "POST /instances requires the X-VDC-Account-UUID header")
	}
	return a.commit(ctx, func(tx *state.Tx, b *state.Builder) (renderFn, error) {
		id := newID(proto.PrefixInstance)
		if err := a.planInstance(tx, b, req, id, a.now()); err != nil {
			return nil, err
		}
		return renderInstance(id), nil
	})
}

// planInstance validates POST /instances in the order of the spec's table
// and adds the instance, its volumes, its hostname claim and the scheduling
// job to b.
func (a *API) planInstance(tx *state.Tx, b *state.Builder, req *Request, id string, now time.Time) error {
	p := req.Params
	o := newOpSet(b)

	// Quotas come before the parameters, as upstream's before-filters.
	weight, _ := strconv.ParseFloat(strings.TrimSpace(p.Str("quota_weight")), 64)
	if err := a.guardQuota(tx, b, req, QuotaInstanceCount, 0, proto.KindInstance); err != nil {
		return err
	}
	if err := a.guardQuota(tx, b, req, QuotaInstanceWeight, weight, proto.KindInstance); err != nil {
		return err
	}

	// image_id: upstream checked no ownership; another account's private
	// image is unknown here (ownership.go). A deleted image cannot be
	// launched (upstream did not check).
	imgID := p.Str("image_id")
	if imgID != "" && checkUUID(imgID, proto.PrefixImage) != nil {
		return dbError("image_id %q is not an image uuid", imgID)
	}
	var img proto.Image
	im, err := tx.Get(proto.KindImage, imgID, &img)
	if imgID == "" || errs.Is(err, errs.NotFound) || (err == nil && img.DeletedAt != nil) ||
		(err == nil && !img.IsPublic && !usableBy(req.Account, img.AccountID)) {
		return errs.New(errs.InvalidImageID, "%s", imgID)
	}
	if err != nil {
		return err
	}
	var bo proto.BackupObject
	bom, err := tx.Get(proto.KindBackupObject, img.BackupObjectID, &bo)
	if errs.Is(err, errs.NotFound) {
		return errs.New(errs.InvalidImageID, "image %s has no backup object", img.ID)
	}
	if err != nil {
		return err
	}
	o.check(proto.KindImage, img.ID, im.ModifyIndex)
	o.check(proto.KindBackupObject, bo.ID, bom.ModifyIndex)

	hv, _ := p.StrOK("hypervisor")
	if hv == "" {
		return errs.New(errs.InvalidParameter, "hypervisor")
	}
	hosts, err := a.hostCache.onlineHosts(tx)
	if err != nil {
		return err
	}
	active := false
	for _, h := range hosts {
		active = active || h.Hypervisor == hv
	}
	if !active {
		return errs.New(errs.InvalidParameter, "Unknown/Inactive hypervisor:%s", hv)
	}
	cpu, err := rangedInt(p, "cpu_cores", minCPUCores, maxCPUCores)
	if err != nil {
		return err
	}
	mem, err := rangedInt(p, "memory_size", minMemorySize, maxMemorySize)
	if err != nil {
		return err
	}
	if err := a.checkCapacity(tx, hosts, cpu, mem); err != nil {
		return err
	}

	if err := a.checkVifs(tx, req, o); err != nil {
		return err
	}

	if p.Has("quota_weight") {
		s := strings.TrimSpace(p.Str("quota_weight"))
		if s != "" {
			w, err := strconv.ParseFloat(s, 64)
			if err != nil || math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
				return errs.New(errs.InvalidParameter, "quota_weight")
			}
		}
	}
	userData := p.Str("user_data")

	hostname := strings.ToLower(strings.TrimPrefix(id, proto.PrefixInstance+"-"))
	if p.Has("hostname") && p.Get("hostname") != nil {
		s, ok := p.StrOK("hostname")
		if !ok {
			return dbError("hostname must be a string")
		}
		if s != "" {
			hostname = strings.ToLower(s)
			if !hostnameRE.MatchString(hostname) {
				return dbError("hostname %q must match %s", s, hostnameRE)
			}
		}
	}
	claim := hostnameClaim(req.Account, hostname)
	if tx.Exists(proto.KindUniqueName, claim) {
		return errs.New(errs.DuplicateHostname, "%s", hostname)
	}

	var sshID *string
	if k, km, err := sshKeyParam(tx, p.Str("ssh_key_id")); err != nil {
		return err
	} else if k != nil && !usableBy(req.Account, k.AccountID) {
		return errs.New(errs.UnknownSshKeyPair, "%s", k.ID) // another account's (ownership.go)
	} else if k != nil {
		sshID = &k.ID
		o.check(proto.KindSshKeyPair, k.ID, km.ModifyIndex)
	}

	labels, err := createLabels(p, now)
	if err != nil {
		return err
	}
	extra, err := volumeParams(tx, req, o)
	if err != nil {
		return err
	}

	pin, err := a.pinnedHost(tx, req, &img, cpu, mem, o)
	if err != nil {
		return err
	}

	mon := &instMonitoring{MailAddress: []string{}, Items: []monitorItem{}}
	if p.Has("monitoring") {
		mp, ok := p.Map("monitoring")
		if !ok {
			return errs.New(errs.InvalidParameter, "monitoring")
		}
		if err := mon.setFromParams(mp, true); err != nil {
			return err
		}
		for i := range mon.Items {
			mon.Items[i].ID = mon.nextID(id)
		}
	}

	// request_params keep what the client sent (the scheduler reads vifs and
	// the host pin from them) except user_data, stored once in its column.
	rp := make(map[string]any, len(p))
	for k, v := range p {
		if k != "user_data" {
			rp[k] = v
		}
	}
	bootID := newID(proto.PrefixVolume)
	inst := proto.Instance{
		ID:           id,
		Timestamps:   stamps(now),
		AccountID:    req.Account,
		HostNodeID:   pin,
		ImageID:      img.ID,
		Arch:         img.Arch,
		Hypervisor:   hv,
		CPUCores:     int(cpu),
		MemorySize:   mem,
		QuotaWeight:  weight,
		State:        proto.InstanceScheduling,
		Status:       proto.StatusInit,
		SshKeyPairID: sshID,
		Hostname:     hostname,
		HaEnabled:    p.IsTrue("ha_enabled"),
		DisplayName:  p.Str("display_name"),
		// The image decides the service type; the parameter is ignored.
		ServiceType:   img.ServiceType,
		UserData:      userData,
		BootVolumeID:  bootID,
		RequestParams: rp,
		Monitoring:    mon.store(),
		Labels:        labels,
	}
	boot := proto.Volume{
		ID: bootID, StoreType: proto.VolumeShared, Size: bo.Size, BackupObjectID: &bo.ID,
	}
	if img.BootDevType == bootDevLocal {
		boot.StoreType = proto.VolumeLocal
	}
	vols := append([]proto.Volume{boot}, extra...)
	instID := id
	for i := range vols {
		v := &vols[i]
		if v.ID == "" {
			v.ID = newID(proto.PrefixVolume)
		}
		v.Timestamps = stamps(now)
		v.AccountID = req.Account
		v.State = proto.VolumeScheduling
		v.Status = volumeStatusInitialized
		v.InstanceID = &instID
		v.ServiceType = inst.ServiceType
		v.Labels = []proto.Label{}
		b.Create(proto.KindVolume, v.ID, v)
	}
	b.Create(proto.KindInstance, id, &inst)
	b.Create(proto.KindUniqueName, claim, proto.UniqueName{ID: claim, Owner: id})
	return enqueueJob(b, now, proto.EndpointScheduler, proto.VerbScheduleInstance, id,
		proto.ScheduleInstanceRequest{InstanceID: id})
}

// pinnedHost reads host_id / host_pool_id / host_node_id (first set wins,
// as the SpecifyNode scheduler reads them): unknown 404/114, not online
// 400/141, other hypervisor or arch 400/179, full 400/120. The instance
// shows the pinned host from the start, as upstream.
func (a *API) pinnedHost(tx *state.Tx, req *Request, img *proto.Image, cpu, mem int64, o *opSet) (*string, error) {
	var hid string
	for _, k := range [...]string{"host_id", "host_pool_id", "host_node_id"} {
		if hid = req.Params.Str(k); hid != "" {
			break
		}
	}
	if hid == "" {
		return nil, nil
	}
	if checkUUID(hid, proto.PrefixHostNode) != nil {
		return nil, errs.New(errs.UnknownHostNode, "%s", hid)
	}
	var h proto.HostNode
	hm, err := tx.Get(proto.KindHostNode, hid, &h)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.New(errs.UnknownHostNode, "%s", hid)
	}
	if err != nil {
		return nil, err
	}
	st, err := nodeStatus(tx, h.NodeID)
	if err != nil {
		return nil, err
	}
	if st != nodeOnline || !h.SchedulingEnabled {
		return nil, errs.New(errs.InvalidHostNodeID, "%s is not online", h.ID)
	}
	if h.Hypervisor != req.Params.Str("hypervisor") || h.Arch != img.Arch {
		return nil, errs.New(errs.IncompatibleHostNode, "%s runs %s/%s, the instance needs %s/%s",
			h.ID, h.Hypervisor, h.Arch, req.Params.Str("hypervisor"), img.Arch)
	}
	u, err := hostUsage(tx, h.ID)
	if err != nil {
		return nil, err
	}
	if h.OfferingCPUCores-int64(u.CPUCores) < cpu || h.OfferingMemorySize-u.MemorySize < mem {
		return nil, errs.New(errs.OutOfHostCapacity, "%s has not enough free cores or memory", h.ID)
	}
	o.check(proto.KindHostNode, h.ID, hm.ModifyIndex)
	return &h.ID, nil
}

// checkVifs validates `vifs` (see the file comment for why nothing is
// created here).
func (a *API) checkVifs(tx *state.Tx, req *Request, o *opSet) error {
	vals, err := decodeVifs(req.Params.Get("vifs"))
	if err != nil {
		return err
	}
	macs := map[string]bool{}
	ips := map[string]bool{}
	for _, v := range vals {
		nw, err := vifNetwork(tx, v, "network", o)
		if err != nil {
			return err
		}
		if nw != nil && !usableBy(req.Account, nw.AccountID) {
			return errs.New(errs.UnknownNetwork, "%s", nw.ID) // another account's (ownership.go)
		}
		if _, err := securityGroupsParam(tx, o, req, groupsValue(v)); err != nil {
			return err
		}
		if mac := strings.ToLower(strings.TrimSpace(scalarStr(v["mac_addr"]))); mac != "" {
			if err := checkManualMAC(tx, mac, macs, o); err != nil {
				return err
			}
		}
		if err := checkManualIP(tx, nw, strings.TrimSpace(scalarStr(v["ipv4_addr"])), ips, o); err != nil {
			return err
		}
		nat, err := vifNetwork(tx, v, "nat_network", o)
		if err != nil {
			return err
		}
		if nat != nil && !usableBy(req.Account, nat.AccountID) {
			return errs.New(errs.UnknownNetwork, "%s", nat.ID)
		}
		if err := checkManualIP(tx, nat, strings.TrimSpace(scalarStr(v["nat_ipv4_addr"])), ips, o); err != nil {
			return err
		}
	}
	return nil
}

// groupsValue returns a vif template's security_groups, dropping a nil.
func groupsValue(v params.Params) any {
	g := v["security_groups"]
	if s, ok := g.(json.Number); ok {
		return s.String()
	}
	return g
}

// vifNetwork resolves a vif template's network (key "network" or
// "nat_network"). Absent: no network (the scheduler makes a NIC without
// one). Empty or malformed: 400/110 as upstream's model error. Unknown:
// 404/129 (upstream crashed). Its DC network missing: 404/163.
func vifNetwork(tx *state.Tx, v params.Params, key string, o *opSet) (*proto.Network, error) {
	raw, ok := v[key]
	if !ok || raw == nil {
		return nil, nil
	}
	id := strings.TrimSpace(scalarStr(raw))
	if checkUUID(id, proto.PrefixNetwork) != nil {
		return nil, dbError("vifs.%s %q is not a network uuid", key, id)
	}
	var nw proto.Network
	m, err := tx.Get(proto.KindNetwork, id, &nw)
	if errs.Is(err, errs.NotFound) {
		return nil, errs.New(errs.UnknownNetwork, "%s", id)
	}
	if err != nil {
		return nil, err
	}
	if !tx.Exists(proto.KindDcNetwork, nw.DcNetworkID) {
		return nil, errs.New(errs.UnknownDcNetwork, "%s", nw.DcNetworkID)
	}
	o.check(proto.KindNetwork, nw.ID, m.ModifyIndex)
	return &nw, nil
}

// checkManualMAC: 12 hex characters (400/174), not leased and not asked for
// twice (400/175), inside the MAC range this manager hands out, vendor
// 52:54:00 (400/180).
func checkManualMAC(tx *state.Tx, mac string, seen map[string]bool, o *opSet) error {
	mac = strings.ReplaceAll(mac, ":", "")
	if len(mac) != 12 {
		return errs.New(errs.InvalidMacAddress, "%s", mac)
	}
	if _, err := strconv.ParseUint(mac, 16, 64); err != nil {
		return errs.New(errs.InvalidMacAddress, "%s", mac)
	}
	if seen[mac] || tx.Exists(proto.KindUniqueName, macClaimScope+mac) {
		return errs.New(errs.DuplicateMacAddress, "%s", mac)
	}
	if !strings.HasPrefix(mac, macVendor) {
		return errs.New(errs.MacNotInRange, "%s", mac)
	}
	seen[mac] = true
	o.checkAbsent(proto.KindUniqueName, macClaimScope+mac)
	return nil
}

// checkManualIP validates a manual address on nw: the network must exist
// (404/129), then a dotted IPv4 (400/176), not leased, reserved or asked for
// twice (400/177), inside the segment (400/178) and a DHCP range (400/181).
func checkManualIP(tx *state.Tx, nw *proto.Network, ip string, seen map[string]bool, o *opSet) error {
	if ip == "" {
		return nil
	}
	if nw == nil {
		return errs.New(errs.UnknownNetwork, "no network for address %s", ip)
	}
	v, ok := parseIPv4(ip)
	if !ok {
		return errs.New(errs.InvalidIPAddress, "%s", ip)
	}
	ip = ipString(v)
	lid := leaseID(nw.ID, ip)
	if seen[lid] || tx.Exists(proto.KindIPLease, lid) || slices.Contains(reservedAddrs(nw), v) {
		return errs.New(errs.DuplicateIPAddress, "%s is already leased on %s", ip, nw.ID)
	}
	if !networkSubnet(nw).contains(v) {
		return errs.New(errs.IPAddressNotInSegment, "%s is not in %s/%d", ip, nw.IPv4Network, nw.Prefix)
	}
	inRange := false
	for _, r := range parseRanges(nw.DhcpRanges) {
		inRange = inRange || (v >= r.begin && v <= r.end)
	}
	if !inRange {
		return errs.New(errs.IpNotInDhcpRange, "%s is not in a DHCP range of %s", ip, nw.ID)
	}
	seen[lid] = true
	o.checkAbsent(proto.KindIPLease, lid)
	return nil
}
