package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// layoutFixture is a store written by an older relay: every key under the
// prefix (without it), its value, whether it was on a lease, and the keys
// its tenants were registered with.
type layoutFixture struct {
	WrittenBy string `json:"writtenBy"`
	// Records names the layout-1 fixture whose records this one holds
	// (a newer fixture is an older one migrated by the relay of its
	// layout); empty: its own.
	Records   string               `json:"records"`
	Instances []string             `json:"instances"`
	Keys      map[string][2]string `json:"keys"`
	KVs       []etcdtest.FixtureKV `json:"kvs"`
}

// loadFixture writes a fixture under prefix (etcdtest.PutFixture).
func loadFixture(t *testing.T, cli *clientv3.Client, prefix, path string) *layoutFixture {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f layoutFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	etcdtest.PutFixture(t, cli, prefix, f.KVs)
	return &f
}

// v1Records are the records a layout-1 fixture holds, per tenant.
type v1Records struct {
	users    map[string]store.User
	mappings []store.Mapping
	reports  []store.ErrorReport
	config   string
}

func recordsOfV1(t *testing.T, f *layoutFixture) map[string]*v1Records {
	t.Helper()
	if f.Records != "" {
		b, err := os.ReadFile(filepath.Join("testdata", f.Records))
		if err != nil {
			t.Fatal(err)
		}
		var of layoutFixture
		if err := json.Unmarshal(b, &of); err != nil {
			t.Fatal(err)
		}
		return recordsOfV1(t, &of)
	}
	out := map[string]*v1Records{}
	for _, id := range f.Instances {
		out[id] = &v1Records{users: map[string]store.User{}}
	}
	for _, kv := range f.KVs {
		rest, ok := strings.CutPrefix(kv.Key, "instances/")
		if !ok {
			continue
		}
		id, rest, _ := strings.Cut(rest, "/")
		r := out[id]
		switch kind, _, _ := strings.Cut(rest, "/"); kind {
		case "users":
			var u store.User
			mustJSON(t, kv.Value, &u)
			r.users[u.UserID] = u
		case "mappings":
			var m store.Mapping
			mustJSON(t, kv.Value, &m)
			r.mappings = append(r.mappings, m)
		case "error-reports":
			var e store.ErrorReport
			mustJSON(t, kv.Value, &e)
			r.reports = append(r.reports, e)
		case "config":
			r.config = kv.Value
		}
	}
	return out
}

func mustJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("fixture value %q: %v", s, err)
	}
}

// checkMigrated reads every record of the fixture back through the store,
// by every lookup, and checks the store holds nothing of layout 1.
func checkMigrated(t *testing.T, cli *clientv3.Client, prefix string, s *store.Store, f *layoutFixture) {
	t.Helper()
	ctx := context.Background()
	if v, err := s.Layout(ctx); err != nil || v != store.LayoutVersion {
		t.Fatalf("layout = %d, %v; want %d", v, err, store.LayoutVersion)
	}
	for id, want := range recordsOfV1(t, f) {
		in, err := s.Instance(ctx, id)
		if err != nil {
			t.Fatalf("instance %s: %v", id, err)
		}
		keys := f.Keys[id]
		for i, wantRole := range []store.Role{store.RoleClient, store.RoleAdmin} {
			if _, role, err := s.Authenticate(ctx, []byte(id), []byte(keys[i])); err != nil || role != wantRole {
				t.Errorf("%s: key %d authenticates as %v, %v; want %v", id, i, role, err, wantRole)
			}
		}
		if c, err := s.Config(ctx, id); err != nil || string(c.Body) != want.config {
			t.Errorf("%s: config = %v, %v; want %s", id, c, err, want.config)
		}
		for uid, u := range want.users {
			got, err := s.User(ctx, id, uid)
			if err != nil || *got != u {
				t.Errorf("%s: user %q = %+v, %v; want %+v", id, uid, got, err, u)
			}
			exp, err := s.ExportUser(ctx, id, uid)
			if err != nil {
				t.Fatal(err)
			}
			var mine []store.Mapping
			for _, m := range want.mappings {
				if m.UserID == uid {
					mine = append(mine, m)
				}
			}
			if !sameMappings(exp.Mappings, mine) {
				t.Errorf("%s: export of %q = %+v, want %+v", id, uid, exp.Mappings, mine)
			}
		}
		for _, m := range want.mappings {
			for _, q := range []store.MappingQuery{
				{By: store.ByMail, Value: m.MailID},
				{By: store.ByIssueID, Value: m.Jira.ID, UserID: m.UserID},
				{By: store.ByIssueKey, Value: m.Jira.Key},
				{By: store.ByConversation, Value: m.ConversationID},
			} {
				if q.Value == "" {
					continue
				}
				got, _, err := s.Mappings(ctx, id, q)
				if err != nil || !slices.ContainsFunc(got, func(g store.Mapping) bool { return g == m }) {
					t.Errorf("%s: %s=%q finds %+v, %v; want it to hold %+v", id, q.By, q.Value, got, err, m)
				}
			}
		}
		reps, _, err := s.ErrorReports(ctx, id, 0, "")
		if err != nil || len(reps) != len(want.reports) {
			t.Errorf("%s: error reports = %d, %v; want %d", id, len(reps), err, len(want.reports))
		}
		resp, err := cli.Get(ctx, prefix+"d/"+in.DataID+"/reports/", clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != len(want.reports) {
			t.Fatalf("reports: %v, %v", resp, err)
		}
		for _, kv := range resp.Kvs {
			if kv.Lease == 0 {
				t.Errorf("%s: error report %s lost its lease", id, kv.Key)
			}
		}
		// Layout 3: no user id stands in a key (user records are under
		// their id's token), and the tenant's data is under one data id.
		for _, k := range keysUnder(t, cli, prefix) {
			for uid := range want.users {
				if strings.Contains(k, "/"+store.EscapeSegment(uid)) {
					t.Errorf("%s: user id %q stands in key %s", id, uid, k)
				}
			}
			if strings.HasPrefix(k, prefix+"dataids/") && strings.Contains(valueOf(t, cli, k), id) && k != prefix+"dataids/"+in.DataID {
				t.Errorf("%s: a second data id is left: %s", id, k)
			}
		}
		// Nothing of layout 1 is left: the directory holds the record and
		// the configuration only.
		if got := keysUnder(t, cli, prefix+"instances/"+id+"/"); !slices.Equal(got, []string{prefix + "instances/" + id + "/config", prefix + "instances/" + id + "/instance"}) {
			t.Errorf("%s: directory keys = %q", id, got)
		}
	}
	if k := keysUnder(t, cli, prefix+"migrations/"); len(k) != 0 {
		t.Errorf("progress keys left: %q", k)
	}
}

func sameMappings(a, b []store.Mapping) bool {
	key := func(m store.Mapping) string { return m.MailID + "\x00" + m.UserID + "\x00" + m.Jira.ID }
	sa, sb := slices.Clone(a), slices.Clone(b)
	sort.Slice(sa, func(i, j int) bool { return key(sa[i]) < key(sa[j]) })
	sort.Slice(sb, func(i, j int) bool { return key(sb[i]) < key(sb[j]) })
	return slices.Equal(sa, sb)
}

// TestMigrateFromEveryOlderLayout: a store written by the relay of each
// older layout (testdata/layout-v<N>.json, captured from that code) is
// migrated to the current layout by Migrate, and everything it held reads
// back through every lookup; a second Migrate changes nothing.
func TestMigrateFromEveryOlderLayout(t *testing.T) {
	t.Parallel()
	fixtures, err := filepath.Glob("testdata/layout-v*.json")
	if err != nil || len(fixtures) != store.LayoutVersion-1 {
		t.Fatalf("fixtures %q, %v: want one per older layout (%d)", fixtures, err, store.LayoutVersion-1)
	}
	for _, path := range fixtures {
		t.Run(filepath.Base(path), func(t *testing.T) {
			t.Parallel()
			cli, prefix := etcdtest.Shared(t)
			f := loadFixture(t, cli, prefix, path)
			s, err := store.New(cli, cli, store.Options{Prefix: prefix, Lease: cli})
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "layout-v"), ".json"))
			if v, err := s.Layout(context.Background()); err != nil || fmt.Sprint(v) != want {
				t.Fatalf("layout before = %d, %v; want %s", v, err, want)
			}
			var seen []string
			if err := s.Migrate(context.Background(), func(step string, done, total int) {
				seen = append(seen, fmt.Sprintf("%d/%d", done, total))
			}); err != nil {
				t.Fatal(err)
			}
			from, _ := strconv.Atoi(want)
			if len(seen) != len(f.Instances)*(store.LayoutVersion-from) {
				t.Errorf("progress %q, want one per tenant and step", seen)
			}
			checkMigrated(t, cli, prefix, runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli}), f)

			before := revisionsUnder(t, cli, prefix)
			if err := s.Migrate(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			if after := revisionsUnder(t, cli, prefix); !slices.Equal(before, after) {
				t.Errorf("a second Migrate wrote:\n%v\n%v", before, after)
			}
		})
	}
}

// TestMigrateResumesAfterAStop: a migration stopped after any stage of any
// tenant (as by a crash) finishes when run again, with nothing lost or
// left behind.
func TestMigrateResumesAfterAStop(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{"copied", "switched"} {
		for tenant := range 2 {
			t.Run(fmt.Sprintf("%s-tenant%d", stage, tenant), func(t *testing.T) {
				t.Parallel()
				cli, prefix := etcdtest.Shared(t)
				f := loadFixture(t, cli, prefix, "testdata/layout-v1.json")
				s, err := store.New(cli, cli, store.Options{Prefix: prefix, Lease: cli})
				if err != nil {
					t.Fatal(err)
				}
				crash := errors.New("crash")
				n := 0
				s.SetMigrateHook(func(got, id string) error {
					if got == stage {
						if n == tenant {
							return crash
						}
						n++
					}
					return nil
				})
				if err := s.Migrate(context.Background(), nil); !errors.Is(err, crash) {
					t.Fatalf("Migrate = %v, want the crash", err)
				}
				if v, err := s.Layout(context.Background()); err != nil || v != 1 {
					t.Fatalf("layout after the stop = %d, %v; want 1", v, err)
				}
				again, err := store.New(cli, cli, store.Options{Prefix: prefix, Lease: cli})
				if err != nil {
					t.Fatal(err)
				}
				if err := again.Migrate(context.Background(), nil); err != nil {
					t.Fatal(err)
				}
				checkMigrated(t, cli, prefix, runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli}), f)
				// No data id reserved twice: one per tenant.
				if ids := keysUnder(t, cli, prefix+"dataids/"); len(ids) != len(f.Instances) {
					t.Errorf("data ids %q, want %d", ids, len(f.Instances))
				}
			})
		}
	}
}

// TestMigrateRefusesANewerLayout: a relay never writes to a store a newer
// relay migrated.
func TestMigrateRefusesANewerLayout(t *testing.T) {
	t.Parallel()
	cli, prefix := etcdtest.Shared(t)
	if _, err := cli.Put(context.Background(), prefix+"layout", fmt.Sprintf(`{"version":%d}`, store.LayoutVersion+1)); err != nil {
		t.Fatal(err)
	}
	s, err := store.New(cli, cli, store.Options{Prefix: prefix, Lease: cli})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background(), nil); !errors.Is(err, store.ErrLayoutNewer) {
		t.Fatalf("Migrate = %v, want ErrLayoutNewer", err)
	}
}

func revisionsUnder(t *testing.T, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, fmt.Sprintf("%s@%d", kv.Key, kv.ModRevision))
	}
	return out
}
