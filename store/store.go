// Package store keeps the relay's five kinds of data per Jira instance in
// etcd: instance data, user data, the admin's configuration, mappings of
// e-mails to Jira issues, and the add-in's error reports (scrubbed, and
// expiring with an etcd lease). Nothing else is stored: no e-mail content,
// no Jira issue data beyond id, key and project id, no credentials (client
// and admin keys only as SHA-256 hashes).
//
// Every value is written whole or not at all: a record that does not encode
// is an error, and a time the records cannot hold (outside the years 0000 to
// 9999 in UTC) is refused as invalid. A stored record that does not decode
// (written by hand, by a defect) reads as ErrCorrupt, and DeleteInstance
// still erases its tenant.
//
// Instances and configurations are served from a watch-fed in-memory cache,
// so the hot paths (key checks, config reads) make no etcd round trip and keep
// working for known instances while etcd has no quorum.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jira-relay/jira-relay/internal/seal"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Options configure a Store.
type Options struct {
	// Prefix is where every key lives; it must end in "/". Default "/jira-relay/".
	Prefix string
	// Timeout bounds one store operation. Default 5s.
	Timeout time.Duration
	// Now is the clock for timestamps. Default time.Now.
	Now func() time.Time
	// Logger receives the cache's notes (re-lists, watch errors). Default: discard.
	Logger *slog.Logger
	// Lease grants the leases error reports and mappings expire with (a
	// *clientv3.Client is one). Without it, error reports and mappings
	// under a retention are refused.
	Lease clientv3.Lease
	// MappingRetention is how long a mapping lives after it was last linked,
	// unless its tenant sets its own (--mapping-retention); 0 keeps mappings
	// forever.
	MappingRetention time.Duration
	// MaxMappings and MaxUsers are each tenant's quotas
	// (--tenant-max-mappings, --tenant-max-users); 0 is no quota.
	MaxMappings, MaxUsers int64
	// OnWatchEvent, when set, is told of every event the cache's watch
	// receives, by kind: "instance", "config" or "other" (anything else
	// under the watched prefix; with layout 2, nothing).
	OnWatchEvent func(kind string)
	// Shards are the etcd clusters tenants' data may live on
	// (--etcd-shards); new tenants go to the one with the most room. None:
	// every tenant's data lives on the directory (the kv of New).
	Shards []ShardClient
	// Keys, when set, seal the values of users, mapping records,
	// configurations and error reports (--encryption-key-file); nil writes
	// them as plaintext. Either way sealed values with a listed key and
	// plaintext values are read.
	Keys *seal.Keyring
}

// Store is the relay's data layer over etcd. It is safe for concurrent use.
type Store struct {
	kv      clientv3.KV
	watcher clientv3.Watcher
	k       keys
	timeout time.Duration
	now     func() time.Time
	log     *slog.Logger
	cache   *cache
	lease   clientv3.Lease
	vals    values
	toks    tokenizers

	// dir is the directory's cluster as a shard; shards the others.
	dir    *shard
	shards map[string]*shard

	mappingRetention time.Duration
	quotas           quotas

	onWatchEvent func(kind string)

	// hook, in tests, stops a migration after a stage of a tenant
	// ("copied", "switched"), as a crash would.
	hook func(stage, id string) error
}

func (s *Store) migrateHook(stage, id string) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(stage, id)
}

// New returns a Store over an etcd KV and Watcher (a *clientv3.Client is
// both). Call Run to feed the caches.
func New(kv clientv3.KV, w clientv3.Watcher, o Options) (*Store, error) {
	if o.Prefix == "" {
		o.Prefix = "/jira-relay/"
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		return nil, errors.New("store: prefix must end in /")
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MappingRetention < 0 || o.MaxMappings < 0 || o.MaxUsers < 0 {
		return nil, errors.New("store: retention and quotas must not be negative")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		vals: values{keys: o.Keys},
		kv:   kv, watcher: w, k: keys{prefix: o.Prefix}, timeout: o.Timeout,
		now: o.Now, log: o.Logger, cache: newCache(), lease: o.Lease,
		dir:              &shard{name: DirectoryShard, kv: kv, lease: o.Lease, watcher: w},
		shards:           map[string]*shard{},
		mappingRetention: o.MappingRetention,
		onWatchEvent:     o.OnWatchEvent,
		quotas:           quotas{maxMappings: o.MaxMappings, maxUsers: o.MaxUsers, now: o.Now},
	}
	for _, c := range o.Shards {
		if !ValidShardName(c.Name) || c.Name == DirectoryShard {
			return nil, fmt.Errorf("store: shard name %q: want 1 to 32 of a-z 0-9 - (not %q)", c.Name, DirectoryShard)
		}
		if _, dup := s.shards[c.Name]; dup {
			return nil, fmt.Errorf("store: shard %q given twice", c.Name)
		}
		if c.KV == nil || c.Lease == nil || c.Watcher == nil {
			return nil, fmt.Errorf("store: shard %q needs a KV, a Lease and a Watcher", c.Name)
		}
		s.shards[c.Name] = &shard{name: c.Name, kv: c.KV, lease: c.Lease, watcher: c.Watcher}
	}
	return s, nil
}

// Prefix is the key prefix every record lives under.
func (s *Store) Prefix() string { return s.k.prefix }

// ValidShardName: 1 to 32 characters of a-z, 0-9 and "-".
func ValidShardName(n string) bool {
	if n == "" || len(n) > 32 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func (s *Store) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return waitCtx(parent, s.timeout)
}

// Ping reports whether etcd answers a linearizable read (it needs a quorum).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	_, err := s.kv.Get(ctx, s.k.prefix+"ping", clientv3.WithCountOnly())
	return etcdErr("ping", err)
}

func (s *Store) nowUTC() time.Time { return s.now().UTC().Truncate(time.Millisecond) }
