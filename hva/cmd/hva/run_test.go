package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/common/agent"
	"github.com/vdc-project/vdc/common/rpc"
	"github.com/vdc-project/vdc/common/testutil"
	"github.com/vdc-project/vdc/common/tlsutil/tlstest"
	"github.com/vdc-project/vdc/hva/collector/collectortest"
	"github.com/vdc-project/vdc/proto"
)

// TestRunServesJobsAndStopsOnSignal runs the daemon as main does (the
// context stands for SIGTERM) against a fake manager, delivers a boot job
// and checks the result reached the manager, then stops it.
func TestRunServesJobsAndStopsOnSignal(t *testing.T) {
	const token = "s3cret"
	coll := collectortest.New(nil)
	m := collectortest.StartManager(t, coll, token)
	coll.Put(proto.InstanceView{ID: "i-run", State: proto.InstancePending, CPUCores: 1, MemorySize: 256,
		HostNode: &proto.HostNode{NodeID: "hva.run"}})

	rpcAddr := "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	args := []string{"-node-id", "hva.run", "-serf", "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)),
		"-rpc", rpcAddr, "-join", m.SerfAddr(), "-fast-gossip", "-token", token, "-log-level", "warn",
		"-cpu-cores", "2", "-memory-mb", "1024", "-monitor-interval", "50ms"}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, io.Discard) }()

	c := rpc.NewClient(rpc.ClientConfig{Security: rpc.Security{Token: token}})
	defer c.Close()
	reqArgs, _ := json.Marshal(proto.LocalStoreRunLocalStoreRequest{InstanceID: "i-run"})
	job := proto.JobEnvelope{ID: "job-run", Endpoint: proto.LocalStoreHandle("hva.run"), Verb: proto.VerbRunLocalStore,
		Args: reqArgs, ResourceID: "i-run", Attempt: 1}
	// Delivered without waiting for the result, which the hva then reports
	// to job_finished (a waiting delivery would get it in its answer).
	testutil.WaitFor(t, 15*time.Second, func() error {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := agent.DeliverJob(dctx, c, rpcAddr, job, 0)
		return err
	})
	var res proto.JobResult
	testutil.WaitFor(t, 15*time.Second, func() error {
		for _, r := range coll.JobResults() {
			if r.Result.JobID == "job-run" && r.NodeID == "hva.run" {
				res = r.Result
				return nil
			}
		}
		return fmt.Errorf("job result not reported")
	})
	if res.Status != proto.JobSucceeded {
		t.Fatalf("boot = %+v", res)
	}
	if v, _ := coll.Instance("i-run"); v.State != proto.InstanceRunning || v.Status != proto.StatusOnline {
		t.Errorf("instance is %s/%s, want running/online", v.State, v.Status)
	}
	// A caller without the token is refused.
	anon := rpc.NewClient(rpc.ClientConfig{})
	defer anon.Close()
	if _, err := agent.DeliverJob(context.Background(), anon, rpcAddr, job, 0); err == nil {
		t.Errorf("delivery without the token succeeded")
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after the signal")
	}
}

// TestRunRefusesACertificateOfAnotherNode: the managers take heartbeats
// only for the node id an hva's certificate names, so an hva started with
// another node's certificate would never count as alive for HA: it stops
// at start with the reason instead.
func TestRunRefusesACertificateOfAnotherNode(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	caFile, certFile, keyFile := ca.Files(t, proto.RoleHva, "hva.other")
	cfg, _ := json.Marshal(map[string]any{"security": map[string]any{
		"tls_ca_file": caFile, "tls_cert_file": certFile, "tls_key_file": keyFile}})
	path := filepath.Join(t.TempDir(), "hva.json")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"-config", path, "-node-id", "hva.me", "-hypervisor", "dummy"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"hva.other"`) || !strings.Contains(err.Error(), `"hva.me"`) {
		t.Fatalf("run with another node's certificate = %v, want the mismatch named", err)
	}
}
