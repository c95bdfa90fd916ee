//go:build !race

package relay

import (
	"testing"
	"time"

	"github.com/jira-relay/jira-relay/ratelimit"
)

// TestAdmitAllocatesNothing: the guards' decision on an upload (upstream,
// cool-down, breaker, streams, per-issue limit), as Check runs it for every
// upload and every Expect phase, makes no heap allocation once the
// instance, its upstream and its limiter entries exist. (The shape step
// before it copies a few header values into the plan; the front door's
// own decision, key check and limits, is measured in proxy.)
func TestAdmitAllocatesNothing(t *testing.T) {
	g := newCheckRig(t, nil)
	r := g.r
	// Jira's per-issue limit (20 per 2 s) would refuse a hot loop on one
	// issue; the refusal path is not what this test measures. Windows of a
	// nanosecond admit every call (the clock moves on between two).
	r.guards.writes = ratelimit.NewIssueWrites(ratelimit.WithWindows(
		ratelimit.Window{Events: 1, Per: time.Nanosecond}, ratelimit.Window{Events: 1, Per: time.Nanosecond}))
	var p Plan
	if err := r.Check(g.rc, g.in, g.target, &p); err != nil {
		t.Fatal(err)
	}
	admit := func() {
		if err := r.admit(&p); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(200, admit); n != 0 {
		t.Fatalf("guards' decision: %v allocations per upload, want 0", n)
	}
}
