package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// join starts a Fleet named id over cli under prefix "/t/".
func join(t *testing.T, cli *clientv3.Client, id string) *Fleet {
	t.Helper()
	f := Start(Options{Etcd: cli, Prefix: "/t/", ID: id, TTL: 2 * time.Second, Timeout: 500 * time.Millisecond,
		Cooldowns: NewCooldowns(nil, time.Hour), Started: time.Now()})
	t.Cleanup(f.Close)
	select {
	case <-f.Synced():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not list the fleet in 5 s", id)
	}
	return f
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(within); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s: not within %v", what, within)
		}
	}
}

// A scope tripped over and over is written at most once a second by one
// relay, and not at all when the fleet already holds it as long.
func TestPublishAtMostOncePerScopePerSecond(t *testing.T) {
	_, cli := etcdtest.Start(t)
	a, b := join(t, cli, "a"), join(t, cli, "b")
	start := time.Now()
	for i := 0; time.Since(start) < 1500*time.Millisecond; i++ {
		// Each 429 asks for a longer wait than the one before.
		a.o.Cooldowns.Trip(inst, Upload, "ABC-1", ReasonPerIssue, 30*time.Second+time.Duration(i)*10*time.Millisecond)
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	waitFor(t, "b holds the issue", time.Second, func() bool { return b.o.Cooldowns.Active()[ScopeIssue] == 1 })
	time.Sleep(1100 * time.Millisecond) // a pending write would be done by now
	writes := a.m.writes.Get()
	if max := uint64(elapsed/time.Second) + 2; writes < 1 || writes > max {
		t.Errorf("%d writes of one scope in %v (about 150 429s), want 1 to %d", writes, elapsed, max)
	}
	// b sees the same 429 wave: the fleet holds it already, b writes nothing.
	b.o.Cooldowns.Trip(inst, Upload, "ABC-1", ReasonPerIssue, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	if w := b.m.writes.Get() + b.m.conflicts.Get(); w != 0 {
		t.Errorf("b wrote a cool-down the fleet holds already (%d writes)", w)
	}
	resp, err := cli.Get(context.Background(), "/t/fleet/cooldowns/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("cool-down keys: %v, %v; want one key on a lease", resp, err)
	}
	ttl, err := cli.TimeToLive(context.Background(), clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.TTL < 25 || ttl.TTL > 33 {
		t.Errorf("the key's lease has %v s left (%v), want about the 30 s of the cool-down", ttl.TTL, err)
	}
}

// Members come and go with their keys: a relay whose lease an operator
// revokes registers again; a relay that loses etcd keeps the count it last
// knew and never counts fewer than itself.
func TestMembership(t *testing.T) {
	e, cli := etcdtest.Start(t)
	a := join(t, cli, "a")
	if a.Members() != 1 || a.Share() != Solo {
		t.Fatalf("alone: %d members, share %+v", a.Members(), a.Share())
	}
	b := join(t, cli, "b")
	waitFor(t, "both count 2", 2*time.Second, func() bool { return a.Members() == 2 && b.Members() == 2 })
	if a.Share() != (Share{Members: 2, Rank: 0}) || b.Share() != (Share{Members: 2, Rank: 1}) {
		t.Errorf("shares %+v %+v, want ranks by id", a.Share(), b.Share())
	}

	if _, err := cli.Revoke(context.Background(), clientv3.LeaseID(a.lease.Load())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a registers again", 3*time.Second, func() bool {
		r, err := cli.Get(context.Background(), "/t/fleet/members/a")
		return err == nil && len(r.Kvs) == 1
	})
	waitFor(t, "both count 2 again", 2*time.Second, func() bool { return a.Members() == 2 && b.Members() == 2 })

	e.Close()                   // etcd is gone for good (closing takes etcd about 7 s)
	time.Sleep(3 * time.Second) // longer than the TTL
	if a.Members() != 2 || b.Members() != 2 {
		t.Errorf("without etcd: %d and %d members, want the last known 2", a.Members(), b.Members())
	}
	start := time.Now()
	a.Close()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("leaving without etcd took %v", d)
	}
}

// A member key deleted by hand is put again at once, and only once; a
// second relay started with the same id does not take the key over, and
// gets it when the first leaves.
func TestMemberKeyKeptAndUnique(t *testing.T) {
	_, cli := etcdtest.Start(t)
	a := join(t, cli, "a")
	key := "/t/fleet/members/a"
	created := func() int64 {
		r, err := cli.Get(context.Background(), key)
		if err != nil || len(r.Kvs) != 1 {
			return 0
		}
		return r.Kvs[0].CreateRevision
	}
	waitFor(t, "a registered", 2*time.Second, func() bool { return created() != 0 })
	first := created()
	if _, err := cli.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a registers again", time.Second, func() bool { c := created(); return c != 0 && c != first })
	again := created()
	time.Sleep(1500 * time.Millisecond)
	if now := created(); now != again {
		t.Errorf("the member key was made again and again (create revisions %d, %d, %d)", first, again, now)
	}

	twin := Start(Options{Etcd: cli, Prefix: "/t/", ID: "a", TTL: 2 * time.Second, Timeout: 500 * time.Millisecond,
		Cooldowns: NewCooldowns(nil, time.Hour), Started: time.Now().Add(time.Hour)})
	t.Cleanup(twin.Close)
	time.Sleep(500 * time.Millisecond)
	if now := created(); now != again || twin.lease.Load() != 0 {
		t.Errorf("a second relay with the same id took the key (create revision %d, was %d; its lease %d)", now, again, twin.lease.Load())
	}
	a.Close()
	waitFor(t, "the twin registers once the first left", 3*time.Second, func() bool { return twin.lease.Load() != 0 })
}

// Re-listing (after the watch broke) makes the fleet exactly what etcd
// holds: members and cool-downs deleted meanwhile are gone, and keys on no
// lease (written by hand) are not taken in.
func TestListResyncs(t *testing.T) {
	_, cli := etcdtest.Start(t)
	ctx := context.Background()
	l, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	until := `{"until":"` + time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano) + `"}`
	for k, lease := range map[string]clientv3.LeaseID{
		"/t/fleet/members/b":                         l.ID,
		"/t/fleet/members/c":                         0,
		"/t/fleet/cooldowns/issue/" + inst + "/AB-1": l.ID,
		"/t/fleet/cooldowns/tenant/" + inst:          0,
	} {
		v := until
		if lease != 0 && k == "/t/fleet/members/b" {
			v = `{"id":"b"}`
		} else if k == "/t/fleet/members/c" {
			v = `{"id":"c"}`
		}
		if _, err := cli.Put(ctx, k, v, clientv3.WithLease(lease)); err != nil {
			t.Fatal(err)
		}
	}
	f := newFleet(Options{Etcd: cli, Prefix: "/t/", ID: "a", Timeout: time.Second, Cooldowns: NewCooldowns(nil, time.Hour)})
	// What the relay knew before its watch broke: a member and a cool-down
	// that are gone since.
	f.members["gone"] = member{ID: "gone"}
	f.o.Cooldowns.hold(ScopeKey(ScopeGlobal, "", 0, ""), ScopeGlobal, record{Until: time.Now().Add(time.Minute)}, 3, 4)
	if _, err := f.list(ctx); err != nil {
		t.Fatal(err)
	}
	if f.Members() != 2 || f.Share() != (Share{Members: 2, Rank: 0}) {
		t.Errorf("after the list: %d members (%+v), want a and b", f.Members(), f.Share())
	}
	if _, _, cooling := f.o.Cooldowns.Check(other, Download, ""); cooling {
		t.Error("a global cool-down deleted while the watch was down is still held")
	}
	if _, _, cooling := f.o.Cooldowns.Check(inst, Upload, "AB-1"); !cooling {
		t.Error("the issue's cool-down in etcd is not held")
	}
	if _, _, cooling := f.o.Cooldowns.Check(inst, Download, ""); cooling {
		t.Error("a tenant cool-down on no lease (written by hand) is held")
	}
	if n := f.m.ignored.Get(); n != 2 {
		t.Errorf("%d keys ignored, want the 2 on no lease", n)
	}
}

// Two relays seeing one wave of 429s for a scope write its key at most once
// a second between them.
func TestPublishOncePerSecondFleetWide(t *testing.T) {
	_, cli := etcdtest.Start(t)
	a, b := join(t, cli, "a"), join(t, cli, "b")
	start := time.Now()
	for i := 0; time.Since(start) < 2500*time.Millisecond; i++ {
		d := 30*time.Second + time.Duration(i)*20*time.Millisecond // each 429 a little longer
		a.o.Cooldowns.Trip(inst, Upload, "", ReasonBurst, d)
		b.o.Cooldowns.Trip(inst, Upload, "", ReasonBurst, d+5*time.Millisecond)
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	time.Sleep(1100 * time.Millisecond)
	writes := a.m.writes.Get() + b.m.writes.Get()
	if max := uint64(elapsed/time.Second) + 2; writes < 1 || writes > max {
		t.Errorf("%d writes of one scope by two relays in %v, want 1 to %d", writes, elapsed, max)
	}
	t.Logf("%d writes (%d conflicts) in %v", writes, a.m.conflicts.Get()+b.m.conflicts.Get(), elapsed.Round(time.Millisecond))
	leases, err := cli.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := len(leases.Leases); n > 3 { // the two members' and the key's
		t.Errorf("%d leases alive, want 3: replaced cool-down leases are given back", n)
	}
}
