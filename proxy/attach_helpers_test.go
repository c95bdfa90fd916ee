package proxy_test

import (
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// jiraSetup is a relay, a fake Jira Cloud, and one instance registered at the fake.
type jiraSetup struct {
	relay  *relaytest.Relay
	api    *relaytest.Client
	jira   *fakejira.Server
	tenant relaytest.Tenant
}

// uploadPath is the relay route for an upload to issue.
func (j *jiraSetup) uploadPath(issue string) string {
	return j.relay.URL + "/v1/instances/" + j.tenant.ID + "/issues/" + issue + "/attachments"
}

func (j *jiraSetup) downloadPath(id string) string {
	return j.relay.URL + "/v1/instances/" + j.tenant.ID + "/attachments/" + id + "/content"
}

// startJira starts a fake Jira (TLS when tlsJira) and a relay that trusts it.
func startJira(t *testing.T, tlsJira bool, mutate func(*configs.Config)) *jiraSetup {
	t.Helper()
	fj := relaytest.StartJira(t, fakejira.Options{TLS: tlsJira})
	r, a := start(t, func(c *configs.Config) {
		c.BreakerOpenTimeout = 500 * time.Millisecond
		if tlsJira {
			ca := t.TempDir() + "/ca.pem"
			if err := os.WriteFile(ca, fj.CAPEM(), 0o600); err != nil {
				t.Fatal(err)
			}
			c.UpstreamCA = ca
		}
		if mutate != nil {
			mutate(c)
		}
	})
	return &jiraSetup{relay: r, api: a, jira: fj, tenant: a.MustRegister(t, fj.URL())}
}

// uploadReq builds an upload request with the client key and a Jira credential.
func (j *jiraSetup) uploadReq(t *testing.T, issue, query, contentType string, body io.Reader, length int64) *http.Request {
	t.Helper()
	u := j.uploadPath(issue)
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest("POST", u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	req.Header.Set("X-Relay-Key", j.tenant.Client)
	req.Header.Set("Authorization", "Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// send sends req and reads the answer; a transport error fails the test.
func send(t *testing.T, req *http.Request) relaytest.Answer {
	t.Helper()
	return relaytest.NewClient(t, "").Send(req)
}
