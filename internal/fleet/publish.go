package fleet

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// writeEvery is the shortest time between two writes of one scope's key by
// one relay.
const writeEvery = time.Second

// coveredBy is how much shorter than a new cool-down the one etcd holds
// may be and still stand for it (Retry-After counts whole seconds; relays
// seeing one 429 wave compute ends a little apart).
const coveredBy = time.Second

// publication is a cool-down to share.
type publication struct {
	key    string
	until  time.Time
	reason string
}

// enqueue hands a cool-down to the publisher without waiting; when its
// queue is full the cool-down is still held here, just not shared.
func (f *Fleet) enqueue(key string, until time.Time, reason string) {
	select {
	case f.pubs <- publication{key: key, until: until, reason: reason}:
	default:
		f.m.dropped.Inc()
	}
}

// publishLoop writes the cool-downs this relay saw: each scope at most
// once per writeEvery (the latest end waits for the next turn), none when
// etcd already holds the scope about as long.
func (f *Fleet) publishLoop(ctx context.Context) {
	pending := map[string]publication{}
	last := map[string]time.Time{}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-f.pubs:
			if q, ok := pending[p.key]; !ok || p.until.After(q.until) {
				pending[p.key] = p
			}
		case <-tick.C:
		}
		now := f.clock.Now()
		for k, t := range last {
			if now.Sub(t) >= writeEvery {
				delete(last, k)
			}
		}
		for k, p := range pending {
			if _, recent := last[k]; recent {
				continue
			}
			delete(pending, k)
			if !p.until.After(now) {
				continue
			}
			shared, rev := f.o.Cooldowns.sharedOf(k)
			if !shared.Before(p.until.Add(-coveredBy)) {
				continue // the fleet holds it already
			}
			last[k] = now
			if !f.write(ctx, p, rev, now) {
				pending[k] = p // try again on the scope's next turn
			}
		}
	}
}

// write puts p's key on a lease that ends with the cool-down, if the key is
// still at revision rev (0: absent); it reports whether p need not be
// tried again.
func (f *Fleet) write(ctx context.Context, p publication, rev int64, now time.Time) bool {
	val, _ := json.Marshal(record{Until: p.until.UTC(), Reason: p.reason, Relay: f.o.ID})
	ttl := int64(p.until.Sub(now)/time.Second) + 1
	cctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	l, err := f.o.Etcd.Grant(cctx, ttl)
	if err != nil {
		f.m.failures.Inc()
		return false
	}
	key := f.dir + "cooldowns/" + p.key
	resp, err := f.o.Etcd.Txn(cctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(l.ID))).
		Commit()
	if err == nil && resp.Succeeded {
		f.m.writes.Inc()
		return true
	}
	_, _ = f.o.Etcd.Revoke(context.WithoutCancel(cctx), l.ID)
	if err != nil {
		f.m.failures.Inc()
	} else {
		f.m.conflicts.Inc() // another relay wrote it; its value comes by the watch
	}
	return false
}
