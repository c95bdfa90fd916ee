package ratelimit_test

import (
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

// drain takes tokens from key until one is refused and returns how many it
// got.
func drain(k *ratelimit.Keyed, key string) int {
	n := 0
	for k.Allow([]byte(key)).OK {
		n++
	}
	return n
}

// A relay's share of a fleet-wide limit changes when the fleet does: a
// smaller share caps what a bucket holds at once, a larger one refills and
// holds more, and keys first seen after the change get the new size.
func TestKeyedSetRate(t *testing.T) {
	clock := newFakeClock()
	k := ratelimit.New(10, 10, ratelimit.WithClock(clock))
	k.Allow([]byte("a")) // a known key, 9 tokens left

	k.SetRate(10.0/3, 4) // three members: this relay's share
	if rps, burst := k.Rate(); rps != 10.0/3 || burst != 4 {
		t.Fatalf("Rate() = %v, %d; want 3.33, 4", rps, burst)
	}
	if n := drain(k, "a"); n != 4 {
		t.Errorf("a known key after the share shrank: %d requests, want the new burst 4", n)
	}
	if n := drain(k, "b"); n != 4 {
		t.Errorf("a new key: %d requests, want 4", n)
	}
	d := k.Allow([]byte("a"))
	if d.Limit != 4 || d.RetryAfter != 300*time.Millisecond {
		t.Errorf("refusal: limit %d, Retry-After %v; want 4 and 300ms (one token at 3.33/s)", d.Limit, d.RetryAfter)
	}

	clock.Advance(300 * time.Millisecond)
	k.SetRate(5, 5) // two members
	clock.Advance(time.Second)
	// The bucket takes the new size on its next request: the 1.3 s since
	// its last one earned 4.33 tokens at the old rate.
	if n := drain(k, "a"); n != 4 {
		t.Errorf("after the share grew and 1.3 s passed: %d requests, want 4", n)
	}
	clock.Advance(time.Second) // a second at the new rate fills the new burst
	if n := drain(k, "a"); n != 5 {
		t.Errorf("a second later: %d requests, want the new burst 5", n)
	}
	if k.TTL() < time.Second {
		t.Errorf("TTL %v shorter than an empty bucket's fill time", k.TTL())
	}
}

func TestKeyedSetRateRefusesAnEmptyShare(t *testing.T) {
	k := ratelimit.New(1, 1)
	for _, tt := range []struct {
		rps   float64
		burst int
	}{{0, 1}, {1, 0}, {-1, 5}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("SetRate(%v, %d) did not panic", tt.rps, tt.burst)
				}
			}()
			k.SetRate(tt.rps, tt.burst)
		}()
	}
}

// A lowered stream limit lets the streams in flight end and starts no new
// one until the key is under it.
func TestStreamsSetLimit(t *testing.T) {
	s := ratelimit.NewStreams(4)
	key := []byte("i")
	for range 4 {
		if !s.TryAcquire(key) {
			t.Fatal("refused under the limit")
		}
	}
	s.SetLimit(2)
	if s.Limit() != 2 || s.TryAcquire(key) {
		t.Fatalf("limit %d, a fifth stream admitted over the lowered limit", s.Limit())
	}
	s.Release(key)
	s.Release(key)
	if s.TryAcquire(key) {
		t.Error("admitted at the lowered limit with 2 in flight")
	}
	s.Release(key)
	if !s.TryAcquire(key) {
		t.Error("refused under the lowered limit")
	}
	s.SetLimit(8)
	if !s.TryAcquire(key) {
		t.Error("refused after the limit was raised")
	}
}

// Hold applies a cool-down another relay saw: it never shortens one in
// progress and does not count as a 429 of this relay's; Clear ends it.
func TestCooldownHoldAndClear(t *testing.T) {
	clock := newFakeClock()
	c := ratelimit.NewCooldown(ratelimit.WithClock(clock), ratelimit.WithJitterSource(fixedJitter(0.5)))
	key := []byte("scope")

	c.Hold(key, 0)
	if _, cooling := c.Check(key); cooling {
		t.Fatal("Hold(0) started a cool-down")
	}
	c.Hold(key, 10*time.Second)
	c.Hold(key, 5*time.Second)
	if wait, cooling := c.Check(key); !cooling || wait != 10*time.Second {
		t.Errorf("after Hold 10s then 5s: %v %v, want 10s", wait, cooling)
	}
	c.Clear(key)
	if _, cooling := c.Check(key); cooling {
		t.Error("cooling after Clear")
	}
	// The first 429 of this relay's own still gets the first backoff (1 s
	// × jitter 1.0): the holds were not its 429s.
	if d := c.Trip(key, 0); d != time.Second {
		t.Errorf("first own 429 after holds: %v, want 1s", d)
	}
	c.Clear([]byte("never seen")) // no panic, nothing made
	if c.Len() != 1 {
		t.Errorf("Len %d, want 1", c.Len())
	}
}
