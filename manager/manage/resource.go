package manage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// kind is the type of a parameter flag.
type kind int

const (
	kString kind = iota
	kInt
	kBool
)

// param maps one --kebab-case flag to one API parameter.
type param struct {
	flag  string
	name  string
	kind  kind
	def   string // flag default
	usage string
	// always sends the default even when the flag was not given (the
	// original vdc-manage defaults, e.g. --hypervisor kvm).
	always bool
	// encode writes the parameter when it is not a plain name=value.
	encode func(form url.Values, name, value string) error
}

func str(flag, name, usage string) param { return param{flag: flag, name: name, usage: usage} }
func num(flag, name, usage string) param {
	return param{flag: flag, name: name, kind: kInt, usage: usage}
}
func boolean(flag, name, usage string) param {
	return param{flag: flag, name: name, kind: kBool, usage: usage}
}

// withDefault sends def unless the flag overrides it.
func (p param) withDefault(def string) param {
	p.def, p.always = def, true
	return p
}

// optional turns defaults off: for modify, only flags given are sent.
func optional(ps []param) []param {
	out := make([]param, len(ps))
	for i, p := range ps {
		p.always, p.def = false, ""
		out[i] = p
	}
	return out
}

// register adds the params' flags to fs.
func register(fs *pflag.FlagSet, ps []param) {
	for _, p := range ps {
		switch p.kind {
		case kInt:
			n, _ := strconv.ParseInt(p.def, 10, 64)
			fs.Int64(p.flag, n, p.usage)
		case kBool:
			fs.Bool(p.flag, p.def == "true", p.usage)
		default:
			fs.String(p.flag, p.def, p.usage)
		}
	}
}

// collect writes the given (and always-sent) params into form and returns
// how many flags the user gave.
func collect(fs *pflag.FlagSet, ps []param, form url.Values) (int, error) {
	given := 0
	for _, p := range ps {
		f := fs.Lookup(p.flag)
		if f == nil || (!f.Changed && !p.always) {
			continue
		}
		if f.Changed {
			given++
		}
		v := f.Value.String()
		if p.encode != nil {
			if err := p.encode(form, p.name, v); err != nil {
				return 0, fmt.Errorf("--%s: %w", p.flag, err)
			}
			continue
		}
		form.Set(p.name, v)
	}
	return given, nil
}

func flagNames(ps []param) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = "--" + p.flag
	}
	return strings.Join(names, ", ")
}

// resource describes one API collection and its standard subcommands
// add, list, show, del and (when modify params exist) modify.
type resource struct {
	use     string
	aliases []string
	noun    string // for help texts: "host node"
	path    string // API collection: host_nodes
	prefix  string // uuid prefix: hn
	// addArg is the positional argument of add (API parameter name); "" =
	// add takes no argument.
	addArg   string
	addUsage string // placeholder shown in help: NODE_ID
	add      []param
	// addExtra registers extra add flags and returns what to run after the
	// POST (given the new id); its response, when non-nil, is printed
	// instead of the POST's.
	addExtra func(fs *pflag.FlagSet) func(ctx context.Context, a *app, c *client, id string) (*response, error)
	modify   []param
	cols     []column
	// extra adds resource-specific subcommands.
	extra func(a *app) []*cobra.Command
}

func resourceCommand(a *app, r resource) *cobra.Command {
	cmd := &cobra.Command{
		Use:     r.use,
		Aliases: r.aliases,
		Short:   "Manage " + r.noun + "s (/" + r.path + ")",
	}
	cmd.AddCommand(addCommand(a, r), listCommand(a, r.path, r.noun, r.cols),
		showCommand(a, r.path, r.noun), delCommand(a, r.path, r.noun))
	if len(r.modify) > 0 {
		cmd.AddCommand(modifyCommand(a, r))
	}
	if r.extra != nil {
		cmd.AddCommand(r.extra(a)...)
	}
	return cmd
}

func addCommand(a *app, r resource) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Register a " + r.noun + " (POST /" + r.path + ")",
		Args:  cobra.NoArgs,
	}
	if r.addArg != "" {
		cmd.Use += " " + r.addUsage
		cmd.Args = cobra.ExactArgs(1)
	}
	fs := cmd.Flags()
	uuid := fs.String("uuid", "", "caller-chosen id ("+r.prefix+"-xxxxxxxx or the bare part)")
	register(fs, r.add)
	var after func(ctx context.Context, a *app, c *client, id string) (*response, error)
	if r.addExtra != nil {
		after = r.addExtra(fs)
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		c, err := a.client()
		if err != nil {
			return err
		}
		form := url.Values{}
		if r.addArg != "" {
			form.Set(r.addArg, args[0])
		}
		if *uuid != "" {
			form.Set("uuid", *uuid)
		}
		if _, err := collect(fs, r.add, form); err != nil {
			return err
		}
		resp, err := a.create(ctx, c, r.path, r.prefix, form)
		if err != nil || resp == nil {
			return err
		}
		if after != nil {
			id, err := docID(resp.body)
			if err != nil {
				return err
			}
			more, err := after(ctx, a, c, id)
			if err != nil {
				return fmt.Errorf("%s %s was created, but: %w", r.noun, id, err)
			}
			if more != nil {
				resp = more
			}
		}
		return a.printDoc(resp.body)
	}
	return cmd
}

// create POSTs form to path. With --if-missing it first looks the --uuid up
// and, when it exists, prints "exists: ID" and returns a nil response: the
// quick start seeds with it and can be re-run.
func (a *app) create(ctx context.Context, c *client, path, prefix string, form url.Values) (*response, error) {
	if a.ifMissing {
		u := form.Get("uuid")
		if u == "" {
			return nil, fmt.Errorf("--if-missing needs --uuid (the id to look for)")
		}
		id := canonical(prefix, u)
		got, err := c.api(ctx, http.MethodGet, path+"/"+escape(id), nil)
		switch {
		case err == nil:
			if a.jsonOut() {
				fmt.Fprintf(a.errOut, "exists: %s\n", id)
				return nil, writeRaw(a.out, got.body)
			}
			_, err := fmt.Fprintf(a.out, "exists: %s\n", id)
			return nil, err
		case !isNotFound(err):
			return nil, err
		}
	}
	return c.api(ctx, http.MethodPost, path, form)
}

// canonical adds the prefix to a bare uuid (the API accepts both on create).
func canonical(prefix, u string) string {
	if strings.HasPrefix(u, prefix+"-") {
		return u
	}
	return prefix + "-" + u
}

// docID reads the "id" of a document.
func docID(body []byte) (string, error) {
	var doc struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.ID == "" {
		return "", fmt.Errorf("unexpected response without an id: %.200s", body)
	}
	return doc.ID, nil
}

func listCommand(a *app, path, noun string, cols []column) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List " + noun + "s (GET /" + path + ", all pages)",
		Args:    cobra.NoArgs,
	}
	pageSize := cmd.Flags().Int("page-size", 100, "results fetched per request")
	params := cmd.Flags().StringArray("param", nil, "extra query parameter key=value for the list route (repeatable), e.g. --param node_id=hva.demo1")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := a.client()
		if err != nil {
			return err
		}
		q := url.Values{}
		for _, kv := range *params {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("invalid --param %q: want key=value", kv)
			}
			q.Add(k, v)
		}
		return a.list(cmd.Context(), c, path, q, *pageSize, cols)
	}
	return cmd
}

// envelope is the §1.8 list answer's single element.
type envelope struct {
	Total   int               `json:"total"`
	Start   int               `json:"start"`
	Limit   int               `json:"limit"`
	Results []json.RawMessage `json:"results"`
}

// fetchAll pages through a list route with start/limit until every result
// is fetched (or a page comes back empty because rows were deleted meanwhile).
func fetchAll(ctx context.Context, c *client, path string, q url.Values, pageSize int) (envelope, error) {
	if pageSize < 1 {
		return envelope{}, fmt.Errorf("invalid --page-size %d: must be at least 1", pageSize)
	}
	all := envelope{Results: []json.RawMessage{}}
	for {
		pq := url.Values{}
		for k, v := range q {
			pq[k] = v
		}
		pq.Set("start", strconv.Itoa(len(all.Results)))
		pq.Set("limit", strconv.Itoa(pageSize))
		resp, err := c.api(ctx, http.MethodGet, path, pq)
		if err != nil {
			return envelope{}, err
		}
		var page []envelope
		if err := json.Unmarshal(resp.body, &page); err != nil || len(page) != 1 {
			return envelope{}, fmt.Errorf("unexpected list response from /%s: %.200s", path, resp.body)
		}
		all.Total = page[0].Total
		all.Results = append(all.Results, page[0].Results...)
		if len(page[0].Results) == 0 || len(all.Results) >= all.Total {
			all.Limit = len(all.Results)
			return all, nil
		}
	}
}

// list prints every result of a list route: a table, or with -o json one
// envelope holding all pages.
func (a *app) list(ctx context.Context, c *client, path string, q url.Values, pageSize int, cols []column) error {
	env, err := fetchAll(ctx, c, path, q, pageSize)
	if err != nil {
		return err
	}
	if a.jsonOut() {
		b, err := json.Marshal([]envelope{env})
		if err != nil {
			return err
		}
		return writeRaw(a.out, b)
	}
	b, _ := json.Marshal(env.Results)
	items, err := decodeItems(b)
	if err != nil {
		return err
	}
	return writeItems(a.out, cols, items)
}

func showCommand(a *app, path, noun string) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a " + noun + " (GET /" + path + "/ID)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			resp, err := c.api(cmd.Context(), http.MethodGet, path+"/"+escape(args[0]), nil)
			if err != nil {
				return err
			}
			return a.printDoc(resp.body)
		},
	}
}

func delCommand(a *app, path, noun string) *cobra.Command {
	return &cobra.Command{
		Use:     "del ID...",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete " + noun + "s (DELETE /" + path + "/ID)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				resp, err := c.api(cmd.Context(), http.MethodDelete, path+"/"+escape(id), nil)
				if err != nil {
					return err
				}
				if err := a.printNote(resp.body, "deleted: %s", id); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func modifyCommand(a *app, r resource) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "modify ID",
		Short: "Change a " + r.noun + " (PUT /" + r.path + "/ID)",
		Args:  cobra.ExactArgs(1),
	}
	fs := cmd.Flags()
	register(fs, r.modify)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		form := url.Values{}
		n, err := collect(fs, r.modify, form)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("nothing to modify: give at least one of %s", flagNames(r.modify))
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		resp, err := c.api(cmd.Context(), http.MethodPut, r.path+"/"+escape(args[0]), form)
		if err != nil {
			return err
		}
		// Some PUTs answer ["id"] instead of the document (backup storages).
		if len(resp.body) > 0 && resp.body[0] == '{' {
			return a.printDoc(resp.body)
		}
		return a.printNote(resp.body, "modified: %s", args[0])
	}
	return cmd
}
