package manage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// field is one key of a JSON object, in document order.
type field struct {
	key string
	val json.RawMessage
}

// objectFields decodes a JSON object keeping its key order: the API sends
// documents in the spec's field order and `show` prints them that way.
func objectFields(data []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("expected a JSON object")
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, err
		}
		out = append(out, field{key: key, val: raw})
	}
	return out, nil
}

// decodeValue decodes JSON with numbers kept as written.
func decodeValue(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// cell renders one value for a table: scalars as text, null as "-",
// string lists joined with commas, other structures as compact JSON.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case string:
		if x == "" {
			return "-"
		}
		return strings.NewReplacer("\n", `\n`, "\t", `\t`).Replace(x)
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "true"
		}
		return "false"
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return compact(v)
			}
			parts = append(parts, s)
		}
		if len(parts) == 0 {
			return "-"
		}
		return strings.Join(parts, ",")
	default:
		return compact(v)
	}
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// lookup follows a dotted path ("dc_network.name") through nested objects.
func lookup(item map[string]any, path string) any {
	var cur any = item
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// column is one column of a list table.
type column struct {
	header string
	value  func(item map[string]any) string
}

// col shows the value at path.
func col(header, path string) column {
	return column{header: header, value: func(item map[string]any) string { return cell(lookup(item, path)) }}
}

// writeTable prints rows under headers, aligned with tabwriter.
func writeTable(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// writeItems prints list items with the given columns.
func writeItems(w io.Writer, cols []column, items []map[string]any) error {
	headers := make([]string, len(cols))
	for i, c := range cols {
		headers[i] = c.header
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		r := make([]string, len(cols))
		for i, c := range cols {
			r[i] = c.value(it)
		}
		rows = append(rows, r)
	}
	return writeTable(w, headers, rows)
}

// writeDocument prints a JSON object as KEY VALUE lines in document order.
func writeDocument(w io.Writer, data []byte) error {
	fields, err := objectFields(data)
	if err != nil {
		return fmt.Errorf("unexpected response (not a JSON object): %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range fields {
		v, err := decodeValue(f.val)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\n", f.key, cell(v))
	}
	return tw.Flush()
}

// writeStringMap prints a flat object sorted by key (cluster status).
func writeStringMap(w io.Writer, data []byte) error {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return fmt.Errorf("unexpected response (not a JSON object): %w", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		rows = append(rows, []string{k, cell(m[k])})
	}
	return writeTable(w, []string{"KEY", "VALUE"}, rows)
}

// decodeItems decodes a JSON array of objects.
func decodeItems(data []byte) ([]map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var items []map[string]any
	if err := dec.Decode(&items); err != nil {
		return nil, fmt.Errorf("unexpected response (not an array of objects): %w", err)
	}
	return items, nil
}

// writeRaw prints a body as received, ending in a newline.
func writeRaw(w io.Writer, body []byte) error {
	if _, err := w.Write(body); err != nil {
		return err
	}
	if len(body) == 0 || body[len(body)-1] != '\n' {
		_, err := io.WriteString(w, "\n")
		return err
	}
	return nil
}
