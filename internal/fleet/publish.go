package fleet

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// writeEvery is the shortest time between two writes of one scope's key,
// by any relay of the fleet.
const writeEvery = time.Second

// coveredBy is how much shorter than a new cool-down the one etcd holds
// may be and still stand for it (Retry-After counts whole seconds; relays
// seeing one 429 wave compute ends a little apart).
const coveredBy = time.Second

// maxPending bounds the scopes waiting to be shared; past it a new scope
// is held on this relay only (relay_fleet_cooldown_writes_total{result=
// "dropped"}).
const maxPending = 10_000

// publication is a cool-down to share.
type publication struct {
	key    string
	until  time.Time
	reason string
}

// enqueue hands a cool-down to the publisher without waiting. A scope
// already waiting keeps only the latest end, so a storm of 429s for a few
// scopes never crowds another scope out.
func (f *Fleet) enqueue(key string, until time.Time, reason string) {
	f.pubMu.Lock()
	q, ok := f.pending[key]
	switch {
	case !ok && len(f.pending) >= maxPending:
		f.pubMu.Unlock()
		f.m.dropped.Inc()
		return
	case !ok || until.After(q.until):
		f.pending[key] = publication{key: key, until: until, reason: reason}
	}
	f.pubMu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// publishLoop writes the cool-downs this relay saw: a scope at most once
// per writeEvery by the whole fleet (the latest end waits for the next
// turn), none when etcd already holds the scope about as long.
func (f *Fleet) publishLoop(ctx context.Context) {
	waiting := map[string]publication{}
	tried := map[string]time.Time{} // this relay's last attempt per scope
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-tick.C:
		}
		f.pubMu.Lock()
		for k, p := range f.pending {
			if q, ok := waiting[k]; !ok || p.until.After(q.until) {
				waiting[k] = p
			}
		}
		clear(f.pending)
		f.pubMu.Unlock()
		for k, p := range waiting {
			now := f.clock.Now()
			if t, ok := tried[k]; ok && now.Sub(t) < writeEvery {
				continue
			}
			if !p.until.After(now) {
				delete(waiting, k)
				continue
			}
			switch f.publish(ctx, p) {
			case published:
				delete(waiting, k)
				tried[k] = f.clock.Now()
			case covered:
				delete(waiting, k)
			case later:
				tried[k] = f.clock.Now()
			}
		}
		now := f.clock.Now()
		for k, t := range tried {
			if now.Sub(t) >= writeEvery {
				delete(tried, k)
			}
		}
	}
}

// outcome of one publication.
type outcome int

const (
	published outcome = iota // written
	covered                  // the fleet holds the scope already
	later                    // try again on the scope's next turn
)

// publish shares p unless the fleet holds its scope about as long already,
// or the scope's key was written less than writeEvery ago (then later). A
// conflicting write by another relay is read and judged again at once.
func (f *Fleet) publish(ctx context.Context, p publication) outcome {
	for range 2 {
		sh := f.o.Cooldowns.sharedOf(p.key)
		now := f.clock.Now()
		if !sh.until.Before(p.until.Add(-coveredBy)) {
			return covered
		}
		if sh.rev != 0 && now.Sub(sh.written) < writeEvery {
			return later
		}
		ok, err := f.write(ctx, p, sh, now)
		switch {
		case err != nil:
			f.m.failures.Inc()
			return later
		case ok:
			f.m.writes.Inc()
			return published
		}
		f.m.conflicts.Inc()
		if err := f.refresh(ctx, p.key); err != nil {
			return later
		}
	}
	return later
}

// write puts p's key on a new lease that ends with the cool-down, if the
// key is still as sh saw it; it reports whether it did. The lease the key
// had before is given back. After an error the write may or may not have
// happened, so the new lease is kept: it ends with the cool-down anyway.
func (f *Fleet) write(ctx context.Context, p publication, sh shared, now time.Time) (bool, error) {
	val, _ := json.Marshal(record{Until: p.until.UTC(), Reason: p.reason, Relay: f.o.ID, Written: now.UTC()})
	ttl := int64(p.until.Sub(now)/time.Second) + 1
	cctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	l, err := f.o.Etcd.Grant(cctx, ttl)
	if err != nil {
		return false, err
	}
	key := f.dir + "cooldowns/" + p.key
	resp, err := f.o.Etcd.Txn(cctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", sh.rev)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(l.ID))).
		Commit()
	if err != nil {
		return false, err
	}
	if !resp.Succeeded {
		f.revoke(l.ID)
		return false, nil
	}
	if sh.lease != 0 {
		f.revoke(clientv3.LeaseID(sh.lease))
	}
	return true, nil
}

// refresh reads key's cool-down as etcd holds it now.
func (f *Fleet) refresh(ctx context.Context, key string) error {
	cctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	full := f.dir + "cooldowns/" + key
	resp, err := f.o.Etcd.Get(cctx, full)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		f.apply(full, nil, 0, 0, true)
		return nil
	}
	kv := resp.Kvs[0]
	f.apply(full, kv.Value, kv.ModRevision, kv.Lease, false)
	return nil
}

// revoke gives a lease back, within the etcd timeout (never waiting for an
// etcd that is gone).
func (f *Fleet) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout())
	defer cancel()
	_, _ = f.o.Etcd.Revoke(ctx, id)
}
