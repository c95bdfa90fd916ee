package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxRetentionDays bounds a tenant's mapping retention: ten years.
const MaxRetentionDays = 3650

// retention is how long a mapping of the tenant lives after it was last
// linked: the admin's override, else the relay's; 0 keeps it forever.
func (s *Store) retention(in *Instance) time.Duration {
	if d := in.MappingRetentionDays; d != nil {
		return time.Duration(*d) * 24 * time.Hour
	}
	return s.mappingRetention
}

// bucketWidth is the span of expiry times that share one lease: a day for a
// retention of a day or more (so a store holds at most one lease per day of
// its longest retention, as the Kubernetes API server reuses leases for
// objects of similar TTLs), a quarter of the retention for shorter ones
// (tests), never under a second.
func bucketWidth(r time.Duration) time.Duration {
	if r >= 24*time.Hour {
		return 24 * time.Hour
	}
	return max(time.Second, r/4)
}

// bucketEnd is when a mapping linked at now under retention r expires: the
// end of the bucket (for days: the UTC midnight) after now + r.
func bucketEnd(now time.Time, r time.Duration) time.Time {
	w := bucketWidth(r)
	t := now.Add(r).UnixNano()
	return time.Unix(0, (t/int64(w)+1)*int64(w)).UTC()
}

// lease is the registry key of the retention lease of the bucket ending at end.
func (k keys) lease(end time.Time) string {
	return k.prefix + "leases/" + strconv.FormatInt(end.Unix(), 10)
}

// retentionLeases hands out the one lease of each expiry bucket. The lease
// is shared with the other relays through P leases/<end, unix seconds>
// (attached to the lease itself, so it goes when the bucket does): the
// first relay to need a bucket grants its lease and writes the key; the
// others read it.
type retentionLeases struct {
	mu    sync.Mutex
	byEnd map[int64]clientv3.LeaseID
}

// mappingLease is the lease a mapping of the tenant linked now goes on; 0
// when the tenant keeps mappings forever.
func (s *Store) mappingLease(ctx context.Context, t tenant) (clientv3.LeaseID, error) {
	r := s.retention(t.in)
	if r <= 0 {
		return 0, nil
	}
	return s.bucketLease(ctx, t.sh, bucketEnd(s.now(), r))
}

// bucketLease is the shard's lease of the bucket ending at end: known, read
// from P leases/<end>, or granted and shared there.
func (s *Store) bucketLease(ctx context.Context, sh *shard, end time.Time) (clientv3.LeaseID, error) {
	if sh.lease == nil {
		return 0, ErrNoLeases
	}
	now := s.now()
	l := &sh.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if id, ok := l.byEnd[end.Unix()]; ok {
		return id, nil
	}
	if l.byEnd == nil {
		l.byEnd = map[int64]clientv3.LeaseID{}
	}
	for e := range l.byEnd {
		if e <= now.Unix() {
			delete(l.byEnd, e)
		}
	}
	key := s.k.lease(end)
	resp, err := sh.kv.Get(ctx, key)
	if err != nil {
		return 0, etcdErr("read retention lease", err)
	}
	if len(resp.Kvs) == 1 {
		if id, err := strconv.ParseInt(string(resp.Kvs[0].Value), 16, 64); err == nil && id != 0 {
			l.byEnd[end.Unix()] = clientv3.LeaseID(id)
			return clientv3.LeaseID(id), nil
		}
	}
	ttl := int64(end.Sub(now)/time.Second) + 1
	g, err := sh.lease.Grant(ctx, ttl)
	if err != nil {
		return 0, etcdErr("grant retention lease", err)
	}
	tr, err := sh.kv.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, strconv.FormatInt(int64(g.ID), 16), clientv3.WithLease(g.ID))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		if _, rerr := sh.lease.Revoke(context.WithoutCancel(ctx), g.ID); rerr != nil {
			s.log.Debug("store: give back an unshared retention lease", "err", rerr)
		}
		return 0, etcdErr("share retention lease", err)
	}
	id := g.ID
	if !tr.Succeeded {
		// Another relay was first: use its lease, give ours back.
		kvs := tr.Responses[0].GetResponseRange().Kvs
		theirs, perr := int64(0), error(errors.New("gone"))
		if len(kvs) == 1 {
			theirs, perr = strconv.ParseInt(string(kvs[0].Value), 16, 64)
		}
		if perr == nil && theirs != 0 {
			if _, err := sh.lease.Revoke(ctx, g.ID); err != nil {
				s.log.Debug("store: give back an unused retention lease", "err", err)
			}
			id = clientv3.LeaseID(theirs)
		}
	}
	l.byEnd[end.Unix()] = id
	return id, nil
}

// forgetLease drops a lease etcd no longer has (revoked by hand, or the
// store restored from an older snapshot), so the next link grants anew.
func (sh *shard) forgetLease(id clientv3.LeaseID) {
	l := &sh.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	for e, v := range l.byEnd {
		if v == id {
			delete(l.byEnd, e)
		}
	}
}

// leaseGone: etcd refused a write because its lease no longer exists.
func leaseGone(err error) bool {
	return err != nil && strings.Contains(err.Error(), rpctypes.ErrLeaseNotFound.Error())
}
