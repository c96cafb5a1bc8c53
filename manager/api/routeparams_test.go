package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/common/logging"
)

// sourceIndex is what the package's source says about each function (and
// package-level variable): the name-like string literals in it, a superset
// of the parameters it reads, and the identifiers it uses, which include
// the functions it calls.
type sourceIndex struct {
	params map[string]map[string]bool // func name -> param names
	calls  map[string]map[string]bool // func name -> callee names
}

func indexSource(t *testing.T) *sourceIndex {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	ix := &sourceIndex{params: map[string]map[string]bool{}, calls: map[string]map[string]bool{}}
	// scan records every name-like string literal under name (a parameter is
	// read through Params accessors, helpers such as rangedInt(p, "cpu_cores"),
	// or column lists), and every identifier as a possible callee or variable.
	scan := func(name string, n ast.Node) {
		if ix.params[name] == nil {
			ix.params[name], ix.calls[name] = map[string]bool{}, map[string]bool{}
		}
		ast.Inspect(n, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.Ident:
				ix.calls[name][x.Name] = true
			case *ast.BasicLit:
				if x.Kind == token.STRING {
					if s, err := strconv.Unquote(x.Value); err == nil && paramName.MatchString(s) {
						ix.params[name][s] = true
					}
				}
			}
			return true
		})
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		for _, d := range file.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Body != nil {
					scan(d.Name.Name, d.Body)
				}
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					if vs, ok := sp.(*ast.ValueSpec); ok {
						for _, n := range vs.Names {
							for _, v := range vs.Values {
								scan(n.Name, v)
							}
						}
					}
				}
			}
		}
	}
	return ix
}

var paramName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// reach collects the parameter names read by fn and what it calls, up to
// depth levels down. An over-approximation (functions are matched by name
// only), which only adds parameters a route then ignores.
func (ix *sourceIndex) reach(fn string, depth int, seen map[string]bool, out map[string]bool) {
	if seen[fn] || depth < 0 {
		return
	}
	seen[fn] = true
	for p := range ix.params[fn] {
		out[p] = true
	}
	for c := range ix.calls[fn] {
		ix.reach(c, depth-1, seen, out)
	}
}

// handlerName is the function a route's handler value runs ("createNetwork"
// for the method value a.createNetwork; the enclosing function for a closure).
func handlerName(h handlerFunc) string {
	full := runtime.FuncForPC(reflect.ValueOf(h).Pointer()).Name()
	full = strings.TrimSuffix(full, "-fm")
	if i := strings.Index(full, ".func"); i >= 0 {
		full = full[:i]
	}
	return full[strings.LastIndexByte(full, '.')+1:]
}

// routeParams maps each registered route to the parameter names its
// handler (and the functions it calls, 2 levels down) read. The envelope
// and framework parameters every list reads are left out: they have their
// own tests.
func routeParams(t *testing.T, a *API) map[string][]string {
	t.Helper()
	ix := indexSource(t)
	skip := map[string]bool{"start": true, "limit": true, "sort_by": true, "filter": true, "stale": true,
		"created_since": true, "created_until": true, "deleted_since": true, "deleted_until": true,
		"terminated_since": true, "terminated_until": true}
	out := map[string][]string{}
	for _, r := range a.routeTable {
		names := map[string]bool{}
		ix.reach(handlerName(r.h), 2, map[string]bool{}, names)
		var list []string
		for n := range names {
			if !skip[n] {
				list = append(list, n)
			}
		}
		sort.Strings(list)
		out[r.pattern] = list
	}
	return out
}

func TestRouteParamsAreFound(t *testing.T) {
	a := New(DefaultConfig(), nil, logging.NewTest(t))
	rp := routeParams(t, a)
	for route, want := range map[string][]string{
		"POST /networks":             {"network", "prefix", "gw", "dc_network", "display_name"},
		"POST /ssh_key_pairs":        {"public_key", "display_name", "description"},
		"POST /security_groups":      {"rule", "description"},
		"PUT /host_nodes/{id}":       {"offering_cpu_cores"},
		"POST /instances":            {"image_id", "cpu_cores", "memory_size", "vifs", "hypervisor"},
		"PUT /ip_pools/{id}/acquire": {"network_id"},
	} {
		got := map[string]bool{}
		for _, p := range rp[route] {
			got[p] = true
		}
		for _, p := range want {
			if !got[p] {
				t.Errorf("%s: parameter %q not found (found %v)", route, p, rp[route])
			}
		}
	}
	if len(rp) != len(a.routeTable) {
		t.Errorf("%d routes, params for %d", len(a.routeTable), len(rp))
	}
}
