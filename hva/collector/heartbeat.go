package collector

import (
	"context"

	"github.com/vdc-project/vdc/proto"
)

// Heartbeat sends hva-collector heartbeat (only the raft leader answers
// it) and returns whether the managers have fenced this host.
func (c *Client) Heartbeat(ctx context.Context, req proto.HeartbeatRequest) (proto.HeartbeatResponse, error) {
	var resp proto.HeartbeatResponse
	err := c.Call(ctx, proto.EndpointHvaCollector, proto.VerbHeartbeat, req, &resp)
	return resp, err
}
