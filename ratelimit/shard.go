package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"sync"
)

// shard is one independently locked part of a table.
type shard[V any] struct {
	mu  sync.Mutex
	lru lru[V]
	_   [64]byte // keep neighbouring shards' mutexes off one cache line
}

// table spreads keys over shards by a seeded, non-allocating hash of the key
// bytes; each shard is an lru bounded so that all of them together hold at
// most maxKeys entries.
type table[V any] struct {
	seed   maphash.Seed
	mask   uint64
	shards []shard[V]
}

func newTable[V any](shards, maxKeys int) *table[V] {
	n := shardCount(shards, maxKeys)
	t := &table[V]{
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]shard[V], n),
	}
	per, extra := maxKeys/n, maxKeys%n
	for i := range t.shards {
		limit := per
		if i < extra {
			limit++
		}
		t.shards[i].lru.init(limit)
	}
	return t
}

// shardCount rounds want up to a power of two in [1, maxShards], then halves
// it until every shard has room for at least one of maxKeys keys.
func shardCount(want, maxKeys int) int {
	want = min(max(want, 1), maxShards)
	n := 1 << bits.Len(uint(want-1))
	for n > 1 && n > maxKeys {
		n >>= 1
	}
	return n
}

func shardIndex(seed maphash.Seed, key []byte, mask uint64) uint64 {
	return maphash.Bytes(seed, key) & mask
}

// shardFor returns the shard owning key.
func (t *table[V]) shardFor(key []byte) *shard[V] {
	return &t.shards[shardIndex(t.seed, key, t.mask)]
}

// len counts the entries of all shards.
func (t *table[V]) len() int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += s.lru.len()
		s.mu.Unlock()
	}
	return n
}

// prune runs f on each shard's lru under the shard's lock and sums what it
// returns.
func (t *table[V]) prune(f func(*lru[V]) int) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		n += f(&s.lru)
		s.mu.Unlock()
	}
	return n
}
