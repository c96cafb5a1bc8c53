package manage

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

// groupKind is one of the three tag collections of spec §2.21.
type groupKind struct {
	path   string // host_node_groups
	prefix string // hng
	member string // PUT parameter holding the member list
}

// groupKinds maps the KIND argument to its collection (a constant table).
var groupKinds = map[string]groupKind{
	"host":    {path: "host_node_groups", prefix: "hng", member: "host_nodes"},
	"storage": {path: "storage_node_groups", prefix: "sng", member: "storage_nodes"},
	"network": {path: "network_groups", prefix: "nwg", member: "networks"},
}

func lookupGroupKind(name string) (groupKind, error) {
	k, ok := groupKinds[name]
	if !ok {
		return groupKind{}, fmt.Errorf("unknown group kind %q: want host, storage or network", name)
	}
	return k, nil
}

func groupCols() []column {
	return []column{
		col("ID", "id"), col("NAME", "name"), col("MEMBERS", "mapped_uuids"), col("ACCOUNT", "account_id"),
	}
}

func groupCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "group",
		Aliases: []string{"groups"},
		Short:   "Manage host, storage and network groups (/host_node_groups, /storage_node_groups, /network_groups)",
	}

	add := &cobra.Command{
		Use:   "add host|storage|network NAME",
		Short: "Create a group (POST /<kind>_groups)",
		Args:  cobra.ExactArgs(2),
	}
	uuid := add.Flags().String("uuid", "", "caller-chosen id (hng-/sng-/nwg-xxxxxxxx or the bare part)")
	add.RunE = a.groupRun(func(cmd *cobra.Command, args []string, k groupKind, c *client) error {
		form := url.Values{"name": {args[1]}}
		if *uuid != "" {
			form.Set("uuid", *uuid)
		}
		resp, err := a.create(cmd.Context(), c, k.path, k.prefix, form)
		if err != nil || resp == nil {
			return err
		}
		return a.printDoc(resp.body)
	})

	mapCmd := &cobra.Command{
		Use:   "map host|storage|network GROUP_ID MEMBER_ID...",
		Short: "Set a group's members (PUT /<kind>_groups/GROUP_ID)",
		Long: `Set a group's members. The API replaces the membership with the given list;
with --add the current members are kept (read, then written: not atomic
against a concurrent change of the same group).`,
		Args: cobra.MinimumNArgs(3),
	}
	keep := mapCmd.Flags().Bool("add", false, "keep the current members and add these")
	mapCmd.RunE = a.groupRun(func(cmd *cobra.Command, args []string, k groupKind, c *client) error {
		ctx := cmd.Context()
		path := k.path + "/" + escape(args[1])
		members := args[2:]
		if *keep {
			resp, err := c.api(ctx, http.MethodGet, path, nil)
			if err != nil {
				return err
			}
			items, err := decodeItems(append(append([]byte{'['}, resp.body...), ']'))
			if err != nil {
				return err
			}
			current, _ := items[0]["mapped_uuids"].([]any)
			seen := map[string]bool{}
			merged := []string{}
			for _, v := range current {
				if s, ok := v.(string); ok && !seen[s] {
					seen[s] = true
					merged = append(merged, s)
				}
			}
			for _, s := range members {
				if !seen[s] {
					seen[s] = true
					merged = append(merged, s)
				}
			}
			members = merged
		}
		resp, err := c.api(ctx, http.MethodPut, path, url.Values{k.member + "[]": members})
		if err != nil {
			return err
		}
		return a.printDoc(resp.body)
	})

	list := &cobra.Command{
		Use:   "list host|storage|network",
		Short: "List groups of a kind (all pages)",
		Args:  cobra.ExactArgs(1),
	}
	pageSize := list.Flags().Int("page-size", 100, "results fetched per request")
	list.RunE = a.groupRun(func(cmd *cobra.Command, args []string, k groupKind, c *client) error {
		return a.list(cmd.Context(), c, k.path, url.Values{}, *pageSize, groupCols())
	})

	show := &cobra.Command{
		Use:   "show host|storage|network ID",
		Short: "Show a group",
		Args:  cobra.ExactArgs(2),
		RunE: a.groupRun(func(cmd *cobra.Command, args []string, k groupKind, c *client) error {
			resp, err := c.api(cmd.Context(), http.MethodGet, k.path+"/"+escape(args[1]), nil)
			if err != nil {
				return err
			}
			return a.printDoc(resp.body)
		}),
	}

	del := &cobra.Command{
		Use:     "del host|storage|network ID...",
		Aliases: []string{"delete", "rm"},
		Short:   "Delete groups (their mappings go with them)",
		Args:    cobra.MinimumNArgs(2),
		RunE: a.groupRun(func(cmd *cobra.Command, args []string, k groupKind, c *client) error {
			for _, id := range args[1:] {
				resp, err := c.api(cmd.Context(), http.MethodDelete, k.path+"/"+escape(id), nil)
				if err != nil {
					return err
				}
				if err := a.printNote(resp.body, "deleted: %s", id); err != nil {
					return err
				}
			}
			return nil
		}),
	}
	cmd.AddCommand(add, mapCmd, list, show, del)
	return cmd
}

// groupRun adapts a group subcommand: KIND (args[0]) resolved and a client
// made before fn runs.
func (a *app) groupRun(fn func(cmd *cobra.Command, args []string, k groupKind, c *client) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		k, err := lookupGroupKind(args[0])
		if err != nil {
			return err
		}
		c, err := a.client()
		if err != nil {
			return err
		}
		return fn(cmd, args, k, c)
	}
}
