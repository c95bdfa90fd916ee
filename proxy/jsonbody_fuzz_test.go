package proxy

import (
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeJSON drives the strict decoder with arbitrary bodies: it never
// panics, and every refusal is a 4xx apiError.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"url":"https://a.atlassian.net","jiraVersion":"1","addinVersion":"1"}`,
		`{"conversationId":"c","mailId":"<m@x>","userId":"u","app":"Jira","jira":{"id":"1","key":"AB-1","projectId":"2"}}`,
		`{"a":1,"a":2}`, `[[[[`, `{"jira":{"id":1}}`, "\xff", `{} {}`, `{"license":null}`, `"s"`, `1e999`,
		`{"name":"Mia","email":"mia@example.com"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&registerBody{}, &mappingBody{}, &patchBody{}, &userBody{}} {
			err := strictUnmarshal(b, v)
			if err == nil {
				continue
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.Code == "" {
				t.Fatalf("%q: refusal is not a 4xx apiError: %v", b, err)
			}
		}
		if err := checkJSON(b); err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.Status != 400 {
				t.Fatalf("checkJSON(%q) = %v", b, err)
			}
		}
	})
}

// FuzzNormalizeURL: whatever comes in, a URL that passes is https on an
// allowed host with no userinfo, query, fragment or dot segment, and
// normalising it again gives the same URL.
func FuzzNormalizeURL(f *testing.F) {
	for _, s := range []string{"https://acme.atlassian.net", "HTTPS://A.Atlassian.Net:443/", "https://api.atlassian.com/ex/jira/x",
		"https://u@a.atlassian.net", "https://a.atlassian.net/../x", "https://a.atlassian.net%2f@evil.com", "https://evil.com#.atlassian.net",
		"https://a.atlassian.net\\@evil.com", "https://[::1]/", "https://a.atlassian.net:8443/p/", "https://Api.AtlAssiAn.Com/@"} {
		f.Add(s)
	}
	p := urlPolicy{patterns: []string{"*.atlassian.net", "api.atlassian.com"}}
	f.Fuzz(func(t *testing.T, raw string) {
		u, aerr := p.normalize(raw)
		if aerr != nil {
			if aerr.Status != 400 {
				t.Fatalf("%q: status %d", raw, aerr.Status)
			}
			return
		}
		if !strings.HasPrefix(u, "https://") || strings.ContainsAny(u, "@?#\\ ") || strings.HasSuffix(u, "/") {
			t.Fatalf("%q normalised to %q", raw, u)
		}
		host := strings.TrimPrefix(u, "https://")
		host, _, _ = strings.Cut(host, "/")
		host, _, _ = strings.Cut(host, ":")
		if !p.hostAllowed(host) {
			t.Fatalf("%q passed with host %q", raw, host)
		}
		again, aerr := p.normalize(u)
		if aerr != nil || again != u {
			t.Fatalf("not idempotent: %q → %q → %q %v", raw, u, again, aerr)
		}
	})
}
