package main

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// shardsCLI runs `relay shards args...` against the clusters and returns
// its exit code and output.
func shardsCLI(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"shards"}, args...), env, &out, &errb)
	return code, out.String() + errb.String()
}

// TestCapacityOverShards: one shard fills up (its etcd at its quota): its
// tenants' writes get 507 store_full while their reads go on, tenants of
// the other shard write normally; `relay shards status` shows it;
// `relay shards move` takes a tenant off the full shard and its writes
// resume; nothing acknowledged is lost.
func TestCapacityOverShards(t *testing.T) {
	t.Parallel()
	dirE, dir := etcdtest.Start(t)
	fullE, full := etcdtest.StartWithQuota(t, 16<<20)
	roomyE, roomy := etcdtest.Start(t)
	shardFlag := "full=" + fullE.Endpoints()[0] + ",roomy=" + roomyE.Endpoints()[0]
	env := []string{"RELAY_ETCD_ENDPOINTS=" + dirE.Endpoints()[0], "RELAY_ETCD_SHARDS=" + shardFlag}
	r := relaytest.StartWith(t, relaytest.Options{
		Etcd:      dir,
		Mutate:    func(c *configs.Config) { c.EtcdShards = strings.Split(shardFlag, ",") },
		Shards:    map[string]*clientv3.Client{"full": full, "roomy": roomy},
		RoomEvery: 50 * time.Millisecond,
	})
	a := relaytest.NewClient(t, r.URL)
	A, B := a.MustRegister(t, "https://a.atlassian.net"), a.MustRegister(t, "https://b.atlassian.net")
	for ten, shard := range map[relaytest.Tenant]string{A: "full", B: "roomy"} {
		in, err := r.Store.Instance(context.Background(), ten.ID)
		if err != nil {
			t.Fatal(err)
		}
		if in.ShardName() != shard {
			code, out := shardsCLI(t, env, "move", "--instance", ten.ID, "--to", shard, "--grace", "10ms")
			if code != 0 || !strings.Contains(out, "moved "+ten.ID+" from "+in.ShardName()+" to "+shard) {
				t.Fatalf("move %s to %s: %d %s", ten.ID, shard, code, out)
			}
		}
	}
	acked := map[relaytest.Tenant][]string{}
	link := func(ten relaytest.Tenant, mail string) relaytest.Answer {
		res := a.Do("POST", "/v1/instances/"+ten.ID+"/mappings", ten.Client, relaytest.MappingBody("conv", mail, "u", "10001", "AB-1"))
		if res.Status == 201 {
			acked[ten] = append(acked[ten], mail)
		}
		return res
	}
	for i := range 20 {
		for _, ten := range []relaytest.Tenant{A, B} {
			if res := link(ten, fmt.Sprintf("<%d@x>", i)); res.Status != 201 {
				t.Fatalf("link: %d %s", res.Status, res.Body)
			}
		}
	}
	// Something else fills the full shard's etcd to its quota.
	pad := strings.Repeat("p", 1<<20)
	for i := 0; ; i++ {
		if _, err := full.Put(context.Background(), fmt.Sprintf("/pad/%d", i), pad); err != nil {
			if !strings.Contains(err.Error(), "database space exceeded") {
				t.Fatal(err)
			}
			break
		}
		if i > 64 {
			t.Fatal("the shard never filled")
		}
	}
	if res := link(A, "<late@x>"); res.Status != 507 || res.ErrCode(t) != "store_full" {
		t.Fatalf("a write of a tenant of the full shard: %d %s", res.Status, res.Body)
	}
	if res := a.Do("GET", "/v1/instances/"+A.ID+"/mappings?conversationId=conv&limit=1000", A.Client, nil); res.Status != 200 || strings.Count(string(res.Body), `"mailId"`) != 20 {
		t.Errorf("a read of a tenant of the full shard: %d, %d mappings: %s", res.Status, strings.Count(string(res.Body), `"mailId"`), relaytest.Clip(res.Body))
	}
	if res := link(B, "<late@x>"); res.Status != 201 {
		t.Errorf("a write of a tenant of the other shard: %d %s", res.Status, res.Body)
	}
	code, out := shardsCLI(t, env, "status")
	if code != 0 || !regexp.MustCompile(`(?m)^\s*full\s.*16\.0 MiB\s+(9\d|[1-9]\d\d+)%\s+1\s+0\s*$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\s*roomy\s.*\s1\s+0\s*$`).MatchString(out) || !regexp.MustCompile(`(?m)^\s*directory\s.*\s0\s+0\s*$`).MatchString(out) {
		t.Errorf("shards status: %d\n%s", code, out)
	}
	// Off the full shard: the tenant writes again.
	code, out = shardsCLI(t, env, "move", "--instance", A.ID, "--to", "roomy", "--grace", "10ms")
	if code != 0 || !regexp.MustCompile(`moved \S+ from full to roomy: \d+ keys copied, \d+ changes caught up, writes held \S+, \S+ in all`).MatchString(out) {
		t.Fatalf("move off the full shard: %d %s", code, out)
	}
	if !relaytest.Eventually(5*time.Second, func() bool { return link(A, "<after@x>").Status == 201 }) {
		t.Fatal("the moved tenant's writes did not resume")
	}
	for _, ten := range []relaytest.Tenant{A, B} {
		for _, mail := range acked[ten] {
			res := a.Do("GET", "/v1/instances/"+ten.ID+"/mappings?mailId="+url.QueryEscape(mail), ten.Client, nil)
			if res.Status != 200 || strings.Count(string(res.Body), `"mailId"`) != 1 {
				t.Errorf("acknowledged %s of %s: %d %s", mail, ten.ID, res.Status, res.Body)
			}
		}
	}
	// The usage errors.
	for _, args := range [][]string{{}, {"frobnicate"}, {"move", "--to", "roomy"}, {"move", "--instance", A.ID}, {"status", "--instance", A.ID}} {
		if code, out := shardsCLI(t, env, args...); code != exitUsage || !strings.Contains(out, "relay shards") {
			t.Errorf("shards %q: %d %s", args, code, out)
		}
	}
	if code, out := shardsCLI(t, env, "move", "--instance", A.ID, "--to", "nowhere"); code == 0 || !strings.Contains(out, "nowhere") {
		t.Errorf("a move to an unknown shard: %d %s", code, out)
	}
}
