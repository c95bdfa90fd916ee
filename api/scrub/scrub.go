// Package scrub removes personal data and credentials from free text before
// the relay stores it (add-in error reports): e-mail addresses, Basic and
// Bearer credentials, cookies, JWTs, API tokens and other long secrets, the
// value after any secret-named key (password=…, "apiToken": "…",
// <secret>…</secret>) or a personal-data key (displayName: …), the user
// part of URLs, URL query strings, IPv4 and IPv6 addresses, long digit runs
// in any script, addresses written to dodge a filter ("mia [at] example
// [dot] com", "mia @ example.com", "mia=40example.com"), shapes spelt out
// one character at a time ("m i a @ …") and base64 or base64url runs that
// decode to text holding a shape; in JSON values also whatever is stored
// under a secret-named key ([credential]) or a personal-data key such as
// name, username, accountId, address, phone or ip ([personal]), and numbers
// of six or more digits. Key names are matched with camelCase humps split
// and Cyrillic or Greek look-alike letters read as Latin.
//
// Text is normalised first, so that a shape cannot hide behind an encoding:
// HTML character references ("&#64;", "&commat;") and JavaScript/JSON escapes
// ("\u0040") are decoded, invisible characters (zero-width spaces, soft
// hyphens, bidi marks, variation selectors) dropped, the text brought to
// Unicode NFKC (so "＠" is "@", "４" is "4", "e"+U+0301 is "é"), and "%40"
// read as "@", "%3F" as "?" (also double-encoded); NULs (UTF-16LE text
// read as bytes) are dropped.
package scrub

import (
	"encoding/base64"
	"html"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// email matches an address: a local part, "@" and a domain. The local part
// is a run of anything but spaces, controls and the punctuation that
// delimits text (so letters and combining marks of any script, digits,
// symbols; "रवि", "jose\u0301"), with inner apostrophes (o'brien) and
// perhaps a closing one ('mia'@), or a quoted string. The domain is labels
// of the same kind (without "!#") between dots, or an address literal in
// brackets. Matching what is not excluded, not what is listed, leaves no
// character that would end the match early and keep the address.
const email = `(?:["“][^"“”\n]{1,64}["”]|` + localRun + `(?:['’]` + localRun + `)*['’]?)` +
	`@(?:\[[0-9A-Fa-f:.]+\]|` + domainLabel + `(?:\.` + domainLabel + `)*)`

// obfuscatedEmail is an address written to dodge a filter: "[at]", "(at)",
// "{at}", spaces around "@" or quoted-printable "=40" for "@", and "[dot]"
// or "(dot)" for a dot. The domain must have a dot, so stack frames
// ("upload @ https://…") and prose stay.
const obfuscatedEmail = localRun + `(?:(?:['’]|` + spelledDot + `)` + localRun + `)*` +
	`(?:[ \t]*@[ \t]*|[ \t]*[\[({<][ \t]*(?i:at)[ \t]*[\])}>][ \t]*|=40)` +
	domainLabel + `(?:(?:\.|` + spelledDot + `)` + domainLabel + `)+`

const spelledDot = `[ \t]*[\[({<][ \t]*(?i:dot)[ \t]*[\])}>][ \t]*`

const (
	notInAddress = `\s\p{Z}\p{Cc}@<>()\[\]{}"'‘’“”«»` + "`" + `,;:=/\\|&?`
	localRun     = `[^` + notInAddress + `]+`
	domainLabel  = `[^` + notInAddress + `.!#]+`
)

var emailRe = regexp.MustCompile(email + `|` + obfuscatedEmail)

// credentialMark replaces a credential; like every marker, no rule matches
// it.
const credentialMark = "[credential]"

// personalMark replaces personal data stored under a key (name, phone, …).
const personalMark = "[personal]"

// Each rule replaces what it matches with a marker that no rule matches.
var rules = []func(s string) string{
	// The user part of a URL (https://user:password@host).
	replace(`(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@"'<>]+@`, "${1}[credential]@"),
	// URL query strings: keep the URL, drop what follows "?".
	replace(`(?i)\b((?:https?|wss?|ftp)://[^\s?#"'<>]*)\?[^\s#"'<>]*`, "${1}?[query]"),
	// Query strings of URLs without a scheme or of relative ones (a.js?x=1).
	replace(`\?[\p{L}\p{M}\p{N}_.\-\[\]%]+=[^\s#"'<>]*`, "?[query]"),
	// Credentials in an Authorization-like context, also written as a list
	// ("Basic","dXNlcjpwdw==").
	replace(`(?i)\b(basic|bearer|token|digest|negotiate|ntlm)(["'\s:=,]{1,6})[A-Za-z0-9._~+/=-]{4,}`, "${1}${2}[credential]"),
	// JSON Web Tokens.
	replace(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)?`, "[jwt]"),
	// Atlassian API tokens and the relay's own keys.
	replace(`\b(?:ATATT|ATCTT|ATOAT)[A-Za-z0-9_=+/-]{8,}|\bjr[ac]_[A-Za-z0-9_-]{8,}`, "[token]"),
	// The value after a secret-named key: cookies, passwords, tokens, …
	// (see credentialSpans).
	replaceCredentials,
	// Base64 and base64url runs that decode to text holding a shape.
	replaceEncoded,
	// Shapes spelt out one character at a time ("j o h n @ …").
	replaceSpaced,
	// E-mail addresses, not stack frames (see replaceEmails).
	replaceEmails,
	// IPv6 and IPv4 addresses (every dotted quad; "4.2.0" stays).
	replaceIPv6,
	replace(ipv4, "[ip]"),
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
	// Long digit runs (any script): card, phone and account numbers, also
	// with dashes of any kind or groups of three or more digits between dots.
	replace(digitRun+`|`+dottedDigits, "[digits]"),
}

const ipv4 = `\b[0-9]{1,3}(?:\.[0-9]{1,3}){3}\b`

const (
	digitRun     = `\p{Nd}(?:[ \-\x{2010}-\x{2015}\x{2212}]?\p{Nd}){5,}`
	dottedDigits = `\p{Nd}{3,}(?:\.\p{Nd}{3,}){2,}`
)

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

var (
	// jsEscape is a JavaScript/JSON escape of one UTF-16 unit or a
	// surrogate pair, or an ES2015 code point escape; any number of
	// backslashes (an escaped escape hides a shape just as well).
	jsEscape = regexp.MustCompile(`\\+(?:u([dD][89abAB][0-9a-fA-F]{2})\\+u([dD][c-fC-F][0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|u\{([0-9a-fA-F]{1,6})\})`)
	// encodedAt and encodedQuery are "@" and "?" percent-encoded (once or
	// more), as a JavaScript escape() or a hex escape.
	encodedAt    = regexp.MustCompile(`(?i)%(?:25)*40|%u0040|\\+x40`)
	encodedQuery = regexp.MustCompile(`(?i)%(?:25)*3F|%u003F|\\+x3F`)
)

// normalize undoes the encodings that would hide a shape: HTML character
// references, JavaScript escapes, invisible characters, compatibility forms
// (NFKC) and percent-encoded "@" and "?". One call undoes one level of
// nesting; String repeats it.
func normalize(s string) string {
	if strings.IndexByte(s, '&') >= 0 {
		s = html.UnescapeString(s)
	}
	if strings.IndexByte(s, '\\') >= 0 {
		s = jsEscape.ReplaceAllStringFunc(s, decodeJSEscape)
	}
	s = strings.Map(func(r rune) rune {
		if r == 0 || invisible(r) { // NULs: UTF-16LE text read as bytes
			return -1
		}
		return r
	}, s)
	s = norm.NFKC.String(s)
	s = encodedAt.ReplaceAllString(s, "@")
	return encodedQuery.ReplaceAllString(s, "?")
}

// invisible reports whether r is drawn as nothing: format characters
// (zero-width spaces and joiners, soft hyphen, bidi marks, BOM, tags) and
// the other default-ignorable code points (variation selectors, Hangul
// fillers, the combining grapheme joiner).
func invisible(r rune) bool {
	return unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Variation_Selector)
}

// decodeJSEscape decodes one jsEscape match; a control character or a lone
// surrogate stays escaped.
func decodeJSEscape(m string) string {
	g := jsEscape.FindStringSubmatch(m)
	var r rune
	switch {
	case g[1] != "":
		hi, _ := strconv.ParseUint(g[1], 16, 32)
		lo, _ := strconv.ParseUint(g[2], 16, 32)
		r = (rune(hi)-0xD800)<<10 | (rune(lo) - 0xDC00) + 0x10000
	case g[3] != "":
		n, _ := strconv.ParseUint(g[3], 16, 32)
		r = rune(n)
	default:
		n, _ := strconv.ParseUint(g[4], 16, 32)
		r = rune(n)
	}
	if r < 0x20 || r == 0x7f || !utf8.ValidRune(r) {
		return m
	}
	return string(r)
}

// maxPasses bounds String's rounds of normalising and replacing: each undoes
// one level of nested encoding ("&amp;#64;"). Text still changing after that
// many rounds is dropped, not stored half-scrubbed.
const maxPasses = 8

// Markers for text that is dropped whole.
const (
	tooDeep = "[unreadable: too deeply encoded]"
	tooLong = "[unreadable: too long once decoded]"
)

// String returns s with every sensitive shape replaced by a marker. It
// normalises and runs the rules until nothing changes (a decoding or a
// replacement can join two pieces). Text that needs more than eight rounds,
// or grows past three times its length (plus 1 KiB) once decoded (NFKC
// writes "ﷺ" as 18 letters), is replaced as a whole by a marker.
func String(s string) string {
	limit := 3*len(s) + 1024
	for range maxPasses {
		out := normalize(s)
		if len(out) > limit {
			return tooLong
		}
		for _, rule := range rules {
			out = rule(out)
		}
		if out == s {
			return out
		}
		s = out
	}
	return tooDeep
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
		if stackFrame(s, l) {
			continue
		}
		b.WriteString(s[last:l[0]])
		b.WriteString("[email]")
		last = l[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

var schemeRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+\-]*$`)

// stackFrame reports whether the address-like match at loc is a stack
// frame's "name@scheme://": what follows "@" is a URL scheme (no dots, so
// "mia@example.com://" is an address) and then "://".
func stackFrame(s string, loc []int) bool {
	at := strings.LastIndexByte(s[loc[0]:loc[1]], '@')
	return strings.HasPrefix(s[loc[1]:], "://") && schemeRe.MatchString(s[loc[0]+at+1:loc[1]])
}

// Value scrubs a decoded JSON value: every string (object keys too) with
// String, every number of six or more digits, and the whole value under a
// key that names a secret (password, token, cookie, …; see String for the
// same keys in text).
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
				out[String(k)] = credentialMark
				continue
			}
			if personalKey(k) {
				out[String(k)] = personalMark
				continue
			}
			out[String(k)] = Value(val)
		}
		return out
	}
	return v
}

// Key names: a key is secret when its words, run together in lower case,
// end with a secretSuffix, or when its last words run together are a
// secretWord ("user pin", "connect.sid", but not "spin" or "bypass").
var (
	secretWords = []string{"pass", "pwd", "auth", "jwt", "bearer", "session", "sid", "otp", "totp", "pin", "csrf", "xsrf",
		"sig", "cvv", "cvc", "ssn"}
	secretSuffixes = []string{"password", "passwd", "passphrase", "passcode", "pincode", "secret", "token", "apikey", "accesskey",
		"privatekey", "privkey", "secretkey", "signingkey", "encryptionkey", "masterkey", "sessionkey", "licensekey",
		"relaykey", "clientkey", "adminkey", "cookie", "sessionid", "sessid", "credential", "credentials", "creds",
		"authorization", "authcode", "signature",
		// Password in other languages.
		"passwort", "kennwort", "contraseña", "senha", "motdepasse", "wachtwoord", "lösenord", "пароль", "密码", "密碼",
		"パスワード", "비밀번호"}
)

// keyWordSep splits a key into words.
func keyWordSep(r rune) bool { return r == '_' || r == '-' || r == '.' || r == ' ' || r == '\t' }

// secretKey reports whether a key (JSON, text or XML) names a secret: a
// password, token, key, cookie, session or credential, in any case and
// spelling of separators ("api_token", "apiToken", "API-TOKEN", "api token"),
// also with Cyrillic or Greek look-alike letters ("pаssword").
func secretKey(k string) bool {
	return secretName(normalize(k))
}

// secretLastWords end a secret key as its last word ("userPass",
// "user_password_hash", "csrf_tok"), but not inside one ("bypass",
// "monkey", "passed"); "key" not after a word in harmlessKeyOwners.
var secretLastWords = []string{"pass", "pwd", "hash", "token", "tok", "secret", "key", "ticket", "oauth"}

// harmlessKeyOwners: "issueKey", "projectKey", … are not secrets.
var harmlessKeyOwners = []string{"issue", "project", "space", "board", "sort", "cache", "primary", "foreign", "partition",
	"shortcut", "hot", "i18n", "translation", "locale", "field", "row", "column", "map", "lookup", "group", "sprint", "epic",
	"filter", "public", "react", "list", "item", "entity", "object", "parent", "version", "component", "status", "priority",
	"type", "setting", "storage", "route", "query", "index", "label", "message", "error", "event", "dedupe", "idempotency"}

// personalNames are keys whose value is personal data ("displayName",
// "ip_address"); personalTextNames those of them that are not ordinary
// words in error text too ("name", "address" and "ip" are only read as
// keys in JSON values).
var (
	personalNames = []string{"name", "displayname", "fullname", "firstname", "lastname", "givenname", "familyname",
		"surname", "username", "accountid", "address", "streetaddress", "homeaddress", "street", "phone",
		"phonenumber", "mobile", "ip", "ipaddress", "clientip", "remoteip"}
	personalTextNames = []string{"displayname", "fullname", "firstname", "lastname", "givenname", "familyname",
		"surname", "username", "accountid", "streetaddress", "homeaddress", "street", "phone", "phonenumber",
		"ipaddress", "clientip", "remoteip"}
)

// personalKey reports whether a JSON key names personal data.
func personalKey(k string) bool {
	return slices.Contains(personalNames, strings.Join(keyWords(normalize(k)), ""))
}

// personalTextName reports whether a key in text names personal data.
func personalTextName(k string) bool {
	return slices.Contains(personalTextNames, strings.Join(keyWords(k), ""))
}

// confusables maps Cyrillic and Greek lower-case letters to the Latin ones
// they look like.
var confusables = map[rune]rune{
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't',
	'у': 'y', 'х': 'x', 'ѕ': 's', 'і': 'i', 'ї': 'i', 'ј': 'j', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'һ': 'h', 'ӏ': 'l',
	'ɑ': 'a', 'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't',
	'υ': 'u', 'χ': 'x', 'ω': 'w', 'γ': 'y', 'ѡ': 'w', 'ᴅ': 'd',
}

// keyWords splits a key into lower-case words at separators and at
// camelCase humps ("userPass", "APIToken": "api", "token").
func keyWords(k string) []string {
	var words []string
	for _, f := range strings.FieldsFunc(k, keyWordSep) {
		rs := []rune(f)
		start := 0
		for i := 1; i < len(rs); i++ {
			if unicode.IsUpper(rs[i]) && (unicode.IsLower(rs[i-1]) || i+1 < len(rs) && unicode.IsUpper(rs[i-1]) && unicode.IsLower(rs[i+1])) {
				words = append(words, strings.ToLower(string(rs[start:i])))
				start = i
			}
		}
		words = append(words, strings.ToLower(string(rs[start:])))
	}
	return words
}

// foldConfusables writes look-alike letters in Latin.
func foldConfusables(w string) string {
	return strings.Map(func(r rune) rune {
		if l, ok := confusables[r]; ok {
			return l
		}
		return r
	}, w)
}

// secretName is secretKey for a normalised key: as written, and with
// look-alike letters folded to Latin ("пароль" stays Cyrillic).
func secretName(k string) bool {
	words := keyWords(k)
	if len(words) == 0 {
		return false
	}
	if secretWordList(words) {
		return true
	}
	folded := make([]string, len(words))
	changed := false
	for i, w := range words {
		folded[i] = foldConfusables(w)
		changed = changed || folded[i] != w
	}
	return changed && secretWordList(folded)
}

// secretWordList is secretName for lower-case words.
func secretWordList(words []string) bool {
	joined := strings.Join(words, "")
	for _, suffix := range secretSuffixes {
		if strings.HasSuffix(joined, suffix) {
			return true
		}
	}
	tail := ""
	for i := len(words) - 1; i >= 0 && len(tail) < 8; i-- { // no secret word is longer
		tail = words[i] + tail
		if slices.Contains(secretWords, tail) {
			return true
		}
	}
	last := words[len(words)-1]
	if last == "key" && len(words) > 1 && slices.Contains(harmlessKeyOwners, words[len(words)-2]) {
		return false
	}
	return slices.Contains(secretLastWords, last)
}

// quotes maps each opening quote to the characters that close it.
var quotes = map[rune]string{
	'"': `"`, '\'': `'`, '`': "`", '‘': "’‘", '’': "’", '‚': "’‘", '‛': "’",
	'“': "”“", '”': "”", '„': "”“", '‟': "”", '«': "»", '»': "«", '‹': "›", '›': "‹",
	'「': "」", '『': "』",
}

const quoteChars = `"'` + "`" + `‘’‚‛“”„‟«»‹›「」『』`

// keyValueRe finds a key (one to three words) and the separator before its
// value: an optional closing quote (also JSON-escaped), ":", "=" or "=>".
var keyValueRe = regexp.MustCompile(`((?:[\p{L}\p{M}\p{N}_.\-]+ ){0,2}[\p{L}\p{M}\p{N}_.\-]+)(\\?[` + quoteChars + `]?\s*(?:=>|[:=])\s*)`)

// xmlRe finds an XML or HTML element with text content.
var xmlRe = regexp.MustCompile(`<([\p{L}\p{N}_.:\-]+)(?:\s[^<>]*)?>([^<]*)</`)

// authSchemeMarked is a value already scrubbed by the Authorization rule.
var authSchemeMarked = regexp.MustCompile(`(?i)^(?:basic|bearer|token|digest|negotiate|ntlm)\s+\[credential\]$`)

// credentialSpans returns, in order and not overlapping, the spans of the
// values in s that follow a secret-named key, quoted or not (the part
// between the quotes), and of the text of secret-named XML elements. Values
// that are already just a marker are left out.
func credentialSpans(s string) [][2]int {
	var spans [][2]int
	valueEnd := 0
	for _, l := range keyValueRe.FindAllStringSubmatchIndex(s, -1) {
		key := s[l[2]:l[3]]
		if l[0] < valueEnd || !secretName(key) && !personalTextName(key) {
			continue // a key inside the last value goes with it (and scanning it again would be quadratic)
		}
		// A cookie header's value runs to the end of the line ("a=b; c=d"),
		// and so does a name ("displayName: Mia Krystof").
		start, end := valueSpan(s, l[1], strings.HasSuffix(strings.ToLower(key), "cookie") || personalTextName(key))
		valueEnd = end
		if start < end && !marked(s[start:end]) {
			spans = append(spans, [2]int{start, end})
		}
	}
	for _, l := range xmlRe.FindAllStringSubmatchIndex(s, -1) {
		if secretName(s[l[2]:l[3]]) && l[4] < l[5] && !marked(s[l[4]:l[5]]) {
			spans = append(spans, [2]int{l[4], l[5]})
		}
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	out := spans[:0]
	for _, sp := range spans {
		if n := len(out); n > 0 && sp[0] < out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], sp[1]) // overlapping: one span
			continue
		}
		out = append(out, sp)
	}
	return out
}

// marked reports whether a value has been scrubbed.
func marked(v string) bool {
	return v == credentialMark || authSchemeMarked.MatchString(v)
}

// valueSpan returns the value that starts at s[i:]: between quotes (of any
// kind, also JSON-escaped \"…\") up to the closing quote or the end of the
// line; or unquoted: a cookie header to the end of the line or a quote, any
// other value up to a space, quote, "&", "," or ";" (with an Authorization
// scheme word before it: "Basic dXNlcjpwdw==").
func valueSpan(s string, i int, cookie bool) (start, end int) {
	escaped := false
	if i+1 < len(s) && s[i] == '\\' {
		if r, _ := utf8.DecodeRuneInString(s[i+1:]); quotes[r] != "" {
			escaped = true
			i++
		}
	}
	if r, size := utf8.DecodeRuneInString(s[i:]); quotes[r] != "" {
		closers := quotes[r]
		start = i + size
		for end = start; end < len(s); {
			c, n := utf8.DecodeRuneInString(s[end:])
			switch {
			case c == '\n' || c == '\r' || strings.ContainsRune(closers, c):
				return start, end
			case c == '\\' && escaped:
				if next, _ := utf8.DecodeRuneInString(s[end+1:]); strings.ContainsRune(closers, next) {
					return start, end // the closing \"
				}
			case c == '\\' && end+1 < len(s):
				_, m := utf8.DecodeRuneInString(s[end+1:])
				n += m // an escaped character
			}
			end += n
		}
		return start, end
	}
	start = i
	if cookie {
		for end = start; end < len(s); end++ {
			switch c := s[end]; {
			case c == '\n' || c == '\r':
				return start, end
			case c == '"' && end > start && s[end-1] == '=':
				// A quoted cookie value (a="b c"): to its closing quote.
				if q := strings.IndexAny(s[end+1:], "\"\n\r"); q >= 0 && s[end+1+q] == '"' {
					end += q + 1
				}
			case c == '"' || c == '\\' && end+1 < len(s) && s[end+1] == '"':
				return start, end
			}
		}
		return start, end
	}
	end = start
	if m := authScheme.FindStringIndex(s[start:]); m != nil {
		end += m[1]
	}
	for end < len(s) {
		c, n := utf8.DecodeRuneInString(s[end:])
		if unicode.IsSpace(c) || strings.ContainsRune(quoteChars+"&,;", c) {
			break
		}
		if next, _ := utf8.DecodeRuneInString(s[end+n:]); c == '\\' && quotes[next] != "" {
			break // the end of a JSON-escaped string: \"
		}
		end += n
	}
	return start, end
}

var authScheme = regexp.MustCompile(`^(?i:basic|bearer|token|digest|negotiate|ntlm)[ \t]+`)

// replaceCredentials replaces the values credentialSpans finds.
func replaceCredentials(s string) string {
	return replaceSpans(s, credentialSpans(s), credentialMark)
}

// Leaks reports the first sensitive shape found in s (for tests and
// fuzzing): an e-mail address, a value after a secret-named key, a JWT, a
// Basic or Bearer credential, an Atlassian token, a long digit run, a URL
// user part, an IP address, or a base64 run or spelt-out text that holds one
// of these.
func Leaks(s string) string { return leaks(s, 0) }

// maxDecodeDepth bounds how deep base64 inside base64 (or spelt-out text)
// is looked into, so nested encodings cost little.
const maxDecodeDepth = 2

// leaks is Leaks for text that is depth decodings deep.
func leaks(s string, depth int) string {
	for _, l := range emailRe.FindAllStringIndex(s, -1) {
		if !stackFrame(s, l) {
			return s[l[0]:l[1]]
		}
	}
	if spans := credentialSpans(s); spans != nil {
		return s[spans[0][0]:spans[0][1]]
	}
	if l := ipv6Spans(s); l != nil {
		return s[l[0][0]:l[0][1]]
	}
	if l := encodedSpans(s, depth); l != nil {
		return s[l[0][0]:l[0][1]]
	}
	if l := spacedSpans(s, depth); l != nil {
		return s[l[0][0]:l[0][1]]
	}
	for _, re := range leakChecks {
		if m := re.FindString(s); m != "" {
			return m
		}
	}
	return ""
}

var leakChecks = []*regexp.Regexp{
	regexp.MustCompile(ipv4),
	regexp.MustCompile(`eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}`),
	regexp.MustCompile(`(?i)\b(?:basic|bearer)["'\s:=,]{1,6}[A-Za-z0-9._~+/=-]{4,}`),
	regexp.MustCompile(`\bATATT[A-Za-z0-9_=+/-]{8,}`),
	regexp.MustCompile(digitRun + `|` + dottedDigits),
	regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://[^\s/?#@"'<>\[\]]+@`), // a user part, not the marker
}

// replaceSpans replaces each span (in order, not overlapping) with mark.
func replaceSpans(s string, spans [][2]int, mark string) string {
	if spans == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, sp := range spans {
		b.WriteString(s[last:sp[0]])
		b.WriteString(mark)
		last = sp[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// ipv6Candidate is what may be an IPv6 address; ipv6Spans keeps those that
// parse, are not part of a word ("Foo::Bar") and have a hex digit.
var ipv6Candidate = regexp.MustCompile(`[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%[0-9A-Za-z_.]+)?`)

func ipv6Spans(s string) [][2]int {
	if strings.Count(s, ":") < 2 {
		return nil
	}
	var spans [][2]int
	for _, l := range ipv6Candidate.FindAllStringIndex(s, -1) {
		m := s[l[0]:l[1]]
		if l[0] > 0 && wordByte(s[l[0]-1]) || l[1] < len(s) && wordByte(s[l[1]]) ||
			!strings.ContainsAny(m, "0123456789abcdefABCDEF") {
			continue
		}
		if a, err := netip.ParseAddr(m); err == nil && a.Is6() {
			spans = append(spans, [2]int{l[0], l[1]})
		}
	}
	return spans
}

func wordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

func replaceIPv6(s string) string { return replaceSpans(s, ipv6Spans(s), "[ip]") }

// base64Run is a run of base64 or base64url characters long enough to
// hide an address (16 or more).
var base64Run = regexp.MustCompile(`[A-Za-z0-9+/_-]{16,}={0,2}`)

// encodedSpans returns the base64 and base64url runs that decode to mostly
// printable text holding a sensitive shape (see Leaks).
func encodedSpans(s string, depth int) [][2]int {
	if depth >= maxDecodeDepth {
		return nil
	}
	var spans [][2]int
	for _, l := range base64Run.FindAllStringIndex(s, -1) {
		if d, ok := decodeBase64(s[l[0]:l[1]]); ok && leaks(normalize(d), depth+1) != "" {
			spans = append(spans, [2]int{l[0], l[1]})
		}
	}
	return spans
}

// decodeBase64 decodes a run as base64 or base64url (padded or not) and
// reports whether the result is mostly printable text (NULs of UTF-16
// dropped).
func decodeBase64(run string) (string, bool) {
	run = strings.TrimRight(run, "=")
	enc := base64.RawStdEncoding
	if strings.ContainsAny(run, "-_") {
		if strings.ContainsAny(run, "+/") {
			return "", false
		}
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(run)
	if err != nil {
		return "", false
	}
	d := strings.ReplaceAll(string(b), "\x00", "")
	if d == "" || !utf8.ValidString(d) {
		return "", false
	}
	var total, printable int
	for _, r := range d {
		total++
		if unicode.IsPrint(r) || r == ' ' || r == '\n' || r == '\t' || r == '\r' {
			printable++
		}
	}
	return d, printable*10 >= total*9
}

func replaceEncoded(s string) string {
	return replaceSpans(s, encodedSpans(s, 0), "[encoded]")
}

// spacedSpans returns the runs of five or more single characters, each
// separated by one space or tab ("j o h n @ e x a m p l e . c o m"), that
// hold a sensitive shape once the spaces are taken out.
func spacedSpans(s string, depth int) [][2]int {
	if depth >= maxDecodeDepth {
		return nil
	}
	var spans [][2]int
	start, n, last := -1, 0, 0 // the run's start, its characters, the end of its last one
	flush := func() {
		if n >= 5 {
			var b strings.Builder
			for _, r := range s[start:last] {
				if r != ' ' && r != '\t' {
					b.WriteRune(r)
				}
			}
			if leaks(b.String(), depth+1) != "" {
				spans = append(spans, [2]int{start, last})
			}
		}
		start, n = -1, 0
	}
	for i := 0; i < len(s); {
		// A field: non-space characters from i.
		j := i
		for j < len(s) {
			r, size := utf8.DecodeRuneInString(s[j:])
			if unicode.IsSpace(r) {
				break
			}
			j += size
		}
		if j > i {
			_, size := utf8.DecodeRuneInString(s[i:])
			single := i+size == j
			switch {
			case single && n > 0 && i-last == 1 && (s[last] == ' ' || s[last] == '\t'):
				n++
				last = j
			case single:
				flush()
				start, n, last = i, 1, j
			default:
				flush()
			}
			i = j
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	flush()
	return spans
}

func replaceSpaced(s string) string {
	return replaceSpans(s, spacedSpans(s, 0), "[redacted]")
}
