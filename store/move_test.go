package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// on is the client of shard name.
func (c *sharded) on(name string) *clientv3.Client {
	return map[string]*clientv3.Client{"s1": c.s1, "s2": c.s2}[name]
}

// otherShard is the shard a tenant on name moves to.
func otherShard(name string) string { return map[string]string{"s1": "s2", "s2": "s1"}[name] }

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
	for _, r := range []*store.Registration{a, b} {
		fillTenant(t, s, r.Instance.ID, true)
		data := c.prefix + "d/" + r.Instance.DataID + "/"
		if n := len(keysUnder(t, c.on(r.Instance.Shard), data)); n != 8 {
			t.Errorf("%s: %d keys on its shard, want 8 (marker, user, a mapping's 5, a report)", r.Instance.Shard, n)
		}
		if n := len(keysUnder(t, c.dir, data)); n != 0 {
			t.Errorf("the directory holds %d keys of the tenant's data", n)
		}
	}
	if err := s.DeleteInstance(ctx, a.Instance.ID); err != nil {
		t.Fatal(err)
	}
	if left := keysUnder(t, c.on(a.Instance.Shard), c.prefix+"d/"+a.Instance.DataID+"/"); len(left) != 0 {
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
	to := otherShard(from)
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
	data := c.prefix + "d/" + reg.Instance.DataID + "/"
	if left := keysUnder(t, c.on(from), data); len(left) != 0 {
		t.Errorf("the old copy stays: %d keys", len(left))
	}
	resp, err := c.on(to).Get(ctx, data+"reports/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("the report on the new shard: %v %v", resp, err)
	}
	if ttl, err := c.on(to).TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil || ttl.TTL < 3500 {
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

// TestMoveOneAtATime: a second move of a tenant while one runs is refused
// (ErrLocked), and the running one completes with nothing lost.
func TestMoveOneAtATime(t *testing.T) {
	t.Parallel()
	c := startSharded(t)
	s := c.relay(t, store.Options{})
	ctx := context.Background()
	reg := register(t, s, "https://a.atlassian.net")
	id, from := reg.Instance.ID, reg.Instance.Shard
	to := otherShard(from)
	fillTenant(t, s, id, true)
	done := make(chan error, 1)
	go func() {
		_, err := s.MoveTenant(ctx, id, to, store.MoveOptions{Grace: 2 * time.Second})
		done <- err
	}()
	eventually(t, func() bool { // the first move holds its lock (until its grace ends)
		resp, err := c.dir.Get(ctx, c.prefix+"moves/"+id)
		return err == nil && len(resp.Kvs) == 1 || len(done) > 0
	})
	var second error
	eventually(t, func() bool {
		_, second = s.MoveTenant(ctx, id, from, store.MoveOptions{})
		return errors.Is(second, store.ErrLocked) || len(done) > 0
	})
	if err := <-done; err != nil {
		t.Fatalf("the first move: %v", err)
	}
	if !errors.Is(second, store.ErrLocked) {
		t.Errorf("the second move while the first ran: %v, want ErrLocked", second)
	}
	if u, err := s.User(ctx, id, "u"); err != nil || u.Name != "U" {
		t.Fatalf("the tenant's user after two moves at once: %v, %v", u, err)
	}
	if got, _, err := s.Mappings(ctx, id, store.MappingQuery{By: store.ByMail, Value: "<m@x>"}); err != nil || len(got) != 1 {
		t.Fatalf("the tenant's mapping after two moves at once: %v, %v", got, err)
	}
}

// TestMoveAQuietTenantOfABusyShard: the catch-up finishes although the
// tenant writes nothing and other tenants of the shard write all the time.
func TestMoveAQuietTenantOfABusyShard(t *testing.T) {
	t.Parallel()
	c := startSharded(t)
	s := c.relay(t, store.Options{})
	ctx := context.Background()
	quiet := register(t, s, "https://quiet.atlassian.net")
	fillTenant(t, s, quiet.Instance.ID, false)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // someone else writes to the quiet tenant's shard all along
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.on(quiet.Instance.Shard).Put(ctx, fmt.Sprintf("/other/%d", i%100), "x"); err != nil {
				return
			}
		}
	})
	to := otherShard(quiet.Instance.Shard)
	mctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rep, err := s.MoveTenant(mctx, quiet.Instance.ID, to, store.MoveOptions{Grace: time.Millisecond})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("move: %v", err)
	}
	if rep.Hold > time.Second {
		t.Errorf("held %v", rep.Hold)
	}
}

// TestEraseDuringAMoveLeavesNothing: a tenant erased while its data is
// being copied leaves no key on either shard, and the move fails.
func TestEraseDuringAMoveLeavesNothing(t *testing.T) {
	t.Parallel()
	c := startSharded(t)
	s := c.relay(t, store.Options{})
	ctx := context.Background()
	reg := register(t, s, "https://a.atlassian.net")
	id := reg.Instance.ID
	for i := range 300 {
		if _, _, err := s.LinkMapping(ctx, id, mapping("c", fmt.Sprintf("<%d@x>", i), "u", "1", "AB-1")); err != nil {
			t.Fatal(err)
		}
	}
	to := otherShard(reg.Instance.Shard)
	done := make(chan error, 1)
	go func() {
		_, err := s.MoveTenant(ctx, id, to, store.MoveOptions{Grace: time.Millisecond})
		done <- err
	}()
	eventually(t, func() bool { // the move has begun: its note is on the record
		resp, err := c.dir.Get(ctx, c.prefix+"instances/"+id+"/instance")
		return err == nil && len(resp.Kvs) == 1 && strings.Contains(string(resp.Kvs[0].Value), `"move"`) || len(done) > 0
	})
	if err := s.DeleteInstance(ctx, id); err != nil {
		t.Fatal(err)
	}
	moveErr := <-done
	data := c.prefix + "d/" + reg.Instance.DataID + "/"
	for name, cli := range map[string]*clientv3.Client{"s1": c.s1, "s2": c.s2, "directory": c.dir} {
		if left := keysUnder(t, cli, data); len(left) != 0 {
			t.Errorf("%s keeps %d keys of the erased tenant (the move: %v)", name, len(left), moveErr)
		}
	}
}

// TestAPatchDuringAMoveDoesNotStopIt: the admin changing the tenant's
// record while it moves neither fails the move nor leaves writes fenced.
func TestAPatchDuringAMoveDoesNotStopIt(t *testing.T) {
	t.Parallel()
	c := startSharded(t)
	s := c.relay(t, store.Options{})
	ctx := context.Background()
	reg := register(t, s, "https://a.atlassian.net")
	id := reg.Instance.ID
	fillTenant(t, s, id, false)
	to := otherShard(reg.Instance.Shard)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		on := true
		for {
			select {
			case <-stop:
				return
			default:
			}
			on = !on
			if _, err := s.PatchInstance(ctx, id, store.InstancePatch{ErrorReports: &on}); err != nil {
				t.Errorf("patch: %v", err)
				return
			}
		}
	})
	_, err := s.MoveTenant(ctx, id, to, store.MoveOptions{Grace: time.Millisecond})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("move with patches meanwhile: %v", err)
	}
	if _, _, err := s.LinkMapping(ctx, id, mapping("c", "<after@x>", "u", "1", "AB-1")); err != nil {
		t.Errorf("a write after the move: %v", err)
	}
}
