package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"sync"
	"time"
)

// Target is a manager the clients may talk to.
type Target struct {
	Name string
	API  string // 12.03 base URL
}

// Workload drives the clients: security-group clients (create, put, get,
// delete, list, stale get) and instance clients (create, poweroff,
// poweron, delete, get), each request to a manager chosen at random.
type Workload struct {
	API     *API
	Targets []Target
	H       *History
	Seed    uint64
	// KeysLive is how many groups the clients keep in use (8).
	KeysLive int
	// InstancesLive is how many instances they keep (3); MaxInstances
	// bounds creates over the run.
	InstancesLive, MaxInstances int
	// Network and Image are what instances are created with.
	Network, Image string

	mu sync.Mutex
	// keys are every group of the run (the final read covers them all);
	// active the ones clients still use: not known deleted, plus the last
	// keepGone known deleted (reads of those catch resurrections).
	keys      []*kvKey
	active    []*kvKey
	gone      []*kvKey
	nextKey   int
	insts     []*instTrack
	instMade  int
	lostInsts int
	findings  []string
	failures  map[string]int // why requests failed, by op and cause
}

// kvKey is one security group of the workload.
type kvKey struct {
	name    string
	id      string // "" until a create is acknowledged
	lost    bool   // its create's outcome is unknown: never written again
	retired bool   // written enough, or ambiguous twice: reads and delete only
	deleted bool   // a delete was sent
	unknown int
	writes  int
	listed  int // list reads recorded while its create was unknown
}

// keepGone is how many deleted groups stay in use for reads.
const keepGone = 8

// retire takes k out of use for writes; dead says it is known deleted
// (or never existed). Called with w.mu held.
func (w *Workload) retireLocked(k *kvKey, dead bool) {
	k.retired = true
	if !dead {
		return
	}
	w.active = slices.DeleteFunc(w.active, func(x *kvKey) bool { return x == k })
	w.gone = append(w.gone, k)
	if len(w.gone) > keepGone {
		w.gone = w.gone[1:]
	}
}

type instTrack struct {
	id    string
	host  string // host node it was last seen on ("" unknown)
	ended bool   // seen terminated
	ops   int
}

func (w *Workload) target(rnd *rand.Rand) Target { return w.Targets[rnd.IntN(len(w.Targets))] }

// note counts why a request did not succeed.
func (w *Workload) note(op string, res Response) {
	if res.Err == nil {
		return
	}
	cause := fmt.Sprintf("HTTP %d %s", res.Status, res.Code)
	if res.Status == 0 {
		cause = errorClass(res.Err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failures == nil {
		w.failures = map[string]int{}
	}
	w.failures[op+": "+cause]++
}

// Failures lists why requests failed, with counts.
func (w *Workload) Failures() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ks []string
	for k := range w.failures {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	s := ""
	for _, k := range ks {
		s += fmt.Sprintf("\n  %5d %s", w.failures[k], k)
	}
	return s
}

func (w *Workload) finding(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.findings = append(w.findings, fmt.Sprintf(format, args...))
}

// Findings are anomalies the clients saw outside the models (a group
// created twice under one name).
func (w *Workload) Findings() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.findings...)
}

// Run starts kvClients and instClients clients and returns when ctx ends
// and every client has finished its request in flight.
func (w *Workload) Run(ctx context.Context, kvClients, instClients int) {
	if w.KeysLive == 0 {
		w.KeysLive = 8
	}
	if w.InstancesLive == 0 {
		w.InstancesLive = 3
	}
	var wg sync.WaitGroup
	for c := 0; c < kvClients+instClients; c++ {
		rnd := rand.New(rand.NewPCG(w.Seed, uint64(c)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var ok bool
				if c < kvClients {
					ok = w.kvStep(c, rnd)
				} else {
					ok = w.instStep(c, rnd)
				}
				// Pacing (not a wait for an outcome): keep the load
				// within what a shared 2-core machine takes, and back
				// off while the cluster fails requests.
				pause := time.Duration(20+rnd.IntN(40)) * time.Millisecond
				if !ok {
					pause = time.Duration(200+rnd.IntN(300)) * time.Millisecond
				}
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
	wg.Wait()
}

// ---- security groups ----

func (w *Workload) pickKey(rnd *rand.Rand, fn func(k *kvKey) bool) *kvKey {
	w.mu.Lock()
	defer w.mu.Unlock()
	var c []*kvKey
	for _, k := range append(w.active, w.gone...) {
		if fn(k) {
			c = append(c, k)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[rnd.IntN(len(c))]
}

func writable(k *kvKey) bool { return k.id != "" && !k.lost && !k.retired && !k.deleted }

// kvStep runs one group operation; false means the request failed.
func (w *Workload) kvStep(c int, rnd *rand.Rand) bool {
	w.mu.Lock()
	live := 0
	for _, k := range w.active {
		if writable(k) {
			live++
		}
	}
	w.mu.Unlock()
	value := fmt.Sprintf("c%d-%d", c, rnd.Uint32())
	known := func(k *kvKey) bool { return k.id != "" }
	p := rnd.IntN(100)
	switch {
	case live < w.KeysLive || p < 4:
		return w.kvCreate(c, rnd, value)
	case p < 34:
		if k := w.pickKey(rnd, known); k != nil {
			return w.kvGet(c, rnd, k)
		}
	case p < 50:
		if k := w.pickKey(rnd, known); k != nil {
			return w.kvStaleGet(rnd, k)
		}
	case p < 82:
		if k := w.pickKey(rnd, writable); k != nil {
			return w.kvWrite(c, rnd, k, KVPut, value)
		}
	case p < 88:
		// Retired groups go first, so that the live set keeps turning over.
		k := w.pickKey(rnd, func(k *kvKey) bool { return k.id != "" && k.retired && !k.deleted })
		if k == nil {
			k = w.pickKey(rnd, writable)
		}
		if k != nil {
			return w.kvWrite(c, rnd, k, KVDelete, "")
		}
	default:
		return w.kvList(c, rnd)
	}
	return true
}

func (w *Workload) kvCreate(c int, rnd *rand.Rand, value string) bool {
	w.mu.Lock()
	w.nextKey++
	k := &kvKey{name: fmt.Sprintf("k%04d", w.nextKey)}
	w.keys = append(w.keys, k)
	w.active = append(w.active, k)
	w.mu.Unlock()
	in := KVInput{Op: KVCreate, Key: k.name, Value: value}
	call := w.H.Now()
	res := w.API.Do(context.Background(), w.target(rnd).API, "POST", "/security_groups.json",
		url.Values{"display_name": {k.name}, "description": {value}}, Account)
	end := w.H.Now()
	w.note("group create", res)
	out := KVOutput{Outcome: res.Outcome(false)}
	w.mu.Lock()
	switch out.Outcome {
	case OK:
		id, _ := res.Map()["id"].(string)
		if id == "" {
			w.findings = append(w.findings, fmt.Sprintf("create of %s answered 200 without an id: %v", k.name, res.Doc))
			k.lost = true
		}
		k.id = id
		k.writes++
	case Unknown:
		k.lost, k.retired = true, true
	case Failed, Refused:
		k.deleted = true
		w.retireLocked(k, true) // never existed
	}
	w.mu.Unlock()
	w.H.AddKV(c, in, call, out, end)
	return out.Outcome == OK
}

// kvWrite sends a put (value) or a delete of k.
func (w *Workload) kvWrite(c int, rnd *rand.Rand, k *kvKey, op, value string) bool {
	w.mu.Lock()
	id := k.id
	if op == KVDelete {
		k.deleted = true
	}
	w.mu.Unlock()
	in := KVInput{Op: op, Key: k.name, Value: value}
	call := w.H.Now()
	var res Response
	if op == KVPut {
		res = w.API.Do(context.Background(), w.target(rnd).API, "PUT", "/security_groups/"+id+".json",
			url.Values{"description": {value}}, Account)
	} else {
		res = w.API.Do(context.Background(), w.target(rnd).API, "DELETE", "/security_groups/"+id+".json", nil, Account)
	}
	end := w.H.Now()
	w.note("group "+op, res)
	out := KVOutput{Outcome: res.Outcome(true)}
	w.mu.Lock()
	k.writes++
	if out.Outcome == Unknown {
		k.unknown++
	}
	switch {
	case out.Outcome == NotFound || (op == KVDelete && out.Outcome == OK):
		w.retireLocked(k, true)
	case k.unknown >= 2 || k.writes >= 30:
		// Each unknown write stays pending to the end of the history;
		// bounding them per key keeps the check cheap.
		w.retireLocked(k, false)
	}
	w.mu.Unlock()
	w.H.AddKV(c, in, call, out, end)
	return out.Outcome == OK || out.Outcome == NotFound
}

// kvGet is a linearizable read (the default: the leader answers after
// confirming it leads).
func (w *Workload) kvGet(c int, rnd *rand.Rand, k *kvKey) bool {
	call := w.H.Now()
	res := w.API.Do(context.Background(), w.target(rnd).API, "GET", "/security_groups/"+k.id+".json", nil, Account)
	end := w.H.Now()
	out := KVOutput{Outcome: res.Outcome(true)}
	switch out.Outcome {
	case OK:
		out.Value, _ = res.Map()["description"].(string)
	case NotFound:
	default:
		return false // a failed read says nothing
	}
	w.H.AddKV(c, KVInput{Op: KVGet, Key: k.name}, call, out, end)
	return true
}

// kvStaleGet reads from one manager's own copy.
func (w *Workload) kvStaleGet(rnd *rand.Rand, k *kvKey) bool {
	t := w.target(rnd)
	call := w.H.Now()
	res := w.API.Do(context.Background(), t.API, "GET", "/security_groups/"+k.id+".json?stale=true", nil, Account)
	end := w.H.Now()
	r := StaleRead{Manager: t.Name, Key: k.name, Call: call, Return: end}
	switch res.Outcome(true) {
	case OK:
		r.Found = true
		r.Value, _ = res.Map()["description"].(string)
	case NotFound:
	default:
		return false
	}
	w.H.AddStale(r)
	return true
}

// kvList reads every group of the account in one linearizable read and
// records it as a read of each key whose create was called before the list
// returned (later ones cannot be in it).
func (w *Workload) kvList(c int, rnd *rand.Rand) bool {
	call := w.H.Now()
	res := w.API.Do(context.Background(), w.target(rnd).API, "GET", "/security_groups.json?limit=100000", nil, Account)
	end := w.H.Now()
	if res.Outcome(false) != OK {
		return false
	}
	w.recordList(c, call, end, res, false)
	return true
}

// recordList turns a list answer into per-key reads: of the groups in use
// (a group whose create is unknown for its first few lists), or of every
// group for the final read.
func (w *Workload) recordList(c int, call, end int64, res Response, all bool) {
	docs, total, err := listResults(res.Doc)
	if err != nil || total != len(docs) {
		w.finding("security group list: %d of %d listed (%v)", len(docs), total, err)
		return
	}
	byName := map[string][]map[string]any{}
	for _, d := range docs {
		n, _ := d["display_name"].(string)
		byName[n] = append(byName[n], d)
	}
	w.mu.Lock()
	var keys []*kvKey
	if all {
		keys = append(keys, w.keys...)
	} else {
		for _, k := range append(w.active, w.gone...) {
			if k.lost {
				if k.listed >= 5 {
					continue
				}
				k.listed++
			}
			keys = append(keys, k)
		}
	}
	w.mu.Unlock()
	for _, k := range keys {
		ds := byName[k.name]
		if len(ds) > 1 {
			w.finding("%d security groups named %s: one create made several", len(ds), k.name)
		}
		out := KVOutput{Outcome: NotFound}
		if len(ds) > 0 {
			out.Outcome = OK
			out.Value, _ = ds[0]["description"].(string)
		}
		w.H.AddKV(c, KVInput{Op: KVGet, Key: k.name}, call, out, end)
	}
}

// ---- instances ----

// instStep runs one instance operation; false means the request failed.
func (w *Workload) instStep(c int, rnd *rand.Rand) bool {
	w.mu.Lock()
	var live []*instTrack
	for _, i := range w.insts {
		if !i.ended {
			live = append(live, i)
		}
	}
	canCreate := w.MaxInstances == 0 || w.instMade < w.MaxInstances
	w.mu.Unlock()
	if len(live) < w.InstancesLive && canCreate {
		return w.instCreate(c, rnd)
	}
	if len(live) == 0 {
		return true
	}
	i := live[rnd.IntN(len(live))]
	w.mu.Lock()
	ops := i.ops // other clients' gets count it up under w.mu
	w.mu.Unlock()
	p := rnd.IntN(100)
	switch {
	case p < 40:
		return w.instGet(c, rnd, i)
	case p < 65:
		return w.instAction(c, rnd, i, InstPoweroff)
	case p < 90:
		return w.instAction(c, rnd, i, InstPoweron)
	case ops > 12 && canCreate:
		return w.instAction(c, rnd, i, InstDelete)
	default:
		return w.instGet(c, rnd, i)
	}
}

func (w *Workload) instCreate(c int, rnd *rand.Rand) bool {
	form := url.Values{
		"image_id": {w.Image}, "hypervisor": {"dummy"}, "cpu_cores": {"1"}, "memory_size": {"128"},
		"vifs": {fmt.Sprintf(`{"eth0":{"index":"0","network":%q}}`, w.Network)},
	}
	call := w.H.Now()
	res := w.API.Do(context.Background(), w.target(rnd).API, "POST", "/instances.json", form, Account)
	end := w.H.Now()
	w.note("instance create", res)
	o := res.Outcome(false)
	w.mu.Lock()
	defer w.mu.Unlock()
	if o != Failed && o != Refused {
		w.instMade++ // the budget counts creates that may have made one
	}
	switch o {
	case OK:
		id, _ := res.Map()["id"].(string)
		w.insts = append(w.insts, &instTrack{id: id})
		w.H.AddInst(c, InstInput{Op: InstCreate, ID: id}, call, InstOutput{Outcome: OK}, end)
	case Unknown:
		// No id to follow it by; the final checks find it in the list.
		w.lostInsts++
	}
	return o == OK
}

func (w *Workload) instAction(c int, rnd *rand.Rand, i *instTrack, op string) bool {
	path := map[string]string{
		InstPoweroff: "/instances/" + i.id + "/poweroff.json",
		InstPoweron:  "/instances/" + i.id + "/poweron.json",
		InstDelete:   "/instances/" + i.id + ".json",
	}[op]
	method := "PUT"
	var form url.Values
	switch op {
	case InstDelete:
		method = "DELETE"
	case InstPoweroff:
		form = url.Values{"force": {"true"}}
	default:
		form = url.Values{}
	}
	call := w.H.Now()
	res := w.API.Do(context.Background(), w.target(rnd).API, method, path, form, Account)
	end := w.H.Now()
	if res.Code != "125" {
		w.note("instance "+op, res)
	}
	out := InstOutput{Outcome: res.Outcome(false)}
	if out.Outcome == Failed && res.Sent {
		w.finding("%s %s refused with %d/%s, not 400/125: %v", op, i.id, res.Status, res.Code, res.Err)
	}
	w.mu.Lock()
	i.ops++
	w.mu.Unlock()
	w.H.AddInst(c, InstInput{Op: op, ID: i.id}, call, out, end)
	return out.Outcome == OK || res.Code == "125"
}

func (w *Workload) instGet(c int, rnd *rand.Rand, i *instTrack) bool {
	call := w.H.Now()
	res := w.API.Do(context.Background(), w.target(rnd).API, "GET", "/instances/"+i.id+".json", nil, Account)
	end := w.H.Now()
	if res.Outcome(false) != OK {
		return false
	}
	st, _ := res.Map()["state"].(string)
	w.mu.Lock()
	i.ops++
	if st == "terminated" {
		i.ended = true
	}
	if h, ok := res.Map()["host_node"].(string); ok && h != "" {
		i.host = h
	}
	w.mu.Unlock()
	w.H.AddInst(c, InstInput{Op: InstGet, ID: i.id}, call, InstOutput{Outcome: OK, State: st}, end)
	return true
}

// HvaLost records that the hva of host node host was lost between from
// and to (killed at from = to: its restart forgets the dummy's domains; or
// cut off the managers long enough for HA to evacuate its host) in the
// history of every instance that may be on it, as client c.
func (w *Workload) HvaLost(c int, host string, from, to int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, i := range w.insts {
		if i.host == "" || i.host == host {
			w.H.AddInst(c, InstInput{Op: InstHvaLost, ID: i.id}, from, InstOutput{Outcome: OK}, to)
		}
	}
}

// Instances are the ids of the instances whose create was acknowledged.
func (w *Workload) Instances() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, i := range w.insts {
		out = append(out, i.id)
	}
	sort.Strings(out)
	return out
}

// Stats summarises the workload's bookkeeping.
func (w *Workload) Stats() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	lost := 0
	for _, k := range w.keys {
		if k.lost {
			lost++
		}
	}
	return fmt.Sprintf("%d groups (%d with an unknown create), %d instances created (%d with an unknown create)",
		len(w.keys), lost, w.instMade, w.lostInsts)
}

// FinalReads records, after the faults are healed, one read of every group
// (a list) and of every instance, through target, as client c.
func (w *Workload) FinalReads(ctx context.Context, t Target, c int) error {
	call := w.H.Now()
	res := w.API.Do(ctx, t.API, "GET", "/security_groups.json?limit=100000", nil, Account)
	end := w.H.Now()
	if res.Outcome(false) != OK {
		return fmt.Errorf("final list of security groups: %v", res.Err)
	}
	w.recordList(c, call, end, res, true)
	for _, id := range w.Instances() {
		call := w.H.Now()
		res := w.API.Do(ctx, t.API, "GET", "/instances/"+id+".json", nil, Account)
		end := w.H.Now()
		if res.Outcome(false) != OK {
			return fmt.Errorf("final read of instance %s: %v", id, res.Err)
		}
		st, _ := res.Map()["state"].(string)
		w.H.AddInst(c, InstInput{Op: InstGet, ID: id}, call, InstOutput{Outcome: OK, State: st}, end)
	}
	return nil
}
