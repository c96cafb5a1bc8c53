package proto

import (
	"encoding/json"
	"testing"
	"time"
)

func TestEndpointNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{HvaHandle("hva.demo1"), "hva-handle.hva.demo1"},
		{LocalStoreHandle("hva.demo1"), "local-store-handle.hva.demo1"},
		{MigrationHandle("hva.demo1"), "migration-handle.hva.demo1"},
		{WindowsHandle("hva.demo1"), "windows-handle.hva.demo1"},
		{StaHandle("sta.demo1"), "sta-handle.sta.demo1"},
		{JobControl("sta.demo1"), "job-control.sta.demo1"},
		{EndpointBase("hva-handle.hva.demo1"), "hva-handle"},
		{EndpointNode("hva-handle.hva.demo1"), "hva.demo1"},
		{EndpointBase("scheduler"), "scheduler"},
		{EndpointNode("scheduler"), ""},
		{RPCPath("hva-handle.hva.demo1", "terminate"), "/rpc/v1/hva-handle.hva.demo1/terminate"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestEventNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{EventVnicJoined("sg-1"), "sg-1/vnic_joined"},
		{EventVnicLeft("sg-1"), "sg-1/vnic_left"},
		{EventJoinedGroup("vif-1"), "vif-1/joined_group"},
		{EventLeftGroup("vif-1"), "vif-1/left_group"},
		{EventReferencerAdded("sg-1"), "sg-1/referencer_added"},
		{EventReferencerRemoved("sg-1"), "sg-1/referencer_removed"},
		{EventRulesUpdated("sg-1"), "sg-1/rules_updated"},
		{EventVnicCreated("hva.demo1"), "hva.demo1/vnic_created"},
		{EventVnicDestroyed("hva.demo1"), "hva.demo1/vnic_destroyed"},
		{EventNodeInstanceTerminated("hva.demo1"), "hva.demo1/instance_terminated"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestJobVerbTable(t *testing.T) {
	seen := map[[2]string]bool{}
	for _, v := range JobVerbs() {
		k := [2]string{v.Endpoint, v.Verb}
		if seen[k] {
			t.Errorf("duplicate job verb %s/%s", v.Endpoint, v.Verb)
		}
		seen[k] = true
		if v.Timeout <= 0 {
			t.Errorf("%s/%s has no timeout", v.Endpoint, v.Verb)
		}
	}
	// Every verb of spec/agents.md §2.2 on hva-handle.
	for _, verb := range []string{VerbWaitVolumesAvailable, VerbRunLocalStore, VerbRunVolStore, VerbTerminate,
		VerbCleanup, VerbStop, VerbAttach, VerbDetach, VerbAttachNic, VerbDetachNic, VerbReboot, VerbPoweroff,
		VerbSoftPoweroff, VerbPoweron} {
		if _, ok := LookupJobVerb(HvaHandle("hva.x"), verb); !ok {
			t.Errorf("hva-handle %s missing", verb)
		}
	}
	if got := JobTimeout(StaHandle("sta.x"), VerbDeleteVolume); got != 30*time.Minute {
		t.Errorf("JobTimeout(sta delete_volume) = %s", got)
	}
	if got := JobTimeout("nope", "nope"); got != DefaultJobTimeout {
		t.Errorf("JobTimeout(unknown) = %s", got)
	}
	// The table handed out is a copy.
	JobVerbs()[0].Timeout = 0
	if JobVerbs()[0].Timeout == 0 {
		t.Error("JobVerbs() exposes the table")
	}
}

func TestJobEnvelopeJSON(t *testing.T) {
	j := JobEnvelope{ID: "job-1", Endpoint: HvaHandle("hva.x"), Verb: VerbTerminate,
		Args: json.RawMessage(`{"instance_id":"i-1","force":true}`), Attempt: 1}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"job-1","endpoint":"hva-handle.hva.x","verb":"terminate","args":{"instance_id":"i-1","force":true},"attempt":1}`
	if string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
	var req HvaTerminateRequest
	if err := json.Unmarshal(j.Args, &req); err != nil || req != (HvaTerminateRequest{InstanceID: "i-1", Force: true}) {
		t.Errorf("args = %+v, %v", req, err)
	}
	if err := (&JobEnvelope{ID: "x", Endpoint: "e"}).Validate(); err == nil {
		t.Error("Validate(no verb) = nil")
	}
	b, _ = json.Marshal(JobResult{JobID: "j", Status: JobQueued})
	if got, want := string(b), `{"job_id":"j","status":"queued"}`; got != want {
		t.Errorf("JSON = %s, want %s", got, want)
	}
	for s, final := range map[JobStatus]bool{JobQueued: false, JobRunning: false, JobSucceeded: true, JobFailed: true, JobCancelled: true} {
		if s.Final() != final {
			t.Errorf("%s.Final() = %v", s, !final)
		}
	}
}
