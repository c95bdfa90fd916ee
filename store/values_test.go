package store_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/internal/seal"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keyFile loads a key file of new keys named names, the first primary.
func keyFile(t *testing.T, names ...string) *seal.Keyring {
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
	if n := strings.Count(all, "enc:v1:k1:"); n != 4 {
		t.Errorf("%d sealed values, want the user, the mapping record, the config and the report", n)
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
	resp, err := cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var k1, k2 []byte
	var v1 []byte
	for _, kv := range resp.Kvs {
		switch {
		case strings.HasSuffix(string(kv.Key), "/users/u-1"):
			k1, v1 = kv.Key, kv.Value
		case strings.HasSuffix(string(kv.Key), "/users/u-2"):
			k2 = kv.Key
		}
	}
	if k1 == nil || k2 == nil {
		t.Fatalf("user keys not found under %s", p)
	}
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
