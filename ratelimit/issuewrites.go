package ratelimit

import (
	"time"

	"golang.org/x/time/rate"
)

// Window is a write limit of Events per Per, kept as a token bucket holding
// Events tokens and refilling at Events/Per.
type Window struct {
	// Events is the number of writes allowed per window, and the burst.
	Events int
	// Per is the window's length.
	Per time.Duration
}

func (w Window) valid() bool { return w.Events > 0 && w.Per > 0 }

func (w Window) limit() rate.Limit { return rate.Limit(float64(w.Events) / w.Per.Seconds()) }

// Jira Cloud's documented per-issue write limits.
var (
	jiraIssueShort = Window{Events: 20, Per: 2 * time.Second}
	jiraIssueLong  = Window{Events: 100, Per: 30 * time.Second}
)

// issueBuckets are one key's two windows.
type issueBuckets struct {
	short, long *rate.Limiter
}

// IssueWrites keeps Jira Cloud's per-issue write limit locally: by default 20
// writes per 2 s (10/s, burst 20) and 100 writes per 30 s (100/30 per s,
// burst 100) per key, where the proxy's key is instanceID + "/" + issueKey.
// A write is allowed only when both windows allow it; a refused write takes
// from neither. It is bounded like [Keyed]: at most MaxKeys keys, LRU
// eviction, idle keys dropped after the TTL (at least the long window's fill
// time, 30 s by default). It is safe for concurrent use.
type IssueWrites struct {
	clock       Clock
	epoch       time.Time
	short, long Window
	shortLimit  rate.Limit
	longLimit   rate.Limit
	ttl         int64
	t           *table[issueBuckets]
}

// NewIssueWrites returns an IssueWrites with Jira Cloud's windows. Options:
// [WithWindows], [WithClock], [WithMaxKeys], [WithTTL], [WithShards].
func NewIssueWrites(opts ...Option) *IssueWrites {
	c := newConfig(opts)
	w := &IssueWrites{
		clock:      c.clock,
		epoch:      c.clock.Now(),
		short:      c.short,
		long:       c.long,
		shortLimit: c.short.limit(),
		longLimit:  c.long.limit(),
		t:          newTable[issueBuckets](c.shards, c.maxKeys),
	}
	fill := max(fillTime(w.shortLimit, w.short.Events), fillTime(w.longLimit, w.long.Events))
	w.ttl = int64(max(c.ttl, fill))
	return w
}

// Allow takes a token from both of key's windows if both have one. Otherwise
// it takes nothing and Decision.RetryAfter is exactly how long until both
// have one (the longer of the two waits). On success Remaining is the smaller
// of the windows' remainders and Limit that window's burst; Reset is the time
// until both are full. Allow makes no allocation when key is already present.
func (w *IssueWrites) Allow(key []byte) Decision {
	s := w.t.shardFor(key)
	s.mu.Lock()
	now := w.clock.Now()
	tick := int64(now.Sub(w.epoch))
	n := s.lru.get(key)
	if n == nil {
		n = w.insert(&s.lru, key, tick)
	} else {
		s.lru.touch(n, tick)
	}
	b := n.val

	var d Decision
	rs := b.short.ReserveN(now, 1)
	rl := b.long.ReserveN(now, 1)
	ds, dl := rs.DelayFrom(now), rl.DelayFrom(now)
	if ds > 0 || dl > 0 {
		rs.CancelAt(now)
		rl.CancelAt(now)
		d.Limit = w.short.Events
		if dl > ds {
			d.Limit = w.long.Events
		}
		d.RetryAfter = exactWait(max(ds, dl), now, b.short, w.shortLimit, b.long, w.longLimit)
		d.Reset = d.RetryAfter
	} else {
		ts, tl := b.short.TokensAt(now), b.long.TokensAt(now)
		d.OK = true
		d.Limit, d.Remaining = w.short.Events, wholeTokens(ts)
		if rem := wholeTokens(tl); rem < d.Remaining {
			d.Limit, d.Remaining = w.long.Events, rem
		}
		d.Reset = max(untilFull(w.shortLimit, w.short.Events, ts), untilFull(w.longLimit, w.long.Events, tl))
	}
	s.mu.Unlock()
	return d
}

// insert adds key with both windows full, first dropping a few idle keys.
func (w *IssueWrites) insert(l *lru[issueBuckets], key []byte, tick int64) *node[issueBuckets] {
	l.pruneBack(lazyPrune, func(n *node[issueBuckets]) bool { return tick-n.touched > w.ttl })
	n, _ := l.add(key, tick)
	n.val = issueBuckets{
		short: rate.NewLimiter(w.shortLimit, w.short.Events),
		long:  rate.NewLimiter(w.longLimit, w.long.Events),
	}
	return n
}

// Sweep drops every key idle longer than the TTL and returns how many.
func (w *IssueWrites) Sweep() int {
	tick := int64(w.clock.Now().Sub(w.epoch))
	return w.t.prune(func(l *lru[issueBuckets]) int {
		return l.pruneBack(-1, func(n *node[issueBuckets]) bool { return tick-n.touched > w.ttl })
	})
}

// Len returns the number of keys held, for metrics.
func (w *IssueWrites) Len() int { return w.t.len() }
