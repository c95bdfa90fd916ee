package proxy_test

import (
	"strings"
	"testing"

	"github.com/jira-relay/jira-relay/configs"
)

// TestFailedKeyChecksAreLimitedPerIP: a flood of made-up instance ids or
// wrong keys from one address is answered 429 after --ip-burst failures,
// before any further etcd read, with Retry-After.
func TestFailedKeyChecksAreLimitedPerIP(t *testing.T) {
	_, a := start(t, func(c *configs.Config) { c.IPRPS, c.IPBurst = 1, 5 })
	ten := a.MustRegister(t, "https://acme.atlassian.net")
	for i := range 5 {
		id := strings.Repeat(string(rune('a'+i)), 26)
		if res := a.Do("GET", "/v1/instances/"+id+"/config", ten.Client, nil); res.Status != 404 {
			t.Fatalf("unknown instance %d: %d %s", i, res.Status, res.Body)
		}
	}
	res := a.Do("GET", "/v1/instances/"+ten.ID+"/config", "jrc_wrong", nil)
	if res.Status != 429 || res.ErrCode(t) != "rate_limited_auth_failures" || res.Header.Get("Retry-After") == "" {
		t.Fatalf("6th failed key check: %d %s (Retry-After %q)", res.Status, res.Body, res.Header.Get("Retry-After"))
	}
	if res := a.Do("GET", "/v1/instances/zzzzzzzzzzzzzzzzzzzzzzzzzz/config", ten.Client, nil); res.Status != 429 {
		t.Fatalf("while held: %d", res.Status)
	}
}
