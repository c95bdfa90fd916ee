package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fakejira"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// jiraSetup is a relay, a fake Jira Cloud, and one instance registered at the fake.
type jiraSetup struct {
	relay  *relaytest.Relay
	api    *api
	jira   *fakejira.Server
	tenant tenant
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
	fj, err := fakejira.Start(fakejira.Options{TLS: tlsJira})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fj.Close)
	r, a := start(t, func(c *configs.Config) {
		c.BreakerOpenTimeout = 500 * time.Millisecond
		if tlsJira {
			ca := t.TempDir() + "/ca.pem"
			if err := writeFile(ca, fj.CAPEM()); err != nil {
				t.Fatal(err)
			}
			c.UpstreamCA = ca
		}
		if mutate != nil {
			mutate(c)
		}
	})
	url := fj.URL()
	return &jiraSetup{relay: r, api: a, jira: fj, tenant: a.register(url)}
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

func send(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
