package fleet_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
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

// jiraAuth is a Jira credential the fake accepts.
const jiraAuth = "Basic bWlhQGV4YW1wbGUuY29tOnRva2Vu"

// fleet is three relays (each with its own etcd client) on a three-node
// etcd cluster, in front of one fake Jira on which two tenants are
// registered by two spellings of its address.
type fleet struct {
	t      *testing.T
	prefix string
	mutate func(*configs.Config)
	etcd   *etcdtest.Cluster
	admin  *clientv3.Client // the test's own client, as an operator's etcdctl
	jira   *fakejira.Server
	relays []*relaytest.Relay
	a, b   relaytest.Tenant // the tenants, at 127.0.0.1:port and localhost:port
	hostA  string
	fileID string // an attachment the fake Jira serves
}

// startFleet starts three relays under prefix on the etcd cluster, each
// with a short member lease (2 s), address limits no test reaches and the
// tenant limit rps and burst, fleet-wide.
func startFleet(t *testing.T, cluster *etcdtest.Cluster, prefix string, rps float64, burst int) *fleet {
	f := &fleet{t: t, prefix: prefix, etcd: cluster}
	f.mutate = func(c *configs.Config) {
		c.EtcdPrefix = prefix
		c.InstanceRPS, c.InstanceBurst = rps, burst
		c.IPRPS, c.IPBurst = 1e5, 1e5
		c.FleetTTL = 2 * time.Second
	}
	f.admin = etcdtest.Client(t, f.etcd.Endpoints()...)
	f.jira = relaytest.StartJira(t, fakejira.Options{})
	f.fileID, _ = f.jira.AddAttachment("a.txt", "text/plain", 1024, 1)
	for i := range 3 {
		f.relays = append(f.relays, f.start(i))
	}
	f.waitMembers(3, 5*time.Second)
	api := relaytest.NewClient(t, f.relays[0].URL)
	u, _ := url.Parse(f.jira.URL())
	f.hostA = u.Host
	f.a = api.MustRegister(t, "http://"+u.Host)
	f.b = api.MustRegister(t, "http://localhost:"+u.Port())
	for _, r := range f.relays { // every relay knows both tenants
		c := relaytest.NewClient(t, r.URL)
		for _, ten := range []relaytest.Tenant{f.a, f.b} {
			if !relaytest.Eventually(5*time.Second, func() bool {
				return c.Do("GET", "/v1/instances/"+ten.ID+"/config", ten.Client, nil).Status == 200
			}) {
				t.Fatalf("relay %s does not know tenant %s", r.URL, ten.ID)
			}
		}
	}
	return f
}

// start runs a relay over its own client of every etcd member, member
// i%3 first.
func (f *fleet) start(i int) *relaytest.Relay {
	eps := f.etcd.Endpoints()
	cli := etcdtest.Client(f.t, append(eps[i%3:], eps[:i%3]...)...)
	return relaytest.StartWith(f.t, relaytest.Options{Etcd: cli, Mutate: f.mutate})
}

// waitMembers waits until every running relay counts n members.
func (f *fleet) waitMembers(n int, within time.Duration) time.Duration {
	f.t.Helper()
	start := time.Now()
	for _, r := range f.relays {
		if !relaytest.Eventually(within-time.Since(start), func() bool { return r.Metric("relay_fleet_members") == float64(n) }) {
			f.t.Fatalf("relay %s counts %v members, want %d", r.URL, r.Metric("relay_fleet_members"), n)
		}
	}
	return time.Since(start)
}

// answer is one answer of a relay.
type answer struct {
	status int
	code   string
	hdr    http.Header
}

func (f *fleet) do(req *http.Request) answer {
	f.t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	a := relaytest.ReadAnswer(res)
	code, _ := a.RelayError()
	return answer{status: res.StatusCode, code: code, hdr: res.Header}
}

// upload sends a small file to issue through relay r for tenant ten.
func (f *fleet) upload(r *relaytest.Relay, ten relaytest.Tenant, issue string) answer {
	f.t.Helper()
	req, _ := http.NewRequest("POST", r.URL+"/v1/instances/"+ten.ID+"/issues/"+issue+"/attachments?filename=a.txt", strings.NewReader("hello"))
	req.Header.Set("X-Relay-Key", ten.Client)
	req.Header.Set("Authorization", jiraAuth)
	req.Header.Set("Content-Type", "text/plain")
	return f.do(req)
}

// download fetches the fake Jira's attachment through relay r for ten.
func (f *fleet) download(r *relaytest.Relay, ten relaytest.Tenant) answer {
	f.t.Helper()
	req, _ := http.NewRequest("GET", r.URL+"/v1/instances/"+ten.ID+"/attachments/"+f.fileID+"/content", nil)
	req.Header.Set("X-Relay-Key", ten.Client)
	req.Header.Set("Authorization", jiraAuth)
	return f.do(req)
}

// config reads ten's configuration through relay r (a cheap request the
// tenant limit counts).
func (f *fleet) config(r *relaytest.Relay, ten relaytest.Tenant) answer {
	f.t.Helper()
	req, _ := http.NewRequest("GET", r.URL+"/v1/instances/"+ten.ID+"/config", nil)
	req.Header.Set("X-Relay-Key", ten.Client)
	return f.do(req)
}

// clearCooldowns deletes every cool-down key, as the runbook does by hand,
// and waits until no relay holds one.
func (f *fleet) clearCooldowns() {
	f.t.Helper()
	if _, err := f.admin.Delete(context.Background(), f.prefix+"fleet/cooldowns/", clientv3.WithPrefix()); err != nil {
		f.t.Fatal(err)
	}
	for _, r := range f.relays {
		if !relaytest.Eventually(time.Second, func() bool { return activeCooldowns(r) == 0 }) {
			f.t.Fatalf("relay %s still holds %v cool-downs after they were deleted", r.URL, activeCooldowns(r))
		}
	}
}

func activeCooldowns(r *relaytest.Relay) float64 {
	n := 0.0
	for _, s := range []string{"global", "tenant", "endpoint", "issue"} {
		n += r.Metric(`relay_fleet_cooldowns{scope="` + s + `"}`)
	}
	return n
}

// shared trips a cool-down through relay 0 (Jira answers the first
// matching request 429 with reason and Retry-After 30) and returns how long
// the other relays took to hold it.
func (f *fleet) shared(scope string, fault fakejira.Fault, trip func() answer) time.Duration {
	f.t.Helper()
	fault.Kind, fault.Count, fault.RetryAfter = fakejira.Fault429, 1, "30"
	f.jira.SetFault(fault)
	res := trip()
	seen := time.Now()
	if res.status != 429 || res.code != "" {
		f.t.Fatalf("Jira's 429 through relay 0: %d %q", res.status, res.code)
	}
	metric := `relay_fleet_cooldowns{scope="` + scope + `"}`
	for _, r := range f.relays[1:] {
		if !pollFast(time.Second, func() bool { return r.Metric(metric) >= 1 }) {
			f.t.Fatalf("relay %s holds no %s cool-down 1 s after relay 0 saw Jira's 429", r.URL, scope)
		}
	}
	return time.Since(seen)
}

// pollFast is Eventually at 2 ms.
func pollFast(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// refused checks a local refusal: 429, the relay's cool-down code, Jira's
// reason passed back ("" for none) and a Retry-After of what is left of
// Jira's 30 s.
func refused(t *testing.T, what string, a answer, reason string) {
	t.Helper()
	if a.status != 429 || a.code != "rate_limited_jira_cooldown" {
		t.Errorf("%s: %d %q, want 429 rate_limited_jira_cooldown", what, a.status, a.code)
		return
	}
	if got := a.hdr.Get("RateLimit-Reason"); got != reason {
		t.Errorf("%s: RateLimit-Reason %q, want %q", what, got, reason)
	}
	if ra, err := strconv.Atoi(a.hdr.Get("Retry-After")); err != nil || ra < 25 || ra > 30 {
		t.Errorf("%s: Retry-After %q, want what is left of Jira's 30", what, a.hdr.Get("Retry-After"))
	}
}

func served(t *testing.T, what string, a answer) {
	t.Helper()
	if a.status != 200 {
		t.Errorf("%s: %d %q, want 200 (outside the cool-down's scope)", what, a.status, a.code)
	}
}

// TestFleet is two fleets of three relays on one three-node etcd cluster
// (under two prefixes), each fleet acting as one. The first, with the
// tenant limit of 10 a second and bursts of 10: the fleet admits within
// ±20 % of burst + rate × t; a killed relay leaves the member list within
// the TTL and the others' shares grow. The second: every cool-down scope
// shared within 250 ms and no wider than its scope; a relay started during
// a cool-down honouring it, and leaving at once when stopped; an operator
// clearing a cool-down; garbled keys ignored; a rotated key, an erased
// tenant and a configuration change reaching every relay within 1 s;
// mapping writes reaching no other relay's watch.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node etcd and six relays")
	}
	cluster := etcdtest.StartCluster(t, 3)
	t.Run("limits", func(t *testing.T) { testLimits(t, startFleet(t, cluster, "/fleet-limits/", 10, 10)) })
	t.Run("cool-downs and propagation", func(t *testing.T) { testShared(t, startFleet(t, cluster, "/fleet-shared/", 1e5, 1e5)) })
}

func testLimits(t *testing.T, f *fleet) {
	r0, r2 := f.relays[0], f.relays[2]
	t.Run("the tenant limit holds across the fleet", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond) // the buckets refill after startFleet's reads
		// A burst: 90 requests round-robin over the three relays.
		admitted, start := 0, time.Now()
		for i := range 90 {
			if f.config(f.relays[i%3], f.a).status == 200 {
				admitted++
			}
		}
		within(t, "90 requests round-robin", admitted, 10, 10, time.Since(start))
		// A steady flow at 40 requests a second for 2 s, after the bucket
		// refilled.
		time.Sleep(1100 * time.Millisecond)
		admitted, start = 0, time.Now()
		for i := range 80 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * 25 * time.Millisecond)))
			if f.config(f.relays[i%3], f.a).status == 200 {
				admitted++
			}
		}
		within(t, "40 requests a second for 2 s", admitted, 10, 10, time.Since(start))
	})

	t.Run("a killed relay leaves within the TTL and the others' shares grow", func(t *testing.T) {
		if d := burstLimit(t, f, r0); d != 3 && d != 4 {
			t.Fatalf("relay 0's share of the burst of 10 among 3: %d, want 3 or 4", d)
		}
		streams := 0.0
		for _, r := range f.relays {
			streams += r.Metric(`relay_fleet_share{limit="instance_max_streams"}`)
		}
		if streams != 32 {
			t.Errorf("the relays' shares of --instance-max-streams 32 add up to %v", streams)
		}
		killed := time.Now()
		r2.Etcd.Close() // its keep-alives stop: gone as a crashed relay is
		f.relays = f.relays[:2]
		f.waitMembers(2, 3*time.Second)
		t.Logf("a killed relay left every member list after %v (TTL 2 s)", time.Since(killed).Round(time.Millisecond))
		if d := burstLimit(t, f, r0); d != 5 {
			t.Errorf("relay 0's share of the burst of 10 among 2: %d, want 5", d)
		}
		for _, r := range f.relays {
			if rps, streams := r.Metric(`relay_fleet_share{limit="instance_rps"}`), r.Metric(`relay_fleet_share{limit="instance_max_streams"}`); rps != 5 || streams != 16 {
				t.Errorf("relay %s's shares among 2: %v requests a second, %v streams; want 5 and 16 (of 10 and 32)", r.URL, rps, streams)
			}
		}
	})
}

func testShared(t *testing.T, f *fleet) {
	r0, r1, r2 := f.relays[0], f.relays[1], f.relays[2]

	var delays []time.Duration
	t.Run("per issue", func(t *testing.T) {
		d := f.shared("issue", fakejira.Fault{Reason: fakejira.ReasonPerIssue, Issue: "ABC-1", Host: f.hostA},
			func() answer { return f.upload(r0, f.a, "ABC-1") })
		delays = append(delays, d)
		before := f.jira.Requests()
		refused(t, "the issue through relay 1", f.upload(r1, f.a, "ABC-1"), fakejira.ReasonPerIssue)
		refused(t, "the issue through relay 2", f.upload(r2, f.a, "ABC-1"), fakejira.ReasonPerIssue)
		if n := f.jira.Requests() - before; n != 0 {
			t.Errorf("Jira saw %d requests for the cooling issue", n)
		}
		served(t, "another issue of the tenant", f.upload(r1, f.a, "ABC-2"))
		served(t, "a download of the tenant", f.download(r2, f.a))
		served(t, "the same issue key of another tenant", f.upload(r2, f.b, "ABC-1"))
		f.clearCooldowns()
		served(t, "the issue once the cool-down was deleted", f.upload(r1, f.a, "ABC-1"))
	})

	t.Run("burst: the tenant's endpoint and method", func(t *testing.T) {
		d := f.shared("endpoint", fakejira.Fault{Reason: fakejira.ReasonBurst, Endpoint: fakejira.EndpointUpload, Host: f.hostA},
			func() answer { return f.upload(r0, f.a, "ABC-3") })
		delays = append(delays, d)
		refused(t, "an upload to another issue through relay 1", f.upload(r1, f.a, "ABC-4"), fakejira.ReasonBurst)
		refused(t, "an upload through relay 2", f.upload(r2, f.a, "ABC-3"), fakejira.ReasonBurst)
		served(t, "a download of the tenant", f.download(r1, f.a))
		served(t, "an upload of another tenant", f.upload(r2, f.b, "ABC-3"))
		f.clearCooldowns()
	})

	t.Run("no reason: the tenant's endpoint and method", func(t *testing.T) {
		d := f.shared("endpoint", fakejira.Fault{Reason: fakejira.NoReason, Endpoint: fakejira.EndpointDownload, Host: f.hostA},
			func() answer { return f.download(r0, f.a) })
		delays = append(delays, d)
		refused(t, "a download through relay 1", f.download(r1, f.a), "")
		served(t, "an upload of the tenant", f.upload(r2, f.a, "ABC-5"))
		served(t, "a download of another tenant", f.download(r2, f.b))
		f.clearCooldowns()
	})

	t.Run("tenant quota", func(t *testing.T) {
		d := f.shared("tenant", fakejira.Fault{Reason: fakejira.ReasonTenantQuota, Host: f.hostA},
			func() answer { return f.upload(r0, f.a, "ABC-6") })
		delays = append(delays, d)
		refused(t, "an upload through relay 1", f.upload(r1, f.a, "ABC-7"), fakejira.ReasonTenantQuota)
		refused(t, "a download through relay 2", f.download(r2, f.a), fakejira.ReasonTenantQuota)
		served(t, "an upload of another tenant", f.upload(r1, f.b, "ABC-6"))
		served(t, "a download of another tenant", f.download(r2, f.b))
		f.clearCooldowns()
	})

	t.Run("global quota, and a relay started during it", func(t *testing.T) {
		d := f.shared("global", fakejira.Fault{Reason: fakejira.ReasonGlobalQuota, Host: f.hostA},
			func() answer { return f.upload(r0, f.a, "ABC-8") })
		delays = append(delays, d)
		refused(t, "another tenant's upload through relay 1", f.upload(r1, f.b, "ABC-8"), fakejira.ReasonGlobalQuota)
		refused(t, "another tenant's download through relay 2", f.download(r2, f.b), fakejira.ReasonGlobalQuota)
		late := f.start(3)
		refused(t, "a relay started during the cool-down", f.upload(late, f.b, "ABC-9"), fakejira.ReasonGlobalQuota)
		f.relays = append(f.relays, late)
		f.clearCooldowns()
		served(t, "the late relay once the cool-down was deleted", f.upload(late, f.b, "ABC-9"))
		stopped := time.Now()
		late.Stop() // leaves at once: its lease is revoked
		f.relays = f.relays[:3]
		f.waitMembers(3, time.Second)
		t.Logf("a relay that stopped left every member list after %v", time.Since(stopped).Round(time.Millisecond))
	})
	slices.Sort(delays)
	for _, d := range delays {
		if d > 250*time.Millisecond {
			t.Errorf("a cool-down reached every relay after %v, want within 250 ms (all: %v)", d, delays)
		}
	}
	t.Logf("cool-downs held by every relay after (sorted): %v", delays)

	t.Run("a garbled key is ignored", func(t *testing.T) {
		ctx := context.Background()
		for k, v := range map[string]string{
			"fleet/cooldowns/tenant/" + f.a.ID:         "not json",
			"fleet/cooldowns/issue/nope/ABC-1":         `{"until":"2099-01-01T00:00:00Z"}`,
			"fleet/cooldowns/endpoint/" + f.a.ID + "/": `{"until":"2099-01-01T00:00:00Z"}`,
			"fleet/members/has space":                  `{}`,
			"fleet/other":                              `x`,
		} {
			if _, err := f.admin.Put(ctx, f.prefix+k, v); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range f.relays {
			if !relaytest.Eventually(time.Second, func() bool { return r.Metric("relay_fleet_keys_ignored_total") >= 5 }) {
				t.Errorf("relay %s ignored %v keys, want 5", r.URL, r.Metric("relay_fleet_keys_ignored_total"))
			}
			served(t, "an upload after garbled keys", f.upload(r, f.a, "ABC-10"))
		}
		if n := f.relays[0].Metric("relay_fleet_members"); n != 3 {
			t.Errorf("members after a garbled member key: %v, want 3", n)
		}
		if _, err := f.admin.Delete(ctx, f.prefix+"fleet/other"); err != nil {
			t.Fatal(err)
		}
		f.clearCooldowns()
		if _, err := f.admin.Delete(ctx, f.prefix+"fleet/members/has space"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("propagation of key rotation, erasure and configuration", func(t *testing.T) {
		api := relaytest.NewClient(t, r0.URL)
		c := api.MustRegister(t, "https://propagation.atlassian.net")
		p := "/v1/instances/" + c.ID
		for _, r := range f.relays[1:] {
			rc := relaytest.NewClient(t, r.URL)
			if !relaytest.Eventually(time.Second, func() bool { return rc.Do("GET", p+"/config", c.Client, nil).Status == 200 }) {
				t.Fatalf("relay %s does not know the new tenant within 1 s", r.URL)
			}
		}
		everywhere := func(what string, cond func(*relaytest.Client) bool) {
			t.Helper()
			start := time.Now()
			for _, r := range f.relays[1:] {
				rc := relaytest.NewClient(t, r.URL)
				if !pollFast(time.Second-time.Since(start), func() bool { return cond(rc) }) {
					t.Errorf("%s: relay %s not within 1 s", what, r.URL)
				}
			}
			t.Logf("%s: every relay after %v", what, time.Since(start).Round(time.Millisecond))
		}
		if res := api.Do("PUT", p+"/config", c.Admin, map[string]any{"template": "v2"}); res.Status != 200 && res.Status != 201 {
			t.Fatalf("config: %s", res)
		}
		everywhere("a configuration change", func(rc *relaytest.Client) bool {
			res := rc.Do("GET", p+"/config", c.Client, nil)
			return res.Status == 200 && res.JSON(t)["template"] == "v2"
		})
		res := api.Do("POST", p+"/keys/rotate", c.Admin, nil)
		if res.Status != 200 {
			t.Fatalf("rotate: %s", res)
		}
		fresh, _ := res.JSON(t)["clientKey"].(string)
		everywhere("a rotated client key", func(rc *relaytest.Client) bool {
			return rc.Do("GET", p+"/config", c.Client, nil).Status == 401
		})
		// Cool-downs of the tenant (and one of another) run when it is erased.
		until := `{"until":"` + time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano) + `"}`
		cd := f.prefix + "fleet/cooldowns/"
		for _, k := range []string{"tenant/" + c.ID, "endpoint/" + c.ID + "/upload", "issue/" + c.ID + "/ABC-1", "issue/" + f.a.ID + "/ABC-9"} {
			if _, err := f.admin.Put(context.Background(), cd+k, until); err != nil {
				t.Fatal(err)
			}
		}
		if res := api.Do("DELETE", p, c.Admin, nil); res.Status != 204 {
			t.Fatalf("erase: %s", res)
		}
		left, err := f.admin.Get(context.Background(), cd, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		if len(left.Kvs) != 1 || string(left.Kvs[0].Key) != cd+"issue/"+f.a.ID+"/ABC-9" {
			t.Errorf("cool-down keys after the erase: %v, want only the other tenant's", left.Kvs)
		}
		everywhere("an erased tenant", func(rc *relaytest.Client) bool {
			s := rc.Do("GET", p+"/config", fresh, nil).Status
			return s == 404 || s == 401
		})
	})

	t.Run("mapping writes reach no other relay's watch", func(t *testing.T) {
		before := []float64{r1.Metric(`relay_store_watch_events_total{kind="other"}`), r2.Metric(`relay_store_watch_events_total{kind="other"}`)}
		api := relaytest.NewClient(t, r0.URL)
		for i := range 100 {
			body := relaytest.MappingBody(fmt.Sprintf("c%d", i%7), fmt.Sprintf("<%d@x>", i), "u1", "10001", "ABC-1")
			if res := api.Do("POST", "/v1/instances/"+f.b.ID+"/mappings", f.b.Client, body); res.Status != 201 {
				t.Fatalf("mapping %d: %s", i, res)
			}
		}
		for i, r := range []*relaytest.Relay{r1, r2} {
			n := r.Metric(`relay_store_watch_events_total{kind="other"}`) - before[i]
			if n != 0 {
				t.Errorf("relay %d's watch received %v events of mappings", i+1, n)
			}
			t.Logf("100 mapping writes through relay 0: relay %d's watch received %v events of tenants' data (instance events so far %v, config %v)",
				i+1, n, r.Metric(`relay_store_watch_events_total{kind="instance"}`), r.Metric(`relay_store_watch_events_total{kind="config"}`))
		}
	})

	t.Run("without an etcd quorum the relays keep their count and serve", func(t *testing.T) {
		f.etcd.Stop(1)
		f.etcd.Stop(2)
		lost := time.Now()
		time.Sleep(time.Until(lost.Add(3 * time.Second))) // past the member lease of 2 s
		for i, r := range f.relays {
			if n := r.Metric("relay_fleet_members"); n != 3 {
				t.Errorf("relay %d without a quorum counts %v members, want the last known 3", i, n)
			}
			served(t, fmt.Sprintf("an upload through relay %d without a quorum", i), f.upload(r, f.a, "ABC-20"))
			served(t, fmt.Sprintf("a configuration read through relay %d without a quorum", i), f.config(r, f.a))
		}
		f.etcd.Restart(1)
		f.etcd.Restart(2)
		f.waitMembers(3, 30*time.Second)
		d := f.shared("issue", fakejira.Fault{Reason: fakejira.ReasonPerIssue, Issue: "ABC-21", Host: f.hostA},
			func() answer { return f.upload(r0, f.a, "ABC-21") })
		t.Logf("after the quorum came back, a cool-down reached every relay after %v", d.Round(time.Millisecond))
		refused(t, "the issue through relay 2 after the quorum came back", f.upload(r2, f.a, "ABC-21"), fakejira.ReasonPerIssue)
	})
}

// within checks that admitted is within ±20 % of burst + rps × elapsed.
func within(t *testing.T, what string, admitted, burst int, rps float64, elapsed time.Duration) {
	t.Helper()
	want := float64(burst) + rps*elapsed.Seconds()
	t.Logf("%s in %v: %d admitted, burst + rate × t = %.1f", what, elapsed.Round(time.Millisecond), admitted, want)
	if float64(admitted) < 0.8*want || float64(admitted) > 1.2*want {
		t.Errorf("%s: the fleet admitted %d, want %.1f ± 20%%", what, admitted, want)
	}
}

// burstLimit is the RateLimit-Limit relay r answers a refusal of the tenant
// limit with: its share of the fleet's burst.
func burstLimit(t *testing.T, f *fleet, r *relaytest.Relay) int {
	t.Helper()
	time.Sleep(1100 * time.Millisecond) // the bucket refills
	for range 50 {
		res := f.config(r, f.a)
		if res.status == 429 {
			n, err := strconv.Atoi(res.hdr.Get("RateLimit-Limit"))
			if err != nil {
				t.Fatalf("refusal without RateLimit-Limit: %v", res.hdr)
			}
			return n
		}
	}
	t.Fatal("50 requests at once to one relay were all admitted")
	return 0
}
