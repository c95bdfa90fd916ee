package store_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// newStore gives the test a Store under a key prefix of its own on the
// shared etcd member, with its cache running until the test ends; the
// client and the prefix are for looking at etcd directly.
func newStore(t *testing.T) (*store.Store, *clientv3.Client, string) {
	t.Helper()
	cli, p := etcdtest.Shared(t)
	return runStore(t, cli, p), cli, p
}

// runStore starts a Store (a relay's) under prefix p whose cache runs until
// the test ends.
func runStore(t *testing.T, cli *clientv3.Client, p string) *store.Store {
	t.Helper()
	return runStoreWith(t, cli, cli, store.Options{Prefix: p})
}

func runStoreWith(t *testing.T, cli *clientv3.Client, w clientv3.Watcher, o store.Options) *store.Store {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
	s, err := store.New(cli, w, o)
	if err != nil {
		t.Fatal(err)
	}
	if o.Lease != nil {
		if err := s.Migrate(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-s.Synced():
	case <-time.After(30 * time.Second):
		t.Fatal("cache did not sync")
	}
	return s
}

func register(t *testing.T, s *store.Store, url string) *store.Registration {
	t.Helper()
	r, err := s.Register(context.Background(), store.NewInstance{
		URL: url, JiraVersion: "1001.0.0-SNAPSHOT", AddinVersion: "4.2.0",
		License: &store.License{Key: "LIC-1", ExpiresAt: time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC), Seats: 250},
	})
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	return r
}

// keysUnder lists every key under p, as an operator's `etcdctl get --prefix --keys-only` would.
func keysUnder(t *testing.T, cli *clientv3.Client, p string) []string {
	t.Helper()
	resp, err := cli.Get(context.Background(), p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func TestRegisterAuthenticateAndRoles(t *testing.T) {
	t.Parallel()
	s, cli, prefix := newStore(t)
	r := register(t, s, "https://acme.atlassian.net")
	ctx := context.Background()

	if !store.ValidInstanceID(r.Instance.ID) {
		t.Fatalf("instance id %q has not the documented form", r.Instance.ID)
	}
	if len(r.ClientKey) < 36 || len(r.AdminKey) < 36 || r.ClientKey == r.AdminKey {
		t.Fatalf("keys too short or equal: %q %q", r.ClientKey, r.AdminKey)
	}
	for _, tc := range []struct {
		key  string
		want store.Role
	}{
		{r.ClientKey, store.RoleClient},
		{r.AdminKey, store.RoleAdmin},
		{"", store.RoleNone},
		{r.ClientKey + "x", store.RoleNone},
		{store.HashKey([]byte(r.ClientKey)), store.RoleNone}, // the stored hash is not a key
	} {
		_, role, err := s.Authenticate(ctx, []byte(r.Instance.ID), []byte(tc.key))
		if err != nil || role != tc.want {
			t.Errorf("Authenticate(%q) = %v, %v; want %v", tc.key, role, err, tc.want)
		}
	}
	if _, _, err := s.Authenticate(ctx, []byte("aaaaaaaaaaaaaaaaaaaaaaaaaa"), []byte(r.ClientKey)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown instance: err = %v, want ErrNotFound", err)
	}

	// The keys themselves are nowhere in etcd; only their hashes are.
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 4 {
		t.Fatalf("%d keys after one registration, want 4 (URL index, data id index, instance, tenant marker)", len(resp.Kvs))
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), r.ClientKey) || strings.Contains(string(kv.Value), r.AdminKey) {
			t.Fatalf("a key is stored in clear under %s", kv.Key)
		}
	}

	// The same URL twice → ErrExists.
	_, err = s.Register(ctx, store.NewInstance{URL: "https://acme.atlassian.net", JiraVersion: "1", AddinVersion: "1"})
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second register: err = %v, want ErrExists", err)
	}
}

func TestRegisterRejectsBadFields(t *testing.T) {
	t.Parallel()
	s, cli, prefix := newStore(t)
	for _, n := range []store.NewInstance{
		{URL: "https://a.atlassian.net", JiraVersion: "", AddinVersion: "1"},
		{URL: "https://a.atlassian.net", JiraVersion: "1", AddinVersion: "4.2 beta"},
		{URL: "https://a.atlassian.net", JiraVersion: strings.Repeat("1", 65), AddinVersion: "1"},
		{URL: "https://a.atlassian.net", JiraVersion: "1", AddinVersion: "1", License: &store.License{Key: ""}},
		{URL: "https://a.atlassian.net", JiraVersion: "1", AddinVersion: "1", License: &store.License{Key: "k", Seats: 1}},
		{URL: "https://a.atlassian.net", JiraVersion: "1", AddinVersion: "1", License: &store.License{Key: "k", ExpiresAt: time.Now(), Seats: -1}},
	} {
		if _, err := s.Register(context.Background(), n); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Register(%+v) err = %v, want ErrInvalid", n, err)
		}
	}
	if k := keysUnder(t, cli, prefix); len(k) != 0 {
		t.Fatalf("rejected registrations wrote %v", k)
	}
}

func TestRotateClientKeyStopsOldKeyAtOnce(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	r := register(t, s, "https://acme.atlassian.net")
	ctx := context.Background()
	nk, _, err := s.RotateClientKey(ctx, r.Instance.ID)
	if err != nil {
		t.Fatal(err)
	}
	if role := roleOf(t, s, r.Instance.ID, r.ClientKey); role != store.RoleNone {
		t.Fatalf("old client key still has role %v", role)
	}
	if role := roleOf(t, s, r.Instance.ID, nk); role != store.RoleClient {
		t.Fatalf("new client key has role %v", role)
	}
	if role := roleOf(t, s, r.Instance.ID, r.AdminKey); role != store.RoleAdmin {
		t.Fatalf("admin key changed by a client key rotation: %v", role)
	}
}

// roleOf is the role key has at instance id; any error fails the test.
func roleOf(t *testing.T, s *store.Store, id, key string) store.Role {
	t.Helper()
	_, role, err := s.Authenticate(context.Background(), []byte(id), []byte(key))
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return role
}

func TestSecondRelaySeesChangesThroughItsWatch(t *testing.T) {
	t.Parallel()
	cli, prefix := etcdtest.Shared(t)
	a, b := runStore(t, cli, prefix), runStore(t, cli, prefix)
	ctx := context.Background()
	r := register(t, a, "https://acme.atlassian.net")

	// b finds an instance registered on a moments ago (cache or fallback).
	if _, role, err := b.Authenticate(ctx, []byte(r.Instance.ID), []byte(r.ClientKey)); err != nil || role != store.RoleClient {
		t.Fatalf("b: %v %v", role, err)
	}
	nk, _, err := a.RotateClientKey(ctx, r.Instance.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutConfig(ctx, r.Instance.ID, []byte(`{"theme":"dark"}`), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		_, role, err := b.Authenticate(ctx, []byte(r.Instance.ID), []byte(nk))
		if err != nil {
			t.Fatal(err)
		}
		d, err := b.Config(ctx, r.Instance.ID)
		if err != nil {
			t.Fatal(err)
		}
		return role == store.RoleClient && string(d.Body) == `{"theme":"dark"}`
	})
	if role := roleOf(t, b, r.Instance.ID, r.ClientKey); role != store.RoleNone {
		t.Fatal("b still accepts the rotated key")
	}
	if err := a.DeleteInstance(ctx, r.Instance.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		n, _ := b.CacheSizes()
		return n == 0
	})
	if _, _, err := b.Authenticate(ctx, []byte(r.Instance.ID), []byte(nk)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("b after delete: %v", err)
	}
}

// gatedWatcher is the client's real watcher with the first Watch call held
// until the test opens the gate: the test can change etcd and compact it
// between the cache's first list and its watch. Later calls pass straight on.
type gatedWatcher struct {
	clientv3.Watcher
	entered chan struct{} // closed when the first call arrives
	gate    chan struct{} // closed by the test
	calls   atomic.Int32
}

func (g *gatedWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	if g.calls.Add(1) == 1 {
		close(g.entered)
		select {
		case <-g.gate:
		case <-ctx.Done():
		}
	}
	return g.Watcher.Watch(ctx, key, opts...)
}

// TestCacheRelistsAfterCompaction: changes made after the cache's list,
// then compacted away before its watch starts, reach the cache only by a
// new list, which the watch's compaction error must trigger.
func TestCacheRelistsAfterCompaction(t *testing.T) {
	t.Parallel()
	_, cli := etcdtest.Start(t) // its own member: the test compacts it
	const prefix = "/jira-relay/"
	ctx := context.Background()
	other := runStore(t, cli, prefix) // another relay, writing
	r := register(t, other, "https://acme.atlassian.net")

	gw := &gatedWatcher{Watcher: cli, entered: make(chan struct{}), gate: make(chan struct{})}
	logs := new(logBuffer)
	s := runStoreWith(t, cli, gw, store.Options{Prefix: prefix, Logger: logs.logger()})
	select {
	case <-gw.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the cache did not start its watch")
	}
	for i := range 20 {
		if _, err := other.PutConfig(ctx, r.Instance.ID, []byte(fmt.Sprintf(`{"n":%d}`, i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	// The cache has not seen the changes: it listed before them and its
	// watch has not started.
	if d, err := s.Config(ctx, r.Instance.ID); err != nil || string(d.Body) != "{}" {
		t.Fatalf("before the watch: config %s, %v; want the listed {}", d.Body, err)
	}
	close(gw.gate)
	eventually(t, func() bool {
		d, err := s.Config(ctx, r.Instance.ID)
		if err != nil {
			t.Fatal(err)
		}
		return string(d.Body) == `{"n":19}`
	})
	if !strings.Contains(logs.String(), "watch revision compacted") {
		t.Errorf("the cache did not log its watch's compaction:\n%s", logs)
	}
	if n := gw.calls.Load(); n < 2 {
		t.Errorf("%d watch calls, want a second one after the new list", n)
	}
}

// logBuffer collects a Store's log lines (text handler), safe for the
// cache's goroutine and the test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func TestConfigCompareAndSwap(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	ctx := context.Background()
	r := register(t, s, "https://acme.atlassian.net")
	id := r.Instance.ID

	d, err := s.Config(ctx, id)
	if err != nil || string(d.Body) != "{}" || d.Revision != 0 {
		t.Fatalf("fresh config = %q@%d, %v; want {}@0", d.Body, d.Revision, err)
	}
	zero := int64(0)
	d1, err := s.PutConfig(ctx, id, []byte(`{"a":1}`), &zero)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutConfig(ctx, id, []byte(`{"a":2}`), &zero); !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("stale revision: %v, want ErrPrecondition", err)
	}
	d2, err := s.PutConfig(ctx, id, []byte(`{"a":3}`), &d1.Revision)
	if err != nil || d2.Revision <= d1.Revision {
		t.Fatalf("CAS with current revision: %v", err)
	}
	got, err := s.Config(ctx, id)
	if err != nil || string(got.Body) != `{"a":3}` || got.Revision != d2.Revision {
		t.Fatalf("config = %s@%d, %v", got.Body, got.Revision, err)
	}
	if _, err := s.PutConfig(ctx, "aaaaaaaaaaaaaaaaaaaaaaaaaa", []byte(`{}`), nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("config of unknown instance: %v", err)
	}
}

func mapping(conv, mail, user, issueID, key string) store.Mapping {
	return store.Mapping{ConversationID: conv, MailID: mail, UserID: user, App: "Jira",
		Jira: store.JiraRef{ID: issueID, Key: key, ProjectID: "10200"}}
}

func TestMappingsLinkIdempotentLookupPageUnlink(t *testing.T) {
	t.Parallel()
	s, cli, prefix := newStore(t)
	ctx := context.Background()
	id := register(t, s, "https://acme.atlassian.net").Instance.ID
	conv := "AAQkADQ2ZWI1NWUzLWFjNTgtNDhkNi05MTRlLTE0ZjkzYjhiZmIxYgAQACGaySOzKTNItlx6EtoJ8kc="
	mail := "<AM4PR0501MB272391106D5F7A7805F586AD9CC40@AM4PR0501MB2723.eurprd05.prod.outlook.com>"

	m := mapping(conv, mail, "1220", "10710", "ITSM-34")
	if _, created, err := s.LinkMapping(ctx, id, m); err != nil || !created {
		t.Fatalf("first link: created=%v err=%v", created, err)
	}
	if _, created, err := s.LinkMapping(ctx, id, m); err != nil || created {
		t.Fatalf("same link again: created=%v err=%v (want idempotent)", created, err)
	}
	// 250 more mails of the same conversation, by two users.
	for i := range 250 {
		user := []string{"1220", "u/2"}[i%2]
		mm := mapping(conv, fmt.Sprintf("<m%d@x>", i), user, fmt.Sprint(20000+i), fmt.Sprintf("ITSM-%d", 100+i))
		if _, _, err := s.LinkMapping(ctx, id, mm); err != nil {
			t.Fatal(err)
		}
	}
	page := func(q store.MappingQuery) []store.Mapping {
		var all []store.Mapping
		for {
			ms, next, err := s.Mappings(ctx, id, q)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, ms...)
			if next == "" {
				return all
			}
			q.Cursor = next
		}
	}
	if got := page(store.MappingQuery{By: store.ByConversation, Value: conv, Limit: 7}); len(got) != 251 {
		t.Fatalf("by conversation, paged by 7: %d mappings, want 251", len(got))
	}
	if got := page(store.MappingQuery{By: store.ByConversation, Value: conv, UserID: "u/2", Limit: 1000}); len(got) != 125 {
		t.Fatalf("by conversation of user u/2: %d, want 125", len(got))
	}
	if got := page(store.MappingQuery{By: store.ByMail, Value: mail}); len(got) != 1 || got[0].Jira.Key != "ITSM-34" {
		t.Fatalf("by mail: %+v", got)
	}
	if got := page(store.MappingQuery{By: store.ByIssueID, Value: "10710"}); len(got) != 1 {
		t.Fatalf("by issue id: %+v", got)
	}
	if got := page(store.MappingQuery{By: store.ByIssueKey, Value: "ITSM-34"}); len(got) != 1 {
		t.Fatalf("by issue key: %+v", got)
	}

	// The issue moved to another project: the same link is updated in place,
	// the old key no longer finds it, the new one does.
	moved := m
	moved.Jira.Key, moved.Jira.ProjectID = "NEW-1", "10300"
	if got, created, err := s.LinkMapping(ctx, id, moved); err != nil || created || got.Jira.Key != "NEW-1" {
		t.Fatalf("relink moved issue: %+v created=%v err=%v", got, created, err)
	}
	if got := page(store.MappingQuery{By: store.ByIssueKey, Value: "ITSM-34"}); len(got) != 0 {
		t.Fatalf("old key still finds %d mappings", len(got))
	}
	if got := page(store.MappingQuery{By: store.ByIssueKey, Value: "NEW-1"}); len(got) != 1 {
		t.Fatalf("new key finds %d mappings", len(got))
	}

	// Unlink: afterwards no key of that mapping remains.
	before := len(keysUnder(t, cli, prefix))
	if n, err := s.UnlinkMappings(ctx, id, mail, "10710", ""); err != nil || n != 1 {
		t.Fatalf("unlink: n=%d err=%v", n, err)
	}
	if after := len(keysUnder(t, cli, prefix)); before-after != 5 {
		t.Fatalf("unlink removed %d keys, want 5 (record + 4 index entries)", before-after)
	}
	if _, err := s.UnlinkMappings(ctx, id, mail, "10710", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second unlink: %v", err)
	}
}

func TestMappingQueriesRejectBadInput(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	id := register(t, s, "https://acme.atlassian.net").Instance.ID
	for _, q := range []store.MappingQuery{
		{By: "subject", Value: "x"},
		{By: store.ByConversation, Value: ""},
		{By: store.ByConversation, Value: "a\nb"},
		{By: store.ByConversation, Value: strings.Repeat("a", 1025)},
		{By: store.ByIssueID, Value: "ITSM-1"},
		{By: store.ByIssueKey, Value: "itsm-1"},
		{By: store.ByMail, Value: "x", Limit: 1001},
		{By: store.ByMail, Value: "x", Limit: -1},
		{By: store.ByMail, Value: "x", Cursor: "!!!"},
		{By: store.ByMail, Value: "x", UserID: "\x00"},
	} {
		if _, _, err := s.Mappings(context.Background(), id, q); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("Mappings(%+v) err = %v, want ErrInvalid", q, err)
		}
	}
	for _, m := range []store.Mapping{
		mapping("c", "", "u", "1", "A-1"),
		mapping("c", "m", "", "1", "A-1"),
		mapping("c", "m", "u", "x1", "A-1"),
		mapping("c", "m", "u", "1", "a-1"),
		mapping("c", "m", "u", "1", "A1"),
		mapping("c\r\n", "m", "u", "1", "A-1"),
		{MailID: "m", UserID: "u", Jira: store.JiraRef{ID: "1", Key: "AB-1", ProjectID: "p"}},
	} {
		if _, _, err := s.LinkMapping(context.Background(), id, m); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("LinkMapping(%+v) err = %v, want ErrInvalid", m, err)
		}
	}
}

func TestDeleteUserErasesEveryKeyOfTheUser(t *testing.T) {
	t.Parallel()
	s, cli, prefix := newStore(t)
	ctx := context.Background()
	id := register(t, s, "https://acme.atlassian.net").Instance.ID
	if _, created, err := s.PutUser(ctx, id, store.User{UserID: "mia", Name: "Mia Krystof", Email: "mia@example.com"}); err != nil || !created {
		t.Fatalf("put user: %v %v", created, err)
	}
	if _, created, err := s.PutUser(ctx, id, store.User{UserID: "mia", Name: "Mia K.", Email: "mia@example.com"}); err != nil || created {
		t.Fatalf("replacing a user: created=%v err=%v", created, err)
	}
	if _, _, err := s.PutUser(ctx, id, store.User{UserID: "bob", Name: "Bob", Email: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	for i := range 60 { // more than one 128-op transaction's worth
		if _, _, err := s.LinkMapping(ctx, id, mapping("c", fmt.Sprintf("<%d@x>", i), "mia", fmt.Sprint(i+1), fmt.Sprintf("AB-%d", i+1))); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.LinkMapping(ctx, id, mapping("c", "<b@x>", "bob", "1", "AB-1")); err != nil {
		t.Fatal(err)
	}
	exp, err := s.ExportUser(ctx, id, "mia")
	if err != nil || exp.User.Name != "Mia K." || len(exp.Mappings) != 60 {
		t.Fatalf("export: %+v %v", exp, err)
	}
	if err := s.DeleteUser(ctx, id, "mia"); err != nil {
		t.Fatal(err)
	}
	for _, k := range keysUnder(t, cli, prefix) {
		if strings.Contains(k, "mia") {
			t.Errorf("key of the erased user remains: %s", k)
		}
	}
	if exp, err := s.ExportUser(ctx, id, "bob"); err != nil || len(exp.Mappings) != 1 {
		t.Fatalf("bob's data was touched: %+v %v", exp, err)
	}
	if err := s.DeleteUser(ctx, id, "mia"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("erasing again: %v", err)
	}
	for _, u := range []store.User{
		{UserID: "x", Name: "", Email: "a@b.c"},
		{UserID: "x", Name: "X", Email: "not-an-address"},
		{UserID: "x", Name: "X", Email: "X <x@b.c>"},
		{UserID: "x\n", Name: "X", Email: "x@b.c"},
		{UserID: "x", Name: strings.Repeat("n", 257), Email: "x@b.c"},
	} {
		if _, _, err := s.PutUser(ctx, id, u); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutUser(%+v) err = %v, want ErrInvalid", u, err)
		}
	}
}

func TestDeleteInstanceErasesTheTenant(t *testing.T) {
	t.Parallel()
	s, cli, prefix := newStore(t)
	ctx := context.Background()
	a := register(t, s, "https://acme.atlassian.net").Instance.ID
	b := register(t, s, "https://other.atlassian.net").Instance.ID
	for _, id := range []string{a, b} {
		fillTenant(t, s, id, false)
	}
	if err := s.DeleteInstance(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, k := range keysUnder(t, cli, prefix) {
		if strings.Contains(k, a) || strings.Contains(k, "acme") {
			t.Errorf("key of the deleted instance remains: %s", k)
		}
	}
	if n := len(keysUnder(t, cli, prefix+"instances/"+b+"/")); n != 2 {
		t.Errorf("the other tenant has %d directory keys, want 2 (instance, config)", n)
	}
	bi, err := s.Instance(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(keysUnder(t, cli, prefix+"d/"+bi.DataID+"/")); n != 7 {
		t.Errorf("the other tenant has %d data keys, want 7 (marker, user, mapping + 4 index)", n)
	}
	// The URL is free again.
	register(t, s, "https://acme.atlassian.net")
	// Writes to a deleted instance are refused, not left as orphans.
	if _, _, err := s.PutUser(ctx, a, store.User{UserID: "u", Name: "U", Email: "u@x.io"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("user write to deleted instance: %v", err)
	}
	if _, _, err := s.LinkMapping(ctx, a, mapping("c", "<m@x>", "u", "1", "AB-1")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("mapping write to deleted instance: %v", err)
	}
	if err := s.DeleteInstance(ctx, a); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestKeyLayout pins the documented layout (docs/key-layout.md): operators
// paste these prefixes into etcdctl. Every kind of record is written through
// the API, and the keys then in etcd are exactly the documented ones.
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	cli, prefix := etcdtest.Shared(t)
	received := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli, Now: func() time.Time { return received }})
	ctx := context.Background()
	r, err := s.Register(ctx, store.NewInstance{URL: "https://acme.atlassian.net", CloudID: "0B6F1E3C-2A4D-4C5E-9F70-8A1B2C3D4E5F", JiraVersion: "1", AddinVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	id := r.Instance.ID
	if _, _, err := s.PutUser(ctx, id, store.User{UserID: "1220", Name: "Mia", Email: "mia@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutConfig(ctx, id, []byte(`{"x":1}`), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LinkMapping(ctx, id, mapping("AAQk/x+y=", "<a/b@c>", "1220", "10710", "ITSM-34")); err != nil {
		t.Fatal(err)
	}
	rep, err := s.AddErrorReport(ctx, id, store.ErrorReport{Message: "compose failed"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9]{13}-[0-9a-f]{12}$`).MatchString(rep.ID) || !strings.HasPrefix(rep.ID, fmt.Sprintf("%013d-", received.UnixMilli())) {
		t.Fatalf("error report id %q is not <millis of receipt, 13 digits>-<12 hex digits>", rep.ID)
	}
	got := keysUnder(t, cli, prefix)
	data := prefix + "d/" + r.Instance.DataID + "/"
	if !regexp.MustCompile(`^[a-z2-7]{6}$`).MatchString(r.Instance.DataID) {
		t.Fatalf("data id %q is not six characters of lower-case base32", r.Instance.DataID)
	}
	// Token = the first 9 bytes of SHA-256("jira-relay\x00" + id), base64url:
	// the operator's shell one-liner in docs/key-layout.md computes the same.
	conv, mail, user := store.Token("AAQk/x+y="), store.Token("<a/b@c>"), store.Token("1220")
	for v, tok := range map[string]string{"AAQk/x+y=": conv, "<a/b@c>": mail, "1220": user} {
		sum := sha256.Sum256([]byte("jira-relay\x00" + v))
		if want := base64.RawURLEncoding.EncodeToString(sum[:9]); tok != want || len(tok) != store.TokenLen {
			t.Errorf("Token(%q) = %q, want %q", v, tok, want)
		}
	}
	want := []string{
		prefix + "cloudids/0b6f1e3c-2a4d-4c5e-9f70-8a1b2c3d4e5f",
		data + "c/" + conv + "/" + user + "/" + mail + "/10710",
		data + "i/10710/" + user + "/" + mail,
		data + "k/ITSM-34/" + user + "/" + mail + "/10710",
		data + "m/" + mail + "/" + user + "/10710",
		data + "reports/" + rep.ID,
		data + "tenant",
		data + "u/" + user + "/" + mail + "/10710",
		data + "users/" + user,
		prefix + "dataids/" + r.Instance.DataID,
		prefix + "instances/" + id + "/config",
		prefix + "instances/" + id + "/instance",
		prefix + "layout",
		prefix + "urls/https%3A%2F%2Facme.atlassian.net",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("key layout:\n got %q\nwant %q", got, want)
	}
	// Index entries are keys only; the record holds the mapping once.
	for _, k := range want[1:4] {
		if v := valueOf(t, cli, k); v != "" {
			t.Errorf("index entry %s holds %q, want nothing", k, v)
		}
	}
	if v := valueOf(t, cli, want[4]); !strings.Contains(v, `"conversationId":"AAQk/x+y="`) || !strings.Contains(v, `"key":"ITSM-34"`) {
		t.Errorf("mapping record = %s", v)
	}
	for k, v := range map[string]string{data + "tenant": `{"instanceId":"` + id + `"}`, prefix + "dataids/" + r.Instance.DataID: `{"instanceId":"` + id + `"}`} {
		if got := valueOf(t, cli, k); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	if v := valueOf(t, cli, prefix+"layout"); !strings.HasPrefix(v, `{"version":3,`) {
		t.Errorf("layout = %s", v)
	}
	if v := valueOf(t, cli, prefix+"instances/"+id+"/instance"); !strings.Contains(v, `"tokens":"sha256"`) {
		t.Errorf("the record of a tenant written without a key file names no unkeyed tokens: %s", v)
	}
	resp, err := cli.Get(ctx, prefix+"urls/https%3A%2F%2Facme.atlassian.net")
	if err != nil {
		t.Fatal(err)
	}
	if v := string(resp.Kvs[0].Value); v != `{"instanceId":"`+id+`"}` {
		t.Errorf("URL index entry = %s", v)
	}
	resp, err = cli.Get(ctx, prefix+"cloudids/0b6f1e3c-2a4d-4c5e-9f70-8a1b2c3d4e5f")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `{"instanceId":"`+id+`"}` {
		t.Errorf("cloud id index entry = %v, %v", resp, err)
	}
	var rec map[string]any
	if got, err := cli.Get(ctx, prefix+"instances/"+id+"/instance"); err != nil || json.Unmarshal(got.Kvs[0].Value, &rec) != nil ||
		rec["deploymentType"] != "Cloud" || rec["cloudId"] != "0b6f1e3c-2a4d-4c5e-9f70-8a1b2c3d4e5f" {
		t.Errorf("instance record = %v, %v", rec, err)
	}
	// The erase removes the index entries with the tenant; the layout stays.
	if err := s.DeleteInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	if left := keysUnder(t, cli, prefix); !slices.Equal(left, []string{prefix + "layout"}) {
		t.Errorf("after the erase: %q", left)
	}
	// The documented default prefix.
	d, err := store.New(cli, cli, store.Options{})
	if err != nil || d.Prefix() != "/jira-relay/" {
		t.Errorf("default prefix %q, %v; want /jira-relay/", d.Prefix(), err)
	}
}

func valueOf(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %d keys", key, err, len(resp.Kvs))
	}
	return string(resp.Kvs[0].Value)
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fillTenant gives instance id a user, a mapping, a configuration and, with
// report, an error report: one of each kind of data a tenant holds.
func fillTenant(t *testing.T, s *store.Store, id string, report bool) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := s.PutUser(ctx, id, store.User{UserID: "u", Name: "U", Email: "u@x.io"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LinkMapping(ctx, id, mapping("c", "<m@x>", "u", "1", "AB-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutConfig(ctx, id, []byte(`{}`), nil); err != nil {
		t.Fatal(err)
	}
	if report {
		if _, err := s.AddErrorReport(ctx, id, store.ErrorReport{Message: "m"}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
}
