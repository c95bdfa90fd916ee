// Package scrub removes personal data and credentials from free text before
// the relay stores it (add-in error reports): e-mail addresses, Basic and
// Bearer credentials, JWTs, API tokens and other long secrets, URL query
// strings, and long digit runs.
package scrub

import (
	"regexp"
)

// Each rule replaces what it matches with a marker that no rule matches.
var rules = []struct {
	re   *regexp.Regexp
	repl string
}{
	// URL query strings: keep the URL, drop what follows "?".
	{regexp.MustCompile(`(?i)\b((?:https?|wss?|ftp)://[^\s?#"'<>]*)\?[^\s#"'<>]*`), "${1}?[query]"},
	// Credentials in an Authorization-like context.
	{regexp.MustCompile(`(?i)\b(basic|bearer|token|digest|negotiate|ntlm)(\s*[:=]?\s*)[A-Za-z0-9._~+/=-]{4,}`), "${1}${2}[credential]"},
	// JSON Web Tokens.
	{regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)?`), "[jwt]"},
	// Atlassian API tokens and the relay's own keys.
	{regexp.MustCompile(`\b(?:ATATT|ATCTT|ATOAT)[A-Za-z0-9_=+/-]{8,}|\bjr[ac]_[A-Za-z0-9_-]{8,}`), "[token]"},
	// key=value secrets (password=..., api_key: ..., secret=...).
	{regexp.MustCompile(`(?i)\b(pass(?:word|wd)?|secret|api[_-]?key|access[_-]?token|refresh[_-]?token|client[_-]?secret|auth)(\s*["']?\s*[:=]\s*["']?)[^\s"'&,;]+`), "${1}${2}[credential]"},
	// E-mail addresses.
	{regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+`), "[email]"},
	// Long opaque strings that look like secrets (32+ token characters with
	// letters and digits mixed).
	{regexp.MustCompile(`[A-Za-z0-9_+/=-]{32,}`), "[secret]"},
	// Long digit runs: card, phone and account numbers.
	{regexp.MustCompile(`\d(?:[ -]?\d){5,}`), "[digits]"},
}

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

// String returns s with every sensitive shape replaced by a marker. It runs
// the rules until nothing changes (a replacement can join two pieces).
func String(s string) string {
	for range 4 {
		out := s
		for i, r := range rules {
			if i == 6 {
				out = r.re.ReplaceAllStringFunc(out, func(m string) string {
					if longOpaque(m) {
						return r.repl
					}
					return m
				})
				continue
			}
			out = r.re.ReplaceAllString(out, r.repl)
		}
		if out == s {
			return out
		}
		s = out
	}
	return s
}

// Value scrubs every string in a decoded JSON value (object keys too).
func Value(v any) any {
	switch x := v.(type) {
	case string:
		return String(x)
	case []any:
		for i := range x {
			x[i] = Value(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, val := range x {
			out[String(k)] = Value(val)
		}
		return out
	}
	return v
}

// Leaks reports the first sensitive shape found in s (for tests and fuzzing).
func Leaks(s string) string {
	for _, re := range leakChecks {
		if m := re.FindString(s); m != "" {
			return m
		}
	}
	return ""
}

var leakChecks = []*regexp.Regexp{
	regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+`),
	regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}`),
	regexp.MustCompile(`(?i)\b(?:basic|bearer)\s+[A-Za-z0-9._~+/=-]{4,}`),
	regexp.MustCompile(`\bATATT[A-Za-z0-9_=+/-]{8,}`),
	regexp.MustCompile(`\d(?:[ -]?\d){5,}`),
}
