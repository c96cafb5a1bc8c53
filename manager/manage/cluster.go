package manage

import (
	"github.com/spf13/cobra"
)

// clusterCommand shows the manager cluster through the answering manager's
// /internal/v1 routes (they are not forwarded: each manager tells its view).
func clusterCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show the manager cluster (serf members, raft peers, raft status)",
	}
	show := func(use, short, path string, print func(body []byte) error) *cobra.Command {
		return &cobra.Command{
			Use:   use,
			Short: short + " (GET /internal/v1/" + path + ")",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				c, err := a.client()
				if err != nil {
					return err
				}
				resp, err := c.internal(cmd.Context(), path)
				if err != nil {
					return err
				}
				if a.jsonOut() {
					return writeRaw(a.out, resp.body)
				}
				return print(resp.body)
			},
		}
	}
	items := func(cols []column) func([]byte) error {
		return func(body []byte) error {
			list, err := decodeItems(body)
			if err != nil {
				return err
			}
			return writeItems(a.out, cols, list)
		}
	}
	cmd.AddCommand(
		show("members", "List serf members of every role", "members", items([]column{
			col("NAME", "name"), col("ADDR", "addr"), col("STATUS", "status"),
			col("ROLE", "tags.role"), col("NODE_ID", "tags.node_id"),
		})),
		show("peers", "List raft servers, the leader marked", "peers", items([]column{
			col("ID", "id"), col("ADDRESS", "address"), col("SUFFRAGE", "suffrage"), col("LEADER", "leader"),
		})),
		show("status", "Show the raft state of the answering manager", "status", func(body []byte) error {
			return writeStringMap(a.out, body)
		}),
	)
	return cmd
}
