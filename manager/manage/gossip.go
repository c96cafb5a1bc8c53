package manage

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/common/security"
)

// gossipCommand makes gossip keys and rotates the cluster's keyring through
// a manager (serf's key manager: every member answers each step).
func gossipCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gossip",
		Short: "Gossip encryption keys: generate, list and rotate the cluster keyring",
		Long: `Serf gossip between all vdc daemons is encrypted with a keyring of 32-byte
keys (AES-256-GCM); a daemon without a key of the keyring cannot join. Each
daemon's config file names its own, writable, keyring file
("security": {"gossip_keyring_file": ...}).

Rotation without downtime, one step at a time (each must report no errors):

  NEW=$(vdc-manage gossip keygen)
  vdc-manage gossip keys install "$NEW"   # every member can now read NEW
  vdc-manage gossip keys use "$NEW"       # every member now writes with NEW
  vdc-manage gossip keys remove "$OLD"    # OLD is gone everywhere
  vdc-manage gossip keys list`,
	}
	var out string
	keygen := &cobra.Command{
		Use:   "keygen",
		Short: "Print a new random gossip key (base64), or write it as a keyring file with --out",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := security.NewGossipKey()
			if err != nil {
				return err
			}
			if out != "" {
				if err := refuseOverwrite(false, out); err != nil {
					return err
				}
				if err := security.WriteKeyring(out, key); err != nil {
					return err
				}
				_, err = fmt.Fprintf(a.out, "wrote keyring %s (copy it to every daemon's gossip_keyring_file)\n", out)
				return err
			}
			_, err = fmt.Fprintln(a.out, key)
			return err
		},
	}
	keygen.Flags().StringVar(&out, "out", "", "write a keyring file holding the key (mode 0600)")

	keys := &cobra.Command{Use: "keys", Short: "List or change the keyring of every member (through a manager)"}
	keys.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Show each key and how many members hold it, and use it to encrypt",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return a.keyring(cmd, http.MethodGet, nil) },
	})
	for _, op := range []struct{ name, short string }{
		{"install", "Add KEY to every member's keyring (they can read it, still write with the old one)"},
		{"use", "Make KEY the key every member encrypts with (it must be installed everywhere)"},
		{"remove", "Remove KEY from every member's keyring (it must not be in use)"},
	} {
		keys.AddCommand(&cobra.Command{
			Use:   op.name + " KEY",
			Short: op.short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if _, err := security.DecodeGossipKey(args[0]); err != nil {
					return err
				}
				return a.keyring(cmd, http.MethodPost, url.Values{"op": {op.name}, "key": {args[0]}})
			},
		})
	}
	cmd.AddCommand(keygen, keys)
	return cmd
}

// keyring calls /internal/v1/gossip/keyring and prints the members' answers.
func (a *app) keyring(cmd *cobra.Command, method string, form url.Values) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	resp, err := c.do(cmd.Context(), method, c.base+"/internal/v1/gossip/keyring", form)
	if err != nil {
		return err
	}
	if a.jsonOut() {
		return writeRaw(a.out, resp.body)
	}
	var doc struct {
		Members     int               `json:"members"`
		Responses   int               `json:"responses"`
		Errors      int               `json:"errors"`
		Messages    map[string]string `json:"messages"`
		Keys        map[string]int    `json:"keys"`
		PrimaryKeys map[string]int    `json:"primary_keys"`
	}
	if err := json.Unmarshal(resp.body, &doc); err != nil {
		return fmt.Errorf("decode keyring answer: %w", err)
	}
	if _, err := fmt.Fprintf(a.out, "members %d, responses %d, errors %d\n", doc.Members, doc.Responses, doc.Errors); err != nil {
		return err
	}
	if len(doc.Keys) > 0 {
		var rows [][]string
		for k, n := range doc.Keys {
			rows = append(rows, []string{k, fmt.Sprint(n), fmt.Sprint(doc.PrimaryKeys[k])})
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
		if err := writeTable(a.out, []string{"KEY", "INSTALLED", "PRIMARY"}, rows); err != nil {
			return err
		}
	}
	var names []string
	for n := range doc.Messages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := fmt.Fprintf(a.out, "%s: %s\n", n, doc.Messages[n]); err != nil {
			return err
		}
	}
	if doc.Errors > 0 || doc.Responses < doc.Members {
		return fmt.Errorf("%d of %d members did not apply it: fix them before the next step", doc.Members-doc.Responses+doc.Errors, doc.Members)
	}
	return nil
}
