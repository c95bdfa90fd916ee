package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ShardClient is one etcd cluster that holds tenants' data (--etcd-shards):
// its users, mappings and error reports, under the same prefix as on the
// directory. A *clientv3.Client is all three.
type ShardClient struct {
	Name    string
	KV      clientv3.KV
	Lease   clientv3.Lease
	Watcher clientv3.Watcher
}

// DirectoryShard is the name of the directory cluster as a shard: tenants
// registered before --etcd-shards, or without it, keep their data there.
const DirectoryShard = "directory"

// shard is a cluster holding tenants' data, with its own leases.
type shard struct {
	name    string
	kv      clientv3.KV
	lease   clientv3.Lease
	watcher clientv3.Watcher
	leases  retentionLeases
	reports errorReportLease

	mu   sync.Mutex
	room Room // as last reported (SetRoom)
}

// tenant is where one tenant's data lives now.
type tenant struct {
	in *Instance
	d  data
	sh *shard
}

// shardOf returns the shard an instance record names ("" is the directory).
func (s *Store) shardOf(name string) (*shard, bool) {
	if name == "" || name == DirectoryShard {
		return s.dir, true
	}
	sh, ok := s.shards[name]
	return sh, ok
}

// ShardNames lists the shards new tenants may go to: the configured ones,
// or the directory alone without --etcd-shards.
func (s *Store) ShardNames() []string {
	if len(s.shards) == 0 {
		return []string{DirectoryShard}
	}
	names := make([]string, 0, len(s.shards))
	for n := range s.shards {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SetRoom records a shard's room (read by the relay's room watch), which
// decides where new tenants go.
func (s *Store) SetRoom(name string, r Room) {
	if sh, ok := s.shardOf(name); ok {
		sh.mu.Lock()
		sh.room = r
		sh.mu.Unlock()
	}
}

// placeNew picks the shard of a new tenant: the one with the most free room
// (quota − database size) as last reported; with no reports, the one with
// the fewest tenants; without shards, the directory.
func (s *Store) placeNew() *shard {
	if len(s.shards) == 0 {
		return s.dir
	}
	counts := map[string]int{}
	s.cache.mu.RLock()
	for _, in := range s.cache.instances {
		counts[in.Shard]++
	}
	s.cache.mu.RUnlock()
	var best *shard
	var bestFree int64
	for _, name := range s.ShardNames() {
		sh := s.shards[name]
		sh.mu.Lock()
		r := sh.room
		sh.mu.Unlock()
		free := int64(-counts[name]) // no room known: fewest tenants
		if r.Quota > 0 {
			free = r.Quota - r.DBSize
		}
		if best == nil || free > bestFree {
			best, bestFree = sh, free
		}
	}
	return best
}

// tenant resolves where an instance's data lives. Unknown instance →
// ErrNotFound; a record that does not decode or names no data id →
// ErrCorrupt; a shard this relay is not configured with → ErrUnavailable.
func (s *Store) tenant(ctx context.Context, id string) (tenant, error) {
	in, err := s.Instance(ctx, id)
	if err != nil {
		return tenant{}, err
	}
	return s.tenantOf(in)
}

func (s *Store) tenantOf(in *Instance) (t tenant, err error) {
	if !validDataID(in.DataID) {
		return tenant{}, corrupt("instance", in.ID)
	}
	sh, ok := s.shardOf(in.Shard)
	if !ok {
		return tenant{}, fmt.Errorf("store: tenant %s lives on shard %q, which this relay has no client of (--etcd-shards): %w", in.ID, in.Shard, ErrUnavailable)
	}
	d := s.k.data(in.DataID)
	if d.tok, err = s.tokenizer(in.Tokens, in.DataID, in.ID); err != nil {
		return tenant{}, err
	}
	return tenant{in: in, d: d, sh: sh}, nil
}

// errFenced: a write found its tenant's marker gone on the shard it wrote
// to: the tenant is being moved (or erased).
var errFenced = errors.New("store: the tenant's marker is gone from its shard")

// moveWait bounds how long a write waits for a move to switch: a move holds
// a tenant's writes for at most a second; past this the write is refused as
// unavailable.
const moveWait = 5 * time.Second

// onTenant runs the write f on the tenant's data where it lives now. When
// f finds the tenant fenced (a move in progress deleted its marker on the
// old shard), the write waits until the directory names the new shard,
// then runs again there: writes are held by a move, not refused.
func (s *Store) onTenant(ctx context.Context, id string, f func(tenant) error) error {
	t, err := s.tenant(ctx, id)
	if err != nil {
		return err
	}
	for range 4 {
		err = f(t)
		if !errors.Is(err, errFenced) {
			return err
		}
		if t, err = s.awaitMove(ctx, t); err != nil {
			return err
		}
	}
	return fmt.Errorf("store: tenant %s keeps moving: %w", id, ErrUnavailable)
}

// awaitMove reads the tenant's record from the directory until it names a
// shard whose data is live (no move in progress), and returns where the
// data lives then. The record gone → ErrNotFound; the same shard, no move,
// and still fenced → ErrNotFound (an erase in progress).
func (s *Store) awaitMove(ctx context.Context, was tenant) (tenant, error) {
	deadline := time.Now().Add(moveWait)
	for {
		cctx, cancel := s.ctx(ctx)
		resp, err := s.kv.Get(cctx, s.k.instance(was.in.ID))
		cancel()
		if err != nil {
			return tenant{}, etcdErr("read instance", err)
		}
		if len(resp.Kvs) == 0 {
			return tenant{}, fmt.Errorf("store: instance %s: %w", was.in.ID, ErrNotFound)
		}
		in, err := s.decodeInstance(was.in.ID, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
		if err != nil {
			return tenant{}, err
		}
		if in.Move == nil {
			s.cache.putInstance(in)
			t, err := s.tenantOf(in)
			if err != nil || in.Shard != was.in.Shard || in.DataID != was.in.DataID {
				return t, err
			}
			// The same shard and data: a move was undone (its marker is back) or the
			// tenant's data is being erased (it is not).
			cctx, cancel := s.ctx(ctx)
			m, err := t.sh.kv.Get(cctx, t.d.tenant(), clientv3.WithCountOnly())
			cancel()
			if err != nil {
				return tenant{}, etcdErr("read the tenant's marker", err)
			}
			if m.Count == 1 {
				return t, nil
			}
			return tenant{}, fmt.Errorf("store: instance %s: %w", was.in.ID, ErrNotFound)
		}
		if time.Now().After(deadline) {
			return tenant{}, fmt.Errorf("store: tenant %s is moving to shard %s: %w", in.ID, in.Move.To, ErrUnavailable)
		}
		select {
		case <-ctx.Done():
			return tenant{}, etcdErr("wait for a move", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// markerMissing builds the compare every write of a tenant's data makes:
// its marker exists on the shard.
func markerExists(d data) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(d.tenant()), ">", 0)
}
