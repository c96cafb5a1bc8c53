package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// APIOptions configure the `api` benchmark.
type APIOptions struct {
	Clients  int           // keep-alive client goroutines sharing one http.Client
	Seed     int           // records created through the API before measuring
	Resource string        // ResourceAuto, ResourceSshKeyPairs or ResourceBackupStorages
	Warmup   time.Duration // load before the first window of each row
	Window   time.Duration // one measured window
	Reps     int           // windows per row
	// Rows, when set, are the row keys to measure (get_show, …); the
	// others are skipped.
	Rows []string
	// ProfileDir, when set, gets a CPU profile of each measured row
	// (cpu-<key>.prof); not with a whole-run profile.
	ProfileDir string
}

// DefaultAPIOptions is the full run.
func DefaultAPIOptions() APIOptions {
	return APIOptions{
		Clients: 64, Seed: 1000, Resource: ResourceAuto,
		Warmup: 500 * time.Millisecond, Window: 5 * time.Second, Reps: 3,
	}
}

// ShortAPIOptions is the smoke run of `--short`.
func ShortAPIOptions() APIOptions {
	o := DefaultAPIOptions()
	o.Seed = 60
	o.Warmup = 100 * time.Millisecond
	o.Window = 200 * time.Millisecond
	o.Reps = 1
	return o
}

// Keys of the api rows.
const (
	APIShow      = "get_show"
	APIShowStale = "get_show_stale"
	APIList10    = "get_list_10"
	APIListDef   = "get_list_default"
	APIPost      = "post_create"
)

// APIRow is one endpoint's figures.
type APIRow struct {
	Key string `json:"key"`
	Row
}

// APIResult is the `api` benchmark's table.
type APIResult struct {
	Options    APIOptions `json:"-"`
	Resource   string     `json:"resource"`
	Seeded     int        `json:"seeded"`
	SeedPerSec float64    `json:"seed_per_sec"`
	Rows       []APIRow   `json:"rows"`
}

// Find returns the row with key.
func (r *APIResult) Find(key string) (APIRow, bool) {
	for _, x := range r.Rows {
		if x.Key == key {
			return x, true
		}
	}
	return APIRow{}, false
}

// seedWorkers is the concurrency of seeding (not measured closely).
const seedWorkers = 16

// seedTimeout bounds seeding as a whole.
const seedTimeout = 5 * time.Minute

// API measures the 12.03 API of one manager on a loopback listener: show of
// random ids, list with limit 10 and the default limit, and create.
func (r *Runner) API(ctx context.Context, o APIOptions) (*APIResult, error) {
	r.progress("api: starting 1 manager with its API")
	c, err := StartCluster(ctx, r.Dir, 1, true)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	base := apiBase(c.Managers[0].URL)
	client := newHTTPClient(max(o.Clients, seedWorkers))
	defer client.CloseIdleConnections()

	res, err := resolveResource(ctx, client, base, o.Resource)
	if err != nil {
		return nil, err
	}
	out := &APIResult{Options: o, Resource: res.name}
	r.progress("api: seeding %d %s through the API", o.Seed, res.name)
	start := time.Now()
	ids, err := seed(ctx, client, base, res, o.Seed)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	out.Seeded = len(ids)
	out.SeedPerSec = float64(len(ids)) / time.Since(start).Seconds()
	if err := checkList(ctx, client, base, res, len(ids)); err != nil {
		return nil, err
	}

	get := func(u string) func(ctx context.Context, w, seq int) error {
		return func(ctx context.Context, _, _ int) error {
			_, err := expectOK(doRequest(ctx, client, http.MethodGet, u, nil))
			return err
		}
	}
	show := func(query string) func(ctx context.Context, w, seq int) error {
		return func(ctx context.Context, _, _ int) error {
			id := ids[rand.IntN(len(ids))]
			_, err := expectOK(doRequest(ctx, client, http.MethodGet, base+"/"+res.name+"/"+id+".json"+query, nil))
			return err
		}
	}
	rows := []struct {
		key, name string
		op        func(ctx context.Context, w, seq int) error
	}{
		{APIShow, fmt.Sprintf("GET /%s/{id} (random of %d)", res.name, len(ids)), show("")},
		{APIShowStale, fmt.Sprintf("GET /%s/{id}?stale=true (local read, no VerifyLeader)", res.name), show("?stale=true")},
		{APIList10, fmt.Sprintf("GET /%s?limit=10", res.name), get(base + "/" + res.name + ".json?limit=10")},
		{APIListDef, fmt.Sprintf("GET /%s (default limit 250 of %d)", res.name, len(ids)), get(base + "/" + res.name + ".json")},
		// Last, so that the lists above run over exactly the seeded records.
		{APIPost, fmt.Sprintf("POST /%s", res.name), func(ctx context.Context, w, seq int) error {
			_, err := res.create(ctx, client, base, o.Seed+w*maxOpsPerWorker+seq)
			return err
		}},
	}
	for _, row := range rows {
		if len(o.Rows) > 0 && !slices.Contains(o.Rows, row.key) {
			continue
		}
		r.progress("api: %s: measuring %d × %s with %d clients", row.name, o.Reps, o.Window, o.Clients)
		stop := func() {}
		if o.ProfileDir != "" {
			if stop, err = startCPUProfile(filepath.Join(o.ProfileDir, "cpu-"+row.key+".prof")); err != nil {
				return out, err
			}
		}
		reps, err := Load{Workers: o.Clients, Warmup: o.Warmup, Window: o.Window, Reps: o.Reps, Op: row.op}.Run(ctx)
		stop()
		if err != nil {
			return out, fmt.Errorf("%s: %w", row.name, err)
		}
		out.Rows = append(out.Rows, APIRow{Key: row.key, Row: newRow(row.name, reps)})
	}
	return out, nil
}

// seed creates n resources through the API with a few concurrent clients.
func seed(ctx context.Context, c *http.Client, base string, res resource, n int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	var (
		next  atomic.Int64
		mu    sync.Mutex
		ids   []string
		first error
		wg    sync.WaitGroup
	)
	for range seedWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				id, err := res.create(ctx, c, base, i)
				mu.Lock()
				if err != nil && first == nil {
					first = err
					cancel()
				}
				if err == nil {
					ids = append(ids, id)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if len(ids) != n {
		return nil, fmt.Errorf("created %d of %d: %w", len(ids), n, ctx.Err())
	}
	return ids, nil
}

// checkList makes sure the list rows measure what they claim: the default
// list returns min(250, n) documents of n.
func checkList(ctx context.Context, c *http.Client, base string, res resource, n int) error {
	body, err := expectOK(doRequest(ctx, c, http.MethodGet, base+"/"+res.name+".json", nil))
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	var env []struct {
		Total   int               `json:"total"`
		Results []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env) != 1 {
		return fmt.Errorf("list: not an envelope: %.200s", body)
	}
	if env[0].Total != n || len(env[0].Results) != min(250, n) {
		return fmt.Errorf("list: total %d with %d results, want %d with %d",
			env[0].Total, len(env[0].Results), n, min(250, n))
	}
	return nil
}

// WriteTable prints the result in the style of limits.md.
func (res *APIResult) WriteTable(w io.Writer) {
	o := res.Options
	fmt.Fprintf(w, "## api: 1 manager, 12.03 API on a loopback http.Server, resource %s\n\n", res.Resource)
	fmt.Fprintf(w, "%d records seeded through the API (%.0f creates/s with %d clients); %d keep-alive clients sharing one\n",
		res.Seeded, res.SeedPerSec, seedWorkers, o.Clients)
	fmt.Fprintf(w, "http.Client, header X-VDC-Account-UUID: %s; per row %s warm-up, then %d × %s.\n\n", Account, o.Warmup, o.Reps, o.Window)
	fmt.Fprintln(w, "| Endpoint | req/s min / med / max | p50 ms | p99 ms | errors | CPU per req (cores own / other) | ref. med (limits.md §5) | ratio |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, row := range res.Rows {
		var ref float64
		switch row.Key {
		case APIShow, APIShowStale:
			ref = refAPIGet
		case APIPost:
			ref = refAPIPost
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %s | %s | %s |\n",
			row.Name, fmtRate(row.Rate), fmtMs(row.P50), fmtMs(row.P99), row.Errors, cpuCell(row.Row),
			refCell(ref, "§5"), ratioCell(row.Rate.Median, ref))
	}
	fmt.Fprintln(w)
}
