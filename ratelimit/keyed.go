package ratelimit

import (
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// lazyPrune bounds how many idle entries one insert drops from its shard.
const lazyPrune = 4

// Keyed is a token bucket per key: each key may make burst requests at once
// and rps per second on average. It keeps at most MaxKeys keys (see
// [WithMaxKeys]), evicting the least recently used key of a full shard, and
// drops keys idle longer than the TTL (see [WithTTL]) when inserting and in
// [Keyed.Sweep]. A dropped or evicted key starts again with a full bucket.
// It is safe for concurrent use.
type Keyed struct {
	clock Clock
	epoch time.Time
	size  atomic.Pointer[bucketSize]
	ttl   atomic.Int64 // nanoseconds
	t     *table[bucket]
}

// bucketSize is what every bucket of a Keyed refills at and holds.
type bucketSize struct {
	limit rate.Limit
	burst int
}

// bucket is one key's limiter and the size it was last given.
type bucket struct {
	lim  *rate.Limiter
	size *bucketSize
}

// New returns a Keyed allowing each key rps requests per second with bursts
// of burst. It panics unless rps is finite and > 0 and burst >= 1. Options:
// [WithClock], [WithMaxKeys], [WithTTL], [WithShards].
func New(rps float64, burst int, opts ...Option) *Keyed {
	limit := bucketRate(rps, burst, "New")
	c := newConfig(opts)
	k := &Keyed{
		clock: c.clock,
		epoch: c.clock.Now(),
		t:     newTable[bucket](c.shards, c.maxKeys),
	}
	k.size.Store(&bucketSize{limit: limit, burst: burst})
	k.ttl.Store(int64(max(c.ttl, fillTime(limit, burst))))
	return k
}

// SetRate changes every key's bucket to rps per second with bursts of
// burst (a relay's share of a fleet-wide limit, when the fleet changes).
// A bucket takes the new size on its key's next request: the tokens it
// earned until then at the old rate are kept, up to the new burst. The TTL
// only grows. It panics unless rps is finite and > 0 and burst >= 1.
func (k *Keyed) SetRate(rps float64, burst int) {
	limit := bucketRate(rps, burst, "SetRate")
	k.size.Store(&bucketSize{limit: limit, burst: burst})
	for {
		old := k.ttl.Load()
		ft := int64(fillTime(limit, burst))
		if ft <= old || k.ttl.CompareAndSwap(old, ft) {
			return
		}
	}
}

// Rate returns the rate and burst every bucket has now.
func (k *Keyed) Rate() (rps float64, burst int) {
	sz := k.size.Load()
	return float64(sz.limit), sz.burst
}

// Allow takes a token from key's bucket if it has one. On refusal it takes
// nothing and Decision.RetryAfter is exactly how long until a token is there.
// Allow makes no allocation when key is already present.
func (k *Keyed) Allow(key []byte) Decision {
	sz := k.size.Load()
	s := k.t.shardFor(key)
	s.mu.Lock()
	now := k.clock.Now()
	tick := int64(now.Sub(k.epoch))
	n := s.lru.get(key)
	if n == nil {
		n = k.insert(&s.lru, key, tick, sz)
	} else {
		s.lru.touch(n, tick)
	}
	lim := n.val.lim
	if n.val.size != sz {
		// SetRate since this key's last request: the tokens earned so far
		// at the old rate stay, capped by the new burst.
		lim.SetLimitAt(now, sz.limit)
		lim.SetBurstAt(now, sz.burst)
		n.val.size = sz
	}

	var d Decision
	d.Limit = sz.burst
	r := lim.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		d.RetryAfter = exactWait(wait, now, lim, sz.limit, nil, 0)
		d.Reset = d.RetryAfter
	} else {
		tokens := min(lim.TokensAt(now), float64(sz.burst))
		d.OK = true
		d.Remaining = wholeTokens(tokens)
		d.Reset = untilFull(sz.limit, sz.burst, tokens)
	}
	s.mu.Unlock()
	return d
}

// insert adds key with a full bucket, first dropping a few idle keys.
func (k *Keyed) insert(l *lru[bucket], key []byte, tick int64, sz *bucketSize) *node[bucket] {
	ttl := k.ttl.Load()
	l.pruneBack(lazyPrune, func(n *node[bucket]) bool { return tick-n.touched > ttl })
	n, _ := l.add(key, tick)
	n.val = bucket{lim: rate.NewLimiter(sz.limit, sz.burst), size: sz}
	return n
}

// Sweep drops every key idle longer than the TTL and returns how many it
// dropped. Call it periodically to give memory back between bursts of keys;
// limits hold without it.
func (k *Keyed) Sweep() int {
	tick := int64(k.clock.Now().Sub(k.epoch))
	ttl := k.ttl.Load()
	return k.t.prune(func(l *lru[bucket]) int {
		return l.pruneBack(-1, func(n *node[bucket]) bool { return tick-n.touched > ttl })
	})
}

// Len returns the number of keys held, for metrics.
func (k *Keyed) Len() int { return k.t.len() }

// TTL returns the effective idle time after which a key is dropped: the
// configured TTL, or the time an empty bucket takes to fill if longer.
func (k *Keyed) TTL() time.Duration { return time.Duration(k.ttl.Load()) }
