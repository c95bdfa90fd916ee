package ratelimit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

func TestCooldownWithRetryAfterIsExact(t *testing.T) {
	for _, ra := range []time.Duration{time.Millisecond, 7 * time.Second, 90 * time.Second} {
		clk := newFakeClock()
		c := ratelimit.NewCooldown(ratelimit.WithClock(clk), ratelimit.WithJitterSource(fixedJitter(0.99)))
		key := []byte("instance")
		if wait, cooling := c.Check(key); cooling || wait != 0 {
			t.Fatalf("before any 429: (%v, %v), want (0, false)", wait, cooling)
		}
		if got := c.Trip(key, ra); got != ra {
			t.Fatalf("Trip(%v) = %v, want exactly %v", ra, got, ra)
		}
		if wait, cooling := c.Check(key); !cooling || wait != ra {
			t.Fatalf("just tripped: (%v, %v), want (%v, true)", wait, cooling, ra)
		}
		clk.Advance(ra - time.Nanosecond)
		if wait, cooling := c.Check(key); !cooling || wait != time.Nanosecond {
			t.Fatalf("1ns before the end: (%v, %v), want (1ns, true)", wait, cooling)
		}
		clk.Advance(time.Nanosecond)
		if wait, cooling := c.Check(key); cooling || wait != 0 {
			t.Fatalf("at the end: (%v, %v), want (0, false)", wait, cooling)
		}
	}
}

func TestCooldownBackoffWithoutRetryAfter(t *testing.T) {
	steps := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	tests := []struct {
		name   string
		u      float64 // jitter source value
		factor float64
	}{
		{"no jitter", 0.5, 1.0},
		{"lowest jitter", 0, 0.7},
		{"highest jitter", 0.999999, 1.3},
		{"source out of range is clamped", 7, 1.3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			c := ratelimit.NewCooldown(ratelimit.WithClock(clk), ratelimit.WithJitterSource(fixedJitter(tt.u)))
			key := []byte("instance")
			for i, s := range steps {
				base := s * time.Second
				got := c.Trip(key, 0)
				want := time.Duration(float64(base) * tt.factor)
				if diff, tol := got-want, base/100_000; diff < -tol || diff > tol {
					t.Fatalf("429 #%d: cool-down %v, want %v (%v × %.1f)", i+1, got, want, base, tt.factor)
				}
				if lo, hi := time.Duration(0.7*float64(base)), time.Duration(1.3*float64(base)); got < lo || got > hi {
					t.Fatalf("429 #%d: cool-down %v outside [%v, %v]", i+1, got, lo, hi)
				}
				if wait, cooling := c.Check(key); !cooling || wait != got {
					t.Fatalf("429 #%d: Check = (%v, %v), want (%v, true)", i+1, wait, cooling, got)
				}
				clk.Advance(got) // cooled down, within the grace: the next 429 is consecutive
			}
		})
	}
}

func TestCooldownConfiguredBackoff(t *testing.T) {
	clk := newFakeClock()
	c := ratelimit.NewCooldown(ratelimit.WithClock(clk), ratelimit.WithJitterSource(fixedJitter(0.5)),
		ratelimit.WithBackoff(100*time.Millisecond, 500*time.Millisecond))
	key := []byte("k")
	for i, want := range []time.Duration{100, 200, 400, 500, 500} {
		got := c.Trip(key, 0)
		if want *= time.Millisecond; got != want {
			t.Fatalf("429 #%d: %v, want %v", i+1, got, want)
		}
		clk.Advance(got)
	}
}

func TestCooldownDefaultJitterStaysInRange(t *testing.T) {
	clk := newFakeClock()
	c := ratelimit.NewCooldown(ratelimit.WithClock(clk))
	lo, hi := 700*time.Millisecond, 1300*time.Millisecond
	seen := map[time.Duration]bool{}
	for i := range 1000 {
		got := c.Trip(fmt.Appendf(nil, "k%d", i), 0)
		if got < lo || got >= hi {
			t.Fatalf("first cool-down %v outside [%v, %v)", got, lo, hi)
		}
		seen[got] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct cool-downs in 1000: no jitter?", len(seen))
	}
}

func TestCooldownTripWhileCoolingNeitherGrowsStreakNorShortens(t *testing.T) {
	clk := newFakeClock()
	c := ratelimit.NewCooldown(ratelimit.WithClock(clk), ratelimit.WithJitterSource(fixedJitter(0.5)))
	key := []byte("k")
	if got := c.Trip(key, 0); got != time.Second {
		t.Fatalf("first 429: %v, want 1s", got)
	}
	// 429s of requests already in flight arrive during the cool-down.
	clk.Advance(100 * time.Millisecond)
	if got := c.Trip(key, 0); got != time.Second {
		t.Fatalf("429 while cooling: %v, want 1s again (streak unchanged)", got)
	}
	if got := c.Trip(key, 10*time.Millisecond); got != time.Second {
		t.Fatalf("shorter Retry-After while cooling: %v, want the 1s still running", got)
	}
	if got := c.Trip(key, 5*time.Second); got != 5*time.Second {
		t.Fatalf("longer Retry-After while cooling: %v, want 5s", got)
	}
	clk.Advance(5 * time.Second)
	if got := c.Trip(key, 0); got != 2*time.Second {
		t.Fatalf("next 429 after the cool-down: %v, want 2s (second of the streak)", got)
	}
}

func TestCooldownSucceededResetsStreak(t *testing.T) {
	clk := newFakeClock()
	c := ratelimit.NewCooldown(ratelimit.WithClock(clk), ratelimit.WithJitterSource(fixedJitter(0.5)))
	key := []byte("k")
	for _, want := range []time.Duration{1, 2, 4} {
		if got := c.Trip(key, 0); got != want*time.Second {
			t.Fatalf("got %v, want %v", got, want*time.Second)
		}
		clk.Advance(want * time.Second)
	}
	c.Succeeded(key)
	if c.Len() != 0 {
		t.Fatalf("Len = %d after a success outside a cool-down, want 0", c.Len())
	}
	if got := c.Trip(key, 0); got != time.Second {
		t.Fatalf("first 429 after a success: %v, want 1s", got)
	}

	// A success during a cool-down (a request sent before it) resets the
	// streak but lets the cool-down run out.
	clk.Advance(time.Second)
	c.Trip(key, 0) // 2s
	c.Succeeded(key)
	if wait, cooling := c.Check(key); !cooling || wait != 2*time.Second {
		t.Fatalf("after a success while cooling: (%v, %v), want (2s, true)", wait, cooling)
	}
	clk.Advance(2 * time.Second)
	if got := c.Trip(key, 0); got != time.Second {
		t.Fatalf("after the success: %v, want 1s", got)
	}
}

func TestCooldownExpiry(t *testing.T) {
	const grace = 30 * time.Second
	clk := newFakeClock()
	c := ratelimit.NewCooldown(ratelimit.WithClock(clk), ratelimit.WithJitterSource(fixedJitter(0.5)),
		ratelimit.WithGrace(grace))
	a, b := []byte("a"), []byte("b")
	c.Trip(a, 0)
	c.Trip(a, 0) // still cooling: streak 1
	c.Trip(b, 0)
	clk.Advance(time.Second + grace - time.Nanosecond)
	if n := c.Sweep(); n != 0 || c.Len() != 2 {
		t.Fatalf("within the grace: swept %d, Len %d; want 0, 2", n, c.Len())
	}
	clk.Advance(time.Nanosecond)
	// Check drops an expired entry lazily, Sweep the rest.
	if _, cooling := c.Check(a); cooling || c.Len() != 1 {
		t.Fatalf("Check after expiry: cooling %v, Len %d; want false, 1", cooling, c.Len())
	}
	if n := c.Sweep(); n != 1 || c.Len() != 0 {
		t.Fatalf("Sweep after expiry: swept %d, Len %d; want 1, 0", n, c.Len())
	}
	// The streak went with the entry.
	if got := c.Trip(a, 0); got != time.Second {
		t.Fatalf("first 429 after expiry: %v, want 1s", got)
	}
}

func TestCooldownStreakEndsWithExpiredEntry(t *testing.T) {
	clk := newFakeClock()
	c := ratelimit.NewCooldown(ratelimit.WithClock(clk), ratelimit.WithJitterSource(fixedJitter(0.5)),
		ratelimit.WithGrace(time.Second))
	key := []byte("k")
	c.Trip(key, 0)
	clk.Advance(time.Hour) // no Check, no Sweep: the entry is still there, expired
	if got := c.Trip(key, 0); got != time.Second {
		t.Fatalf("429 long after the last: %v, want 1s (new streak)", got)
	}
}

func TestCooldownBounded(t *testing.T) {
	const maxKeys = 100
	clk := newFakeClock()
	c := ratelimit.NewCooldown(ratelimit.WithClock(clk), ratelimit.WithMaxKeys(maxKeys), ratelimit.WithShards(1))
	hot := []byte("hot")
	c.Trip(hot, time.Hour)
	for i := range 10_000 {
		c.Trip(fmt.Appendf(nil, "k%d", i), time.Hour)
		if _, cooling := c.Check(hot); !cooling {
			t.Fatalf("after %d keys the hot key was evicted", i)
		}
	}
	if n := c.Len(); n > maxKeys {
		t.Fatalf("Len = %d, want <= %d", n, maxKeys)
	}
}
