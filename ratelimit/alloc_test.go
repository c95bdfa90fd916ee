//go:build !race

package ratelimit_test

import (
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

// TestNoAllocationsOnExistingKeys pins the promise the proxy relies on: the
// per-request decisions make no allocation for a key already present, whether
// they allow or refuse. (The race detector allocates, hence the build tag.)
func TestNoAllocationsOnExistingKeys(t *testing.T) {
	clk := newFakeClock()
	key := []byte("10.1.2.3")

	keyed := ratelimit.New(1000, 10, ratelimit.WithClock(clk))
	refusing := ratelimit.New(1e-9, 1, ratelimit.WithClock(clk)) // no refill while the clock runs
	refusing.Allow(key)
	writes := ratelimit.NewIssueWrites(ratelimit.WithClock(clk))
	refusingWrites := ratelimit.NewIssueWrites(ratelimit.WithClock(clk), ratelimit.WithWindows(
		ratelimit.Window{Events: 20, Per: 1000 * time.Hour}, ratelimit.Window{Events: 100, Per: 1000 * time.Hour}))
	for range 20 {
		refusingWrites.Allow(key)
	}
	cool := ratelimit.NewCooldown(ratelimit.WithClock(clk))
	cool.Trip(key, time.Hour)
	streams := ratelimit.NewStreams(4)
	streams.TryAcquire(key) // the key exists while a stream is in flight

	tests := []struct {
		name string
		f    func()
	}{
		{"Keyed.Allow allowed", func() {
			clk.Advance(time.Millisecond)
			if !keyed.Allow(key).OK {
				t.Fatal("refused")
			}
		}},
		{"Keyed.Allow refused", func() {
			if refusing.Allow(key).OK {
				t.Fatal("allowed")
			}
		}},
		{"IssueWrites.Allow allowed", func() {
			clk.Advance(time.Second)
			if !writes.Allow(key).OK {
				t.Fatal("refused")
			}
		}},
		{"IssueWrites.Allow refused", func() {
			if refusingWrites.Allow(key).OK {
				t.Fatal("allowed")
			}
		}},
		{"Cooldown.Check cooling", func() {
			if _, cooling := cool.Check(key); !cooling {
				t.Fatal("not cooling")
			}
		}},
		{"Cooldown.Check absent key", func() { cool.Check([]byte("absent")) }},
		{"Cooldown.Succeeded", func() { cool.Succeeded(key) }},
		{"Streams.TryAcquire+Release", func() {
			if !streams.TryAcquire(key) {
				t.Fatal("refused")
			}
			streams.Release(key)
		}},
		{"Streams.InFlight", func() { streams.InFlight(key) }},
	}
	for _, tt := range tests {
		if allocs := testing.AllocsPerRun(1000, tt.f); allocs != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tt.name, allocs)
		}
	}
}
