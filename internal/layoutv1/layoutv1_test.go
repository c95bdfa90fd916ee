package layoutv1_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/layoutv1"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.Main(m)) }

// kvsUnder reads every key and value under p, in key order.
func kvsUnder(t *testing.T, cli *clientv3.Client, p string) (keys []string, vals map[string]string, modRevs map[string]int64) {
	t.Helper()
	resp, err := cli.Get(context.Background(), p, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	vals, modRevs = map[string]string{}, map[string]int64{}
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
		vals[string(kv.Key)] = string(kv.Value)
		modRevs[string(kv.Key)] = kv.ModRevision
	}
	return keys, vals, modRevs
}

func putInstance(t *testing.T, cli *clientv3.Client, prefix, id string) {
	t.Helper()
	if _, err := cli.Put(context.Background(), layoutv1.InstanceKey(prefix, id), `{"id":"`+id+`"}`); err != nil {
		t.Fatal(err)
	}
}

// TestKeyLayout: the keys of TestKeyLayout at 143ce13 (store/store_test.go,
// the mapping's five keys), each holding the mapping's JSON, written in one
// transaction; the lookup by conversation finds it; a link again changes
// nothing; a new issue key moves the issuekey entry; without the instance
// record nothing is written.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	cli, prefix := etcdtest.Shared(t)
	ctx := context.Background()
	id := "l735orlfk5ajqxyjir5mrl2jju"
	putInstance(t, cli, prefix, id)
	m := store.Mapping{ConversationID: "AAQk/x+y=", MailID: "<a/b@c>", UserID: "1220", App: "Jira",
		Jira:      store.JiraRef{ID: "10710", Key: "ITSM-34", ProjectID: "10200"},
		CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := layoutv1.Link(ctx, cli, prefix, id, m); err != nil {
		t.Fatal(err)
	}
	got, vals, revs := kvsUnder(t, cli, prefix)
	p := prefix + "instances/" + id + "/"
	want := []string{
		p + "index/conversation/AAQk%2Fx+y=/1220/%3Ca%2Fb@c%3E/10710",
		p + "index/issue/10710/1220/%3Ca%2Fb@c%3E",
		p + "index/issuekey/ITSM-34/1220/%3Ca%2Fb@c%3E/10710",
		p + "index/user/1220/%3Ca%2Fb@c%3E/10710",
		p + "instance",
		p + "mappings/%3Ca%2Fb@c%3E/1220/10710",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("keys:\n got %q\nwant %q", got, want)
	}
	wantVal := `{"conversationId":"AAQk/x+y=","mailId":"\u003ca/b@c\u003e","userId":"1220","app":"Jira","jira":{"id":"10710","key":"ITSM-34","projectId":"10200"},"createdAt":"2026-03-01T12:00:00Z"}`
	rev := revs[p+"mappings/%3Ca%2Fb@c%3E/1220/10710"]
	for _, k := range want {
		if k == p+"instance" {
			continue
		}
		if vals[k] != wantVal {
			t.Errorf("%s = %s\nwant %s", k, vals[k], wantVal)
		}
		if revs[k] != rev {
			t.Errorf("%s at revision %d, the record at %d: not one transaction", k, revs[k], rev)
		}
	}
	if ks := layoutv1.Keys(prefix, id, &m); !slices.Equal(ks, []string{want[5], want[0], want[1], want[2], want[3]}) {
		t.Errorf("Keys = %q", ks)
	}

	found, err := layoutv1.ByConversation(ctx, cli, prefix, id, "AAQk/x+y=", 0)
	if err != nil || len(found) != 1 || found[0] != m {
		t.Errorf("ByConversation = %+v, %v; want [%+v]", found, err, m)
	}
	if found, err := layoutv1.ByConversation(ctx, cli, prefix, id, "AAQk/x+y", 0); err != nil || len(found) != 0 {
		t.Errorf("ByConversation of another conversation = %+v, %v", found, err)
	}
	if _, err := layoutv1.ByConversation(ctx, cli, prefix, id, "AAQk", 1001); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("limit 1001: %v, want ErrInvalid", err)
	}

	// Linked again: nothing written.
	again := m
	again.CreatedAt = time.Time{}
	if err := layoutv1.Link(ctx, cli, prefix, id, again); err != nil {
		t.Fatal(err)
	}
	if _, _, r := kvsUnder(t, cli, prefix); r[want[5]] != rev {
		t.Errorf("a second link rewrote the record")
	}

	// A new issue key: the issuekey entry moves, the rest is rewritten.
	moved := m
	moved.Jira.Key = "ITSM-35"
	if err := layoutv1.Link(ctx, cli, prefix, id, moved); err != nil {
		t.Fatal(err)
	}
	got, vals, _ = kvsUnder(t, cli, prefix)
	if !slices.Contains(got, p+"index/issuekey/ITSM-35/1220/%3Ca%2Fb@c%3E/10710") || slices.Contains(got, want[2]) || len(got) != 6 {
		t.Errorf("after the key changed: %q", got)
	}
	if !strings.Contains(vals[want[5]], `"key":"ITSM-35"`) || !strings.Contains(vals[want[5]], `"createdAt":"2026-03-01T12:00:00Z"`) {
		t.Errorf("record after the key changed: %s", vals[want[5]])
	}

	// No instance record: ErrNotFound, nothing written.
	if err := layoutv1.Link(ctx, cli, prefix, "ajvvvzelql2hxnfewg57h2g5we", m); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown instance: %v, want ErrNotFound", err)
	}
	if got, _, _ := kvsUnder(t, cli, prefix+"instances/ajvvvzelql2hxnfewg57h2g5we/"); len(got) != 0 {
		t.Errorf("unknown instance: wrote %q", got)
	}
}

// TestSameAsTheOldCode: the mappings of store/testdata/layout-v1.json, a
// store written by the layout-1 code itself (143ce13), linked again through
// Link, give the same keys with the same values, byte for byte.
func TestSameAsTheOldCode(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../store/testdata/layout-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Instances []string `json:"instances"`
		KVs       []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	cli, prefix := etcdtest.Shared(t)
	ctx := context.Background()
	for _, id := range f.Instances {
		putInstance(t, cli, prefix, id)
	}
	isMapping := func(key string) bool { return strings.Contains(key, "/mappings/") || strings.Contains(key, "/index/") }
	want := map[string]string{}
	n := 0
	for _, kv := range f.KVs {
		if !isMapping(kv.Key) {
			continue
		}
		want[prefix+kv.Key] = kv.Value
		if !strings.Contains(kv.Key, "/mappings/") {
			continue
		}
		var m store.Mapping
		if err := json.Unmarshal([]byte(kv.Value), &m); err != nil {
			t.Fatal(err)
		}
		id := strings.Split(kv.Key, "/")[1]
		if err := layoutv1.Link(ctx, cli, prefix, id, m); err != nil {
			t.Fatalf("link %s: %v", kv.Key, err)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("the fixture has %d mappings", n)
	}
	keys, vals, _ := kvsUnder(t, cli, prefix)
	got := map[string]string{}
	for _, k := range keys {
		if isMapping(k) {
			got[k] = vals[k]
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d mapping keys written, the old code wrote %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s:\n got %q\nwant %q", k, got[k], v)
		}
	}
}
