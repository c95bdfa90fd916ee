package ratelimit

import (
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
	limit rate.Limit
	burst int
	ttl   int64 // nanoseconds
	t     *table[*rate.Limiter]
}

// New returns a Keyed allowing each key rps requests per second with bursts
// of burst. It panics unless rps is finite and > 0 and burst >= 1. Options:
// [WithClock], [WithMaxKeys], [WithTTL], [WithShards].
func New(rps float64, burst int, opts ...Option) *Keyed {
	limit := bucketRate(rps, burst, "New")
	c := newConfig(opts)
	return &Keyed{
		clock: c.clock,
		epoch: c.clock.Now(),
		limit: limit,
		burst: burst,
		ttl:   int64(max(c.ttl, fillTime(limit, burst))),
		t:     newTable[*rate.Limiter](c.shards, c.maxKeys),
	}
}

// Allow takes a token from key's bucket if it has one. On refusal it takes
// nothing and Decision.RetryAfter is exactly how long until a token is there.
// Allow makes no allocation when key is already present.
func (k *Keyed) Allow(key []byte) Decision {
	s := k.t.shardFor(key)
	s.mu.Lock()
	now := k.clock.Now()
	tick := int64(now.Sub(k.epoch))
	n := s.lru.get(key)
	if n == nil {
		n = k.insert(&s.lru, key, tick)
	} else {
		s.lru.touch(n, tick)
	}
	lim := n.val

	var d Decision
	d.Limit = k.burst
	r := lim.ReserveN(now, 1)
	if wait := r.DelayFrom(now); wait > 0 {
		r.CancelAt(now)
		d.RetryAfter = exactWait(wait, now, lim, k.limit, nil, 0)
		d.Reset = d.RetryAfter
	} else {
		tokens := lim.TokensAt(now)
		d.OK = true
		d.Remaining = wholeTokens(tokens)
		d.Reset = untilFull(k.limit, k.burst, tokens)
	}
	s.mu.Unlock()
	return d
}

// insert adds key with a full bucket, first dropping a few idle keys.
func (k *Keyed) insert(l *lru[*rate.Limiter], key []byte, tick int64) *node[*rate.Limiter] {
	l.pruneBack(lazyPrune, func(n *node[*rate.Limiter]) bool { return tick-n.touched > k.ttl })
	n, _ := l.add(key, tick)
	n.val = rate.NewLimiter(k.limit, k.burst)
	return n
}

// Sweep drops every key idle longer than the TTL and returns how many it
// dropped. Call it periodically to give memory back between bursts of keys;
// limits hold without it.
func (k *Keyed) Sweep() int {
	tick := int64(k.clock.Now().Sub(k.epoch))
	return k.t.prune(func(l *lru[*rate.Limiter]) int {
		return l.pruneBack(-1, func(n *node[*rate.Limiter]) bool { return tick-n.touched > k.ttl })
	})
}

// Len returns the number of keys held, for metrics.
func (k *Keyed) Len() int { return k.t.len() }

// TTL returns the effective idle time after which a key is dropped: the
// configured TTL, or the time an empty bucket takes to fill if longer.
func (k *Keyed) TTL() time.Duration { return time.Duration(k.ttl) }
