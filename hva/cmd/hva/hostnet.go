package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/hva/collector"
	"github.com/vdc-project/vdc/hva/filter"
	"github.com/vdc-project/vdc/hva/handlers"
	"github.com/vdc-project/vdc/hva/netfilter"
	"github.com/vdc-project/vdc/hva/network"
)

// hostNet is the hva's host networking: taps on the DC networks' bridges
// (when any is configured) and the security-group service (when enabled).
type hostNet struct {
	node   string
	src    netfilter.Source
	taps   *network.Network   // nil: no DC networks
	kernel *network.Kernel    // the taps' netlink
	svc    *netfilter.Service // nil: netfilter off
	logger *slog.Logger
	wg     sync.WaitGroup
}

// agentIO is what hostNet needs of the agent (*agent.Agent).
type agentIO interface {
	netfilter.Subscriber
	netfilter.Publisher
}

func newHostNet(cfg Config, a agentIO, cc *collector.Client, logger *slog.Logger) (*hostNet, error) {
	h := &hostNet{node: cfg.NodeID, src: netfilter.CollectorSource{C: cc}, logger: logger}
	if len(cfg.DcNetworks) > 0 {
		k, err := network.NewKernel(netns.None())
		if err != nil {
			return nil, err
		}
		h.kernel = k
		if h.taps, err = network.New(network.Config{Networks: cfg.DcNetworks, Links: k, Logger: logger}); err != nil {
			k.Close()
			return nil, err
		}
	}
	if cfg.Netfilter {
		switch changed, err := filter.EnsureBridgeNetfilter(filter.BridgeNFCallIptables); {
		case err != nil:
			// Rules still go in (anti-spoofing works), but IPv4 between
			// vnics is not filtered: say so loudly.
			logger.Error("netfilter: security groups will not filter bridged IPv4", "error", err)
		case changed:
			logger.Info("netfilter: turned on " + filter.BridgeNFCallIptables)
		}
		bridges := map[string]string{}
		for name, d := range cfg.DcNetworks {
			bridges[name] = d.Bridge
		}
		svc, err := netfilter.New(netfilter.Config{
			NodeID: cfg.NodeID, Source: h.src, Filter: filter.NewNFT(0), Table: cfg.NetfilterTable,
			Bridges: bridges, Events: a, Publisher: a, Interval: ms(cfg.NetfilterIntervalMS), Logger: logger,
		})
		if err != nil {
			h.close()
			return nil, err
		}
		h.svc = svc
	}
	return h, nil
}

// network is the handlers' HostNetwork: the taps, announcing vnics (nil
// interface when there are no DC networks).
func (h *hostNet) network(a netfilter.Publisher) handlers.HostNetwork {
	if h.taps == nil {
		return nil
	}
	v := &netfilter.Vnics{Inner: h.taps, NodeID: h.node, Publisher: a, Logger: h.logger}
	if h.svc != nil {
		v.Changed = h.svc.Trigger
	}
	return v
}

// start removes stale taps once the managers answer, and runs the
// netfilter service, until ctx ends; wait waits for both, and close
// releases netlink once no job can plug or unplug any more.
func (h *hostNet) start(ctx context.Context) {
	if h.taps != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			removed, err := h.taps.ReconcileFrom(ctx, netfilter.LocalVifs(h.src, h.node), time.Second)
			if err != nil && ctx.Err() == nil {
				h.logger.Warn("reconcile taps", "error", err)
			} else if len(removed) > 0 {
				h.logger.Info("removed stale taps", "taps", fmt.Sprint(removed))
			}
		}()
	}
	if h.svc != nil {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := h.svc.Run(ctx); err != nil {
				h.logger.Error("netfilter service stopped", "error", err)
			}
		}()
	}
}

func (h *hostNet) wait() { h.wg.Wait() }

func (h *hostNet) close() {
	if h.kernel != nil {
		h.kernel.Close()
	}
}
