package opstest

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/relaytest"
)

// The "Running a fleet" section of docs/operations.md runs against two
// relays over one etcd: relay-1 (the runbook's) and relay-2 (the Capacity
// section's, whose /metrics is <metricsUrl>).

// runbookCooldown is a cool-down the section finds in etcd: the scope key
// below P fleet/cooldowns/, and Jira's reason.
type runbookCooldown struct{ key, reason string }

// fleetCooldowns are the cool-downs relay-2 takes from Jira's 429s before
// the section runs: acme's tenant quota (10 minutes) and the per-issue
// write limit of OPS-1 (30 s).
func (env *runbookEnv) fleetCooldowns() []runbookCooldown {
	id := env.acme.ID
	return []runbookCooldown{
		{"tenant/" + id, fleet.ReasonTenantQuota},
		{"issue/" + id + "/OPS-1", fleet.ReasonPerIssue},
	}
}

// fleetBefore has relay-2 take two of Jira's 429s for acme, as the
// attachment relay takes them (relay/roundtrip.go hands Jira's
// RateLimit-Reason and Retry-After to Trip), and checks what the section
// says of them: relay-2 writes one key per scope, relay-1 holds them from
// etcd, and the add-in gets 429 rate_limited_jira_cooldown with Jira's
// reason in RateLimit-Reason from either relay, as docs/openapi.yaml
// documents it.
func (env *runbookEnv) fleetBefore() {
	t := env.t
	id := env.acme.ID
	cd := env.capped.Server.Cooldowns()
	if d := cd.Trip(id, fleet.Download, "", fleet.ReasonTenantQuota, 10*time.Minute); d != 10*time.Minute {
		t.Fatalf("a 429 of the tenant quota with Retry-After 600 cools for %v", d)
	}
	cd.Trip(id, fleet.Upload, "OPS-1", fleet.ReasonPerIssue, 30*time.Second)
	held := func(r *relaytest.Relay) bool {
		_, reason, cooling := r.Server.Cooldowns().Check(id, fleet.Download, "")
		_, _, issue := r.Server.Cooldowns().Check(id, fleet.Upload, "OPS-1")
		return cooling && issue && reason == fleet.ReasonTenantQuota
	}
	if !relaytest.Eventually(3*time.Second, func() bool {
		for _, c := range env.fleetCooldowns() {
			if env.kv("/jira-relay/fleet/cooldowns/"+c.key) == nil {
				return false
			}
		}
		return held(env.relay) && held(env.capped)
	}) {
		t.Fatalf("the cool-downs relay-2 took are not in etcd, or relay-1 does not hold them: %q", env.keys("/jira-relay/fleet/"))
	}
	for _, c := range env.fleetCooldowns() {
		if kv := env.kv("/jira-relay/fleet/cooldowns/" + c.key); kv.Lease == 0 {
			t.Errorf("%s is on no lease", kv.Key)
		}
	}

	const download = "GET /v1/instances/{id}/attachments/{attachmentId}/content"
	const upload = "POST /v1/instances/{id}/issues/{issue}/attachments"
	for _, r := range []*relaytest.Relay{env.relay, env.capped} {
		a := call(t, "GET", r.URL+"/v1/instances/"+id+"/attachments/10001/content", nil,
			"X-Relay-Key", env.acme.Client, "Authorization", "Bearer jira-token")
		env.cooldownRefusal(download, a, 560)
		a = call(t, "POST", r.URL+"/v1/instances/"+id+"/issues/OPS-1/attachments?filename=a.txt", "hello",
			"X-Relay-Key", env.acme.Client, "Authorization", "Bearer jira-token", "Content-Type", "text/plain")
		env.cooldownRefusal(upload, a, 560)
	}
}

// cooldownRefusal checks a refusal by a cool-down of Jira's tenant quota:
// 429 rate_limited_jira_cooldown, Retry-After the time left (at least
// minLeft s), RateLimit-Reason Jira's, each documented for the operation.
func (env *runbookEnv) cooldownRefusal(op string, a relaytest.Answer, minLeft int) {
	t := env.t
	t.Helper()
	if a.Status != 429 || a.Code() != "rate_limited_jira_cooldown" {
		t.Errorf("%s during a cool-down: %d %s, want 429 rate_limited_jira_cooldown", op, a.Status, a.Body)
		return
	}
	if got := a.Header.Get("RateLimit-Reason"); got != fleet.ReasonTenantQuota {
		t.Errorf("%s during a cool-down: RateLimit-Reason %q, want Jira's %q", op, got, fleet.ReasonTenantQuota)
	}
	if s, err := strconv.Atoi(a.Header.Get("Retry-After")); err != nil || s < minLeft || s > 600 {
		t.Errorf("%s during a cool-down: Retry-After %q, want the time left (%d to 600 s)", op, a.Header.Get("Retry-After"), minLeft)
	}
	env.documented(op, a)
	env.documentedHeader(op, a, "RateLimit-Reason")
}

// documentedHeader checks that docs/openapi.yaml documents the header for
// the answer's status of the operation, and that its value fits.
func (env *runbookEnv) documentedHeader(op string, a relaytest.Answer, name string) {
	t := env.t
	t.Helper()
	d := loadOpenAPI(t)
	for _, o := range d.ops(t) {
		if o.key() != op {
			continue
		}
		doc := d.response(t, o, a.Status)
		hs, _ := doc["headers"].(map[string]any)
		h, ok := hs[name]
		if !ok {
			t.Errorf("openapi.yaml: %s %d does not document the header %s", op, a.Status, name)
			return
		}
		if err := d.validateSchema(d.mustRef(t, h)["schema"], a.Header.Get(name), "header "+name); err != nil {
			t.Errorf("openapi.yaml: %s %d: %v", op, a.Status, err)
		}
		return
	}
	t.Errorf("openapi.yaml has no operation %s", op)
}

var cooldownLeftRe = regexp.MustCompile(`(?m)^(\S+)\t(-?[0-9]+) s left\t(\{.*\})$`)

// fleetAfter checks what the section showed (the members, the cool-downs
// with their time left, relay-2's fleet metrics) and that deleting the
// tenant's cool-downs by hand cleared them on both relays.
func (env *runbookEnv) fleetAfter(out string) {
	t := env.t
	id := env.acme.ID
	// The members: one key each, on a lease of --fleet-ttl.
	for _, r := range []string{"relay-1", "relay-2"} {
		env.mustContain("fleet: members", out, "/jira-relay/fleet/members/"+r+"\n"+`{"id":"`+r+`","addr":"127.0.0.1:`)
	}
	env.mustContain("fleet: members", out, "\n2 relays in the fleet\n", "/jira-relay/fleet/members/relay-1: lease ", "/jira-relay/fleet/members/relay-2: lease ", "granted with TTL(10s)")

	// The cool-downs: scope, seconds left, and the value relay-2 wrote.
	left := map[string]int{}
	for _, m := range cooldownLeftRe.FindAllStringSubmatch(out, -1) {
		left[m[1]], _ = strconv.Atoi(m[2])
		for _, c := range env.fleetCooldowns() {
			if m[1] == c.key && !strings.Contains(m[3], `,"reason":"`+c.reason+`","relay":"relay-2","written":"`) {
				t.Errorf("fleet: cool-down %s holds %s, want Jira's reason %s and relay-2", c.key, m[3], c.reason)
			}
		}
	}
	if l, ok := left["tenant/"+id]; !ok || l < 540 || l > 600 {
		t.Errorf("fleet: the tenant's cool-down has %d s left (listed: %v), want about 600:\n%s", l, ok, out)
	}
	if l, ok := left["issue/"+id+"/OPS-1"]; !ok || l < 0 || l > 30 {
		t.Errorf("fleet: the issue's cool-down has %d s left (listed: %v), want up to 30:\n%s", l, ok, out)
	}
	if len(left) != 2 {
		t.Errorf("fleet: %d cool-downs listed, want the 2 relay-2 took: %v", len(left), left)
	}
	env.mustContain("fleet: one tenant's cool-downs", out, "/jira-relay/fleet/cooldowns/tenant/"+id+"\n", "/jira-relay/fleet/cooldowns/issue/"+id+"/OPS-1\n")

	// relay-2's metrics: the members, its shares, its active cool-downs by
	// scope, its writes (one per scope: none per request), its refusals.
	env.mustContain("fleet: metrics", out,
		"relay_fleet_members 2\n",
		// Its share of the defaults (100 a second, bursts of 200, 32
		// streams) among two relays.
		`relay_fleet_share{limit="instance_rps"} 50`+"\n",
		`relay_fleet_share{limit="instance_burst"} 100`+"\n",
		`relay_fleet_share{limit="instance_max_streams"} 16`+"\n",
		`relay_fleet_cooldowns{scope="tenant"} 1`+"\n",
		`relay_fleet_cooldowns{scope="issue"} 1`+"\n",
		`relay_fleet_cooldowns{scope="global"} 0`+"\n",
		`relay_fleet_cooldown_writes_total{result="ok"} 2`+"\n",
		`relay_fleet_keys_ignored_total 0`+"\n",
		`relay_ratelimit_refusals_total{reason="jira_cooldown"} 2`+"\n")
	// Every relay_fleet_ metric the relay serves is in operations.md, and
	// every one operations.md names is served.
	doc := string(readRepoFile(t, "docs/operations.md"))
	named := regexp.MustCompile(`relay_fleet_[a-z_]+`).FindAllString(doc, -1)
	served := regexp.MustCompile(`(?m)^relay_fleet_[a-z_]+`).FindAllString(out, -1)
	for _, n := range served {
		if !slices.Contains(named, n) {
			t.Errorf("the relay serves %s, which operations.md does not name", n)
		}
	}
	for _, n := range named {
		if !slices.Contains(served, n) {
			t.Errorf("operations.md names %s, which the relay does not serve", n)
		}
	}

	// Deleted by hand: gone from etcd, and neither relay holds them.
	env.mustContain("fleet: clear", out, "\nissue: 1 deleted\n", "\n0 cool-downs left\n")
	if k := env.keys("/jira-relay/fleet/cooldowns/"); len(k) != 0 {
		t.Errorf("fleet: cool-down keys left after the runbook deleted the tenant's: %q", k)
	}
	free := func(r *relaytest.Relay) bool {
		_, _, tenant := r.Server.Cooldowns().Check(id, fleet.Download, "")
		_, _, issue := r.Server.Cooldowns().Check(id, fleet.Upload, "OPS-1")
		return !tenant && !issue
	}
	if !relaytest.Eventually(time.Second, func() bool { return free(env.relay) && free(env.capped) }) {
		t.Error("fleet: a relay still holds the tenant's cool-downs after they were deleted from etcd")
	}
	if v := env.capped.Metric(`relay_fleet_cooldowns{scope="tenant"}`); v != 0 {
		t.Errorf(`fleet: relay_fleet_cooldowns{scope="tenant"} %v after the delete, want 0`, v)
	}
}
