package fleet

import (
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/ratelimit"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options are what a relay joins the fleet with.
type Options struct {
	// Etcd is the directory cluster's client (KV, Lease and Watcher).
	Etcd *clientv3.Client
	// Prefix is the relay's etcd prefix (--etcd-prefix).
	Prefix string
	// ID names this relay (unique in the fleet); Addr, Version and Started
	// are shown to operators in its member key.
	ID, Addr, Version string
	Started           time.Time
	// TTL is the member key's lease (--fleet-ttl): a relay that stops
	// without leaving is dropped from the others' count within it.
	TTL time.Duration
	// Timeout bounds one etcd call.
	Timeout time.Duration
	// Cooldowns are the relay's Jira cool-downs, shared through etcd.
	Cooldowns *Cooldowns
	// OnShare is called with every new share (and once at the start).
	OnShare func(Share)
	// Logger receives warnings (a garbled key, etcd not answering).
	Logger *slog.Logger
	// Metrics receives relay_fleet_*.
	Metrics *metrics.Set
	// Clock is the cool-downs' clock; default the system clock.
	Clock ratelimit.Clock
}

// Fleet is this relay's membership and its share of the cool-downs. It runs
// from Start until Close.
type Fleet struct {
	o      Options
	log    *slog.Logger
	dir    string // o.Prefix + Dir
	clock  ratelimit.Clock
	cancel context.CancelFunc
	done   sync.WaitGroup
	synced chan struct{}
	once   sync.Once

	mu      sync.Mutex
	members map[string]member // the others' and our own, as last listed
	share   Share
	count   atomic.Int64 // members, for the gauge

	lease atomic.Int64 // this relay's member lease, 0 while not registered
	// deleted is the revision at which this relay's member key was last
	// seen deleted; rereg wakes the registration to compare it with its own.
	deleted atomic.Int64
	rereg   chan struct{}

	pubMu   sync.Mutex
	pending map[string]publication // cool-downs to share, by scope key
	wake    chan struct{}

	m fleetMetrics
}

type fleetMetrics struct {
	writes, conflicts, failures, dropped, ignored *metrics.Counter
}

// Start joins the fleet: registers this relay, lists and watches the fleet's
// keys, and shares o.Cooldowns. It never fails: while etcd does not answer
// the relay counts the members it last knew (at least itself) and keeps
// retrying. Synced is closed once the first list is applied.
func Start(o Options) *Fleet {
	f := newFleet(o)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	if o.OnShare != nil {
		o.OnShare(Solo)
	}
	o.Cooldowns.attach(f.enqueue)
	f.done.Add(3)
	go func() { defer f.done.Done(); f.register(ctx) }()
	go func() { defer f.done.Done(); f.watch(ctx) }()
	go func() { defer f.done.Done(); f.publishLoop(ctx) }()
	return f
}

// newFleet is a Fleet that runs nothing yet.
func newFleet(o Options) *Fleet {
	f := &Fleet{
		o: o, log: cmp.Or(o.Logger, slog.New(slog.DiscardHandler)), dir: o.Prefix + Dir,
		clock: o.Clock, cancel: func() {}, synced: make(chan struct{}),
		members: map[string]member{}, share: Solo,
		rereg: make(chan struct{}, 1), pending: map[string]publication{}, wake: make(chan struct{}, 1),
	}
	if f.clock == nil {
		f.clock = ratelimit.SystemClock{}
	}
	f.count.Store(1)
	f.registerMetrics(o.Metrics)
	return f
}

func (f *Fleet) registerMetrics(set *metrics.Set) {
	if set == nil {
		set = metrics.NewSet()
	}
	set.NewGauge("relay_fleet_members", func() float64 { return float64(f.count.Load()) })
	for s := range numScopes {
		set.NewGauge(`relay_fleet_cooldowns{scope="`+s.String()+`"}`, func() float64 { return float64(f.o.Cooldowns.Active()[s]) })
	}
	f.m = fleetMetrics{
		writes:    set.NewCounter(`relay_fleet_cooldown_writes_total{result="ok"}`),
		conflicts: set.NewCounter(`relay_fleet_cooldown_writes_total{result="conflict"}`),
		failures:  set.NewCounter(`relay_fleet_cooldown_writes_total{result="error"}`),
		dropped:   set.NewCounter(`relay_fleet_cooldown_writes_total{result="dropped"}`),
		ignored:   set.NewCounter("relay_fleet_keys_ignored_total"),
	}
}

// Synced is closed once the fleet's keys were listed once (the cool-downs
// running when the relay started are held).
func (f *Fleet) Synced() <-chan struct{} { return f.synced }

// Members is the number of relays in the fleet, this one included.
func (f *Fleet) Members() int { return int(f.count.Load()) }

// Share is this relay's share now.
func (f *Fleet) Share() Share {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.share
}

// Close leaves the fleet: the member key's lease is revoked, so the others'
// shares grow at once rather than after the TTL. Cool-downs stop being
// shared.
func (f *Fleet) Close() {
	f.o.Cooldowns.attach(nil)
	f.cancel()
	f.done.Wait()
	if id := f.lease.Swap(0); id != 0 {
		f.revoke(clientv3.LeaseID(id))
	}
}

func (f *Fleet) timeout() time.Duration { return cmp.Or(f.o.Timeout, 5*time.Second) }

// watch lists the fleet's keys, then follows them; when the watch breaks
// (etcd lost its leader, the revision was compacted) it lists again. What
// was last known stays in force meanwhile.
func (f *Fleet) watch(ctx context.Context) {
	for ctx.Err() == nil {
		rev, err := f.list(ctx)
		if err != nil {
			if ctx.Err() == nil {
				f.log.Warn("fleet: cannot list the fleet's keys; keeping the last known", "err", err)
			}
			sleep(ctx, time.Second)
			continue
		}
		f.once.Do(func() { close(f.synced) })
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for wr := range f.o.Etcd.Watch(wctx, f.dir, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				f.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.Lease, ev.Type == clientv3.EventTypeDelete)
			}
			f.reshare()
		}
		cancel()
		sleep(ctx, 100*time.Millisecond)
	}
}

// list reads every fleet key and makes the members and shared cool-downs
// exactly those; it returns the revision read at.
func (f *Fleet) list(ctx context.Context) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	resp, err := f.o.Etcd.Get(cctx, f.dir, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	f.members = map[string]member{}
	f.mu.Unlock()
	seen := map[string]bool{}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		f.apply(k, kv.Value, kv.ModRevision, kv.Lease, false)
		seen[k] = true
	}
	for _, k := range f.o.Cooldowns.sharedKeys() {
		if !seen[f.dir+"cooldowns/"+k] {
			f.o.Cooldowns.release(k)
		}
	}
	f.reshare()
	return resp.Header.Revision, nil
}

// apply takes in one fleet key as put (or deleted). A key the relay does
// not write (a key of another shape, a value it cannot read, a key on no
// lease: it would never end) is ignored with a warning.
func (f *Fleet) apply(key string, val []byte, rev, lease int64, deleted bool) {
	rest, ok := strings.CutPrefix(key, f.dir)
	if !ok {
		return
	}
	if !deleted && lease == 0 {
		f.ignored(key, "on no lease")
		return
	}
	if id, ok := strings.CutPrefix(rest, "members/"); ok {
		f.mu.Lock()
		defer f.mu.Unlock()
		if deleted {
			delete(f.members, id)
			if id == f.o.ID { // an operator deleted it, or its lease ended
				f.deleted.Store(max(f.deleted.Load(), rev))
				select {
				case f.rereg <- struct{}{}:
				default:
				}
			}
			return
		}
		var m member
		if err := json.Unmarshal(val, &m); err != nil || !configs.ValidRelayID(id) {
			f.ignored(key, "not a member record")
			return
		}
		f.members[id] = m
		return
	}
	if k, ok := strings.CutPrefix(rest, "cooldowns/"); ok {
		s, err := parseKey(k)
		if err != nil {
			if !deleted {
				f.ignored(key, "not a cool-down key")
			}
			return
		}
		if deleted {
			f.o.Cooldowns.release(k)
			return
		}
		r, err := parseRecord(val)
		if err != nil {
			f.ignored(key, "not a cool-down record")
			return
		}
		f.o.Cooldowns.hold(k, s, r, rev, lease)
		return
	}
	if !deleted {
		f.ignored(key, "unknown fleet key")
	}
}

func (f *Fleet) ignored(key, why string) {
	f.m.ignored.Inc()
	f.log.Warn("fleet: ignoring a key the relay did not write", "key", clip(key), "why", why)
}

// reshare recomputes the share from the members (this relay always among
// them) and reports a change.
func (f *Fleet) reshare() {
	f.mu.Lock()
	ids := make([]string, 0, len(f.members)+1)
	for id := range f.members {
		ids = append(ids, id)
	}
	if _, ok := f.members[f.o.ID]; !ok {
		ids = append(ids, f.o.ID)
	}
	slices.Sort(ids)
	s := Share{Members: len(ids), Rank: slices.Index(ids, f.o.ID)}
	changed := s != f.share
	f.share = s
	f.count.Store(int64(s.Members))
	f.mu.Unlock()
	if changed {
		f.log.Info("fleet: members changed", "members", s.Members, "rank", s.Rank)
		if f.o.OnShare != nil {
			f.o.OnShare(s)
		}
	}
}

// clip bounds a key quoted in a log line.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
