package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leasesOf lists the lease of every key under p (0: none).
func leasesOf(t *testing.T, cli *clientv3.Client, p string) map[string]clientv3.LeaseID {
	t.Helper()
	resp, err := cli.Get(context.Background(), p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]clientv3.LeaseID{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = clientv3.LeaseID(kv.Lease)
	}
	return out
}

// TestRetentionExpiresMappingsOnSharedLeases: under a retention, every key
// of a mapping rides one lease shared by all mappings expiring in the same
// bucket; the leases stay at most one per bucket; mappings vanish on time
// by themselves (record and index entries alike); linking again renews; a
// tenant's own retention of 0 keeps its mappings.
func TestRetentionExpiresMappingsOnSharedLeases(t *testing.T) {
	t.Parallel()
	cli, prefix := etcdtest.Shared(t)
	const retention = 2 * time.Second // buckets of 1 s
	s := runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli, MappingRetention: retention})
	ctx := context.Background()
	reg := register(t, s, "https://acme.atlassian.net")
	id, data := reg.Instance.ID, prefix+"d/"+reg.Instance.DataID+"/"
	keep := register(t, s, "https://keep.atlassian.net")
	zero := 0
	if _, err := s.PatchInstance(ctx, keep.Instance.ID, store.InstancePatch{MappingRetentionDays: &zero}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		in, err := s.Instance(ctx, keep.Instance.ID)
		return err == nil && in.MappingRetentionDays != nil
	})

	start := time.Now()
	var ms []store.Mapping
	for i := range 12 {
		m := mapping(fmt.Sprintf("conv-%d", i%3), fmt.Sprintf("<%d@x>", i), fmt.Sprintf("u%d", i%2), fmt.Sprint(100+i), fmt.Sprintf("AB-%d", i))
		if _, created, err := s.LinkMapping(ctx, id, m); err != nil || !created {
			t.Fatalf("link %d: %v, created %v", i, err, created)
		}
		ms = append(ms, m)
		time.Sleep(50 * time.Millisecond)
	}
	if _, _, err := s.LinkMapping(ctx, keep.Instance.ID, mapping("c", "<k@x>", "u", "1", "AB-1")); err != nil {
		t.Fatal(err)
	}
	spent := time.Since(start)

	leases := leasesOf(t, cli, data)
	distinct := map[clientv3.LeaseID]bool{}
	for k, l := range leases {
		if k == data+"tenant" {
			if l != 0 {
				t.Errorf("the tenant marker is on a lease")
			}
			continue
		}
		if l == 0 {
			t.Errorf("%s is on no lease", k)
		}
		distinct[l] = true
	}
	// The links spanned `spent` of 1 s buckets: at most that many + 1 leases.
	if maxBuckets := int(spent/time.Second) + 2; len(distinct) > maxBuckets {
		t.Errorf("%d leases for links over %v, want at most %d (one per bucket)", len(distinct), spent, maxBuckets)
	}
	if reg := keysUnder(t, cli, prefix+"leases/"); len(reg) != len(distinct) {
		t.Errorf("lease registry %q, want one entry per lease (%d)", reg, len(distinct))
	}
	for _, m := range ms {
		var first clientv3.LeaseID
		for i, k := range mappingKeysV2(data, m) {
			l, ok := leases[k]
			if !ok {
				t.Fatalf("%s is missing", k)
			}
			if i == 0 {
				first = l
			} else if l != first {
				t.Errorf("the keys of %s ride two leases", m.MailID)
			}
		}
	}
	for l := range distinct {
		ttl, err := cli.TimeToLive(ctx, l)
		if err != nil || ttl.TTL <= 0 || ttl.TTL > int64((retention+2*time.Second)/time.Second) {
			t.Errorf("lease %x: TTL %v, %v; want at most retention + a bucket", l, ttl, err)
		}
	}
	if keepLeases := leasesOf(t, cli, prefix+"d/"+keep.Instance.DataID+"/"); len(keepLeases) == 0 {
		t.Fatal("the keeping tenant has no keys")
	} else {
		for k, l := range keepLeases {
			if l != 0 {
				t.Errorf("the tenant that keeps its mappings has %s on a lease", k)
			}
		}
	}

	// Link the first mapping again a bucket later: it moves to a later
	// lease (its expiry starts over).
	for time.Since(start) < 1200*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	before := leasesOf(t, cli, data)[mappingKeysV2(data, ms[0])[0]]
	if _, created, err := s.LinkMapping(ctx, id, ms[0]); err != nil || created {
		t.Fatalf("link again: %v, created %v", err, created)
	}
	after := leasesOf(t, cli, data)[mappingKeysV2(data, ms[0])[0]]
	for _, k := range mappingKeysV2(data, ms[0]) {
		if l := leasesOf(t, cli, data)[k]; l != after || l == before || l == 0 {
			t.Errorf("linked again, %s is on lease %x (before %x, its record's now %x)", k, l, before, after)
		}
	}
	oldTTL, err1 := cli.TimeToLive(ctx, before)
	newTTL, err2 := cli.TimeToLive(ctx, after)
	if err1 != nil || err2 != nil || newTTL.TTL <= oldTTL.TTL {
		t.Errorf("linked again: lease TTL %v (was %v): %v %v; want later", newTTL, oldTTL, err1, err2)
	}
	// By spent + retention + a bucket (+ etcd's expiry tick) the others are
	// gone, every key of them, by themselves.
	for time.Since(start) < spent+retention+time.Second+600*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range ms[1:] {
		if got, _, err := s.Mappings(ctx, id, store.MappingQuery{By: store.ByMail, Value: m.MailID}); err != nil || len(got) != 0 {
			t.Errorf("%s after its retention: %v, %v", m.MailID, got, err)
		}
	}
	eventually(t, func() bool {
		left := keysUnder(t, cli, data)
		return slices.Equal(left, []string{data + "tenant"})
	})
	if left := keysUnder(t, cli, data); !slices.Equal(left, []string{data + "tenant"}) {
		t.Errorf("keys left after expiry: %q", left)
	}
	if got, _, err := s.Mappings(ctx, keep.Instance.ID, store.MappingQuery{By: store.ByMail, Value: "<k@x>"}); err != nil || len(got) != 1 {
		t.Errorf("the keeping tenant's mapping: %v, %v", got, err)
	}
}

// mappingKeysV2 are the five keys of m under a tenant's data prefix
// (docs/key-layout.md), its record first.
func mappingKeysV2(data string, m store.Mapping) []string {
	mail, user, conv := store.Token(m.MailID), store.Token(m.UserID), store.Token(m.ConversationID)
	return []string{
		data + "m/" + mail + "/" + user + "/" + m.Jira.ID,
		data + "c/" + conv + "/" + user + "/" + mail + "/" + m.Jira.ID,
		data + "i/" + m.Jira.ID + "/" + user + "/" + mail,
		data + "k/" + m.Jira.Key + "/" + user + "/" + mail + "/" + m.Jira.ID,
		data + "u/" + user + "/" + mail + "/" + m.Jira.ID,
	}
}

// TestRetentionDaysAreValidated: a tenant's retention is 0 to 3650 days.
func TestRetentionDaysAreValidated(t *testing.T) {
	t.Parallel()
	s, _, _ := newStore(t)
	id := register(t, s, "https://acme.atlassian.net").Instance.ID
	for _, d := range []int{-1, store.MaxRetentionDays + 1} {
		if _, err := s.PatchInstance(context.Background(), id, store.InstancePatch{MappingRetentionDays: &d}); err == nil {
			t.Errorf("retention of %d days accepted", d)
		}
	}
	for _, d := range []int{0, 1, 30, store.MaxRetentionDays} {
		in, err := s.PatchInstance(context.Background(), id, store.InstancePatch{MappingRetentionDays: &d})
		var view store.InstanceView
		if err == nil {
			view, err = in.View()
		}
		if err != nil || in.MappingRetentionDays == nil || *in.MappingRetentionDays != d || view.MappingRetentionDays == nil || *view.MappingRetentionDays != d {
			t.Errorf("retention of %d days: %v, %v", d, in, err)
		}
	}
}

// TestRetentionSurvivesALeaseRevokedByHand: a bucket's lease revoked (by an
// operator, or gone with a restored snapshot) takes its mappings with it;
// the next link gets a lease anew instead of failing.
func TestRetentionSurvivesALeaseRevokedByHand(t *testing.T) {
	t.Parallel()
	cli, prefix := etcdtest.Shared(t)
	s := runStoreWith(t, cli, cli, store.Options{Prefix: prefix, Lease: cli, MappingRetention: time.Hour})
	ctx := context.Background()
	reg := register(t, s, "https://acme.atlassian.net")
	data := prefix + "d/" + reg.Instance.DataID + "/"
	first := mapping("c", "<1@x>", "u", "1", "AB-1")
	if _, _, err := s.LinkMapping(ctx, reg.Instance.ID, first); err != nil {
		t.Fatal(err)
	}
	old := leasesOf(t, cli, data)[mappingKeysV2(data, first)[0]]
	if _, err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	second := mapping("c", "<2@x>", "u", "1", "AB-1")
	if _, created, err := s.LinkMapping(ctx, reg.Instance.ID, second); err != nil || !created {
		t.Fatalf("a link after the lease was revoked: %v, created %v", err, created)
	}
	if l := leasesOf(t, cli, data)[mappingKeysV2(data, second)[0]]; l == 0 || l == old {
		t.Errorf("the new mapping is on lease %x (the revoked one was %x)", l, old)
	}
	if got, _, err := s.Mappings(ctx, reg.Instance.ID, store.MappingQuery{By: store.ByConversation, Value: "c"}); err != nil || len(got) != 1 || got[0].MailID != "<2@x>" {
		t.Errorf("the conversation after the revoke: %v, %v", got, err)
	}
}
