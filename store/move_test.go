package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// shardedStores are relays over one directory and two shard clusters,
// "s1" and "s2" (each a real etcd member of its own).
type sharded struct {
	dir    *clientv3.Client
	prefix string
	s1, s2 *clientv3.Client
	e1, e2 *store.Embedded
}

func startSharded(t *testing.T) *sharded {
	t.Helper()
	dir, prefix := etcdtest.Shared(t)
	e1, s1 := etcdtest.Start(t)
	e2, s2 := etcdtest.Start(t)
	return &sharded{dir: dir, prefix: prefix, s1: s1, s2: s2, e1: e1, e2: e2}
}

// relay starts one more relay's store over the clusters.
func (c *sharded) relay(t *testing.T, o store.Options) *store.Store {
	t.Helper()
	o.Prefix, o.Lease = c.prefix, c.dir
	o.Shards = []store.ShardClient{{Name: "s1", KV: c.s1, Lease: c.s1, Watcher: c.s1}, {Name: "s2", KV: c.s2, Lease: c.s2, Watcher: c.s2}}
	return runStoreWith(t, c.dir, c.dir, o)
}

func shardKeys(t *testing.T, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	return keysUnder(t, cli, prefix)
}

// TestShardsHoldTenantsData: a new tenant's data goes to the shard with the
// most free room (the fewest tenants while no room is known); the
// directory keeps only its record and configuration; an erase removes its
// data from the shard.
func TestShardsHoldTenantsData(t *testing.T) {
	t.Parallel()
	c := startSharded(t)
	s := c.relay(t, store.Options{})
	ctx := context.Background()
	a := register(t, s, "https://a.atlassian.net")
	b := register(t, s, "https://b.atlassian.net")
	if a.Instance.Shard == b.Instance.Shard || a.Instance.Shard == "" || b.Instance.Shard == "" {
		t.Fatalf("two tenants on shards %q and %q; want one on each", a.Instance.Shard, b.Instance.Shard)
	}
	s.SetRoom("s1", store.Room{DBSize: 900, Quota: 1000})
	s.SetRoom("s2", store.Room{DBSize: 100, Quota: 1000})
	for i := range 2 {
		if r := register(t, s, fmt.Sprintf("https://c%d.atlassian.net", i)); r.Instance.Shard != "s2" {
			t.Errorf("with s2 emptier, a new tenant went to %q", r.Instance.Shard)
		}
	}
	on := map[string]*clientv3.Client{"s1": c.s1, "s2": c.s2}
	for _, r := range []*store.Registration{a, b} {
		fillTenant(t, s, r.Instance.ID, true)
		data := c.prefix + "d/" + r.Instance.DataID + "/"
		if n := len(shardKeys(t, on[r.Instance.Shard], data)); n != 8 {
			t.Errorf("%s: %d keys on its shard, want 8 (marker, user, a mapping's 5, a report)", r.Instance.Shard, n)
		}
		if n := len(keysUnder(t, c.dir, data)); n != 0 {
			t.Errorf("the directory holds %d keys of the tenant's data", n)
		}
	}
	if err := s.DeleteInstance(ctx, a.Instance.ID); err != nil {
		t.Fatal(err)
	}
	if left := shardKeys(t, on[a.Instance.Shard], c.prefix+"d/"+a.Instance.DataID+"/"); len(left) != 0 {
		t.Errorf("the erased tenant's data stays on its shard: %q", left)
	}
	if _, _, err := s.Mappings(ctx, b.Instance.ID, store.MappingQuery{By: store.ByMail, Value: "<m@x>"}); err != nil {
		t.Errorf("the other tenant: %v", err)
	}
}

// TestShardDownFailsOnlyItsTenants: with one shard's cluster gone, its
// tenants' data calls fail as unavailable, quickly; the other shard's
// tenants and the directory go on.
func TestShardDownFailsOnlyItsTenants(t *testing.T) {
	t.Parallel()
	c := startSharded(t)
	s := c.relay(t, store.Options{Timeout: time.Second})
	ctx := context.Background()
	a, b := register(t, s, "https://a.atlassian.net"), register(t, s, "https://b.atlassian.net")
	down, up := a, b
	if a.Instance.Shard == "s2" {
		down, up = b, a
	}
	c.e1.Close()
	start := time.Now()
	_, _, err := s.LinkMapping(ctx, down.Instance.ID, mapping("c", "<m@x>", "u", "1", "AB-1"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a write of a tenant on the stopped shard: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	if _, _, err := s.LinkMapping(ctx, up.Instance.ID, mapping("c", "<m@x>", "u", "1", "AB-1")); err != nil {
		t.Errorf("a tenant of the other shard: %v", err)
	}
	if _, err := s.Instance(ctx, down.Instance.ID); err != nil {
		t.Errorf("the directory (instance record): %v", err)
	}
}

// TestMoveTenantUnderLoad: a tenant moves to the other shard while two
// relays link and look up its mappings: no acknowledged write is lost, no
// lookup fails, the writes are held under a second, both relays follow the
// switch, and the old copy goes.
func TestMoveTenantUnderLoad(t *testing.T) {
	t.Parallel()
	c := startSharded(t)
	relays := []*store.Store{c.relay(t, store.Options{}), c.relay(t, store.Options{})}
	mover := c.relay(t, store.Options{})
	ctx := context.Background()
	reg := register(t, relays[0], "https://a.atlassian.net")
	id, from := reg.Instance.ID, reg.Instance.Shard
	to := map[string]string{"s1": "s2", "s2": "s1"}[from]
	// Some data before the move, an error report and a user among it.
	fillTenant(t, relays[0], id, true)

	var (
		mu       sync.Mutex
		acked    []store.Mapping
		failures []error
		lookups  atomic.Int64
		maxWrite atomic.Int64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, st := range relays {
		wg.Go(func() { // a writer
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := mapping(fmt.Sprintf("conv-%d", i%7), fmt.Sprintf("<%d.%d@x>", w, i), fmt.Sprintf("u%d", i%3), fmt.Sprint(1000+i%50), fmt.Sprintf("AB-%d", i%50))
				t0 := time.Now()
				_, _, err := st.LinkMapping(ctx, id, m)
				maxWrite.Store(max(maxWrite.Load(), int64(time.Since(t0))))
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Errorf("write: %w", err))
				} else {
					acked = append(acked, m)
				}
				mu.Unlock()
			}
		})
		wg.Go(func() { // a reader
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := st.Mappings(ctx, id, store.MappingQuery{By: store.ByConversation, Value: fmt.Sprintf("conv-%d", i%7)}); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Errorf("lookup: %w", err))
					mu.Unlock()
				}
				lookups.Add(1)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	rep, err := mover.MoveTenant(ctx, id, to, store.MoveOptions{Grace: 500 * time.Millisecond})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	t.Logf("move %s → %s: %d keys copied, %d changes caught up, writes held %v, %v in all; %d writes acknowledged, %d lookups, slowest write %v",
		rep.From, rep.To, rep.Copied, rep.CaughtUp, rep.Hold, rep.Total, len(acked), lookups.Load(), time.Duration(maxWrite.Load()))
	for _, f := range failures {
		t.Errorf("during the move: %v", f)
	}
	if rep.Hold > time.Second {
		t.Errorf("writes held %v, want at most 1s", rep.Hold)
	}
	if rep.Copied == 0 || len(acked) < 20 {
		t.Fatalf("too little load: %d copied, %d writes", rep.Copied, len(acked))
	}
	for _, st := range relays {
		eventually(t, func() bool {
			in, err := st.Instance(ctx, id)
			return err == nil && in.Shard == to && in.Move == nil
		})
		for _, m := range acked {
			got, _, err := st.Mappings(ctx, id, store.MappingQuery{By: store.ByMail, Value: m.MailID})
			if err != nil || len(got) != 1 || got[0].Jira != m.Jira {
				t.Fatalf("acknowledged %s after the move: %v, %v", m.MailID, got, err)
			}
		}
		if u, err := st.User(ctx, id, "u"); err != nil || u.Name != "U" {
			t.Errorf("the user after the move: %v, %v", u, err)
		}
		if reps, _, err := st.ErrorReports(ctx, id, 0, ""); err != nil || len(reps) != 1 {
			t.Errorf("the error report after the move: %v, %v", reps, err)
		}
	}
	on := map[string]*clientv3.Client{"s1": c.s1, "s2": c.s2}
	data := c.prefix + "d/" + reg.Instance.DataID + "/"
	if left := keysUnder(t, on[from], data); len(left) != 0 {
		t.Errorf("the old copy stays: %d keys", len(left))
	}
	resp, err := on[to].Get(ctx, data+"reports/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("the report on the new shard: %v %v", resp, err)
	}
	if ttl, err := on[to].TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil || ttl.TTL < 3500 {
		t.Errorf("the report's lease on the new shard: %v, %v; want its hour kept", ttl, err)
	}
	// Moving back works the same way.
	if _, err := mover.MoveTenant(ctx, id, from, store.MoveOptions{Grace: time.Millisecond}); err != nil {
		t.Fatalf("move back: %v", err)
	}
	if got, _, err := relays[0].Mappings(ctx, id, store.MappingQuery{By: store.ByMail, Value: acked[0].MailID}); err != nil || len(got) != 1 {
		t.Errorf("after moving back: %v, %v", got, err)
	}
}
