package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// MaxConfigBytes bounds an instance's configuration document.
const MaxConfigBytes = 256 << 10

// emptyConfig is what an instance whose admin never set a configuration gets.
var emptyConfig = []byte("{}")

// Config returns the instance's configuration document from the cache; an
// instance without one gets "{}" at revision 0. The caller must have checked
// that the instance exists. Before the cache's first sync it reads etcd.
func (s *Store) Config(ctx context.Context, id string) (*ConfigDoc, error) {
	if d, ok := s.cache.config(id); ok {
		if d.err != nil {
			return nil, d.err
		}
		return d, nil
	}
	if s.cache.synced.Load() {
		return &ConfigDoc{Body: emptyConfig}, nil
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	resp, err := s.kv.Get(ctx, s.k.config(id))
	if err != nil {
		return nil, etcdErr("get config", err)
	}
	if len(resp.Kvs) == 0 {
		return &ConfigDoc{Body: emptyConfig}, nil
	}
	d := s.configDoc(id, resp.Kvs[0])
	s.cache.putConfig(id, d)
	if d.err != nil {
		return nil, d.err
	}
	return d, nil
}

// PutConfig replaces the instance's configuration document. body must be a
// validated JSON object. When ifRevision is not nil the write happens only if
// the stored document is still at that revision (0 = no document yet), else
// ErrPrecondition. The instance must exist (ErrNotFound).
func (s *Store) PutConfig(ctx context.Context, id string, body []byte, ifRevision *int64) (*ConfigDoc, error) {
	if len(body) > MaxConfigBytes {
		return nil, invalid("config", "is larger than 256 KiB")
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	key, inst := s.k.config(id), s.k.instance(id)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(inst), ">", 0)}
	if ifRevision != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", *ifRevision))
	}
	resp, err := s.kv.Txn(ctx).If(cmps...).
		Then(clientv3.OpPut(key, s.vals.seal(key, body))).
		Else(clientv3.OpGet(inst, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return nil, etcdErr("put config", err)
	}
	if !resp.Succeeded {
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return nil, fmt.Errorf("store: instance %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("store: put config: %w", ErrPrecondition)
	}
	d := &ConfigDoc{Body: append([]byte(nil), body...), Revision: resp.Header.Revision}
	s.cache.putConfig(id, d)
	return d, nil
}
