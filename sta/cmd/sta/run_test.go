package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/proto"
	"github.com/vdc-project/vdc/sta/collector/collectortest"
)

// daemon is an sta run as main runs it, against a fake manager.
type daemon struct {
	t       *testing.T
	node    string
	rpcAddr string
	client  *rpc.Client
	stop    func()
	jobs    int
}

// startDaemon runs the sta with args (plus node id, addresses, join) until
// stop is called or the test ends.
func startDaemon(t *testing.T, m *collectortest.Manager, node, token string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, node: node, rpcAddr: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))}
	args = append([]string{"-node-id", node, "-serf", "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)),
		"-rpc", d.rpcAddr, "-join", m.SerfAddr(), "-fast-gossip", "-token", token, "-log-level", "warn"}, args...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard) }()
	d.client = rpc.NewClient(rpc.ClientConfig{Security: rpc.Security{Token: token}})
	stopped := false
	d.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run = %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("run did not return after the signal")
		}
		d.client.Close()
	}
	t.Cleanup(d.stop)
	return d
}

// job delivers a job and waits for its final result.
func (d *daemon) job(verb string, req any) proto.JobResult {
	d.t.Helper()
	d.jobs++
	args, _ := json.Marshal(req)
	env := proto.JobEnvelope{ID: fmt.Sprintf("job-%s-%d", d.t.Name(), d.jobs), Endpoint: proto.StaHandle(d.node), Verb: verb, Args: args, Attempt: 1}
	var res proto.JobResult
	testutil.WaitFor(d.t, 2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		var err error
		res, err = agent.DeliverJob(ctx, d.client, d.rpcAddr, env, 30*time.Second)
		if err != nil {
			return err
		}
		if !res.Status.Final() {
			return fmt.Errorf("job %s is %s", env.ID, res.Status)
		}
		return nil
	})
	return res
}

// mustJob delivers a job that must succeed.
func (d *daemon) mustJob(verb string, req any) proto.JobResult {
	d.t.Helper()
	res := d.job(verb, req)
	if res.Status != proto.JobSucceeded {
		d.t.Fatalf("%s %+v = %s: %+v", verb, req, res.Status, res.Error)
	}
	return res
}

// TestRunServesJobsAndStopsOnSignal runs the daemon on the memory drivers
// against a fake manager: a create job makes the volume available, the
// result reaches job-collector, capacity answers, and the daemon stops on
// the signal.
func TestRunServesJobsAndStopsOnSignal(t *testing.T) {
	const token = "s3cret"
	coll := collectortest.New()
	m := collectortest.StartManager(t, coll, token)
	coll.PutVolume(proto.VolumeView{ID: "vol-run", State: proto.VolumePending, Size: 1 << 20, StoreType: proto.VolumeShared,
		StorageNode: &proto.StorageNode{ID: "sn-run", NodeID: "sta.run", IPAddress: "192.0.2.1"}})
	d := startDaemon(t, m, "sta.run", token, "-backing-driver", "memory", "-target-driver", "memory",
		"-iqn-prefix", "iqn.2026-01.test.st", "-snapshot-tmp-dir", t.TempDir())

	// Delivered without waiting for the result, which the sta then reports
	// to job_finished (a waiting delivery gets it in its answer instead).
	args, _ := json.Marshal(proto.StaCreateVolumeRequest{VolumeID: "vol-run"})
	env := proto.JobEnvelope{ID: "job-run", Endpoint: proto.StaHandle("sta.run"), Verb: proto.VerbCreateVolume, Args: args, Attempt: 1}
	testutil.WaitFor(t, 15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := agent.DeliverJob(ctx, d.client, d.rpcAddr, env, 0)
		return err
	})
	var res proto.JobResult
	testutil.WaitFor(t, 15*time.Second, func() error {
		for _, r := range coll.JobResults() {
			if r.Result.JobID == "job-run" && r.NodeID == "sta.run" {
				res = r.Result
				return nil
			}
		}
		return fmt.Errorf("job result not reported")
	})
	if res.Status != proto.JobSucceeded {
		t.Fatalf("create = %+v", res)
	}
	var out proto.StaCreateVolumeResponse
	if err := json.Unmarshal(res.Result, &out); err != nil || out.Device == nil || out.Device.IQN != "iqn.2026-01.test.st:vol-run" {
		t.Errorf("result = %s (%v)", res.Result, err)
	}
	if v, _ := coll.Volume("vol-run"); v.State != proto.VolumeAvailable {
		t.Errorf("volume is %s, want available", v.State)
	}
	var capResp proto.StaCapacityResponse
	if err := d.client.Call(context.Background(), d.rpcAddr, proto.StaHandle("sta.run"), proto.VerbStaCapacity, proto.StaCapacityRequest{}, &capResp); err != nil {
		t.Fatal(err)
	}
	if capResp.Volumes != 1 || capResp.BackingDriver != "memory" || capResp.TotalBytes != 100<<30 {
		t.Errorf("capacity = %+v", capResp)
	}
	// A caller without the token is refused.
	anon := rpc.NewClient(rpc.ClientConfig{})
	defer anon.Close()
	if err := anon.Call(context.Background(), d.rpcAddr, proto.StaHandle("sta.run"), proto.VerbStaCapacity, proto.StaCapacityRequest{}, &capResp); err == nil {
		t.Error("a call without the token succeeded")
	}
	d.stop()
}

// TestRunRefusesBadSetup: a missing directory or an unreachable tgtd stop
// the daemon at start with a message.
func TestRunRefusesBadSetup(t *testing.T) {
	for _, args := range [][]string{
		{"-backing-driver", "raw", "-export-path", "/nonexistent/st-vols", "-target-driver", "memory"},
		{"-backing-driver", "memory", "-target-driver", "memory", "-snapshot-tmp-dir", "/nonexistent/st-tmp"},
	} {
		args = append(args, "-node-id", "sta.bad", "-serf", "127.0.0.1:0", "-rpc", "127.0.0.1:0")
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("run(%q) started", args)
		}
	}
}
