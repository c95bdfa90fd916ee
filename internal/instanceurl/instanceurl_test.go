package instanceurl

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// cloud is the production policy: Jira Cloud sites and the API gateway.
var cloud = NewPolicy([]string{"*.atlassian.net", "api.atlassian.com"}, false)

// local is the test policy: loopback upstreams over plain http.
var local = NewPolicy([]string{"*.atlassian.net", "api.atlassian.com", "127.0.0.1", "[::1]", "localhost"}, true)

func TestNormalizeAccepts(t *testing.T) {
	for _, c := range []struct {
		p        Policy
		raw, out string
	}{
		{cloud, "https://acme.atlassian.net", "https://acme.atlassian.net"},
		// Two spellings of one site are one tenant.
		{cloud, "HTTPS://ACME.Atlassian.NET:443/", "https://acme.atlassian.net"},
		{cloud, "https://acme.atlassian.net/", "https://acme.atlassian.net"},
		{cloud, "https://acme.atlassian.net.", "https://acme.atlassian.net"},
		{cloud, "https://acme.atlassian.net.:443/", "https://acme.atlassian.net"},
		{cloud, "https://acme.atlassian.net:0443", "https://acme.atlassian.net"},
		{cloud, "https://acme.atlassian.net:/", "https://acme.atlassian.net"},
		{cloud, "https://acme.atlassian.net:8443/", "https://acme.atlassian.net:8443"},
		{cloud, "https://acme.atlassian.net:008443", "https://acme.atlassian.net:8443"},
		{cloud, "https://acme.atlassian.net:65535", "https://acme.atlassian.net:65535"},
		{cloud, "https://acme.atlassian.net:1", "https://acme.atlassian.net:1"},
		// The API gateway with a cloud id; the path keeps its case.
		{cloud, "https://api.atlassian.com/ex/jira/3a1b-77/", "https://api.atlassian.com/ex/jira/3a1b-77"},
		{cloud, "https://Api.Atlassian.Com/ex/jira/AbC_1.2~x", "https://api.atlassian.com/ex/jira/AbC_1.2~x"},
		{cloud, "https://a.b.acme.atlassian.net", "https://a.b.acme.atlassian.net"},
		{cloud, "https://my-site.atlassian.net", "https://my-site.atlassian.net"},
		{cloud, "https://ab--cd.atlassian.net", "https://ab--cd.atlassian.net"},
		{cloud, "https://" + strings.Repeat("a", 63) + ".atlassian.net", "https://" + strings.Repeat("a", 63) + ".atlassian.net"},
		{cloud, "https://1acme.atlassian.net", "https://1acme.atlassian.net"},
		// International names as punycode (müller, bücher).
		{cloud, "https://xn--mller-kva.atlassian.net", "https://xn--mller-kva.atlassian.net"},
		{cloud, "https://XN--bcher-kva.atlassian.net", "https://xn--bcher-kva.atlassian.net"},
		// Loopback upstreams of the tests.
		{local, "http://127.0.0.1:8080/", "http://127.0.0.1:8080"},
		{local, "HTTP://127.0.0.1:80", "http://127.0.0.1"},
		{local, "http://[::1]:8080", "http://[::1]:8080"},
		{local, "https://[0:0:0:0:0:0:0:1]/", "https://[::1]"},
		{local, "http://LocalHost:9000/jira", "http://localhost:9000/jira"},
	} {
		got, err := c.p.Normalize(c.raw)
		if err != nil || got != c.out {
			t.Errorf("Normalize(%q) = %q, %v; want %q", c.raw, got, err, c.out)
		}
	}
}

func TestNormalizeRefuses(t *testing.T) {
	for _, c := range []struct {
		p        Policy
		raw, msg string // msg: part of the message the caller sees
	}{
		// Scheme.
		{cloud, "", "url is required"},
		{cloud, "http://x.atlassian.net", "url must be https (http needs --allow-http-upstream)"},
		{cloud, "ftp://x.atlassian.net", "url must be https"},
		{local, "ftp://x.atlassian.net", "url must be https or http"},
		{cloud, "acme", "must be an absolute URL like https://acme.atlassian.net"},
		{cloud, "acme.atlassian.net", "must be an absolute URL"},
		{cloud, "//acme.atlassian.net", "must be an absolute URL"},
		{cloud, "https:acme.atlassian.net", "must be an absolute URL"},
		{cloud, "https://", "url needs a host"},
		{cloud, "https:///rest", "url needs a host"},
		{cloud, "https://:443", "url needs a host"},
		{cloud, "https://.", "url needs a host"},
		// Characters.
		{cloud, "https://x.atlassian.net/" + strings.Repeat("a", 2048), "at most 2048 characters"},
		{cloud, "https://x.atlassian.net/a b", "printable ASCII"},
		{cloud, "https://x.atlassian.net\\@evil.com", "printable ASCII without spaces or backslashes"},
		{cloud, "https://x.atlassian.net/\x00", "printable ASCII"},
		{cloud, "https://é.atlassian.net", "printable ASCII"},
		// Userinfo, query, fragment.
		{cloud, "https://u:p@x.atlassian.net", "must not carry a user or password"},
		{cloud, "https://u@x.atlassian.net", "must not carry a user or password"},
		{cloud, "https://x.atlassian.net/?a=1", "must not carry a query or fragment"},
		{cloud, "https://x.atlassian.net?", "must not carry a query or fragment"},
		{cloud, "https://x.atlassian.net/#f", "must not carry a query or fragment"},
		{cloud, "https://evil.com#.atlassian.net", "must not carry a query or fragment"},
		// Hosts the policy does not allow.
		{cloud, "https://evil.example.com", "url's host evil.example.com is not in --allowed-upstreams"},
		{cloud, "https://atlassian.net", "url's host atlassian.net is not in --allowed-upstreams"},
		{cloud, "https://evilatlassian.net", "not in --allowed-upstreams"},
		{cloud, "https://127.0.0.1", "url's host 127.0.0.1 is not in --allowed-upstreams"},
		{cloud, "https://[::1]", "url's host ::1 is not in --allowed-upstreams"},
		// Hosts that are not DNS names.
		{cloud, "https://*.atlassian.net", "url's host *.atlassian.net may hold only letters, digits, hyphens and dots"},
		{cloud, "https://a..atlassian.net", "url's host a..atlassian.net has an empty label"},
		{cloud, "https://.a.atlassian.net", "has an empty label"},
		{cloud, "https://a.atlassian.net..", "has an empty label"},
		{cloud, "https://a_b.atlassian.net", "may hold only letters, digits, hyphens and dots"},
		{cloud, "https://-a.atlassian.net", "starts or ends with a hyphen"},
		{cloud, "https://a-.atlassian.net", "starts or ends with a hyphen"},
		{cloud, "https://" + strings.Repeat("a", 64) + ".atlassian.net", "label longer than 63 characters"},
		{cloud, "https://" + strings.Repeat("abcdefgh.", 30) + "atlassian.net", "at most 253 characters"},
		{cloud, "https://%C3%A9.atlassian.net", "must not be percent-encoded (write international host names in punycode"},
		{cloud, "https://%61.atlassian.net", "must not be percent-encoded"},
		{cloud, "https://a.atlassian.net%2f@evil.com", "must not carry a user or password"},
		{cloud, "https://a.atlassian.net%2fevil.com", "must not be percent-encoded"},
		{cloud, "https://xn--.atlassian.net", "starts or ends with a hyphen"},
		{cloud, "https://xn--abc.atlassian.net", "has an invalid punycode (xn--) label"}, // decodes to ASCII
		{cloud, "https://xn--a-wbb.atlassian.net", "invalid punycode"},                   // starts with a combining mark
		{cloud, "https://xn--mnchen-9ma.atlassian.net", "invalid punycode"},              // "Ámnchen": upper case
		{cloud, "https://xn--a-poc.atlassian.net", "invalid punycode"},                   // Latin and Arabic: Bidi rule
		{cloud, "https://xn--ab-x3t.atlassian.net", "invalid punycode"},                  // a line separator
		{cloud, "https://xn--a-ecp.atlassian.net", "invalid punycode"},                   // "a⒈": lookup maps it to "a1."
		{cloud, "https://xn--mller-kva-.atlassian.net", "hyphen"},
		{cloud, "https://xn--4gbrim.xn----ymcbaaajlc6dj7bxne2c.xn--wgbh1c", "not in --allowed-upstreams"},
		// IP literals.
		{local, "http://127.1", "neither a host name nor an IPv4 address in dotted-quad form"},
		{local, "http://2130706433", "neither a host name nor an IPv4 address"},
		{local, "http://127.0.0.01", "neither a host name nor an IPv4 address"},
		{local, "http://0x7f.0.0.1", "neither a host name nor an IPv4 address"},
		{local, "http://1.2.3.999", "neither a host name nor an IPv4 address"},
		{local, "http://::1/", "may hold \":\" only in an IPv6 address in brackets"},
		{local, "http://[::1", "\"[\" without \"]\""},
		{local, "http://[::1]x", "followed only by \":\" and a port"},
		{local, "http://[127.0.0.1]", "is not an IPv6 address"},
		{local, "http://[::ffff:127.0.0.1]", "IPv4-mapped IPv6 address: write the IPv4 address 127.0.0.1"},
		{local, "http://[fe80::1%25eth0]", "IPv6 zones are not allowed"},
		{local, "http://a[b].atlassian.net", "\"[\" and \"]\" only around an IPv6 address"},
		// Ports.
		{cloud, "https://x.atlassian.net:0", "port must be a number between 1 and 65535"},
		{cloud, "https://x.atlassian.net:000", "port must be a number between 1 and 65535"},
		{cloud, "https://x.atlassian.net:65536", "port must be a number between 1 and 65535"},
		{cloud, "https://x.atlassian.net:+443", "port must be a number"},
		{cloud, "https://x.atlassian.net:-1", "port must be a number"},
		{cloud, "https://x.atlassian.net:99999999999999999999", "port must be a number"},
		{cloud, "https://x.atlassian.net:443:443", "may hold \":\" only in an IPv6 address"},
		// Paths: clean segments only.
		{cloud, "https://acme.atlassian.net//evil.example/", "must not hold empty segments (\"//\")"},
		{cloud, "https://acme.atlassian.net//", "must not hold empty segments"},
		{cloud, "https://api.atlassian.com/ex//jira", "must not hold empty segments"},
		{cloud, "https://api.atlassian.com/ex/jira//", "must not hold empty segments"},
		{cloud, "https://api.atlassian.com/ex/../../x", "must not hold dot segments"},
		{cloud, "https://a.atlassian.net/../x", "must not hold dot segments"},
		{cloud, "https://a.atlassian.net/./x", "must not hold dot segments"},
		{cloud, "https://a.atlassian.net/x/..", "must not hold dot segments"},
		{cloud, "https://a.atlassian.net/...", "must not hold dot segments"},
		{cloud, "https://x.atlassian.net/x/..;/y", "must not hold \";\" (path parameters; Tomcat reads \"..;\" as \"..\")"},
		{cloud, "https://api.atlassian.com/ex/jira/abc/..;/..;/admin", "must not hold \";\""},
		{cloud, "https://acme.atlassian.net/;", "must not hold \";\""},
		{cloud, "https://acme.atlassian.net/;a=b", "must not hold \";\""},
		{cloud, "https://api.atlassian.com/ex/jira;v=1/abc", "must not hold \";\""},
		{cloud, "https://a.atlassian.net/%2e%2e/x", "must not hold percent-escapes"},
		{cloud, "https://a.atlassian.net/%2E/x", "must not hold percent-escapes"},
		{cloud, "https://a.atlassian.net/a%2fb", "must not hold percent-escapes"},
		{cloud, "https://a.atlassian.net/a%252fb", "must not hold percent-escapes"},
		{cloud, "https://a.atlassian.net/%41", "must not hold percent-escapes"},
		{cloud, "https://Api.AtlAssiAn.Com/@", "must not hold \"@\""},
		{cloud, "https://api.atlassian.com/x@evil.com", "must not hold \"@\""},
		{cloud, "https://api.atlassian.com/ex/jira/a+b", "may hold only letters, digits and \"-._~\""},
		{cloud, "https://api.atlassian.com/ex/jira/a:b", "may hold only letters, digits and \"-._~\""},
		{cloud, "https://api.atlassian.com/ex/jira/a'b", "may hold only letters, digits"},
	} {
		got, err := c.p.Normalize(c.raw)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("Normalize(%q) = %q, %v; want an *Error holding %q", c.raw, got, err, c.msg)
			continue
		}
		if got != "" || !strings.Contains(e.Msg, c.msg) || e.Error() != e.Msg {
			t.Errorf("Normalize(%q) = %q, %q; want a message holding %q", c.raw, got, e.Msg, c.msg)
		}
	}
}

// TestPunycode: a punycode label must decode to a valid international label
// and be that label's one encoding.
func TestPunycode(t *testing.T) {
	p := NewPolicy([]string{"*.example"}, false)
	for raw, ok := range map[string]bool{
		"https://xn--mller-kva.example":  true,  // müller
		"https://xn--zca.example":        true,  // ß (kept by non-transitional processing)
		"https://xn--mnchen-3ya.example": true,  // münchen
		"https://XN--MNCHEN-3YA.example": true,  // the same, lower-cased first
		"https://xn--a.example":          false, // not punycode
		"https://xn--.example":           false,
		"https://xn--abc-.example":       false,
		"https://xn--a-wbb.example":      false, // a combining mark first
		"https://xn--mnchen-9ma.example": false, // "Ámnchen": not in lookup form
		"https://xn--a-poc.example":      false, // Latin and Arabic in one label
		"https://a.xn--4gbrim.example":   true,
		"https://1a.xn--4gbrim.example":  false, // Bidi rule: in a right-to-left name no label starts with a digit
	} {
		got, err := p.Normalize(raw)
		if (err == nil) != ok {
			t.Errorf("Normalize(%q) = %q, %v; want accepted %v", raw, got, err, ok)
		}
	}
}

// TestCanonicalSkipsAllowList: Canonical applies every shape rule but no
// allow-list, and accepts http.
func TestCanonicalSkipsAllowList(t *testing.T) {
	for raw, want := range map[string]string{
		"HTTPS://Jira.Example.COM.:443/":  "https://jira.example.com",
		"http://jira.internal:8080/jira/": "http://jira.internal:8080/jira",
		"http://10.0.0.7:80":              "http://10.0.0.7",
	} {
		if got, err := Canonical(raw); err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{"https://jira.example.com/;", "https://a..b", "https://jira.example.com//x", "ftp://jira.example.com"} {
		if got, err := Canonical(raw); err == nil {
			t.Errorf("Canonical(%q) = %q, want a refusal", raw, got)
		}
	}
}

// TestAllowed: a URL stored under a wide policy is refused once the policy
// is narrowed, and so is a stored URL that is no longer canonical.
func TestAllowed(t *testing.T) {
	wide := NewPolicy([]string{"*.atlassian.net", "jira.example.com"}, true)
	narrow := NewPolicy([]string{"*.atlassian.net"}, false)
	for _, raw := range []string{"https://jira.example.com/jira", "http://acme.atlassian.net"} {
		u, err := wide.Normalize(raw)
		if err != nil {
			t.Fatalf("wide.Normalize(%q): %v", raw, err)
		}
		if err := wide.Allowed(u); err != nil {
			t.Errorf("wide.Allowed(%q): %v", u, err)
		}
		var e *Error
		if err := narrow.Allowed(u); !errors.As(err, &e) {
			t.Errorf("narrow.Allowed(%q) = %v, want an *Error", u, err)
		}
	}
	if err := narrow.Allowed("https://jira.example.com/jira"); err == nil || err.Error() != "url's host jira.example.com is not in --allowed-upstreams" {
		t.Errorf("narrowed host: %v", err)
	}
	if err := narrow.Allowed("http://acme.atlassian.net"); err == nil || !strings.Contains(err.Error(), "http needs --allow-http-upstream") {
		t.Errorf("narrowed scheme: %v", err)
	}
	if err := narrow.Allowed("https://acme.atlassian.net"); err != nil {
		t.Errorf("still allowed: %v", err)
	}
	// Stored by older rules: not canonical, or refused today.
	for stored, msg := range map[string]string{
		"https://ACME.atlassian.net":   "is not in canonical form (https://acme.atlassian.net)",
		"https://acme.atlassian.net/":  "is not in canonical form",
		"https://acme.atlassian.net/;": "must not hold \";\"",
	} {
		if err := narrow.Allowed(stored); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Allowed(%q) = %v, want %q", stored, err, msg)
		}
	}
}

func TestZeroPolicyAllowsNothing(t *testing.T) {
	if u, err := (Policy{}).Normalize("https://acme.atlassian.net"); err == nil {
		t.Fatalf("zero policy accepted %q", u)
	}
}

func TestWildcardIgnoresIPs(t *testing.T) {
	p := NewPolicy([]string{"*.0.1", "*.1"}, false)
	for _, raw := range []string{"https://127.0.0.1", "https://[::1]"} {
		if u, err := p.Normalize(raw); err == nil {
			t.Errorf("wildcard let IP %q through", u)
		}
	}
}

// FuzzNormalize: whatever comes in, no panic; a refusal is an *Error with a
// message; an accepted URL normalises to itself, reads the same to net/url,
// is https on an allowed host with clean path segments and no userinfo,
// query or fragment.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		// The old FuzzNormalizeURL corpus.
		"https://acme.atlassian.net", "HTTPS://A.Atlassian.Net:443/", "https://api.atlassian.com/ex/jira/x",
		"https://u@a.atlassian.net", "https://a.atlassian.net/../x", "https://a.atlassian.net%2f@evil.com", "https://evil.com#.atlassian.net",
		"https://a.atlassian.net\\@evil.com", "https://[::1]/", "https://a.atlassian.net:8443/p/", "https://Api.AtlAssiAn.Com/@",
		// Reported gaps.
		"https://x.atlassian.net/x/..;/y", "https://api.atlassian.com/ex/jira/abc/..;/..;/admin",
		"https://acme.atlassian.net//evil.example/", "https://acme.atlassian.net/;", "https://*.atlassian.net",
		"https://a..atlassian.net", "https://%C3%A9.atlassian.net", "https://é.atlassian.net",
		// Other hostile shapes.
		"https://a.atlassian.net/%2e%2e/", "https://a.atlassian.net/.%2E/", "https://a.atlassian.net/%252e", "https://xn--mller-kva.atlassian.net",
		"https://xn--.atlassian.net", "https://acme.atlassian.net.", "https://acme.atlassian.net:0443", "https://acme.atlassian.net:",
		"https://127.0.0.1", "https://[::ffff:127.0.0.1]", "https://[fe80::1%25lo]", "https://2130706433.atlassian.net",
		"https://a.atlassian.net:443:443", "https://[::1]:443/", "https://a.atlassian.net/ex/jira/a~b_c.d-e",
	} {
		f.Add(s)
	}
	p := cloud
	f.Fuzz(func(t *testing.T, raw string) {
		checkCanonical(t, raw)
		u, err := p.Normalize(raw)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Msg == "" || u != "" {
				t.Fatalf("%q: refusal %q, %#v is not an *Error with a message", raw, u, err)
			}
			return
		}
		if again, err := p.Normalize(u); err != nil || again != u {
			t.Fatalf("not idempotent: %q → %q → %q, %v", raw, u, again, err)
		}
		if err := p.Allowed(u); err != nil {
			t.Fatalf("%q → %q is not Allowed: %v", raw, u, err)
		}
		if c, err := Canonical(raw); err != nil || c != u {
			t.Fatalf("Normalize(%q) = %q but Canonical gives %q, %v", raw, u, c, err)
		}
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatalf("%q → %q does not parse: %v", raw, u, err)
		}
		if pu.Scheme != "https" || pu.User != nil || pu.RawQuery != "" || pu.ForceQuery || pu.Fragment != "" || pu.Opaque != "" || pu.RawPath != "" {
			t.Fatalf("%q → %q: scheme %q, user %v, query %q, fragment %q", raw, u, pu.Scheme, pu.User, pu.RawQuery, pu.Fragment)
		}
		if h := pu.Hostname(); h != hostOf(u) || !p.hostAllowed(h) || h != strings.ToLower(h) {
			t.Fatalf("%q → %q: net/url host %q, ours %q", raw, u, h, hostOf(u))
		}
		if pu.EscapedPath() != pu.Path {
			t.Fatalf("%q → %q: path needs escaping", raw, u)
		}
		if pu.Path != "" {
			for _, seg := range strings.Split(pu.Path[1:], "/") {
				if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, ";%@") {
					t.Fatalf("%q → %q: path segment %q", raw, u, seg)
				}
			}
		}
		if strings.HasSuffix(u, "/") || strings.ContainsAny(u, "@?#\\ ") || len(u) > MaxLen {
			t.Fatalf("%q → %q", raw, u)
		}
	})
}

// checkCanonical: whatever Canonical accepts (any host, http too) is its own
// canonical form and reads the same to net/url.
func checkCanonical(t *testing.T, raw string) {
	t.Helper()
	c, err := Canonical(raw)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || e.Msg == "" || c != "" {
			t.Fatalf("Canonical(%q): refusal %q, %#v is not an *Error with a message", raw, c, err)
		}
		return
	}
	if again, err := Canonical(c); err != nil || again != c {
		t.Fatalf("Canonical not idempotent: %q → %q → %q, %v", raw, c, again, err)
	}
	pu, err := url.Parse(c)
	if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.User != nil || pu.RawQuery != "" || pu.Fragment != "" || pu.RawPath != "" {
		t.Fatalf("Canonical(%q) = %q: net/url reads %#v, %v", raw, c, pu, err)
	}
	if h := pu.Hostname(); h != hostOf(c) || h == "" {
		t.Fatalf("Canonical(%q) = %q: net/url host %q, ours %q", raw, c, h, hostOf(c))
	}
	if pu.Path != "" {
		for _, seg := range strings.Split(pu.Path[1:], "/") {
			if seg == "" || strings.Trim(seg, ".") == "" || strings.ContainsAny(seg, ";%@") {
				t.Fatalf("Canonical(%q) = %q: path segment %q", raw, c, seg)
			}
		}
	}
}
