// Package manage is vdc-manage, the operator's command line: it registers
// hosts, storage, networks, backup storages/objects and images through a
// manager's 12.03 API and shows the cluster's members and raft peers.
//
// Operator calls send no account header, so the API applies no account
// scoping; --account adds X-VDC-Account-UUID for calls made as an account.
package manage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// DefaultAPI is the manager address used when neither --api nor VDC_API is set.
const DefaultAPI = "http://127.0.0.1:9001"

// Config is what the command tree needs from its caller; zero values take
// defaults, tests replace the HTTP client and the backoff sleep.
type Config struct {
	// API is the default for --api (main passes $VDC_API). Empty: DefaultAPI.
	API string
	// Token is the default for --token (main passes $VDC_API_TOKEN).
	Token string
	// Stderr receives error messages and notes. Nil: discarded.
	Stderr io.Writer
	// HTTPClient sends the requests. Nil: a client with its own transport.
	HTTPClient *http.Client
	// Timeout is the default per-request timeout (--timeout). Zero: 30s.
	Timeout time.Duration
	// Sleep waits between retries. Nil: a timer that honours ctx.
	Sleep func(ctx context.Context, d time.Duration) error
}

// app holds the global flags of one command tree.
type app struct {
	cfg       Config
	out       io.Writer
	errOut    io.Writer
	api       string
	token     string
	account   string
	output    string
	timeout   time.Duration
	ifMissing bool
}

// Run builds the command tree, runs it with args and returns the process exit
// status: 0 on success, 1 on any error (printed to cfg.Stderr as
// "error: <message> (code <code>, HTTP <status>)" for API errors).
func Run(ctx context.Context, args []string, out io.Writer, cfg Config) int {
	root := NewCommand(out, cfg)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(root.ErrOrStderr(), "error: %s\n", err)
	// Cobra checks arguments and flags before any hook runs: point the
	// operator at the command's help for those.
	if cmd != nil && !cmdStarted(cmd) {
		fmt.Fprintf(root.ErrOrStderr(), "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return 1
}

// startedAnnotation marks a command whose hooks ran (its arguments were valid).
const startedAnnotation = "vdc-manage/started"

func cmdStarted(cmd *cobra.Command) bool { return cmd.Annotations[startedAnnotation] == "1" }

// NewCommand builds the vdc-manage command tree writing its output to out.
func NewCommand(out io.Writer, cfg Config) *cobra.Command {
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	if cfg.API == "" {
		cfg.API = DefaultAPI
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     30 * time.Second,
		}}
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleepCtx
	}
	a := &app{cfg: cfg, out: out, errOut: cfg.Stderr}

	root := &cobra.Command{
		Use:   "vdc-manage",
		Short: "Operator CLI for a vdc manager (dcmgr API 12.03)",
		Long: `vdc-manage registers host nodes, storage nodes, networks, backup storages,
backup objects and images through a manager's 12.03 API, and shows the
manager cluster. Calls are made as the operator (no account header) unless
--account is given.

Seeding a cluster idempotently (re-runs print "exists: ID"):

  vdc-manage --if-missing host add hva.demo1 --uuid hn-demo1 --hypervisor dummy
  vdc-manage --if-missing dcnetwork add public --uuid dcn-public \
      --allow-new-networks --mode securitygroup,passthrough
  vdc-manage --if-missing network add --uuid nw-demo1 --dc-network dcn-public \
      --ipv4-network 10.0.2.0 --prefix 24 --gw 10.0.2.1 --network-mode securitygroup \
      --dhcp-range default --editable
  vdc-manage cluster peers`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Annotations == nil {
				cmd.Annotations = map[string]string{}
			}
			cmd.Annotations[startedAnnotation] = "1"
			switch a.output {
			case "table", "json":
			default:
				return fmt.Errorf("invalid --output %q: want table or json", a.output)
			}
			if a.timeout <= 0 {
				return fmt.Errorf("invalid --timeout %s: must be positive", a.timeout)
			}
			return nil
		},
	}
	root.SetOut(out)
	root.SetErr(cfg.Stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.api, "api", cfg.API, "manager API base URL (env VDC_API)")
	pf.StringVar(&a.account, "account", "", "call as this account (sends X-VDC-Account-UUID: a-xxx)")
	pf.StringVar(&a.token, "token", cfg.Token, "API token, sent as Authorization: Bearer (env VDC_API_TOKEN)")
	pf.StringVarP(&a.output, "output", "o", "table", "output format: table or json (the raw API JSON)")
	pf.DurationVar(&a.timeout, "timeout", cfg.Timeout, "timeout of each HTTP request")
	pf.BoolVar(&a.ifMissing, "if-missing", false, "add: if the resource named by --uuid exists, print \"exists: ID\" and do nothing")

	root.AddCommand(
		resourceCommand(a, hostResource()),
		resourceCommand(a, storageResource()),
		resourceCommand(a, dcNetworkResource()),
		resourceCommand(a, networkResource()),
		resourceCommand(a, backupStorageResource()),
		resourceCommand(a, backupObjectResource()),
		resourceCommand(a, imageResource()),
		groupCommand(a),
		clusterCommand(a),
		tlsCommand(a),
		gossipCommand(a),
	)
	return root
}

// client returns an API client for the global flags.
func (a *app) client() (*client, error) {
	base := strings.TrimRight(strings.TrimSpace(a.api), "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid --api %q: want http://host:port", a.api)
	}
	if a.account != "" && !strings.HasPrefix(a.account, "a-") {
		return nil, fmt.Errorf("invalid --account %q: account ids look like a-xxxxxxxx", a.account)
	}
	return &client{base: base, account: a.account, token: a.token, http: a.cfg.HTTPClient, timeout: a.timeout, sleep: a.cfg.Sleep}, nil
}

func (a *app) jsonOut() bool { return a.output == "json" }

// printDoc prints one document: raw JSON, or KEY VALUE lines.
func (a *app) printDoc(body []byte) error {
	if a.jsonOut() {
		return writeRaw(a.out, body)
	}
	return writeDocument(a.out, body)
}

// printNote prints a one-line confirmation for calls whose answer carries
// nothing worth a table ({}, ["id"]); with -o json the raw answer instead.
func (a *app) printNote(body []byte, format string, args ...any) error {
	if a.jsonOut() {
		return writeRaw(a.out, body)
	}
	_, err := fmt.Fprintf(a.out, format+"\n", args...)
	return err
}

// isNotFound says whether err is the API's 404 answer.
func isNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}
