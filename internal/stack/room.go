package stack

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/jira-relay/jira-relay/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// roomWatch makes the store's room visible: each cluster's database size,
// size in use and quota (relay_etcd_db_*_bytes{cluster}), the mappings of
// the largest tenants (relay_tenant_mappings{instance}, a bounded set), and
// a warning in the log, at most once an hour, while a cluster's database
// is at 80% of its quota or more.
type roomWatch struct {
	clusters     []cluster
	st           *store.Store
	defaultQuota int64
	set          *metrics.Set
	log          *slog.Logger
	now          func() time.Time
	every        time.Duration // room
	tenantsEvery time.Duration // largest tenants
	top          int

	mu         sync.Mutex
	room       map[string]store.Room
	warnedAt   map[string]time.Time
	tenants    map[string]float64 // gauge name → value
	registered map[string]bool
}

// cluster is one etcd cluster whose room is watched: the directory
// ("directory") or a shard (its name).
type cluster struct {
	name      string
	maint     clientv3.Maintenance
	endpoints []string
}

func newRoomWatch(w *roomWatch) *roomWatch {
	w.tenants, w.registered = map[string]float64{}, map[string]bool{}
	w.room, w.warnedAt = map[string]store.Room{}, map[string]time.Time{}
	for _, c := range w.clusters {
		for name, f := range map[string]func(store.Room) int64{
			"relay_etcd_db_size_bytes":        func(r store.Room) int64 { return r.DBSize },
			"relay_etcd_db_size_in_use_bytes": func(r store.Room) int64 { return r.DBSizeInUse },
			"relay_etcd_db_quota_bytes":       func(r store.Room) int64 { return r.Quota },
		} {
			w.set.NewGauge(fmt.Sprintf(`%s{cluster=%q}`, name, c.name), func() float64 {
				w.mu.Lock()
				defer w.mu.Unlock()
				return float64(f(w.room[c.name]))
			})
		}
	}
	return w
}

// run refreshes the room every w.every and the largest tenants every
// w.tenantsEvery, from now until ctx ends.
func (w *roomWatch) run(ctx context.Context) {
	room := time.NewTicker(w.every)
	defer room.Stop()
	tenants := time.NewTicker(w.tenantsEvery)
	defer tenants.Stop()
	w.refreshRoom(ctx)
	w.refreshTenants(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-room.C:
			w.refreshRoom(ctx)
		case <-tenants.C:
			w.refreshTenants(ctx)
		}
	}
}

func (w *roomWatch) refreshRoom(ctx context.Context) {
	for _, c := range w.clusters {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := store.ClusterRoom(cctx, c.maint, c.endpoints, w.defaultQuota)
		cancel()
		if err != nil {
			w.log.Debug("store room: etcd status", "cluster", c.name, "err", err)
			continue
		}
		w.st.SetRoom(c.name, r)
		w.mu.Lock()
		w.room[c.name] = r
		last := w.warnedAt[c.name]
		warn := r.Fill() >= 0.8 && (last.IsZero() || w.now().Sub(last) >= time.Hour)
		if warn {
			w.warnedAt[c.name] = w.now()
		}
		w.mu.Unlock()
		if warn {
			w.log.Warn("etcd database at 80% of its quota: writes get 507 store_full when it is full (docs/operations.md, \"Capacity\")",
				"cluster", c.name, "db_size_bytes", r.DBSize, "db_size_in_use_bytes", r.DBSizeInUse, "quota_bytes", r.Quota,
				"percent", int(100*r.Fill()))
		}
	}
}

func (w *roomWatch) refreshTenants(ctx context.Context) {
	top, err := w.st.LargestTenants(ctx, w.top)
	if err != nil {
		w.log.Debug("store room: count tenants' mappings", "err", err)
		return
	}
	next := make(map[string]float64, len(top))
	for _, t := range top {
		next[fmt.Sprintf(`relay_tenant_mappings{instance=%q}`, t.InstanceID)] = float64(t.Mappings)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tenants = next
	for name := range w.registered {
		if _, ok := next[name]; !ok {
			w.set.UnregisterMetric(name)
			delete(w.registered, name)
		}
	}
	for name := range next {
		if !w.registered[name] {
			w.set.NewGauge(name, func() float64 {
				w.mu.Lock()
				defer w.mu.Unlock()
				return w.tenants[name]
			})
			w.registered[name] = true
		}
	}
}
