package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/seal"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keyFile loads a key file of new keys named names, the first primary.
func keyFile(t testing.TB, names ...string) *seal.Keyring {
	t.Helper()
	var b strings.Builder
	b.WriteString("keys:\n")
	for _, n := range names {
		e, err := seal.Generate(n)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e)
	}
	p := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := seal.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// canaries are written through the store; none may be read in etcd's
// values once encryption is on.
var canaries = []string{"Canary Name", "canary.mail@example.com", "<canary-msg@mail.example>", "canary-conv-123", "canary config", "canary report"}

// writeCanaries writes a user, a mapping, a configuration and an error
// report of the tenant, each holding canaries.
func writeCanaries(t *testing.T, s *store.Store, id string) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := s.PutUser(ctx, id, store.User{UserID: "u-1", Name: "Canary Name", Email: "canary.mail@example.com"}); err != nil {
		t.Fatal(err)
	}
	m := store.Mapping{ConversationID: "canary-conv-123", MailID: "<canary-msg@mail.example>", UserID: "u-1", Jira: store.JiraRef{ID: "10001", Key: "AB-1", ProjectID: "10000"}}
	if _, _, err := s.LinkMapping(ctx, id, m); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutConfig(ctx, id, []byte(`{"template":"canary config"}`), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddErrorReport(ctx, id, store.ErrorReport{Message: "canary report"}, time.Hour); err != nil {
		t.Fatal(err)
	}
}

// readsBack reads the canaries back through the store.
func readsBack(t *testing.T, s *store.Store, id string) {
	t.Helper()
	ctx := context.Background()
	if u, err := s.User(ctx, id, "u-1"); err != nil || u.Email != "canary.mail@example.com" {
		t.Errorf("user: %+v, %v", u, err)
	}
	if ms, _, err := s.Mappings(ctx, id, store.MappingQuery{By: store.ByConversation, Value: "canary-conv-123"}); err != nil || len(ms) != 1 || ms[0].MailID != "<canary-msg@mail.example>" {
		t.Errorf("mappings: %+v, %v", ms, err)
	}
	if d, err := s.Config(ctx, id); err != nil || !strings.Contains(string(d.Body), "canary config") {
		t.Errorf("config: %v", err)
	}
	if rs, _, err := s.ErrorReports(ctx, id, 10, ""); err != nil || len(rs) != 1 || rs[0].Message != "canary report" {
		t.Errorf("error reports: %+v, %v", rs, err)
	}
}

// valuesUnder are the values under p, joined.
func valuesUnder(t *testing.T, cli *clientv3.Client, p string) string {
	t.Helper()
	resp, err := cli.Get(context.Background(), p, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, kv := range resp.Kvs {
		b.Write(kv.Value)
		b.WriteByte('\n')
	}
	return b.String()
}

// With a key file the values of users, mappings, configurations and error
// reports are sealed: none of the canaries is in etcd's values, and the
// store reads them back; without one they are plaintext (the test can see
// them), and a relay with a key file still reads those.
func TestValuesSealed(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	keys := keyFile(t, "k1")
	sealed := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keys, Lease: cli})
	a := register(t, sealed, "https://sealed.atlassian.net")
	writeCanaries(t, sealed, a.Instance.ID)
	readsBack(t, sealed, a.Instance.ID)
	all := valuesUnder(t, cli, p)
	for _, c := range canaries {
		if strings.Contains(all, c) {
			t.Errorf("%q is readable in etcd's values with encryption on", c)
		}
	}
	if n := strings.Count(all, "enc:v1:k1:"); n != 5 {
		t.Errorf("%d sealed values, want the user, the mapping record, the config, the report and the instance's licence", n)
	}

	plainP := p + "plain/"
	plain := runStoreWith(t, cli, cli, store.Options{Prefix: plainP, Lease: cli})
	b := register(t, plain, "https://plain.atlassian.net")
	writeCanaries(t, plain, b.Instance.ID)
	if all := valuesUnder(t, cli, plainP); !strings.Contains(all, "canary.mail@example.com") || !strings.Contains(all, "canary config") {
		t.Fatal("without encryption the canaries are not in the values: the test cannot see them")
	}
	// A relay turned on encryption: what was written before still reads.
	later := runStoreWith(t, cli, cli, store.Options{Prefix: plainP, Keys: keys, Lease: cli})
	readsBack(t, later, b.Instance.ID)
}

// A sealed value is refused, never misread, when it was moved under
// another key, or when its key is not in the relay's key file.
func TestSealedValueRefusals(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	s := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keyFile(t, "k1"), Lease: cli})
	a := register(t, s, "https://moved.atlassian.net")
	for _, u := range []string{"u-1", "u-2"} {
		if _, _, err := s.PutUser(ctx, a.Instance.ID, store.User{UserID: u, Name: "N " + u, Email: u + "@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	userKey := func(u string) string {
		ks, err := s.KeysOf(ctx, a.Instance.ID, store.IDUser, u)
		if err != nil {
			t.Fatal(err)
		}
		return ks[0].Key
	}
	k1, k2 := userKey("u-1"), userKey("u-2")
	resp, err := cli.Get(ctx, k1)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("user u-1 not at %s: %v", k1, err)
	}
	v1 := resp.Kvs[0].Value
	// u-1's sealed record copied over u-2's: u-2 does not read as u-1.
	if _, err := cli.Put(ctx, string(k2), string(v1)); err != nil {
		t.Fatal(err)
	}
	if u, err := s.User(ctx, a.Instance.ID, "u-2"); !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("a sealed value moved under another key: %+v, %v; want ErrCorrupt", u, err)
	}
	// A relay whose key file lacks k1 (or that has none) refuses, naming it.
	for name, o := range map[string]store.Options{
		"another key": {Prefix: p, Keys: keyFile(t, "k2"), Lease: cli},
		"no key file": {Prefix: p, Lease: cli},
	} {
		other := runStoreWith(t, cli, cli, o)
		_, err := other.User(ctx, a.Instance.ID, "u-1")
		if !errors.Is(err, store.ErrEncryptionKeyMissing) || !strings.Contains(err.Error(), `"k1"`) {
			t.Errorf("%s: %v, want ErrEncryptionKeyMissing naming k1", name, err)
		}
	}
}

// keysOf loads a key file of the given entries (seal.Generate's), in order.
func keysOf(t *testing.T, entries ...string) *seal.Keyring {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(p, []byte("keys:\n"+strings.Join(entries, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := seal.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func entry(t *testing.T, name string) string {
	t.Helper()
	e, err := seal.Generate(name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Rotation: values written under key A (and plaintext from before
// encryption); key B is put first and the rewrite runs while users keep
// being written; nothing is lost, nothing stays under A or in plaintext,
// and a relay with B alone reads everything.
func TestRotationRewrite(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	ea, eb := entry(t, "ka"), entry(t, "kb")
	plain := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	reg := register(t, plain, "https://rotation.atlassian.net")
	id := reg.Instance.ID
	writeCanaries(t, plain, id) // plaintext, from before encryption
	withA := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, ea), Lease: cli})
	const users = 300
	for i := range users {
		if _, _, err := withA.PutUser(ctx, id, store.User{UserID: fmt.Sprintf("u%03d", i), Name: "A", Email: "a@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 {
		m := store.Mapping{ConversationID: "conv", MailID: fmt.Sprintf("<%d@x>", i), UserID: "u000", Jira: store.JiraRef{ID: "10001", Key: "AB-1"}}
		if _, _, err := withA.LinkMapping(ctx, id, m); err != nil {
			t.Fatal(err)
		}
	}

	withBA := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, eb, ea), Lease: cli})
	stop := make(chan struct{})
	last := make([]string, users)
	var wg sync.WaitGroup
	wg.Go(func() { // writes go on during the rewrite, through a relay with B first
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			i := n % 50 // users 50 and up are left to the rewrite
			name := fmt.Sprintf("B%d", n)
			if _, _, err := withBA.PutUser(ctx, id, store.User{UserID: fmt.Sprintf("u%03d", i), Name: name, Email: "b@example.com"}); err != nil {
				t.Error(err)
				return
			}
			last[i] = name
		}
	})
	rep, err := withBA.RewriteValues(ctx, nil)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rewrite: %d rewritten, %d current, %d retried after a concurrent write", rep.Rewritten, rep.Current, rep.Retried)
	// The tenant (unkeyed tokens) is re-keyed first, its data sealed anew
	// on the way; the values pass finds them current.
	if rep.Rekeyed != 1 || rep.Rewritten+rep.Current < 300+50+4 || len(rep.Unreadable) != 0 {
		t.Errorf("rewrite report %+v", rep)
	}
	resp, err := cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if strings.HasPrefix(string(kv.Value), "enc:v1:ka:") {
			t.Errorf("%s is still sealed with the old key", k)
		}
		if (strings.Contains(k, "/users/") || strings.Contains(k, "/m/") || strings.Contains(k, "/reports/") || strings.HasSuffix(k, "/config")) && !strings.HasPrefix(string(kv.Value), "enc:v1:kb:") {
			t.Errorf("%s is not sealed with the new key: %.40q", k, kv.Value)
		}
	}
	onlyB := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, eb), Lease: cli})
	readsBack(t, onlyB, id)
	for i := range users {
		want := last[i]
		if want == "" {
			want = "A"
		}
		if u, err := onlyB.User(ctx, id, fmt.Sprintf("u%03d", i)); err != nil || u.Name != want {
			t.Fatalf("user %d after the rotation: %+v, %v; want the last write %q", i, u, err, want)
		}
	}
	if ms, _, err := onlyB.Mappings(ctx, id, store.MappingQuery{By: store.ByConversation, Value: "conv", Limit: 1000}); err != nil || len(ms) != 50 {
		t.Errorf("mappings after the rotation: %d, %v", len(ms), err)
	}
	again, err := withBA.RewriteValues(ctx, nil)
	if err != nil || again.Rewritten != 0 {
		t.Errorf("a second rewrite: %+v, %v; want nothing left to do", again, err)
	}
}

// KeysOf names the keys the store itself reads: what is under them is the
// user's, the conversation's and the e-mail's.
func TestKeysOf(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	s := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	id := register(t, s, "https://keys-of.atlassian.net").Instance.ID
	writeCanaries(t, s, id)
	get := func(k store.IDKey) int {
		t.Helper()
		opts := []clientv3.OpOption{clientv3.WithCountOnly()}
		if k.Prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		resp, err := cli.Get(ctx, k.Key, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if k.Cluster != store.DirectoryShard {
			t.Errorf("%s: cluster %q", k.Key, k.Cluster)
		}
		return int(resp.Count)
	}
	for _, tc := range []struct {
		kind, id string
		counts   []int
	}{
		{store.IDUser, "u-1", []int{1, 1}},
		{store.IDConversation, "canary-conv-123", []int{1}},
		{store.IDMail, "<canary-msg@mail.example>", []int{1}},
		{store.IDUser, "nobody", []int{0, 0}},
	} {
		ks, err := s.KeysOf(ctx, id, tc.kind, tc.id)
		if err != nil || len(ks) != len(tc.counts) {
			t.Fatalf("KeysOf(%s %q): %v, %v", tc.kind, tc.id, ks, err)
		}
		for i, k := range ks {
			if n := get(k); n != tc.counts[i] {
				t.Errorf("%s %q: %s (%s) holds %d keys, want %d", tc.kind, tc.id, k.Key, k.What, n, tc.counts[i])
			}
		}
	}
	if _, err := s.KeysOf(ctx, id, "issue", "AB-1"); !errors.As(err, new(*store.InvalidError)) {
		t.Errorf("an unknown kind: %v", err)
	}
	if _, err := s.KeysOf(ctx, "aaaaaaaaaaaaaaaaaaaaaaaaaa", store.IDUser, "u-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown instance: %v", err)
	}
}

// A store written by the relay of the previous key layout, without
// encryption, is migrated by a relay with a key file and sealed by the
// rewrite: everything reads back through every lookup (error reports keep
// their leases), and no value the relay seals is left in plaintext.
func TestMigrateIntoEncryption(t *testing.T) {
	cli, prefix := etcdtest.Shared(t)
	f := loadFixture(t, cli, prefix, "testdata/layout-v1.json")
	keys := keysOf(t, entry(t, "k1"))
	s, err := store.New(cli, cli, store.Options{Prefix: prefix, Lease: cli, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Migrate(ctx, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := s.RewriteValues(ctx, nil)
	if err != nil || rep.Rewritten == 0 || len(rep.Unreadable) != 0 {
		t.Fatalf("rewrite: %+v, %v", rep, err)
	}
	checkMigrated(t, cli, prefix, runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli, Keys: keys}), f)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	sealed := 0
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), prefix)
		sealable := strings.HasSuffix(k, "/config") || strings.Contains(k, "/users/") || strings.Contains(k, "/reports/") || strings.Contains(k, "/m/")
		if sealable && strings.HasPrefix(k, "d/") || sealable && strings.HasPrefix(k, "instances/") {
			if !strings.HasPrefix(string(kv.Value), "enc:v1:k1:") {
				t.Errorf("%s is not sealed after the rewrite: %.40q", k, kv.Value)
			}
			sealed++
		}
	}
	if sealed == 0 {
		t.Fatal("the fixture holds no value to seal")
	}
	t.Logf("%d values sealed (%d by the rewrite)", sealed, rep.Rewritten)
}
