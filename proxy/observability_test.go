package proxy_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// startServer runs a relay (relaytest.StartWith) whose log goes to log,
// plain-HTTP upstreams on loopback allowed, and a client of its API.
func startServer(t *testing.T, log *slog.Logger) (*relaytest.Relay, *relaytest.Client) {
	t.Helper()
	r := relaytest.StartWith(t, relaytest.Options{Logger: log, Mutate: func(c *configs.Config) {
		c.AllowedUpstreams = []string{"127.0.0.1"}
	}})
	return r, relaytest.NewClient(t, r.URL)
}

// TestMetricsAndAccessLogKeepSecrets: after a workload, /metrics (on the
// admin handler) has the documented series, and neither the metrics nor the
// access log hold a key, a credential, a filename, an id from a path or body bytes.
func TestMetricsAndAccessLogKeepSecrets(t *testing.T) {
	t.Parallel()
	logs := &relaytest.LogBuffer{}
	r, a := startServer(t, logs.Logger())
	srv := r.Server

	fj := relaytest.StartJira(t, fakejira.Options{})
	ten := a.MustRegister(t, fj.URL())
	const secretAuth = "Basic U0VDUkVULUNSRURFTlRJQUw="
	const secretName = "salary-of-mia@example.com.pdf"
	a.Do("PUT", "/v1/instances/"+ten.ID+"/users/mia%40example.com", ten.Client, map[string]any{"name": "Mia", "email": "mia@example.com"})
	req, _ := http.NewRequest("POST", a.Base+"/v1/instances/"+ten.ID+"/issues/ITSM-1/attachments?filename="+secretName, strings.NewReader("BODY-BYTES-CANARY"))
	req.Header.Set("X-Relay-Key", ten.Client)
	req.Header.Set("Authorization", secretAuth)
	req.Header.Set("Cookie", "session=COOKIE-CANARY")
	req.Header.Set("X-Request-Id", "trace-abc-123")
	res := send(t, req)
	if res.Status != 200 || res.Header.Get("X-Request-Id") != "trace-abc-123" {
		t.Fatalf("upload: %d, X-Request-Id %q", res.Status, res.Header.Get("X-Request-Id"))
	}
	if got := fj.Uploads()[0].Header.Get("X-Request-Id"); got != "trace-abc-123" {
		t.Fatalf("request id at Jira = %q", got)
	}
	if res := a.Do("GET", "/healthz", "", nil); len(res.Header.Get("X-Request-Id")) != 16 {
		t.Fatalf("generated request id = %q", res.Header.Get("X-Request-Id"))
	}

	rec := httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	metrics := rec.Body.String()
	for _, want := range []string{
		`relay_requests_total{route="/v1/instances/{id}/issues/{issue}/attachments",status="200"} 1`,
		`relay_attachment_bytes_up_total 17`,
		`relay_streams_in_flight 0`,
		`relay_upstream_duration_seconds_bucket`,
		`relay_breaker_state{instance="` + ten.ID + `"} 0`,
		`relay_ratelimit_refusals_total{reason="ip"} 0`,
		`relay_cache_instances 1`,
		`relay_limiter_keys{limiter="ip"}`,
		"\ngo_goroutines ",
		"\nprocess_resident_memory_bytes ",
		"\nprocess_open_fds ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Never on the public port.
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		if res := a.Do("GET", path, "", nil); res.Status != 404 {
			t.Errorf("public %s: %d", path, res.Status)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != 200 {
			t.Errorf("admin %s: %d", path, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 200 {
		t.Errorf("/debug/pprof/: %d", rec.Code)
	}
	lines := logs.String()
	var upload map[string]any
	for line := range strings.SplitSeq(lines, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "request" && m["route"] == "/v1/instances/{id}/issues/{issue}/attachments" {
			upload = m
		}
	}
	if upload == nil || upload["instance"] != ten.ID || upload["status"] != 200.0 || upload["upstream_status"] != 200.0 ||
		upload["request_id"] != "trace-abc-123" || upload["method"] != "POST" || upload["bytes_in"] != 17.0 {
		t.Fatalf("the upload's access line: %v\nall lines:\n%s", upload, lines)
	}
	for _, secret := range []string{secretAuth, "U0VDUkVULUNSRURFTlRJQUw", ten.Client, ten.Admin, "COOKIE-CANARY", "BODY-BYTES-CANARY", "salary", "mia@example.com", "mia%40example.com"} {
		if strings.Contains(lines, secret) {
			t.Errorf("the log holds %q", secret)
		}
		if strings.Contains(metrics, secret) {
			t.Errorf("the metrics hold %q", secret)
		}
	}
}

// TestDeletedInstanceLeavesNoUpstream: once an instance is deleted, the
// relay drops its Jira connection pool and breaker (within its 5 s sweep),
// so they are held for live tenants only; the breaker's series leaves
// /metrics with it.
func TestDeletedInstanceLeavesNoUpstream(t *testing.T) {
	t.Parallel()
	r, a := startServer(t, nil)
	srv := r.Server
	fj1 := relaytest.StartJira(t, fakejira.Options{})
	fj2 := relaytest.StartJira(t, fakejira.Options{})
	keep, gone := a.MustRegister(t, fj1.URL()), a.MustRegister(t, fj2.URL())
	for _, ten := range []relaytest.Tenant{keep, gone} {
		req, _ := http.NewRequest("POST", a.Base+"/v1/instances/"+ten.ID+"/issues/ITSM-1/attachments?filename=a.txt", strings.NewReader("hello"))
		req.Header.Set("X-Relay-Key", ten.Client)
		req.Header.Set("Authorization", "Basic dTpw")
		if res := send(t, req); res.Status != 200 {
			t.Fatalf("upload: %d %s", res.Status, res.Body)
		}
	}
	breakers := func() string {
		rec := httptest.NewRecorder()
		srv.AdminHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		var lines []string
		for line := range strings.SplitSeq(rec.Body.String(), "\n") {
			if strings.HasPrefix(line, "relay_breaker_state{") {
				lines = append(lines, line)
			}
		}
		return strings.Join(lines, "\n")
	}
	if b := breakers(); !strings.Contains(b, keep.ID) || !strings.Contains(b, gone.ID) {
		t.Fatalf("breakers before the delete:\n%s", b)
	}
	if res := a.Do("DELETE", "/v1/instances/"+gone.ID, gone.Admin, nil); res.Status != 204 && res.Status != 200 {
		t.Fatalf("delete: %d %s", res.Status, res.Body)
	}
	deadline := time.Now().Add(12 * time.Second)
	for strings.Contains(breakers(), gone.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("the deleted instance's upstream is still held after 12 s:\n%s", breakers())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if b := breakers(); !strings.Contains(b, keep.ID) {
		t.Fatalf("the live instance's upstream was dropped too:\n%s", b)
	}
}
