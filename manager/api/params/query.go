package params

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// depthLimit is Rack's param_depth_limit: a key may nest at most 99 levels
// below the top-level name. It also bounds our recursion.
const depthLimit = 100

// Separators: Rack 2.2 splits a query string on '&' and ';' (Request#GET) but
// a form body on '&' only (Request#POST), so a raw ';' inside a posted rule or
// user_data stays intact.
const (
	querySeps = "&;"
	formSeps  = "&"
)

// ParseQuery decodes a query string with Rack's parse_nested_query rules
// (Rack 2.2 Request#GET: pairs separated by '&' or ';', each separator
// swallowing following spaces).
//
// Rack details kept: a=1&a=2 → last wins; a bare "b" → nil; '+' → space; keys
// are percent-decoded before their brackets are split; a[]=… builds arrays and
// a[][b]=1&a[][c]=2&a[][b]=3 starts a new hash in the array when the last one
// already has the key. Type clashes give *ConflictError; bad escapes, keys
// that are not UTF-8 and over-deep nesting give *MalformedError.
func ParseQuery(q string) (Params, error) {
	return parseNested(q, querySeps)
}

// parseForm decodes an application/x-www-form-urlencoded body.
func parseForm(body string) (Params, error) {
	return parseNested(body, formSeps)
}

func parseNested(q, seps string) (Params, error) {
	p := Params{}
	for len(q) > 0 {
		var pair string
		if i := strings.IndexAny(q, seps); i >= 0 {
			pair = q[:i]
			q = strings.TrimLeft(q[i+1:], " ")
		} else {
			pair, q = q, ""
		}
		if pair == "" {
			// Rack: an empty pair decodes to an empty name, which it ignores.
			continue
		}
		rawK, rawV, hasV := strings.Cut(pair, "=")
		k, err := unescape(rawK)
		if err != nil {
			return nil, err
		}
		if !validKey(k) {
			return nil, &MalformedError{Reason: "parameter name is not valid UTF-8"}
		}
		var v any
		if hasV {
			s, err := unescape(rawV)
			if err != nil {
				return nil, err
			}
			v = s
		}
		if _, err := normalize(p, k, v, depthLimit); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// validKey: Ruby's regexp match on a key raises on broken UTF-8; values are
// never matched, so they may carry any bytes.
func validKey(k string) bool { return utf8.ValidString(k) }

// unescape is Ruby's URI.decode_www_form_component: '+' is a space and every
// '%' must start a two-digit hex escape.
func unescape(s string) (string, error) {
	out, err := url.QueryUnescape(s)
	if err != nil {
		return "", &MalformedError{Reason: "invalid %-encoding in " + quoteShort(s)}
	}
	return out, nil
}

// quoteShort quotes a fragment for an error message, bounded and printable.
func quoteShort(s string) string {
	const limit = 64
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return "\"" + strings.ToValidUTF8(s, "?") + "\""
}

// normalize is a line-by-line port of Rack 2.2 QueryParser#normalize_params.
// v is a string or nil. Like the Ruby method it returns the hash it filled,
// nil, or a one-element array (for the bare name "[]"); callers store that
// result as Rack did, odd as some outcomes are (a[[]]=1 → {"a": nil}).
func normalize(params map[string]any, name string, v any, depth int) (any, error) {
	if depth <= 0 {
		return nil, &MalformedError{Reason: "parameters nested too deeply"}
	}
	k, after := splitName(name)
	if k == "" {
		if v != nil && name == "[]" {
			return []any{v}, nil
		}
		return nil, nil
	}

	switch {
	case after == "":
		params[k] = v
	case after == "[":
		params[name] = v
	case after == "[]":
		arr, err := arrayAt(params, k)
		if err != nil {
			return nil, err
		}
		params[k] = append(arr, v)
	default:
		child, isArrayChild := arrayChildKey(after)
		if isArrayChild {
			arr, err := arrayAt(params, k)
			if err != nil {
				return nil, err
			}
			if n := len(arr); n > 0 {
				if last, ok := arr[n-1].(map[string]any); ok && !hashHasKey(last, child) {
					if _, err := normalize(last, child, v, depth-1); err != nil {
						return nil, err
					}
					params[k] = arr
					break
				}
			}
			r, err := normalize(map[string]any{}, child, v, depth-1)
			if err != nil {
				return nil, err
			}
			params[k] = append(arr, r)
			break
		}
		var h map[string]any
		switch cur := params[k].(type) {
		case nil: // absent or nil: Ruby's ||= replaces both
			h = map[string]any{}
		case map[string]any:
			h = cur
		default:
			return nil, &ConflictError{Key: k}
		}
		r, err := normalize(h, after, v, depth-1)
		if err != nil {
			return nil, err
		}
		params[k] = r
	}
	return params, nil
}

// arrayAt is Rack's `params[k] ||= []` followed by its Array type check.
func arrayAt(params map[string]any, k string) ([]any, error) {
	switch cur := params[k].(type) {
	case nil:
		return []any{}, nil
	case []any:
		return cur, nil
	}
	return nil, &ConflictError{Key: k}
}

// splitName matches Rack's %r(\A[\[\]]*([^\[\]]+)\]*): skip leading brackets,
// take the run of non-bracket bytes as the key, skip closing brackets; the
// rest is "after". No non-bracket byte at all means no match (k == "").
func splitName(name string) (k, after string) {
	i := 0
	for i < len(name) && isBracket(name[i]) {
		i++
	}
	j := i
	for j < len(name) && !isBracket(name[j]) {
		j++
	}
	if j == i {
		return "", ""
	}
	k = name[i:j]
	for j < len(name) && name[j] == ']' {
		j++
	}
	return k, name[j:]
}

func isBracket(c byte) bool { return c == '[' || c == ']' }

// arrayChildKey matches Rack's /^\[\]\[([^\[\]]+)\]$/ then /^\[\](.+)$/.
// Ruby's ^ and $ are line anchors, so a key holding a newline (%0A) can match
// on a later line; we scan line starts the same way to stay byte-exact.
func arrayChildKey(after string) (string, bool) {
	for start := 0; start <= len(after); {
		if c, ok := arrayHashAt(after[start:]); ok {
			return c, true
		}
		nl := strings.IndexByte(after[start:], '\n')
		if nl < 0 {
			break
		}
		start += nl + 1
	}
	for start := 0; start <= len(after); {
		line := after[start:]
		if nl := strings.IndexByte(line, '\n'); nl >= 0 {
			line = line[:nl]
		}
		// "." does not match a newline, so the child runs to the end of the line.
		if strings.HasPrefix(line, "[]") && len(line) > 2 {
			return line[2:], true
		}
		nl := strings.IndexByte(after[start:], '\n')
		if nl < 0 {
			break
		}
		start += nl + 1
	}
	return "", false
}

// arrayHashAt matches \[\]\[([^\[\]]+)\]$ at the start of s. The character
// class also matches newlines, so the key may span lines; $ then needs a
// newline or the end right after the closing bracket.
func arrayHashAt(s string) (string, bool) {
	if !strings.HasPrefix(s, "[][") {
		return "", false
	}
	i := 3
	for i < len(s) && !isBracket(s[i]) {
		i++
	}
	if i == 3 || i >= len(s) || s[i] != ']' {
		return "", false
	}
	if i+1 < len(s) && s[i+1] != '\n' {
		return "", false
	}
	return s[3:i], true
}

// hashHasKey is Rack's params_hash_has_key?: a child key naming an array
// never counts as present; otherwise walk the bracket path.
func hashHasKey(h map[string]any, key string) bool {
	if strings.Contains(key, "[]") {
		return false
	}
	var cur any = h
	for _, part := range strings.FieldsFunc(key, func(r rune) bool { return r == '[' || r == ']' }) {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}
