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
	r, a := start(t, func(c *configs.Config) { c.ErrorReportTTL = time.Hour })
	ten := a.register("https://acme.atlassian.net")
	p := "/v1/instances/" + ten.ID + "/error-reports"
	report := map[string]any{
		"message":      "upload failed for mia.krystof@example.com with Authorization: Basic bWlhOnRva2Vu",
		"stack":        "Error: 401\n    at fetch (https://addin.example.com/app.js?session=SECRET123:10:5)\n    at upload (relay-client.js:120:15)",
		"addinVersion": "4.2.0",
		"context":      map[string]any{"token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", "card": "4111 1111 1111 1111", "ok": true},
	}
	if res := a.do("POST", p, ten.Client, report); res.Status != 403 || res.errCode(t) != "error_reports_off" {
		t.Fatalf("reports off: %d %s", res.Status, res.Body)
	}
	a.do("PATCH", "/v1/instances/"+ten.ID, ten.Admin, map[string]any{"errorReports": true})
	res := a.do("POST", p, ten.Client, report)
	if res.Status != 201 || res.json(t)["id"] == "" {
		t.Fatalf("report: %d %s", res.Status, res.Body)
	}
	for _, bad := range []any{
		map[string]any{"message": ""},
		map[string]any{"message": "x", "user": "someone"},
		`{"message":"x","message":"y"}`,
		map[string]any{"message": strings.Repeat("x", 70<<10)},
	} {
		if res := a.do("POST", p, ten.Client, bad); res.Status != 400 && res.Status != 413 {
			t.Errorf("bad report %v: %d %s", bad, res.Status, res.Body)
		}
	}
	if res := a.do("GET", p, ten.Client, nil); res.Status != 403 {
		t.Fatalf("client key lists reports: %d", res.Status)
	}
	list := a.do("GET", p, ten.Admin, nil)
	if list.Status != 200 {
		t.Fatalf("list: %d %s", list.Status, list.Body)
	}
	body := string(list.Body)
	for _, secret := range []string{"mia.krystof@example.com", "bWlhOnRva2Vu", "SECRET123", "eyJhbGciOiJIUzI1NiJ9", "4111"} {
		if strings.Contains(body, secret) {
			t.Errorf("stored report holds %q: %s", secret, body)
		}
	}
	if !strings.Contains(body, "relay-client.js:120:15") || !strings.Contains(body, `"addinVersion":"4.2.0"`) {
		t.Errorf("scrubbing removed useful text: %s", body)
	}
	// Stored with a lease: the key expires by itself.
	resp, err := r.Etcd.Get(context.Background(), r.Config.EtcdPrefix+"instances/"+ten.ID+"/error-reports/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("report key: %v %v", resp, err)
	}
	ttl, err := r.Etcd.TimeToLive(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.TTL < 3500 || ttl.TTL > 3700 {
		t.Fatalf("lease TTL %d s, want about 3600 (+60)", ttl.TTL)
	}
}
