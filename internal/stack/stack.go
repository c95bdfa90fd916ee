// Package stack assembles one relay from its parts, once: the store over an
// etcd client (every etcd call timed into the metrics), the store's
// watch-fed cache, and the front door with the data API and the attachment
// relay, all reporting to one metrics registry. cmd/relay and the test
// starters (internal/relaytest, internal/resiliencetest) all build a relay
// with Start, so no two of them wire it differently.
package stack

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/configs"
	"github.com/jira-relay/jira-relay/internal/fleet"
	"github.com/jira-relay/jira-relay/internal/seal"
	"github.com/jira-relay/jira-relay/proxy"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options are what a relay is built from.
type Options struct {
	// Config must have passed configs.Validate (or come from configs.Load).
	Config configs.Config
	// Etcd is the client the store uses; the caller closes it after Close.
	Etcd *clientv3.Client
	// Logger receives the relay's and the store's log lines; nil discards.
	Logger *slog.Logger
	// RoomEvery is how often etcd's database size is read (default 30s);
	// TenantsEvery how often the largest tenants are counted (default 5m).
	RoomEvery, TenantsEvery time.Duration
	// Now is the clock of the hourly room warning; default time.Now.
	Now func() time.Time
	// Shards are the clients of the --etcd-shards clusters, by name (the
	// caller closes them after Close).
	Shards map[string]*clientv3.Client
	// Addr is the address the front door listens on, shown to operators in
	// the relay's member key.
	Addr string
}

// Stack is one assembled relay. Its cache runs from Start until Close.
type Stack struct {
	Config  configs.Config
	Store   *store.Store
	Server  *proxy.Server
	Metrics *metrics.Set

	// Fleet is this relay's membership and shared cool-downs.
	Fleet *fleet.Fleet

	stopCache context.CancelFunc
	cacheDone chan struct{}
	roomDone  chan struct{}
	synced    chan struct{}
}

// Start builds the relay and starts its cache; it does not wait for the
// cache to fill (Synced tells) nor listen (Server.Serve does).
func Start(o Options) (*Stack, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys, err := encryptionKeys(o.Config, log)
	if err != nil {
		return nil, err
	}
	set := metrics.NewSet()
	kv := store.ObservedKV(o.Etcd, etcdObserver(set))
	st, err := store.New(kv, o.Etcd, store.Options{
		Prefix: o.Config.EtcdPrefix, Timeout: o.Config.EtcdRequestTimeout, Logger: log, Lease: o.Etcd,
		MappingRetention: o.Config.MappingRetention,
		MaxMappings:      o.Config.TenantMaxMappings, MaxUsers: o.Config.TenantMaxUsers,
		Shards:       shardClients(o.Shards, etcdObserver(set)),
		Keys:         keys,
		OnWatchEvent: func(kind string) { set.GetOrCreateCounter(`relay_store_watch_events_total{kind="` + kind + `"}`).Inc() },
	})
	if err != nil {
		return nil, err
	}
	// The key layout first: a store of an older layout is migrated (or a
	// relay migrating it is waited for) before anything reads it.
	if err := st.Migrate(context.Background(), nil); err != nil {
		return nil, fmt.Errorf("key layout: %w", err)
	}
	srv, err := proxy.New(o.Config, st, set, log)
	if err != nil {
		return nil, err
	}
	for _, kind := range []string{"instance", "config", "other"} { // shown from the start, at 0
		set.GetOrCreateCounter(`relay_store_watch_events_total{kind="` + kind + `"}`)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Stack{Config: o.Config, Store: st, Server: srv, Metrics: set, stopCache: cancel,
		cacheDone: make(chan struct{}), roomDone: make(chan struct{}), synced: make(chan struct{})}
	go func() { st.Run(ctx); close(s.cacheDone) }()
	s.Fleet = fleet.Start(fleet.Options{
		Etcd: o.Etcd, Prefix: o.Config.EtcdPrefix, ID: cmp.Or(o.Config.RelayID, fleet.NewID()),
		Addr: o.Addr, Version: fleet.Version(), Started: time.Now(),
		TTL: o.Config.FleetTTL, Timeout: o.Config.EtcdRequestTimeout,
		Cooldowns: srv.Cooldowns(), OnShare: srv.SetShare, Logger: log, Metrics: set,
	})
	go func() {
		for _, c := range []<-chan struct{}{st.Synced(), s.Fleet.Synced()} {
			select {
			case <-c:
			case <-ctx.Done():
				return
			}
		}
		close(s.synced)
	}()
	now := o.Now
	if now == nil {
		now = time.Now
	}
	clusters := []cluster{{name: store.DirectoryShard, maint: o.Etcd, endpoints: endpointsOf(o.Etcd)}}
	for _, name := range slices.Sorted(maps.Keys(o.Shards)) {
		clusters = append(clusters, cluster{name: name, maint: o.Shards[name], endpoints: endpointsOf(o.Shards[name])})
	}
	room := newRoomWatch(&roomWatch{
		clusters: clusters, st: st, defaultQuota: o.Config.EtcdQuotaBytes,
		set: set, log: log, now: now,
		every: cmp.Or(o.RoomEvery, 30*time.Second), tenantsEvery: cmp.Or(o.TenantsEvery, 5*time.Minute), top: 10,
	})
	go func() {
		select { // the tenants are counted from the cache: fill it first
		case <-st.Synced():
			room.run(ctx)
		case <-ctx.Done():
		}
		close(s.roomDone)
	}()
	return s, nil
}

// endpointsOf are the endpoints a client's Status calls go to.
func endpointsOf(c *clientv3.Client) []string {
	if eps := c.Endpoints(); len(eps) > 0 {
		return eps
	}
	return []string{"in-process"} // the embedded member's own client answers for it
}

// shardClients are the store's shard clients, by name.
func shardClients(m map[string]*clientv3.Client, obs store.Observer) []store.ShardClient {
	out := make([]store.ShardClient, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		c := m[name]
		out = append(out, store.ShardClient{Name: name, KV: store.ObservedKV(c, obs), Lease: c, Watcher: c})
	}
	return out
}

// Synced is closed once the cache holds every instance and configuration
// and the fleet's cool-downs running at the start are held.
func (s *Stack) Synced() <-chan struct{} { return s.synced }

// Close leaves the fleet and stops the cache (after the front door's
// Shutdown).
func (s *Stack) Close() {
	s.Fleet.Close()
	s.stopCache()
	<-s.cacheDone
	<-s.roomDone
}

// etcdObserver records each etcd operation's latency as
// relay_etcd_op_duration_seconds{op,result}.
func etcdObserver(set *metrics.Set) store.Observer {
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}
	return func(op string, d time.Duration, err error) {
		result := "ok"
		if err != nil {
			result = "error"
		}
		set.GetOrCreatePrometheusHistogramExt(`relay_etcd_op_duration_seconds{op="`+op+`",result="`+result+`"}`, buckets).Update(d.Seconds())
	}
}

// encryptionKeys loads --encryption-key-file, or says once that values are
// stored as plaintext. Only the keys' names are logged.
func encryptionKeys(cfg configs.Config, log *slog.Logger) (*seal.Keyring, error) {
	if cfg.EncryptionKeyFile == "" {
		log.Info("encryption at rest is off: users, mappings, configurations and error reports are stored unencrypted in etcd (--encryption-key-file turns it on)")
		return nil, nil
	}
	keys, err := seal.Load(cfg.EncryptionKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--encryption-key-file: %w", err)
	}
	log.Info("encryption at rest is on: new values are sealed", "key", keys.Primary(), "keys", keys.Names())
	return keys, nil
}
