package proxy_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// TestExpectPhaseJudgesFramingFirst: under Expect: 100-continue the
// framing checks come first, as for any request: two X-Relay-Key headers,
// or Content-Length with Transfer-Encoding, get 400 instead of "100
// Continue", and no limit is charged.
func TestExpectPhaseJudgesFramingFirst(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, nil)
	for name, extra := range map[string][]string{
		"two X-Relay-Key headers":             {"X-Relay-Key: " + j.tenant.Client, "Expect: 100-continue"},
		"Content-Length and chunked together": {"Transfer-Encoding: chunked", "Expect: 100-continue"},
	} {
		c, br := rfDial(t, j)
		if _, err := c.Write([]byte(rfHead(j, rfTarget(j, "ABC-1"), j.tenant.Client, 5, extra...))); err != nil {
			t.Fatal(err)
		}
		res := rfReadAnswer(t, br)
		if res.Status == 100 {
			t.Fatalf("%s: 100 Continue before the framing was judged", name)
		}
		if res.Status != 400 || res.ErrCode(t) == "" {
			t.Fatalf("%s: %s, want 400", name, res)
		}
	}
	if n := len(j.jira.Uploads()); n != 0 {
		t.Fatalf("Jira saw %d uploads", n)
	}
}

// TestCorruptRecordWithWrongKeyIs401: a tenant whose record no longer
// decodes tells a caller without the right key nothing more than any
// tenant would: 401, limited per address like every failed key check (not
// a 500 with an error line each time).
func TestCorruptRecordWithWrongKeyIs401(t *testing.T) {
	t.Parallel()
	r := relaytest.Start(t, func(c *configs.Config) { c.IPRPS, c.IPBurst = 0.01, 3 })
	a := relaytest.NewClient(t, r.URL)
	tn := a.MustRegister(t, "https://acme.atlassian.net")
	key := r.Config.EtcdPrefix + "instances/" + tn.ID + "/instance"
	if _, err := r.Etcd.Put(context.Background(), key, ""); err != nil { // the reported empty record
		t.Fatal(err)
	}
	if !relaytest.Eventually(5*time.Second, func() bool {
		return a.Do("GET", "/v1/instances/"+tn.ID+"/config", "jrc_wrong", nil).Status == 401
	}) {
		t.Fatal("a wrong key on a corrupt tenant is not 401")
	}
	var last relaytest.Answer
	for range 5 {
		last = a.Do("GET", "/v1/instances/"+tn.ID+"/config", "jrc_wrong", nil)
	}
	if last.Status != 429 || last.ErrCode(t) != "rate_limited_auth_failures" {
		t.Fatalf("wrong keys past the budget: %s", last)
	}
}

// TestRefusalAfterTheWholeBodyKeepsTheConnection: a refusal decided after
// the handler read the whole body (a chunked PATCH with a bad field) keeps
// the connection open: there is nothing left to linger for.
func TestRefusalAfterTheWholeBodyKeepsTheConnection(t *testing.T) {
	t.Parallel()
	j := startJira(t, false, nil)
	c, br := rfDial(t, j)
	body := `{"jiraVersion":"not a version!"}`
	req := "PATCH /v1/instances/" + j.tenant.ID + " HTTP/1.1\r\nHost: x\r\nX-Relay-Key: " + j.tenant.Admin +
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"
	for i := range 2 { // the second request on the same connection is answered too
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		res := rfReadAnswer(t, br)
		if res.Status != 400 || res.Header.Get("Connection") == "close" {
			t.Fatalf("request %d: %s, Connection %q", i, res, res.Header.Get("Connection"))
		}
	}
}

// TestKeyShapedRequestIDIsNotKept: a relay key sent as X-Request-Id is
// replaced by a fresh id, so it reaches neither the log nor Jira.
func TestKeyShapedRequestIDIsNotKept(t *testing.T) {
	t.Parallel()
	r := relaytest.Start(t, nil)
	a := relaytest.NewClient(t, r.URL)
	tn := a.MustRegister(t, "https://acme.atlassian.net")
	res := a.Do("GET", "/v1/instances/"+tn.ID+"/config", tn.Client, nil, "X-Request-Id", tn.Client)
	if got := res.Header.Get("X-Request-Id"); got == "" || got == tn.Client {
		t.Fatalf("X-Request-Id %q: the key was kept as the request id", got)
	}
	if got := a.Do("GET", "/healthz", "", nil, "X-Request-Id", "trace-42.a_b").Header.Get("X-Request-Id"); got != "trace-42.a_b" {
		t.Fatalf("a sane request id was not kept: %q", got)
	}
}
