package config

import (
	"flag"
	"io"
	"slices"
	"testing"
)

// Given flags override the config; flags not given leave it alone.
func TestAgentFlags(t *testing.T) {
	type agentConfig struct {
		NodeID, SerfAddr, RPCAddr, AdvertiseHost, Token, LogLevel, LogFormat string
		Join                                                                 []string
		FastGossip                                                           bool
	}
	parse := func(args ...string) agentConfig {
		t.Helper()
		c := agentConfig{NodeID: "hva.file", SerfAddr: "0.0.0.0:1", RPCAddr: "0.0.0.0:2", LogLevel: "info", Join: []string{"a:1"}}
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := NewAgentFlags(fs, "node id", "0.0.0.0:1", "0.0.0.0:2")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		f.Apply(AgentFields{NodeID: &c.NodeID, SerfAddr: &c.SerfAddr, RPCAddr: &c.RPCAddr, AdvertiseHost: &c.AdvertiseHost,
			Token: &c.Token, LogLevel: &c.LogLevel, LogFormat: &c.LogFormat, Join: &c.Join, FastGossip: &c.FastGossip})
		return c
	}
	if c := parse(); c.NodeID != "hva.file" || c.SerfAddr != "0.0.0.0:1" || !slices.Equal(c.Join, []string{"a:1"}) || c.FastGossip || c.Token != "" {
		t.Errorf("no flags changed the config: %+v", c)
	}
	c := parse("-node-id", "hva.flag", "-serf", "127.0.0.1:9", "-rpc", "127.0.0.1:8", "-advertise", "10.0.0.1",
		"-token", "s3cret", "-log-level", "debug", "-log-format", "json", "-join", "b:1", "-join", "c:1", "-fast-gossip")
	want := agentConfig{NodeID: "hva.flag", SerfAddr: "127.0.0.1:9", RPCAddr: "127.0.0.1:8", AdvertiseHost: "10.0.0.1",
		Token: "s3cret", LogLevel: "debug", LogFormat: "json", Join: []string{"b:1", "c:1"}, FastGossip: true}
	if c.NodeID != want.NodeID || c.SerfAddr != want.SerfAddr || c.RPCAddr != want.RPCAddr || c.AdvertiseHost != want.AdvertiseHost ||
		c.Token != want.Token || c.LogLevel != want.LogLevel || c.LogFormat != want.LogFormat || !slices.Equal(c.Join, want.Join) || !c.FastGossip {
		t.Errorf("flags = %+v, want %+v", c, want)
	}
}
