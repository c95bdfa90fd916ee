package ratelimit

import (
	"time"
)

// Window is a write limit: at most Events writes in any span of Per.
type Window struct {
	// Events is the number of writes allowed in any span of Per.
	Events int
	// Per is the window's length.
	Per time.Duration
}

// maxWindowEvents bounds Window.Events: a key remembers that many writes.
const maxWindowEvents = 10_000

func (w Window) valid() bool { return w.Events > 0 && w.Events <= maxWindowEvents && w.Per > 0 }

// Jira Cloud's documented per-issue write limits.
var (
	jiraIssueShort = Window{Events: 20, Per: 2 * time.Second}
	jiraIssueLong  = Window{Events: 100, Per: 30 * time.Second}
)

// writeLog is one key's recent writes, oldest first: the ticks of at most
// the larger window's Events writes, none older than the longer window.
type writeLog struct {
	ticks []int64
}

// IssueWrites keeps Jira Cloud's per-issue write limit locally, exactly as
// Jira states it: at most 20 writes in any 2 s and at most 100 in any 30 s
// per key (sliding windows over a log of the key's recent writes, not token
// buckets, which would let 20 + 10/s through), where the proxy's key is
// instanceID + "/" + issueKey. A write is allowed only when both windows
// have room; a refused write is not recorded. It is bounded like [Keyed]:
// at most MaxKeys keys, LRU eviction, idle keys dropped after the TTL (at
// least the longer window). A key holds only the writes still inside its
// longer window (at most 100 by default). It is safe for concurrent use.
type IssueWrites struct {
	clock       Clock
	epoch       time.Time
	short, long Window
	keep        int   // writes a key remembers: the larger Events
	span        int64 // the longer window, in ticks
	ttl         int64
	t           *table[writeLog]
}

// NewIssueWrites returns an IssueWrites with Jira Cloud's windows. Options:
// [WithWindows], [WithClock], [WithMaxKeys], [WithTTL], [WithShards].
func NewIssueWrites(opts ...Option) *IssueWrites {
	c := newConfig(opts)
	w := &IssueWrites{
		clock: c.clock,
		epoch: c.clock.Now(),
		short: c.short,
		long:  c.long,
		keep:  max(c.short.Events, c.long.Events),
		span:  int64(max(c.short.Per, c.long.Per)),
		t:     newTable[writeLog](c.shards, c.maxKeys),
	}
	w.ttl = max(int64(c.ttl), w.span)
	return w
}

// Allow records a write for key if both windows have room for it. Otherwise
// it records nothing, and Decision.RetryAfter is exactly how long until both
// have room: until the write that fills a window leaves it (the longer of
// the two waits, rounded up to the microsecond), with Limit that window's
// Events. On success Remaining is
// the smaller of the windows' room left (Limit its Events) and Reset the
// time until that window is empty again (its Per, counted from this write).
// Allow makes no allocation when key is present and its log has grown to
// its working size.
func (w *IssueWrites) Allow(key []byte) Decision { return w.decide(key, true) }

// Check decides as Allow would, but records nothing: a write refused later
// by something else has spent no budget. Check makes no allocation.
func (w *IssueWrites) Check(key []byte) Decision { return w.decide(key, false) }

func (w *IssueWrites) decide(key []byte, write bool) Decision {
	s := w.t.shardFor(key)
	s.mu.Lock()
	tick := int64(w.clock.Now().Sub(w.epoch))
	n := s.lru.get(key)
	switch {
	case n == nil && !write:
		// No write of this key in the log: room in both windows.
		s.mu.Unlock()
		return Decision{OK: true, Limit: w.short.Events, Remaining: w.short.Events, Reset: w.short.Per}
	case n == nil:
		n = w.insert(&s.lru, key, tick)
	case write:
		s.lru.touch(n, tick)
	}
	l := &n.val
	var d Decision
	for _, win := range [2]Window{w.short, w.long} {
		if len(l.ticks) < win.Events {
			continue
		}
		// The write that filled the window: the Events-th most recent.
		filler := l.ticks[len(l.ticks)-win.Events]
		if wait := filler + int64(win.Per) - tick; wait > 0 && time.Duration(wait) > d.RetryAfter {
			d.RetryAfter, d.Limit = time.Duration(wait), win.Events
		}
	}
	if d.RetryAfter > 0 {
		// Up to the microsecond, like Keyed's: never a wait too short.
		d.RetryAfter = (d.RetryAfter + time.Microsecond - 1) / time.Microsecond * time.Microsecond
		d.Reset = d.RetryAfter
		s.mu.Unlock()
		return d
	}
	if write {
		l.record(tick, w.keep, w.span)
	}
	d.OK = true
	d.Remaining = -1
	for _, win := range [2]Window{w.short, w.long} {
		if rem := win.Events - l.within(tick, int64(win.Per)); d.Remaining < 0 || rem < d.Remaining {
			d.Remaining, d.Limit, d.Reset = rem, win.Events, win.Per
		}
	}
	s.mu.Unlock()
	return d
}

// record appends tick, first dropping the writes older than span and, when
// the log holds keep writes, the oldest.
func (l *writeLog) record(tick int64, keep int, span int64) {
	drop := 0
	for drop < len(l.ticks) && tick-l.ticks[drop] >= span {
		drop++
	}
	if len(l.ticks)-drop >= keep {
		drop = len(l.ticks) - keep + 1
	}
	if drop > 0 {
		l.ticks = l.ticks[:copy(l.ticks, l.ticks[drop:])]
	}
	l.ticks = append(l.ticks, tick)
}

// within counts the writes less than per before tick.
func (l *writeLog) within(tick, per int64) int {
	n := 0
	for i := len(l.ticks) - 1; i >= 0 && tick-l.ticks[i] < per; i-- {
		n++
	}
	return n
}

// insert adds key with an empty log, first dropping a few idle keys.
func (w *IssueWrites) insert(l *lru[writeLog], key []byte, tick int64) *node[writeLog] {
	l.pruneBack(lazyPrune, func(n *node[writeLog]) bool { return tick-n.touched > w.ttl })
	n, _ := l.add(key, tick)
	n.val = writeLog{}
	return n
}

// Sweep drops every key idle longer than the TTL and returns how many.
func (w *IssueWrites) Sweep() int {
	tick := int64(w.clock.Now().Sub(w.epoch))
	return w.t.prune(func(l *lru[writeLog]) int {
		return l.pruneBack(-1, func(n *node[writeLog]) bool { return tick-n.touched > w.ttl })
	})
}

// Len returns the number of keys held, for metrics.
func (w *IssueWrites) Len() int { return w.t.len() }
