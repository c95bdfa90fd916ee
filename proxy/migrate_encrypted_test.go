package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/relaytest"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// storeFixture is a store written by an older relay (store/testdata):
// every key under the prefix, its value, whether it was on a lease, and
// the keys its tenants were registered with.
type storeFixture struct {
	Instances []string             `json:"instances"`
	Keys      map[string][2]string `json:"keys"`
	KVs       []etcdtest.FixtureKV `json:"kvs"`
}

func readFixture(t *testing.T, name string) *storeFixture {
	t.Helper()
	b, err := os.ReadFile("../store/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var f storeFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return &f
}

// TestMigrateLayout2IntoEncryptionThroughTheAPI: a store written by the
// relay of layout 2 without encryption (store/testdata/layout-v2.json,
// itself layout-v1.json migrated by that relay) is migrated by a relay
// started with a key file: every user, mapping and configuration of the
// old store reads back the same through the API, and afterwards etcd's
// keys hold no user, conversation or message id, the tenants' data is
// sealed, and the records name keyed tokens.
func TestMigrateLayout2IntoEncryptionThroughTheAPI(t *testing.T) {
	t.Parallel()
	cli, prefix := etcdtest.Shared(t)
	ctx := context.Background()
	f := readFixture(t, "layout-v2.json")
	etcdtest.PutFixture(t, cli, prefix, f.KVs)
	r := relaytest.StartWithEtcd(t, cli, func(c *configs.Config) {
		c.EtcdPrefix = prefix
		c.EncryptionKeyFile = writeKeyFile(t, "k1")
	})
	api := relaytest.NewClient(t, r.URL)

	// What the old store held, from the layout-1 records it was made of.
	type rec struct {
		users    []store.User
		mappings []store.Mapping
		config   string
	}
	want := map[string]*rec{}
	for _, id := range f.Instances {
		want[id] = &rec{}
	}
	var ids []string // the outside ids that must leave etcd's keys
	for _, kv := range readFixture(t, "layout-v1.json").KVs {
		rest, ok := strings.CutPrefix(kv.Key, "instances/")
		if !ok {
			continue
		}
		id, rest, _ := strings.Cut(rest, "/")
		switch kind, _, _ := strings.Cut(rest, "/"); kind {
		case "users":
			var u store.User
			if err := json.Unmarshal([]byte(kv.Value), &u); err != nil {
				t.Fatal(err)
			}
			want[id].users = append(want[id].users, u)
			ids = append(ids, u.UserID)
		case "mappings":
			var m store.Mapping
			if err := json.Unmarshal([]byte(kv.Value), &m); err != nil {
				t.Fatal(err)
			}
			want[id].mappings = append(want[id].mappings, m)
			ids = append(ids, m.MailID)
			if m.ConversationID != "" {
				ids = append(ids, m.ConversationID)
			}
		case "config":
			want[id].config = kv.Value
		}
	}
	if n := len(want[f.Instances[0]].mappings) + len(want[f.Instances[0]].users); n == 0 || len(ids) == 0 {
		t.Fatal("the fixture's records were not read: the test would check nothing")
	}
	for id, w := range want {
		p := "/v1/instances/" + id
		client := f.Keys[id][0]
		for _, u := range w.users {
			res := api.Do("GET", p+"/users/"+url.PathEscape(u.UserID), client, nil)
			if got := res.JSON(t); res.Status != 200 || got["userId"] != u.UserID || got["name"] != u.Name || got["email"] != u.Email {
				t.Errorf("%s: user %q after the migration: %s", id, u.UserID, res)
			}
		}
		for _, m := range w.mappings {
			res := api.Do("GET", p+"/mappings?mailId="+url.QueryEscape(m.MailID)+"&userId="+url.QueryEscape(m.UserID), client, nil)
			found := false
			for _, g := range res.JSON(t)["mappings"].([]any) {
				g := g.(map[string]any)
				jira := g["jira"].(map[string]any)
				if g["conversationId"] == nilIfEmpty(m.ConversationID) && jira["id"] == m.Jira.ID && jira["key"] == m.Jira.Key {
					found = true
				}
			}
			if res.Status != 200 || !found {
				t.Errorf("%s: mapping %s/%s/%s after the migration: %s", id, m.MailID, m.UserID, m.Jira.ID, res)
			}
			if m.ConversationID != "" {
				res := api.Do("GET", p+"/mappings?conversationId="+url.QueryEscape(m.ConversationID)+"&limit=1000", client, nil)
				if res.Status != 200 || !strings.Contains(string(res.Body), m.Jira.Key) {
					t.Errorf("%s: conversation %s after the migration: %s", id, m.ConversationID, res)
				}
			}
		}
		res := api.Do("GET", p+"/config", client, nil)
		var got, exp any
		if res.Status != 200 || json.Unmarshal(res.Body, &got) != nil || json.Unmarshal([]byte(w.config), &exp) != nil || !jsonEqual(got, exp) {
			t.Errorf("%s: config after the migration: %s, want %s", id, res, w.config)
		}
	}

	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var keys bytes.Buffer
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		keys.WriteString(k + "\n")
		if strings.Contains(k, "/d/") && (strings.Contains(k, "/users/") || strings.Contains(k, "/m/") || strings.Contains(k, "/reports/")) &&
			!strings.HasPrefix(string(kv.Value), "enc:v1:k1:") {
			t.Errorf("%s is not sealed after the migration", k)
		}
		if strings.HasSuffix(k, "/instance") && !strings.Contains(string(kv.Value), `"tokens":"hmac:k1"`) {
			t.Errorf("%s names no keyed tokens: %s", k, kv.Value)
		}
	}
	for _, id := range ids {
		for _, form := range []string{id, store.EscapeSegment(id), store.Token(id)} {
			if strings.Contains(keys.String(), form) {
				t.Errorf("%q stands in etcd's keys (as %q) after the migration", id, form)
			}
		}
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
