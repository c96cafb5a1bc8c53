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
	node := fs.String("node-id", "", "agent node id (default scheduler.<host name>)")
	serfAddr := fs.String("serf", "", "serf gossip address (default 0.0.0.0:9030)")
	rpcAddr := fs.String("rpc", "", "RPC listen address for job deliveries (default 0.0.0.0:9031)")
	adv := fs.String("advertise", "", "host other nodes use to reach this one when binding 0.0.0.0")
	var join, managers config.List
	fs.Var(&join, "join", "serf address of a cluster member to join (repeatable)")
	fs.Var(&managers, "manager", "RPC address of a manager, instead of finding them in serf (repeatable)")
	fast := fs.Bool("fast-gossip", false, "tight serf timers for loopback or test clusters")
	crowd := fs.Bool("crowd-gossip", false, "serf timers for hundreds of members on one machine (simulated datacenter)")
	concurrency := fs.Int("concurrency", 0, "scheduler jobs run at once, placed together in batches (default 256)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error")
	logFormat := fs.String("log-format", "", "text or json")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if *path != "" {
		if err := config.LoadFile(*path, &c); err != nil {
			return c, err
		}
	}
	set := config.Set
	set(&c.NodeID, *node)
	set(&c.SerfAddr, *serfAddr)
	set(&c.RPCAddr, *rpcAddr)
	set(&c.AdvertiseHost, *adv)
	set(&c.LogLevel, *logLevel)
	set(&c.LogFormat, *logFormat)
	if len(join) > 0 {
		c.Join = join
	}
	if len(managers) > 0 {
		c.Managers = managers
	}
	if *concurrency > 0 {
		c.Concurrency = *concurrency
	}
	c.FastGossip = c.FastGossip || *fast
	c.CrowdGossip = c.CrowdGossip || *crowd
	return c, c.Validate()
}
