package store

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Observer receives the latency and outcome of one etcd operation.
type Observer func(op string, d time.Duration, err error)

// ObservedKV wraps kv so that every Get, Put, Delete and Txn commit reports
// its latency to obs (for the etcd latency metric). It decorates the real
// client; nothing is mocked.
func ObservedKV(kv clientv3.KV, obs Observer) clientv3.KV {
	return &observedKV{KV: kv, obs: obs}
}

type observedKV struct {
	clientv3.KV
	obs Observer
}

func (o *observedKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	t := time.Now()
	r, err := o.KV.Get(ctx, key, opts...)
	o.obs("get", time.Since(t), err)
	return r, err
}

func (o *observedKV) Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	t := time.Now()
	r, err := o.KV.Put(ctx, key, val, opts...)
	o.obs("put", time.Since(t), err)
	return r, err
}

func (o *observedKV) Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	t := time.Now()
	r, err := o.KV.Delete(ctx, key, opts...)
	o.obs("delete", time.Since(t), err)
	return r, err
}

func (o *observedKV) Txn(ctx context.Context) clientv3.Txn {
	return &observedTxn{Txn: o.KV.Txn(ctx), obs: o.obs}
}

type observedTxn struct {
	clientv3.Txn
	obs Observer
}

func (t *observedTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *observedTxn) Then(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Then(ops...); return t }
func (t *observedTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }

func (t *observedTxn) Commit() (*clientv3.TxnResponse, error) {
	start := time.Now()
	r, err := t.Txn.Commit()
	t.obs("txn", time.Since(start), err)
	return r, err
}
