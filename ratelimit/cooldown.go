package ratelimit

import (
	"math"
	"time"
)

// maxStreak bounds the consecutive-429 counter; the backoff caps long before.
const maxStreak = 62

// cooldownState is one key's cool-down, in nanoseconds since the Cooldown's
// epoch.
type cooldownState struct {
	until   int64 // cooling while now < until
	expires int64 // entry (and its streak) is dropped once now >= expires
	streak  int   // consecutive 429s without a success in between
}

// Cooldown answers 429 locally for a key (a Jira instance) after Jira
// answered 429 for it, until the cool-down has passed. The cool-down is Jira's
// Retry-After when it sent one, else an exponential backoff over consecutive
// 429s (base 1s, doubling, cap 60s; see [WithBackoff]) times a random jitter
// factor in [0.7, 1.3). A key is dropped once its cool-down plus a grace
// period (see [WithGrace]) has passed; at most MaxKeys keys are kept, with
// LRU eviction. It is safe for concurrent use.
type Cooldown struct {
	clock Clock
	epoch time.Time
	base  time.Duration
	cap   time.Duration
	grace int64
	rand  func() float64
	t     *table[cooldownState]
}

// NewCooldown returns a Cooldown. Options: [WithBackoff], [WithGrace],
// [WithJitterSource], [WithClock], [WithMaxKeys], [WithShards].
func NewCooldown(opts ...Option) *Cooldown {
	c := newConfig(opts)
	return &Cooldown{
		clock: c.clock,
		epoch: c.clock.Now(),
		base:  c.base,
		cap:   c.cap,
		grace: int64(c.grace),
		rand:  c.rand,
		t:     newTable[cooldownState](c.shards, c.maxKeys),
	}
}

// Trip records that Jira answered 429 for key and returns how long key now
// cools down. retryAfter is Jira's Retry-After; when it is > 0 the cool-down
// is exactly that, otherwise it is the backoff for the streak of consecutive
// 429s with jitter. A 429 arriving while key is still cooling (a request
// already in flight when the first 429 came) does not lengthen the streak,
// and a cool-down is never shortened: the later end wins.
func (c *Cooldown) Trip(key []byte, retryAfter time.Duration) time.Duration {
	s := c.t.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tick := int64(c.clock.Now().Sub(c.epoch))
	st := &c.live(s, key, tick).val
	if tick >= st.until {
		st.streak = min(st.streak+1, maxStreak)
	}
	d := retryAfter
	if d <= 0 {
		d = c.backoff(st.streak)
	}
	st.until = max(st.until, addSat(tick, int64(d)))
	st.expires = addSat(st.until, c.grace)
	return time.Duration(st.until - tick)
}

// Hold makes key cool down for at least d from now (a cool-down another
// relay saw), without counting a 429 of its own: the streak is unchanged
// and a longer cool-down in progress is kept. d <= 0 changes nothing.
func (c *Cooldown) Hold(key []byte, d time.Duration) {
	if d <= 0 {
		return
	}
	s := c.t.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	tick := int64(c.clock.Now().Sub(c.epoch))
	st := &c.live(s, key, tick).val
	st.until = max(st.until, addSat(tick, int64(d)))
	st.expires = addSat(st.until, c.grace)
}

// live returns key's entry in shard s (locked by the caller) at tick: made
// if missing (dropping a few expired ones first), started over if expired,
// and touched.
func (c *Cooldown) live(s *shard[cooldownState], key []byte, tick int64) *node[cooldownState] {
	n := s.lru.get(key)
	switch {
	case n == nil:
		s.lru.pruneBack(lazyPrune, func(n *node[cooldownState]) bool { return tick >= n.val.expires })
		n, _ = s.lru.add(key, tick)
	case tick >= n.val.expires:
		n.val = cooldownState{}
	}
	s.lru.touch(n, tick)
	return n
}

// Clear ends key's cool-down now (an operator cleared it), keeping its
// streak: the next 429 still counts as consecutive.
func (c *Cooldown) Clear(key []byte) {
	s := c.t.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.lru.get(key); n != nil {
		tick := int64(c.clock.Now().Sub(c.epoch))
		n.val.until = min(n.val.until, tick)
	}
}

// backoff is base doubled per 429 after the first, capped, times a jitter
// factor in [0.7, 1.3).
func (c *Cooldown) backoff(streak int) time.Duration {
	d := c.base
	for i := 1; i < streak && d < c.cap; i++ {
		if d > math.MaxInt64/2 {
			d = math.MaxInt64
			break
		}
		d *= 2
	}
	d = min(d, c.cap)
	u := c.rand()
	if !(u >= 0) { // also NaN
		u = 0
	} else if u >= 1 {
		u = math.Nextafter(1, 0)
	}
	j := float64(d) * (0.7 + 0.6*u)
	if j >= math.MaxInt64 {
		return math.MaxInt64
	}
	return max(time.Duration(j), 1)
}

// Check reports whether key is cooling down and, if so, for how long still.
// It makes no allocation.
func (c *Cooldown) Check(key []byte) (wait time.Duration, cooling bool) {
	s := c.t.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.lru.get(key)
	if n == nil {
		return 0, false
	}
	tick := int64(c.clock.Now().Sub(c.epoch))
	if tick < n.val.until {
		s.lru.touch(n, tick)
		return time.Duration(n.val.until - tick), true
	}
	if tick >= n.val.expires {
		s.lru.remove(n)
	}
	return 0, false
}

// Succeeded records that Jira accepted a request for key: the streak of
// consecutive 429s starts over. A cool-down in progress still runs out (the
// success was for a request sent before it began). It makes no allocation.
func (c *Cooldown) Succeeded(key []byte) {
	s := c.t.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.lru.get(key)
	if n == nil {
		return
	}
	if int64(c.clock.Now().Sub(c.epoch)) < n.val.until {
		n.val.streak = 0
		return
	}
	s.lru.remove(n)
}

// Sweep drops every key whose cool-down and grace have passed and returns
// how many it dropped.
func (c *Cooldown) Sweep() int {
	tick := int64(c.clock.Now().Sub(c.epoch))
	return c.t.prune(func(l *lru[cooldownState]) int {
		return l.pruneAll(func(n *node[cooldownState]) bool { return tick >= n.val.expires })
	})
}

// Len returns the number of keys held, for metrics.
func (c *Cooldown) Len() int { return c.t.len() }

// addSat returns a+b for b >= 0, saturating at the largest int64.
func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
