// Package instanceurl decides which Jira base URLs an instance may register
// and gives each one canonical spelling, so that two spellings of one site
// are one tenant and no URL reads differently to the relay and to a server
// behind it.
//
// The rules come in two steps. [Canonical] checks the shape of a URL and
// returns its canonical form, whatever the host. [Policy.Normalize] adds what
// the relay's configuration decides: whether plain http is allowed, and
// which hosts (--allowed-upstreams) an instance may name.
package instanceurl

import (
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// MaxLen is the longest URL accepted, in bytes.
const MaxLen = 2048

// Error is a refusal of a URL. Msg says what is wrong in words safe to show
// the caller (the API answers 400 invalid_url with it).
type Error struct{ Msg string }

// Error returns Msg.
func (e *Error) Error() string { return e.Msg }

func refuse(msg string) (string, error) { return "", &Error{Msg: msg} }

// Policy is the relay's configured choice of instance URLs: the hosts an
// instance may name and whether plain http is allowed. The zero Policy
// allows no host.
type Policy struct {
	patterns  []string // "*.atlassian.net", an exact host or an IP address; canonical
	allowHTTP bool
}

// NewPolicy returns the policy allowing https URLs on hosts matching
// patterns, and http ones too when allowHTTP is set. A pattern is an exact
// host ("api.atlassian.com"), "*." and a host ("*.atlassian.net": one or more
// labels before ".atlassian.net", not "atlassian.net" itself), or an IP
// address (IPv6 with or without brackets). Patterns are compared in lower
// case and without a trailing dot.
func NewPolicy(patterns []string, allowHTTP bool) Policy {
	p := Policy{allowHTTP: allowHTTP}
	for _, pat := range patterns {
		pat = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(pat)), ".")
		if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(pat, "["), "]")); err == nil {
			pat = ip.Unmap().String()
		}
		if pat != "" {
			p.patterns = append(p.patterns, pat)
		}
	}
	return p
}

// hostAllowed matches a canonical host (IPv6 without brackets) against the
// patterns. A wildcard pattern never matches an IP address.
func (p Policy) hostAllowed(host string) bool {
	isIP := strings.Contains(host, ":") || lastLabelNumeric(host)
	for _, pat := range p.patterns {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			if !isIP && len(host) > len(rest)+1 && strings.HasSuffix(host, "."+rest) {
				return true
			}
		} else if host == pat {
			return true
		}
	}
	return false
}

// Normalize checks raw against the policy and returns its canonical form:
// every rule of [Canonical], then https only (unless the policy allows http)
// and a host the policy allows. A refusal is an *[Error].
func (p Policy) Normalize(raw string) (string, error) {
	u, err := canonical(raw, p.allowHTTP)
	if err != nil {
		return "", err
	}
	if host := hostOf(u); !p.hostAllowed(host) {
		return refuse("url's host " + host + " is not in --allowed-upstreams")
	}
	return u, nil
}

// Allowed reports whether normalized, a URL returned by Normalize earlier
// (as stored with an instance), still passes the policy, which may have been
// narrowed since: nil if it does, an *[Error] saying why not otherwise. A
// stored URL that is not in today's canonical form (registered under older
// rules) is refused too. The relay calls it before it connects upstream.
func (p Policy) Allowed(normalized string) error {
	u, err := p.Normalize(normalized)
	if err != nil {
		return err
	}
	if u != normalized {
		return &Error{Msg: "instance url " + normalized + " is not in canonical form (" + u + "); register the instance again"}
	}
	return nil
}

// Canonical checks the shape of an instance URL, whatever its host, and
// returns its canonical form; a refusal is an *[Error]. It allows http as
// well as https and does not consult any allow-list: that is
// [Policy.Normalize]'s step, and a caller that skips it (an instance whose
// host needs no allow-list) must decide on the scheme itself.
//
// Rules: at most [MaxLen] bytes of printable ASCII without spaces or
// backslashes; scheme https or http (any case; written lower-case); no user
// or password, query or fragment; a host that is a DNS name (labels of 1–63
// letters, digits and inner hyphens, 253 bytes in all, international names
// only as valid punycode "xn--" labels, the last label not all digits), an
// IPv4 address in dotted-quad form, or an IPv6 address in brackets (written
// in its RFC 5952 form, no zone, not IPv4-mapped); the host is written
// lower-case and without a trailing dot; a port from 1 to 65535 (leading
// zeros dropped, the scheme's default port and an empty port dropped); an
// optional path of clean segments: each 1 or more of the letters, digits and
// "-._~", not "." or ".." or only dots, so no empty segment ("//"), no ";"
// (Tomcat reads "..;" as ".."), no "@" and no percent-escapes (no encoded
// dots or slashes); one trailing slash is dropped.
//
// So "HTTPS://ACME.Atlassian.NET:443/" and "https://acme.atlassian.net" are
// both "https://acme.atlassian.net".
func Canonical(raw string) (string, error) {
	return canonical(raw, true)
}

// canonical is Canonical with the scheme rule of a policy.
func canonical(raw string, allowHTTP bool) (string, error) {
	if raw == "" {
		return refuse("url is required")
	}
	if len(raw) > MaxLen {
		return refuse("url must be at most " + strconv.Itoa(MaxLen) + " characters")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return refuse("url may hold only printable ASCII without spaces or backslashes (write international host names in punycode, xn--…)")
		}
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || scheme == "" {
		return refuse("url must be an absolute URL like https://acme.atlassian.net")
	}
	switch scheme = strings.ToLower(scheme); {
	case scheme == "https":
	case scheme == "http" && allowHTTP:
	case scheme == "http":
		return refuse("url must be https (http needs --allow-http-upstream)")
	case allowHTTP:
		return refuse("url must be https or http")
	default:
		return refuse("url must be https")
	}
	if strings.ContainsAny(rest, "?#") {
		return refuse("url must not carry a query or fragment")
	}
	authority, path, _ := strings.Cut(rest, "/")
	if strings.Contains(authority, "@") {
		return refuse("url must not carry a user or password")
	}
	if strings.Contains(authority, "%") {
		return refuse("url's host must not be percent-encoded (write international host names in punycode, xn--…; IPv6 zones are not allowed)")
	}
	hostport, err := canonicalAuthority(authority, scheme)
	if err != nil {
		return "", err
	}
	path, err = canonicalPath(path)
	if err != nil {
		return "", err
	}
	return scheme + "://" + hostport + path, nil
}

// canonicalAuthority checks host[:port] (without userinfo or escapes) and
// returns it in canonical form.
func canonicalAuthority(authority, scheme string) (string, error) {
	var host, port string
	var hasPort, bracketed bool
	if rest, ok := strings.CutPrefix(authority, "["); ok {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return refuse("url's host has \"[\" without \"]\"")
		}
		host, bracketed = rest[:end], true
		switch after := rest[end+1:]; {
		case after == "":
		case after[0] == ':':
			port, hasPort = after[1:], true
		default:
			return refuse("url's host may be followed only by \":\" and a port")
		}
	} else {
		host, port, hasPort = strings.Cut(authority, ":")
	}
	if hasPort {
		p, err := canonicalPort(port, scheme)
		if err != nil {
			return "", err
		}
		port = p
	}
	if bracketed {
		host, err := canonicalIPv6(host)
		if err != nil {
			return "", err
		}
		return joinHostPort("["+host+"]", port), nil
	}
	if strings.ContainsAny(host, "[]") {
		return refuse("url's host may hold \"[\" and \"]\" only around an IPv6 address")
	}
	host, err := canonicalHost(host)
	if err != nil {
		return "", err
	}
	return joinHostPort(host, port), nil
}

func joinHostPort(host, port string) string {
	if port == "" {
		return host
	}
	return host + ":" + port
}

// canonicalPort checks a port and returns it without leading zeros, or ""
// for an empty port or the scheme's default one.
func canonicalPort(port, scheme string) (string, error) {
	if port == "" {
		return "", nil // "host:" means the default port (RFC 3986 §6.2.3)
	}
	if strings.Trim(port, "0123456789") != "" {
		if strings.Contains(port, ":") {
			return refuse("url's host may hold \":\" only in an IPv6 address in brackets, like https://[2001:db8::1]")
		}
		return refuse("url's port must be a number between 1 and 65535")
	}
	port = strings.TrimLeft(port, "0") // "0443" → "443"
	n, err := strconv.Atoi(port)
	if port == "" || len(port) > 5 || err != nil || n < 1 || n > 65535 {
		return refuse("url's port must be a number between 1 and 65535")
	}
	if (scheme == "https" && n == 443) || (scheme == "http" && n == 80) {
		return "", nil
	}
	return port, nil
}

// canonicalIPv6 checks the text between brackets and returns the address in
// its RFC 5952 form.
func canonicalIPv6(s string) (string, error) {
	ip, err := netip.ParseAddr(s)
	switch {
	case err != nil || !ip.Is6():
		return refuse("url's host [" + s + "] is not an IPv6 address")
	case ip.Is4In6():
		return refuse("url's host [" + s + "] is an IPv4-mapped IPv6 address: write the IPv4 address " + ip.Unmap().String() + " without brackets")
	}
	return ip.String(), nil
}

// lookup validates punycode labels: IDNA2008 with the UTS 46 lookup rules
// and the Bidi rule. Hyphen placement is checked by canonicalHost, on the
// ASCII labels, so that "ab--cd" (valid in DNS) is not refused.
var lookup = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.CheckHyphens(false), idna.VerifyDNSLength(true))

// canonicalHost checks a host that is not in brackets: a DNS name or an IPv4
// address. It returns it lower-case without a trailing dot.
func canonicalHost(host string) (string, error) {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return refuse("url needs a host")
	}
	if lastLabelNumeric(host) {
		// No top-level domain is all digits: this is an IPv4 address, or
		// a spelling of one ("127.1", "2130706433", "0x7f.1", "127.0.0.01")
		// that resolvers read in different ways.
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is4() {
			return refuse("url's host " + host + " is neither a host name nor an IPv4 address in dotted-quad form")
		}
		return host, nil
	}
	if len(host) > 253 {
		return refuse("url's host must be at most 253 characters")
	}
	puny := false
	for label := range strings.SplitSeq(host, ".") {
		switch {
		case label == "":
			return refuse("url's host " + host + " has an empty label (\"..\" or a leading dot)")
		case len(label) > 63:
			return refuse("url's host " + host + " has a label longer than 63 characters")
		case strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") != "":
			return refuse("url's host " + host + " may hold only letters, digits, hyphens and dots (write international names in punycode, xn--…)")
		case label[0] == '-' || label[len(label)-1] == '-':
			return refuse("url's host " + host + " has a label that starts or ends with a hyphen")
		}
		puny = puny || strings.HasPrefix(label, "xn--")
	}
	if puny && !validPunycode(host) {
		return refuse("url's host " + host + " has an invalid punycode (xn--) label")
	}
	return host, nil
}

// validPunycode reports whether every xn-- label of host decodes to a valid
// international label that encodes back to the same text (so that one name
// has one spelling).
func validPunycode(host string) bool {
	u, err := lookup.ToUnicode(host)
	if err != nil {
		return false
	}
	for label := range strings.SplitSeq(u, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
	}
	a, err := lookup.ToASCII(u)
	return err == nil && a == host
}

// lastLabelNumeric reports whether host's last label is all digits (the
// host is, or tries to be, an IPv4 address).
func lastLabelNumeric(host string) bool {
	last := host[strings.LastIndexByte(host, '.')+1:]
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// canonicalPath checks the path after the authority (without its leading
// slash) and returns it with that slash, or "" for none.
func canonicalPath(path string) (string, error) {
	if path == "" {
		return "", nil // "https://host/"
	}
	// One trailing slash goes ("https://host/ex/jira/id/"); what is left is
	// segments, none of them empty (so "https://host//" is refused).
	path = strings.TrimSuffix(path, "/")
	switch {
	case strings.Contains(path, "@"):
		// Harmless to the relay's own client, but a URL that another
		// parser could read as user@host has no place in a Jira base URL.
		return refuse("url path must not hold \"@\"")
	case strings.Contains(path, ";"):
		return refuse("url path must not hold \";\" (path parameters; Tomcat reads \"..;\" as \"..\")")
	case strings.Contains(path, "%"):
		return refuse("url path must not hold percent-escapes (such as encoded dots or slashes)")
	}
	for seg := range strings.SplitSeq(path, "/") {
		switch {
		case seg == "":
			return refuse("url path must not hold empty segments (\"//\")")
		case strings.Trim(seg, ".") == "":
			return refuse("url path must not hold dot segments (\".\", \"..\")")
		case strings.Trim(seg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~") != "":
			return refuse("url path may hold only letters, digits and \"-._~\" between slashes")
		}
	}
	return "/" + path, nil
}

// hostOf returns the host of a canonical URL, IPv6 without brackets.
func hostOf(u string) string {
	_, rest, _ := strings.Cut(u, "://")
	hostport, _, _ := strings.Cut(rest, "/")
	if v6, ok := strings.CutPrefix(hostport, "["); ok {
		h, _, _ := strings.Cut(v6, "]")
		return h
	}
	h, _, _ := strings.Cut(hostport, ":")
	return h
}
