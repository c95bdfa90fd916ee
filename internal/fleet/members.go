package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// register keeps this relay's member key: put on a lease of the TTL, kept
// alive, and put again whenever the lease is lost (etcd was away longer
// than the TTL) or the key is deleted (by an operator).
func (f *Fleet) register(ctx context.Context) {
	key := f.dir + "members/" + f.o.ID
	val, _ := json.Marshal(member{ID: f.o.ID, Addr: f.o.Addr, Version: f.o.Version, Started: f.o.Started.UTC()})
	ttl := max(int64(f.o.TTL/time.Second), 1)
	for ctx.Err() == nil {
		id, rev, err := f.claim(ctx, key, val, ttl)
		if err != nil {
			if ctx.Err() == nil {
				f.log.Warn("fleet: cannot register this relay; retrying", "err", err)
			}
			sleep(ctx, time.Second)
			continue
		}
		if id == 0 {
			sleep(ctx, f.o.TTL) // another relay holds the id; see claim
			continue
		}
		f.lease.Store(int64(id))
		f.log.Info("fleet: this relay is a member", "key", key, "ttl_seconds", ttl)
		f.keepAlive(ctx, id, rev)
		if ctx.Err() != nil {
			return
		}
		if f.lease.CompareAndSwap(int64(id), 0) {
			f.revoke(id)
		}
		f.log.Warn("fleet: this relay's member key is gone (lease lost or key deleted); registering again")
		sleep(ctx, 100*time.Millisecond)
	}
}

// keepAlive keeps lease id alive until it is lost, the member key put at
// revision rev is deleted, or ctx ends. (A deletion of an earlier
// registration's key, seen late, does not count.)
func (f *Fleet) keepAlive(ctx context.Context, id clientv3.LeaseID, rev int64) {
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := f.o.Etcd.KeepAlive(kctx, id)
	if err != nil {
		return
	}
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-f.rereg:
			if f.deleted.Load() > rev {
				return
			}
		}
	}
}

// claim puts the member key on a new lease of ttl seconds and returns the
// lease and the put's revision, unless another relay holds the key (a
// second relay started with the same --relay-id): then it logs an error and
// returns lease 0, and this relay counts itself but is not counted by the
// others until the key is free.
func (f *Fleet) claim(ctx context.Context, key string, val []byte, ttl int64) (clientv3.LeaseID, int64, error) {
	cctx, cancel := context.WithTimeout(ctx, f.timeout())
	defer cancel()
	l, err := f.o.Etcd.Grant(cctx, ttl)
	if err != nil {
		return 0, 0, err
	}
	resp, err := f.o.Etcd.Txn(cctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(l.ID))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, 0, err // the lease is kept: the put may have happened; it ends with the TTL
	}
	if resp.Succeeded {
		return l.ID, resp.Header.Revision, nil
	}
	held := resp.Responses[0].GetResponseRange().Kvs
	if len(held) == 1 && bytes.Equal(held[0].Value, val) {
		// This relay's own key on a lease it is losing: take it over.
		pr, err := f.o.Etcd.Put(cctx, key, string(val), clientv3.WithLease(l.ID))
		if err != nil {
			return 0, 0, err
		}
		return l.ID, pr.Header.Revision, nil
	}
	f.revoke(l.ID)
	f.log.Error("fleet: another relay is registered with this relay's id; give each relay its own --relay-id", "key", key)
	return 0, 0, nil
}
