package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The reported defect: this licence expiry lies in the year 10000 in UTC,
// which RFC 3339 (and json.Marshal) cannot write.
const expiryPastYear9999 = "9999-12-31T23:59:59-23:59"

func TestTimesTheStoreCannotWriteAreInvalid(t *testing.T) {
	t.Parallel()
	s, cli, prefix := newStore(t)
	ctx := context.Background()
	r := register(t, s, "https://acme.atlassian.net")
	id := r.Instance.ID
	instKey := prefix + "instances/" + id + "/instance"
	before := getKV(t, cli, instKey)

	for i, tc := range []struct {
		expiry string
		ok     bool
	}{
		{expiryPastYear9999, false},
		{"0000-01-01T00:00:00+00:01", false}, // the year -1 in UTC
		{"9999-12-31T23:59:59Z", true},
		{"9999-12-31T23:59:59+23:59", true},
		{"0000-01-01T00:00:00Z", true},
	} {
		exp, err := time.Parse(time.RFC3339, tc.expiry)
		if err != nil {
			t.Fatal(err)
		}
		lic := &store.License{Key: "LIC-2", ExpiresAt: exp, Seats: 10}
		url := fmt.Sprintf("https://new-%d.atlassian.net", i)
		_, perr := s.PatchInstance(ctx, id, store.InstancePatch{License: lic})
		_, rerr := s.Register(ctx, store.NewInstance{URL: url, JiraVersion: "1", AddinVersion: "1", License: lic})
		if tc.ok {
			if perr != nil || rerr != nil {
				t.Fatalf("expiresAt %s: patch %v, register %v; want both accepted", tc.expiry, perr, rerr)
			}
			in, err := s.Instance(ctx, id)
			if err != nil || !in.License.ExpiresAt.Equal(exp) {
				t.Fatalf("expiresAt %s: read back %+v, %v", tc.expiry, in, err)
			}
			before = getKV(t, cli, instKey)
			continue
		}
		for what, err := range map[string]error{"patch": perr, "register": rerr} {
			var inv *store.InvalidError
			if !errors.As(err, &inv) || inv.Field != "license.expiresAt" {
				t.Errorf("%s with expiresAt %s: err = %v, want an InvalidError of license.expiresAt", what, tc.expiry, err)
			}
		}
		// Nothing was written: the record is as it was, and reads work.
		if after := getKV(t, cli, instKey); !bytes.Equal(after.Value, before.Value) || after.ModRevision != before.ModRevision {
			t.Fatalf("expiresAt %s: the instance record changed:\n%s@%d\nwas\n%s@%d", tc.expiry, after.Value, after.ModRevision, before.Value, before.ModRevision)
		}
		if _, err := s.Instance(ctx, id); err != nil {
			t.Fatalf("expiresAt %s: instance unreadable after the refusal: %v", tc.expiry, err)
		}
		if k := keysUnder(t, cli, prefix+"urls/"+store.EscapeSegment(url)); len(k) != 0 {
			t.Fatalf("expiresAt %s: a refused registration wrote %q", tc.expiry, k)
		}
		if role := roleOf(t, s, id, r.AdminKey); role != store.RoleAdmin {
			t.Fatalf("admin key has role %v after the refusal", role)
		}
	}
}

// getKV reads one key, which must exist.
func getKV(t *testing.T, cli *clientv3.Client, key string) *mvccpb.KeyValue {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("%s: %d keys", key, len(resp.Kvs))
	}
	return resp.Kvs[0]
}

// TestCorruptInstanceRecordIsErasable: a tenant whose instance record does
// not decode (the empty value the licence defect wrote, garbage, JSON with a
// time out of range) reads as ErrCorrupt on every relay, naming no part of
// the value, and DeleteInstance erases everything of it, so that its URL can
// be registered again.
func TestCorruptInstanceRecordIsErasable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		value func(r *store.Registration) string
		// what the keys still count for, by the hashes that could be read
		admin, client store.Role
	}{
		{"empty value", func(*store.Registration) string { return "" }, store.RoleNone, store.RoleNone},
		{"garbage", func(*store.Registration) string { return "\x00secret-value{" }, store.RoleNone, store.RoleNone},
		{"JSON null", func(*store.Registration) string { return "null" }, store.RoleNone, store.RoleNone},
		{"time out of range", func(r *store.Registration) string {
			return `{"id":"` + r.Instance.ID + `","url":"https://acme.atlassian.net","license":{"key":"LIC-1","expiresAt":"10000-01-01T23:58:59Z","seats":1},` +
				`"clientKeySha256":"` + store.HashKey([]byte(r.ClientKey)) + `","adminKeySha256":"` + store.HashKey([]byte(r.AdminKey)) + `"}`
		}, store.RoleAdmin, store.RoleClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cli, prefix := etcdtest.Shared(t)
			logs := new(logBuffer)
			s := runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli, Logger: logs.logger()})
			ctx := context.Background()
			r := register(t, s, "https://acme.atlassian.net")
			a := r.Instance.ID
			b := register(t, s, "https://other.atlassian.net").Instance.ID
			for _, id := range []string{a, b} {
				fillTenant(t, s, id, true)
			}
			otherKeys := keysUnder(t, cli, prefix+"instances/"+b+"/")
			bad := tc.value(r)
			if _, err := cli.Put(ctx, prefix+"instances/"+a+"/instance", bad); err != nil {
				t.Fatal(err)
			}

			// This relay learns of it through its watch, a new one by its list.
			eventually(t, func() bool {
				_, err := s.Instance(ctx, a)
				return errors.Is(err, store.ErrCorrupt)
			})
			fresh := runStore(t, cli, prefix)
			for name, st := range map[string]*store.Store{"watching relay": s, "new relay": fresh} {
				_, err := st.Instance(ctx, a)
				if !errors.Is(err, store.ErrCorrupt) {
					t.Fatalf("%s: Instance: %v, want ErrCorrupt", name, err)
				}
				if bad != "" && strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "10000") {
					t.Errorf("%s: the error quotes the value: %v", name, err)
				}
				for key, want := range map[string]store.Role{r.AdminKey: tc.admin, r.ClientKey: tc.client, "jra_wrong": store.RoleNone} {
					in, role, err := st.Authenticate(ctx, []byte(a), []byte(key))
					if !errors.Is(err, store.ErrCorrupt) || in != nil || role != want {
						t.Errorf("%s: Authenticate = %v, %v, %v; want nil, %v, ErrCorrupt", name, in, role, err, want)
					}
				}
				if _, err := st.PatchInstance(ctx, a, store.InstancePatch{ErrorReports: new(bool)}); !errors.Is(err, store.ErrCorrupt) {
					t.Errorf("%s: PatchInstance: %v, want ErrCorrupt", name, err)
				}
				if _, _, err := st.RotateClientKey(ctx, a); !errors.Is(err, store.ErrCorrupt) {
					t.Errorf("%s: RotateClientKey: %v, want ErrCorrupt", name, err)
				}
			}
			if got := getKV(t, cli, prefix+"instances/"+a+"/instance"); string(got.Value) != bad {
				t.Fatalf("a refused write changed the corrupt record to %q", got.Value)
			}
			if !strings.Contains(logs.String(), "instance record does not decode") || !strings.Contains(logs.String(), a) {
				t.Errorf("the cache did not log the record that does not decode:\n%s", logs)
			}
			if strings.Contains(logs.String(), "secret") || strings.Contains(logs.String(), "10000-") {
				t.Errorf("the log quotes the value:\n%s", logs)
			}

			if err := s.DeleteInstance(ctx, a); err != nil {
				t.Fatalf("DeleteInstance of the corrupt tenant: %v", err)
			}
			for _, k := range keysUnder(t, cli, prefix) {
				if strings.Contains(k, a) || strings.Contains(k, "acme") {
					t.Errorf("key of the erased tenant remains: %s", k)
				}
			}
			if got := keysUnder(t, cli, prefix+"instances/"+b+"/"); !slices.Equal(got, otherKeys) {
				t.Errorf("the other tenant changed:\n%q\nwant\n%q", got, otherKeys)
			}
			for name, st := range map[string]*store.Store{"watching relay": s, "new relay": fresh} {
				eventually(t, func() bool {
					_, err := st.Instance(ctx, a)
					return errors.Is(err, store.ErrNotFound)
				})
				if _, _, err := st.Authenticate(ctx, []byte(a), []byte(r.AdminKey)); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("%s: Authenticate after the erase: %v, want ErrNotFound", name, err)
				}
			}
			again := register(t, fresh, "https://acme.atlassian.net")
			if role := roleOf(t, s, again.Instance.ID, again.AdminKey); role != store.RoleAdmin {
				t.Fatalf("the tenant registered again: admin key has role %v", role)
			}
		})
	}
}

// TestUndecodableRecordsReadAsErrCorrupt: a user, mapping or error report
// that does not decode fails its reads with ErrCorrupt, not a decoder error.
func TestUndecodableRecordsReadAsErrCorrupt(t *testing.T) {
	t.Parallel()
	cli, prefix := etcdtest.Shared(t)
	s := runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli})
	ctx := context.Background()
	reg := register(t, s, "https://acme.atlassian.net")
	id := reg.Instance.ID
	data := prefix + "d/" + reg.Instance.DataID + "/"
	m, u, c := store.Token("<m@x>"), store.Token("u"), store.Token("c")
	for k, v := range map[string]string{
		"users/" + u:                         "{not json",
		"m/" + m + "/" + u + "/1":            "{not json",
		"c/" + c + "/" + u + "/" + m + "/1":  "", // an index entry leads to it
		"reports/0000000000001-000000000000": "{not json",
	} {
		if _, err := cli.Put(ctx, data+k, v); err != nil {
			t.Fatal(err)
		}
	}
	checks := map[string]error{}
	_, checks["User"] = s.User(ctx, id, "u")
	_, checks["ExportUser"] = s.ExportUser(ctx, id, "u")
	_, _, checks["Mappings by mail"] = s.Mappings(ctx, id, store.MappingQuery{By: store.ByMail, Value: "<m@x>"})
	_, _, checks["Mappings by conversation"] = s.Mappings(ctx, id, store.MappingQuery{By: store.ByConversation, Value: "c"})
	_, checks["UnlinkMappings"] = s.UnlinkMappings(ctx, id, "<m@x>", "1", "")
	_, _, checks["LinkMapping over it"] = s.LinkMapping(ctx, id, mapping("c2", "<m@x>", "u", "1", "AB-1"))
	_, _, checks["ErrorReports"] = s.ErrorReports(ctx, id, 0, "")
	for what, err := range checks {
		if !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", what, err)
		}
	}
	// And the tenant, corrupt records and all, can still be erased.
	if err := s.DeleteInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	if k := keysUnder(t, cli, prefix); !slices.Equal(k, []string{prefix + "layout"}) {
		t.Fatalf("keys left: %q", k)
	}
}
