package params

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// The node budget bounds how many nodes one YAML body may expand to. Aliases
// are expanded by copying, so without a bound a few hundred bytes of nested
// aliases ("billion laughs") would build an exponential tree. The bound is
// proportional to the body (a document without aliases has fewer nodes than
// bytes), so that a small body cannot cost much more work than a big one:
// a 400-byte alias bomb stops after yamlMinBudget nodes (about a
// millisecond) instead of a million.
const (
	yamlMinBudget    = 10000
	yamlBudgetFactor = 4
)

// parseYAMLBody reads the first document as Ruby's Psych would for YAML.load
// and takes the first value of its top-level mapping.
func parseYAMLBody(b []byte) (Params, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty YAML document", ErrInvalidBody)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidBody, err)
	}
	y := &yamlConv{budget: max(yamlMinBudget, yamlBudgetFactor*len(b))}
	root := y.deref(&doc)
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: not a YAML mapping", ErrInvalidBody)
	}
	var order []string
	top, err := y.mapping(root, &order)
	if err != nil {
		return nil, err
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("%w: empty YAML mapping", ErrInvalidBody)
	}
	m, ok := top[order[0]].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w: the first value is not a mapping", ErrInvalidBody)
	}
	return Params(m), nil
}

type yamlConv struct {
	budget int
}

// deref skips document wrappers and follows aliases.
func (y *yamlConv) deref(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return nil
}

// spend charges one node against the budget.
func (y *yamlConv) spend() error {
	if y.budget--; y.budget < 0 {
		return fmt.Errorf("%w: YAML document expands too far", ErrInvalidBody)
	}
	return nil
}

func (y *yamlConv) value(n *yaml.Node) (any, error) {
	if err := y.spend(); err != nil {
		return nil, err
	}
	n = y.deref(n)
	if n == nil {
		return nil, nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		m, err := y.mapping(n, nil)
		if err != nil {
			return nil, err
		}
		return m, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := y.value(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.ScalarNode:
		return yamlScalar(n)
	}
	return nil, fmt.Errorf("%w: unexpected YAML node", ErrInvalidBody)
}

// mapping converts a mapping; order, when non-nil, receives the keys in the
// order a Ruby Hash would list them (first insertion).
func (y *yamlConv) mapping(n *yaml.Node, order *[]string) (map[string]any, error) {
	m := make(map[string]any, len(n.Content)/2)
	set := func(k string, v any) {
		if _, dup := m[k]; !dup && order != nil {
			*order = append(*order, k)
		}
		m[k] = v
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		// Charged per pair too: merge keys expand aliases without values.
		if err := y.spend(); err != nil {
			return nil, err
		}
		kn := y.deref(n.Content[i])
		if kn == nil || kn.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("%w: YAML mapping key is not a scalar", ErrInvalidBody)
		}
		vn := n.Content[i+1]
		if kn.Tag == "!!merge" {
			if merged, ok, err := y.merge(vn); err != nil {
				return nil, err
			} else if ok {
				for _, k := range merged.order {
					set(k, merged.m[k])
				}
				continue
			}
		}
		v, err := y.value(vn)
		if err != nil {
			return nil, err
		}
		set(yamlKey(kn), v)
	}
	return m, nil
}

type orderedMap struct {
	m     map[string]any
	order []string
}

// merge implements Psych's "<<" key: a mapping (or alias to one) is merged
// over the keys so far; a sequence of mappings is merged with the earlier
// ones taking precedence. Anything else is kept as an ordinary "<<" key
// (ok=false), as Psych did when the merge raised TypeError.
func (y *yamlConv) merge(vn *yaml.Node) (orderedMap, bool, error) {
	into := func(dst *orderedMap, n *yaml.Node) (bool, error) {
		n = y.deref(n)
		if n == nil || n.Kind != yaml.MappingNode {
			return false, nil
		}
		var order []string
		m, err := y.mapping(n, &order)
		if err != nil {
			return false, err
		}
		for _, k := range order {
			if _, dup := dst.m[k]; !dup {
				dst.order = append(dst.order, k)
			}
			dst.m[k] = m[k]
		}
		return true, nil
	}
	out := orderedMap{m: map[string]any{}}
	n := y.deref(vn)
	if n != nil && n.Kind == yaml.SequenceNode {
		for i := len(n.Content) - 1; i >= 0; i-- {
			if ok, err := into(&out, n.Content[i]); err != nil || !ok {
				return orderedMap{}, false, err
			}
		}
		return out, true, nil
	}
	ok, err := into(&out, vn)
	return out, ok, err
}

// yamlKey: a plain key such as :name is a Ruby Symbol under Psych, which the
// handlers looked up as "name", so one leading ':' is dropped. Quoted keys
// (":name" in quotes) were Strings in Ruby and stay as written; other scalar
// keys keep their literal text.
func yamlKey(n *yaml.Node) string {
	if isPlain(n) && len(n.Value) > 1 && n.Value[0] == ':' {
		return n.Value[1:]
	}
	return n.Value
}

func isPlain(n *yaml.Node) bool {
	return n.Style&(yaml.TaggedStyle|yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0
}

// yamlScalar maps a scalar to the Params value set with Psych's (YAML 1.1)
// resolution for plain scalars: "", ~ and null (any case) are nil;
// yes/true/on and no/false/off (any case) are booleans, hence "true"/"false".
// Numbers keep their literal text. Quoted scalars are always strings.
func yamlScalar(n *yaml.Node) (any, error) {
	if n.Style&yaml.TaggedStyle != 0 {
		switch n.ShortTag() {
		case "!!null":
			return nil, nil
		case "!!bool":
			if b, ok := psychBool(n.Value); ok {
				return b, nil
			}
		case "!!binary":
			dec, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(n.Value), ""))
			if err != nil {
				return nil, fmt.Errorf("%w: bad !!binary scalar", ErrInvalidBody)
			}
			return string(dec), nil
		}
		return n.Value, nil
	}
	if !isPlain(n) {
		return n.Value, nil
	}
	switch strings.ToLower(n.Value) {
	case "", "~", "null":
		return nil, nil
	}
	if b, ok := psychBool(n.Value); ok {
		return b, nil
	}
	return n.Value, nil
}

func psychBool(s string) (string, bool) {
	switch strings.ToLower(s) {
	case "yes", "true", "on":
		return "true", true
	case "no", "false", "off":
		return "false", true
	}
	return "", false
}
