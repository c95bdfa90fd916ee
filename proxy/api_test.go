package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// start runs a relay (relaytest.Start) and a client of its API that fails
// t on a transport error.
func start(t *testing.T, mutate func(*configs.Config)) (*relaytest.Relay, *relaytest.Client) {
	t.Helper()
	r := relaytest.Start(t, mutate)
	return r, relaytest.NewClient(t, r.URL)
}

func TestRegisterInstance(t *testing.T) {
	t.Parallel()
	r, a := start(t, func(c *configs.Config) {
		c.AllowHTTPUpstream = false
		c.AllowedUpstreams = []string{"*.atlassian.net", "api.atlassian.com"}
	})
	res := a.Do("POST", "/v1/instances", "", relaytest.RegisterBody("HTTPS://Acme.Atlassian.NET/"))
	if res.Status != 201 {
		t.Fatalf("register: %d %s", res.Status, res.Body)
	}
	m := res.JSON(t)
	inst := m["instance"].(map[string]any)
	if inst["url"] != "https://acme.atlassian.net" || inst["id"] != m["instanceId"] || inst["jiraVersion"] != "1001.0.0-SNAPSHOT" {
		t.Fatalf("instance not normalised or incomplete: %v", inst)
	}
	for _, k := range []string{"clientKeySha256", "adminKeySha256"} {
		if _, ok := inst[k]; ok {
			t.Fatalf("the answer shows %s", k)
		}
	}
	if ck, ak := m["clientKey"].(string), m["adminKey"].(string); len(ck) < 40 || len(ak) < 40 || ck == ak {
		t.Fatalf("keys: %q %q", ck, ak)
	}
	if res := a.Do("POST", "/v1/instances", "", relaytest.RegisterBody("https://acme.atlassian.net")); res.Status != 409 || res.ErrCode(t) != "conflict" {
		t.Fatalf("same URL again: %d %s", res.Status, res.Body)
	}
	if res := a.Do("POST", "/v1/instances", "", relaytest.RegisterBody("https://api.atlassian.com/ex/jira/3a1b-77/")); res.Status != 201 {
		t.Fatalf("api.atlassian.com with a path: %d %s", res.Status, res.Body)
	} else if u := res.JSON(t)["instance"].(map[string]any)["url"]; u != "https://api.atlassian.com/ex/jira/3a1b-77" {
		t.Fatalf("path url normalised to %v", u)
	}

	before := r.KeyCount(t)
	big := relaytest.RegisterBody("https://big.atlassian.net")
	big["jiraVersion"] = strings.Repeat("1", 20000)
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	for _, tc := range []struct {
		name   string
		body   any
		ctype  string
		status int
		code   string
	}{
		{"http url", relaytest.RegisterBody("http://x.atlassian.net"), "", 400, "invalid_url"},
		{"host not allowed", relaytest.RegisterBody("https://evil.example.com"), "", 400, "invalid_url"},
		{"bare suffix", relaytest.RegisterBody("https://atlassian.net"), "", 400, "invalid_url"},
		{"suffix trick", relaytest.RegisterBody("https://evilatlassian.net"), "", 400, "invalid_url"},
		{"userinfo", relaytest.RegisterBody("https://u:p@x.atlassian.net"), "", 400, "invalid_url"},
		{"query", relaytest.RegisterBody("https://x.atlassian.net/?a=1"), "", 400, "invalid_url"},
		{"fragment", relaytest.RegisterBody("https://x.atlassian.net/#f"), "", 400, "invalid_url"},
		{"dot segments", relaytest.RegisterBody("https://api.atlassian.com/ex/../../x"), "", 400, "invalid_url"},
		{"not a url", relaytest.RegisterBody("acme"), "", 400, "invalid_url"},
		{"empty url", relaytest.RegisterBody(""), "", 400, "invalid_url"},
		{"ftp", relaytest.RegisterBody("ftp://x.atlassian.net"), "", 400, "invalid_url"},
		{"unknown field", `{"url":"https://y.atlassian.net","jiraVersion":"1","addinVersion":"1","token":"secret"}`, "", 400, "unknown_field"},
		{"unknown nested field", `{"url":"https://y.atlassian.net","jiraVersion":"1","addinVersion":"1","license":{"key":"k","expiresAt":"2027-01-01T00:00:00Z","seats":1,"owner":"x"}}`, "", 400, "unknown_field"},
		{"wrong type", `{"url":"https://y.atlassian.net","jiraVersion":1,"addinVersion":"1"}`, "", 400, "invalid_type"},
		{"bad time", `{"url":"https://y.atlassian.net","jiraVersion":"1","addinVersion":"1","license":{"key":"k","expiresAt":"tomorrow","seats":1}}`, "", 400, "invalid_json"},
		{"incomplete license", `{"url":"https://y.atlassian.net","jiraVersion":"1","addinVersion":"1","license":{"key":"k"}}`, "", 400, "invalid_field"},
		{"duplicate key", `{"url":"https://y.atlassian.net","url":"https://z.atlassian.net","jiraVersion":"1","addinVersion":"1"}`, "", 400, "duplicate_key"},
		{"malformed", `{"url":`, "", 400, "invalid_json"},
		{"trailing data", `{"url":"https://y.atlassian.net","jiraVersion":"1","addinVersion":"1"} {}`, "", 400, "invalid_json"},
		{"empty body", ``, "", 400, "invalid_json"},
		{"array", `[]`, "", 400, "invalid_type"},
		{"bad utf-8", "{\"url\":\"https://y.atlassian.net\",\"jiraVersion\":\"\xff\",\"addinVersion\":\"1\"}", "", 400, "invalid_json"},
		{"deep nesting", deep, "", 400, "invalid_json"},
		{"missing versions", `{"url":"https://y.atlassian.net"}`, "", 400, "invalid_field"},
		{"too large", big, "", 413, "body_too_large"},
		{"text/plain", `{}`, "text/plain", 415, "unsupported_media_type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := []string{}
			if tc.ctype != "" {
				hdr = []string{"Content-Type", tc.ctype}
			}
			res := a.Do("POST", "/v1/instances", "", tc.body, hdr...)
			if res.Status != tc.status || res.ErrCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s", res.Status, res.Body, tc.status, tc.code)
			}
		})
	}
	if after := r.KeyCount(t); after != before {
		t.Fatalf("refused registrations wrote %d keys", after-before)
	}
}

func TestRegistrationToken(t *testing.T) {
	t.Parallel()
	_, a := start(t, func(c *configs.Config) { c.RegistrationToken = "s3cret-token" })
	if res := a.Do("POST", "/v1/instances", "", relaytest.RegisterBody("https://a.atlassian.net")); res.Status != 401 || res.ErrCode(t) != "unauthorized" {
		t.Fatalf("without token: %d %s", res.Status, res.Body)
	}
	if res := a.Do("POST", "/v1/instances", "", relaytest.RegisterBody("https://a.atlassian.net"), "X-Registration-Token", "wrong"); res.Status != 401 {
		t.Fatalf("wrong token: %d", res.Status)
	}
	if res := a.Do("POST", "/v1/instances", "", relaytest.RegisterBody("https://a.atlassian.net"), "X-Registration-Token", "s3cret-token"); res.Status != 201 {
		t.Fatalf("with token: %d %s", res.Status, res.Body)
	}
}

func TestKeysAndRoles(t *testing.T) {
	t.Parallel()
	_, a := start(t, nil)
	acme := a.MustRegister(t, "https://acme.atlassian.net")
	other := a.MustRegister(t, "https://other.atlassian.net")
	p := "/v1/instances/" + acme.ID
	for _, tc := range []struct {
		name, method, path, key string
		body                    any
		status                  int
		code                    string
	}{
		{"no key", "GET", p + "/config", "", nil, 401, "unauthorized"},
		{"wrong key", "GET", p + "/config", "jrc_wrong", nil, 401, "unauthorized"},
		{"other instance's client key", "GET", p + "/config", other.Client, nil, 401, "unauthorized"},
		{"other instance's admin key", "GET", p, other.Admin, nil, 401, "unauthorized"},
		{"client key on admin route", "GET", p, acme.Client, nil, 403, "forbidden"},
		{"client key deletes instance", "DELETE", p, acme.Client, nil, 403, "forbidden"},
		{"client key rotates", "POST", p + "/keys/rotate", acme.Client, nil, 403, "forbidden"},
		{"client key puts config", "PUT", p + "/config", acme.Client, map[string]any{}, 403, "forbidden"},
		{"client key erases user", "DELETE", p + "/users/u1", acme.Client, nil, 403, "forbidden"},
		{"client key exports user", "GET", p + "/users/u1/export", acme.Client, nil, 403, "forbidden"},
		{"unknown instance", "GET", "/v1/instances/aaaaaaaaaaaaaaaaaaaaaaaaaa/config", acme.Client, nil, 404, "instance_not_found"},
		{"malformed instance id", "GET", "/v1/instances/..%2F..%2Fetc/config", acme.Client, nil, 404, "instance_not_found"},
		{"unknown route", "GET", "/v1/nothing", "", nil, 404, "route_not_found"},
		{"trailing slash", "GET", p + "/config/", acme.Client, nil, 404, "route_not_found"},
		{"wrong method", "PATCH", p + "/config", acme.Admin, nil, 405, "method_not_allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := a.Do(tc.method, tc.path, tc.key, tc.body)
			if res.Status != tc.status || res.ErrCode(t) != tc.code {
				t.Fatalf("got %d %s, want %d %s", res.Status, res.Body, tc.status, tc.code)
			}
		})
	}
	// The admin key is accepted wherever the client key is.
	if res := a.Do("GET", p+"/config", acme.Admin, nil); res.Status != 200 {
		t.Fatalf("admin key on a client route: %d", res.Status)
	}
}

func TestInstanceAdministration(t *testing.T) {
	t.Parallel()
	r, a := start(t, nil)
	acme := a.MustRegister(t, "https://acme.atlassian.net")
	p := "/v1/instances/" + acme.ID

	res := a.Do("PATCH", p, acme.Admin, map[string]any{"jiraVersion": "1001.0.1", "errorReports": true,
		"license": map[string]any{"key": "LIC-2", "expiresAt": "2028-01-01T00:00:00Z", "seats": 500}})
	if res.Status != 200 {
		t.Fatalf("patch: %d %s", res.Status, res.Body)
	}
	got := a.Do("GET", p, acme.Admin, nil).JSON(t)
	if got["jiraVersion"] != "1001.0.1" || got["addinVersion"] != "4.2.0" || got["errorReports"] != true ||
		got["license"].(map[string]any)["seats"] != float64(500) {
		t.Fatalf("after patch: %v", got)
	}
	before := r.KeyCount(t)
	for _, body := range []string{`{"url":"https://evil.example.com"}`, `{"errorReports":"yes"}`, `{"jiraVersion":""}`, `{"id":"x"}`} {
		if res := a.Do("PATCH", p, acme.Admin, body); res.Status != 400 {
			t.Fatalf("patch %s: %d %s", body, res.Status, res.Body)
		}
	}
	if a.Do("GET", p, acme.Admin, nil).JSON(t)["jiraVersion"] != "1001.0.1" || r.KeyCount(t) != before {
		t.Fatal("a refused patch changed the instance")
	}

	res = a.Do("POST", p+"/keys/rotate", acme.Admin, nil)
	newKey, _ := res.JSON(t)["clientKey"].(string)
	if res.Status != 200 || newKey == "" || newKey == acme.Client {
		t.Fatalf("rotate: %d %s", res.Status, res.Body)
	}
	if res := a.Do("GET", p+"/config", acme.Client, nil); res.Status != 401 {
		t.Fatalf("old client key after rotation: %d", res.Status)
	}
	if res := a.Do("GET", p+"/config", newKey, nil); res.Status != 200 {
		t.Fatalf("new client key: %d", res.Status)
	}

	a.Do("PUT", p+"/users/u1", newKey, map[string]any{"name": "Mia", "email": "mia@example.com"})
	if res := a.Do("DELETE", p, acme.Admin, nil); res.Status != 204 {
		t.Fatalf("delete: %d %s", res.Status, res.Body)
	}
	if res := a.Do("GET", p, acme.Admin, nil); res.Status != 404 || res.ErrCode(t) != "instance_not_found" {
		t.Fatalf("after delete: %d %s", res.Status, res.Body)
	}
	if n := r.KeyCount(t); n != 0 {
		t.Fatalf("%d keys remain after deleting the only instance", n)
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	r, a := start(t, nil)
	acme := a.MustRegister(t, "https://acme.atlassian.net")
	p := "/v1/instances/" + acme.ID + "/users/"

	if res := a.Do("PUT", p+"1220", acme.Client, map[string]any{"name": "Mia Krystof", "email": "mia@example.com"}); res.Status != 201 {
		t.Fatalf("create: %d %s", res.Status, res.Body)
	}
	if res := a.Do("PUT", p+"1220", acme.Client, map[string]any{"name": "Mia K.", "email": "mia@example.com"}); res.Status != 200 {
		t.Fatalf("replace: %d %s", res.Status, res.Body)
	}
	u := a.Do("GET", p+"1220", acme.Client, nil).JSON(t)
	if u["userId"] != "1220" || u["name"] != "Mia K." || u["email"] != "mia@example.com" {
		t.Fatalf("get: %v", u)
	}
	// Ids are opaque: an encoded slash is part of the id, not a path step.
	if res := a.Do("PUT", p+"a%2Fb%2B%3D", acme.Client, map[string]any{"name": "S", "email": "s@example.com"}); res.Status != 201 {
		t.Fatalf("id with / + =: %d %s", res.Status, res.Body)
	}
	if res := a.Do("GET", p+"a%2Fb%2B%3D", acme.Client, nil); res.JSON(t)["userId"] != "a/b+=" {
		t.Fatalf("id with / + = read back as %s", res.Body)
	}
	if res := a.Do("GET", p+"nobody", acme.Client, nil); res.Status != 404 || res.ErrCode(t) != "user_not_found" {
		t.Fatalf("unknown user: %d %s", res.Status, res.Body)
	}
	before := r.KeyCount(t)
	for _, tc := range []struct {
		path string
		body any
		code string
	}{
		{p + "a%0D%0Ab", map[string]any{"name": "X", "email": "x@example.com"}, "invalid_id"},
		{p + "%2E%2E", map[string]any{"name": "X", "email": "x@example.com"}, "invalid_id"},
		{p + "%2e%2e", map[string]any{"name": "X", "email": "x@example.com"}, "invalid_id"},
		{p + strings.Repeat("u", 1025), map[string]any{"name": "X", "email": "x@example.com"}, "invalid_id"},
		{p + "x", map[string]any{"name": "", "email": "x@example.com"}, "invalid_field"},
		{p + "x", map[string]any{"name": "X", "email": "nope"}, "invalid_field"},
		{p + "x", map[string]any{"name": "X", "email": "x@example.com", "phone": "1"}, "unknown_field"},
		{p + "x", map[string]any{"name": 5, "email": "x@example.com"}, "invalid_type"},
	} {
		if res := a.Do("PUT", tc.path, acme.Client, tc.body); res.Status != 400 || res.ErrCode(t) != tc.code {
			t.Errorf("PUT %s %v: %d %s, want 400 %s", tc.path, tc.body, res.Status, res.Body, tc.code)
		}
	}
	if r.KeyCount(t) != before {
		t.Fatal("refused user writes wrote keys")
	}

	// Erase: the user and every mapping of the user go; export shows it first.
	for i := range 3 {
		a.Do("POST", "/v1/instances/"+acme.ID+"/mappings", acme.Client, relaytest.MappingBody("conv", fmt.Sprintf("<m%d@x>", i), "1220", fmt.Sprint(10+i), fmt.Sprintf("IT-%d", i)))
	}
	exp := a.Do("GET", p+"1220/export", acme.Admin, nil)
	if exp.Status != 200 || len(exp.JSON(t)["mappings"].([]any)) != 3 || exp.JSON(t)["user"].(map[string]any)["email"] != "mia@example.com" {
		t.Fatalf("export: %d %s", exp.Status, exp.Body)
	}
	if res := a.Do("DELETE", p+"1220", acme.Admin, nil); res.Status != 204 {
		t.Fatalf("erase: %d %s", res.Status, res.Body)
	}
	if res := a.Do("GET", p+"1220/export", acme.Admin, nil); res.Status != 404 {
		t.Fatalf("export after erase: %d %s", res.Status, res.Body)
	}
	if res := a.Do("GET", "/v1/instances/"+acme.ID+"/mappings?conversationId=conv", acme.Client, nil); len(res.JSON(t)["mappings"].([]any)) != 0 {
		t.Fatalf("mappings of the erased user remain: %s", res.Body)
	}
	if res := a.Do("DELETE", p+"1220", acme.Admin, nil); res.Status != 404 {
		t.Fatalf("erase again: %d", res.Status)
	}
}

func TestConfigETags(t *testing.T) {
	t.Parallel()
	r, a := start(t, nil)
	acme := a.MustRegister(t, "https://acme.atlassian.net")
	p := "/v1/instances/" + acme.ID + "/config"

	res := a.Do("GET", p, acme.Client, nil)
	if res.Status != 200 || string(res.Body) != "{}" || res.Header.Get("ETag") != `"0"` {
		t.Fatalf("fresh config: %d %q etag %q", res.Status, res.Body, res.Header.Get("ETag"))
	}
	doc := `{"templates":[{"name":"Bug","fields":{"priority":"High"}}],"settings":{"autoLink":true}}`
	res = a.Do("PUT", p, acme.Admin, doc, "If-Match", `"0"`)
	etag := res.Header.Get("ETag")
	if res.Status != 200 || etag == "" || etag == `"0"` {
		t.Fatalf("put: %d %s etag %q", res.Status, res.Body, etag)
	}
	res = a.Do("GET", p, acme.Client, nil)
	if string(res.Body) != doc || res.Header.Get("ETag") != etag {
		t.Fatalf("get after put: %q %q", res.Body, res.Header.Get("ETag"))
	}
	if res := a.Do("GET", p, acme.Client, nil, "If-None-Match", etag); res.Status != 304 || len(res.Body) != 0 || res.Header.Get("ETag") != etag {
		t.Fatalf("If-None-Match current: %d %q", res.Status, res.Body)
	}
	if res := a.Do("GET", p, acme.Client, nil, "If-None-Match", `"1", W/`+etag); res.Status != 304 {
		t.Fatalf("If-None-Match list with weak match: %d", res.Status)
	}
	if res := a.Do("GET", p, acme.Client, nil, "If-None-Match", `"0"`); res.Status != 200 {
		t.Fatalf("If-None-Match stale: %d", res.Status)
	}
	before := r.KeyCount(t)
	if res := a.Do("PUT", p, acme.Admin, `{"x":1}`, "If-Match", `"0"`); res.Status != 412 || res.ErrCode(t) != "precondition_failed" {
		t.Fatalf("stale If-Match: %d %s", res.Status, res.Body)
	}
	if res := a.Do("PUT", p, acme.Admin, `{"x":1}`, "If-Match", "W/"+etag); res.Status != 412 {
		t.Fatalf("weak If-Match: %d %s", res.Status, res.Body)
	}
	if res := a.Do("PUT", p, acme.Admin, `{"x":1}`, "If-Match", "garbage"); res.Status != 400 {
		t.Fatalf("malformed If-Match: %d %s", res.Status, res.Body)
	}
	// If-None-Match on PUT: "*" creates only; a list refuses the current ETag.
	if res := a.Do("PUT", p, acme.Admin, `{"x":1}`, "If-None-Match", "*"); res.Status != 412 || res.ErrCode(t) != "precondition_failed" {
		t.Fatalf("If-None-Match * over a document: %d %s", res.Status, res.Body)
	}
	if res := a.Do("PUT", p, acme.Admin, `{"x":1}`, "If-None-Match", `"1", `+etag); res.Status != 412 {
		t.Fatalf("If-None-Match naming the current ETag: %d %s", res.Status, res.Body)
	}
	if res := a.Do("PUT", p, acme.Admin, `{"x":1}`, "If-None-Match", "garbage"); res.Status != 400 {
		t.Fatalf("malformed If-None-Match: %d %s", res.Status, res.Body)
	}
	for _, body := range []string{`[1,2]`, `"s"`, `{"a":1,"a":2}`, `{"a":`, strings.Repeat("[", 50) + strings.Repeat("]", 50)} {
		if res := a.Do("PUT", p, acme.Admin, body); res.Status != 400 {
			t.Fatalf("put %q: %d %s", body, res.Status, res.Body)
		}
	}
	huge := `{"blob":"` + strings.Repeat("x", 256<<10) + `"}`
	if res := a.Do("PUT", p, acme.Admin, huge); res.Status != 413 {
		t.Fatalf("257 KiB config: %d", res.Status)
	}
	if string(a.Do("GET", p, acme.Client, nil).Body) != doc {
		t.Fatal("a refused PUT changed the document")
	}
	if r.KeyCount(t) != before {
		t.Fatal("refused PUTs wrote keys")
	}
	if res := a.Do("PUT", p, acme.Admin, `{"x": 1}`, "If-Match", "*"); res.Status != 200 || string(res.Body) != `{"x":1}` {
		t.Fatalf("If-Match *: %d %s", res.Status, res.Body)
	}
	exact := `{"blob":"` + strings.Repeat("x", 256<<10-12) + `"}`
	if res := a.Do("PUT", p, acme.Admin, exact); res.Status != 200 {
		t.Fatalf("config of exactly 256 KiB: %d %s", res.Status, res.Body)
	}

	// If-None-Match: * creates the first document; a list without the
	// current ETag lets the PUT through.
	fresh := a.MustRegister(t, "https://fresh.atlassian.net")
	fp := "/v1/instances/" + fresh.ID + "/config"
	if res := a.Do("PUT", fp, fresh.Admin, `{"y":1}`, "If-None-Match", "*"); res.Status != 200 || string(res.Body) != `{"y":1}` {
		t.Fatalf("If-None-Match * with no document: %d %s", res.Status, res.Body)
	}
	if res := a.Do("PUT", fp, fresh.Admin, `{"y":2}`, "If-None-Match", `"0"`); res.Status != 200 || string(res.Body) != `{"y":2}` {
		t.Fatalf("If-None-Match with a stale ETag: %d %s", res.Status, res.Body)
	}
}

func TestMappings(t *testing.T) {
	t.Parallel()
	r, a := start(t, nil)
	acme := a.MustRegister(t, "https://acme.atlassian.net")
	p := "/v1/instances/" + acme.ID + "/mappings"
	conv := "AAQkADQ2ZWI1NWUzLWFjNTgtNDhkNi05MTRlLTE0ZjkzYjhiZmIxYgAQACGaySOzKTNItlx6EtoJ8kc="
	mail := "<AM4PR0501MB272391106D5F7A7805F586AD9CC40@AM4PR0501MB2723.eurprd05.prod.outlook.com>"

	res := a.Do("POST", p, acme.Client, relaytest.MappingBody(conv, mail, "1220", "10710", "ITSM-34"))
	if res.Status != 201 {
		t.Fatalf("link: %d %s", res.Status, res.Body)
	}
	if res := a.Do("POST", p, acme.Client, relaytest.MappingBody(conv, mail, "1220", "10710", "ITSM-34")); res.Status != 200 {
		t.Fatalf("same link again: %d %s", res.Status, res.Body)
	}
	for i := range 12 {
		a.Do("POST", p, acme.Client, relaytest.MappingBody(conv, fmt.Sprintf("<r%d@x>", i), []string{"1220", "77"}[i%2], fmt.Sprint(20000+i), fmt.Sprintf("ITSM-%d", 100+i)))
	}
	q := func(query string) []any {
		t.Helper()
		var all []any
		cursor := ""
		for {
			path := p + "?" + query
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			res := a.Do("GET", path, acme.Client, nil)
			if res.Status != 200 {
				t.Fatalf("GET %s: %d %s", path, res.Status, res.Body)
			}
			m := res.JSON(t)
			all = append(all, m["mappings"].([]any)...)
			if cursor = m["next"].(string); cursor == "" {
				return all
			}
		}
	}
	esc := func(s string) string {
		return strings.NewReplacer("+", "%2B", "/", "%2F", "=", "%3D", "<", "%3C", ">", "%3E", "@", "%40").Replace(s)
	}
	if n := len(q("conversationId=" + esc(conv) + "&limit=5")); n != 13 {
		t.Fatalf("by conversation in pages of 5: %d, want 13", n)
	}
	if n := len(q("conversationId=" + esc(conv) + "&userId=77")); n != 6 {
		t.Fatalf("by conversation of user 77: %d, want 6", n)
	}
	got := q("mailId=" + esc(mail))
	if len(got) != 1 {
		t.Fatalf("by mail: %v", got)
	}
	m := got[0].(map[string]any)
	if m["conversationId"] != conv || m["mailId"] != mail || m["userId"] != "1220" || m["jira"].(map[string]any)["key"] != "ITSM-34" {
		t.Fatalf("mapping read back: %v", m)
	}
	if n := len(q("issueId=10710")); n != 1 {
		t.Fatalf("by issue id: %d", n)
	}
	if n := len(q("issueKey=ITSM-34")); n != 1 {
		t.Fatalf("by issue key: %d", n)
	}

	before := r.KeyCount(t)
	extra := relaytest.MappingBody(conv, mail, "1220", "10710", "ITSM-34")
	extra["jira"].(map[string]any)["summary"] = "an e-mail subject"
	withBody := relaytest.MappingBody(conv, mail, "1220", "10710", "ITSM-34")
	withBody["body"] = "Dear customer"
	for _, tc := range []struct {
		body any
		code string
	}{
		{extra, "unknown_field"},
		{withBody, "unknown_field"},
		{relaytest.MappingBody(conv, "", "1220", "10710", "ITSM-34"), "invalid_field"},
		{relaytest.MappingBody(conv, mail, "1220", "ITSM-34", "ITSM-34"), "invalid_field"},
		{relaytest.MappingBody(conv, mail, "1220", "10710", "itsm-34"), "invalid_field"},
		{relaytest.MappingBody(conv, mail, "", "10710", "ITSM-34"), "invalid_field"},
		{relaytest.MappingBody("a\x01b", mail, "1220", "10710", "ITSM-34"), "invalid_field"},
		{relaytest.MappingBody(strings.Repeat("c", 1025), mail, "1220", "10710", "ITSM-34"), "invalid_field"},
		{`{"mailId":"m","userId":"u","jira":{"id":10710,"key":"IT-1"}}`, "invalid_type"},
	} {
		if res := a.Do("POST", p, acme.Client, tc.body); res.Status != 400 || res.ErrCode(t) != tc.code {
			t.Errorf("POST %v: %d %s, want 400 %s", tc.body, res.Status, res.Body, tc.code)
		}
	}
	if r.KeyCount(t) != before {
		t.Fatal("refused links wrote keys")
	}
	for _, query := range []string{
		"", "conversationId=a&mailId=b", "subject=x", "conversationId=a&conversationId=b",
		"conversationId=a&limit=0", "conversationId=a&limit=1001", "conversationId=a&limit=x",
		"issueId=ITSM-1", "issueKey=10710", "conversationId=a&cursor=%21%21", "conversationId=", "conversationId=a&userId=",
	} {
		if res := a.Do("GET", p+"?"+query, acme.Client, nil); res.Status != 400 {
			t.Errorf("GET ?%s: %d %s, want 400", query, res.Status, res.Body)
		}
	}

	if res := a.Do("DELETE", p+"?mailId="+esc(mail)+"&issueId=10710", acme.Client, nil); res.Status != 200 || res.JSON(t)["deleted"] != float64(1) {
		t.Fatalf("unlink: %d %s", res.Status, res.Body)
	}
	if n := len(q("mailId=" + esc(mail))); n != 0 {
		t.Fatalf("unlinked mapping still found: %d", n)
	}
	if res := a.Do("DELETE", p+"?mailId="+esc(mail)+"&issueId=10710", acme.Client, nil); res.Status != 404 {
		t.Fatalf("unlink again: %d %s", res.Status, res.Body)
	}
	if res := a.Do("DELETE", p+"?mailId="+esc(mail), acme.Client, nil); res.Status != 400 {
		t.Fatalf("unlink without issueId: %d %s", res.Status, res.Body)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	_, a := start(t, nil)
	if res := a.Do("GET", "/healthz", "", nil); res.Status != 200 {
		t.Fatalf("healthz: %d", res.Status)
	}
	if res := a.Do("GET", "/readyz", "", nil); res.Status != 200 {
		t.Fatalf("readyz: %d %s", res.Status, res.Body)
	}
}

// TestReadyzFollowsEtcd: /readyz answers 503 with the JSON error shape when
// etcd is gone, while /healthz (the process is alive) stays 200.
func TestReadyzFollowsEtcd(t *testing.T) {
	t.Parallel()
	e, cli := etcdtest.Start(t)
	r := relaytest.StartWithEtcd(t, cli, func(c *configs.Config) { c.EtcdRequestTimeout = time.Second })
	a := relaytest.NewClient(t, r.URL)
	if res := a.Do("GET", "/readyz", "", nil); res.Status != 200 {
		t.Fatalf("readyz with etcd: %d", res.Status)
	}
	e.Close()
	res := a.Do("GET", "/readyz", "", nil)
	if res.Status != 503 || res.ErrCode(t) != "store_unavailable" {
		t.Fatalf("readyz without etcd: %d %s", res.Status, res.Body)
	}
	if res := a.Do("GET", "/healthz", "", nil); res.Status != 200 {
		t.Fatalf("healthz without etcd: %d", res.Status)
	}
}
