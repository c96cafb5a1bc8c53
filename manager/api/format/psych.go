package format

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file ports the Ruby half of Psych 4.0.3's dumper: the style and tag
// that Psych::Visitors::YAMLTree asks libyaml for, per Ruby value. libyaml's
// half (which may override the style) lives in emitter.go.

type scalarStyle uint8

const (
	styleAny scalarStyle = iota
	stylePlain
	styleSingle
	styleDouble
	styleLiteral
)

// scalar is one libyaml scalar event as Psych builds it.
type scalar struct {
	value          string
	tag            string // full tag; only used when both implicit flags are false
	plainImplicit  bool
	quotedImplicit bool
	style          scalarStyle
}

// Tags Psych attaches when it cannot leave a scalar implicit.
const (
	tagStr             = "tag:yaml.org,2002:str"
	tagRubySymbol      = "!ruby/symbol"
	yamlTagPrefix      = "tag:yaml.org,2002:"
	tagHandleSecondary = "!!"
)

// keyScalar is YAMLTree#visit_Symbol: a symbol key is written as ":name" and
// left for libyaml to style; the empty symbol needs an explicit tag.
func keyScalar(k string) scalar {
	if k == "" {
		return scalar{tag: tagRubySymbol, style: styleAny}
	}
	return scalar{value: ":" + k, plainImplicit: true, style: styleAny}
}

// stringScalar is YAMLTree#visit_String for a plain ::String (Ruby strings
// from JSON are UTF-8, so the !binary branch never applies).
func stringScalar(s string) scalar {
	sc := scalar{value: s, plainImplicit: true, quotedImplicit: true, style: stylePlain}
	switch {
	case hasInnerNewline(s):
		sc.style = styleLiteral
	case s == "<<":
		// A bare merge key would change meaning when loaded.
		sc = scalar{value: s, tag: tagStr, style: styleSingle}
	case s == "y" || s == "n":
		sc.style = styleDouble
	case startsLineWithNonWordAndNoQuote(s):
		sc.style = styleDouble
	case !tokenizesToString(s) || octalLookalike(s):
		sc.style = styleSingle
	}
	return sc
}

// hasInnerNewline is Ruby's `o =~ /\n(?!\Z)/`: a "\n" that is neither the
// last character nor followed only by one final "\n".
func hasInnerNewline(s string) bool {
	n := len(s)
	for i := 0; i < n; i++ {
		if s[i] != '\n' {
			continue
		}
		if i == n-1 || (i == n-2 && s[n-1] == '\n') {
			continue
		}
		return true
	}
	return false
}

// startsLineWithNonWordAndNoQuote is Ruby's `o =~ /^[^[:word:]][^"]*$/`
// with Ruby's line anchors: some line starts with a non-word character and
// the rest of that line has no '"'. ("[^"]*" may cross newlines, but the
// shortest match ends at the first line end, so checking that suffices.)
func startsLineWithNonWordAndNoQuote(s string) bool {
	for p := 0; p < len(s); {
		r, w := utf8.DecodeRuneInString(s[p:])
		end := strings.IndexByte(s[p+w:], '\n')
		if end < 0 {
			end = len(s)
		} else {
			end += p + w
		}
		if !isRubyWord(r) && !strings.Contains(s[p+w:end], `"`) {
			return true
		}
		nl := strings.IndexByte(s[p:], '\n')
		if nl < 0 {
			return false
		}
		p += nl + 1
	}
	return false
}

// isRubyWord is Onigmo's [[:word:]] for UTF-8 strings: Alphabetic, marks,
// decimal digits, connector punctuation and the joiners.
func isRubyWord(r rune) bool {
	if r < utf8.RuneSelf {
		return r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
	}
	return isRubyAlpha(r) || unicode.Is(unicode.M, r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Join_Control, r)
}

// isRubyAlpha is Onigmo's [[:alpha:]] beyond ASCII: the Unicode Alphabetic
// property (letters, letter numbers such as "Ⅻ", and Other_Alphabetic).
func isRubyAlpha(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r)
}

// octalLookalike is Ruby's `/\A0[0-7]*[89]/ =~ o`: YAML 1.1 readers may take
// such a string for a malformed octal number.
func octalLookalike(s string) bool {
	if len(s) < 2 || s[0] != '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] >= '0' && s[i] <= '7':
		case s[i] == '8' || s[i] == '9':
			return true
		default:
			return false
		}
	}
	return false
}

// tokenizesToString reports whether Psych::ScalarScanner#tokenize would give
// the string back unchanged (i.e. it is safe as a plain scalar). Only strings
// without '\n' reach this with consequences: for the others libyaml forbids
// plain style anyway, making Psych's single-quote request moot.
func tokenizesToString(s string) bool {
	if s == "" {
		return false // tokenize returns nil
	}
	if strings.IndexByte(s, '\n') >= 0 || looksLikeWord(s) {
		if utf8.RuneCountInString(s) > 5 {
			return true
		}
		switch s[0] {
		case 'y', 'Y', 't', 'T', 'o', 'O', 'n', 'N', 'f', 'F', '~':
		default:
			return true
		}
		// ^ and $ are line anchors in Ruby; match per line like it does.
		for _, line := range strings.Split(s, "\n") {
			switch strings.ToLower(line) {
			case "~":
				if s == "~" {
					return false
				}
			case "null", "yes", "true", "on", "no", "false", "off":
				return false
			}
		}
		return true
	}
	switch {
	case matchTime(s):
		return !validTime(s)
	case matchDate(s):
		return !validDate(s)
	// The .inf/.nan branches would come here, but such strings start with
	// a non-word character and hold no '"', so they were double-quoted.
	case len(s) > 1 && s[0] == ':':
		// /^:./ loads as a Symbol. Only reachable with a '"' in the
		// string; the others were double-quoted for the leading ':'.
		return false
	case matchSexagesimal(s):
		return false
	case matchFloat(s):
		return s == "." || s == "-." || s == "+."
	case matchInteger(s):
		return false
	}
	return true
}

// looksLikeWord is `string.match?(%r{^[^\d.:-]?[[:alpha:]_\s!@#$%\^&*(){}<>|/\\~;=]+})`
// for a single-line string: the unanchored tail means only the first one or
// two characters matter.
func looksLikeWord(s string) bool {
	r0, w := utf8.DecodeRuneInString(s)
	if wordishRune(r0) {
		return true
	}
	if (r0 >= '0' && r0 <= '9') || r0 == '.' || r0 == ':' || r0 == '-' || w == len(s) {
		return false
	}
	r1, _ := utf8.DecodeRuneInString(s[w:])
	return wordishRune(r1)
}

func wordishRune(r rune) bool {
	if r < utf8.RuneSelf {
		if ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return true
		}
		// Ruby's \s is ASCII-only: space, \t, \n, \v, \f, \r.
		return strings.ContainsRune("_ \t\n\v\f\r!@#$%^&*(){}<>|/\\~;=", r)
	}
	return isRubyAlpha(r)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// digits consumes between min and max ASCII digits at s[i:].
func digits(s string, i, min, max int) (int, bool) {
	j := i
	for j < len(s) && j-i < max && isDigit(s[j]) {
		j++
	}
	return j, j-i >= min
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func isRubySpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r' || c == '\n'
}

// timeParts holds the fields that ScalarScanner#parse_time hands to Time.
type timeParts struct {
	mon, day, hour, min, sec int
	zone                     string // "", "Z" or the [-+]... offset text
	splittable               bool   // parse_time's split(/[ tT]/) finds the separator
}

// scanTime matches Psych's TIME regexp
// /^-?\d{4}-\d{1,2}-\d{1,2}(?:[Tt]|\s+)\d{1,2}:\d\d:\d\d(?:\.\d*)?(?:\s*(?:Z|[-+]\d{1,2}:?(?:\d\d)?))?$/
// (on a string without newlines) and returns its fields.
func scanTime(s string) (timeParts, bool) {
	var tp timeParts
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	j, ok := digits(s, i, 4, 4)
	if !ok || j >= len(s) || s[j] != '-' {
		return tp, false
	}
	k, ok := digits(s, j+1, 1, 2)
	if !ok || k >= len(s) || s[k] != '-' {
		return tp, false
	}
	tp.mon = atoi(s[j+1 : k])
	l, ok := digits(s, k+1, 1, 2)
	if !ok || l >= len(s) {
		return tp, false
	}
	tp.day = atoi(s[k+1 : l])
	switch {
	case s[l] == 'T' || s[l] == 't':
		tp.splittable = true
		l++
	case isRubySpace(s[l]):
		for l < len(s) && isRubySpace(s[l]) {
			// The date part holds no space, so a space anywhere in the
			// separator is where parse_time splits.
			tp.splittable = tp.splittable || s[l] == ' '
			l++
		}
	default:
		return tp, false
	}
	m, ok := digits(s, l, 1, 2)
	if !ok || m+6 > len(s) || s[m] != ':' || !isDigit(s[m+1]) || !isDigit(s[m+2]) ||
		s[m+3] != ':' || !isDigit(s[m+4]) || !isDigit(s[m+5]) {
		return tp, false
	}
	tp.hour, tp.min, tp.sec = atoi(s[l:m]), atoi(s[m+1:m+3]), atoi(s[m+4:m+6])
	i = m + 6
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && isDigit(s[i]); i++ {
		}
	}
	if i == len(s) {
		return tp, true
	}
	for i < len(s) && isRubySpace(s[i]) {
		i++
	}
	switch {
	case i == len(s)-1 && s[i] == 'Z':
		tp.zone = "Z"
		return tp, true
	case i < len(s) && (s[i] == '+' || s[i] == '-') && matchZoneTail(s[i+1:]):
		tp.zone = s[i:]
		return tp, true
	}
	return tp, false
}

// matchZoneTail is \d{1,2}:?(?:\d\d)?$ with backtracking: 1-4 bare digits,
// or 1-2 digits, a colon and optionally exactly two more.
func matchZoneTail(r string) bool {
	c := strings.IndexByte(r, ':')
	if c < 0 {
		_, ok := digits(r, 0, 1, 4)
		return ok && len(r) <= 4 && allDigits(r)
	}
	if c < 1 || c > 2 || !allDigits(r[:c]) {
		return false
	}
	post := r[c+1:]
	return post == "" || (len(post) == 2 && allDigits(post))
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return s != ""
}

func matchTime(s string) bool {
	_, ok := scanTime(s)
	return ok
}

// validTime reports whether parse_time succeeds, i.e. Time.utc/Time.new
// accept the fields (Ruby's validate_vtm) and the UTC offset. A string that
// matches TIME but fails there is dumped as an ordinary string.
func validTime(s string) bool {
	tp, _ := scanTime(s)
	if !tp.splittable {
		// parse_time would raise NoMethodError and Psych's dump fail;
		// quoting is the closest sensible rendering.
		return true
	}
	if tp.mon < 1 || tp.mon > 12 || tp.day < 1 || tp.day > 31 {
		return false
	}
	if tp.hour > 24 || tp.min > 59 || tp.sec > 60 {
		return false
	}
	// Ruby allows 24:00:00 (even with a fraction) as the next midnight.
	if tp.hour == 24 && (tp.min != 0 || tp.sec != 0) {
		return false
	}
	if tp.zone != "" && tp.zone != "Z" {
		// parse_time reads the zone with /^([+\-]?\d{1,2}):?(\d{1,2})?$/
		// (greedy hours) and Time.new rejects |utc_offset| >= 86400.
		z := tp.zone[1:]
		hh, mm := z, ""
		if c := strings.IndexByte(z, ':'); c >= 0 {
			hh, mm = z[:c], z[c+1:]
		} else if len(z) > 2 {
			hh, mm = z[:2], z[2:]
		}
		if atoi(hh)*3600+atoi(mm)*60 >= 86400 {
			return false
		}
	}
	return true
}

// matchDate is /^\d{4}-(?:1[012]|0\d|\d)-(?:[12]\d|3[01]|0\d|\d)$/.
func matchDate(s string) bool {
	j, ok := digits(s, 0, 4, 4)
	if !ok || j != 4 || len(s) < 8 || s[4] != '-' {
		return false
	}
	rest := s[5:]
	dash := strings.IndexByte(rest, '-')
	if dash < 1 || dash > 2 {
		return false
	}
	mon, day := rest[:dash], rest[dash+1:]
	if len(day) < 1 || len(day) > 2 {
		return false
	}
	for i := 0; i < len(mon); i++ {
		if !isDigit(mon[i]) {
			return false
		}
	}
	for i := 0; i < len(day); i++ {
		if !isDigit(day[i]) {
			return false
		}
	}
	if len(mon) == 2 && mon[0] == '1' && mon[1] > '2' {
		return false
	}
	if len(mon) == 2 && mon[0] > '1' {
		return false
	}
	if len(day) == 2 && (day[0] > '3' || (day[0] == '3' && day[1] > '1')) {
		return false
	}
	return true
}

// validDate is Date.strptime(s, '%F', Date::GREGORIAN) not raising.
func validDate(s string) bool {
	y := atoi(s[:4])
	rest := s[5:]
	dash := strings.IndexByte(rest, '-')
	m, d := atoi(rest[:dash]), atoi(rest[dash+1:])
	if m < 1 || m > 12 || d < 1 {
		return false
	}
	days := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
	if m == 2 && (y%4 == 0 && (y%100 != 0 || y%400 == 0)) {
		days = 29
	}
	return d <= days
}

// matchSexagesimal covers Psych's base-60 int and float regexps:
// /^[-+]?[0-9][0-9_]*(:[0-5]?[0-9]){1,2}$/ and the same followed by \.[0-9_]*.
func matchSexagesimal(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	if i >= len(s) || !isDigit(s[i]) {
		return false
	}
	for i < len(s) && (isDigit(s[i]) || s[i] == '_') {
		i++
	}
	groups := 0
	for i < len(s) && s[i] == ':' {
		j := i + 1
		switch {
		case j+1 < len(s) && s[j] >= '0' && s[j] <= '5' && isDigit(s[j+1]):
			i = j + 2
		case j < len(s) && isDigit(s[j]):
			i = j + 1
		default:
			return false
		}
		groups++
	}
	if groups < 1 || groups > 2 {
		return false
	}
	if i == len(s) {
		return true
	}
	if s[i] != '.' {
		return false
	}
	for i++; i < len(s); i++ {
		if !isDigit(s[i]) && s[i] != '_' {
			return false
		}
	}
	return true
}

// matchFloat is /^(?:[-+]?([0-9][0-9_,]*)?\.[0-9]*([eE][-+][0-9]+)?)$/.
func matchFloat(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	if i < len(s) && isDigit(s[i]) {
		for i < len(s) && (isDigit(s[i]) || s[i] == '_' || s[i] == ',') {
			i++
		}
	}
	if i >= len(s) || s[i] != '.' {
		return false
	}
	i++
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i >= len(s) || (s[i] != '-' && s[i] != '+') {
			return false
		}
		i++
		j, ok := digits(s, i, 1, len(s))
		if !ok {
			return false
		}
		i = j
	}
	return i == len(s)
}

// matchInteger is Psych's (non-strict) INTEGER regexp:
// binary 0b[0-1_,]+, octal 0[0-7_,]+, decimal 0|[1-9](?:[0-9]|,[0-9]|_[0-9])*,
// hex 0x[0-9a-fA-F_,]+, each with an optional sign.
func matchInteger(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	b := s[i:]
	all := func(t string, ok func(c byte) bool) bool {
		if t == "" {
			return false
		}
		for j := 0; j < len(t); j++ {
			if !ok(t[j]) {
				return false
			}
		}
		return true
	}
	switch {
	case b == "0":
		return true
	case strings.HasPrefix(b, "0b") && all(b[2:], func(c byte) bool { return c == '0' || c == '1' || c == '_' || c == ',' }):
		return true
	case strings.HasPrefix(b, "0x") && all(b[2:], func(c byte) bool {
		return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '_' || c == ','
	}):
		return true
	case strings.HasPrefix(b, "0") && all(b[1:], func(c byte) bool { return (c >= '0' && c <= '7') || c == '_' || c == ',' }):
		return true
	case b != "" && b[0] >= '1' && b[0] <= '9':
		for j := 1; j < len(b); j++ {
			switch {
			case isDigit(b[j]):
			case (b[j] == ',' || b[j] == '_') && j+1 < len(b) && isDigit(b[j+1]):
				j++
			default:
				return false
			}
		}
		return true
	}
	return false
}
