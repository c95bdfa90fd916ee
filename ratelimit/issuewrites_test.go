package ratelimit_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

var issueKey = []byte("8f2c1f0e-instance/PROJ-123")

func TestIssueWritesBurstOf20ThenRefusedFor100ms(t *testing.T) {
	clk := newFakeClock()
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk))
	for i := 1; i <= 20; i++ {
		d := w.Allow(issueKey)
		// The 2s window is the scarcer one; both are full again once the
		// 30s window has refilled what was taken (i × 300ms).
		want := ratelimit.Decision{OK: true, Limit: 20, Remaining: 20 - i, Reset: time.Duration(i) * 300 * time.Millisecond}
		if d != want {
			t.Fatalf("write %d: got %+v, want %+v", i, d, want)
		}
	}
	for range 5 { // refusals take no token
		d := w.Allow(issueKey)
		want := ratelimit.Decision{Limit: 20, Reset: 100 * time.Millisecond, RetryAfter: 100 * time.Millisecond}
		if d != want {
			t.Fatalf("write 21: got %+v, want %+v", d, want)
		}
		if d.RetryAfterSeconds() != 1 {
			t.Fatalf("RetryAfterSeconds = %d, want 1", d.RetryAfterSeconds())
		}
	}
	clk.Advance(99 * time.Millisecond)
	if d := w.Allow(issueKey); d.OK {
		t.Fatalf("write 21 after 99ms: allowed: %+v", d)
	}
	clk.Advance(time.Millisecond)
	if d := w.Allow(issueKey); !d.OK {
		t.Fatalf("write 21 after 100ms: refused: %+v", d)
	}
}

func TestIssueWritesSustainedThenRefusedByThe30sWindow(t *testing.T) {
	clk := newFakeClock()
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk))
	// One write per 150ms (6.7/s) never troubles the 2s window (10/s), but
	// drains the 30s window (3.3/s refill) by 0.5 token per write: 199 writes
	// pass within 30s, the 200th finds half a token.
	const every = 150 * time.Millisecond
	start := clk.Now()
	for i := 1; i <= 199; i++ {
		if d := w.Allow(issueKey); !d.OK {
			t.Fatalf("write %d at %v: refused: %+v", i, clk.Now().Sub(start), d)
		}
		clk.Advance(every)
	}
	if elapsed := clk.Now().Sub(start); elapsed >= 30*time.Second {
		t.Fatalf("sustained for %v, want within 30s", elapsed)
	}
	d := w.Allow(issueKey)
	want := ratelimit.Decision{Limit: 100, Reset: every, RetryAfter: every} // half a token at 100/30s
	if d != want {
		t.Fatalf("write 200: got %+v, want %+v (refused by the 30s window)", d, want)
	}
	clk.Advance(d.RetryAfter - time.Millisecond)
	if d := w.Allow(issueKey); d.OK {
		t.Fatalf("1ms before RetryAfter: allowed: %+v", d)
	}
	clk.Advance(time.Millisecond)
	if d := w.Allow(issueKey); !d.OK {
		t.Fatalf("at RetryAfter: refused: %+v", d)
	}
}

func TestIssueWritesRefusalTakesFromNeitherWindow(t *testing.T) {
	clk := newFakeClock()
	// Short: 2 per 1s (2/s). Long: 5 per 50s (one token per 10s).
	w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk), ratelimit.WithWindows(
		ratelimit.Window{Events: 2, Per: time.Second},
		ratelimit.Window{Events: 5, Per: 50 * time.Second},
	))
	steps := []struct {
		advance time.Duration
		times   int
		want    ratelimit.Decision
	}{
		{0, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 1, Reset: 10 * time.Second}},
		{0, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 0, Reset: 20 * time.Second}},
		// Refused by the short window; had the refusals taken from the long
		// one, it would be empty below.
		{0, 100, ratelimit.Decision{Limit: 2, Reset: 500 * time.Millisecond, RetryAfter: 500 * time.Millisecond}},
		{time.Second, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 1, Reset: 29 * time.Second}},
		{0, 1, ratelimit.Decision{OK: true, Limit: 2, Remaining: 0, Reset: 39 * time.Second}},
		// Short full again, long down to 0.2 of a token after this write.
		{time.Second, 1, ratelimit.Decision{OK: true, Limit: 5, Remaining: 0, Reset: 48 * time.Second}},
		// Refused by the long window, 8s to its next token; had the
		// refusals taken from the short one, its wait would grow instead.
		{0, 100, ratelimit.Decision{Limit: 5, Reset: 8 * time.Second, RetryAfter: 8 * time.Second}},
		{8 * time.Second, 1, ratelimit.Decision{OK: true, Limit: 5, Remaining: 0, Reset: 50 * time.Second}},
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
