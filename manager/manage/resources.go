package manage

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The resources below follow spec §2.3–2.13. Flag defaults that are always
// sent are the original vdc-manage's; everything else is sent only when given,
// so the server's defaults apply.

func hostResource() resource {
	add := []param{
		str("arch", "arch", "CPU architecture: x86 or x86_64").withDefault("x86_64"),
		str("hypervisor", "hypervisor", "hypervisor: kvm, lxc, dummy, …").withDefault("kvm"),
		str("display-name", "display_name", "display name"),
		num("cpu-cores", "offering_cpu_cores", "CPU cores offered").withDefault("1"),
		num("memory-size", "offering_memory_size", "memory offered, MB").withDefault("1024"),
		num("disk-space", "offering_disk_space_mb", "disk space offered, MB"),
		boolean("scheduling-enabled", "scheduling_enabled", "let the scheduler place instances here (server default true; =false to disable)"),
	}
	return resource{
		use: "host", aliases: []string{"hosts"}, noun: "host node", path: "host_nodes", prefix: "hn",
		addArg: "node_id", addUsage: "NODE_ID",
		add:    add,
		modify: append(optional(add), str("node-id", "node_id", "agent node id (hva.xxx)")),
		cols: []column{
			col("ID", "id"), col("NODE_ID", "node_id"), col("HYPERVISOR", "hypervisor"), col("ARCH", "arch"),
			col("CPU", "offering_cpu_cores"), col("MEMORY", "offering_memory_size"),
			col("DISK", "offering_disk_space_mb"), col("SCHEDULING", "scheduling_enabled"),
			col("STATUS", "status"), col("DISPLAY_NAME", "display_name"),
		},
	}
}

func storageResource() resource {
	add := []param{
		str("storage-type", "storage_type", "iscsi or nfs").withDefault("iscsi"),
		num("disk-space", "offering_disk_space_mb", "disk space offered, MB"),
		str("ip-address", "ip_address", "iSCSI target address"),
		str("mount-point", "mount_point", "NFS mount point"),
		str("display-name", "display_name", "display name"),
	}
	return resource{
		use: "storage", noun: "storage node", path: "storage_nodes", prefix: "sn",
		addArg: "node_id", addUsage: "NODE_ID",
		add:    add,
		modify: append(optional(add), str("node-id", "node_id", "agent node id (sta.xxx)")),
		cols: []column{
			col("ID", "id"), col("NODE_ID", "node_id"), col("TYPE", "storage_type"),
			col("DISK", "offering_disk_space_mb"),
			{header: "ADDRESS", value: func(it map[string]any) string {
				if v, ok := it["ip_address"].(string); ok && v != "" {
					return v
				}
				return cell(it["mount_point"])
			}},
			col("STATUS", "status"), col("DISPLAY_NAME", "display_name"),
		},
	}
}

func dcNetworkResource() resource {
	return resource{
		use: "dcnetwork", aliases: []string{"dcn"}, noun: "DC network", path: "dc_networks", prefix: "dcn",
		addArg: "name", addUsage: "NAME",
		add: []param{str("description", "description", "description")},
		addExtra: func(fs *pflag.FlagSet) func(context.Context, *app, *client, string) (*response, error) {
			allow := fs.Bool("allow-new-networks", false, "let networks be created in this DC network")
			modes := fs.StringSlice("mode", nil, "offering network modes to add: securitygroup, passthrough, l2overlay")
			return func(ctx context.Context, _ *app, c *client, id string) (*response, error) {
				if !*allow && len(*modes) == 0 {
					return nil, nil
				}
				if *allow {
					form := url.Values{"allow_new_networks": {"true"}}
					if _, err := c.api(ctx, http.MethodPut, "dc_networks/"+escape(id), form); err != nil {
						return nil, err
					}
				}
				if len(*modes) > 0 {
					form := url.Values{"mode[]": splitList(*modes)}
					if _, err := c.api(ctx, http.MethodPut, "dc_networks/"+escape(id)+"/offering_modes/add", form); err != nil {
						return nil, err
					}
				}
				return c.api(ctx, http.MethodGet, "dc_networks/"+escape(id), nil)
			}
		},
		modify: []param{
			str("name", "name", "name (word characters only)"),
			str("description", "description", "description"),
			boolean("allow-new-networks", "allow_new_networks", "let networks be created in this DC network"),
		},
		cols: []column{
			col("ID", "id"), col("NAME", "name"), col("MODES", "offering_network_modes"),
			col("ALLOW_NEW", "allow_new_networks"), col("DESCRIPTION", "description"),
		},
		extra: func(a *app) []*cobra.Command {
			return []*cobra.Command{
				dcnModesCommand(a, "add-mode", "add", "Add offering network modes"),
				dcnModesCommand(a, "del-mode", "delete", "Remove offering network modes"),
				{
					Use:   "modes ID",
					Short: "List offering network modes (GET /dc_networks/ID/offering_modes)",
					Args:  cobra.ExactArgs(1),
					RunE: func(cmd *cobra.Command, args []string) error {
						c, err := a.client()
						if err != nil {
							return err
						}
						resp, err := c.api(cmd.Context(), http.MethodGet, "dc_networks/"+escape(args[0])+"/offering_modes", nil)
						if err != nil {
							return err
						}
						return a.printStrings(resp.body, "MODE")
					},
				},
			}
		},
	}
}

// dcnModesCommand is `dcnetwork add-mode|del-mode ID MODE...`.
func dcnModesCommand(a *app, use, op, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ID MODE...",
		Short: short + " (PUT /dc_networks/ID/offering_modes/" + op + ")",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			form := url.Values{"mode[]": splitList(args[1:])}
			resp, err := c.api(cmd.Context(), http.MethodPut, "dc_networks/"+escape(args[0])+"/offering_modes/"+op, form)
			if err != nil {
				return err
			}
			return a.printStrings(resp.body, "MODE")
		},
	}
}

// splitList accepts "a,b c" forms: every comma-separated part of every item.
func splitList(items []string) []string {
	var out []string
	for _, it := range items {
		for _, s := range strings.Split(it, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// printStrings prints a JSON array of strings one per line under header.
func (a *app) printStrings(body []byte, header string) error {
	if a.jsonOut() {
		return writeRaw(a.out, body)
	}
	var list []string
	if err := json.Unmarshal(body, &list); err != nil {
		return fmt.Errorf("unexpected response (not a list of strings): %.200s", body)
	}
	rows := make([][]string, len(list))
	for i, s := range list {
		rows[i] = []string{s}
	}
	return writeTable(a.out, []string{header}, rows)
}

func networkResource() resource {
	return resource{
		use: "network", aliases: []string{"nw"}, noun: "network", path: "networks", prefix: "nw",
		add: []param{
			str("dc-network", "dc_network", "DC network (dcn-xxx), required"),
			str("ipv4-network", "network", "IPv4 network address, e.g. 10.0.0.0"),
			num("prefix", "prefix", "prefix length (default 24)"),
			str("gw", "gw", "IPv4 gateway (inside the network)"),
			str("network-mode", "network_mode", "securitygroup, passthrough or l2overlay"),
			str("domain-name", "domain_name", "DNS domain"),
			str("dns", "service_dns", "address of the DNS service (empty: first address)"),
			str("dhcp", "service_dhcp", "address of the DHCP service (empty: first address)"),
			num("metric", "metric", "route metric (default 100)"),
			str("ip-assignment", "ip_assignment", "IP assignment order (default asc)"),
			boolean("editable", "editable", "allow DHCP range and service changes"),
			str("dhcp-range", "dhcp_range", "\"default\": one range covering the whole network"),
			str("service-type", "service_type", "service type"),
			str("display-name", "display_name", "display name"),
			str("description", "description", "description"),
			str("account-id", "account_id", "owning account (a-xxx)"),
		},
		modify: []param{str("display-name", "display_name", "display name")},
		cols: []column{
			col("ID", "id"),
			{header: "NETWORK", value: func(it map[string]any) string {
				return cell(it["ipv4_network"]) + "/" + cell(it["prefix"])
			}},
			col("GW", "ipv4_gw"), col("MODE", "network_mode"), col("DC_NETWORK", "dc_network.id"),
			col("ACCOUNT", "account_id"), col("DISPLAY_NAME", "display_name"),
		},
		extra: func(a *app) []*cobra.Command {
			dhcp := &cobra.Command{Use: "dhcp", Short: "Manage a network's DHCP ranges"}
			dhcp.AddCommand(
				rangeCommand(a, "add-range", "add", "Add a dynamic DHCP range"),
				rangeCommand(a, "del-range", "remove", "Remove (or split) DHCP ranges"),
				&cobra.Command{
					Use:   "ranges ID",
					Short: "List DHCP ranges (GET /networks/ID/dhcp_ranges)",
					Args:  cobra.ExactArgs(1),
					RunE: func(cmd *cobra.Command, args []string) error {
						c, err := a.client()
						if err != nil {
							return err
						}
						resp, err := c.api(cmd.Context(), http.MethodGet, "networks/"+escape(args[0])+"/dhcp_ranges", nil)
						if err != nil {
							return err
						}
						if a.jsonOut() {
							return writeRaw(a.out, resp.body)
						}
						var ranges [][]string
						if err := json.Unmarshal(resp.body, &ranges); err != nil {
							return fmt.Errorf("unexpected response (not a list of ranges): %.200s", resp.body)
						}
						rows := make([][]string, 0, len(ranges))
						for _, r := range ranges {
							if len(r) == 2 {
								rows = append(rows, r)
							}
						}
						return writeTable(a.out, []string{"BEGIN", "END"}, rows)
					},
				},
			)
			return []*cobra.Command{
				dhcp,
				reserveCommand(a, "reserve", "Reserve IP addresses"),
				reserveCommand(a, "release", "Release reserved IP addresses"),
			}
		},
	}
}

// rangeCommand is `network dhcp add-range|del-range ID BEGIN END`.
func rangeCommand(a *app, use, op, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ID BEGIN END",
		Short: short + " (PUT /networks/ID/dhcp_ranges/" + op + ")",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			form := url.Values{"range_begin": {args[1]}, "range_end": {args[2]}}
			resp, err := c.api(cmd.Context(), http.MethodPut, "networks/"+escape(args[0])+"/dhcp_ranges/"+op, form)
			if err != nil {
				return err
			}
			return a.printNote(resp.body, "%s: %s %s-%s", use, args[0], args[1], args[2])
		},
	}
}

// reserveCommand is `network reserve|release ID IP...`.
func reserveCommand(a *app, op, short string) *cobra.Command {
	return &cobra.Command{
		Use:   op + " ID IP...",
		Short: short + " (PUT /networks/ID/dhcp/" + op + ")",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			form := url.Values{"ipaddr[]": args[1:]}
			resp, err := c.api(cmd.Context(), http.MethodPut, "networks/"+escape(args[0])+"/dhcp/"+op, form)
			if err != nil {
				return err
			}
			return a.printNote(resp.body, "%sd: %s %s", op, args[0], strings.Join(args[1:], " "))
		},
	}
}

func backupStorageResource() resource {
	add := []param{
		str("storage-type", "storage_type", "storage type, e.g. local, webdav, s3"),
		str("base-uri", "base_uri", "base URI of the objects, e.g. file:///var/lib/vdc/images/"),
		str("description", "description", "description"),
		str("display-name", "display_name", "display name"),
		str("node-id", "node_id", "agent serving copy_to jobs for this storage"),
	}
	return resource{
		use: "backupstorage", aliases: []string{"bkst"}, noun: "backup storage", path: "backup_storages", prefix: "bkst",
		add: add, modify: add,
		cols: []column{
			col("ID", "id"), col("TYPE", "storage_type"), col("BASE_URI", "base_uri"),
			col("DISPLAY_NAME", "display_name"), col("DESCRIPTION", "description"),
		},
	}
}

func backupObjectResource() resource {
	return resource{
		use: "backupobject", aliases: []string{"bo"}, noun: "backup object", path: "backup_objects", prefix: "bo",
		add: []param{
			str("backup-storage-id", "backup_storage_id", "backup storage (bkst-xxx), required"),
			str("object-key", "object_key", "object key below the storage's base URI (default: the id)"),
			num("size", "size", "size, bytes"),
			num("allocation-size", "allocation_size", "allocated size, bytes"),
			str("checksum", "checksum", "checksum (md5)"),
			str("container-format", "container_format", "raw, tgz, tar, gz or none (default raw)"),
			str("display-name", "display_name", "display name"),
			str("description", "description", "description"),
			str("state", "state", "state (e.g. available)"),
			str("service-type", "service_type", "service type"),
			str("account-id", "account_id", "owning account (a-xxx)"),
		},
		modify: []param{
			str("service-type", "service_type", "service type"),
			str("display-name", "display_name", "display name"),
			str("description", "description", "description"),
		},
		cols: []column{
			col("ID", "id"), col("STATE", "state"), col("SIZE", "size"), col("BACKUP_STORAGE", "backup_storage_id"),
			col("OBJECT_KEY", "object_key"), col("ACCOUNT", "account_id"), col("DISPLAY_NAME", "display_name"),
		},
	}
}

func imageResource() resource {
	bootDev := str("boot-dev-type", "boot_dev_type", "local (2) or volume (1)").withDefault("local")
	bootDev.encode = func(form url.Values, name, v string) error {
		switch v {
		case "local", "2":
			form.Set(name, "2")
		case "volume", "1":
			form.Set(name, "1")
		default:
			return fmt.Errorf("%q: want local or volume", v)
		}
		return nil
	}
	features := str("features", "features", "comma list of features: virtio, acpi (name or name=false)")
	features.encode = func(form url.Values, name, v string) error {
		for _, f := range splitList([]string{v}) {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				val = "true"
			}
			if k == "" {
				return fmt.Errorf("%q: empty feature name", f)
			}
			form.Set(name+"["+k+"]", val)
		}
		return nil
	}
	return resource{
		use: "image", aliases: []string{"images"}, noun: "image", path: "images", prefix: "wmi",
		add: []param{
			str("backup-object-id", "backup_object_id", "backup object holding the image (bo-xxx)"),
			str("arch", "arch", "x86 or x86_64").withDefault("x86_64"),
			bootDev,
			str("description", "description", "description"),
			str("display-name", "display_name", "display name"),
			boolean("is-public", "is_public", "visible to every account"),
			boolean("is-cacheable", "is_cacheable", "hosts may cache the image"),
			str("file-format", "file_format", "file format, e.g. raw, qcow2"),
			str("root-device", "root_device", "root device, e.g. label:root or uuid:xxx"),
			str("os-type", "os_type", "linux or windows"),
			str("service-type", "service_type", "service type"),
			str("state", "state", "state (e.g. available)"),
			str("account-id", "account_id", "owning account (a-xxx)"),
			features,
		},
		modify: []param{
			str("display-name", "display_name", "display name"),
			str("description", "description", "description"),
		},
		cols: []column{
			col("ID", "id"), col("STATE", "state"), col("ARCH", "arch"),
			{header: "BOOT", value: func(it map[string]any) string {
				switch cell(it["boot_dev_type"]) {
				case "1":
					return "volume"
				case "2":
					return "local"
				}
				return cell(it["boot_dev_type"])
			}},
			col("BACKUP_OBJECT", "backup_object_id"), col("PUBLIC", "is_public"),
			col("ACCOUNT", "account_id"), col("DISPLAY_NAME", "display_name"),
		},
	}
}
