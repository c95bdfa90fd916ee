package proxy_test

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// hDo sends one request with body (none when ""); hdr is name, value pairs.
func hDo(t *testing.T, method, url, key string, body string, hdr ...string) relaytest.Answer {
	t.Helper()
	var b any
	if body != "" {
		b = body
	}
	return relaytest.NewClient(t, "").Do(method, url, key, b, hdr...)
}

// TestRegistrationIsLimitedPerAddress: POST /v1/instances has its own,
// tight budget per client address (--registration-rps/-burst): past it the
// caller gets the same 429 shape as uploads, with Retry-After and the
// RateLimit-* headers, and nothing is written; another address still
// registers.
func TestRegistrationIsLimitedPerAddress(t *testing.T) {
	t.Parallel()
	r := relaytest.Start(t, func(c *configs.Config) {
		c.RegistrationRPS, c.RegistrationBurst = 0.01, 3
		c.TrustedProxies = []string{"127.0.0.1/32"}
	})
	a := relaytest.NewClient(t, r.URL)
	for i := range 3 {
		if _, res := a.Register("https://t"+string(rune('a'+i))+".atlassian.net", "X-Forwarded-For", "203.0.113.7"); res.Status != 201 {
			t.Fatalf("registration %d: %d %s", i, res.Status, res.Body)
		}
	}
	before := r.KeyCount(t)
	_, res := a.Register("https://td.atlassian.net", "X-Forwarded-For", "203.0.113.7")
	if res.Status != 429 || res.Code() != "rate_limited_registration" || res.Header.Get("Retry-After") == "" || res.Header.Get("RateLimit-Limit") == "" {
		t.Fatalf("4th registration from one address: %d %s %v", res.Status, res.Body, res.Header)
	}
	if after := r.KeyCount(t); after != before {
		t.Fatalf("a refused registration wrote %d keys", after-before)
	}
	// A malformed registration is charged too: the flood is refused before
	// any body is read.
	if res := hDo(t, "POST", r.URL+"/v1/instances", "", "{", "X-Forwarded-For", "203.0.113.7"); res.Status != 429 {
		t.Fatalf("malformed registration while limited: %d %s", res.Status, res.Body)
	}
	if _, res := a.Register("https://te.atlassian.net", "X-Forwarded-For", "198.51.100.9"); res.Status != 201 {
		t.Fatalf("another address: %d %s", res.Status, res.Body)
	}
}

// TestDataRoutesAreLimited: every /v1 data route passes the limits of the
// caller's address and of the instance, not only the attachment routes. A
// flood of mapping writes under one client key is refused with 429 and
// writes nothing; reads of the configuration are limited the same way.
func TestDataRoutesAreLimited(t *testing.T) {
	t.Parallel()
	t.Run("per address", func(t *testing.T) {
		r := relaytest.Start(t, func(c *configs.Config) { c.IPRPS, c.IPBurst = 0.01, 5 })
		ten := relaytest.NewClient(t, r.URL).MustRegister(t, "https://acme.atlassian.net")
		id, key := ten.ID, ten.Client
		mapping := func(i int) string {
			return `{"conversationId":"c` + string(rune('a'+i)) + `","mailId":"<m` + string(rune('a'+i)) + `@x>","userId":"u","app":"outlook","jira":{"id":"1","key":"ABC-1","projectId":"1"}}`
		}
		for i := range 5 {
			if res := hDo(t, "POST", r.URL+"/v1/instances/"+id+"/mappings", key, mapping(i)); res.Status != 201 {
				t.Fatalf("mapping %d: %d %s", i, res.Status, res.Body)
			}
		}
		before := r.KeyCount(t)
		for i := 5; i < 10; i++ {
			res := hDo(t, "POST", r.URL+"/v1/instances/"+id+"/mappings", key, mapping(i))
			if res.Status != 429 || res.Code() != "rate_limited_ip" || res.Header.Get("Retry-After") == "" {
				t.Fatalf("mapping %d past the address budget: %d %s", i, res.Status, res.Body)
			}
		}
		if after := r.KeyCount(t); after != before {
			t.Fatalf("refused writes wrote %d keys", after-before)
		}
		for _, path := range []string{"/config", "/users/u", "/mappings?conversationId=ca"} {
			if res := hDo(t, "GET", r.URL+"/v1/instances/"+id+path, key, ""); res.Status != 429 {
				t.Fatalf("GET %s past the address budget: %d %s", path, res.Status, res.Body)
			}
		}
	})
	t.Run("per instance, across addresses", func(t *testing.T) {
		r := relaytest.Start(t, func(c *configs.Config) {
			c.InstanceRPS, c.InstanceBurst = 0.01, 4
			c.TrustedProxies = []string{"127.0.0.1/32"}
		})
		ten := relaytest.NewClient(t, r.URL).MustRegister(t, "https://acme.atlassian.net")
		id, key := ten.ID, ten.Client
		for i := range 4 {
			if res := hDo(t, "GET", r.URL+"/v1/instances/"+id+"/config", key, "", "X-Forwarded-For", "203.0.113."+string(rune('1'+i))); res.Status != 200 {
				t.Fatalf("config read %d: %d %s", i, res.Status, res.Body)
			}
		}
		res := hDo(t, "PUT", r.URL+"/v1/instances/"+id+"/users/u1", key, `{"name":"N","email":"n@example.com"}`, "X-Forwarded-For", "203.0.113.99")
		if res.Status != 429 || res.Code() != "rate_limited_instance" {
			t.Fatalf("5th request of the instance from a new address: %d %s", res.Status, res.Body)
		}
		// Another tenant is not affected.
		other := relaytest.NewClient(t, r.URL).MustRegister(t, "https://other.atlassian.net")
		if res := hDo(t, "GET", r.URL+"/v1/instances/"+other.ID+"/config", other.Client, ""); res.Status != 200 {
			t.Fatalf("another tenant: %d %s", res.Status, res.Body)
		}
	})
}

// TestRepeatedQueryParameterIsRefused: a parameter given twice is 400
// duplicate_parameter, whether or not one of its values is empty (Jira
// would otherwise receive the second filename).
func TestRepeatedQueryParameterIsRefused(t *testing.T) {
	t.Parallel()
	r := relaytest.Start(t, nil)
	ten := relaytest.NewClient(t, r.URL).MustRegister(t, "https://acme.atlassian.net")
	id, key := ten.ID, ten.Client
	cases := []struct{ method, path string }{
		{"POST", "/issues/ABC-1/attachments?filename=&filename=evil.html"},
		{"POST", "/issues/ABC-1/attachments?filename=a.txt&filename="},
		{"POST", "/issues/ABC-1/attachments?filename=a.txt&encoding=&encoding=base64"},
		{"GET", "/mappings?conversationId=&conversationId=c1"},
		{"GET", "/mappings?conversationId=c1&userId=&userId=u1"},
		{"DELETE", "/mappings?mailId=m&issueId=1&userId=&userId=u"},
		{"GET", "/error-reports?limit=&limit=5"},
	}
	for _, c := range cases {
		k := key
		if strings.HasPrefix(c.path, "/error-reports") {
			k = ten.Admin
		}
		res := hDo(t, c.method, r.URL+"/v1/instances/"+id+c.path, k, "", "Authorization", "Basic x")
		if res.Status != 400 || res.Code() != "duplicate_parameter" {
			t.Errorf("%s %s: %d %s, want 400 duplicate_parameter", c.method, c.path, res.Status, res.Body)
		}
	}
}

// TestNarrowedPolicyStopsRegisteredTenant: --allowed-upstreams is checked
// when an upstream is made, not only at registration: a tenant registered
// under a wider policy gets 502 upstream_not_allowed (and a log line) once
// the relay runs with a narrower one, and Jira is never reached.
func TestNarrowedPolicyStopsRegisteredTenant(t *testing.T) {
	t.Parallel()
	jira := relaytest.StartJira(t, fakejira.Options{})
	wide := relaytest.Start(t, nil)
	ten := relaytest.NewClient(t, wide.URL).MustRegister(t, jira.URL())
	id, key := ten.ID, ten.Client

	// A second relay over the same keys, with a narrower policy.
	logs := &relaytest.LogBuffer{}
	narrow := relaytest.StartWith(t, relaytest.Options{Etcd: wide.Etcd, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Mutate: func(c *configs.Config) {
		c.EtcdPrefix = wide.Config.EtcdPrefix
		c.AllowedUpstreams = []string{"*.atlassian.net"}
	}}).URL
	for _, req := range []struct{ method, path string }{
		{"POST", "/issues/ABC-1/attachments?filename=a.txt"},
		{"GET", "/attachments/10001/content"},
	} {
		res := hDo(t, req.method, narrow+"/v1/instances/"+id+req.path, key, "", "Authorization", "Basic x", "Content-Type", "text/plain")
		if res.Status != 502 || res.Code() != "upstream_not_allowed" {
			t.Fatalf("%s through the narrowed relay: %d %s", req.method, res.Status, res.Body)
		}
	}
	if n := len(jira.Uploads()); n != 0 {
		t.Fatalf("Jira saw %d uploads", n)
	}
	if !strings.Contains(logs.String(), "upstream policy") || !strings.Contains(logs.String(), id) {
		t.Fatalf("no log line names the refused instance:\n%s", logs.String())
	}
	// The wide relay still reaches it.
	res := hDo(t, "POST", wide.URL+"/v1/instances/"+id+"/issues/ABC-1/attachments?filename=a.txt", key, "hello", "Authorization", "Basic x", "Content-Type", "text/plain")
	if res.Status != 200 {
		t.Fatalf("through the wide relay: %d %s", res.Status, res.Body)
	}
}

// TestAccessLogNeverQuotesAnUnknownMethod: a method is whatever a client
// puts before the first space; one that put a key there must not find the
// key in the log. Known methods are logged as they are.
func TestAccessLogNeverQuotesAnUnknownMethod(t *testing.T) {
	t.Parallel()
	logs := &relaytest.LogBuffer{}
	base := relaytest.StartWith(t, relaytest.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))}).URL
	addr := strings.TrimPrefix(base, "http://")
	const secret = "jrc_SECRETKEY123456"
	for _, m := range []string{secret, "GET"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(m + " /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.ReadAll(c)
		c.Close()
	}
	relaytest.Eventually(5*time.Second, func() bool { return strings.Count(logs.String(), `"msg":"request"`) >= 2 })
	out := logs.String()
	if strings.Contains(out, secret) {
		t.Fatalf("the log quotes the method that held a key:\n%s", out)
	}
	if !strings.Contains(out, `"method":"OTHER"`) || !strings.Contains(out, `"method":"GET"`) {
		t.Fatalf("want one OTHER and one GET line:\n%s", out)
	}
}
