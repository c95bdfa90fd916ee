package fleet

import (
	"sync"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

// maxEntries bounds the cool-downs whose reason and shared state are kept
// (the hold itself is bounded by the ratelimit.Cooldown under it).
const maxEntries = 100_000

// Cooldowns holds Jira's cool-downs by scope. Trip records a 429 this relay
// saw and hands it to the fleet to share; Hold and release apply what
// another relay shared; Check is asked before every request to Jira. Every
// cool-down is capped at the relay's --max-cooldown. It is safe for
// concurrent use.
type Cooldowns struct {
	clock ratelimit.Clock
	max   time.Duration
	local *ratelimit.Cooldown

	mu      sync.Mutex
	entries map[string]*entry
	publish func(key string, until time.Time, reason string)
}

// entry is what is known of one scope's cool-down besides its hold.
type entry struct {
	scope  Scope
	until  time.Time // the latest end known, this relay's or the fleet's
	reason string    // Jira's RateLimit-Reason for it, "" when none
	shared
}

// shared is a scope's key in etcd, as last seen; its zero value is no key.
type shared struct {
	until   time.Time // the end it holds (capped at --max-cooldown)
	written time.Time // when it was written
	rev     int64     // its mod revision
	lease   int64     // its lease
}

// NewCooldowns returns an empty Cooldowns whose cool-downs last at most
// max. Without a fleet attached (Start) it holds this relay's own 429s only.
func NewCooldowns(clock ratelimit.Clock, max time.Duration) *Cooldowns {
	if clock == nil {
		clock = ratelimit.SystemClock{}
	}
	return &Cooldowns{
		clock:   clock,
		max:     max,
		local:   ratelimit.NewCooldown(ratelimit.WithClock(clock), ratelimit.WithBackoff(ratelimit.DefaultBackoffBase, min(ratelimit.DefaultBackoffCap, max))),
		entries: make(map[string]*entry),
	}
}

// Check reports whether a request to Jira for the instance's endpoint (and
// issue, for an upload; "" for none) is held back, for how long still and
// for which RateLimit-Reason: the longest of the cool-downs of every scope
// it falls in. It makes no allocation when nothing cools.
func (c *Cooldowns) Check(instanceID string, ep Endpoint, issue string) (wait time.Duration, reason string, cooling bool) {
	var buf [320]byte // "endpoint/" or "issue/" + instance id (26) + "/" + issue key (at most 255)
	var longest Scope
	for s := range numScopes {
		if s == ScopeIssue && issue == "" {
			break
		}
		if w, ok := c.local.Check(appendKey(buf[:0], s, instanceID, ep, issue)); ok && w > wait {
			wait, longest, cooling = w, s, true
		}
	}
	if !cooling {
		return 0, "", false
	}
	k := appendKey(buf[:0], longest, instanceID, ep, issue)
	c.mu.Lock()
	if e := c.entries[string(k)]; e != nil {
		reason = e.reason
	}
	c.mu.Unlock()
	return min(wait, c.max), reason, true
}

// Trip records Jira's 429 for a request to the instance's endpoint (and
// issue, "" for none) with RateLimit-Reason reason and Retry-After
// retryAfter (0 when Jira sent none), and returns how long the scope the
// reason names now cools down: Retry-After when given, else a backoff over
// the scope's consecutive 429s; at most --max-cooldown. The fleet is told.
func (c *Cooldowns) Trip(instanceID string, ep Endpoint, issue, reason string, retryAfter time.Duration) time.Duration {
	reason = CleanReason(reason)
	s := ScopeOf(reason, issue != "")
	key := appendKey(nil, s, instanceID, ep, issue)
	d := min(c.local.Trip(key, min(retryAfter, c.max)), c.max)
	until := c.clock.Now().Add(d)
	c.mu.Lock()
	e := c.entry(string(key), s)
	if e != nil && !until.Before(e.until) {
		e.until, e.reason = until, reason
	}
	publish := c.publish
	c.mu.Unlock()
	if publish != nil {
		publish(string(key), until, reason)
	}
	return d
}

// Succeeded records that Jira accepted a request to the instance's
// endpoint (and issue): the streaks of consecutive 429s of every scope it
// falls in start over. It makes no allocation.
func (c *Cooldowns) Succeeded(instanceID string, ep Endpoint, issue string) {
	var buf [320]byte
	for s := range numScopes {
		if s == ScopeIssue && issue == "" {
			break
		}
		c.local.Succeeded(appendKey(buf[:0], s, instanceID, ep, issue))
	}
}

// entry returns key's entry, making it if there is room; c.mu is held.
func (c *Cooldowns) entry(key string, s Scope) *entry {
	e := c.entries[key]
	if e == nil && len(c.entries) < maxEntries {
		e = &entry{scope: s}
		c.entries[key] = e
	}
	return e
}

// hold applies a cool-down the fleet shares (the value of key at revision
// rev, on lease), capped at --max-cooldown from now.
func (c *Cooldowns) hold(key string, s Scope, r record, rev, lease int64) {
	now := c.clock.Now()
	until := r.Until
	if lim := now.Add(c.max); until.After(lim) {
		until = lim
	}
	c.local.Hold([]byte(key), until.Sub(now))
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entry(key, s)
	if e == nil {
		return
	}
	e.shared = shared{until: until, written: r.Written, rev: rev, lease: lease}
	if !until.Before(e.until) {
		e.until, e.reason = until, r.Reason
	}
}

// release applies the deletion of key from etcd: its lease ended or an
// operator deleted it. The scope stops cooling unless this relay knows of
// a later end than the one that was shared (a 429 it has yet to share).
func (c *Cooldowns) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		return
	}
	if e.rev != 0 && e.until.After(e.shared.until) {
		e.shared = shared{}
		return
	}
	c.local.Clear([]byte(key))
	delete(c.entries, key)
}

// sharedOf is what etcd holds for key, as last seen.
func (c *Cooldowns) sharedOf(key string) shared {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		return e.shared
	}
	return shared{}
}

// sharedKeys returns the keys of the cool-downs etcd holds, as last seen.
func (c *Cooldowns) sharedKeys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k, e := range c.entries {
		if e.rev != 0 {
			out = append(out, k)
		}
	}
	return out
}

// attach has every later Trip call publish.
func (c *Cooldowns) attach(publish func(key string, until time.Time, reason string)) {
	c.mu.Lock()
	c.publish = publish
	c.mu.Unlock()
}

// Sweep forgets cool-downs that have ended and are no longer in etcd; the
// relay runs it every few seconds.
func (c *Cooldowns) Sweep() {
	c.local.Sweep()
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.rev == 0 && !e.until.After(now) {
			delete(c.entries, k)
		}
	}
}

// Active counts the cool-downs running now, by scope, for metrics.
func (c *Cooldowns) Active() [numScopes]int {
	var n [numScopes]int
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.until.After(now) {
			n[e.scope]++
		}
	}
	return n
}

// Len is the number of scopes whose holds are kept, for metrics.
func (c *Cooldowns) Len() int { return c.local.Len() }
