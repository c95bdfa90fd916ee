package ratelimit_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

func TestKeyedBurstThenRefusalWithExactRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		rps        float64
		burst      int
		retryAfter time.Duration // after the burst, until one more token
	}{
		{"2/s burst 3", 2, 3, 500 * time.Millisecond},
		{"1/s burst 1", 1, 1, time.Second},
		{"10/s burst 20", 10, 20, 100 * time.Millisecond},
		{"100 per 30s", 100.0 / 30, 100, 300 * time.Millisecond},
		{"3/s burst 2", 3, 2, 333334 * time.Microsecond}, // 1/3 s, rounded up to the µs
		{"0.5/s burst 5", 0.5, 5, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			k := ratelimit.New(tt.rps, tt.burst, ratelimit.WithClock(clk))
			key := []byte("10.0.0.1")

			// The burst is allowed at once, Remaining counting down to 0 and
			// Reset growing by one token's worth each time.
			for i := 1; i <= tt.burst; i++ {
				d := k.Allow(key)
				want := ratelimit.Decision{
					OK:        true,
					Limit:     tt.burst,
					Remaining: tt.burst - i,
					Reset:     roundUpMicro(time.Duration(float64(i) / tt.rps * 1e9)),
				}
				if d != want {
					t.Fatalf("request %d: got %+v, want %+v", i, d, want)
				}
			}

			// The next is refused with the exact wait, as often as asked:
			// a refusal takes no token.
			for range 3 {
				d := k.Allow(key)
				want := ratelimit.Decision{Limit: tt.burst, Reset: tt.retryAfter, RetryAfter: tt.retryAfter}
				if d != want {
					t.Fatalf("after the burst: got %+v, want %+v", d, want)
				}
				if got, want := d.RetryAfterSeconds(), ratelimit.CeilSeconds(tt.retryAfter); got != want {
					t.Fatalf("RetryAfterSeconds = %d, want %d", got, want)
				}
			}

			// Just before RetryAfter still refused, at RetryAfter allowed.
			clk.Advance(tt.retryAfter - time.Millisecond)
			if d := k.Allow(key); d.OK {
				t.Fatalf("1ms before RetryAfter: allowed: %+v", d)
			}
			clk.Advance(time.Millisecond)
			if d := k.Allow(key); !d.OK || d.Remaining != 0 {
				t.Fatalf("at RetryAfter: got %+v, want OK with Remaining 0", d)
			}
		})
	}
}

func roundUpMicro(d time.Duration) time.Duration {
	return (d + time.Microsecond - 2) / time.Microsecond * time.Microsecond
}

func TestKeyedRefillsToBurstNotBeyond(t *testing.T) {
	clk := newFakeClock()
	k := ratelimit.New(2, 3, ratelimit.WithClock(clk))
	key := []byte("k")
	for range 3 {
		k.Allow(key)
	}
	clk.Advance(time.Hour)
	for i := 1; i <= 3; i++ {
		if d := k.Allow(key); !d.OK || d.Remaining != 3-i {
			t.Fatalf("request %d after an hour: %+v", i, d)
		}
	}
	if d := k.Allow(key); d.OK {
		t.Fatalf("bucket refilled beyond its burst: %+v", d)
	}
}

func TestKeyedKeysAreIndependent(t *testing.T) {
	clk := newFakeClock()
	k := ratelimit.New(1, 2, ratelimit.WithClock(clk))
	a, b := []byte("a"), []byte("b")
	k.Allow(a)
	k.Allow(a)
	if d := k.Allow(a); d.OK {
		t.Fatalf("a after its burst: %+v", d)
	}
	for i := 1; i <= 2; i++ {
		if d := k.Allow(b); !d.OK || d.Remaining != 2-i {
			t.Fatalf("b request %d while a is exhausted: %+v", i, d)
		}
	}
	if k.Len() != 2 {
		t.Fatalf("Len = %d, want 2", k.Len())
	}
}

func TestKeyedFloodOfDistinctKeysStaysBounded(t *testing.T) {
	const maxKeys = 1000
	clk := newFakeClock()
	k := ratelimit.New(1, 1, ratelimit.WithClock(clk), ratelimit.WithMaxKeys(maxKeys))
	hot := []byte("hot")
	if d := k.Allow(hot); !d.OK {
		t.Fatalf("hot key's first request refused: %+v", d)
	}
	buf := make([]byte, 0, 32)
	for i := range 1_000_000 {
		buf = strconv.AppendInt(append(buf[:0], "flood-"...), int64(i), 10)
		if d := k.Allow(buf); !d.OK {
			t.Fatalf("fresh key %s refused: %+v", buf, d)
		}
		// The hot key is used all along: it is never the least recently
		// used, so it keeps its (exhausted) bucket instead of getting a
		// fresh one.
		if i%100 == 0 {
			if d := k.Allow(hot); d.OK {
				t.Fatalf("after %d flood keys the hot key was evicted: it got a fresh bucket", i)
			}
		}
	}
	if n := k.Len(); n > maxKeys {
		t.Fatalf("Len = %d after the flood, want <= %d", n, maxKeys)
	}
}

func TestKeyedEvictsLeastRecentlyUsed(t *testing.T) {
	clk := newFakeClock()
	// One shard makes the LRU order global; burst 1 with a slow refill makes
	// eviction visible: an evicted key comes back with a full bucket.
	k := ratelimit.New(0.001, 1, ratelimit.WithClock(clk), ratelimit.WithMaxKeys(3), ratelimit.WithShards(1))
	for _, key := range []string{"a", "b", "c"} {
		k.Allow([]byte(key))
		clk.Advance(time.Millisecond)
	}
	k.Allow([]byte("a")) // a is now the most recently used; b the least
	k.Allow([]byte("d")) // full: evicts b
	if n := k.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3", n)
	}
	for _, key := range []string{"a", "c", "d"} {
		if d := k.Allow([]byte(key)); d.OK {
			t.Errorf("%s was evicted: it got a fresh bucket", key)
		}
	}
	if d := k.Allow([]byte("b")); !d.OK {
		t.Errorf("b was not evicted: %+v", d)
	}
}

func TestKeyedIdleKeysExpire(t *testing.T) {
	tests := []struct {
		name    string
		rps     float64
		burst   int
		ttl     time.Duration
		wantTTL time.Duration
	}{
		{"configured TTL", 10, 10, time.Minute, time.Minute},
		{"TTL below the fill time is raised to it", 1, 10, time.Second, 10 * time.Second},
		{"default is the fill time", 2, 3, 0, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			k := ratelimit.New(tt.rps, tt.burst, ratelimit.WithClock(clk), ratelimit.WithTTL(tt.ttl))
			if k.TTL() != tt.wantTTL {
				t.Fatalf("TTL = %v, want %v", k.TTL(), tt.wantTTL)
			}
			for i := range 100 {
				k.Allow(fmt.Appendf(nil, "key-%d", i))
			}
			clk.Advance(tt.wantTTL)
			if n := k.Sweep(); n != 0 || k.Len() != 100 {
				t.Fatalf("at exactly the TTL: swept %d, Len %d; want 0, 100", n, k.Len())
			}
			k.Allow([]byte("key-0")) // used again: no longer idle
			clk.Advance(time.Nanosecond)
			if n := k.Sweep(); n != 99 || k.Len() != 1 {
				t.Fatalf("past the TTL: swept %d, Len %d; want 99, 1", n, k.Len())
			}
		})
	}
}

func TestKeyedIdleKeysAreDroppedLazilyOnInsert(t *testing.T) {
	clk := newFakeClock()
	k := ratelimit.New(1, 1, ratelimit.WithClock(clk), ratelimit.WithShards(1))
	k.Allow([]byte("old"))
	clk.Advance(k.TTL() + 1)
	k.Allow([]byte("new"))
	if n := k.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1: the idle key is dropped when a key is inserted", n)
	}
}

func TestKeyedDroppingAnIdleKeyGivesNoExtraTokens(t *testing.T) {
	clk := newFakeClock()
	k := ratelimit.New(1, 5, ratelimit.WithClock(clk), ratelimit.WithTTL(time.Millisecond))
	key := []byte("k")
	for range 5 {
		k.Allow(key)
	}
	// The TTL was raised to the 5s fill time: an entry is dropped only when
	// its bucket is full anyway, never while it still owes tokens.
	clk.Advance(2 * time.Second)
	k.Sweep()
	for i := range 2 {
		if d := k.Allow(key); !d.OK {
			t.Fatalf("request %d: refused: %+v", i, d)
		}
	}
	if d := k.Allow(key); d.OK {
		t.Fatalf("got a third token after 2s at 1/s: %+v", d)
	}
}

func TestKeyedConcurrentUseNeverExceedsBurst(t *testing.T) {
	clk := newFakeClock() // frozen: no refill, so exactly burst requests pass per key
	const burst, keys, workers = 50, 8, 16
	k := ratelimit.New(1, burst, ratelimit.WithClock(clk))
	allowed := make(chan int, workers)
	for w := range workers {
		go func() {
			n := 0
			for i := range 200 {
				if k.Allow([]byte{byte((w + i) % keys)}).OK {
					n++
				}
			}
			allowed <- n
		}()
	}
	total := 0
	for range workers {
		total += <-allowed
	}
	if total != burst*keys {
		t.Fatalf("allowed %d requests, want exactly %d", total, burst*keys)
	}
}

func TestNewPanicsOnNonsense(t *testing.T) {
	tests := []struct {
		rps   float64
		burst int
	}{{0, 1}, {-1, 1}, {1, 0}, {1, -3}}
	for _, tt := range tests {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%v, %d) did not panic", tt.rps, tt.burst)
				}
			}()
			ratelimit.New(tt.rps, tt.burst)
		}()
	}
}
