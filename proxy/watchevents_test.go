package proxy_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// TestOtherRelaysWatchNoMappings: three relays over one store; mapping
// and user writes at full rate through one reach none of the others'
// watches (relay_store_watch_events_total{kind="other"} stays 0: tenants'
// data lives outside the watched directory), while a configuration change
// reaches them all and is served everywhere within a second.
func TestOtherRelaysWatchNoMappings(t *testing.T) {
	t.Parallel()
	a := relaytest.Start(t, func(c *configs.Config) { c.IPRPS, c.IPBurst, c.InstanceRPS, c.InstanceBurst = 1e4, 1e4, 1e4, 1e4 })
	others := []*relaytest.Relay{
		relaytest.StartWith(t, relaytest.Options{Etcd: a.Etcd, Mutate: func(c *configs.Config) { c.EtcdPrefix = a.Config.EtcdPrefix }}),
		relaytest.StartWith(t, relaytest.Options{Etcd: a.Etcd, Mutate: func(c *configs.Config) { c.EtcdPrefix = a.Config.EtcdPrefix }}),
	}
	api := relaytest.NewClient(t, a.URL)
	ten := api.MustRegister(t, "https://acme.atlassian.net")
	p := "/v1/instances/" + ten.ID
	for i := range 200 {
		if res := api.Do("POST", p+"/mappings", ten.Client, relaytest.MappingBody(fmt.Sprintf("c%d", i%10), fmt.Sprintf("<%d@x>", i), fmt.Sprintf("u%d", i%5), "10001", "AB-1")); res.Status != 201 {
			t.Fatalf("mapping: %d %s", res.Status, res.Body)
		}
	}
	for i := range 5 {
		if res := api.Do("PUT", fmt.Sprintf("%s/users/u%d", p, i), ten.Client, map[string]any{"name": "U", "email": "u@example.com"}); res.Status != 201 {
			t.Fatalf("user: %d %s", res.Status, res.Body)
		}
	}
	written := time.Now()
	if res := api.Do("PUT", p+"/config", ten.Admin, map[string]any{"template": "v2"}); res.Status != 200 && res.Status != 201 {
		t.Fatalf("config: %d %s", res.Status, res.Body)
	}
	for i, r := range others {
		c := relaytest.NewClient(t, r.URL)
		if !relaytest.Eventually(time.Second-time.Since(written), func() bool {
			res := c.Do("GET", p+"/config", ten.Client, nil)
			return res.Status == 200 && res.JSON(t)["template"] == "v2"
		}) {
			t.Errorf("relay %d: the new configuration not served within 1 s", i+2)
		}
		if n := metricValue(t, r, `relay_store_watch_events_total{kind="other"}`); n != 0 {
			t.Errorf("relay %d's watch received %v events of tenants' data", i+2, n)
		}
		if n := metricValue(t, r, `relay_store_watch_events_total{kind="config"}`); n < 1 {
			t.Errorf("relay %d's watch received %v configuration events, want the change", i+2, n)
		}
		if n := metricValue(t, r, `relay_store_watch_events_total{kind="instance"}`); n > 2 {
			t.Errorf("relay %d's watch received %v instance events for one registration", i+2, n)
		}
	}
}
