package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// register registers body and returns the tenant (zero unless 201).
func register(t *testing.T, c *relaytest.Client, body map[string]any) (relaytest.Tenant, relaytest.Answer) {
	t.Helper()
	res := c.Do("POST", "/v1/instances", "", body)
	if res.Status != 201 {
		return relaytest.Tenant{}, res
	}
	var m struct {
		InstanceID, ClientKey, AdminKey string
		Instance                        struct{ URL string }
	}
	res.Decode(t, &m)
	return relaytest.Tenant{ID: m.InstanceID, Client: m.ClientKey, Admin: m.AdminKey, URL: m.Instance.URL}, res
}

func deployed(url, deployment string) map[string]any {
	b := relaytest.RegisterBody(url)
	b["deploymentType"] = deployment
	return b
}

func keyCount(t *testing.T, r *relaytest.Relay, prefix string) int64 {
	t.Helper()
	resp, err := r.Etcd.Get(context.Background(), r.Config.EtcdPrefix+prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// TestServerAndDataCenterTenantsKeepData: Jira Server and Data Center
// tenants, whose URLs are internal and never reachable from the relay,
// register (outside --allowed-upstreams) and use every data route: users,
// configuration, mappings, error reports, export and erase.
func TestServerAndDataCenterTenantsKeepData(t *testing.T) {
	r := relaytest.Start(t, nil)
	c := relaytest.NewClient(t, r.URL)
	for _, tc := range []struct{ deployment, url, want string }{
		{"Server", "https://jira.corp.example.com", "https://jira.corp.example.com"},
		{"DataCenter", "http://10.1.2.3:8080/jira", "http://10.1.2.3:8080/jira"},
		{"DataCenter", "HTTPS://Jira.Corp.Example.COM:443/dc/", "https://jira.corp.example.com/dc"},
	} {
		t.Run(tc.deployment+" "+tc.url, func(t *testing.T) {
			tn, res := register(t, c, deployed(tc.url, tc.deployment))
			if tn.ID == "" {
				t.Fatalf("register: %s", res)
			}
			view := res.JSON(t)["instance"].(map[string]any)
			if view["deploymentType"] != tc.deployment || view["url"] != tc.want {
				t.Fatalf("instance view: %v", view)
			}
			if got := c.Do("GET", "/v1/instances/"+tn.ID, tn.Admin, nil).JSON(t); got["deploymentType"] != tc.deployment {
				t.Fatalf("GET instance: %v", got)
			}
			base := "/v1/instances/" + tn.ID
			steps := []struct {
				method, path, key string
				body              any
				status            int
			}{
				{"PUT", base + "/users/u1", tn.Client, map[string]any{"name": "Ravi", "email": "ravi@corp.example.com"}, 201},
				{"PUT", base + "/config", tn.Admin, map[string]any{"projects": []string{"ITSM"}}, 200},
				{"GET", base + "/config", tn.Client, nil, 200},
				{"POST", base + "/mappings", tn.Client, relaytest.MappingBody("conv1", "<m1@corp>", "u1", "10001", "ITSM-1"), 201},
				{"GET", base + "/mappings?conversationId=conv1", tn.Client, nil, 200},
				{"PATCH", base, tn.Admin, map[string]any{"errorReports": true}, 200},
				{"POST", base + "/error-reports", tn.Client, map[string]any{"message": "boom"}, 201},
				{"GET", base + "/error-reports", tn.Admin, nil, 200},
				{"GET", base + "/users/u1/export", tn.Admin, nil, 200},
			}
			for _, s := range steps {
				if res := c.Do(s.method, s.path, s.key, s.body); res.Status != s.status {
					t.Fatalf("%s %s: %s, want %d", s.method, s.path, res, s.status)
				}
			}
			if res := c.Do("DELETE", base, tn.Admin, nil); res.Status != 204 {
				t.Fatalf("erase: %s", res)
			}
			if n := keyCount(t, r, "instances/"+tn.ID+"/"); n != 0 {
				t.Fatalf("%d keys left after the erase", n)
			}
			if tn2, res := register(t, c, deployed(tc.url, tc.deployment)); tn2.ID == "" {
				t.Fatalf("register again after the erase: %s", res)
			}
		})
	}
}

// TestDirectTenantsAttachmentsNeverConnect: an upload or a download for a
// Server or Data Center tenant is 409 attachments_direct, before any limit
// (the instance's budget is one request), and the relay never opens a
// connection to the tenant's Jira: a listening socket at its URL accepts
// nothing.
func TestDirectTenantsAttachmentsNeverConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepts atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	r := relaytest.Start(t, func(c *configs.Config) { c.InstanceRPS, c.InstanceBurst = 0.001, 1 })
	c := relaytest.NewClient(t, r.URL)
	for _, deployment := range []string{"Server", "DataCenter"} {
		tn, res := register(t, c, deployed("http://"+ln.Addr().String()+"/"+strings.ToLower(deployment), deployment))
		if tn.ID == "" {
			t.Fatalf("register: %s", res)
		}
		for i := range 3 {
			up := c.Do("POST", "/v1/instances/"+tn.ID+"/issues/ITSM-1/attachments?filename=a.txt", tn.Client,
				strings.NewReader("hello"), "Authorization", "Basic eDp5", "Content-Type", "text/plain")
			down := c.Do("GET", "/v1/instances/"+tn.ID+"/attachments/10001/content", tn.Client, nil, "Authorization", "Basic eDp5")
			for what, a := range map[string]relaytest.Answer{"upload": up, "download": down} {
				if a.Status != 409 || a.ErrCode(t) != "attachments_direct" {
					t.Fatalf("%s %s %d: %s", deployment, what, i, a)
				}
			}
		}
		if res := c.Do("GET", "/v1/instances/"+tn.ID+"/config", tn.Client, nil); res.Status != 200 {
			t.Fatalf("%s: the data routes still work: %s", deployment, res)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := accepts.Load(); n != 0 {
		t.Fatalf("the relay connected to a Server/Data Center Jira %d times", n)
	}
}

// TestRegistrationInputIsChecked: deployment types are Jira's spelling
// exactly; cloud ids are UUIDs, for Cloud only, and unique; Server and Data
// Center URLs still have a clean shape. Every refusal is a 400 (or 409)
// with the JSON error shape, and nothing is written.
func TestRegistrationInputIsChecked(t *testing.T) {
	r := relaytest.Start(t, nil)
	c := relaytest.NewClient(t, r.URL)
	const uuid = "3f1c2b9a-5d4e-4f6a-8b7c-9d0e1f2a3b4c"
	cloud := func(url, cloudID string) map[string]any {
		b := relaytest.RegisterBody(url)
		b["cloudId"] = cloudID
		return b
	}
	if tn, res := register(t, c, cloud("https://acme.atlassian.net", strings.ToUpper(uuid))); tn.ID == "" {
		t.Fatalf("register with a cloud id: %s", res)
	} else if v := res.JSON(t)["instance"].(map[string]any); v["cloudId"] != uuid || v["deploymentType"] != "Cloud" {
		t.Fatalf("view: %v", v)
	}
	cases := []struct {
		name   string
		body   map[string]any
		status int
		code   string
	}{
		{"lower-case type", deployed("https://jira.corp.example.com", "server"), 400, "invalid_field"},
		{"upper-case type", deployed("https://jira.corp.example.com", "DATACENTER"), 400, "invalid_field"},
		{"spaced type", deployed("https://jira.corp.example.com", "Data Center"), 400, "invalid_field"},
		{"empty type", deployed("https://jira.corp.example.com", ""), 400, "invalid_field"},
		{"number type", deployed("https://jira.corp.example.com", "1"), 400, "invalid_field"},
		{"Cloud outside the allowed upstreams", deployed("https://jira.corp.example.com", "Cloud"), 400, "invalid_url"},
		{"cloud id taken", cloud("https://other.atlassian.net", uuid), 409, "cloud_id_taken"},
		{"cloud id not a UUID", cloud("https://other.atlassian.net", "acme"), 400, "invalid_field"},
		{"cloud id on a Server", func() map[string]any {
			b := deployed("https://jira.corp.example.com", "Server")
			b["cloudId"] = uuid
			return b
		}(), 400, "invalid_field"},
		{"user info", deployed("https://admin:pw@jira.corp.example.com", "Server"), 400, "invalid_url"},
		{"dot-dot segment", deployed("https://jira.corp.example.com/a/../b", "Server"), 400, "invalid_url"},
		{"dot-semicolon segment", deployed("https://jira.corp.example.com/a/..;/b", "DataCenter"), 400, "invalid_url"},
		{"control character", deployed("https://jira.corp.example.com/\u0001", "Server"), 400, "invalid_url"},
		{"IDN that does not normalise", deployed("https://xn--a.corp.example.com", "Server"), 400, "invalid_url"},
		{"raw IDN", deployed("https://jïra.corp.example.com", "Server"), 400, "invalid_url"},
		{"port 0", deployed("https://jira.corp.example.com:0", "Server"), 400, "invalid_url"},
		{"port 65536", deployed("https://jira.corp.example.com:65536", "DataCenter"), 400, "invalid_url"},
		{"query", deployed("https://jira.corp.example.com/?a=b", "Server"), 400, "invalid_url"},
		{"ftp", deployed("ftp://jira.corp.example.com", "Server"), 400, "invalid_url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := keyCount(t, r, "")
			res := c.Do("POST", "/v1/instances", "", tc.body)
			if res.Status != tc.status || res.ErrCode(t) != tc.code {
				t.Fatalf("%s, want %d %s", res, tc.status, tc.code)
			}
			if after := keyCount(t, r, ""); after != before {
				t.Fatalf("a refused registration wrote %d keys", after-before)
			}
		})
	}
}

// TestCloudSiteRename: PATCH url renames a Cloud site; uploads answered
// after the rename go to the new URL, none is lost, the cloud id cannot
// change, and a rename onto a URL another tenant holds changes nothing.
func TestCloudSiteRename(t *testing.T) {
	oldJira := relaytest.StartJira(t, fakejira.Options{})
	newJira := relaytest.StartJira(t, fakejira.Options{})
	taken := relaytest.StartJira(t, fakejira.Options{})
	r := relaytest.Start(t, func(c *configs.Config) { c.IPRPS, c.IPBurst, c.InstanceRPS, c.InstanceBurst = 1e6, 1e6, 1e6, 1e6 })
	c := relaytest.NewClient(t, r.URL)
	const uuid = "0b6f1e3c-2a4d-4c5e-9f70-8a1b2c3d4e5f"
	body := relaytest.RegisterBody(oldJira.URL())
	body["cloudId"] = uuid
	tn, res := register(t, c, body)
	if tn.ID == "" {
		t.Fatalf("register: %s", res)
	}
	other := c.MustRegister(t, taken.URL())

	// Uploads, one after another, while the site is renamed.
	var mu sync.Mutex
	started := map[string]time.Time{}
	stop := make(chan struct{})
	done := make(chan []string)
	go func() {
		var ok []string
		bg := &relaytest.Client{Base: r.URL}
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- ok
				return
			default:
			}
			name := fmt.Sprintf("f%04d.txt", i)
			mu.Lock()
			started[name] = time.Now()
			mu.Unlock()
			// One issue per upload: Jira's per-issue write limit is not
			// what this test is about.
			a := bg.Do("POST", fmt.Sprintf("/v1/instances/%s/issues/ITSM-%d/attachments?filename=%s", tn.ID, i+1, name), tn.Client,
				strings.NewReader("content "+name), "Authorization", "Basic eDp5", "Content-Type", "text/plain")
			if a.Err == nil && a.Status == 200 {
				ok = append(ok, name)
			}
		}
	}()
	time.Sleep(150 * time.Millisecond)
	res = c.Do("PATCH", "/v1/instances/"+tn.ID, tn.Admin, map[string]any{"url": newJira.URL()})
	renamed := time.Now()
	if res.Status != 200 || res.JSON(t)["url"] != newJira.URL() {
		t.Fatalf("rename: %s", res)
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	ok := <-done

	at := map[string]string{}
	for _, u := range oldJira.Uploads() {
		at[u.Filename] = "old"
	}
	for _, u := range newJira.Uploads() {
		at[u.Filename] = "new"
	}
	var after int
	for _, name := range ok {
		switch {
		case at[name] == "":
			t.Errorf("upload %s was answered 200 but reached neither Jira", name)
		case started[name].After(renamed) && at[name] != "new":
			t.Errorf("upload %s started after the rename was answered but went to the old URL", name)
		}
		if started[name].After(renamed) {
			after++
		}
	}
	if after == 0 || len(newJira.Uploads()) == 0 {
		t.Fatalf("no upload after the rename (%d answered 200)", len(ok))
	}
	// The old URL's connections are dropped (idle ones at once, one still
	// busy at the rename within the 5 s sweep): the relay holds none to it.
	if !relaytest.Eventually(15*time.Second, func() bool { return oldJira.OpenConnections() == 0 }) {
		t.Errorf("the relay still holds %d connections to the old URL", oldJira.OpenConnections())
	}

	// A cloud id never changes; giving it as it is, is fine.
	if res := c.Do("PATCH", "/v1/instances/"+tn.ID, tn.Admin, map[string]any{"cloudId": "11111111-2222-4333-8444-555555555555"}); res.Status != 400 || res.ErrCode(t) != "invalid_field" {
		t.Fatalf("changing the cloud id: %s", res)
	}
	if res := c.Do("PATCH", "/v1/instances/"+tn.ID, tn.Admin, map[string]any{"cloudId": uuid}); res.Status != 200 {
		t.Fatalf("the same cloud id: %s", res)
	}
	// Onto a URL another tenant holds: 409, nothing changed.
	before := c.Do("GET", "/v1/instances/"+tn.ID, tn.Admin, nil)
	res = c.Do("PATCH", "/v1/instances/"+tn.ID, tn.Admin, map[string]any{"url": taken.URL(), "jiraVersion": "2.0"})
	if res.Status != 409 || res.ErrCode(t) != "url_taken" {
		t.Fatalf("rename onto a taken URL: %s", res)
	}
	if now := c.Do("GET", "/v1/instances/"+tn.ID, tn.Admin, nil); string(now.Body) != string(before.Body) {
		t.Fatalf("the refused rename changed the record: %s, was %s", now.Body, before.Body)
	}
	if res := c.Do("GET", "/v1/instances/"+other.ID, other.Admin, nil); res.JSON(t)["url"] != taken.URL() {
		t.Fatalf("the other tenant: %s", res)
	}
	// The old URL is free again; the new one is taken.
	if tn2, res := register(t, c, relaytest.RegisterBody(oldJira.URL())); tn2.ID == "" {
		t.Fatalf("registering the old URL: %s", res)
	}
	if res := c.Do("POST", "/v1/instances", "", relaytest.RegisterBody(newJira.URL())); res.Status != 409 {
		t.Fatalf("registering the new URL: %s", res)
	}
	// A Cloud rename must pass the policy.
	if res := c.Do("PATCH", "/v1/instances/"+tn.ID, tn.Admin, map[string]any{"url": "https://jira.corp.example.com"}); res.Status != 400 || res.ErrCode(t) != "invalid_url" {
		t.Fatalf("rename of a Cloud site outside the policy: %s", res)
	}
}

// TestRecordsWithoutDeploymentTypeAreCloud: an instance record written
// before deploymentType existed reads as a Cloud site, and its attachments
// are relayed.
func TestRecordsWithoutDeploymentTypeAreCloud(t *testing.T) {
	jira := relaytest.StartJira(t, fakejira.Options{})
	r := relaytest.Start(t, nil)
	c := relaytest.NewClient(t, r.URL)
	tn := c.MustRegister(t, jira.URL())
	key := r.Config.EtcdPrefix + "instances/" + tn.ID + "/instance"
	got, err := r.Etcd.Get(context.Background(), key)
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("record: %v", err)
	}
	var rec map[string]any
	if err := json.Unmarshal(got.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	delete(rec, "deploymentType")
	old, _ := json.Marshal(rec)
	if _, err := r.Etcd.Put(context.Background(), key, string(old)); err != nil {
		t.Fatal(err)
	}
	ok := relaytest.Eventually(5*time.Second, func() bool {
		res := c.Do("GET", "/v1/instances/"+tn.ID, tn.Admin, nil)
		return res.Status == 200 && res.JSON(t)["deploymentType"] == "Cloud" && res.JSON(t)["updatedAt"] != nil
	})
	if !ok {
		t.Fatal("an old record does not read as Cloud")
	}
	res := c.Do("POST", "/v1/instances/"+tn.ID+"/issues/ITSM-1/attachments?filename=a.txt", tn.Client,
		strings.NewReader("hello"), "Authorization", "Basic eDp5", "Content-Type", "text/plain")
	if res.Status != 200 {
		t.Fatalf("upload for an old record: %s", res)
	}
}

// TestCloudIDFromTheURL: an api.atlassian.com/ex/jira/<cloudId> URL names
// its site's cloud id: a second spelling of it (another case) is the same
// site (409), a cloudId given beside it must agree, and a rename cannot
// move the tenant to a URL naming another cloud id.
func TestCloudIDFromTheURL(t *testing.T) {
	t.Parallel()
	r := relaytest.Start(t, nil)
	c := relaytest.NewClient(t, r.URL)
	const cid = "0b6f1e3c-2a4d-4c5e-9f70-8a1b2c3d4e5f"
	tn, res := register(t, c, relaytest.RegisterBody("https://api.atlassian.com/ex/jira/"+cid))
	if tn.ID == "" || res.JSON(t)["instance"].(map[string]any)["cloudId"] != cid {
		t.Fatalf("register by cloud URL: %s", res)
	}
	if res := c.Do("POST", "/v1/instances", "", relaytest.RegisterBody("https://api.atlassian.com/ex/jira/"+strings.ToUpper(cid))); res.Status != 409 || res.ErrCode(t) != "cloud_id_taken" {
		t.Fatalf("the same site in upper case: %s", res)
	}
	other := relaytest.RegisterBody("https://api.atlassian.com/ex/jira/11111111-2222-4333-8444-555555555555")
	other["cloudId"] = cid
	if res := c.Do("POST", "/v1/instances", "", other); res.Status != 400 || res.ErrCode(t) != "invalid_field" {
		t.Fatalf("a cloudId other than the URL's: %s", res)
	}
	if res := c.Do("PATCH", "/v1/instances/"+tn.ID, tn.Admin, map[string]any{"url": "https://api.atlassian.com/ex/jira/11111111-2222-4333-8444-555555555555"}); res.Status != 400 || res.ErrCode(t) != "invalid_url" {
		t.Fatalf("a rename onto another cloud id: %s", res)
	}
	if res := c.Do("PATCH", "/v1/instances/"+tn.ID, tn.Admin, map[string]any{"url": "https://acme-eu.atlassian.net"}); res.Status != 200 {
		t.Fatalf("a rename to the site's own name: %s", res)
	}
}
