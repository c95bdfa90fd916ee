// Package scrub removes personal data and credentials from free text before
// the relay stores it (add-in error reports): e-mail addresses, Basic and
// Bearer credentials, cookies, JWTs, API tokens and other long secrets, the
// user part of URLs, URL query strings, and long digit runs; in JSON values
// also whatever is stored under a secret-sounding key and numbers of six or
// more digits.
//
// Text is normalised first, so that a shape cannot hide behind an encoding:
// invisible format characters (zero-width spaces, soft hyphens, bidi marks)
// are dropped, full-width forms folded to ASCII ("＠" → "@", "４" → "4"),
// and "%40", "&#64;", "&#x40;", "&commat;" read as "@", "%3F" as "?".
package scrub

import (
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// email matches an address: a local part of letters (any script), digits
// and ._%+- or a quoted one, "@", and a domain name (with or without dots,
// any script) or an address literal in brackets.
const email = `(?:"[^"\n]{1,64}"|[\p{L}\p{N}._%+\-]+)@(?:\[[0-9A-Fa-f:.]+\]|[\p{L}\p{N}\-]+(?:\.[\p{L}\p{N}\-]+)*)`

var emailRe = regexp.MustCompile(email)

// Each rule replaces what it matches with a marker that no rule matches.
var rules = []func(s string) string{
	// The user part of a URL (https://user:password@host).
	replace(`(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@"'<>]+@`, "${1}[credential]@"),
	// URL query strings: keep the URL, drop what follows "?".
	replace(`(?i)\b((?:https?|wss?|ftp)://[^\s?#"'<>]*)\?[^\s#"'<>]*`, "${1}?[query]"),
	// Query strings of URLs without a scheme or of relative ones (a.js?x=1).
	replace(`\?[A-Za-z0-9_.\-\[\]%]+=[^\s#"'<>]*`, "?[query]"),
	// Cookies: the whole header value.
	replace(`(?i)\b((?:set-)?cookie)(\s*["']?\s*[:=]\s*)[^\n"]*`, "${1}${2}[credential]"),
	// Credentials in an Authorization-like context, also written as a list
	// ("Basic","dXNlcjpwdw==").
	replace(`(?i)\b(basic|bearer|token|digest|negotiate|ntlm)(["'\s:=,]{0,6})[A-Za-z0-9._~+/=-]{4,}`, "${1}${2}[credential]"),
	// JSON Web Tokens.
	replace(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)?`, "[jwt]"),
	// Atlassian API tokens and the relay's own keys.
	replace(`\b(?:ATATT|ATCTT|ATOAT)[A-Za-z0-9_=+/-]{8,}|\bjr[ac]_[A-Za-z0-9_-]{8,}`, "[token]"),
	// key=value secrets (password=..., api_key: ..., secret=...).
	replace(`(?i)\b(pass(?:word|wd)?|secret|api[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret|auth|session(?:[_-]?id)?)(\s*["']?\s*[:=]\s*["']?)[^\s"'&,;]+`, "${1}${2}[credential]"),
	// E-mail addresses, not stack frames (see replaceEmails).
	replaceEmails,
	// Long opaque strings that look like secrets (32+ token characters with
	// letters and digits mixed).
	func(s string) string {
		return opaqueRe.ReplaceAllStringFunc(s, func(m string) string {
			if longOpaque(m) {
				return "[secret]"
			}
			return m
		})
	},
	// Long digit runs: card, phone and account numbers.
	replace(`\d(?:[ -]?\d){5,}`, "[digits]"),
}

// replace is a rule: every match of expr becomes repl (which may refer to
// groups).
func replace(expr, repl string) func(string) string {
	re := regexp.MustCompile(expr)
	return func(s string) string { return re.ReplaceAllString(s, repl) }
}

var opaqueRe = regexp.MustCompile(`[A-Za-z0-9_+/=-]{32,}`)

// longOpaque only replaces runs that mix letters and digits, so long words
// and paths in stack traces survive.
func longOpaque(s string) bool {
	var letter, digit bool
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter = letter || (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
		digit = digit || (c >= '0' && c <= '9')
	}
	return letter && digit
}

var encodedAt = regexp.MustCompile(`(?i)%40|&#0*64;|&#x0*40;|&commat;`)

var encodedQuery = regexp.MustCompile(`(?i)%3F`)

// normalize drops invisible format characters, folds full-width forms to
// ASCII and decodes the encodings of "@" and "?" that would hide a shape.
func normalize(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.Is(unicode.Cf, r):
			return -1 // zero-width spaces and joiners, soft hyphen, bidi marks, BOM
		case r >= 0xFF01 && r <= 0xFF5E:
			return r - 0xFEE0 // full-width ASCII
		case r == 0xFE6B: // small commercial at
			return '@'
		}
		return r
	}, s)
	s = encodedAt.ReplaceAllString(s, "@")
	return encodedQuery.ReplaceAllString(s, "?")
}

// String returns s with every sensitive shape replaced by a marker. It runs
// the rules until nothing changes (a replacement can join two pieces).
func String(s string) string {
	s = normalize(s)
	for range 4 {
		out := s
		for _, rule := range rules {
			out = rule(out)
		}
		if out == s {
			return out
		}
		s = out
	}
	return s
}

// replaceEmails replaces every address but the "function@https://…" frames
// of Firefox stack traces, where the part after "@" is a URL scheme.
func replaceEmails(s string) string {
	locs := emailRe.FindAllStringIndex(s, -1)
	if locs == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, l := range locs {
		if stackFrame(s, l[1]) {
			continue
		}
		b.WriteString(s[last:l[0]])
		b.WriteString("[email]")
		last = l[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// stackFrame reports whether an address-like match ending at end is a stack
// frame's "name@scheme" (followed by "://").
func stackFrame(s string, end int) bool {
	return strings.HasPrefix(s[end:], "://")
}

// Value scrubs a decoded JSON value: every string (object keys too) with
// String, every number of six or more digits, and the whole value under a
// key that names a secret (password, token, cookie, …).
func Value(v any) any {
	switch x := v.(type) {
	case string:
		return String(x)
	case float64:
		// As the text rules read it: six or more digits are a digit run.
		if f := strconv.FormatFloat(x, 'f', -1, 64); String(f) != f {
			return "[digits]"
		}
		return x
	case []any:
		for i := range x {
			x[i] = Value(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			if secretKey(k) {
				out[String(k)] = "[credential]"
				continue
			}
			out[String(k)] = Value(val)
		}
		return out
	}
	return v
}

// secretKey reports whether a JSON key names a secret: a password, token,
// key, cookie, session or credential, in any case and spelling of separators.
func secretKey(k string) bool {
	n := strings.Map(func(r rune) rune {
		if r == '_' || r == '-' || r == '.' || r == ' ' {
			return -1
		}
		return unicode.ToLower(r)
	}, normalize(k))
	for _, exact := range []string{"pass", "pwd", "auth", "jwt", "bearer", "session", "sid", "otp", "pin"} {
		if n == exact {
			return true
		}
	}
	for _, suffix := range []string{"password", "passwd", "passphrase", "secret", "token", "apikey", "accesskey", "privatekey",
		"relaykey", "clientkey", "adminkey", "cookie", "sessionid", "credential", "credentials", "authorization", "signature"} {
		if strings.HasSuffix(n, suffix) {
			return true
		}
	}
	return false
}

// Leaks reports the first sensitive shape found in s (for tests and fuzzing).
func Leaks(s string) string {
	for _, l := range emailRe.FindAllStringIndex(s, -1) {
		if !stackFrame(s, l[1]) {
			return s[l[0]:l[1]]
		}
	}
	for _, re := range leakChecks {
		if m := re.FindString(s); m != "" {
			return m
		}
	}
	return ""
}

var leakChecks = []*regexp.Regexp{
	regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}`),
	regexp.MustCompile(`(?i)\b(?:basic|bearer)["'\s:=,]{1,6}[A-Za-z0-9._~+/=-]{4,}`),
	regexp.MustCompile(`\bATATT[A-Za-z0-9_=+/-]{8,}`),
	regexp.MustCompile(`\d(?:[ -]?\d){5,}`),
	regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://[^\s/?#@"'<>\[\]]+@`), // a user part, not the marker
}
