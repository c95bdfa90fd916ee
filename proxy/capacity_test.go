package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestTenantQuotas: past --tenant-max-mappings and --tenant-max-users a
// tenant's new mappings and users get 507 tenant_quota_exceeded, nothing
// written; what it holds may still be linked again or changed; other
// tenants are unaffected; an unlink makes room at once.
func TestTenantQuotas(t *testing.T) {
	t.Parallel()
	r, a := start(t, func(c *configs.Config) { c.TenantMaxMappings, c.TenantMaxUsers = 5, 3 })
	acme, other := a.MustRegister(t, "https://acme.atlassian.net"), a.MustRegister(t, "https://other.atlassian.net")
	p := "/v1/instances/" + acme.ID
	for i := range 5 {
		if res := a.Do("POST", p+"/mappings", acme.Client, relaytest.MappingBody("c", fmt.Sprintf("<%d@x>", i), "u1", "10001", "AB-1")); res.Status != 201 {
			t.Fatalf("mapping %d: %d %s", i, res.Status, res.Body)
		}
	}
	before := r.KeyCount(t)
	res := a.Do("POST", p+"/mappings", acme.Client, relaytest.MappingBody("c", "<6@x>", "u1", "10001", "AB-1"))
	if res.Status != 507 || res.ErrCode(t) != "tenant_quota_exceeded" || !strings.Contains(res.String(), "5 mappings") || !strings.Contains(res.String(), "--tenant-max-mappings") {
		t.Fatalf("the 6th mapping: %d %s", res.Status, res.Body)
	}
	if r.KeyCount(t) != before {
		t.Fatal("a refused mapping wrote keys")
	}
	// Linked again (renewed, or its issue key changed): not a new mapping.
	if res := a.Do("POST", p+"/mappings", acme.Client, relaytest.MappingBody("c", "<0@x>", "u1", "10001", "AB-2")); res.Status != 200 {
		t.Fatalf("linking a held mapping again at the quota: %d %s", res.Status, res.Body)
	}
	// Another tenant writes normally.
	if res := a.Do("POST", "/v1/instances/"+other.ID+"/mappings", other.Client, relaytest.MappingBody("c", "<6@x>", "u1", "10001", "AB-1")); res.Status != 201 {
		t.Fatalf("the other tenant: %d %s", res.Status, res.Body)
	}
	// An unlink makes room.
	if res := a.Do("DELETE", p+"/mappings?mailId=%3C1@x%3E&issueId=10001", acme.Client, nil); res.Status != 200 && res.Status != 204 {
		t.Fatalf("unlink: %d %s", res.Status, res.Body)
	}
	if res := a.Do("POST", p+"/mappings", acme.Client, relaytest.MappingBody("c", "<6@x>", "u1", "10001", "AB-1")); res.Status != 201 {
		t.Fatalf("after an unlink: %d %s", res.Status, res.Body)
	}

	user := func(id string) map[string]any { return map[string]any{"name": "U " + id, "email": id + "@example.com"} }
	for _, u := range []string{"u1", "u2", "u3"} {
		if res := a.Do("PUT", p+"/users/"+u, acme.Client, user(u)); res.Status != 201 {
			t.Fatalf("user %s: %d %s", u, res.Status, res.Body)
		}
	}
	before = r.KeyCount(t)
	if res := a.Do("PUT", p+"/users/u4", acme.Client, user("u4")); res.Status != 507 || res.ErrCode(t) != "tenant_quota_exceeded" || !strings.Contains(res.String(), "--tenant-max-users") {
		t.Fatalf("the 4th user: %d %s", res.Status, res.Body)
	}
	if r.KeyCount(t) != before {
		t.Fatal("a refused user wrote keys")
	}
	if res := a.Do("PUT", p+"/users/u2", acme.Client, map[string]any{"name": "Renamed", "email": "u2@example.com"}); res.Status != 200 {
		t.Fatalf("changing a held user at the quota: %d %s", res.Status, res.Body)
	}
	if res := a.Do("PUT", "/v1/instances/"+other.ID+"/users/u4", other.Client, user("u4")); res.Status != 201 {
		t.Fatalf("the other tenant's user: %d %s", res.Status, res.Body)
	}
	if res := a.Do("DELETE", p+"/users/u3", acme.Admin, nil); res.Status != 204 {
		t.Fatalf("erase a user: %d %s", res.Status, res.Body)
	}
	if res := a.Do("PUT", p+"/users/u4", acme.Client, user("u4")); res.Status != 201 {
		t.Fatalf("a user after an erase: %d %s", res.Status, res.Body)
	}
}

// TestMappingRetentionDaysPatch: the admin sets the tenant's retention in
// whole days, 0 to 3650; anything else is 400 and changes nothing.
func TestMappingRetentionDaysPatch(t *testing.T) {
	t.Parallel()
	_, a := start(t, nil)
	acme := a.MustRegister(t, "https://acme.atlassian.net")
	p := "/v1/instances/" + acme.ID
	if _, set := a.Do("GET", p, acme.Admin, nil).JSON(t)["mappingRetentionDays"]; set {
		t.Fatal("a new tenant shows a retention of its own")
	}
	for _, bad := range []any{-1, 3651, 1.5, "30", true, 1e12} {
		res := a.Do("PATCH", p, acme.Admin, map[string]any{"mappingRetentionDays": bad})
		if res.Status != 400 {
			t.Errorf("mappingRetentionDays %v: %d %s", bad, res.Status, res.Body)
		}
	}
	if res := a.Do("PATCH", p, acme.Client, map[string]any{"mappingRetentionDays": 30}); res.Status != 403 {
		t.Errorf("client key: %d %s", res.Status, res.Body)
	}
	for _, d := range []float64{30, 0, 3650} {
		res := a.Do("PATCH", p, acme.Admin, map[string]any{"mappingRetentionDays": d})
		if res.Status != 200 || res.JSON(t)["mappingRetentionDays"] != d {
			t.Fatalf("mappingRetentionDays %v: %d %s", d, res.Status, res.Body)
		}
		if got := a.Do("GET", p, acme.Admin, nil).JSON(t)["mappingRetentionDays"]; got != d {
			t.Fatalf("GET after setting %v: %v", d, got)
		}
	}
}

// TestStoreFull: when etcd reaches its quota (NOSPACE), every write answers
// 507 store_full and writes nothing, while reads, /readyz and attachment
// streaming go on; the room is on /metrics, with one warning in the log;
// once room is made (compact, defragment, disarm), writes resume and
// every mapping acknowledged before is there.
func TestStoreFull(t *testing.T) {
	t.Parallel()
	const quota = 16 << 20
	e, cli := etcdtest.StartWithQuota(t, quota)
	logs := &relaytest.LogBuffer{}
	fj := relaytest.StartJira(t, fakejira.Options{})
	r := relaytest.StartWith(t, relaytest.Options{Etcd: cli, Logger: logs.Logger(), RoomEvery: 50 * time.Millisecond, TenantsEvery: 100 * time.Millisecond})
	a := relaytest.NewClient(t, r.URL)
	j := &jiraSetup{relay: r, api: a, jira: fj, tenant: a.MustRegister(t, fj.URL())}
	ten := j.tenant
	p := "/v1/instances/" + ten.ID
	var acked []string
	for i := range 20 {
		mail := fmt.Sprintf("<%d@x>", i)
		if res := a.Do("POST", p+"/mappings", ten.Client, relaytest.MappingBody("c", mail, "u1", "10001", "AB-1")); res.Status != 201 {
			t.Fatalf("mapping %d: %d %s", i, res.Status, res.Body)
		}
		acked = append(acked, mail)
	}
	// Fill etcd with configuration history (each 200 KiB document is kept
	// as a revision until compaction) until it refuses.
	doc := map[string]any{"pad": strings.Repeat("x", 200<<10)}
	full := false
	for i := 0; i < 200 && !full; i++ {
		res := a.Do("PUT", p+"/config", ten.Admin, doc)
		switch {
		case res.Status == 507 && res.ErrCode(t) == "store_full":
			full = true
		case res.Status != 200 && res.Status != 201:
			t.Fatalf("config %d: %d %s", i, res.Status, res.Body)
		}
	}
	if !full {
		t.Fatal("etcd never filled")
	}
	before := r.KeyCount(t)
	for _, w := range []struct {
		method, path, key string
		body              any
	}{
		{"POST", p + "/mappings", ten.Client, relaytest.MappingBody("c", "<new@x>", "u1", "10001", "AB-1")},
		{"PUT", p + "/users/u9", ten.Client, map[string]any{"name": "U", "email": "u@example.com"}},
		{"POST", "/v1/instances", "", relaytest.RegisterBody("https://new.atlassian.net")},
		{"PATCH", p, ten.Admin, map[string]any{"addinVersion": "4.3.0"}},
	} {
		res := a.Do(w.method, w.path, w.key, w.body)
		if res.Status != 507 || res.ErrCode(t) != "store_full" {
			t.Errorf("%s %s while full: %d %s", w.method, w.path, res.Status, res.Body)
		}
	}
	if r.KeyCount(t) != before {
		t.Error("a refused write changed the store")
	}
	// Reads, readiness and streaming go on.
	if res := a.Do("GET", p+"/mappings?conversationId=c", ten.Client, nil); res.Status != 200 || len(mailsOf(t, res)) != 20 {
		t.Errorf("lookup while full: %d %s", res.Status, relaytest.Clip(res.Body))
	}
	if res := a.Do("GET", p+"/config", ten.Client, nil); res.Status != 200 {
		t.Errorf("config read while full: %d", res.Status)
	}
	if res := a.Do("GET", "/readyz", "", nil); res.Status != 200 {
		t.Errorf("readyz while full: %d %s", res.Status, res.Body)
	}
	body := bytes.Repeat([]byte("a"), 64<<10)
	if res := send(t, j.uploadReq(t, "ABC-1", "filename=a.bin", "application/octet-stream", bytes.NewReader(body), int64(len(body)))); res.Status != 200 {
		t.Errorf("upload while full: %d %s", res.Status, res.Body)
	}
	// A relay started now (a restart, a new member of the fleet) starts and
	// serves reads: the layout is current, so it writes nothing at start.
	r2 := relaytest.StartWith(t, relaytest.Options{Etcd: cli})
	if res := relaytest.NewClient(t, r2.URL).Do("GET", p+"/mappings?conversationId=c", ten.Client, nil); res.Status != 200 || len(mailsOf(t, res)) != 20 {
		t.Errorf("lookup on a relay started while full: %d %s", res.Status, relaytest.Clip(res.Body))
	}
	// The room on /metrics, and one warning.
	if !relaytest.Eventually(5*time.Second, func() bool { return metricValue(t, r, `relay_etcd_db_size_bytes{cluster="directory"}`) >= quota*8/10 }) {
		t.Errorf("relay_etcd_db_size_bytes = %v near a full quota", metricValue(t, r, `relay_etcd_db_size_bytes{cluster="directory"}`))
	}
	if q := metricValue(t, r, `relay_etcd_db_quota_bytes{cluster="directory"}`); q != quota {
		t.Errorf("relay_etcd_db_quota_bytes = %v, want %d", q, quota)
	}
	if metricValue(t, r, `relay_etcd_db_size_in_use_bytes{cluster="directory"}`) <= 0 {
		t.Error("relay_etcd_db_size_in_use_bytes missing")
	}
	if !relaytest.Eventually(5*time.Second, func() bool { return strings.Contains(logs.String(), "etcd database at 80% of its quota") }) {
		t.Error("no warning at 80% of the quota")
	}
	time.Sleep(300 * time.Millisecond) // several room reads
	if n := strings.Count(logs.String(), "etcd database at 80% of its quota"); n != 1 {
		t.Errorf("%d warnings within the hour, want 1", n)
	}

	// Make room as the runbook says: compact, defragment, disarm.
	ctx := context.Background()
	st, err := cli.Status(ctx, e.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, st.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Defragment(ctx, e.Endpoints()[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil { // every alarm
		t.Fatal(err)
	}
	if res := a.Do("POST", p+"/mappings", ten.Client, relaytest.MappingBody("c", "<new@x>", "u1", "10001", "AB-1")); res.Status != 201 {
		t.Fatalf("a write after room was made: %d %s", res.Status, res.Body)
	}
	for _, mail := range acked {
		res := a.Do("GET", p+"/mappings?mailId="+url.QueryEscape(mail), ten.Client, nil)
		if got := mailsOf(t, res); res.Status != 200 || len(got) != 1 || got[0] != mail {
			t.Errorf("acknowledged mapping %s: %d %s", mail, res.Status, res.Body)
		}
	}
}

// TestRoomMetricsShowTheLargestTenants: relay_tenant_mappings has the ten
// tenants holding the most mappings, with their counts, and no others.
func TestRoomMetricsShowTheLargestTenants(t *testing.T) {
	t.Parallel()
	r := relaytest.StartWith(t, relaytest.Options{TenantsEvery: 100 * time.Millisecond})
	a := relaytest.NewClient(t, r.URL)
	var ids []string
	for i := range 12 {
		ten := a.MustRegister(t, fmt.Sprintf("https://t%d.atlassian.net", i))
		ids = append(ids, ten.ID)
		for m := range i {
			if res := a.Do("POST", "/v1/instances/"+ten.ID+"/mappings", ten.Client, relaytest.MappingBody("c", fmt.Sprintf("<%d@x>", m), "u", "1", "AB-1")); res.Status != 201 {
				t.Fatalf("mapping: %d %s", res.Status, res.Body)
			}
		}
	}
	want := map[string]float64{}
	for i := 2; i < 12; i++ {
		want[ids[i]] = float64(i)
	}
	if !relaytest.Eventually(10*time.Second, func() bool { return sameTenantGauges(tenantGauges(t, r), want) }) {
		t.Fatalf("relay_tenant_mappings = %v, want %v", tenantGauges(t, r), want)
	}
}

// mailsOf lists the mailId of each mapping of a lookup's answer.
func mailsOf(t *testing.T, res relaytest.Answer) []string {
	t.Helper()
	var page struct {
		Mappings []struct {
			MailID string `json:"mailId"`
		} `json:"mappings"`
	}
	res.Decode(t, &page)
	var out []string
	for _, m := range page.Mappings {
		out = append(out, m.MailID)
	}
	return out
}

var tenantGauge = regexp.MustCompile(`(?m)^relay_tenant_mappings\{instance="([a-z2-7]+)"\} ([0-9.e+]+)$`)

func tenantGauges(t *testing.T, r *relaytest.Relay) map[string]float64 {
	var b bytes.Buffer
	r.Metrics.WritePrometheus(&b)
	out := map[string]float64{}
	for _, m := range tenantGauge.FindAllStringSubmatch(b.String(), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = v
	}
	return out
}

func sameTenantGauges(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func metricValue(t *testing.T, r *relaytest.Relay, name string) float64 {
	t.Helper()
	return r.Metric(name)
}
