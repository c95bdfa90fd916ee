package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"github.com/jira-relay/jira-relay/internal/stack"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// hReply is one answer in the hardening tests.
type hReply struct {
	status int
	header http.Header
	code   string // the JSON error code, "" when the body is not the error shape
	body   []byte
}

// hDo sends one request; hdr is name, value pairs.
func hDo(t *testing.T, method, url, key string, body string, hdr ...string) hReply {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("X-Relay-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	_ = json.Unmarshal(b, &e)
	return hReply{status: resp.StatusCode, header: resp.Header, code: e.Error.Code, body: b}
}

func hRegister(t *testing.T, base, jiraURL string, hdr ...string) (hReply, map[string]any) {
	t.Helper()
	body := `{"url":"` + jiraURL + `","jiraVersion":"1001.0.0","addinVersion":"4.2.0"}`
	res := hDo(t, "POST", base+"/v1/instances", "", body, hdr...)
	var m map[string]any
	_ = json.Unmarshal(res.body, &m)
	return res, m
}

func hKeys(t *testing.T, cli *clientv3.Client, prefix string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// TestRegistrationIsLimitedPerAddress: POST /v1/instances has its own,
// tight budget per client address (--registration-rps/-burst): past it the
// caller gets the same 429 shape as uploads, with Retry-After and the
// RateLimit-* headers, and nothing is written; another address still
// registers.
func TestRegistrationIsLimitedPerAddress(t *testing.T) {
	r := relaytest.Start(t, func(c *configs.Config) {
		c.RegistrationRPS, c.RegistrationBurst = 0.01, 3
		c.TrustedProxies = []string{"127.0.0.1/32"}
	})
	for i := range 3 {
		if res, _ := hRegister(t, r.URL, "https://t"+string(rune('a'+i))+".atlassian.net", "X-Forwarded-For", "203.0.113.7"); res.status != 201 {
			t.Fatalf("registration %d: %d %s", i, res.status, res.body)
		}
	}
	before := hKeys(t, r.Etcd, r.Config.EtcdPrefix)
	res, _ := hRegister(t, r.URL, "https://td.atlassian.net", "X-Forwarded-For", "203.0.113.7")
	if res.status != 429 || res.code != "rate_limited_registration" || res.header.Get("Retry-After") == "" || res.header.Get("RateLimit-Limit") == "" {
		t.Fatalf("4th registration from one address: %d %s %v", res.status, res.body, res.header)
	}
	if after := hKeys(t, r.Etcd, r.Config.EtcdPrefix); after != before {
		t.Fatalf("a refused registration wrote %d keys", after-before)
	}
	// A malformed registration is charged too: the flood is refused before
	// any body is read.
	if res := hDo(t, "POST", r.URL+"/v1/instances", "", "{", "X-Forwarded-For", "203.0.113.7"); res.status != 429 {
		t.Fatalf("malformed registration while limited: %d %s", res.status, res.body)
	}
	if res, _ := hRegister(t, r.URL, "https://te.atlassian.net", "X-Forwarded-For", "198.51.100.9"); res.status != 201 {
		t.Fatalf("another address: %d %s", res.status, res.body)
	}
}

// TestDataRoutesAreLimited: every /v1 data route passes the limits of the
// caller's address and of the instance, not only the attachment routes. A
// flood of mapping writes under one client key is refused with 429 and
// writes nothing; reads of the configuration are limited the same way.
func TestDataRoutesAreLimited(t *testing.T) {
	t.Run("per address", func(t *testing.T) {
		r := relaytest.Start(t, func(c *configs.Config) { c.IPRPS, c.IPBurst = 0.01, 5 })
		_, ten := hRegister(t, r.URL, "https://acme.atlassian.net")
		id, key := ten["instanceId"].(string), ten["clientKey"].(string)
		mapping := func(i int) string {
			return `{"conversationId":"c` + string(rune('a'+i)) + `","mailId":"<m` + string(rune('a'+i)) + `@x>","userId":"u","app":"outlook","jira":{"id":"1","key":"ABC-1","projectId":"1"}}`
		}
		for i := range 5 {
			if res := hDo(t, "POST", r.URL+"/v1/instances/"+id+"/mappings", key, mapping(i)); res.status != 201 {
				t.Fatalf("mapping %d: %d %s", i, res.status, res.body)
			}
		}
		before := hKeys(t, r.Etcd, r.Config.EtcdPrefix)
		for i := 5; i < 10; i++ {
			res := hDo(t, "POST", r.URL+"/v1/instances/"+id+"/mappings", key, mapping(i))
			if res.status != 429 || res.code != "rate_limited_ip" || res.header.Get("Retry-After") == "" {
				t.Fatalf("mapping %d past the address budget: %d %s", i, res.status, res.body)
			}
		}
		if after := hKeys(t, r.Etcd, r.Config.EtcdPrefix); after != before {
			t.Fatalf("refused writes wrote %d keys", after-before)
		}
		for _, path := range []string{"/config", "/users/u", "/mappings?conversationId=ca"} {
			if res := hDo(t, "GET", r.URL+"/v1/instances/"+id+path, key, ""); res.status != 429 {
				t.Fatalf("GET %s past the address budget: %d %s", path, res.status, res.body)
			}
		}
	})
	t.Run("per instance, across addresses", func(t *testing.T) {
		r := relaytest.Start(t, func(c *configs.Config) {
			c.InstanceRPS, c.InstanceBurst = 0.01, 4
			c.TrustedProxies = []string{"127.0.0.1/32"}
		})
		_, ten := hRegister(t, r.URL, "https://acme.atlassian.net")
		id, key := ten["instanceId"].(string), ten["clientKey"].(string)
		for i := range 4 {
			if res := hDo(t, "GET", r.URL+"/v1/instances/"+id+"/config", key, "", "X-Forwarded-For", "203.0.113."+string(rune('1'+i))); res.status != 200 {
				t.Fatalf("config read %d: %d %s", i, res.status, res.body)
			}
		}
		res := hDo(t, "PUT", r.URL+"/v1/instances/"+id+"/users/u1", key, `{"name":"N","email":"n@example.com"}`, "X-Forwarded-For", "203.0.113.99")
		if res.status != 429 || res.code != "rate_limited_instance" {
			t.Fatalf("5th request of the instance from a new address: %d %s", res.status, res.body)
		}
		// Another tenant is not affected.
		_, other := hRegister(t, r.URL, "https://other.atlassian.net")
		if res := hDo(t, "GET", r.URL+"/v1/instances/"+other["instanceId"].(string)+"/config", other["clientKey"].(string), ""); res.status != 200 {
			t.Fatalf("another tenant: %d %s", res.status, res.body)
		}
	})
}

// TestRepeatedQueryParameterIsRefused: a parameter given twice is 400
// duplicate_parameter, whether or not one of its values is empty (Jira
// would otherwise receive the second filename).
func TestRepeatedQueryParameterIsRefused(t *testing.T) {
	r := relaytest.Start(t, nil)
	_, ten := hRegister(t, r.URL, "https://acme.atlassian.net")
	id, key := ten["instanceId"].(string), ten["clientKey"].(string)
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
			k = ten["adminKey"].(string)
		}
		res := hDo(t, c.method, r.URL+"/v1/instances/"+id+c.path, k, "", "Authorization", "Basic x")
		if res.status != 400 || res.code != "duplicate_parameter" {
			t.Errorf("%s %s: %d %s, want 400 duplicate_parameter", c.method, c.path, res.status, res.body)
		}
	}
}

// TestNarrowedPolicyStopsRegisteredTenant: --allowed-upstreams is checked
// when an upstream is made, not only at registration: a tenant registered
// under a wider policy gets 502 upstream_not_allowed (and a log line) once
// the relay runs with a narrower one, and Jira is never reached.
func TestNarrowedPolicyStopsRegisteredTenant(t *testing.T) {
	jira, err := fakejira.Start(fakejira.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jira.Close)
	_, cli := etcdtest.Start(t)
	wide := relaytest.StartWithEtcd(t, cli, nil)
	_, ten := hRegister(t, wide.URL, jira.URL())
	id, key := ten["instanceId"].(string), ten["clientKey"].(string)

	logs := &hLog{}
	cfg := configs.Defaults()
	cfg.AllowHTTPUpstream = true
	cfg.AllowedUpstreams = []string{"*.atlassian.net"}
	narrow := hServe(t, cfg, cli, slog.New(slog.NewJSONHandler(logs, nil)))
	for _, req := range []struct{ method, path string }{
		{"POST", "/issues/ABC-1/attachments?filename=a.txt"},
		{"GET", "/attachments/10001/content"},
	} {
		res := hDo(t, req.method, narrow+"/v1/instances/"+id+req.path, key, "", "Authorization", "Basic x", "Content-Type", "text/plain")
		if res.status != 502 || res.code != "upstream_not_allowed" {
			t.Fatalf("%s through the narrowed relay: %d %s", req.method, res.status, res.body)
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
	if res.status != 200 {
		t.Fatalf("through the wide relay: %d %s", res.status, res.body)
	}
}

// TestAccessLogNeverQuotesAnUnknownMethod: a method is whatever a client
// puts before the first space; one that put a key there must not find the
// key in the log. Known methods are logged as they are.
func TestAccessLogNeverQuotesAnUnknownMethod(t *testing.T) {
	_, cli := etcdtest.Start(t)
	logs := &hLog{}
	cfg := configs.Defaults()
	base := hServe(t, cfg, cli, slog.New(slog.NewJSONHandler(logs, nil)))
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
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), `"msg":"request"`) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := logs.String()
	if strings.Contains(out, secret) {
		t.Fatalf("the log quotes the method that held a key:\n%s", out)
	}
	if !strings.Contains(out, `"method":"OTHER"`) || !strings.Contains(out, `"method":"GET"`) {
		t.Fatalf("want one OTHER and one GET line:\n%s", out)
	}
}

// hServe runs a relay assembled by stack over cli with cfg and log on a
// loopback port and returns its base URL.
func hServe(t *testing.T, cfg configs.Config, cli *clientv3.Client, log *slog.Logger) string {
	t.Helper()
	rl, err := stack.Start(stack.Options{Config: cfg, Etcd: cli, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	<-rl.Synced()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { _ = rl.Server.Serve(ln); close(served) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rl.Server.Shutdown(ctx)
		<-served
		rl.Close()
	})
	return "http://" + ln.Addr().String()
}

// hLog is a log sink safe for the relay's goroutines.
type hLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *hLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *hLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestLicenceDateOutOfRangeWritesNothing: a valid RFC 3339 date whose UTC
// form leaves the years 0000–9999 ("9999-12-31T23:59:59-23:59" is in year
// 10000 in UTC) is 400 invalid_field at registration and on PATCH, and the
// record is unchanged: the tenant keeps working.
func TestLicenceDateOutOfRangeWritesNothing(t *testing.T) {
	r := relaytest.Start(t, nil)
	lic := `"license":{"key":"LIC-1","expiresAt":"9999-12-31T23:59:59-23:59","seats":5}`
	before := hKeys(t, r.Etcd, r.Config.EtcdPrefix)
	res := hDo(t, "POST", r.URL+"/v1/instances", "", `{"url":"https://acme.atlassian.net","jiraVersion":"1","addinVersion":"1",`+lic+`}`)
	if res.status != 400 || res.code != "invalid_field" {
		t.Fatalf("registration with the date: %d %s", res.status, res.body)
	}
	if after := hKeys(t, r.Etcd, r.Config.EtcdPrefix); after != before {
		t.Fatalf("a refused registration wrote %d keys", after-before)
	}
	_, ten := hRegister(t, r.URL, "https://acme.atlassian.net")
	id, admin := ten["instanceId"].(string), ten["adminKey"].(string)
	was := hDo(t, "GET", r.URL+"/v1/instances/"+id, admin, "")
	res = hDo(t, "PATCH", r.URL+"/v1/instances/"+id, admin, `{`+lic+`}`)
	if res.status != 400 || res.code != "invalid_field" {
		t.Fatalf("PATCH with the date: %d %s", res.status, res.body)
	}
	now := hDo(t, "GET", r.URL+"/v1/instances/"+id, admin, "")
	if now.status != 200 || !bytes.Equal(now.body, was.body) {
		t.Fatalf("the record changed: %d %s, was %s", now.status, now.body, was.body)
	}
	if res := hDo(t, "GET", r.URL+"/v1/instances/"+id+"/config", ten["clientKey"].(string), ""); res.status != 200 {
		t.Fatalf("config after the refused PATCH: %d %s", res.status, res.body)
	}
}

// TestUndecodableRecordIsErasable: an instance record that no longer
// decodes answers 500 record_corrupt (logged), not a bare 500, and the
// admin can still erase the tenant through the API; its URL can then be
// registered again.
func TestUndecodableRecordIsErasable(t *testing.T) {
	r := relaytest.Start(t, nil)
	_, ten := hRegister(t, r.URL, "https://acme.atlassian.net")
	id, admin, client := ten["instanceId"].(string), ten["adminKey"].(string), ten["clientKey"].(string)
	key := r.Config.EtcdPrefix + "instances/" + id + "/instance"
	got, err := r.Etcd.Get(context.Background(), key)
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("instance record: %v %v", got, err)
	}
	// A record that decodes no more, with its key hashes intact: a year
	// past 9999, which the store can no longer write.
	var rec map[string]any
	if err := json.Unmarshal(got.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	rec["license"] = map[string]any{"key": "LIC-1", "expiresAt": "10000-01-01T00:00:00Z", "seats": 1}
	broken, _ := json.Marshal(rec)
	if _, err := r.Etcd.Put(context.Background(), key, string(broken)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		res := hDo(t, "GET", r.URL+"/v1/instances/"+id+"/config", client, "")
		if res.status == 500 && res.code == "record_corrupt" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("config of a corrupt tenant: %d %s", res.status, res.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res := hDo(t, "GET", r.URL+"/v1/instances/"+id, admin, ""); res.status != 500 || res.code != "record_corrupt" {
		t.Fatalf("GET of a corrupt tenant: %d %s", res.status, res.body)
	}
	if res := hDo(t, "DELETE", r.URL+"/v1/instances/"+id, client, ""); res.status == 204 {
		t.Fatal("the client key erased the tenant")
	}
	if res := hDo(t, "DELETE", r.URL+"/v1/instances/"+id, admin, ""); res.status != 204 {
		t.Fatalf("erase with the admin key: %d %s", res.status, res.body)
	}
	if n := hKeys(t, r.Etcd, r.Config.EtcdPrefix+"instances/"+id+"/"); n != 0 {
		t.Fatalf("%d keys of the erased tenant left", n)
	}
	if res, _ := hRegister(t, r.URL, "https://acme.atlassian.net"); res.status != 201 {
		t.Fatalf("registering the URL again: %d %s", res.status, res.body)
	}
}
