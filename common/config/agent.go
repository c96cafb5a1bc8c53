package config

import "flag"

// AgentFlags are the command-line flags every node agent (hva, sta,
// scheduler) shares: identity, serf, RPC, token and logging.
type AgentFlags struct {
	nodeID, serf, rpc, advertise, token, logLevel, logFormat *string
	join                                                     List
	fastGossip                                               *bool
}

// AgentFields points at a daemon config's shared agent fields.
type AgentFields struct {
	NodeID, SerfAddr, RPCAddr, AdvertiseHost, Token, LogLevel, LogFormat *string
	Join                                                                 *[]string
	FastGossip                                                           *bool
}

// NewAgentFlags registers the shared flags on fs; the usage strings name
// the role's node id form and default ports.
func NewAgentFlags(fs *flag.FlagSet, nodeIDUsage, serfDefault, rpcDefault string) *AgentFlags {
	f := &AgentFlags{
		nodeID:     fs.String("node-id", "", nodeIDUsage),
		serf:       fs.String("serf", "", "serf gossip address (default "+serfDefault+")"),
		rpc:        fs.String("rpc", "", "RPC listen address (default "+rpcDefault+")"),
		advertise:  fs.String("advertise", "", "host other nodes use to reach this one when binding 0.0.0.0"),
		fastGossip: fs.Bool("fast-gossip", false, "tight serf timers for loopback or test clusters"),
		token:      fs.String("token", "", "shared RPC token of the cluster"),
		logLevel:   fs.String("log-level", "", "debug, info, warn or error"),
		logFormat:  fs.String("log-format", "", "text or json"),
	}
	fs.Var(&f.join, "join", "serf address of a cluster member to join (repeatable)")
	return f
}

// Apply copies the flags that were given over the config's fields.
func (f *AgentFlags) Apply(c AgentFields) {
	Set(c.NodeID, *f.nodeID)
	Set(c.SerfAddr, *f.serf)
	Set(c.RPCAddr, *f.rpc)
	Set(c.AdvertiseHost, *f.advertise)
	Set(c.Token, *f.token)
	Set(c.LogLevel, *f.logLevel)
	Set(c.LogFormat, *f.logFormat)
	if len(f.join) > 0 {
		*c.Join = f.join
	}
	*c.FastGossip = *c.FastGossip || *f.fastGossip
}
