package ratelimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// streamCount is one key's number of streams in flight.
type streamCount struct {
	key string
	n   int
}

type streamShard struct {
	mu sync.Mutex
	m  map[string]*streamCount
	_  [64]byte // keep neighbouring shards' mutexes off one cache line
}

// Streams allows at most a fixed number of concurrent streams per key. Only
// keys with streams in flight take memory: a key whose last stream is
// released is removed. It is safe for concurrent use.
type Streams struct {
	perKey atomic.Int64
	seed   maphash.Seed
	mask   uint64
	shards []streamShard
}

// NewStreams returns a Streams allowing perKey concurrent streams per key
// (perKey < 1 allows none). Options: [WithShards].
func NewStreams(perKey int, opts ...Option) *Streams {
	c := newConfig(opts)
	n := shardCount(c.shards, maxShards)
	s := &Streams{
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]streamShard, n),
	}
	for i := range s.shards {
		s.shards[i].m = make(map[string]*streamCount)
	}
	s.perKey.Store(int64(perKey))
	return s
}

func (s *Streams) shardFor(key []byte) *streamShard {
	return &s.shards[shardIndex(s.seed, key, s.mask)]
}

// TryAcquire starts a stream for key if fewer than the limit are in flight
// and reports whether it did; every true must be paired with one Release.
// It allocates only when key has no stream in flight.
func (s *Streams) TryAcquire(key []byte) bool {
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	perKey := int(s.perKey.Load())
	c := sh.m[string(key)]
	if c == nil {
		if perKey < 1 {
			return false
		}
		c = &streamCount{key: string(key)}
		sh.m[c.key] = c
	}
	if c.n >= perKey {
		return false
	}
	c.n++
	return true
}

// Release ends one of key's streams and reports whether there was one: an
// unmatched Release changes nothing and returns false (it never goes
// negative and never panics). It makes no allocation.
func (s *Streams) Release(key []byte) bool {
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c := sh.m[string(key)]
	if c == nil {
		return false
	}
	if c.n--; c.n <= 0 {
		delete(sh.m, c.key)
	}
	return true
}

// InFlight returns the number of key's streams in flight.
func (s *Streams) InFlight(key []byte) int {
	sh := s.shardFor(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c := sh.m[string(key)]; c != nil {
		return c.n
	}
	return 0
}

// Len returns the number of keys with streams in flight, for metrics.
func (s *Streams) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Limit returns the number of concurrent streams allowed per key.
func (s *Streams) Limit() int { return int(s.perKey.Load()) }

// SetLimit changes the number of concurrent streams allowed per key (a
// relay's share of a fleet-wide limit). Streams in flight over a lowered
// limit run to their end; no new one starts until the key is under it.
func (s *Streams) SetLimit(perKey int) { s.perKey.Store(int64(perKey)) }
