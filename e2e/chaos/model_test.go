package chaos

import (
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// Checker tests over hand-written histories (no cluster): each model must
// accept what the system may do and reject what it must not, or the chaos
// test could not fail.

// op builds an operation; ret < 0 means the outcome is unknown.
func op(client int, in any, call, ret int64, out any) porcupine.Operation {
	if ret < 0 {
		ret = EndOfTime
	}
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func kv(o, key, v string) KVInput { return KVInput{Op: o, Key: key, Value: v} }

func res(o Outcome, v string) KVOutput { return KVOutput{Outcome: o, Value: v} }

func TestKVModel(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
		h    []porcupine.Operation
	}{
		{"sequential", true, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(0, kv(KVGet, "a", ""), 20, 30, res(OK, "1")),
			op(1, kv(KVPut, "a", "2"), 40, 50, res(OK, "")),
			op(0, kv(KVGet, "a", ""), 60, 70, res(OK, "2")),
			op(1, kv(KVDelete, "a", ""), 80, 90, res(OK, "")),
			op(0, kv(KVGet, "a", ""), 100, 110, res(NotFound, "")),
			op(1, kv(KVPut, "a", "3"), 120, 130, res(NotFound, "")),
		}},
		{"acknowledged put lost", false, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVPut, "a", "2"), 20, 30, res(OK, "")),
			op(0, kv(KVGet, "a", ""), 40, 50, res(OK, "1")),
		}},
		{"concurrent read sees either", true, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVPut, "a", "2"), 20, 60, res(OK, "")),
			op(0, kv(KVGet, "a", ""), 30, 40, res(OK, "1")),
			op(2, kv(KVGet, "a", ""), 45, 50, res(OK, "2")),
		}},
		{"reads go back", false, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVPut, "a", "2"), 20, 60, res(OK, "")),
			op(0, kv(KVGet, "a", ""), 30, 40, res(OK, "2")),
			op(2, kv(KVGet, "a", ""), 45, 50, res(OK, "1")),
		}},
		{"unknown put seen later", true, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVPut, "a", "2"), 20, -1, res(Unknown, "")),
			op(0, kv(KVGet, "a", ""), 30, 40, res(OK, "1")),
			op(0, kv(KVGet, "a", ""), 500, 510, res(OK, "2")),
		}},
		{"unknown put never applied", true, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVPut, "a", "2"), 20, -1, res(Unknown, "")),
			op(0, kv(KVGet, "a", ""), 500, 510, res(OK, "1")),
		}},
		{"unknown put applied, then undone", false, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVPut, "a", "2"), 20, -1, res(Unknown, "")),
			op(0, kv(KVGet, "a", ""), 30, 40, res(OK, "2")),
			op(0, kv(KVGet, "a", ""), 500, 510, res(OK, "1")),
		}},
		{"failed put seen", false, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVPut, "a", "2"), 20, 30, res(Failed, "")),
			op(0, kv(KVGet, "a", ""), 40, 50, res(OK, "2")),
		}},
		{"deleted group back", false, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVDelete, "a", ""), 20, 30, res(OK, "")),
			op(0, kv(KVGet, "a", ""), 40, 50, res(OK, "1")),
		}},
		{"unknown create found", true, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, -1, res(Unknown, "")),
			op(1, kv(KVGet, "a", ""), 20, 30, res(NotFound, "")),
			op(1, kv(KVGet, "a", ""), 40, 50, res(OK, "1")),
		}},
		{"keys are independent", true, []porcupine.Operation{
			op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
			op(1, kv(KVCreate, "b", "x"), 0, 10, res(OK, "")),
			op(0, kv(KVGet, "b", ""), 20, 30, res(OK, "x")),
			op(1, kv(KVGet, "a", ""), 20, 30, res(OK, "1")),
		}},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(KVModel, c.h); got != c.ok {
			t.Errorf("%s: linearizable = %v, want %v\n%s", c.name, got, c.ok, Describe(KVModel, c.h))
		}
	}
}

func inst(o string) InstInput { return InstInput{Op: o, ID: "i-1"} }

func ist(o Outcome, s string) InstOutput { return InstOutput{Outcome: o, State: s} }

func TestInstModel(t *testing.T) {
	create := op(0, inst(InstCreate), 0, 10, ist(OK, ""))
	running := op(1, inst(InstGet), 20, 30, ist(OK, "running"))
	cases := []struct {
		name string
		ok   bool
		h    []porcupine.Operation
	}{
		{"lifecycle", true, []porcupine.Operation{create,
			op(1, inst(InstGet), 12, 14, ist(OK, "scheduling")),
			running,
			op(0, inst(InstPoweroff), 40, 50, ist(OK, "")),
			op(1, inst(InstGet), 60, 70, ist(OK, "halting")),
			op(1, inst(InstGet), 80, 90, ist(OK, "halted")),
			op(0, inst(InstPoweron), 100, 110, ist(OK, "")),
			op(0, inst(InstPoweron), 120, 130, ist(Refused, "")),
			op(1, inst(InstGet), 140, 150, ist(OK, "running")),
			op(0, inst(InstDelete), 160, 170, ist(OK, "")),
			op(1, inst(InstGet), 180, 190, ist(OK, "shuttingdown")),
			op(1, inst(InstGet), 200, 210, ist(OK, "terminated")),
		}},
		{"acknowledged poweroff undone", false, []porcupine.Operation{create, running,
			op(0, inst(InstPoweroff), 40, 50, ist(OK, "")),
			op(1, inst(InstGet), 60, 70, ist(OK, "running")),
		}},
		{"poweron accepted while running", false, []porcupine.Operation{create, running,
			op(0, inst(InstPoweron), 40, 50, ist(OK, "")),
		}},
		{"poweron refused while halted", false, []porcupine.Operation{create, running,
			op(0, inst(InstPoweroff), 40, 50, ist(OK, "")),
			op(1, inst(InstGet), 60, 70, ist(OK, "halted")),
			op(0, inst(InstPoweron), 80, 90, ist(Refused, "")),
		}},
		{"poweron failed to connect while halted", true, []porcupine.Operation{create, running,
			op(0, inst(InstPoweroff), 40, 50, ist(OK, "")),
			op(1, inst(InstGet), 60, 70, ist(OK, "halted")),
			op(0, inst(InstPoweron), 80, 90, ist(Failed, "")),
			op(1, inst(InstGet), 100, 110, ist(OK, "halted")),
		}},
		{"unknown poweroff takes effect later", true, []porcupine.Operation{create, running,
			op(0, inst(InstPoweroff), 40, -1, ist(Unknown, "")),
			op(1, inst(InstGet), 60, 70, ist(OK, "running")),
			op(1, inst(InstGet), 80, 90, ist(OK, "halted")),
		}},
		{"halted without poweroff", false, []porcupine.Operation{create, running,
			op(1, inst(InstGet), 40, 50, ist(OK, "halted")),
		}},
		{"halted without poweroff, by the monitor after an hva was lost", true, []porcupine.Operation{create, running,
			op(2, inst(InstHvaLost), 35, 35, ist(OK, "")),
			op(1, inst(InstGet), 40, 50, ist(OK, "halted")),
		}},
		{"halted twice by one lost hva", false, []porcupine.Operation{create, running,
			op(2, inst(InstHvaLost), 35, 35, ist(OK, "")),
			op(1, inst(InstGet), 40, 50, ist(OK, "halted")),
			op(0, inst(InstPoweron), 60, 70, ist(OK, "")),
			op(1, inst(InstGet), 80, 90, ist(OK, "running")),
			op(1, inst(InstGet), 100, 110, ist(OK, "halted")),
		}},
		{"stale poweroff after a poweron that followed the lost hva", false, []porcupine.Operation{create, running,
			op(0, inst(InstPoweroff), 32, 34, ist(OK, "")),
			op(2, inst(InstHvaLost), 35, 35, ist(OK, "")),
			op(1, inst(InstGet), 40, 50, ist(OK, "halted")),
			op(0, inst(InstPoweron), 60, 70, ist(OK, "")),
			op(1, inst(InstGet), 80, 90, ist(OK, "running")),
			op(1, inst(InstGet), 100, 110, ist(OK, "halted")),
		}},
		{"halted by the evacuation of a host whose hva was cut off", true, []porcupine.Operation{create, running,
			op(2, inst(InstHvaLost), 35, 60, ist(OK, "")),
			op(1, inst(InstGet), 40, 50, ist(OK, "halted")),
			op(0, inst(InstPoweron), 70, 80, ist(OK, "")),
			op(1, inst(InstGet), 90, 100, ist(OK, "running")),
		}},
		{"halted before the hva was cut off", false, []porcupine.Operation{create, running,
			op(1, inst(InstGet), 40, 50, ist(OK, "halted")),
			op(2, inst(InstHvaLost), 55, 90, ist(OK, "")),
		}},
		{"running again without poweron", false, []porcupine.Operation{create, running,
			op(0, inst(InstPoweroff), 40, 50, ist(OK, "")),
			op(1, inst(InstGet), 60, 70, ist(OK, "halted")),
			op(1, inst(InstGet), 80, 90, ist(OK, "running")),
		}},
		{"terminated without delete", false, []porcupine.Operation{create, running,
			op(1, inst(InstGet), 40, 50, ist(OK, "shuttingdown")),
		}},
		{"terminated instance back", false, []porcupine.Operation{create, running,
			op(0, inst(InstDelete), 40, 50, ist(OK, "")),
			op(1, inst(InstGet), 60, 70, ist(OK, "terminated")),
			op(1, inst(InstGet), 80, 90, ist(OK, "running")),
		}},
	}
	for _, c := range cases {
		if got := porcupine.CheckOperations(InstModel, c.h); got != c.ok {
			t.Errorf("%s: linearizable = %v, want %v\n%s", c.name, got, c.ok, Describe(InstModel, c.h))
		}
	}
}

func TestCheckStale(t *testing.T) {
	h := []porcupine.Operation{
		op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
		op(0, kv(KVPut, "a", "2"), 20, 30, res(OK, "")),
		op(0, kv(KVPut, "a", "3"), 40, -1, res(Unknown, "")),
		op(0, kv(KVPut, "a", "4"), 45, 46, res(Failed, "")),
		op(0, kv(KVDelete, "a", ""), 50, 60, res(OK, "")),
		op(0, kv(KVCreate, "b", "x"), 0, 10, res(OK, "")),
	}
	read := func(m, key string, call, ret int64, v string) StaleRead {
		return StaleRead{Manager: m, Key: key, Call: call, Return: ret, Found: v != "", Value: v}
	}
	cases := []struct {
		name  string
		reads []StaleRead
		want  string // substring of the one violation; "" for none
	}{
		{"lagging but monotonic", []StaleRead{
			read("m1", "a", 5, 6, ""), read("m1", "a", 12, 13, "1"), read("m1", "a", 32, 33, "2"),
			read("m1", "a", 42, 43, "3"), read("m1", "a", 70, 71, ""),
		}, ""},
		{"each manager its own pace", []StaleRead{
			read("m1", "a", 32, 33, "2"), read("m2", "a", 34, 35, "1"),
		}, ""},
		{"never written", []StaleRead{read("m1", "b", 20, 21, "y")}, "no create or put wrote"},
		{"failed write seen", []StaleRead{read("m1", "a", 47, 48, "4")}, "no create or put wrote"},
		{"from the future", []StaleRead{read("m1", "a", 12, 13, "2")}, "written later"},
		{"went back", []StaleRead{read("m1", "a", 32, 33, "2"), read("m1", "a", 34, 35, "1")}, "went back"},
		{"vanished without delete", []StaleRead{read("m1", "b", 20, 21, "x"), read("m1", "b", 22, 23, "")}, "no delete called"},
		{"back from deletion", []StaleRead{
			read("m1", "a", 32, 33, "2"), read("m1", "a", 61, 62, ""), read("m1", "a", 63, 64, "2"),
		}, "back from deletion"},
	}
	for _, c := range cases {
		bad := CheckStale(h, c.reads)
		switch {
		case c.want == "" && len(bad) > 0:
			t.Errorf("%s: violations %v", c.name, bad)
		case c.want != "" && (len(bad) != 1 || !strings.Contains(bad[0], c.want)):
			t.Errorf("%s: violations %v, want one saying %q", c.name, bad, c.want)
		}
	}
}

func TestLostWrites(t *testing.T) {
	base := []porcupine.Operation{
		op(0, kv(KVCreate, "a", "1"), 0, 10, res(OK, "")),
		op(0, kv(KVPut, "a", "2"), 20, 30, res(OK, "")),
	}
	if lost := LostWrites(append(base, op(1, kv(KVGet, "a", ""), 40, 50, res(OK, "2")))); len(lost) != 0 {
		t.Fatalf("lost = %v", lost)
	}
	lost := LostWrites(append(base, op(1, kv(KVGet, "a", ""), 40, 50, res(OK, "1"))))
	if len(lost) != 1 || !strings.Contains(lost[0], `put of "2"`) {
		t.Fatalf("lost = %v", lost)
	}
	// A later unknown write makes the last value uncertain: not counted.
	h := append(base, op(0, kv(KVPut, "a", "3"), 32, -1, res(Unknown, "")),
		op(1, kv(KVGet, "a", ""), 40, 50, res(OK, "1")))
	if lost := LostWrites(h); len(lost) != 0 {
		t.Fatalf("lost with an unknown write after = %v", lost)
	}
	lost = LostWrites(append(base, op(0, kv(KVDelete, "a", ""), 32, 35, res(OK, "")),
		op(1, kv(KVGet, "a", ""), 40, 50, res(OK, "2"))))
	if len(lost) != 1 || !strings.Contains(lost[0], "delete") {
		t.Fatalf("lost delete = %v", lost)
	}
}
