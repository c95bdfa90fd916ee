package fleet

import (
	"sync"
	"testing"
	"time"
)

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

const other = "zyxwvutsrqponmlkjihgfedcba"

// Each of Jira's reasons holds exactly its scope: what it names is refused
// with the reason passed back, everything else goes on.
func TestCooldownScopes(t *testing.T) {
	type req struct {
		inst  string
		ep    Endpoint
		issue string
	}
	all := []req{
		{inst, Upload, "ABC-1"}, {inst, Upload, "ABC-2"}, {inst, Download, ""},
		{other, Upload, "ABC-1"}, {other, Download, ""},
	}
	tests := []struct {
		reason string
		trip   req
		held   []bool // for each of all
		back   string // RateLimit-Reason passed back
	}{
		{ReasonPerIssue, all[0], []bool{true, false, false, false, false}, ReasonPerIssue},
		{ReasonBurst, all[0], []bool{true, true, false, false, false}, ReasonBurst},
		{"", all[2], []bool{false, false, true, false, false}, ""},
		{"jira-new-kind", all[0], []bool{true, true, false, false, false}, "jira-new-kind"},
		{ReasonTenantQuota, all[0], []bool{true, true, true, false, false}, ReasonTenantQuota},
		{ReasonGlobalQuota, all[4], []bool{true, true, true, true, true}, ReasonGlobalQuota},
		{ReasonPerIssue, all[2], []bool{false, false, true, false, false}, ReasonPerIssue}, // a download has no issue: its endpoint
	}
	for _, tt := range tests {
		c := NewCooldowns(newTestClock(), time.Hour)
		if d := c.Trip(tt.trip.inst, tt.trip.ep, tt.trip.issue, tt.reason, 5*time.Second); d != 5*time.Second {
			t.Errorf("%q: Trip = %v, want Retry-After 5s", tt.reason, d)
		}
		for i, r := range all {
			wait, reason, cooling := c.Check(r.inst, r.ep, r.issue)
			if cooling != tt.held[i] {
				t.Errorf("%q tripped by %v: %v held %v, want %v", tt.reason, tt.trip, r, cooling, tt.held[i])
			}
			if cooling && (wait != 5*time.Second || reason != tt.back) {
				t.Errorf("%q: %v held %v with reason %q, want 5s and %q", tt.reason, r, wait, reason, tt.back)
			}
		}
	}
}

// The longest of the scopes a request falls in is its wait; everything is
// capped by --max-cooldown; a reason that is not a token is not kept.
func TestCooldownLongestAndCapped(t *testing.T) {
	clock := newTestClock()
	c := NewCooldowns(clock, time.Minute)
	c.Trip(inst, Upload, "ABC-1", ReasonPerIssue, 10*time.Second)
	c.Trip(inst, Upload, "ABC-1", ReasonTenantQuota, 20*time.Second)
	if wait, reason, _ := c.Check(inst, Upload, "ABC-1"); wait != 20*time.Second || reason != ReasonTenantQuota {
		t.Errorf("longest: %v %q, want the tenant's 20s", wait, reason)
	}
	if d := c.Trip(inst, Download, "", ReasonGlobalQuota, 24*time.Hour); d != time.Minute {
		t.Errorf("a Retry-After of a day: %v, want --max-cooldown 1m", d)
	}
	g := NewCooldowns(clock, time.Minute)
	g.Trip(other, Upload, "X-1", "bad reason\r\n", time.Second)
	if _, reason, cooling := g.Check(other, Upload, "X-2"); !cooling || reason != "" {
		t.Errorf("a garbled reason: cooling %v, reason %q; want held with no reason", cooling, reason)
	}
	clock.Advance(time.Minute)
	if _, _, cooling := c.Check(inst, Upload, "ABC-1"); cooling {
		t.Error("still cooling after --max-cooldown")
	}
	c.Sweep()
	if got := c.Active(); got != [numScopes]int{} {
		t.Errorf("active after every cool-down ended: %v", got)
	}
}

// Without Retry-After the scope backs off over its consecutive 429s; a
// success starts the streak over.
func TestCooldownBackoffPerScope(t *testing.T) {
	clock := newTestClock()
	c := NewCooldowns(clock, time.Hour)
	first := c.Trip(inst, Upload, "", ReasonBurst, 0)
	clock.Advance(first)
	second := c.Trip(inst, Upload, "", ReasonBurst, 0)
	if first < 700*time.Millisecond || first > 1300*time.Millisecond || second < 1400*time.Millisecond || second > 2600*time.Millisecond {
		t.Errorf("backoff %v then %v, want 1 s then 2 s ± 30 %%", first, second)
	}
	clock.Advance(second)
	c.Succeeded(inst, Upload, "")
	if d := c.Trip(inst, Upload, "", ReasonBurst, 0); d > 1300*time.Millisecond {
		t.Errorf("after a success: %v, want the first backoff again", d)
	}
}

// What another relay shares is held; its deletion (lease end, or an
// operator) clears it unless this relay saw a later 429 it has yet to
// share.
func TestCooldownHoldAndRelease(t *testing.T) {
	clock := newTestClock()
	c := NewCooldowns(clock, time.Hour)
	key := ScopeKey(ScopeIssue, inst, Upload, "ABC-1")
	c.hold(key, ScopeIssue, record{Until: clock.Now().Add(30 * time.Second), Reason: ReasonPerIssue}, 7, 70)
	if wait, reason, cooling := c.Check(inst, Upload, "ABC-1"); !cooling || wait != 30*time.Second || reason != ReasonPerIssue {
		t.Fatalf("shared: %v %q %v", wait, reason, cooling)
	}
	if sh := c.sharedOf(key); sh.rev != 7 || sh.lease != 70 || !sh.until.Equal(clock.Now().Add(30*time.Second)) {
		t.Errorf("sharedOf = %+v", sh)
	}
	c.release(key)
	if _, _, cooling := c.Check(inst, Upload, "ABC-1"); cooling {
		t.Error("cooling after the key was deleted")
	}

	c.hold(key, ScopeIssue, record{Until: clock.Now().Add(2 * time.Second)}, 8, 80)
	c.Trip(inst, Upload, "ABC-1", ReasonPerIssue, 40*time.Second) // later, not shared yet
	c.release(key)
	if wait, _, cooling := c.Check(inst, Upload, "ABC-1"); !cooling || wait != 40*time.Second {
		t.Errorf("this relay's later 429 after an older key ended: %v %v, want 40s", wait, cooling)
	}
	// A far-future value is capped at --max-cooldown.
	c.hold(ScopeKey(ScopeGlobal, "", 0, ""), ScopeGlobal, record{Until: clock.Now().Add(1000 * time.Hour)}, 9, 90)
	if wait, _, _ := c.Check(other, Download, ""); wait != time.Hour {
		t.Errorf("a key far in the future: held %v, want --max-cooldown 1h", wait)
	}
}

// Checking a request when nothing cools allocates nothing.
func TestCooldownCheckAllocatesNothing(t *testing.T) {
	c := NewCooldowns(nil, time.Hour)
	c.Trip(other, Upload, "ABC-1", ReasonPerIssue, time.Minute)
	if n := testing.AllocsPerRun(1000, func() { c.Check(inst, Upload, "ABC-1") }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Succeeded(inst, Upload, "ABC-1") }); n != 0 {
		t.Errorf("Succeeded allocates %v times", n)
	}
}
