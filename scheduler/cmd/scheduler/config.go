package main

import (
	"flag"
	"io"

	"github.com/vdc-project/vdc/common/config"
	"github.com/vdc-project/vdc/scheduler/daemon"
)

// loadConfig builds the config from args: defaults, then the JSON file of
// -config, then the other flags.
func loadConfig(args []string, stderr io.Writer) (daemon.Config, error) {
	c := daemon.DefaultConfig()
	fs := flag.NewFlagSet("scheduler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "JSON config file (flags override it)")
	agentFlags := config.NewAgentFlags(fs, "agent node id (default scheduler.<host name>)", "0.0.0.0:9030", "0.0.0.0:9031")
	var managers config.List
	fs.Var(&managers, "manager", "RPC address of a manager, instead of finding them in serf (repeatable)")
	crowd := fs.Bool("crowd-gossip", false, "serf timers for hundreds of members on one machine (simulated datacenter)")
	concurrency := fs.Int("concurrency", 0, "scheduler jobs run at once, placed together in batches (default 256)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *path != "" {
		if err := config.LoadFile(*path, &c); err != nil {
			return c, err
		}
	}
	agentFlags.Apply(config.AgentFields{
		NodeID: &c.NodeID, SerfAddr: &c.SerfAddr, RPCAddr: &c.RPCAddr, AdvertiseHost: &c.AdvertiseHost,
		Token: &c.Token, LogLevel: &c.LogLevel, LogFormat: &c.LogFormat, Join: &c.Join, FastGossip: &c.FastGossip,
	})
	if len(managers) > 0 {
		c.Managers = managers
	}
	if *concurrency > 0 {
		c.Concurrency = *concurrency
	}
	c.CrowdGossip = c.CrowdGossip || *crowd
	return c, c.Validate()
}
