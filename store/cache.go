package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ConfigDoc is an instance's configuration document with its etcd revision
// (the ETag is derived from it).
type ConfigDoc struct {
	Body     []byte
	Revision int64
	// err is why a stored document did not open (its encryption key is
	// not in the key file, or it does not decrypt): Config answers it.
	err error
}

// configDoc is the document stored as kv (sealed or plaintext).
func (s *Store) configDoc(id string, kv *mvccpb.KeyValue) *ConfigDoc {
	body, err := s.vals.open(kv.Key, kv.Value, "configuration", id)
	return &ConfigDoc{Body: body, Revision: kv.ModRevision, err: err}
}

// cache holds every instance record and configuration document, fed by an
// etcd watch. Entries carry their ModRevision, and a change is applied only
// when it is newer than what the cache holds, so a slow watch event never
// overwrites a fresher local write. Deletions leave a tombstone until the
// next full re-list.
type cache struct {
	mu        sync.RWMutex
	instances map[string]*Instance
	configs   map[string]*ConfigDoc
	tombs     map[string]int64 // "i/<id>" or "c/<id>" → revision of the delete
	synced    atomic.Bool
	syncedCh  chan struct{}
	once      sync.Once
}

func newCache() *cache {
	return &cache{
		instances: map[string]*Instance{},
		configs:   map[string]*ConfigDoc{},
		tombs:     map[string]int64{},
		syncedCh:  make(chan struct{}),
	}
}

func (c *cache) instance(id []byte) (*Instance, bool) {
	c.mu.RLock()
	in, ok := c.instances[string(id)]
	c.mu.RUnlock()
	return in, ok
}

func (c *cache) config(id string) (*ConfigDoc, bool) {
	c.mu.RLock()
	d, ok := c.configs[id]
	c.mu.RUnlock()
	return d, ok
}

func (c *cache) putInstance(in *Instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putInstanceLocked(in)
}

func (c *cache) putInstanceLocked(in *Instance) {
	if cur, ok := c.instances[in.ID]; ok && cur.Revision >= in.Revision {
		return
	}
	if c.tombs["i/"+in.ID] >= in.Revision {
		return
	}
	c.instances[in.ID] = in
}

func (c *cache) putConfig(id string, d *ConfigDoc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putConfigLocked(id, d)
}

func (c *cache) putConfigLocked(id string, d *ConfigDoc) {
	if cur, ok := c.configs[id]; ok && cur.Revision >= d.Revision {
		return
	}
	if c.tombs["c/"+id] >= d.Revision {
		return
	}
	c.configs[id] = d
}

func (c *cache) deleteInstance(id string, rev int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteLocked("i/", id, rev)
	c.deleteLocked("c/", id, rev)
}

func (c *cache) deleteLocked(kind, id string, rev int64) {
	switch kind {
	case "i/":
		if cur, ok := c.instances[id]; ok && cur.Revision > rev {
			return
		}
		delete(c.instances, id)
	case "c/":
		if cur, ok := c.configs[id]; ok && cur.Revision > rev {
			return
		}
		delete(c.configs, id)
	}
	if c.tombs[kind+id] < rev {
		c.tombs[kind+id] = rev
	}
}

// replace installs a full list taken at revision rev, keeping entries and
// tombstones that are newer than the list.
func (c *cache) replace(rev int64, ins map[string]*Instance, cfgs map[string]*ConfigDoc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, in := range c.instances {
		if in.Revision > rev {
			ins[id] = in
		}
	}
	for id, d := range c.configs {
		if d.Revision > rev {
			cfgs[id] = d
		}
	}
	tombs := map[string]int64{}
	for k, r := range c.tombs {
		if r > rev {
			tombs[k] = r
			id := k[2:]
			if k[0] == 'i' {
				delete(ins, id)
			} else {
				delete(cfgs, id)
			}
		}
	}
	c.instances, c.configs, c.tombs = ins, cfgs, tombs
	c.synced.Store(true)
	c.once.Do(func() { close(c.syncedCh) })
}

// CacheSizes reports how many instances (counting those whose record does
// not decode) and configurations the cache holds.
func (s *Store) CacheSizes() (instances, configs int) {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	return len(s.cache.instances), len(s.cache.configs)
}

// Synced is closed once the cache has been filled from etcd for the first time.
func (s *Store) Synced() <-chan struct{} { return s.cache.syncedCh }

// Run feeds the caches until ctx ends: it lists every instance and
// configuration at one revision, then watches from the next revision
// (WithRequireLeader, so a member cut off from the quorum does not feed stale
// data), and lists again when the watch fails or its revision was compacted.
// While etcd is unreachable the cache keeps serving what it has.
func (s *Store) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		rev, err := s.relist(ctx)
		if err != nil {
			s.log.Warn("store cache: list failed; retrying", "err", err, "in", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		err = s.watch(ctx, rev+1)
		if ctx.Err() != nil {
			return
		}
		s.log.Info("store cache: watch ended; re-listing", "err", err)
		sleep(ctx, 50*time.Millisecond)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// relist reads every instance record and configuration document at one
// revision. It walks the URL index (one small key per instance) rather than
// the tenants' prefixes, which also hold every mapping.
func (s *Store) relist(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(ctx, 4*s.timeout)
	defer cancel()
	var rev int64
	var ids []string
	from, end := s.k.urls(), clientv3.GetPrefixRangeEnd(s.k.urls())
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(1000)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.kv.Get(lctx, from, opts...)
		if err != nil {
			return 0, etcdErr("list instances", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			id, ok := indexedID(kv.Value)
			if !ok {
				s.log.Warn("store cache: URL index entry does not decode; skipped", "key", string(kv.Key))
				continue
			}
			ids = append(ids, id)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	ins := make(map[string]*Instance, len(ids))
	cfgs := make(map[string]*ConfigDoc, len(ids))
	for start := 0; start < len(ids); start += 50 {
		batch := ids[start:min(start+50, len(ids))]
		ops := make([]clientv3.Op, 0, 2*len(batch))
		for _, id := range batch {
			ops = append(ops, clientv3.OpGet(s.k.instance(id), clientv3.WithRev(rev)),
				clientv3.OpGet(s.k.config(id), clientv3.WithRev(rev)))
		}
		resp, err := s.kv.Txn(lctx).Then(ops...).Commit()
		if err != nil {
			return 0, etcdErr("list instances", err)
		}
		for _, r := range resp.Responses {
			for _, kv := range r.GetResponseRange().Kvs {
				s.applyKV(ins, cfgs, kv)
			}
		}
	}
	s.cache.replace(rev, ins, cfgs)
	return rev, nil
}

// indexedID is the instance id a URL index entry names; false when the
// entry does not decode or names no valid id.
func indexedID(v []byte) (string, bool) {
	var x urlIndexEntry
	if json.Unmarshal(v, &x) != nil || !ValidInstanceID(x.InstanceID) {
		return "", false
	}
	return x.InstanceID, true
}

// splitTenantKey splits "<prefix>instances/<id>/<rest>" into id and rest.
func (s *Store) splitTenantKey(key string) (id, rest string, ok bool) {
	p := s.k.instances()
	if !strings.HasPrefix(key, p) {
		return "", "", false
	}
	id, rest, ok = strings.Cut(key[len(p):], "/")
	return id, rest, ok
}

func (s *Store) applyKV(ins map[string]*Instance, cfgs map[string]*ConfigDoc, kv *mvccpb.KeyValue) {
	id, rest, ok := s.splitTenantKey(string(kv.Key))
	if !ok {
		return
	}
	switch rest {
	case "instance":
		ins[id] = s.instanceEntry(id, kv)
	case "config":
		cfgs[id] = s.configDoc(id, kv)
	}
}

func (s *Store) watch(ctx context.Context, from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	p := s.k.instances()
	wch := s.watcher.Watch(wctx, p, clientv3.WithRange(clientv3.GetPrefixRangeEnd(p)), clientv3.WithRev(from))
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return errCompacted
		}
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			s.applyEvent(ev)
		}
	}
	return ctx.Err()
}

// instanceEntry is the cache entry of an instance record, noting in the log
// a record that does not decode (by instance id and revision, never its
// value): the tenant answers ErrCorrupt until it is repaired or erased.
func (s *Store) instanceEntry(id string, kv *mvccpb.KeyValue) *Instance {
	in := s.cacheEntry(id, kv.Value, kv.ModRevision)
	if in.corrupt {
		s.log.Warn("store cache: instance record does not decode; the tenant cannot be used until it is erased or repaired (docs/operations.md)",
			"instance", id, "revision", kv.ModRevision)
	}
	return in
}

func (s *Store) applyEvent(ev *clientv3.Event) {
	id, rest, ok := s.splitTenantKey(string(ev.Kv.Key))
	if s.onWatchEvent != nil {
		kind := rest
		if !ok || (rest != "instance" && rest != "config") {
			kind = "other"
		}
		s.onWatchEvent(kind)
	}
	if !ok || (rest != "instance" && rest != "config") {
		return
	}
	var in *Instance
	if rest == "instance" && ev.Type != clientv3.EventTypeDelete {
		in = s.instanceEntry(id, ev.Kv)
	}
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.Type == clientv3.EventTypeDelete {
		kind := "i/"
		if rest == "config" {
			kind = "c/"
		}
		c.deleteLocked(kind, id, ev.Kv.ModRevision)
		return
	}
	if in != nil {
		c.putInstanceLocked(in)
		return
	}
	c.putConfigLocked(id, s.configDoc(id, ev.Kv))
}

// errCompacted ends a watch whose start revision etcd has compacted away.
var errCompacted = errors.New("store: watch revision compacted")
