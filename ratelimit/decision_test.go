package ratelimit_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

func TestDecisionSeconds(t *testing.T) {
	tests := []struct {
		name              string
		d                 ratelimit.Decision
		retryAfter, reset int
	}{
		{"allowed", ratelimit.Decision{OK: true, Reset: 1500 * time.Millisecond}, 0, 2},
		{"allowed, bucket full", ratelimit.Decision{OK: true}, 0, 0},
		{"refused, sub-second", ratelimit.Decision{RetryAfter: time.Microsecond, Reset: time.Microsecond}, 1, 1},
		{"refused, whole seconds", ratelimit.Decision{RetryAfter: 2 * time.Second, Reset: 2 * time.Second}, 2, 2},
		{"refused, just over", ratelimit.Decision{RetryAfter: 2*time.Second + 1, Reset: 2*time.Second + 1}, 3, 3},
		{"refused, zero (never produced)", ratelimit.Decision{}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.RetryAfterSeconds(); got != tt.retryAfter {
				t.Errorf("RetryAfterSeconds = %d, want %d", got, tt.retryAfter)
			}
			if got := tt.d.ResetSeconds(); got != tt.reset {
				t.Errorf("ResetSeconds = %d, want %d", got, tt.reset)
			}
		})
	}
}

func TestCeilSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{
		-time.Second: 0, 0: 0, 1: 1, time.Second: 1, time.Second + 1: 2, 59*time.Second + 500*time.Millisecond: 60,
	} {
		if got := ratelimit.CeilSeconds(d); got != want {
			t.Errorf("CeilSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

// TestRetryAfterSufficesForAnyRate checks, over many rates and bursts, that a
// refused request retried exactly RetryAfter later is allowed, and retried a
// little earlier is not: RetryAfter is neither short nor padded.
func TestRetryAfterSufficesForAnyRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		rps := 0.01 + rng.Float64()*1000
		burst := 1 + rng.IntN(200)
		clk := newFakeClock()
		k := ratelimit.New(rps, burst, ratelimit.WithClock(clk))
		w := ratelimit.NewIssueWrites(ratelimit.WithClock(clk), ratelimit.WithWindows(
			ratelimit.Window{Events: burst, Per: time.Duration(float64(burst) / rps * 1e9)},
			ratelimit.Window{Events: 1 + rng.IntN(500), Per: time.Duration(1 + rng.Int64N(int64(time.Minute)))},
		))
		key := []byte("k")
		for _, allow := range []func([]byte) ratelimit.Decision{k.Allow, w.Allow} {
			// Drain, and wander a random bit into the refill.
			for allow(key).OK {
			}
			clk.Advance(time.Duration(rng.Int64N(int64(time.Second))))
			for allow(key).OK {
			}
			d := allow(key)
			if d.RetryAfter <= 0 || d.Reset != d.RetryAfter || d.RetryAfter%time.Microsecond != 0 {
				t.Fatalf("rps %v burst %d: refusal %+v", rps, burst, d)
			}
			if d.RetryAfter > 2*time.Microsecond {
				clk.Advance(d.RetryAfter - 2*time.Microsecond)
				if early := allow(key); early.OK {
					t.Fatalf("rps %v burst %d: allowed 2µs before RetryAfter %v", rps, burst, d.RetryAfter)
				}
				clk.Advance(2 * time.Microsecond)
			} else {
				clk.Advance(d.RetryAfter)
			}
			if late := allow(key); !late.OK {
				t.Fatalf("rps %v burst %d: refused at RetryAfter %v: %+v", rps, burst, d.RetryAfter, late)
			}
		}
	}
}
