package scheduler

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// VifParam is one entry of request_params["vifs"]: {name: {index, network,
// security_groups, mac_addr, ipv4_addr, nat_network, nat_ipv4_addr}}.
type VifParam struct {
	Name           string
	Index          int
	HasIndex       bool
	Network        string
	NatNetwork     string
	SecurityGroups []string
	MacAddr        string
	IPv4Addr       string
	NatIPv4Addr    string
}

// errBadVifs is VifsRequestParam's message for a vifs parameter that is not
// a hash of hashes.
func errBadVifs() error {
	return newErr(KindNetwork, "Missing or badly formatted vifs request parameter")
}

// parseVifs decodes request_params["vifs"], which is either a JSON string
// (API JSON bodies keep it as text) or an already-decoded map (Rack form
// fields vifs[eth0][network]=…, or a JSON object). ok is false when the value
// is missing or not a hash of name → hash.
//
// Entry order decides the NIC indexes of entries without an index. A JSON
// string keeps its document order, as Ruby's Hash did; a decoded map has lost
// it, so its entries go in natural name order (eth2 before eth10).
func parseVifs(raw any) (vifs []VifParam, ok bool) {
	switch x := raw.(type) {
	case string:
		return parseVifsJSON(x)
	case map[string]any:
		names := make([]string, 0, len(x))
		for n := range x {
			names = append(names, n)
		}
		slices.SortFunc(names, naturalCompare)
		for _, n := range names {
			m, isMap := x[n].(map[string]any)
			if !isMap {
				return nil, false
			}
			vifs = append(vifs, vifFromMap(n, m))
		}
		return vifs, true
	case map[string]map[string]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = v
		}
		return parseVifs(m)
	}
	return nil, false
}

// parseVifsJSON decodes a JSON object of objects keeping key order.
func parseVifsJSON(s string) ([]VifParam, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	var vifs []VifParam
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		name := t.(string) // object keys are always strings
		var m map[string]any
		if err := dec.Decode(&m); err != nil || m == nil {
			return nil, false
		}
		vifs = append(vifs, vifFromMap(name, m))
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, false
	}
	if _, err := dec.Token(); err == nil {
		return nil, false // trailing data after the object
	}
	return vifs, true
}

func vifFromMap(name string, m map[string]any) VifParam {
	p := VifParam{
		Name:        name,
		Network:     strings.TrimSpace(scalarString(m["network"])),
		NatNetwork:  strings.TrimSpace(scalarString(m["nat_network"])),
		MacAddr:     strings.TrimSpace(scalarString(m["mac_addr"])),
		IPv4Addr:    strings.TrimSpace(scalarString(m["ipv4_addr"])),
		NatIPv4Addr: strings.TrimSpace(scalarString(m["nat_ipv4_addr"])),
	}
	switch ix := m["index"].(type) {
	case json.Number:
		if n, err := ix.Int64(); err == nil {
			p.Index, p.HasIndex = int(n), true
		} else if f, err := ix.Float64(); err == nil {
			p.Index, p.HasIndex = int(f), true // 1.0, as Ruby's to_i
		}
	case float64:
		p.Index, p.HasIndex = int(ix), true
	case int:
		p.Index, p.HasIndex = ix, true
	case string:
		if n, err := strconv.Atoi(strings.TrimSpace(ix)); err == nil {
			p.Index, p.HasIndex = n, true
		}
	}
	switch sg := m["security_groups"].(type) {
	case string:
		p.SecurityGroups = splitGroups(sg)
	case []any:
		for _, g := range sg {
			p.SecurityGroups = append(p.SecurityGroups, splitGroups(scalarString(g))...)
		}
	case []string:
		for _, g := range sg {
			p.SecurityGroups = append(p.SecurityGroups, splitGroups(g)...)
		}
	case map[string]any: // Rack form security_groups[0]=sg-a
		keys := make([]string, 0, len(sg))
		for k := range sg {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, naturalCompare)
		for _, k := range keys {
			p.SecurityGroups = append(p.SecurityGroups, splitGroups(scalarString(sg[k]))...)
		}
	}
	return p
}

// splitGroups splits a security group list given as one string; blanks are
// ignored (API spec: "blanks ignored").
func splitGroups(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
}

// assignIndexes gives entries without an index the running counter:
// counter = max(counter, index) + 1 after every entry (spec §4.3).
func assignIndexes(vifs []VifParam) {
	counter := 0
	for i := range vifs {
		if !vifs[i].HasIndex {
			vifs[i].Index = counter
		}
		counter = max(counter, vifs[i].Index) + 1
	}
}

// naturalCompare orders strings with digit runs compared as numbers.
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da != "" && db != "" {
			na, nb := strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
			if len(na) != len(nb) {
				return len(na) - len(nb)
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return int(a[0]) - int(b[0])
		}
		a, b = a[1:], b[1:]
	}
	return len(a) - len(b)
}

func digitPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// validNetworkUUID reports whether id has the syntax of a network uuid
// ("nw-" and lower-case letters or digits); the original's model raised
// InvalidUUIDError before looking up anything else.
func validNetworkUUID(id string) bool {
	rest, ok := strings.CutPrefix(id, "nw-")
	if !ok || rest == "" {
		return false
	}
	return !strings.ContainsFunc(rest, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	})
}
