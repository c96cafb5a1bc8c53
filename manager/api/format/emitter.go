package format

import "unicode/utf8"

// This file ports the parts of libyaml 0.2.5's emitter (src/emitter.c) that
// Psych's to_yaml of JSON-like data exercises: one explicit document, block
// mappings and sequences, "[]"/"{}" for empty ones, and plain, single-quoted,
// double-quoted and literal scalars, with libyaml's defaults as Psych leaves
// them (indent 2, width 80, unicode on). Names and flags follow emitter.c so
// the two can be compared line by line; byte-compatibility depends on the
// whitespace/indention/column bookkeeping being exactly the same.

const (
	bestIndent = 2
	bestWidth  = 80
)

type emitter struct {
	buf        []byte
	column     int
	indent     int
	whitespace bool // last thing written was whitespace (or nothing)
	indention  bool // only indentation written on the current line so far
	openEnded  int  // 2 after a "|+" scalar: the stream needs a "..." end

	// libyaml's flow_level is always 0 here: only empty collections are
	// written in flow style, so no scalar is ever emitted inside one and
	// the flow-only branches of emitter.c are left out.

	// Context of the node being emitted (yaml_emitter_emit_node's flags;
	// sequence_context is left out because libyaml never reads it).
	rootContext      bool
	mappingContext   bool
	simpleKeyContext bool
}

// scalarAnalysis is yaml_emitter_analyze_scalar's result.
type scalarAnalysis struct {
	length              int
	multiline           bool
	flowPlainAllowed    bool // unused while flow_level is 0; kept to mirror emitter.c
	blockPlainAllowed   bool
	singleQuotedAllowed bool
	blockAllowed        bool
}

// --- character classes (yaml_private.h), on valid UTF-8 ---

func charWidth(c byte) int {
	switch {
	case c&0x80 == 0x00:
		return 1
	case c&0xE0 == 0xC0:
		return 2
	case c&0xF0 == 0xE0:
		return 3
	case c&0xF8 == 0xF0:
		return 4
	}
	return 0
}

func isBreakAt(s string, i int) bool {
	if i >= len(s) {
		return false
	}
	switch s[i] {
	case '\r', '\n':
		return true
	case 0xC2:
		return i+1 < len(s) && s[i+1] == 0x85
	case 0xE2:
		return i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9)
	}
	return false
}

func isSpaceAt(s string, i int) bool { return i < len(s) && s[i] == ' ' }

// isBlankzAt treats the end of the string as NUL, as libyaml reads Ruby's
// NUL terminator there.
func isBlankzAt(s string, i int) bool {
	if i >= len(s) {
		return true
	}
	c := s[i]
	return c == ' ' || c == '\t' || c == 0 || isBreakAt(s, i)
}

func isPrintableAt(s string, i int) bool {
	c := s[i]
	switch {
	case c == 0x0A:
		return true
	case c >= 0x20 && c <= 0x7E:
		return true
	case c == 0xC2:
		return s[i+1] >= 0xA0
	case c > 0xC2 && c < 0xED:
		return true
	case c == 0xED:
		return s[i+1] < 0xA0
	case c == 0xEE:
		return true
	case c == 0xEF:
		return !(s[i+1] == 0xBB && s[i+2] == 0xBF) &&
			!(s[i+1] == 0xBF && (s[i+2] == 0xBE || s[i+2] == 0xBF))
	}
	return false
}

func isBOMAt(s string, i int) bool {
	return i+2 < len(s) && s[i] == 0xEF && s[i+1] == 0xBB && s[i+2] == 0xBF
}

// --- output primitives ---

func (e *emitter) put(c byte) {
	e.buf = append(e.buf, c)
	e.column++
}

func (e *emitter) putBreak() {
	e.buf = append(e.buf, '\n')
	e.column = 0
}

// write copies the character at s[i] and returns the next index.
func (e *emitter) write(s string, i int) int {
	w := charWidth(s[i])
	e.buf = append(e.buf, s[i:i+w]...)
	e.column++
	return i + w
}

// writeBreak copies the line break at s[i], normalising "\n" via putBreak.
func (e *emitter) writeBreak(s string, i int) int {
	if s[i] == '\n' {
		e.putBreak()
		return i + 1
	}
	w := charWidth(s[i])
	e.buf = append(e.buf, s[i:i+w]...)
	e.column = 0
	return i + w
}

func (e *emitter) writeIndent() {
	indent := max(e.indent, 0)
	if !e.indention || e.column > indent || (e.column == indent && !e.whitespace) {
		e.putBreak()
	}
	for e.column < indent {
		e.put(' ')
	}
	e.whitespace = true
	e.indention = true
}

func (e *emitter) writeIndicator(ind string, needWhitespace, isWhitespace, isIndention bool) {
	if needWhitespace && !e.whitespace {
		e.put(' ')
	}
	e.buf = append(e.buf, ind...)
	e.column += len(ind)
	e.whitespace = isWhitespace
	e.indention = e.indention && isIndention
}

// increaseIndent returns the previous indent for the caller to restore,
// standing in for libyaml's indents stack.
func (e *emitter) increaseIndent(flow, indentless bool) int {
	prev := e.indent
	if e.indent < 0 {
		if flow {
			e.indent = bestIndent
		} else {
			e.indent = 0
		}
	} else if !indentless {
		e.indent += bestIndent
	}
	return prev
}

// --- document ---

func (e *emitter) document(root any) error {
	e.indent = -1
	e.whitespace = true
	e.indention = true
	// Psych starts every document explicitly and ends it implicitly.
	e.writeIndent()
	e.writeIndicator("---", true, false, false)
	if err := e.emitNode(root, true, false, false); err != nil {
		return err
	}
	e.writeIndent()
	if e.openEnded == 2 {
		// A trailing "|+" scalar could swallow what follows; libyaml
		// closes the stream explicitly.
		e.writeIndicator("...", true, false, false)
		e.writeIndent()
	}
	return nil
}

func (e *emitter) setContext(root, mapping, simpleKey bool) {
	e.rootContext = root
	e.mappingContext = mapping
	e.simpleKeyContext = simpleKey
}

// --- collections ---

// emitMapping writes a block mapping of symbol keys (libyaml's
// emit_block_mapping_key/value states), or "{}" when empty: Psych asks for
// block style, but yaml_emitter_check_empty_mapping switches to flow.
func (e *emitter) emitMapping(keys []string, vals []any) error {
	if len(keys) == 0 {
		e.writeIndicator("{", true, true, false)
		e.writeIndicator("}", false, false, false)
		return nil
	}
	prev := e.increaseIndent(false, false)
	for i, k := range keys {
		if !utf8.ValidString(k) {
			return ErrInvalidUTF8
		}
		key := keyScalar(k)
		an := analyzeScalar(key.value)
		e.writeIndent()
		if checkSimpleKey(an) {
			e.setContext(false, true, true)
			e.emitScalar(key, an)
			e.writeIndicator(":", false, false, false)
		} else {
			e.writeIndicator("?", true, false, true)
			e.setContext(false, true, false)
			e.emitScalar(key, an)
			e.writeIndent()
			e.writeIndicator(":", true, false, true)
		}
		if err := e.emitNode(vals[i], false, true, false); err != nil {
			return err
		}
	}
	e.indent = prev
	return nil
}

// emitSequence writes a block sequence, or "[]" when empty.
func emitSequence[T any](e *emitter, items []T) error {
	if len(items) == 0 {
		e.writeIndicator("[", true, true, false)
		e.writeIndicator("]", false, false, false)
		return nil
	}
	// A sequence that is a mapping value is not indented relative to the
	// key ("indentless"), unless something already sits on the line.
	prev := e.increaseIndent(false, e.mappingContext && !e.indention)
	for _, item := range items {
		e.writeIndent()
		e.writeIndicator("-", true, false, true)
		if err := e.emitNode(any(item), false, false, false); err != nil {
			return err
		}
	}
	e.indent = prev
	return nil
}

// checkSimpleKey is yaml_emitter_check_simple_key for a scalar key: keys
// longer than 128 bytes or spanning lines need the explicit "? " form.
func checkSimpleKey(an scalarAnalysis) bool {
	return !an.multiline && an.length <= 128
}

// --- scalars ---

func (e *emitter) emitScalar(sc scalar, an scalarAnalysis) {
	handle, suffix := "", ""
	if sc.tag != "" && !sc.plainImplicit && !sc.quotedImplicit {
		handle, suffix = analyzeTag(sc.tag)
	}
	style := e.selectScalarStyle(sc, an, &handle, suffix)
	e.processTag(handle, suffix)
	prev := e.increaseIndent(true, false)
	switch style {
	case stylePlain:
		e.writePlain(sc.value, !e.simpleKeyContext)
	case styleSingle:
		e.writeSingleQuoted(sc.value, !e.simpleKeyContext)
	case styleDouble:
		e.writeDoubleQuoted(sc.value, !e.simpleKeyContext)
	case styleLiteral:
		e.writeLiteral(sc.value)
	}
	e.indent = prev
}

// analyzeTag splits a tag by libyaml's default tag directives
// ("!" => "!", "!!" => "tag:yaml.org,2002:").
func analyzeTag(tag string) (handle, suffix string) {
	if len(tag) > 1 && tag[0] == '!' {
		return "!", tag[1:]
	}
	if len(tag) > len(yamlTagPrefix) && tag[:len(yamlTagPrefix)] == yamlTagPrefix {
		return tagHandleSecondary, tag[len(yamlTagPrefix):]
	}
	return "", tag
}

func (e *emitter) selectScalarStyle(sc scalar, an scalarAnalysis, handle *string, suffix string) scalarStyle {
	noTag := *handle == "" && suffix == ""
	style := sc.style
	if style == styleAny {
		style = stylePlain
	}
	if e.simpleKeyContext && an.multiline {
		style = styleDouble
	}
	if style == stylePlain {
		if !an.blockPlainAllowed {
			style = styleSingle
		}
		if an.length == 0 && e.simpleKeyContext {
			style = styleSingle
		}
		if noTag && !sc.plainImplicit {
			style = styleSingle
		}
	}
	if style == styleSingle && !an.singleQuotedAllowed {
		style = styleDouble
	}
	if style == styleLiteral && (!an.blockAllowed || e.simpleKeyContext) {
		style = styleDouble
	}
	if noTag && !sc.quotedImplicit && style != stylePlain {
		// A quoted scalar that must not resolve as a plain string gets
		// the non-specific tag "!".
		*handle = "!"
	}
	return style
}

func (e *emitter) processTag(handle, suffix string) {
	if handle == "" && suffix == "" {
		return
	}
	if handle != "" {
		if !e.whitespace {
			e.put(' ')
		}
		e.buf = append(e.buf, handle...)
		e.column += len(handle)
		// Our suffixes ("str", "ruby/symbol") need no URI escaping.
		e.buf = append(e.buf, suffix...)
		e.column += len(suffix)
	} else {
		e.writeIndicator("!<", true, false, false)
		e.buf = append(e.buf, suffix...)
		e.column += len(suffix)
		e.writeIndicator(">", false, false, false)
	}
	e.whitespace = false
	e.indention = false
}

func analyzeScalar(s string) scalarAnalysis {
	if an, ok := analyzeSimpleScalar(s); ok {
		return an
	}
	return analyzeScalarFull(s)
}

// analyzeScalarFull is yaml_emitter_analyze_scalar.
func analyzeScalarFull(s string) scalarAnalysis {
	an := scalarAnalysis{length: len(s)}
	if s == "" {
		an.blockPlainAllowed = true
		an.singleQuotedAllowed = true
		return an
	}
	var blockIndicators, flowIndicators, lineBreaks, specialCharacters bool
	var leadingSpace, leadingBreak, trailingSpace, trailingBreak bool
	var breakSpace, spaceBreak, previousSpace, previousBreak bool

	if (len(s) >= 3 && s[:3] == "---") || (len(s) >= 3 && s[:3] == "...") {
		blockIndicators = true
		flowIndicators = true
	}
	precededByWhitespace := true
	followedByWhitespace := isBlankzAt(s, charWidth(s[0]))

	for i := 0; i < len(s); {
		c := s[i]
		w := charWidth(c)
		if i == 0 {
			switch c {
			case '#', ',', '[', ']', '{', '}', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`':
				flowIndicators = true
				blockIndicators = true
			case '?', ':':
				flowIndicators = true
				if followedByWhitespace {
					blockIndicators = true
				}
			case '-':
				if followedByWhitespace {
					flowIndicators = true
					blockIndicators = true
				}
			}
		} else {
			switch c {
			case ',', '?', '[', ']', '{', '}':
				flowIndicators = true
			case ':':
				flowIndicators = true
				if followedByWhitespace {
					blockIndicators = true
				}
			case '#':
				if precededByWhitespace {
					flowIndicators = true
					blockIndicators = true
				}
			}
		}
		// Psych turns on unicode, so only unprintables are special.
		if !isPrintableAt(s, i) {
			specialCharacters = true
		}
		isBreak := isBreakAt(s, i)
		if isBreak {
			lineBreaks = true
		}
		switch {
		case c == ' ':
			if i == 0 {
				leadingSpace = true
			}
			if i+w == len(s) {
				trailingSpace = true
			}
			if previousBreak {
				breakSpace = true
			}
			previousSpace = true
			previousBreak = false
		case isBreak:
			if i == 0 {
				leadingBreak = true
			}
			if i+w == len(s) {
				trailingBreak = true
			}
			if previousSpace {
				spaceBreak = true
			}
			previousSpace = false
			previousBreak = true
		default:
			previousSpace = false
			previousBreak = false
		}
		precededByWhitespace = isBlankzAt(s, i)
		i += w
		if i < len(s) {
			followedByWhitespace = isBlankzAt(s, i+charWidth(s[i]))
		}
	}

	an.multiline = lineBreaks
	an.flowPlainAllowed = true
	an.blockPlainAllowed = true
	an.singleQuotedAllowed = true
	an.blockAllowed = true
	if leadingSpace || leadingBreak || trailingSpace || trailingBreak {
		an.flowPlainAllowed = false
		an.blockPlainAllowed = false
	}
	if trailingSpace {
		an.blockAllowed = false
	}
	if breakSpace {
		an.flowPlainAllowed = false
		an.blockPlainAllowed = false
		an.singleQuotedAllowed = false
	}
	if spaceBreak || specialCharacters {
		an.flowPlainAllowed = false
		an.blockPlainAllowed = false
		an.singleQuotedAllowed = false
		an.blockAllowed = false
	}
	if lineBreaks {
		an.flowPlainAllowed = false
		an.blockPlainAllowed = false
	}
	if flowIndicators {
		an.flowPlainAllowed = false
	}
	if blockIndicators {
		an.blockPlainAllowed = false
	}
	return an
}

// analyzeSimpleScalar is a shortcut for the common case, identifiers,
// addresses, times and symbol keys: printable ASCII with no block indicator
// (": ", " #", a leading "- " and the like), no leading or trailing space,
// and a first character that is at most a flow indicator. It gives the same
// result as the full analysis and reports false for anything else.
func analyzeSimpleScalar(s string) (scalarAnalysis, bool) {
	n := len(s)
	if n == 0 {
		return scalarAnalysis{}, false
	}
	flowPlain := true
	for i := 1; i < n; i++ {
		switch c := s[i]; {
		case c < 0x20 || c > 0x7E:
			return scalarAnalysis{}, false
		case c == ',' || c == '?' || c == '[' || c == ']' || c == '{' || c == '}':
			flowPlain = false
		case c == ':':
			if i == n-1 || s[i+1] == ' ' {
				return scalarAnalysis{}, false
			}
			flowPlain = false
		case c == '#' && s[i-1] == ' ':
			return scalarAnalysis{}, false
		case c == ' ' && i == n-1:
			return scalarAnalysis{}, false
		}
	}
	switch c := s[0]; {
	case ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9'):
	case c == '_' || c == '/' || c == '+' || c == '=' || c == '(' || c == ')' ||
		c == ';' || c == '$' || c == '^' || c == '~' || c == '<' || c == '\\':
	case c == '.':
		if n >= 3 && s[1] == '.' && s[2] == '.' {
			return scalarAnalysis{}, false
		}
	case c == '-' || c == ':':
		if n == 1 || s[1] == ' ' || (c == '-' && n >= 3 && s[1] == '-' && s[2] == '-') {
			return scalarAnalysis{}, false
		}
		flowPlain = flowPlain && c != ':'
	default:
		return scalarAnalysis{}, false
	}
	return scalarAnalysis{
		length:              n,
		flowPlainAllowed:    flowPlain,
		blockPlainAllowed:   true,
		singleQuotedAllowed: true,
		blockAllowed:        true,
	}, true
}

func (e *emitter) writePlain(s string, allowBreaks bool) {
	// libyaml avoids a trailing space for an empty value ("key:").
	if !e.whitespace && s != "" {
		e.put(' ')
	}
	spaces, breaks := false, false
	for i := 0; i < len(s); {
		switch {
		case s[i] == ' ':
			if allowBreaks && !spaces && e.column > bestWidth && !isSpaceAt(s, i+1) {
				e.writeIndent()
				i++
			} else {
				i = e.write(s, i)
			}
			spaces = true
		case isBreakAt(s, i):
			if !breaks && s[i] == '\n' {
				e.putBreak()
			}
			i = e.writeBreak(s, i)
			e.indention = true
			breaks = true
		default:
			if breaks {
				e.writeIndent()
			}
			// Copy the run up to the next space or break in one go; only
			// spaces and breaks need the per-character logic above.
			j := i + 1
			for j < len(s) && s[j] != ' ' && s[j] != '\n' && s[j] != '\r' && s[j] != 0xC2 && s[j] != 0xE2 {
				j++
			}
			e.buf = append(e.buf, s[i:j]...)
			e.column += utf8.RuneCountInString(s[i:j])
			i = j
			e.indention = false
			spaces = false
			breaks = false
		}
	}
	e.whitespace = false
	e.indention = false
	if e.rootContext {
		e.openEnded = 1
	}
}

func (e *emitter) writeSingleQuoted(s string, allowBreaks bool) {
	e.writeIndicator("'", true, false, false)
	spaces, breaks := false, false
	for i := 0; i < len(s); {
		switch {
		case s[i] == ' ':
			if allowBreaks && !spaces && e.column > bestWidth && i != 0 && i != len(s)-1 && !isSpaceAt(s, i+1) {
				e.writeIndent()
				i++
			} else {
				i = e.write(s, i)
			}
			spaces = true
		case isBreakAt(s, i):
			if !breaks && s[i] == '\n' {
				e.putBreak()
			}
			i = e.writeBreak(s, i)
			e.indention = true
			breaks = true
		default:
			if breaks {
				e.writeIndent()
			}
			if s[i] == '\'' {
				e.put('\'')
			}
			i = e.write(s, i)
			e.indention = false
			spaces = false
			breaks = false
		}
	}
	if breaks {
		e.writeIndent()
	}
	e.writeIndicator("'", false, false, false)
	e.whitespace = false
	e.indention = false
}

func (e *emitter) writeDoubleQuoted(s string, allowBreaks bool) {
	const hex = "0123456789ABCDEF"
	e.writeIndicator("\"", true, false, false)
	spaces := false
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case !isPrintableAt(s, i) || isBOMAt(s, i) || isBreakAt(s, i) || c == '"' || c == '\\':
			w := charWidth(c)
			var v rune
			switch w {
			case 1:
				v = rune(c & 0x7F)
			case 2:
				v = rune(c & 0x1F)
			case 3:
				v = rune(c & 0x0F)
			case 4:
				v = rune(c & 0x07)
			}
			for k := 1; k < w; k++ {
				v = v<<6 + rune(s[i+k]&0x3F)
			}
			i += w
			e.put('\\')
			switch v {
			case 0x00:
				e.put('0')
			case 0x07:
				e.put('a')
			case 0x08:
				e.put('b')
			case 0x09:
				e.put('t')
			case 0x0A:
				e.put('n')
			case 0x0B:
				e.put('v')
			case 0x0C:
				e.put('f')
			case 0x0D:
				e.put('r')
			case 0x1B:
				e.put('e')
			case 0x22:
				e.put('"')
			case 0x5C:
				e.put('\\')
			case 0x85:
				e.put('N')
			case 0xA0:
				e.put('_')
			case 0x2028:
				e.put('L')
			case 0x2029:
				e.put('P')
			default:
				n := 8
				switch {
				case v <= 0xFF:
					e.put('x')
					n = 2
				case v <= 0xFFFF:
					e.put('u')
					n = 4
				default:
					e.put('U')
				}
				for k := (n - 1) * 4; k >= 0; k -= 4 {
					e.put(hex[(v>>k)&0x0F])
				}
			}
			spaces = false
		case c == ' ':
			if allowBreaks && !spaces && e.column > bestWidth && i != 0 && i != len(s)-1 {
				e.writeIndent()
				if isSpaceAt(s, i+1) {
					e.put('\\')
				}
				i++
			} else {
				i = e.write(s, i)
			}
			spaces = true
		default:
			i = e.write(s, i)
			spaces = false
		}
	}
	e.writeIndicator("\"", false, false, false)
	e.whitespace = false
	e.indention = false
}

// writeBlockScalarHints writes the indentation indicator (when the text
// starts with a space or break, which would otherwise set the indent) and
// the chomping indicator: "-" strip without a final break, none for one
// final break, "+" keep for more.
func (e *emitter) writeBlockScalarHints(s string) {
	if s != "" && (s[0] == ' ' || isBreakAt(s, 0)) {
		e.writeIndicator(string(rune('0'+bestIndent)), false, false, false)
	}
	e.openEnded = 0
	chomp := ""
	if s == "" {
		chomp = "-"
	} else {
		p := lastCharStart(s, len(s))
		switch {
		case !isBreakAt(s, p):
			chomp = "-"
		case p == 0:
			chomp = "+"
			e.openEnded = 2
		default:
			if isBreakAt(s, lastCharStart(s, p)) {
				chomp = "+"
				e.openEnded = 2
			}
		}
	}
	if chomp != "" {
		e.writeIndicator(chomp, false, false, false)
	}
}

// lastCharStart returns the index of the UTF-8 character ending before end.
func lastCharStart(s string, end int) int {
	p := end - 1
	for p > 0 && s[p]&0xC0 == 0x80 {
		p--
	}
	return p
}

func (e *emitter) writeLiteral(s string) {
	e.writeIndicator("|", true, false, false)
	e.writeBlockScalarHints(s)
	e.putBreak()
	e.indention = true
	e.whitespace = true
	breaks := true
	for i := 0; i < len(s); {
		if isBreakAt(s, i) {
			i = e.writeBreak(s, i)
			e.indention = true
			breaks = true
		} else {
			if breaks {
				e.writeIndent()
			}
			i = e.write(s, i)
			e.indention = false
			breaks = false
		}
	}
}
