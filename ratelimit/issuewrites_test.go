package ratelimit_test

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

var issueKey = []byte("8f2c1f0e-instance/PROJ-123")

func TestIssueWritesBurstOf20ThenRefusedUntilTheFirstLeavesThe2sWindow(t *testing.T) {
	clk := newFakeClock()
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk))
	for i := 1; i <= 20; i++ {
		d := w.Allow(issueKey)
		want := ratelimit.Decision{OK: true, Limit: 20, Remaining: 20 - i, Reset: 2 * time.Second}
		if d != want {
			t.Fatalf("write %d: got %+v, want %+v", i, d, want)
		}
		clk.Advance(10 * time.Millisecond)
	}
	// t = 200ms: the first write (t = 0) leaves the window at 2s.
	for range 5 { // refusals record nothing
		d := w.Allow(issueKey)
		want := ratelimit.Decision{Limit: 20, Reset: 1800 * time.Millisecond, RetryAfter: 1800 * time.Millisecond}
		if d != want {
			t.Fatalf("write 21: got %+v, want %+v", d, want)
		}
		if d.RetryAfterSeconds() != 2 {
			t.Fatalf("RetryAfterSeconds = %d, want 2", d.RetryAfterSeconds())
		}
	}
	clk.Advance(1800*time.Millisecond - time.Nanosecond)
	if d := w.Allow(issueKey); d.OK {
		t.Fatalf("write 21 a nanosecond early: allowed: %+v", d)
	}
	clk.Advance(time.Nanosecond)
	if d := w.Allow(issueKey); !d.OK || d.Remaining != 0 {
		t.Fatalf("write 21 at 2s: %+v, want allowed with 0 remaining", d)
	}
	// The second write (t = 10ms) leaves at 2.01s: one more then.
	if d := w.Allow(issueKey); d.OK || d.RetryAfter != 10*time.Millisecond {
		t.Fatalf("write 22 at 2s: %+v, want refused for 10ms", d)
	}
}

func TestIssueWritesSustainedThenRefusedByThe30sWindow(t *testing.T) {
	clk := newFakeClock()
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk))
	// One write per 150ms (13 or 14 in any 2s) never troubles the 2s window;
	// the 30s window holds 100: writes 1..100 pass (t = 0 … 14.85s), the
	// 101st (t = 15s) waits until the first is 30s old.
	const every = 150 * time.Millisecond
	for i := 1; i <= 100; i++ {
		if d := w.Allow(issueKey); !d.OK {
			t.Fatalf("write %d at %v: refused: %+v", i, time.Duration(i-1)*every, d)
		}
		clk.Advance(every)
	}
	d := w.Allow(issueKey)
	want := ratelimit.Decision{Limit: 100, Reset: 15 * time.Second, RetryAfter: 15 * time.Second}
	if d != want {
		t.Fatalf("write 101: got %+v, want %+v (refused by the 30s window)", d, want)
	}
	clk.Advance(d.RetryAfter - time.Millisecond)
	if d := w.Allow(issueKey); d.OK {
		t.Fatalf("1ms before RetryAfter: allowed: %+v", d)
	}
	clk.Advance(time.Millisecond)
	if d := w.Allow(issueKey); !d.OK || d.Limit != 100 || d.Remaining != 0 {
		t.Fatalf("at RetryAfter: %+v, want allowed, 0 of 100 remaining", d)
	}
}

func TestIssueWritesRefusalRecordsNothing(t *testing.T) {
	clk := newFakeClock()
	// Short: 2 per 1s. Long: 5 per 50s.
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk), ratelimit.WithWindows(
		ratelimit.Window{Events: 2, Per: time.Second},
		ratelimit.Window{Events: 5, Per: 50 * time.Second},
	))
	steps := []struct {
		advance time.Duration
		times   int
		want    ratelimit.Decision
	}{
		{0, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 1, Reset: time.Second}},
		{0, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 0, Reset: time.Second}},
		// Refused by the short window; had the refusals been recorded, it
		// would not open at 1s.
		{500 * time.Millisecond, 100, ratelimit.Decision{Limit: 2, Reset: 500 * time.Millisecond, RetryAfter: 500 * time.Millisecond}},
		{500 * time.Millisecond, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 1, Reset: time.Second}},
		{0, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 0, Reset: time.Second}},
		{time.Second, 1, ratelimit.Decision{OK: true, Limit: 5, Remaining: 0, Reset: 50 * time.Second}},
		// Refused by the long window (5 writes in it; the first two, at
		// t = 0, leave at 50s) though the short one has room; had the
		// refusals been recorded, it would not open at 50s.
		{time.Second, 100, ratelimit.Decision{Limit: 5, Reset: 47 * time.Second, RetryAfter: 47 * time.Second}},
		{47 * time.Second, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 1, Reset: time.Second}},
		{0, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 0, Reset: time.Second}},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		for range s.times {
			if d := w.Allow(issueKey); d != s.want {
				t.Fatalf("step %d: got %+v, want %+v", i, d, s.want)
			}
		}
	}
}

// TestIssueWritesAreJirasWindowsExactly: under random traffic, no 2s span
// holds more than 20 allowed writes and no 30s span more than 100 (the
// limit is never exceeded), and every refused write found one of the
// windows full (nothing is refused while there is room), with RetryAfter
// exactly when that window has room again.
func TestIssueWritesAreJirasWindowsExactly(t *testing.T) {
	clk := newFakeClock()
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk))
	rng := rand.New(rand.NewPCG(1, 2))
	start := clk.Now()
	var allowed []time.Duration // offsets of allowed writes
	inSpan := func(at, per time.Duration) int {
		n := 0
		for i := len(allowed) - 1; i >= 0 && at-allowed[i] < per; i-- {
			n++
		}
		return n
	}
	refused := 0
	for range 20_000 {
		// Bursts and lulls: mostly 0–100ms apart, sometimes seconds.
		gap := time.Duration(rng.IntN(100)) * time.Millisecond
		if rng.IntN(50) == 0 {
			gap = time.Duration(rng.IntN(20)) * time.Second
		}
		clk.Advance(gap)
		at := clk.Now().Sub(start)
		d := w.Allow(issueKey)
		short, long := inSpan(at, 2*time.Second), inSpan(at, 30*time.Second)
		if d.OK {
			if short >= 20 || long >= 100 {
				t.Fatalf("write at %v allowed with %d writes in the last 2s and %d in the last 30s", at, short, long)
			}
			allowed = append(allowed, at)
			continue
		}
		refused++
		if short < 20 && long < 100 {
			t.Fatalf("write at %v refused with only %d in the last 2s and %d in the last 30s", at, short, long)
		}
		var want time.Duration
		if short >= 20 {
			want = allowed[len(allowed)-20] + 2*time.Second - at
		}
		if long >= 100 {
			want = max(want, allowed[len(allowed)-100]+30*time.Second-at)
		}
		if d.RetryAfter != want {
			t.Fatalf("write at %v: RetryAfter %v, want %v", at, d.RetryAfter, want)
		}
	}
	if refused == 0 || len(allowed) < 1000 {
		t.Fatalf("%d allowed, %d refused: the traffic did not test both sides", len(allowed), refused)
	}
}

func TestIssueWritesKeysAreIndependentAndBounded(t *testing.T) {
	const maxKeys = 1000
	clk := newFakeClock()
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk), ratelimit.WithMaxKeys(maxKeys))
	for range 20 {
		w.Allow(issueKey)
	}
	if w.Allow(issueKey).OK {
		t.Fatal("write 21 allowed")
	}
	if !w.Allow([]byte("8f2c1f0e-instance/PROJ-124")).OK {
		t.Fatal("another issue refused")
	}
	buf := make([]byte, 0, 64)
	for i := range 100_000 {
		buf = strconv.AppendInt(append(buf[:0], "instance/FLOOD-"...), int64(i), 10)
		w.Allow(buf)
	}
	if n := w.Len(); n > maxKeys {
		t.Fatalf("Len = %d, want <= %d", n, maxKeys)
	}
}

func TestIssueWritesIdleKeysExpire(t *testing.T) {
	clk := newFakeClock()
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk))
	w.Allow(issueKey)
	clk.Advance(30 * time.Second) // the 30s window's fill time is the default TTL
	if n := w.Sweep(); n != 0 {
		t.Fatalf("swept %d at the TTL, want 0", n)
	}
	clk.Advance(time.Nanosecond)
	if n := w.Sweep(); n != 1 || w.Len() != 0 {
		t.Fatalf("past the TTL: swept %d, Len %d; want 1, 0", n, w.Len())
	}
}

// TestIssueWritesCheckRecordsNothing: Check answers as Allow would but
// spends nothing; only Allow fills the window.
func TestIssueWritesCheckRecordsNothing(t *testing.T) {
	clock := newFakeClock()
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clock), ratelimit.WithWindows(ratelimit.Window{Events: 2, Per: time.Second}, ratelimit.Window{Events: 3, Per: 10 * time.Second}))
	key := []byte("i/ABC-1")
	for range 10 {
		if d := w.Check(key); !d.OK {
			t.Fatalf("Check refused with no write recorded: %+v", d)
		}
	}
	w.Allow(key)
	w.Allow(key)
	if d := w.Check(key); d.OK || d.RetryAfter <= 0 {
		t.Fatalf("Check after two writes in the 2-per-second window: %+v", d)
	}
	clock.Advance(time.Second)
	if d := w.Check(key); !d.OK {
		t.Fatalf("Check once the short window passed: %+v", d)
	}
	w.Allow(key)
	clock.Advance(time.Second)
	if d := w.Check(key); d.OK {
		t.Fatalf("the long window (3 per 10 s) is full: Check = %+v", d)
	}
}
