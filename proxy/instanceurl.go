package proxy

import (
	"net"
	"net/url"
	"strconv"
	"strings"
)

// urlPolicy decides which Jira base URLs an instance may register.
type urlPolicy struct {
	patterns  []string // "*.atlassian.net" or an exact host, lower-case
	allowHTTP bool
}

// hostAllowed matches host against the patterns: "*.example.net" matches
// one or more labels before ".example.net" (not "example.net" itself).
func (p urlPolicy) hostAllowed(host string) bool {
	for _, pat := range p.patterns {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			if strings.HasSuffix(host, "."+rest) && len(host) > len(rest)+1 {
				return true
			}
		} else if host == pat {
			return true
		}
	}
	return false
}

// normalize checks and normalises an instance URL: https (http only when
// allowed), a host matching the allowed upstreams, no userinfo, query or
// fragment; an optional path (api.atlassian.com/ex/jira/<cloudId>) without
// dot segments; lower-case scheme and host, no default port, no trailing
// slash.
func (p urlPolicy) normalize(raw string) (string, *apiError) {
	bad := func(msg string) (string, *apiError) { return "", newErr(400, "invalid_url", msg) }
	if raw == "" || len(raw) > 2048 {
		return bad("url is required (at most 2048 characters)")
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] <= ' ' || raw[i] >= 0x7f || raw[i] == '\\' {
			return bad("url may hold only printable ASCII without spaces or backslashes")
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return bad("url must be an absolute URL like https://acme.atlassian.net")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.allowHTTP:
	case u.Scheme == "http":
		return bad("url must be https (http needs --allow-http-upstream)")
	default:
		return bad("url must be https")
	}
	if u.User != nil {
		return bad("url must not carry a user or password")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(raw, "?#") {
		return bad("url must not carry a query or fragment")
	}
	host, port := u.Hostname(), u.Port()
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return bad("url needs a host")
	}
	if !p.hostAllowed(host) {
		return bad("url's host " + host + " is not in --allowed-upstreams")
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return bad("url's port must be between 1 and 65535")
		}
		port = strconv.Itoa(n) // "0443" → "443"
	}
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	hostport := host
	if strings.Contains(host, ":") {
		hostport = "[" + host + "]"
	}
	if port != "" {
		hostport = net.JoinHostPort(host, port)
	}
	path := strings.TrimRight(u.EscapedPath(), "/")
	if strings.Contains(path, "@") {
		// Harmless to the relay's own client, but a URL that another
		// parser could read as user@host has no place in a Jira base URL.
		return bad("url path must not hold \"@\"")
	}
	for _, seg := range strings.Split(path, "/") {
		if seg == "." || seg == ".." || strings.Contains(strings.ToLower(seg), "%2f") || strings.Contains(seg, "%2e") || strings.Contains(seg, "%2E") {
			return bad("url path must not hold dot segments or encoded slashes")
		}
	}
	return u.Scheme + "://" + hostport + path, nil
}
