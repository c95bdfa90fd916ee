package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// With a key file, the outside ids in a tenant's keys (user ids,
// conversation ids, message ids) are HMAC tokens under a key derived from
// the file's first key and the tenant's data id: 22 characters that no
// listing can link to an id, that differ between tenants, and that the
// relay computes again for every lookup.
func TestKeyedTokensInKeys(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	keys := keyFile(t, "k1")
	s := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keys, Lease: cli})
	a, b := register(t, s, "https://keyed-a.atlassian.net"), register(t, s, "https://keyed-b.atlassian.net")
	for _, r := range []*store.Registration{a, b} {
		writeCanaries(t, s, r.Instance.ID)
		readsBack(t, s, r.Instance.ID)
		if in, err := s.Instance(ctx, r.Instance.ID); err != nil || in.Tokens != "hmac:k1" {
			t.Fatalf("record tokens = %+v, %v; want hmac:k1", in, err)
		}
	}
	ids := []string{"u-1", "canary-conv-123", "<canary-msg@mail.example>"}
	toks := map[string][]string{}
	for _, r := range []*store.Registration{a, b} {
		tk, err := keys.Tokens("k1", r.Instance.DataID)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			toks[r.Instance.ID] = append(toks[r.Instance.ID], tk.Token(id))
		}
	}
	got := keysUnder(t, cli, p)
	for _, r := range []*store.Registration{a, b} {
		d := p + "d/" + r.Instance.DataID + "/"
		user, conv, mail := toks[r.Instance.ID][0], toks[r.Instance.ID][1], toks[r.Instance.ID][2]
		for _, k := range []string{
			d + "users/" + user,
			d + "m/" + mail + "/" + user + "/10001",
			d + "c/" + conv + "/" + user + "/" + mail + "/10001",
			d + "i/10001/" + user + "/" + mail,
			d + "k/AB-1/" + user + "/" + mail + "/10001",
			d + "u/" + user + "/" + mail + "/10001",
		} {
			if !slices.Contains(got, k) {
				t.Errorf("no key %s in %q", k, got)
			}
		}
	}
	if slices.Equal(toks[a.Instance.ID], toks[b.Instance.ID]) {
		t.Error("two tenants have the same tokens for the same ids")
	}
	all := strings.Join(got, "\n")
	for _, id := range ids {
		for _, form := range []string{id, store.EscapeSegment(id), store.Token(id)} {
			if strings.Contains(all, form) {
				t.Errorf("%q (as %q) is in etcd's keys", id, form)
			}
		}
	}
	// KeysOf gives the operator the same keys.
	ks, err := s.KeysOf(ctx, a.Instance.ID, store.IDConversation, "canary-conv-123")
	if err != nil || len(ks) != 1 || ks[0].Key != p+"d/"+a.Instance.DataID+"/c/"+toks[a.Instance.ID][1]+"/" {
		t.Errorf("KeysOf conversation = %+v, %v", ks, err)
	}
	// A relay without the key cannot build the keys: it fails, naming the
	// key, and never reads another id's data.
	other := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keyFile(t, "k2"), Lease: cli})
	if _, err := other.User(ctx, a.Instance.ID, "u-1"); !errors.Is(err, store.ErrEncryptionKeyMissing) || !strings.Contains(err.Error(), `"k1"`) {
		t.Errorf("a relay without k1: %v, want ErrEncryptionKeyMissing naming k1", err)
	}
	if _, _, err := other.Mappings(ctx, a.Instance.ID, store.MappingQuery{By: store.ByConversation, Value: "canary-conv-123"}); !errors.Is(err, store.ErrEncryptionKeyMissing) {
		t.Errorf("a lookup through a relay without k1: %v, want ErrEncryptionKeyMissing", err)
	}
	// Erase removes every key of the tokenised layout.
	if err := s.DeleteInstance(ctx, a.Instance.ID); err != nil {
		t.Fatal(err)
	}
	if left := keysUnder(t, cli, p+"d/"+a.Instance.DataID+"/"); len(left) != 0 {
		t.Errorf("erase left %q", left)
	}
}

// A re-key moves a tenant to the store's token scheme online: writes go on
// through another relay meanwhile (links, unlinks, users), nothing is lost,
// nothing of the old data id is left, index entries are whole, leases are
// kept, and the old key can leave the file afterwards.
func TestRekeyWhileWriting(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	ea, eb := entry(t, "ka"), entry(t, "kb")
	withA := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, ea), Lease: cli, MappingRetention: time.Hour})
	reg := register(t, withA, "https://rekey.atlassian.net")
	id, oldData := reg.Instance.ID, reg.Instance.DataID
	writeCanaries(t, withA, id)
	const before = 400
	for i := range before {
		m := mapping(fmt.Sprintf("conv-%d", i%20), fmt.Sprintf("<%d@x>", i), fmt.Sprintf("user-%d", i%7), fmt.Sprint(30000+i), fmt.Sprintf("EF-%d", i))
		if _, _, err := withA.LinkMapping(ctx, id, m); err != nil {
			t.Fatal(err)
		}
	}
	withBA := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, eb, ea), Lease: cli, MappingRetention: time.Hour})
	stop := make(chan struct{})
	var mu sync.Mutex
	linked, unlinked := map[string]bool{}, map[string]bool{}
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			mail := fmt.Sprintf("<new-%d@x>", n)
			if _, _, err := withBA.LinkMapping(ctx, id, mapping("conv-new", mail, "user-new", fmt.Sprint(20000+n), "CD-1")); err != nil {
				t.Error(err)
				return
			}
			if _, _, err := withBA.PutUser(ctx, id, store.User{UserID: fmt.Sprintf("writer-%d", n%10), Name: fmt.Sprint("W", n), Email: "w@example.com"}); err != nil {
				t.Error(err)
				return
			}
			old := fmt.Sprintf("<%d@x>", n)
			if n < before {
				if _, err := withBA.UnlinkMappings(ctx, id, old, fmt.Sprint(30000+n), ""); err != nil {
					t.Error(err)
					return
				}
			}
			mu.Lock()
			linked[mail] = true
			if n < before {
				unlinked[old] = true
			}
			mu.Unlock()
		}
	})
	time.Sleep(20 * time.Millisecond)
	rep, err := withBA.RekeyTenant(ctx, id, store.MoveOptions{Grace: 10 * time.Millisecond})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("re-key: %+v; %d links and %d unlinks meanwhile", rep, len(linked), len(unlinked))
	if rep.From != "hmac:ka" || rep.To != "hmac:kb" || rep.Copied == 0 {
		t.Errorf("report %+v", rep)
	}
	in, err := withBA.Instance(ctx, id)
	if err != nil || in.Tokens != "hmac:kb" || in.DataID == oldData || in.Move != nil {
		t.Fatalf("record after the re-key: %+v, %v", in, err)
	}
	if left := keysUnder(t, cli, p+"d/"+oldData+"/"); len(left) != 0 {
		t.Errorf("the old data id keeps %d keys", len(left))
	}
	if left := keysUnder(t, cli, p+"dataids/"+oldData); len(left) != 0 {
		t.Errorf("the old data id is still named: %q", left)
	}
	// Nothing under the new data id is sealed with ka; every mapping is on
	// its retention lease.
	resp, err := cli.Get(ctx, p+"d/"+in.DataID+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.HasPrefix(string(kv.Value), "enc:v1:ka:") {
			t.Errorf("%s is still sealed with ka", kv.Key)
		}
		if strings.Contains(string(kv.Key), "/m/") && kv.Lease == 0 {
			t.Errorf("%s lost its retention lease", kv.Key)
		}
	}
	// The directory's values (the configuration) are the rewrite's.
	if _, err := withBA.RewriteValues(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// The old key leaves the file; everything reads, by every index.
	onlyB := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keysOf(t, eb), Lease: cli})
	readsBack(t, onlyB, id)
	for i := range before {
		mail := fmt.Sprintf("<%d@x>", i)
		want := 1
		if unlinked[mail] {
			want = 0
		}
		for _, q := range []store.MappingQuery{
			{By: store.ByMail, Value: mail},
			{By: store.ByIssueID, Value: fmt.Sprint(30000 + i)},
			{By: store.ByIssueKey, Value: fmt.Sprintf("EF-%d", i)},
		} {
			if ms, _, err := onlyB.Mappings(ctx, id, q); err != nil || len(ms) != want {
				t.Fatalf("%s=%s after the re-key: %d, %v; want %d", q.By, q.Value, len(ms), err, want)
			}
		}
	}
	for mail := range linked {
		if ms, _, err := onlyB.Mappings(ctx, id, store.MappingQuery{By: store.ByMail, Value: mail}); err != nil || len(ms) != 1 {
			t.Fatalf("%s, linked during the re-key: %d, %v", mail, len(ms), err)
		}
	}
	all, _, err := onlyB.Mappings(ctx, id, store.MappingQuery{By: store.ByConversation, Value: "conv-new", Limit: 1000})
	if err != nil || len(all) != min(len(linked), 1000) {
		t.Errorf("conv-new has %d mappings, %v; want %d", len(all), err, len(linked))
	}
	exp, err := onlyB.ExportUser(ctx, id, "user-3")
	if err != nil || len(exp.Mappings) == 0 {
		t.Errorf("export after the re-key: %+v, %v", exp, err)
	}
	// Run again: nothing to do.
	again, err := withBA.RekeyTenant(ctx, id, store.MoveOptions{})
	if err != nil || again.From != again.To || again.Copied != 0 {
		t.Errorf("a second re-key: %+v, %v", again, err)
	}
}

// A re-key whose process died (its note in the record, a partial copy
// under a reserved data id, the old data fenced) is undone by the next
// re-key, which then finishes; an erase meanwhile removes the copy too.
func TestRekeyStoppedIsUndone(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	plain := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	for _, erase := range []bool{false, true} {
		reg := register(t, plain, fmt.Sprintf("https://stopped-%v.atlassian.net", erase))
		id := reg.Instance.ID
		writeCanaries(t, plain, id)
		// The dead re-key: note, reserved id, partial copy, fence.
		const dead = "zzzzzz"
		rec := valueOf(t, cli, p+"instances/"+id+"/instance")
		rec = strings.Replace(rec, `"tokens":"sha256"`, `"tokens":"sha256","move":{"to":"directory","since":"2026-01-01T00:00:00Z","dataId":"`+dead+`","tokens":"hmac:k1"}`, 1)
		for k, v := range map[string]string{
			p + "instances/" + id + "/instance": rec,
			p + "dataids/" + dead:               `{"instanceId":"` + id + `"}`,
			p + "d/" + dead + "/users/partial":  "x",
		} {
			if _, err := cli.Put(ctx, k, v); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Delete(ctx, p+"d/"+reg.Instance.DataID+"/tenant"); err != nil {
			t.Fatal(err)
		}
		keyed := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keyFile(t, "k1"), Lease: cli})
		if erase {
			if err := keyed.DeleteInstance(ctx, id); err != nil {
				t.Fatal(err)
			}
		} else {
			rep, err := keyed.RekeyTenant(ctx, id, store.MoveOptions{Grace: time.Millisecond})
			if err != nil || rep.To != "hmac:k1" {
				t.Fatalf("re-key after a dead one: %+v, %v", rep, err)
			}
			readsBack(t, keyed, id)
		}
		if left := keysUnder(t, cli, p+"d/"+dead+"/"); len(left) != 0 {
			t.Errorf("erase=%v: the dead copy is left: %q", erase, left)
		}
		if left := keysUnder(t, cli, p+"dataids/"+dead); len(left) != 0 {
			t.Errorf("erase=%v: the dead data id is left", erase)
		}
	}
}

// A store of layout 2 migrated by a relay with a key file gets keyed
// tokens in every tenant's keys and its tenants' values sealed; everything
// reads back.
func TestMigrateV2IntoKeyedTokens(t *testing.T) {
	cli, prefix := etcdtest.Shared(t)
	f := loadFixture(t, cli, prefix, "testdata/layout-v2.json")
	keys := keyFile(t, "k1")
	s, err := store.New(cli, cli, store.Options{Prefix: prefix, Lease: cli, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	checkMigrated(t, cli, prefix, runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli, Keys: keys}), f)
	resp, err := cli.Get(context.Background(), prefix+"d/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		k := strings.TrimPrefix(string(kv.Key), prefix)
		if seg := strings.Split(k, "/"); len(seg) > 3 && (seg[2] == "users" || seg[2] == "m") && len(seg[3]) != 22 {
			t.Errorf("%s: not a keyed token", k)
		}
		if (strings.Contains(k, "/users/") || strings.Contains(k, "/m/")) && !strings.HasPrefix(string(kv.Value), "enc:v1:k1:") {
			t.Errorf("%s is not sealed", k)
		}
	}
}

// A re-key (and a move) copies in transactions that etcd accepts however
// large the values: a tenant with many error reports near the 64 KiB bound
// (sealed, a little more) takes many transactions, not one over etcd's
// 1.5 MiB request bound.
func TestRekeyLargeValues(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	plain := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	id := register(t, plain, "https://large-values.atlassian.net").Instance.ID
	big := strings.Repeat("stack frame line\n", 3500) // ≈ 60 KiB
	const reports = 40                                // ≈ 2.4 MB in all
	for i := range reports {
		if _, err := plain.AddErrorReport(ctx, id, store.ErrorReport{Message: fmt.Sprint("report ", i), Stack: big}, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	keyed := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keyFile(t, "k1"), Lease: cli})
	rep, err := keyed.RekeyTenant(ctx, id, store.MoveOptions{Grace: time.Millisecond})
	if err != nil {
		t.Fatalf("re-key of a tenant with %d reports of %d bytes: %v", reports, len(big), err)
	}
	if rep.Copied < reports {
		t.Errorf("copied %d keys, want at least the %d reports", rep.Copied, reports)
	}
	got, _, err := keyed.ErrorReports(ctx, id, 100, "")
	if err != nil || len(got) != reports || got[0].Stack != big {
		t.Fatalf("reports after the re-key: %d, %v; want %d whole", len(got), err, reports)
	}
}

// What a re-key whose process stopped leaves (an old copy with its data id
// after the switch, or a data id reserved and never noted) is deleted by
// the tenant's next re-key, or by its erase; a copy retired a moment ago is
// left to the grace of the re-key that retired it, except by an erase.
func TestRekeyLeftoversSwept(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	keyed := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keyFile(t, "k1"), Lease: cli})
	put := func(k, v string) {
		t.Helper()
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, erase := range []bool{false, true} {
		id := register(t, keyed, fmt.Sprintf("https://leftovers-%v.atlassian.net", erase)).Instance.ID
		writeCanaries(t, keyed, id)
		entry := func(retired string) string {
			if retired == "" {
				return `{"instanceId":"` + id + `"}`
			}
			return `{"instanceId":"` + id + `","retired":"` + retired + `"}`
		}
		old := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		young := time.Now().UTC().Format(time.RFC3339)
		for d, v := range map[string]string{"oldold": entry(old), "unnotd": entry(""), "youngg": entry(young)} {
			put(p+"dataids/"+d, v)
			put(p+"d/"+d+"/users/x", "left")
		}
		want := []string{"youngg"} // a re-key leaves it to its grace
		if erase {
			if err := keyed.DeleteInstance(ctx, id); err != nil {
				t.Fatal(err)
			}
			want = nil
		} else {
			rep, err := keyed.RekeyTenant(ctx, id, store.MoveOptions{Grace: time.Millisecond})
			if err != nil || rep.From != rep.To {
				t.Fatalf("re-key of a tenant on the current scheme: %+v, %v", rep, err)
			}
			readsBack(t, keyed, id)
		}
		for _, d := range []string{"oldold", "unnotd", "youngg"} {
			left := len(keysUnder(t, cli, p+"d/"+d+"/")) + len(keysUnder(t, cli, p+"dataids/"+d))
			if kept := slices.Contains(want, d); kept != (left == 2) {
				t.Errorf("erase=%v: data id %s: %d keys left, want kept=%v", erase, d, left, kept)
			}
		}
	}
}

// After a re-key the old data id names the tenant, marked retired, until
// the old copy is deleted after the grace; then both are gone.
func TestRekeyRetiresOldDataID(t *testing.T) {
	cli, p := etcdtest.Shared(t)
	ctx := context.Background()
	plain := runStoreWith(t, cli, cli, store.Options{Prefix: p, Lease: cli})
	reg := register(t, plain, "https://retired.atlassian.net")
	id, oldID := reg.Instance.ID, reg.Instance.DataID
	writeCanaries(t, plain, id)
	keyed := runStoreWith(t, cli, cli, store.Options{Prefix: p, Keys: keyFile(t, "k1"), Lease: cli})
	done := make(chan error, 1)
	go func() {
		_, err := keyed.RekeyTenant(ctx, id, store.MoveOptions{Grace: 2 * time.Second})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(valueOf(t, cli, p+"dataids/"+oldID), `"retired"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the old data id was never marked retired: %q", valueOf(t, cli, p+"dataids/"+oldID))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(keysUnder(t, cli, p+"d/"+oldID+"/")) == 0 {
		t.Error("the old copy went before the grace")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if left := keysUnder(t, cli, p+"d/"+oldID+"/"); len(left) != 0 {
		t.Errorf("old copy left after the grace: %q", left)
	}
	if left := keysUnder(t, cli, p+"dataids/"+oldID); len(left) != 0 {
		t.Error("old data id left after the grace")
	}
	readsBack(t, keyed, id)
}

// A tenant whose record does not decode does not hold the step from
// layout 2 back: it is left with its layout-2 keys (logged); once its record
// is repaired, the rewrite (RewriteValues, relay encryption rewrite) gives
// it the keys of layout 3, and it reads back whole.
func TestMigrateV2CorruptRecordRepairedLater(t *testing.T) {
	cli, prefix := etcdtest.Shared(t)
	ctx := context.Background()
	f := loadFixture(t, cli, prefix, "testdata/layout-v2.json")
	recKey := prefix + "instances/" + f.Instances[0] + "/instance"
	rec := valueOf(t, cli, recKey)
	if _, err := cli.Put(ctx, recKey, "{garbled"); err != nil {
		t.Fatal(err)
	}
	keys := keyFile(t, "k1")
	s, err := store.New(cli, cli, store.Options{Prefix: prefix, Lease: cli, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx, nil); err != nil {
		t.Fatalf("migration with a record that does not decode: %v", err)
	}
	if _, err := cli.Put(ctx, recKey, rec); err != nil { // the repair
		t.Fatal(err)
	}
	live := runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli, Keys: keys})
	rep, err := live.RewriteValues(ctx, nil)
	if err != nil || rep.Rekeyed != 1 {
		t.Fatalf("rewrite after the repair: %+v, %v; want the repaired tenant re-keyed", rep, err)
	}
	checkMigrated(t, cli, prefix, live, f)
}
