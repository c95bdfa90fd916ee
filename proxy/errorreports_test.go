package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestErrorReports(t *testing.T) {
	t.Parallel()
	r, a := start(t, func(c *configs.Config) { c.ErrorReportTTL = time.Hour })
	ten := a.MustRegister(t, "https://acme.atlassian.net")
	p := "/v1/instances/" + ten.ID + "/error-reports"
	report := map[string]any{
		"message":      "upload failed for mia.krystof@example.com with Authorization: Basic bWlhOnRva2Vu",
		"stack":        "Error: 401\n    at fetch (https://addin.example.com/app.js?session=SECRET123:10:5)\n    at upload (relay-client.js:120:15)",
		"addinVersion": "4.2.0",
		"context": map[string]any{"token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "card": "4111 1111 1111 1111", "ok": true,
			"password": "canary48plain", "account": 41111111111111111, "note": "cc uma.k@exa\u200bmple.com and judy＠example.com"},
	}
	if res := a.Do("POST", p, ten.Client, report); res.Status != 403 || res.ErrCode(t) != "error_reports_off" {
		t.Fatalf("reports off: %d %s", res.Status, res.Body)
	}
	a.Do("PATCH", "/v1/instances/"+ten.ID, ten.Admin, map[string]any{"errorReports": true})
	res := a.Do("POST", p, ten.Client, report)
	if res.Status != 201 || res.JSON(t)["id"] == "" {
		t.Fatalf("report: %d %s", res.Status, res.Body)
	}
	for _, bad := range []any{
		`{"message":"x","MESSAGE":"y"}`,
		map[string]any{"message": ""},
		map[string]any{"message": "x", "user": "someone"},
		`{"message":"x","message":"y"}`,
		map[string]any{"message": strings.Repeat("x", 70<<10)},
	} {
		if res := a.Do("POST", p, ten.Client, bad); res.Status != 400 && res.Status != 413 {
			t.Errorf("bad report %v: %d %s", bad, res.Status, res.Body)
		}
	}
	if res := a.Do("GET", p, ten.Client, nil); res.Status != 403 {
		t.Fatalf("client key lists reports: %d", res.Status)
	}
	list := a.Do("GET", p, ten.Admin, nil)
	if list.Status != 200 {
		t.Fatalf("list: %d %s", list.Status, list.Body)
	}
	body := string(list.Body)
	for _, secret := range []string{"mia.krystof@example.com", "bWlhOnRva2Vu", "SECRET123", "eyJhbGciOiJIUzI1NiJ9", "4111", "canary48plain", "uma.k", "judy"} {
		if strings.Contains(body, secret) {
			t.Errorf("stored report holds %q: %s", secret, body)
		}
	}
	if !strings.Contains(body, "relay-client.js:120:15") || !strings.Contains(body, `"addinVersion":"4.2.0"`) {
		t.Errorf("scrubbing removed useful text: %s", body)
	}
	// Stored with a lease: the key expires by itself.
	resp, err := r.Etcd.Get(context.Background(), r.DataPrefix(t, ten.ID)+"reports/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("report key: %v %v", resp, err)
	}
	ttl, err := r.Etcd.TimeToLive(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.TTL < 3500 || ttl.TTL > 3700 {
		t.Fatalf("lease TTL %d s, want about 3600 (+ a 60 s window)", ttl.TTL)
	}
	// The context is the add-in's own object: keys differing only in case
	// are two keys (field names of the report itself are exact).
	if res := a.Do("POST", p, ten.Client, `{"message":"x","context":{"a":1,"A":2}}`); res.Status != 201 {
		t.Errorf("context with keys a and A: %d %s", res.Status, res.Body)
	}
}

// TestErrorReportsExpire: a report is gone, from the API and from etcd, once
// --error-report-ttl (plus the lease window, a tenth of it) has passed.
func TestErrorReportsExpire(t *testing.T) {
	t.Parallel()
	const ttl = 10 * time.Second // the shortest the configuration accepts
	r, a := start(t, func(c *configs.Config) { c.ErrorReportTTL = ttl })
	ten := a.MustRegister(t, "https://acme.atlassian.net")
	a.Do("PATCH", "/v1/instances/"+ten.ID, ten.Admin, map[string]any{"errorReports": true})
	p := "/v1/instances/" + ten.ID + "/error-reports"
	sent := time.Now()
	if res := a.Do("POST", p, ten.Client, map[string]any{"message": "boom"}); res.Status != 201 {
		t.Fatalf("report: %d %s", res.Status, res.Body)
	}
	prefix := r.DataPrefix(t, ten.ID) + "reports/"
	stored := func() int64 {
		resp, err := r.Etcd.Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}
	if stored() != 1 || !strings.Contains(string(a.Do("GET", p, ten.Admin, nil).Body), "boom") {
		t.Fatal("the report was not stored")
	}
	// Still there just before the TTL (nothing expires early)…
	time.Sleep(ttl - time.Since(sent) - time.Second)
	if stored() != 1 {
		t.Fatalf("the report expired before its TTL (%v after it was sent)", time.Since(sent))
	}
	// …and gone by TTL + window + etcd's expiry sweep.
	deadline := sent.Add(ttl + ttl/10 + 5*time.Second)
	for stored() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the report is still in etcd %v after it was sent", time.Since(sent).Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if body := string(a.Do("GET", p, ten.Admin, nil).Body); strings.Contains(body, "boom") {
		t.Fatalf("the API still lists the expired report: %s", body)
	}
	t.Logf("expired %v after it was sent", time.Since(sent).Round(100*time.Millisecond))
}
