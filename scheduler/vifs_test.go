package scheduler

import (
	"reflect"
	"testing"
)

func TestParseVifs(t *testing.T) {
	tests := []struct {
		name   string
		raw    any
		want   []VifParam
		wantOK bool
	}{
		{"missing", nil, nil, false},
		{"not JSON", "string", nil, false},
		{"JSON list", `[{}]`, nil, false},
		{"JSON null", `null`, nil, false},
		{"JSON entry null", `{"eth0":null}`, nil, false},
		{"JSON entry string", `{"eth0":"nw-a"}`, nil, false},
		{"JSON trailing data", `{"eth0":{}} {}`, nil, false},
		{"JSON truncated", `{"eth0":{}`, nil, false},
		{"JSON empty", `{}`, nil, true},
		{"JSON fields, document order", `{"z":{"index":"2","network":" nw-a ","nat_network":"nw-n","mac_addr":"000001","ipv4_addr":"1.2.3.4","nat_ipv4_addr":"5.6.7.8","security_groups":["sg-a","sg-b sg-c",""]},"a":{"index":1.0}}`,
			[]VifParam{
				{Name: "z", Index: 2, HasIndex: true, Network: "nw-a", NatNetwork: "nw-n", MacAddr: "000001", IPv4Addr: "1.2.3.4", NatIPv4Addr: "5.6.7.8", SecurityGroups: []string{"sg-a", "sg-b", "sg-c"}},
				{Name: "a", Index: 1, HasIndex: true},
			}, true},
		{"JSON bad index ignored", `{"eth0":{"index":"x"}}`, []VifParam{{Name: "eth0"}}, true},
		{"decoded JSON object", map[string]any{"eth1": map[string]any{"index": float64(1)}, "eth0": map[string]any{"security_groups": []any{"sg-a"}}},
			[]VifParam{{Name: "eth0", SecurityGroups: []string{"sg-a"}}, {Name: "eth1", Index: 1, HasIndex: true}}, true},
		{"typed map", map[string]map[string]any{"eth0": {"index": 3, "security_groups": []string{"sg-a", " "}}},
			[]VifParam{{Name: "eth0", Index: 3, HasIndex: true, SecurityGroups: []string{"sg-a"}}}, true},
		{"form map entry not a map", map[string]any{"eth0": []any{}}, nil, false},
		{"number", 42, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseVifs(tt.raw)
			if ok != tt.wantOK || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseVifs = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestNaturalCompare(t *testing.T) {
	ordered := []string{"", "eth", "eth0", "eth1", "eth2", "eth02x", "eth10", "eth10a", "ethb", "vif"}
	for i := range ordered {
		for j := range ordered {
			c := naturalCompare(ordered[i], ordered[j])
			if (i < j && c >= 0) || (i > j && c <= 0) || (i == j && c != 0) {
				t.Errorf("naturalCompare(%q, %q) = %d", ordered[i], ordered[j], c)
			}
		}
	}
}

func TestValidNetworkUUID(t *testing.T) {
	for id, want := range map[string]bool{
		"nw-demo1": true, "nw-abcd1234": true, "nw-": false, "nw-ABC": false, "nw_demo": false,
		"nonexistent": false, "nwg-shnet": false, "nw-a-b": false, "": false,
	} {
		if got := validNetworkUUID(id); got != want {
			t.Errorf("validNetworkUUID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestParseMAC(t *testing.T) {
	for s, want := range map[string]string{"525400123456": "525400123456", "52:54:00:AB:cd:ef": "525400abcdef", "52-54-00-00-00-01": "525400000001"} {
		m, err := ParseMAC(s)
		if err != nil || m.String() != want {
			t.Errorf("ParseMAC(%q) = %v, %v; want %s", s, m, err, want)
		}
	}
	for _, s := range []string{"", "5254001234", "52540012345g", "5254001234567"} {
		if _, err := ParseMAC(s); err == nil {
			t.Errorf("ParseMAC(%q) succeeded", s)
		}
	}
	if m := makeMAC(0x525400, 0xabcdef); m.Vendor() != 0x525400 || m.Addr() != 0xabcdef {
		t.Errorf("vendor/addr of %v", m)
	}
}

func TestErrorKinds(t *testing.T) {
	if KindHostNode.String() != "HostNodeSchedulingError" || KindOutOfIPRange.String() != "OutOfIpRange" || ErrorKind(99).String() != "ErrorKind(99)" {
		t.Error("kind names")
	}
	if KindOf(nil) != 0 || IsKind(nil, KindNetwork) {
		t.Error("nil error has a kind")
	}
}
